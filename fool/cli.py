"""The `fool` command group: one thin command per verb; the work happens in library functions.

Heavy libraries (torch, compressai, onnxruntime) are imported inside the commands that need
them, so `fool --help` is instant and the flight path never loads torch.
"""

from __future__ import annotations

from pathlib import Path

import click

from shared.errors import FoolError
from shared.geometry import DEFAULT_TILE


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


@main.command()
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Run folder (checkpoint, CSV log).")
@click.option("--exclude", multiple=True, help="Skip files whose path contains this text (held-out data).")
@click.option("--steps", default=100_000, show_default=True, help="Total steps of the LR schedule.")
@click.option("--max-minutes", type=float, default=None, help="Stop (and checkpoint) after this long.")
@click.option("--batch", default=8, show_default=True)
@click.option("--crop", default=128, show_default=True)
@click.option("--lr", default=3e-4, show_default=True)
@click.option("--lr-min", default=3e-5, show_default=True, help="Floor of the cosine schedule.")
@click.option("--warmup", default=500, show_default=True, help="Steps of linear LR warm-up at the start of a run.")
@click.option("--gray-prob", default=0.15, show_default=True, help="Share of crops from 8-bit single bands.")
@click.option(
    "--deep-prob", default=0.3, show_default=True, help="Share of crops from >8-bit single bands (own pool when > 0)."
)
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cuda:0.")
@click.option(
    "--autocast/--no-autocast",
    default=None,
    help="bf16 autocast on the transforms [default: on where the CPU has native bf16 (AVX512-BF16/AMX), else fp32].",
)
@click.option(
    "--init",
    type=click.Path(exists=True, path_type=Path),
    help="Start from shipped weights, e.g. models/fool-m.pt (used only when OUT has no checkpoint yet).",
)
@click.option(
    "--dec-blocks",
    type=click.IntRange(0, 8),
    default=None,
    help="Residual blocks per synthesis stage of a new or --init model; a trained decoder can only grow.",
)
@click.option(
    "--context/--no-context",
    default=None,
    help="Add (or drop) the checkerboard context of a new or --init model [default: as --init].",
)
@click.option(
    "--latent",
    type=click.IntRange(16, 512),
    default=None,
    help="Latent channels of a new model, or widen an --init model to this many (it can only grow).",
)
@click.option(
    "--latent-ramp",
    default=3000,
    show_default=True,
    help="Steps over which the bits of channels added by --latent enter the loss (they start free).",
)
def train(
    data,
    out,
    exclude,
    steps,
    max_minutes,
    batch,
    crop,
    lr,
    lr_min,
    warmup,
    gray_prob,
    deep_prob,
    device,
    autocast,
    init,
    dec_blocks,
    context,
    latent,
    latent_ramp,
) -> None:
    """Train or resume the variable-rate codec on folders of images/scenes."""
    from ground.train import TrainOptions
    from ground.train import train as run

    opts = TrainOptions(
        data=list(data),
        out=out,
        exclude=tuple(exclude),
        steps=steps,
        max_minutes=max_minutes,
        batch=batch,
        crop=crop,
        lr=lr,
        lr_min=lr_min,
        warmup=warmup,
        gray_prob=gray_prob,
        deep_prob=deep_prob,
        device=device,
        autocast=autocast,
        init=init,
        dec_blocks=dec_blocks,
        context=context,
        latent=latent,
        latent_ramp=latent_ramp,
    )
    run(opts, log=click.echo)


