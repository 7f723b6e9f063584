"""Downstream task B: does a cloud and cloud-shadow mask survive compression?

The ground runs a masker on every decoded scene before anything else uses it, so a codec that
moves clouds or shadows costs more than PSNR shows. This module runs ukis-csmask (DLR; a
U-Net with an EfficientNet-B4 encoder, ONNX weights shipped inside the wheel, no network at run
time) on the original scene and on the same scene decoded from FOOL and from JPEG 2000 at the
same file size, and scores the decoded masks against the original's by intersection over union.

What ukis-csmask wants (read from ``ukis_csmask/mask.py`` and its model cards, v1.0.0): an
array (rows, cols, bands) of float32 reflectance in [0, 1] with at least blue, green, red, NIR
(4-band model) or also SWIR1 and SWIR2 (6-band model, better), ideally at ~30 m; a Level-1C
(top of atmosphere) or Level-2A model; it z-scores each band with its training statistics,
cuts 256x256 tiles with 20 % overlap (symmetric padding, so smaller images work but it warns),
blends the tile softmaxes and returns classes 0 = clear (background), 1 = cloud, 2 = cloud shadow.
Its ``valid`` output (cloud and shadow dilated by 4 px) is not used here.

Reflectance is ``DN * scale``: 1e-4 for Sentinel-2 L1C DN (and Landsat Collection 2 after its
own offset, which this does not apply), 1/255 for 8-bit products that have no calibration.
For 8-bit or uncalibrated DN this is a stretch, not reflectance; the summary records the scale.

Which team scenes fit (``../shared/data/scenes``; mask fractions measured with ukis-csmask 1.0.0):

- ``naip/`` (10 dates): R, G, B, NIR uint8 at 5 m, 934x723, so ``bands=[3, 2, 1, 4]``,
  ``scale=1/255``. Fits the 4-band model, but 6x finer than it was trained for and not
  reflectance. NAIP is flown cloud-free: the reference masks are >= 99.4 % clear, with a few
  hundred to a few thousand pixels of spurious "cloud" on bright fields and roofs, no shadow.
- ``worldview3/ms1.tif``: 4 bands, float64 holding integer DN 1..2046 (11-bit), 300x300 at
  1.0 m (SpaceNet via solaris' preprocessing tutorial, whose NDVI uses bands 4 and 3 as NIR and
  red, so the order is blue, green, red, NIR1): ``bands=[1, 2, 3, 4]``, ``scale=1/2047``
  (uncalibrated: the absCalFactor metadata is not in the file). Fits the 4-band model at 30x
  finer resolution; its mask is 100 % clear.
- ``landsat_composites/``: SWIR1, NIR, R, G. No blue band, so it does not fit (and annual
  composites are cloud-free by construction).
- ``sentinel2_l1c_20m/``: B05, B06, B07, B8A, B11, B12, one file per band. No blue, green or
  red, so it does not fit, although it is the only L1C scene with the right resolution.
- ``landsat7/RGB.byte.tif`` (no NIR), ``misc/`` (RGB, or RGBA with constant colour) do not fit.

So the team data has no scene with real clouds: on it this task measures whether compression
makes the masker invent or drop cloud, which is what an all-clear reference can show, and not
how well cloud edges survive. The function works unchanged on a cloudy Sentinel-2 or Landsat
scene with B, G, R, NIR(, SWIR1, SWIR2) in one file.

IoU per class c is |R_c & D_c| / |R_c | D_c| between the reference mask R and the decoded mask D.
A class absent from both masks has no IoU (``None``) and is left out of the mean; a class in
one mask only scores 0. Means over scenes leave out ``None`` the same way. ``pooled_iou`` sums
intersections and unions over all scenes first, which weighs a rare class by its pixels instead
of letting a scene with three cloud pixels count as much as one with thousands. On a
cloud-free reference this rule is harsh on purpose: a decoded mask with a handful of invented
shadow pixels scores 0 for shadow, so its mean is at most 1/2 even when 99.9 % of pixels agree;
``agreement`` (share of equal pixels) and the per-class IoU say how large the disagreement is.

Rates count whole files, as ``fool eval`` does: the ``.fool`` container, and JPEG 2000's raw
codestream. JPEG 2000 codes all the scene's bands as one multi-component codestream (OpenJPEG
through imagecodecs, no colour transform for other than 3 components) sized by bisection to at
most the FOOL file's bytes (``fool.evaluate.j2k_at_rate``). ``bpp_per_band`` is
bytes * 8 / (pixels * bands of the scene): all bands are sent, whichever the mask reads.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fool.shared.errors import InputError

CLASSES = ("clear", "cloud", "shadow")
BAND_ORDERS = {
    4: ["blue", "green", "red", "nir"],
    6: ["blue", "green", "red", "nir", "swir16", "swir22"],
}
DEFAULT_QUALITIES = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)
#: Issue 20's target: the mean IoU the decoded masks must reach, at at most this rate.
TARGET_MEAN_IOU = 0.9
TARGET_BPP_PER_BAND = 0.5

Window = tuple[int, int, int, int]  # col_off, row_off, width, height (pixels)


def evaluate_cloudmask(
    scenes: Sequence[Path],
    bands: Sequence[int],
    scale: float,
    qualities: Sequence[float] = DEFAULT_QUALITIES,
    product: str = "l1c",
    window: Window | None = None,
    max_size: int | None = 1024,
    gsd: float | None = None,
    threads: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Mask agreement of FOOL and of JPEG 2000 at FOOL's rates, scene by scene and on average.

    ``bands`` are the scene's 1-based band numbers of blue, green, red, NIR (and SWIR1, SWIR2),
    the same for every scene. ``window`` crops every scene (col_off, row_off, width, height);
    without one, a scene wider or taller than ``max_size`` is cut to its centred
    ``max_size`` square (None: whole scenes), because FOOL's ground decode runs at ~0.05 MP/s
    and a full scene at 8 qualities takes a long time. The crop, with all its bands, is what is
    compressed. ``gsd`` (metres) block-averages the reflectance to about that sample distance
    before masking (ukis-csmask is trained at ~30 m); the codecs always see native pixels.
    ``threads`` goes to ONNX Runtime (0: its choice). ``progress`` receives one line per step.
    """
    bands = [int(b) for b in bands]
    if len(bands) not in BAND_ORDERS:
        raise InputError(
            f"ukis-csmask needs 4 bands (blue, green, red, NIR) or 6 (and SWIR1, SWIR2); got {len(bands)}: {bands}"
        )
    if not scale > 0 or not math.isfinite(scale):
        raise InputError(f"scale turns DN into reflectance and must be positive, got {scale}")
    if product.lower() not in ("l1c", "l2a"):
        raise InputError(f"product must be 'l1c' (top of atmosphere) or 'l2a' (surface), got {product!r}")
    if not scenes:
        raise InputError("give at least one scene")
    if gsd is not None and not gsd > 0:
        raise InputError(f"gsd must be a positive number of metres, got {gsd}")
    qualities = sorted({float(q) for q in qualities})
    for q in qualities:
        if not 1.0 <= q <= 8.0:
            raise InputError(f"quality {q} is outside 1..8")
    try:
        import ukis_csmask  # noqa: F401
    except ImportError as e:
        raise InputError("cloud masking needs ukis-csmask: pip install 'ukis-csmask>=1.0'") from e
    say = progress or (lambda _: None)
    masker = _Masker(BAND_ORDERS[len(bands)], product.lower(), threads)
    engines: dict[str, tuple[Any, Any]] = {}
    per_scene = []
    for i, path in enumerate(scenes):
        say(f"scene {i + 1}/{len(scenes)}: {path}")
        per_scene.append(_one_scene(Path(path), bands, scale, qualities, window, max_size, gsd, masker, engines, say))
    return {
        "scenes": per_scene,
        "points": _mean_points(per_scene),
        "summary": _summary(per_scene, bands, scale, product.lower(), gsd, qualities),
    }


