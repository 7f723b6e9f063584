"""`fool eval`: rate-distortion benchmark of FOOL against classical codecs at matched rates.

Every number in the README and model card comes from here. Rates count codestream bytes
only (our tile payloads and tile table; raw J2K codestreams; JPEG XL/WebP/JPEG
files), PSNR uses the peak of the real bit depth, and aggregates are means over images per
setting.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fool.shared.bands import bits_for_max
from fool.shared.errors import InputError
from fool.shared.geometry import DEFAULT_TILE

OURS_QUALITIES = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)
J2K_PSNR_TARGETS = (24, 27, 30, 33, 36, 39, 42, 46)
JXL_DISTANCES = (8.0, 5.0, 3.0, 2.0, 1.4, 1.0, 0.6, 0.3)
QUALITY_LEVELS = (10, 25, 40, 60, 75, 85, 92, 97)
REFERENCE_CODECS = ("jpeg2000", "jpegxl", "webp", "jpeg", "ccsds121")


@dataclass
class Point:
    codec: str
    setting: float
    image: str
    bpp: float
    psnr: float
    msssim: float | None
    encode_s: float
    decode_s: float
    pixels: int


def read_image(path: Path) -> tuple[np.ndarray, int]:
    """(C, H, W) raw values and the bit depth used as PSNR peak."""
    import rasterio

    with rasterio.open(path) as ds:
        data = ds.read()
    bits = 8 if data.dtype == np.uint8 else bits_for_max(data.max(), str(data.dtype))
    return data, bits


def psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(peak**2 / mse) if mse > 0 else 100.0


MSSSIM = {"enabled": False}


def msssim(a: np.ndarray, b: np.ndarray, peak: float) -> float | None:
    """MS-SSIM (5 scales; needs > 160 px). Off unless asked for: it costs more than the codecs."""
    if not MSSSIM["enabled"] or min(a.shape[1:]) <= 160:
        return None
    import torch
    from pytorch_msssim import ms_ssim

    ta = torch.from_numpy(a.astype(np.float32))[:, None]
    tb = torch.from_numpy(b.astype(np.float32))[:, None]
    return float(ms_ssim(ta, tb, data_range=peak).mean())


def _classical(name: str, bits: int, channels: int):
    """-> (encode(img HWC, setting) -> bytes, decode(bytes) -> HWC, settings) or None if unsupported."""
    import imagecodecs as ic

    if name == "jpeg2000":
        return (
            lambda x, s: ic.jpeg2k_encode(x, level=s, codecformat="J2K", bitspersample=bits if bits > 8 else None),
            ic.jpeg2k_decode,
            J2K_PSNR_TARGETS,
        )
    if name == "jpegxl" and channels in (1, 3):
        return (
            lambda x, s: ic.jpegxl_encode(x, distance=s, bitspersample=bits if bits > 8 else None, effort=7),
            ic.jpegxl_decode,
            JXL_DISTANCES,
        )
    if name == "webp" and bits == 8 and channels == 3:
        return (lambda x, s: ic.webp_encode(x, level=s, lossless=False), ic.webp_decode, QUALITY_LEVELS)
    if name == "jpeg" and bits == 8 and channels in (1, 3):
        return (lambda x, s: ic.jpeg8_encode(x, level=s), ic.jpeg8_decode, QUALITY_LEVELS)
    return None


LOSSLESS = ("ccsds121",)


def eval_lossless(name: str, path: Path, img: np.ndarray, bits: int) -> list[Point]:
    """CCSDS 121.0 (libaec, Rice coding after unit-delay prediction), band by band: the lossless
    coder that flies today, and the ceiling any lossy rate should be read against."""
    import imagecodecs as ic

    if name != "ccsds121" or not np.issubdtype(img.dtype, np.integer):
        return []
    size, t_enc, t_dec = 0, 0.0, 0.0
    for band in img:
        band = np.ascontiguousarray(band)
        t0 = time.perf_counter()
        data = ic.aec_encode(band, bitspersample=bits)
        t1 = time.perf_counter()
        # libaec decodes whole blocks: the output may run a few samples past the band
        back = np.frombuffer(ic.aec_decode(data, bitspersample=bits), band.dtype)[: band.size]
        t_enc, t_dec = t_enc + t1 - t0, t_dec + time.perf_counter() - t1
        if not np.array_equal(back.reshape(band.shape), band):
            raise RuntimeError(f"libaec did not round-trip {path}")
        size += len(data)
    pixels = img.shape[1] * img.shape[2]
    return [Point(name, 0.0, str(path), 8 * size / pixels, math.inf, None, t_enc, t_dec, pixels)]


def eval_classical(name: str, path: Path, img: np.ndarray, bits: int) -> list[Point]:
    spec = _classical(name, bits, img.shape[0])
    if spec is None:
        return []
    enc, dec, settings = spec
    hwc = np.ascontiguousarray(img.transpose(1, 2, 0) if img.shape[0] > 1 else img[0])
    peak = float(2**bits - 1)
    points = []
    for s in settings:
        t0 = time.perf_counter()
        data = enc(hwc, s)
        t1 = time.perf_counter()
        out = np.asarray(dec(data))
        t2 = time.perf_counter()
        out = out.reshape(hwc.shape).transpose(2, 0, 1) if img.shape[0] > 1 else out.reshape(1, *hwc.shape)
        points.append(
            Point(
                name,
                float(s),
                str(path),
                8 * len(data) / (img.shape[1] * img.shape[2]),
                psnr(img, out, peak),
                msssim(img, out, peak),
                t1 - t0,
                t2 - t1,
                img.shape[1] * img.shape[2],
            )
        )
    return points


def eval_ours(
    model: str,
    path: Path,
    img: np.ndarray,
    bits: int,
    qualities,
    engine,
    synthesis,
    tile_size: int = DEFAULT_TILE,
    label: str | None = None,
    **compress_opts,
) -> list[Point]:
    """Our codec through the real CLI path (container + GeoTIFF), one point per quality.

    ``compress_opts`` (halo, value_range) reach :func:`compress_scene`; ``label`` names the
    curve when one model is run in several configurations (bench/ablation.py).
    """
    import rasterio

    from fool.ground.decode import decode_container
    from fool.onboard.compress import compress_scene

    peak = float(2**bits - 1)
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        fool, out = Path(tmp) / "x.fool", Path(tmp) / "x.tif"
        for q in qualities:
            r = compress_scene(path, fool, model, q, tile_size=tile_size, engine=engine, **compress_opts)
            t1 = time.perf_counter()
            decode_container(fool, out, synthesis=synthesis)
            t2 = time.perf_counter()
            with rasterio.open(out) as ds:
                rec = ds.read()
            points.append(
                Point(
                    label or model,
                    q,
                    str(path),
                    8 * r.codestream_bytes / r.pixels,
                    psnr(img, rec, peak),
                    msssim(img, rec, peak),
                    r.seconds,
                    t2 - t1,
                    r.pixels,
                )
            )
    return points


def mean_curve(points: list[Point], codec: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    settings = sorted({p.setting for p in points if p.codec == codec})
    rows = [[p for p in points if p.codec == codec and p.setting == s] for s in settings]
    bpp = np.array([np.mean([p.bpp for p in r]) for r in rows])
    ps = np.array([np.mean([p.psnr for p in r]) for r in rows])
    ss = [[p.msssim for p in r if p.msssim is not None] for r in rows]
    ms = np.array([np.mean(s) if s else np.nan for s in ss])
    order = np.argsort(bpp)
    return bpp[order], ps[order], ms[order]


def bd_rate(rate_a, dist_a, rate_b, dist_b) -> float | None:
    """Bjøntegaard delta rate (%) of B against A over their overlapping quality range.

    Negative means B needs fewer bits for the same quality. Cubic fit of log-rate against
    quality, integrated over the overlap (Bjøntegaard, VCEG-M33).
    """
    ok_a, ok_b = np.isfinite(dist_a), np.isfinite(dist_b)
    ra, da, rb, db = np.log(rate_a[ok_a]), dist_a[ok_a], np.log(rate_b[ok_b]), dist_b[ok_b]
    if len(da) < 4 or len(db) < 4:
        return None
    lo, hi = max(da.min(), db.min()), min(da.max(), db.max())
    if hi <= lo:
        return None
    pa, pb = np.polyfit(da, ra, 3), np.polyfit(db, rb, 3)
    ia = np.polyval(np.polyint(pa), hi) - np.polyval(np.polyint(pa), lo)
    ib = np.polyval(np.polyint(pb), hi) - np.polyval(np.polyint(pb), lo)
    return float((math.exp((ib - ia) / (hi - lo)) - 1) * 100)


def matched_psnr(points: list[Point], ref: str, ours: str, setting: float) -> dict:
    """Per image: the reference codec's PSNR interpolated (in log rate) at our rate."""
    deltas, ours_bpp, ours_psnr = [], [], []
    for image in sorted({p.image for p in points if p.codec == ours}):
        mine = next(p for p in points if p.codec == ours and p.image == image and p.setting == setting)
        curve = sorted((p.bpp, p.psnr) for p in points if p.codec == ref and p.image == image)
        if len(curve) < 2:
            continue
        r, q = np.log([c[0] for c in curve]), [c[1] for c in curve]
        if not r[0] <= math.log(mine.bpp) <= r[-1]:
            continue
        deltas.append(mine.psnr - float(np.interp(math.log(mine.bpp), r, q)))
        ours_bpp.append(mine.bpp)
        ours_psnr.append(mine.psnr)
    return {
        "images": len(deltas),
        "bpp": float(np.mean(ours_bpp)) if deltas else None,
        "psnr": float(np.mean(ours_psnr)) if deltas else None,
        "delta_psnr_db": float(np.mean(deltas)) if deltas else None,
    }


