"""`fool eval-task`: what survives compression for a downstream task, per bit (whole files)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from fool.cli.options import progress

MODELS = Path(__file__).resolve().parents[2] / "models"


@click.group("eval-task")
def eval_task() -> None:
    """Downstream accuracy per bit: scene classification, cloud masking."""


def _write(result: dict, out: Path, plot) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(out)
    png = out.with_suffix(".png")
    plot(result, png)
    click.echo(f"wrote {out} and {png}")


@eval_task.command("classify")
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="JSON to write.")
@click.option("--limit", type=click.IntRange(1), help="First N images of each class.")
@click.option(
    "--classifier",
    "classifier_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=MODELS / "ucm-classifier.pt",
    show_default=True,
)
@click.option(
    "--features",
    "feature_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=MODELS / "ucm-features.pt",
    show_default=True,
    help="Feature-mode decoder (skipped if absent).",
)
@click.option(
    "--quality", "qualities", type=float, multiple=True, help="FOOL qualities [default: every level of --model]."
)
@click.option("--model", default="fool-m", show_default=True, help="FOOL model (zoo name) for fool and fool-features.")
@click.option(
    "--codec",
    "codec_names",
    multiple=True,
    help="Codecs to run, repeated or comma-separated, of fool, fool-features, jpeg2000, jpegxl "
    "[default: all]; without fool the pixel synthesis, most of the run, is skipped.",
)
def classify(
    root: Path,
    out: Path,
    limit: int | None,
    classifier_path: Path,
    feature_path: Path,
    qualities: tuple[float, ...],
    model: str,
    codec_names: tuple[str, ...],
) -> None:
    """Top-1 accuracy on ROOT/<class>/ images: originals, FOOL image and feature modes, JPEG 2000, JPEG XL."""
    from fool.tasks.classification import CODECS, evaluate_classification, plot_accuracy

    codecs = tuple(c.strip() for name in codec_names for c in name.split(",") if c.strip()) or CODECS
    unknown = sorted(set(codecs) - set(CODECS))
    if unknown:
        raise click.BadParameter(f"unknown {', '.join(unknown)}; choose from {', '.join(CODECS)}", param_hint="--codec")

    result = evaluate_classification(
        root,
        classifier_path,
        feature_path if feature_path.exists() else None,
        limit,
        qualities or None,
        model=model,
        progress=progress("images"),
        codecs=codecs,
    )
    s = result["summary"]
    click.echo(f"originals: {result['originals']['accuracy']:.1%} on {s['images']} images")
    for codec in ("fool", "fool-features", "jpeg2000", "jpegxl"):
        pts = ", ".join(f"{p['bpp_per_band']:.3f}:{p['accuracy']:.1%}" for p in result.get(codec, []))
        if pts:
            click.echo(f"{codec:>14} (bpp/band:acc) {pts}")
    need = ", ".join(f"{c} {v:.3f}" if v is not None else f"{c} never" for c, v in s["bits_for_target"].items())
    click.echo(f"bpp per band for {s['target_accuracy']:.1%} (97 % of originals): {need}")
    _write(result, out, plot_accuracy)


def _window(text: str | None) -> tuple[int, int, int, int] | None:
    if not text:
        return None
    try:
        col, row, width, height = (int(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter("give COL,ROW,WIDTH,HEIGHT in pixels") from None
    return col, row, width, height


@eval_task.command("cloudmask")
@click.argument("scenes", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--bands", required=True, help="1-based band numbers of blue, green, red, NIR[, SWIR1, SWIR2].")
@click.option("--scale", type=float, required=True, help="Reflectance = DN × scale (1e-4 for S2 L1C, 1/255 8-bit).")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="JSON to write.")
@click.option("--product", type=click.Choice(["l1c", "l2a"]), default="l1c", show_default=True)
@click.option("--quality", "qualities", type=float, multiple=True, help="FOOL qualities [1..8].")
@click.option("--window", help="COL,ROW,WIDTH,HEIGHT crop of every scene (pixels).")
@click.option(
    "--max-size",
    type=click.IntRange(256),
    default=1024,
    show_default=True,
    help="Without --window: centred crop to at most this square.",
)
@click.option("--gsd", type=float, help="Block-average to this ground sampling distance (m) before masking.")
def cloudmask(
    scenes: tuple[Path, ...],
    bands: str,
    scale: float,
    out: Path,
    product: str,
    qualities: tuple[float, ...],
    window: str | None,
    max_size: int,
    gsd: float | None,
) -> None:
    """Cloud/shadow mask agreement (ukis-csmask) between originals and FOOL / JPEG 2000 at equal file size."""
    from fool.cli.options import band_list
    from fool.tasks.cloudmask import DEFAULT_QUALITIES, evaluate_cloudmask, plot_cloudmask, table

    result = evaluate_cloudmask(
        list(scenes),
        band_list(bands) or [],
        scale,
        qualities or DEFAULT_QUALITIES,
        product,
        _window(window),
        max_size,
        gsd,
        progress=lambda line: click.echo(line, err=True),
    )
    click.echo(table(result))
    _write(result, out, plot_cloudmask)
