"""`fool compress`: a GeoTIFF/JPEG 2000 scene -> a .fool container (the onboard side)."""

from __future__ import annotations

from pathlib import Path

import click

from fool.cli.options import band_list, progress
from fool.shared.geometry import DEFAULT_TILE


@click.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Container to write [default: SRC.fool].")
@click.option(
    "-q",
    "--quality",
    type=float,
    default=None,
    help="Rate on a 1 (fewest bits) .. 8 (best) scale; fractions allowed. [default: see `fool info`/README]",
)
@click.option(
    "--model", default=None, help="Shipped model name. [default: fool-m16 for >8-bit integer scenes, else fool-m]"
)
@click.option("--tile-size", default=DEFAULT_TILE, show_default=True, help="Tile side in pixels (multiple of 64).")
@click.option("--bands", help="Bands to code, e.g. 1,2,3 [default: all].")
@click.option("--band-groups", help="Override band grouping, e.g. '1,2,3;4' (groups of 1 or 3).")
@click.option("--runtime", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True)
@click.option(
    "--flight", "flight_dir", type=click.Path(path_type=Path), help="ONNX flight export (for --runtime onnx)."
)
@click.option("--threads", type=int, help="Intra-op threads of the runtime.")
@click.option(
    "--halo",
    default=0,
    show_default=True,
    help="Inter-tile context: pixels of each neighbour the analysis sees (0 or a multiple of 64, up to 256).",
)
@click.option(
    "--value-range",
    type=click.Choice(["scene", "bitdepth"]),
    default="scene",
    show_default=True,
    help="Map >8-bit bands from their scanned min/max, or from their full bit depth.",
)
@click.option(
    "--container-version",
    type=click.IntRange(2, 3),
    default=3,
    show_default=True,
    help="Write container version 2 for ground decoders older than version 3 (more framing bytes).",
)
def compress(
    src,
    output,
    quality,
    model,
    tile_size,
    bands,
    band_groups,
    runtime,
    flight_dir,
    threads,
    halo,
    value_range,
    container_version,
) -> None:
    """Compress a GeoTIFF/JPEG 2000 scene into a .fool container."""
    from fool.onboard.compress import compress_scene
    from fool.shared import zoo

    output = output or src.with_suffix(".fool")
    r = compress_scene(
        src,
        output,
        model,
        quality or zoo.DEFAULT_QUALITY,
        tile_size,
        band_list(bands),
        band_groups,
        runtime,
        flight_dir,
        threads,
        progress("compress"),
        halo=halo,
        value_range=value_range,
        container_version=container_version,
    )
    click.echo(
        f"{output}: {r.bytes} bytes, {r.bpp:.3f} bpp ({r.bpp / r.bands:.3f} per band), "
        f"{r.tiles_coded} tiles coded, {r.tiles_skipped} empty, {r.megapixels_per_second:.2f} MP/s"
    )
