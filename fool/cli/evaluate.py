"""`fool eval`: the rate-distortion benchmark against the classical codecs."""

from __future__ import annotations

from pathlib import Path

import click

from fool.shared.geometry import DEFAULT_TILE


@click.command("eval")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--model",
    "models",
    multiple=True,
    help="Shipped model(s); MODEL:VARIANT decodes MODEL's containers with a synthesis variant "
    "(e.g. fool-m2:fast; coded once for all of a model's labels) [default: the one(s) compress picks].",
)
@click.option(
    "--codec",
    "codecs",
    multiple=True,
    default=("jpeg2000", "jpeg2000-rate", "jpegxl", "webp", "jpeg", "ccsds121"),
    show_default=True,
    help="Reference codecs, repeated or comma-separated; ccsds121 (libaec) is the lossless reference for integer data; "
    "jpeg2000-ict codes 4+ band images as bands 1-3 with the colour transform plus the rest, as opj_compress does.",
)
@click.option("--limit", type=int, help="Evaluate an evenly spread subset of this many images.")
@click.option("--tile-size", default=DEFAULT_TILE, show_default=True)
@click.option("--msssim", is_flag=True, help="Also compute MS-SSIM (slow on CPU).")
@click.option(
    "--modes",
    type=click.Choice(["learned", "auto"]),
    default="learned",
    show_default=True,
    help="auto: also run each model with per-tile JPEG 2000 modes (compress --modes auto, qualities 1-12) "
    "as the curve MODEL+intra, and count the tile modes chosen.",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    default=Path("rd.json"),
    show_default=True,
    help="JSON results; a PNG plot is written beside it.",
)
def eval_cmd(inputs, models, codecs, limit, tile_size, msssim, modes, out) -> None:
    """Rate-distortion benchmark against JPEG 2000, JPEG XL, WebP and JPEG."""
    from fool.evaluate import default_models, evaluate, plot, save, table

    summary = evaluate(
        list(inputs),
        list(models) or default_models(list(inputs), limit),
        [c.strip() for item in codecs for c in item.split(",") if c.strip()],
        limit=limit,
        tile_size=tile_size,
        with_msssim=msssim,
        log=click.echo,
        intra=modes == "auto",
    )
    save(summary, out)
    plot(summary, out.with_suffix(".png"), ", ".join(p.name for p in inputs))
    click.echo(table(summary))
    click.echo(f"wrote {out} and {out.with_suffix('.png')}")
