"""`fool unpack`: received packet files -> .fool containers and a loss report (the ground side)."""

from __future__ import annotations

from pathlib import Path

import click

EPILOG = """\b
Exit codes:
  0  every scene found was recovered whole
  1  bad usage or an error
  3  partial: some tiles are missing or damaged (written as lost), or a scene's
     header never arrived (the scene is reported lost)

\b
Writes DIR/<scene>.fool per scene, DIR/unpack_report.json and DIR/unpack_summary.txt.
Files may be given in any order; duplicates and damaged packets are handled."""


@click.command(epilog=EPILOG)
@click.argument("packets", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(path_type=Path), help="Output folder.")
def unpack(packets, out_dir) -> None:
    """Reassemble .fool containers from PACKETS files (window_*.bin)."""
    from fool.ground.unpack import unpack as unpack_packets

    report = unpack_packets(packets, out_dir)
    click.echo(report.summary())
    if not report.complete:
        raise SystemExit(3)
