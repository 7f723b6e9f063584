"""`fool plot-log`: a training run's CSV log as a picture."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("plot-log")
@click.argument("csv_path", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("train_log.png"), show_default=True)
def plot_log(csv_path, out) -> None:
    """Plot a training run's CSV log (loss, bpp, PSNR against step)."""
    from fool.train import plot_log as run

    run(csv_path, out)
    click.echo(f"wrote {out}")
