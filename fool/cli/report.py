"""`fool report`: the HTML page of a decoded pass (scenes, counts, quicklooks, footprint map)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.argument("outdir", type=click.Path(path_type=Path, file_okay=False))
@click.option("-o", "dst", type=click.Path(path_type=Path, dir_okay=False), help="HTML to write [OUTDIR/report.html].")
def report(outdir: Path, dst: Path | None) -> None:
    """Write one self-contained HTML page for the batch decoded into OUTDIR (reads its summary.json)."""
    from fool.ground.report import write_report

    click.echo(write_report(outdir, dst))
