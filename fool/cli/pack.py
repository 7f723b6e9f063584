"""`fool pack`: .fool containers -> one file of CCSDS packets per contact window (the onboard side)."""

from __future__ import annotations

from pathlib import Path

import click

from fool.shared.packets import DEFAULT_DATA_FIELD, MAX_DATA_FIELD, MIN_DATA_FIELD

EPILOG = """\b
Writes DIR/window_000.bin, ... (raw concatenated packets, one file per window, as they go on
the link) and DIR/manifest.json (which scene, tiles, qualities and bytes went into which
window, and the tiles that fit no window). A scene larger than a window is split by tiles;
to make a scene smaller, re-code it with `fool compress --budget`."""


def _priorities(text: str | None) -> list[float] | None:
    if not text:
        return None
    try:
        return [float(p) for p in text.split(",")]
    except ValueError:
        raise click.BadParameter("use one number per scene, like 2,1,3") from None


@click.command(epilog=EPILOG)
@click.argument("scenes", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--windows",
    "windows_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Contact-window JSON (from `fool plan`).",
)
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option(
    "--max-packet",
    type=click.IntRange(MIN_DATA_FIELD, MAX_DATA_FIELD),
    default=DEFAULT_DATA_FIELD,
    show_default=True,
    help="Largest packet data field in bytes.",
)
@click.option("--priority", help="Per-scene priorities, comma-separated; lower goes first [the order given].")
def pack(scenes, windows_path, out_dir, max_packet, priority) -> None:
    """Pack .fool SCENES into the contact windows, in priority order."""
    from fool.onboard.packer import pack as pack_scenes
    from fool.shared.windows import load_windows

    report = pack_scenes(scenes, load_windows(windows_path), out_dir, max_packet, _priorities(priority))
    for w in report.manifest["windows"]:
        click.echo(
            f"{out_dir / w['file']}: {w['packed_bytes']} of {w['capacity_bytes']} bytes "
            f"({100 * w['fill']:.2f} %), {w['packets']} packets, {len(w['scenes'])} scenes"
        )
    for s in report.manifest["not_sent"]:
        click.echo(f"{s['scene']}: {len(s['tiles'])} tiles fit no window (see manifest.json)")