def _progress(label: str):
    """A click progress bar on a terminal, silence otherwise (CI logs, pipes)."""
    import sys

    if not sys.stderr.isatty():
        return None
    state: dict = {}

    def update(done: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = click.progressbar(length=total, label=label, file=sys.stderr)
            state["bar"].__enter__()
        state["bar"].update(1)
        if done == total:
            state["bar"].__exit__(None, None, None)

    return update


def _bands(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(b) for b in text.split(",")]
    except ValueError:
        raise click.BadParameter("use band numbers like 1,2,3") from None


@main.command()
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
    from onboard.compress import compress_scene
    from shared import zoo

    output = output or src.with_suffix(".fool")
    r = compress_scene(
        src,
        output,
        model,
        quality or zoo.DEFAULT_QUALITY,
        tile_size,
        _bands(bands),
        band_groups,
        runtime,
        flight_dir,
        threads,
        _progress("compress"),
        halo=halo,
        value_range=value_range,
        container_version=container_version,
    )
    click.echo(
        f"{output}: {r.bytes} bytes, {r.bpp:.3f} bpp ({r.bpp / r.bands:.3f} per band), "
        f"{r.tiles_coded} tiles coded, {r.tiles_skipped} empty, {r.megapixels_per_second:.2f} MP/s"
    )


@main.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="GeoTIFF to write [default: SRC.decoded.tif].")
@click.option("--threads", type=int, help="Intra-op threads of the synthesis.")
@click.option("--skip-damaged", is_flag=True, help="Leave tiles that fail their CRC empty instead of stopping.")
def decode(src, output, threads, skip_damaged) -> None:
    """Decode a .fool container into a GeoTIFF with the source's georeferencing."""
    from ground.decode import decode_container

    output = output or src.with_suffix(".decoded.tif")  # never the source scene's own name
    r = decode_container(src, output, threads, skip_damaged, _progress("decode"))
    click.echo(f"{output}: {r.tiles} tiles in {r.seconds:.2f} s")
    if r.failed:
        click.echo(f"warning: {len(r.failed)} damaged tiles left empty: {r.failed}", err=True)
        raise SystemExit(3)


@main.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(src, as_json) -> None:
    """Print a container's header and tile table summary."""
    import json

    from ground.inspect import describe

    d = describe(src)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    s = d["scene"]
    click.echo(f"{src}: FOOL container v{d['version']}, {d['bytes']} bytes")
    click.echo(f"  model     {d['model']['id']}  runtime {d.get('runtime')}  quality {d.get('quality')}")
    click.echo(
        f"  scene     {s['width']}x{s['height']}, {len(s['ranges'])} bands {s['dtype']} "
        f"(bits {s['bits']}), nodata {s['nodata']}, mask {s['mask']}"
    )
    click.echo(f"  groups    {s['groups']}  source bands {s['source_bands']}")
    ranges = ", ".join(f"{lo:g}..{hi:g}" for lo, hi in s["ranges"])
    click.echo(f"  ranges    {ranges}  inter-tile halo {s.get('halo', 0)} px")
    crs = (s["crs_wkt"] or "none").split("[")[0] + ("[" + s["crs_wkt"].split('"')[1] + "]" if s["crs_wkt"] else "")
    click.echo(f"  crs       {crs}  transform {s['transform']}")
    t = d["tiles"]
    click.echo(
        f"  tiles     {t['coded']} coded of {t['grid']} ({t['rows']}x{t['cols']} of {s['tile_size']} px), "
        f"{t['masked']} with masks; bytes min/mean/max {t['min_bytes']}/{t['mean_bytes']:.0f}/{t['max_bytes']}"
    )
    lay = d["layout"]
    click.echo(
        f"  bytes     header {lay['header']}, tile payloads {lay['payloads']}, table {lay['table']}, "
        f"footer {lay['footer']}"
    )
    click.echo(
        f"  rate      {d['bpp']:.3f} bpp ({d['bpp_per_band']:.3f} per band); "
        f"codestream {d['codestream_bpp']:.4f} bpp (payloads and table, as `fool eval` counts)"
    )


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.option("--name", default="fool-m", show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None, help="[default: models/]")
def release(checkpoint, name, out_dir) -> None:
    """Turn a training checkpoint into a shipped model (weights + entropy tables)."""
    from shared import zoo
    from shared.nn.release import release as run

    codec = run(checkpoint, name, out_dir or zoo.models_dir())
    click.echo(f"released {codec.model_id}")