class _Masker:
    """ukis-csmask with the options fixed, run on (bands, rows, cols) reflectance."""

    def __init__(self, band_order: list[str], product: str, threads: int) -> None:
        self.band_order, self.product, self.threads = band_order, product, threads

    def __call__(self, refl: np.ndarray) -> np.ndarray:
        from ukis_csmask.mask import CSmask

        img = np.ascontiguousarray(np.nan_to_num(refl, nan=0.0).transpose(1, 2, 0), dtype=np.float32)
        with warnings.catch_warnings():
            # the under-256-px warning: the scene's summary records the masked size instead
            warnings.filterwarnings("ignore", message=".*smaller than the internal tiling size.*")
            cs = CSmask(
                img,
                band_order=self.band_order,
                product_level=self.product,
                intra_op_num_threads=self.threads,
                inter_op_num_threads=1 if self.threads else 0,
                providers=["CPUExecutionProvider"],
            )
        return np.asarray(cs.csm[..., 0], dtype=np.uint8)


def mask_iou(reference: np.ndarray, other: np.ndarray) -> dict[str, Any]:
    """Per-class IoU (None where the class is in neither mask), their mean, pixel agreement and
    the per-class intersections and unions that pooling over scenes needs."""
    out: dict[str, Any] = {"iou": {}, "inter": {}, "union": {}}
    for k, name in enumerate(CLASSES):
        a, b = reference == k, other == k
        inter, union = int(np.count_nonzero(a & b)), int(np.count_nonzero(a | b))
        out["iou"][name] = inter / union if union else None
        out["inter"][name], out["union"][name] = inter, union
    present = [v for v in out["iou"].values() if v is not None]
    out["mean_iou"] = float(np.mean(present)) if present else None
    out["agreement"] = float(np.mean(reference == other))
    return out


