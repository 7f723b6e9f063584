"""`fool compress`: a GeoTIFF/JPEG 2000 scene -> a .fool container (the onboard side)."""

from __future__ import annotations

from pathlib import Path

import click

from fool.cli.options import band_list, progress
from fool.shared.geometry import DEFAULT_TILE
from fool.shared.zoo import DEEP_MODEL, DEFAULT_LAMBDA, DEFAULT_MODEL, DEFAULT_QUALITY


@click.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Container to write [default: SRC.fool].")
@click.option(
    "-q",
    "--quality",
    type=float,
    default=None,
    help="Rate on a 1 (fewest bits) .. L (the learned codec's best: 8 for fool-m) scale; fractions allowed; "
    "L+1 .. L+4 code every tile with JPEG 2000 (about 38, 41.5, 44.5, 47 dB). [default: the model's level "
    f"trained at λ {DEFAULT_LAMBDA:g}: {DEFAULT_QUALITY:g} for fool-m]",
)
@click.option(
    "--modes",
    type=click.Choice(["learned", "auto"]),
    default="learned",
    show_default=True,
    help="Tile modes: the learned codec only, or per tile the learned codec or JPEG 2000, whichever has the "
    "lower rate-distortion cost (runs the synthesis on board: slower).",
)
@click.option(
    "--max-error",
    type=click.IntRange(0, 255),
    default=None,
    help="Code every tile with JPEG-LS so that no sample decodes more than N raw units from the source "
    "(0 = lossless; uint8 and uint16 scenes; overrides -q).",
)
@click.option(
    "--intra-wavelet",
    type=click.Choice(["97", "53"]),
    default="97",
    show_default=True,
    help="JPEG 2000 wavelet of --modes auto and qualities above the learned levels: 97 (fewer bytes; float "
    "decode, may differ by 1 grey level across OpenJPEG builds/CPUs) or 53 (reversible: integer-exact decode "
    "everywhere).",
)
@click.option(
    "--model",
    default=None,
    help=f"Shipped model name. [default: {DEEP_MODEL} for >8-bit integer scenes, else {DEFAULT_MODEL}]",
)
@click.option("--tile-size", default=DEFAULT_TILE, show_default=True, help="Tile side in pixels (multiple of 64).")
@click.option("--bands", help="Bands to code, e.g. 1,2,3 [default: all].")
@click.option("--band-groups", help="Override band grouping, e.g. '1,2,3;4' (groups of 1 or 3).")
@click.option("--runtime", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True)
@click.option(
    "--flight", "flight_dir", type=click.Path(path_type=Path), help="ONNX flight export (for --runtime onnx)."
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="Intra-op threads of the runtime [onnx: 1 per worker; torch: all cores].",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Batches coded side by side [onnx: the usable cores; torch: 1]; the file is the same for any number.",
)
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
@click.option("--budget", type=int, help="Fit the whole container into this many bytes (rate control per tile).")
@click.option("--bpp", type=float, help="Fit the whole container into this many bits per pixel (all bands).")
@click.option(
    "--roi",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="GeoJSON region of interest: its tiles first; the rest at the lowest quality (see --roi-outside).",
)
@click.option(
    "--roi-crs", type=click.Choice(["lonlat", "scene"]), default="lonlat", show_default=True, help="CRS of --roi."
)
@click.option("--roi-outside", type=click.Choice(["lowest", "skip"]), default="lowest", show_default=True)
@click.option("--flat", type=click.Choice(["lowest", "skip"]), help="Near-constant tiles: lowest quality, or not sent.")
@click.option(
    "--cloudy", type=click.Choice(["lowest", "skip"]), help="Bright (cloud-test) tiles: lowest quality, or not sent."
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
    workers,
    halo,
    value_range,
    budget,
    bpp,
    roi,
    roi_crs,
    roi_outside,
    flat,
    cloudy,
    modes,
    max_error,
    intra_wavelet,
) -> None:
    """Compress a GeoTIFF/JPEG 2000 scene into a .fool container."""
    from fool.onboard.compress import CompressOptions, compress_scene

    output = output or src.with_suffix(".fool")
    opts = CompressOptions(
        model=model,
        quality=quality,
        tile_size=tile_size,
        bands=band_list(bands),
        band_groups=band_groups,
        runtime=runtime,
        flight_dir=flight_dir,
        threads=threads,
        workers=workers,
        halo=halo,
        value_range=value_range,
        budget=budget,
        bpp=bpp,
        roi=roi,
        roi_crs=roi_crs,
        roi_outside=roi_outside,
        flat=flat,
        cloudy=cloudy,
        modes=modes,
        max_error=max_error,
        intra_wavelet=int(intra_wavelet),
    )
    r = compress_scene(src, output, opts, progress("compress"))
    click.echo(
        f"{output}: {r.bytes} bytes, {r.bpp:.3f} bpp ({r.bpp / r.bands:.3f} per band), "
        f"{r.tiles_coded} tiles coded, {r.tiles_skipped} not sent, {r.megapixels_per_second:.2f} MP/s"
    )
    if set(r.modes) - {"learned"}:
        click.echo("  tile modes: " + ", ".join(f"{k} {v}" for k, v in sorted(r.modes.items())))
