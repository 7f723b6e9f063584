"""`fool decode`: .fool containers -> GeoTIFFs, features, quicklooks, STAC Items (the ground side).

Two forms share the command. One container and ``-o FILE.tif`` (or no ``-o``) decodes that
scene in this process, as it always has. Several inputs, a folder, a glob, or ``-o FOLDER``
run a batch (:mod:`fool.ground.batch`) on a local process pool or a Dask cluster.
"""

from __future__ import annotations

from pathlib import Path

import click

from fool.cli.options import progress
from fool.shared.errors import InputError

KINDS = ("image", "features", "both")
BATCH_ONLY = ("output", "workers", "scheduler", "cog", "quicklook", "stac", "feature_model")


class DecodeCommand(click.Command):
    """Bad usage exits 1 (click's default is 2, which here means "some scenes failed")."""

    def make_context(self, *args, **kwargs) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            # click annotates exit_code as a ClassVar, but the per-instance override is what we mean
            exc.exit_code = 1  # type: ignore[misc]
            raise


EPILOG = """\b
Exit codes:
  0  every scene decoded
  1  bad usage, or every scene failed
  2  some scenes failed, the others were written
  3  partial: every scene written, but tiles missing or damaged (left as nodata)

\b
Batch outputs in OUT: <stem>.tif (image), <stem>.features/ (latents), <stem>.png
(--quicklook), <stem>.item.json (--stac), <stem>.done.json (resume record) and
summary.json. A re-run skips scenes already done with the same --output, --cog,
--quicklook, --stac, --strict (and --threads for images); a changed container, or other
options, is redone. Features carry per-tile validity (tile.valid) and list absent tiles."""


@click.command(cls=DecodeCommand, epilog=EPILOG)
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "-o",
    "out",
    type=click.Path(path_type=Path),
    help="Folder for a batch, or FILE.tif for one scene [SRC.decoded.tif].",
)
@click.option("--output", "kind", metavar="image|features|both", help="What a batch writes per scene [image].")
@click.option("--workers", type=click.IntRange(min=1), help="Local worker processes [one per core].")
@click.option("--scheduler", metavar="ADDRESS", help="Run on this Dask scheduler (tcp://host:8786) instead.")
@click.option("--cog", is_flag=True, help="Write Cloud-Optimised GeoTIFFs with overviews.")
@click.option("--quicklook", is_flag=True, help="Write a PNG quicklook per scene, missing/damaged tiles marked.")
@click.option("--stac", is_flag=True, help="Write a STAC Item per scene.")
@click.option("--strict", is_flag=True, help="A damaged tile fails its scene instead of being left as nodata.")
@click.option("--threads", type=click.IntRange(min=1), help="Torch threads per scene [batch: 1].")
@click.option(
    "--feature-model",
    type=click.Path(exists=True, dir_okay=False),
    help="Feature mode: also restore backbone features per tile (e.g. models/ucm-features.pt).",
)
@click.option("--skip-damaged", is_flag=True, help="One scene: leave damaged tiles empty (exit 3) instead of failing.")
@click.option(
    "--runtime",
    type=click.Choice(["onnx", "torch"]),
    default="onnx",
    show_default=True,
    help="Synthesis runtime; onnx exports the model once into a cache ($FOOL_CACHE or ~/.cache/fool).",
)
@click.option(
    "--synthesis",
    "variant",
    metavar="VARIANT",
    help="Decode with a shipped synthesis variant of the container's model instead of its own: "
    "fast (models/<model>.fast.pt, ~3x fewer multiply-adds, lower PSNR: models/README.md).",
)
def decode(
    inputs,
    out,
    kind,
    workers,
    scheduler,
    cog,
    quicklook,
    stac,
    strict,
    threads,
    feature_model,
    skip_damaged,
    runtime,
    variant,
) -> None:
    """Decode .fool containers into GeoTIFFs with the source's georeferencing.

    INPUTS are .fool files, folders (searched recursively for *.fool) or globs.
    """
    if kind is not None and kind not in KINDS:
        if out is not None:
            raise InputError(f"--output must be one of {', '.join(KINDS)}, got {kind!r}")
        out, kind = Path(kind), None  # the old spelling `--output FILE.tif`
    given = dict(
        output=kind,
        workers=workers,
        scheduler=scheduler,
        cog=cog,
        quicklook=quicklook,
        stac=stac,
        feature_model=feature_model,
    )
    if _single_scene(inputs, out):
        batch_options = [f"--{name.replace('_', '-')}" for name in BATCH_ONLY if given[name]]
        if batch_options:
            raise InputError(f"{', '.join(batch_options)} need a batch: give -o FOLDER")
        _decode_one(Path(inputs[0]), out, threads, skip_damaged and not strict, runtime, variant)
        return
    if out is None:
        raise InputError("a batch needs -o FOLDER")
    _decode_batch(inputs, out, given | {"strict": strict, "threads": threads, "runtime": runtime, "synthesis": variant})


def _single_scene(inputs: tuple[str, ...], out: Path | None) -> bool:
    """One existing file and an output that is not a folder (no -o, or -o with a file suffix)."""
    if len(inputs) != 1 or not Path(inputs[0]).is_file():
        return False
    return out is None or (not out.is_dir() and out.suffix != "")


def _decode_one(
    src: Path, out: Path | None, threads: int | None, skip_damaged: bool, runtime: str = "onnx", variant=None
) -> None:
    from fool.ground.decode import decode_container

    out = out or src.with_suffix(".decoded.tif")  # never the source scene's own name
    r = decode_container(src, out, threads, skip_damaged, progress("decode"), runtime=runtime, variant=variant)
    click.echo(f"{out}: {r.tiles} tiles in {r.seconds:.2f} s")
    if r.skipped:
        click.echo(f"note: {len(r.skipped)} tiles were not sent by the satellite (priority or budget)", err=True)
    if r.lost:
        click.echo(f"warning: {len(r.lost)} tiles lost on the link, left as nodata: {r.lost}", err=True)
    if r.failed:
        click.echo(f"warning: {len(r.failed)} damaged tiles left empty: {r.failed}", err=True)
    if r.partial:
        raise SystemExit(3)


def _decode_batch(inputs: tuple[str, ...], out: Path, given: dict) -> None:
    from fool.ground.batch import BatchOptions, format_summary, run_batch

    fields = {k: v for k, v in given.items() if v is not None}
    summary = run_batch(inputs, out, BatchOptions(**fields))
    click.echo(format_summary(summary))
    if summary.exit_code:
        raise SystemExit(summary.exit_code)