def _one_scene(
    path: Path,
    bands: list[int],
    scale: float,
    qualities: list[float],
    window: Window | None,
    max_size: int | None,
    gsd: float | None,
    masker: _Masker,
    engines: dict[str, tuple[Any, Any]],
    say: Callable[[str], None],
) -> dict[str, Any]:
    import rasterio

    from fool.ground.decode import decode_container
    from fool.onboard.compress import compress_scene
    from fool.shared.zoo import model_for

    with tempfile.TemporaryDirectory() as tmp:
        src, win, img, dtype, res = _prepare(path, bands, window, max_size, Path(tmp))
        count, height, width = img.shape
        factor = _factor(gsd, res, path)

        def mask(data: np.ndarray) -> np.ndarray:
            return masker(_downsample(data[[b - 1 for b in bands]].astype(np.float64) * scale, factor))

        reference = mask(img)
        fractions = {c: float(np.mean(reference == k)) for k, c in enumerate(CLASSES)}
        say(f"  reference mask {reference.shape[1]}x{reference.shape[0]}: " + _fmt_fractions(fractions))
        raw_bits = np.dtype(dtype).itemsize * 8
        original = {"bpp_per_band": float(raw_bits), **mask_iou(reference, mask(img))}
        model = model_for(dtype)
        engine, synthesis = _engine(model, engines)
        hwc, j2k_bits, back = _j2k_input(img)
        fool_points, j2k_points = [], []
        fool_file, decoded = Path(tmp) / "x.fool", Path(tmp) / "x.tif"
        for q in qualities:
            compress_scene(src, fool_file, quality=q, engine=engine)
            size = fool_file.stat().st_size
            decode_container(fool_file, decoded, synthesis=synthesis)
            with rasterio.open(decoded) as ds:
                rec = ds.read()
            fool_file.unlink()
            decoded.unlink()
            fp = {"quality": q, "bytes": size, "bpp_per_band": 8 * size / (height * width * count)}
            fool_points.append(fp | mask_iou(reference, mask(rec)))
            stream = _j2k_at_bytes(hwc, size, j2k_bits)
            jp = {"quality": q, "bytes": len(stream), "bpp_per_band": 8 * len(stream) / (height * width * count)}
            j2k_points.append(jp | mask_iou(reference, mask(back(stream))))
            say(
                f"  q{q:g}: fool {fp['bpp_per_band']:.3f} bpp/band mIoU {_fmt(fool_points[-1]['mean_iou'])}, "
                f"jpeg2000 {jp['bpp_per_band']:.3f} bpp/band mIoU {_fmt(j2k_points[-1]['mean_iou'])}"
            )
    return {
        "path": str(path),
        "window": list(win),
        "size": [height, width],
        "bands_coded": count,
        "mask_bands": bands,
        "dtype": dtype,
        "model": model,
        "pixel_size_m": res,
        "mask_size": list(reference.shape),
        "mask_block": factor,
        "reference_fractions": fractions,
        "points": {"original": original, "fool": fool_points, "jpeg2000": j2k_points},
    }


