"""The `fool` command group: one module per command (as `rasterio/rio/` has), each a thin layer
over library functions.

Heavy libraries (torch, compressai, onnxruntime) are imported inside the commands that need
them, so `fool --help` is instant and the flight path never loads torch.
"""

from __future__ import annotations

import click

from fool.cli import (
    compress,
    decode,
    demo,
    eval_task,
    evaluate,
    export_onnx,
    info,
    link_sim,
    pack,
    plan,
    plot_log,
    release,
    report,
    train,
    train_classifier,
    unpack,
)
from fool.shared.errors import FoolError


class FoolGroup(click.Group):
    """Turns every FoolError into a one-line message and exit code 1, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except FoolError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(1)
        except OSError as exc:  # disk full, permissions, output path is a directory, ...
            click.echo(f"Error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
            ctx.exit(1)


@click.group(cls=FoolGroup)
@click.version_option(package_name="fool")
def main() -> None:
    """FOOL: onboard neural compression for Earth-observation satellites."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit notices from compressai
    warnings.filterwarnings("ignore", message=".*geotransform.*")  # plain images (no georeferencing)


for _command in (
    compress.compress,
    decode.decode,
    info.info,
    demo.demo,
    evaluate.eval_cmd,
    train.train,
    release.release,
    export_onnx.export_onnx,
    plot_log.plot_log,
    plan.plan,
    report.report,
    pack.pack,
    unpack.unpack,
    link_sim.link_sim,
    eval_task.eval_task,
    train_classifier.train_classifier,
    train_classifier.train_feature_mode,
):
    main.add_command(_command)

if __name__ == "__main__":
    main()
