"""The `fool` command group: one thin command per verb; the work happens in library functions.

Heavy libraries (torch, compressai, onnxruntime) are imported inside the commands that need
them, so `fool --help` is instant and the flight path never loads torch.
"""

from __future__ import annotations

from pathlib import Path

import click

from shared.errors import FoolError


class FoolGroup(click.Group):
    """Turns every FoolError into a one-line message and exit code 1, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except FoolError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(1)


@click.group(cls=FoolGroup)
@click.version_option(package_name="fool")
def main() -> None:
    """FOOL: onboard neural compression for Earth-observation satellites."""


@main.command()
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Run folder (checkpoint, CSV log).")
@click.option("--exclude", multiple=True, help="Skip files whose path contains this text (held-out data).")
@click.option("--steps", default=100_000, show_default=True, help="Total steps of the LR schedule.")
@click.option("--max-minutes", type=float, default=None, help="Stop (and checkpoint) after this long.")
@click.option("--batch", default=8, show_default=True)
@click.option("--crop", default=128, show_default=True)
@click.option("--lr", default=3e-4, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cuda:0.")
@click.option("--no-autocast", is_flag=True, help="Train in fp32 (bf16 autocast is the CPU default).")
def train(data, out, exclude, steps, max_minutes, batch, crop, lr, device, no_autocast) -> None:
    """Train or resume the variable-rate codec on folders of images/scenes."""
    from ground.train import TrainOptions
    from ground.train import train as run

    opts = TrainOptions(data=list(data), out=out, exclude=tuple(exclude), steps=steps, max_minutes=max_minutes,
                        batch=batch, crop=crop, lr=lr, device=device, autocast=not no_autocast)
    run(opts, log=click.echo)