def _prepare(
    path: Path, bands: list[int], window: Window | None, max_size: int | None, tmp: Path
) -> tuple[Path, Window, np.ndarray, str, float | None]:
    """-> (file to compress, window used, its pixels (C, H, W), dtype, pixel size in metres or None).

    A cropped scene is written as a GeoTIFF with every band, the scene's georeferencing and
    nodata, so the codec sees what an operator would send of that area."""
    import rasterio
    from rasterio.windows import Window as RioWindow

    try:
        ds = rasterio.open(path)
    except rasterio.errors.RasterioIOError as e:
        raise InputError(f"cannot read {path}: {e}") from e
    with ds:
        bad = [b for b in bands if not 1 <= b <= ds.count]
        if bad:
            raise InputError(f"{path} has {ds.count} bands; band numbers {bad} do not exist (they are 1-based)")
        if window is None:
            w, h = ds.width, ds.height
            if max_size is not None:
                w, h = min(w, max_size), min(h, max_size)
            window = ((ds.width - w) // 2, (ds.height - h) // 2, w, h)
        col, row, w, h = (int(v) for v in window)
        col, row = max(col, 0), max(row, 0)
        w, h = min(w, ds.width - col), min(h, ds.height - row)
        if w <= 0 or h <= 0:
            raise InputError(f"window {window} lies outside {path} ({ds.width}x{ds.height})")
        win = (col, row, w, h)
        rio_win = RioWindow(col, row, w, h)
        img = ds.read(window=rio_win)
        res = None
        if ds.crs is not None and ds.crs.is_projected and ds.crs.linear_units in ("metre", "meter", "m"):
            res = float(abs(ds.transform.a))
        if win == (0, 0, ds.width, ds.height):
            return path, win, img, str(img.dtype), res
        profile = {
            "driver": "GTiff",
            "width": w,
            "height": h,
            "count": ds.count,
            "dtype": ds.dtypes[0],
            "crs": ds.crs,
            "transform": ds.window_transform(rio_win),
            "nodata": ds.nodata,
        }
        colorinterp = ds.colorinterp
    out = tmp / f"{path.stem}_crop.tif"
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(img)
        dst.colorinterp = colorinterp
    return out, win, img, str(img.dtype), res


def _factor(gsd: float | None, res: float | None, path: Path) -> int:
    if gsd is None:
        return 1
    if res is None:
        raise InputError(f"{path} has no projected CRS in metres, so gsd={gsd} m cannot be applied")
    return max(1, round(gsd / res))


def _downsample(x: np.ndarray, k: int) -> np.ndarray:
    """Mean over k x k blocks (a partial last row or column of blocks is dropped)."""
    if k == 1:
        return x
    c, h, w = x.shape
    h, w = h // k * k, w // k * k
    if h == 0 or w == 0:
        raise InputError(f"the scene is smaller than one {k}x{k} block at the requested gsd")
    return x[:, :h, :w].reshape(c, h // k, k, w // k, k).mean(axis=(2, 4))


def _engine(model: str, cache: dict[str, tuple[Any, Any]]) -> tuple[Any, Any]:
    """The onboard runtime and ground synthesis of ``model``, loaded once for all scenes."""
    if model not in cache:
        from fool.ground.synthesis import TorchSynthesis
        from fool.onboard.compress import load_runtime

        engine = load_runtime("torch", model, None, None)
        cache[model] = (engine, TorchSynthesis(model, engine[1].weights_sha256))
    return cache[model]


def _j2k_input(img: np.ndarray) -> tuple[np.ndarray, int, Callable[[bytes], np.ndarray]]:
    """-> (H, W, C) integers JPEG 2000 codes, their bit depth, and a decoder back to the scene's values.

    Integer bands are coded as they are. Float bands holding whole numbers in 0..65535 (WorldView-3
    ms1.tif) are coded as those integers; other float bands are stretched from their min..max to
    16 bits, as FOOL stretches float bands by their range."""
    import imagecodecs as ic

    from fool.shared.bands import bits_for_max

    dtype = img.dtype
    if np.issubdtype(dtype, np.integer):
        if img.min() < 0 or img.max() > 65535:
            raise InputError(f"JPEG 2000 reference: {dtype} values outside 0..65535 are not handled")
        ints, lo, step = img.astype(np.uint16 if img.max() > 255 else np.uint8), 0.0, 1.0
    else:
        finite = np.nan_to_num(img, nan=0.0, posinf=0.0, neginf=0.0)
        if np.array_equal(finite, np.round(finite)) and finite.min() >= 0 and finite.max() <= 65535:
            ints, lo, step = finite.astype(np.uint16), 0.0, 1.0
        else:
            lo = float(finite.min())
            step = max(float(finite.max()) - lo, 1e-12) / 65535
            ints = np.round((finite - lo) / step).astype(np.uint16)
    bits = 8 if ints.dtype == np.uint8 else bits_for_max(float(ints.max()), "uint16")
    hwc = np.ascontiguousarray(ints.transpose(1, 2, 0))

    def back(stream: bytes) -> np.ndarray:
        out = np.asarray(ic.jpeg2k_decode(stream)).reshape(hwc.shape).transpose(2, 0, 1)
        return (out.astype(np.float64) * step + lo).astype(dtype) if step != 1.0 or lo else out.astype(dtype)

    return hwc, bits, back


def _j2k_at_bytes(hwc: np.ndarray, size: int, bits: int) -> bytes:
    from fool.evaluate import j2k_at_rate

    return j2k_at_rate(hwc, 8 * size / (hwc.shape[0] * hwc.shape[1]), bits)


def _nanmean(values: list[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def _mean_point(points: list[dict[str, Any]], quality: float | None) -> dict[str, Any]:
    """Means over scenes of one setting, plus IoU pooled over their pixels."""
    out: dict[str, Any] = {} if quality is None else {"quality": quality}
    out["bpp_per_band"] = float(np.mean([p["bpp_per_band"] for p in points]))
    out["iou"] = {c: _nanmean([p["iou"][c] for p in points]) for c in CLASSES}
    out["mean_iou"] = _nanmean([p["mean_iou"] for p in points])
    out["agreement"] = float(np.mean([p["agreement"] for p in points]))
    inter = {c: sum(p["inter"][c] for p in points) for c in CLASSES}
    union = {c: sum(p["union"][c] for p in points) for c in CLASSES}
    out["pooled_iou"] = {c: inter[c] / union[c] if union[c] else None for c in CLASSES}
    out["pooled_mean_iou"] = _nanmean(list(out["pooled_iou"].values()))
    return out


def _mean_points(scenes: list[dict[str, Any]]) -> dict[str, Any]:
    points: dict[str, Any] = {"original": _mean_point([s["points"]["original"] for s in scenes], None)}
    for codec in ("fool", "jpeg2000"):
        qualities = [p["quality"] for p in scenes[0]["points"][codec]]
        points[codec] = [_mean_point([s["points"][codec][i] for s in scenes], q) for i, q in enumerate(qualities)]
    return points


def _meets(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether some setting reaches the target mean IoU at no more than the target rate."""
    ok = [
        p
        for p in points
        if p["mean_iou"] is not None and p["mean_iou"] >= TARGET_MEAN_IOU and p["bpp_per_band"] <= TARGET_BPP_PER_BAND
    ]
    best = min(ok, key=lambda p: p["bpp_per_band"]) if ok else None
    return {
        "met": best is not None,
        "lowest_bpp_per_band": None if best is None else best["bpp_per_band"],
        "quality": None if best is None else best["quality"],
    }


def _summary(
    scenes: list[dict[str, Any]],
    bands: list[int],
    scale: float,
    product: str,
    gsd: float | None,
    qualities: list[float],
) -> dict[str, Any]:
    means = _mean_points(scenes)
    target: dict[str, Any] = {"mean_iou": TARGET_MEAN_IOU, "bpp_per_band": TARGET_BPP_PER_BAND}
    for codec in ("fool", "jpeg2000"):
        target[codec] = _meets(means[codec]) | {
            "scenes_met": sum(_meets(s["points"][codec])["met"] for s in scenes),
        }
    return {
        "task": "cloud/shadow mask agreement (ukis-csmask) of decoded scenes against the original",
        "masker": _masker_version(),
        "classes": list(CLASSES),
        "band_order": BAND_ORDERS[len(bands)],
        "bands": bands,
        "scale": scale,
        "product": product,
        "gsd_m": gsd,
        "qualities": qualities,
        "scene_count": len(scenes),
        "rate": "whole .fool file / raw J2K codestream (all scene bands, one multi-component stream), "
        "bytes*8/(pixels*bands)",
        "iou_rule": "class absent from both masks: no IoU, left out of means; present in one only: 0",
        "reference_fractions": {c: float(np.mean([s["reference_fractions"][c] for s in scenes])) for c in CLASSES},
        "target": target,
    }


def _masker_version() -> str:
    try:
        from importlib.metadata import version

        return f"ukis-csmask {version('ukis-csmask')}"
    except Exception:  # noqa: BLE001 - a version string is informative, never required
        return "ukis-csmask"


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _fmt_fractions(f: dict[str, float]) -> str:
    return ", ".join(f"{c} {100 * v:.2f} %" for c, v in f.items())


def table(result: dict[str, Any]) -> str:
    """Mean IoU against bits per band, one line per quality, what a person reads after a run."""
    pts = result["points"]
    lines = [
        f"original (mask rerun): mIoU {_fmt(pts['original']['mean_iou'])}",
        "quality  fool bpp/band  mIoU   pooled  agree   j2k bpp/band  mIoU   pooled  agree",
    ]
    for f, j in zip(pts["fool"], pts["jpeg2000"], strict=True):
        lines.append(
            f"{f['quality']:>7g}  {f['bpp_per_band']:>13.3f}  {_fmt(f['mean_iou'])}  {_fmt(f['pooled_mean_iou'])}"
            f"   {f['agreement']:.4f}  {j['bpp_per_band']:>12.3f}  {_fmt(j['mean_iou'])}  {_fmt(j['pooled_mean_iou'])}"
            f"   {j['agreement']:.4f}"
        )
    t = result["summary"]["target"]
    for codec in ("fool", "jpeg2000"):
        lines.append(
            f"target mIoU >= {t['mean_iou']} at <= {t['bpp_per_band']} bpp/band, {codec}: "
            + ("met" if t[codec]["met"] else "not met")
            + (
                f" from {t[codec]['lowest_bpp_per_band']:.3f} bpp/band (q{t[codec]['quality']:g})"
                if t[codec]["met"]
                else ""
            )
            + f"; {t[codec]['scenes_met']} of {result['summary']['scene_count']} scenes alone"
        )
    return "\n".join(lines)


def plot_cloudmask(result: dict[str, Any], path: Path, title: str | None = None) -> None:
    """Mean IoU against bits per pixel per band for FOOL and JPEG 2000, with the target box, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for codec, style in (("fool", "o-"), ("jpeg2000", "s--")):
        pts = [p for p in result["points"][codec] if p["mean_iou"] is not None]
        ax.plot([p["bpp_per_band"] for p in pts], [p["mean_iou"] for p in pts], style, ms=4, label=codec)
    ax.axhline(TARGET_MEAN_IOU, color="grey", lw=0.8, ls=":")
    ax.axvline(TARGET_BPP_PER_BAND, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("bits per pixel per band (whole file)")
    ax.set_ylabel("mean IoU of the cloud/shadow mask vs original")
    n = result["summary"]["scene_count"]
    ax.set_title(title or f"ukis-csmask agreement, {n} scene{'s' if n != 1 else ''}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