def find_inputs(paths: list[Path], limit: int | None = None) -> list[Path]:
    from fool.train import find_images

    files = find_images(paths)
    if limit and len(files) > limit:
        step = len(files) / limit  # spread over classes, deterministic
        files = [files[int(i * step)] for i in range(limit)]
    return files


def default_models(inputs: list[Path], limit: int | None = None) -> list[str]:
    """The models ``fool compress`` would choose for these inputs (by dtype), so a benchmark
    without ``--model`` measures what an operator gets by default."""
    import rasterio

    from fool.shared.zoo import model_for

    chosen = set()
    for f in find_inputs(inputs, limit):
        with rasterio.open(f) as ds:
            chosen.add(model_for(ds.dtypes[0]))
    return sorted(chosen)


def evaluate(
    inputs: list[Path],
    models: list[str],
    codecs: list[str],
    qualities=OURS_QUALITIES,
    limit: int | None = None,
    default_quality: float | None = None,
    tile_size: int = DEFAULT_TILE,
    with_msssim: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    from fool.ground.synthesis import TorchSynthesis
    from fool.onboard.compress import load_runtime
    from fool.shared.zoo import DEFAULT_QUALITY

    unknown = [c for c in codecs if c not in REFERENCE_CODECS]
    if unknown:  # a typo would otherwise give a benchmark with no reference and no BD-rate
        raise InputError(f"unknown reference codec {', '.join(unknown)}: choose from {', '.join(REFERENCE_CODECS)}")
    default_quality = DEFAULT_QUALITY if default_quality is None else default_quality
    files = find_inputs(inputs, limit)
    MSSSIM["enabled"] = with_msssim
    qualities = sorted(set(qualities) | {default_quality})
    points: list[Point] = []
    engines = {}
    for m in models:
        engine = load_runtime("torch", m, None, None)
        engines[m] = (engine, TorchSynthesis(m, engine[1].weights_sha256))
    for i, f in enumerate(files):
        img, bits = read_image(f)
        for m, (engine, synth) in engines.items():
            points += eval_ours(m, f, img, bits, qualities, engine, synth, tile_size)
        for c in codecs:
            points += eval_lossless(c, f, img, bits) if c in LOSSLESS else eval_classical(c, f, img, bits)
        if (i + 1) % 10 == 0 or i + 1 == len(files):
            log(f"  {i + 1}/{len(files)} images")
    curves = {
        c: dict(zip(("bpp", "psnr", "msssim"), (v.tolist() for v in mean_curve(points, c)), strict=True))
        for c in list(models) + [c for c in codecs if c not in LOSSLESS and any(p.codec == c for p in points)]
    }
    lossless = {
        c: {
            "bpp": float(np.mean([p.bpp for p in points if p.codec == c])),
            "encode_mp_s": sum(p.pixels for p in points if p.codec == c)
            / 1e6
            / sum(p.encode_s for p in points if p.codec == c),
        }
        for c in LOSSLESS
        if any(p.codec == c for p in points)
    }
    summary: dict = {
        "default_quality": default_quality,
        "images": len(files),
        "inputs": [str(p) for p in inputs],
        "curves": curves,
        "lossless": lossless,
        "bd_rate": {},
        "at_default_quality": {},
        "speed": {},
    }
    for m in models:
        rm, pm, mm = (np.array(curves[m][k]) for k in ("bpp", "psnr", "msssim"))
        for ref in codecs:
            if ref not in curves:
                continue
            rr, pr, mr = (np.array(curves[ref][k]) for k in ("bpp", "psnr", "msssim"))
            summary["bd_rate"][f"{m} vs {ref}"] = {"psnr": bd_rate(rr, pr, rm, pm), "msssim": bd_rate(rr, mr, rm, mm)}
            summary["at_default_quality"][f"{m} vs {ref}"] = matched_psnr(points, ref, m, default_quality)
            summary.setdefault("matched", {})[f"{m} vs {ref}"] = {
                str(q): matched_psnr(points, ref, m, q) for q in qualities
            }
    for c in curves:  # lossless speeds are in summary["lossless"]
        pts = [p for p in points if p.codec == c]
        px = sum(p.pixels for p in pts)
        summary["speed"][c] = {
            "encode_mp_s": px / 1e6 / sum(p.encode_s for p in pts),
            "decode_mp_s": px / 1e6 / sum(p.decode_s for p in pts),
        }
    # strict JSON: a lossless point's PSNR (infinite) is written as null
    summary["points"] = [asdict(p) | ({"psnr": None} if math.isinf(p.psnr) else {}) for p in points]
    return summary


def plot(summary: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, c in summary["curves"].items():
        ax.plot(c["bpp"], c["psnr"], marker="o", ms=3, label=name)
    ax.set_xlabel("bits per pixel (all bands)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(summary: dict) -> str:
    lines = []
    for name, c in summary["curves"].items():
        lines.append(
            f"{name:<9} " + "  ".join(f"{b:.3f}bpp/{p:.2f}dB" for b, p in zip(c["bpp"], c["psnr"], strict=True))
        )
    for k, v in summary.get("lossless", {}).items():
        lines.append(f"lossless reference {k}: {v['bpp']:.3f} bpp (all bands), {v['encode_mp_s']:.1f} MP/s encode")
    for k, v in summary["bd_rate"].items():
        fmt = lambda x: "n/a" if x is None else f"{x:+.1f}%"  # noqa: E731
        lines.append(f"BD-rate {k}: PSNR {fmt(v['psnr'])}, MS-SSIM {fmt(v['msssim'])}")
    for k, v in summary["at_default_quality"].items():
        if v["delta_psnr_db"] is not None:
            lines.append(
                f"default quality {k}: {v['bpp']:.3f} bpp, {v['psnr']:.2f} dB, "
                f"{v['delta_psnr_db']:+.2f} dB vs {k.split(' vs ')[1]} at the same rate ({v['images']} images)"
            )
    return "\n".join(lines)


def save(summary: dict, path: Path) -> None:
    path.write_text(json.dumps(summary, separators=(",", ":")))