@main.command()
@click.argument("scene", required=False, type=click.Path(path_type=Path))
@click.option("-q", "--quality", type=float, default=None, help="1..8 [default: the model default]")
@click.option("--model", default=None)
@click.option("--runtime", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True)
@click.option("--workdir", type=click.Path(path_type=Path), help="Keep the container and decoded scene here.")
def demo(scene, quality, model, runtime, workdir) -> None:
    """Run the whole pipeline (tile, compress, decode) on a scene and print the numbers."""
    from fool.demo import run_demo
    from shared import zoo

    r = run_demo(scene, quality or zoo.DEFAULT_QUALITY, model or zoo.DEFAULT_MODEL, workdir, runtime)
    if r.synthetic:
        click.echo("team data not found (set FOOL_DATA): using a generated 768x768 4-band scene")
    click.echo(f"scene        {r.scene}")
    click.echo(f"container    {r.container_bytes} bytes, {r.tiles} tiles")
    click.echo(f"rate         {r.bpp:.3f} bpp ({r.bpp_per_band:.3f} per band), ratio {r.ratio:.1f}:1")
    click.echo(f"quality      PSNR {r.psnr:.2f} dB (per band: {', '.join(f'{p:.2f}' for p in r.psnr_per_band)})")
    click.echo(f"time         compress {r.compress_s:.2f} s, decode {r.decode_s:.2f} s (incl. model load)")


@main.command("eval")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--model", "models", multiple=True, help="Shipped model(s) [default: the one(s) compress picks for the inputs]."
)
@click.option(
    "--codec",
    "codecs",
    multiple=True,
    default=("jpeg2000", "jpegxl", "webp", "jpeg", "ccsds121"),
    show_default=True,
    help="Reference codecs, repeated or comma-separated; ccsds121 (libaec) is the lossless reference for integer data.",
)
@click.option("--limit", type=int, help="Evaluate an evenly spread subset of this many images.")
@click.option("--tile-size", default=DEFAULT_TILE, show_default=True)
@click.option("--msssim", is_flag=True, help="Also compute MS-SSIM (slow on CPU).")
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    default=Path("rd.json"),
    show_default=True,
    help="JSON results; a PNG plot is written beside it.",
)
def eval_cmd(inputs, models, codecs, limit, tile_size, msssim, out) -> None:
    """Rate-distortion benchmark against JPEG 2000, JPEG XL, WebP and JPEG."""
    from ground.evaluate import default_models, evaluate, plot, save, table

    summary = evaluate(
        list(inputs),
        list(models) or default_models(list(inputs), limit),
        [c.strip() for item in codecs for c in item.split(",") if c.strip()],
        limit=limit,
        tile_size=tile_size,
        with_msssim=msssim,
        log=click.echo,
    )
    save(summary, out)
    plot(summary, out.with_suffix(".png"), ", ".join(p.name for p in inputs))
    click.echo(table(summary))
    click.echo(f"wrote {out} and {out.with_suffix('.png')}")


@main.command("export-onnx")
@click.option("--model", default="fool-m", show_default=True)
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Flight export folder.")
def export_onnx(model, out_dir) -> None:
    """Export the onboard graph, entropy tables and a manifest for ONNX Runtime."""
    from shared import zoo
    from shared.nn.export import export_flight

    m = export_flight(zoo.find(model), out_dir)
    click.echo(f"exported {m['model_id']} (opset {m['opset']}) to {out_dir}")


@main.command("plot-log")
@click.argument("csv_path", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("train_log.png"), show_default=True)
def plot_log(csv_path, out) -> None:
    """Plot a training run's CSV log (loss, bpp, PSNR against step)."""
    from ground.train import plot_log as run

    run(csv_path, out)
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
