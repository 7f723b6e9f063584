"""`fool eval`: rate-distortion benchmark of FOOL against classical codecs at matched rates.

Every number in the README and model card comes from here. Rates count every byte the
decoder needs: our whole ``.fool`` file (header, tile payloads, table, footer) against the
whole raw J2K codestream and the whole JPEG XL, WebP or JPEG file. Our tile payloads alone
are kept as ``payload_bpp``, a secondary figure. PSNR uses the peak of the real bit depth.
Two aggregates are reported because they answer different questions: the Bjøntegaard delta
of the mean curves (means over images per setting, which depends on how each codec's
settings line up across images) and the distribution of per-image deltas (what an operator
sees on each image).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from fool.shared.bands import bits_for_max
from fool.shared.errors import InputError
from fool.shared.geometry import DEFAULT_TILE

OURS_QUALITIES = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)
#: qualities of the ``--modes auto`` curve, "all": every quality the model offers, its learned
#: levels with per-tile JPEG 2000, then the four above them where every tile is JPEG 2000
#: (onboard.modes; 1..12 for an 8-level model, 1..15 for fool-m2)
INTRA_QUALITIES = "all"
INTRA_SUFFIX = "+intra"
J2K_PSNR_TARGETS = (22, 24, 26, 28, 30, 32, 34, 36, 38, 40, 42, 44, 46, 48, 50)
#: Whole-codestream rates (bpp, all bands) that the rate sweep of JPEG 2000 hits per image.
J2K_RATE_TARGETS = (0.1, 0.15, 0.25, 0.4, 0.6, 1.0, 1.6, 2.5, 4.0)
JXL_DISTANCES = (8.0, 5.0, 3.0, 2.0, 1.4, 1.0, 0.6, 0.3)
QUALITY_LEVELS = (10, 25, 40, 60, 75, 85, 92, 97)
REFERENCE_CODECS = ("jpeg2000", "jpeg2000-ict", "jpeg2000-rate", "jpegxl", "webp", "jpeg", "ccsds121")


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
    payload_bpp: float | None = None  # ours only: tile payloads without header, table and footer
    modes: dict[str, int] | None = None  # ours only: coded tiles per mode (learned, j2k, jpegls)


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
    if name == "jpeg2000-ict" and channels > 3:
        return (lambda x, s: j2k_ict_and_rest(x, s, bits), split_ict_and_rest, J2K_PSNR_TARGETS)
    if name == "jpeg2000-rate":
        return (lambda x, s: j2k_at_rate(x, s, bits), ic.jpeg2k_decode, J2K_RATE_TARGETS)
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


def j2k_ict_and_rest(hwc: np.ndarray, target: float, bits: int) -> bytes:
    """Bands 1-3 as one codestream with the colour transform, the rest as another, both at the
    PSNR target; a 4-byte big-endian length of the first between them (counted in the rate).

    This is the JPEG 2000 that ``opj_compress`` writes for 4+ bands by default (its colour
    transform on the first three components), which imagecodecs cannot: it applies the
    transform only to exactly 3 components. On NAIP it is 20-27 % smaller than the single
    4-component codestream of the ``jpeg2000`` reference (docs/experiments.md)."""
    import imagecodecs as ic

    depth = bits if bits > 8 else None

    def enc(part: np.ndarray) -> bytes:
        # the stub types ``level`` as int, but OpenJPEG takes a float PSNR target
        return bytes(ic.jpeg2k_encode(part, level=target, codecformat="J2K", bitspersample=depth))  # type: ignore[arg-type]

    first = enc(np.ascontiguousarray(hwc[..., :3]))
    second = enc(np.ascontiguousarray(hwc[..., 3:] if hwc.shape[-1] > 4 else hwc[..., 3]))
    return len(first).to_bytes(4, "big") + first + second


def split_ict_and_rest(data: bytes) -> np.ndarray:
    """Decodes :func:`j2k_ict_and_rest`'s two codestreams -> (h, w, bands)."""
    import imagecodecs as ic

    n = int.from_bytes(data[:4], "big")
    first, second = np.asarray(ic.jpeg2k_decode(data[4 : 4 + n])), np.asarray(ic.jpeg2k_decode(data[4 + n :]))
    return np.concatenate([first, second if second.ndim == 3 else second[..., None]], axis=-1)


def j2k_at_rate(hwc: np.ndarray, bpp: float, bits: int) -> bytes:
    """The largest raw J2K codestream of at most ``bpp`` (all bands): OpenJPEG through
    imagecodecs takes a PSNR target, so the target is bisected (16 steps, to 0.01 dB)."""
    import imagecodecs as ic

    budget = bpp * hwc.shape[0] * hwc.shape[1] / 8
    depth = bits if bits > 8 else None

    def enc(target: float) -> bytes:
        # bytes without ``out``; the stub types ``level`` as int, but OpenJPEG takes a float PSNR target
        return cast(bytes, ic.jpeg2k_encode(hwc, level=target, codecformat="J2K", bitspersample=depth))  # type: ignore[arg-type]

    lo, hi = 5.0, 20.0 + 6.02 * bits
    best = enc(lo)
    for _ in range(16):
        mid = (lo + hi) / 2
        data = enc(mid)
        if len(data) <= budget:
            lo, best = mid, data
        else:
            hi = mid
    return best


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
        # libaec decodes whole blocks (a reference sample interval is up to 4096 samples), so
        # the output may run past the band: give it room for one more interval
        out = ic.aec_decode(data, bitspersample=bits, out=band.nbytes + 4096 * band.itemsize)
        back = np.frombuffer(out, band.dtype)[: band.size]
        t_enc, t_dec = t_enc + t1 - t0, t_dec + time.perf_counter() - t1
        if not np.array_equal(back.reshape(band.shape), band):
            raise RuntimeError(f"libaec did not round-trip {path}")
        size += len(data)
    pixels = img.shape[1] * img.shape[2]
    return [Point(name, 0.0, str(path), 8 * size / pixels, math.inf, None, t_enc, t_dec, pixels)]


def eval_classical(name: str, path: Path, img: np.ndarray, bits: int) -> list[Point]:
    """The reference codec's sweep of one image; none for float images, which the classical
    coders take only as integers (their rows then say the image has no reference)."""
    spec = _classical(name, bits, img.shape[0])
    if spec is None or not np.issubdtype(img.dtype, np.integer):
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
    curve when one model is run in several configurations (bench/ablation.py). ``synthesis``
    may also map curve labels to syntheses (a model's own and its variants, which decode the
    same bytes): each container is then decoded by each, one point per label and quality.
    """
    import rasterio

    from fool.ground.decode import decode_container
    from fool.onboard.compress import compress_scene

    peak = float(2**bits - 1)
    points = []
    syntheses = synthesis if isinstance(synthesis, dict) else {label or model: synthesis}
    with tempfile.TemporaryDirectory() as tmp:
        fool, out = Path(tmp) / "x.fool", Path(tmp) / "x.tif"
        for q in qualities:
            r = compress_scene(path, fool, model=model, quality=q, tile_size=tile_size, engine=engine, **compress_opts)
            for name, synth in syntheses.items():
                t1 = time.perf_counter()
                decode_container(fool, out, synthesis=synth)
                t2 = time.perf_counter()
                with rasterio.open(out) as ds:
                    rec = ds.read()
                points.append(
                    Point(
                        name,
                        q,
                        str(path),
                        8 * r.bytes / r.pixels,
                        psnr(img, rec, peak),
                        msssim(img, rec, peak),
                        r.seconds,
                        t2 - t1,
                        r.pixels,
                        8 * r.payload_bytes / r.pixels,
                        dict(r.modes),
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


def _rd_curve(rate, dist) -> tuple[np.ndarray, np.ndarray]:
    """Finite points, lossless ones (PSNR 100) dropped, reduced to the part where quality rises
    with rate: a point that costs more bits for no more quality says nothing about the trade-off."""
    rate, dist = np.asarray(rate, float), np.asarray(dist, float)
    ok = np.isfinite(rate) & np.isfinite(dist) & (rate > 0) & (dist < 99.0)
    pairs = sorted(zip(rate[ok], dist[ok], strict=True))
    r_out: list[float] = []
    d_out: list[float] = []
    for r, d in pairs:
        if not d_out or d > d_out[-1]:
            r_out.append(r)
            d_out.append(d)
    return np.log(np.array(r_out)), np.array(d_out)


def bd_rate(rate_a, dist_a, rate_b, dist_b) -> float | None:
    """Bjøntegaard delta rate (%) of B against A over their overlapping quality range.

    Negative means B needs fewer bits for the same quality. Log-rate is interpolated against
    quality piecewise-cubically (PCHIP, as JVET's common test conditions do; a single cubic fit
    over 15 reference points misfits the overlap) and integrated over the overlap.
    """
    from scipy.interpolate import PchipInterpolator

    ra, da = _rd_curve(rate_a, dist_a)
    rb, db = _rd_curve(rate_b, dist_b)
    if len(da) < 2 or len(db) < 2:
        return None
    lo, hi = max(da.min(), db.min()), min(da.max(), db.max())
    if hi - lo < 1e-6:
        return None
    ia = PchipInterpolator(da, ra).integrate(lo, hi)
    ib = PchipInterpolator(db, rb).integrate(lo, hi)
    return float((math.exp((ib - ia) / (hi - lo)) - 1) * 100)


def per_image_bd(points: list[Point], ref: str, ours: str) -> dict:
    """BD-rate of ``ours`` against ``ref`` image by image: mean, median, worst, wins, and the
    images sorted worst first. Images whose curves do not overlap in PSNR are counted apart."""
    rows: list[dict[str, Any]] = []
    for image in sorted({p.image for p in points if p.codec == ours}):
        mine = [(p.bpp, p.psnr) for p in points if p.codec == ours and p.image == image]
        theirs = [(p.bpp, p.psnr) for p in points if p.codec == ref and p.image == image]
        if not theirs:
            continue
        bd = bd_rate(*zip(*theirs, strict=True), *zip(*mine, strict=True))
        rows.append({"image": image, "bd_rate": bd})
    values = np.array([r["bd_rate"] for r in rows if r["bd_rate"] is not None])
    rows.sort(key=lambda r: -math.inf if r["bd_rate"] is None else -r["bd_rate"])
    if not len(values):
        return {"images": len(rows), "measured": 0, "per_image": rows}
    return {
        "images": len(rows),
        "measured": int(len(values)),
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "worst": float(values.max()),
        "worst_image": next(r["image"] for r in rows if r["bd_rate"] is not None),
        "wins": int((values < 0).sum()),
        "within_3pct": int((values <= 3.0).sum()),
        "per_image": rows,
    }


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
    intra: bool = False,
    intra_qualities=INTRA_QUALITIES,
) -> dict:
    """Code every input with every model and reference codec; -> the summary ``save`` writes.

    With ``intra`` each model also runs with ``modes="auto"`` over :data:`INTRA_QUALITIES`, as
    the curve ``<model>+intra``; ``summary["modes"]`` counts the tile modes it chose."""
    unknown = [c for c in codecs if c not in REFERENCE_CODECS]
    if unknown:  # a typo would otherwise give a benchmark with no reference and no BD-rate
        raise InputError(f"unknown reference codec {', '.join(unknown)}: choose from {', '.join(REFERENCE_CODECS)}")
    defaults = {m: default_quality if default_quality is not None else model_default_quality(m) for m in models}
    files = find_inputs(inputs, limit)
    MSSSIM["enabled"] = with_msssim
    qualities = sorted(set(qualities) | set(defaults.values()))
    points = collect_points(files, models, codecs, qualities, tile_size, log, intra_qualities if intra else ())
    labels = list(models) + ([f"{m}{INTRA_SUFFIX}" for m in models] if intra else [])
    defaults |= {f"{m}{INTRA_SUFFIX}": defaults[m] for m in models} if intra else {}
    summary = summarise(points, labels, codecs, qualities, defaults)
    summary |= {"images": len(files), "inputs": [str(p) for p in inputs]}
    return summary


def collect_points(
    files: list[Path],
    models: list[str],
    codecs: list[str],
    qualities,
    tile_size: int,
    log: Callable[[str], None],
    intra_qualities=(),
) -> list[Point]:
    """Every point of the benchmark: each model at ``qualities`` and at every level it was trained
    for; with ``intra_qualities`` each model also runs with ``modes="auto"`` at those qualities
    and the shared ones, labelled ``<model>+intra``."""
    from fool.ground.synthesis import TorchSynthesis
    from fool.onboard.compress import load_runtime
    from fool.onboard.modes import max_quality
    from fool.shared.zoo import split_variant

    engines: dict[str, tuple] = {}  # model -> (its onboard engine, {curve label: synthesis})
    for label in models:
        m, variant = split_variant(label)
        if m not in engines:
            engines[m] = (load_runtime("torch", m, None, None), {})
        engine = engines[m][0]
        engines[m][1][label] = TorchSynthesis(m, engine[1].weights_sha256, variant=variant)
    points: list[Point] = []
    for i, f in enumerate(files):
        img, bits = read_image(f)
        for m, (engine, synth) in engines.items():
            own = sorted(set(qualities) | {float(q) for q in range(1, engine[1].levels + 1)})  # every trained level
            points += eval_ours(m, f, img, bits, own, engine, synth, tile_size)
            if intra_qualities:
                offered = (
                    range(1, int(max_quality(engine[1].levels)) + 1)
                    if intra_qualities == INTRA_QUALITIES
                    else intra_qualities
                )
                extra = sorted({float(q) for q in offered} | set(qualities))
                labelled = {f"{label}{INTRA_SUFFIX}": s for label, s in synth.items()}
                points += eval_ours(m, f, img, bits, extra, engine, labelled, tile_size, modes="auto")
        for c in codecs:
            points += eval_lossless(c, f, img, bits) if c in LOSSLESS else eval_classical(c, f, img, bits)
        if (i + 1) % 10 == 0 or i + 1 == len(files):
            log(f"  {i + 1}/{len(files)} images")
    return points


def _speed(points: list[Point], codec: str) -> dict:
    pts = [p for p in points if p.codec == codec]
    px = sum(p.pixels for p in pts) / 1e6
    return {
        "encode_mp_s": px / max(sum(p.encode_s for p in pts), 1e-9),
        "decode_mp_s": px / max(sum(p.decode_s for p in pts), 1e-9),
    }


def model_default_quality(model: str) -> float:
    """The quality ``fool compress`` uses for ``model`` when none is given (shared.zoo.default_quality)."""
    from fool.shared.latent_codec import LatentCodec
    from fool.shared.zoo import default_quality, find, split_variant

    return default_quality(LatentCodec.load(find(split_variant(model)[0]).tables).lambdas)


def summarise(
    points: list[Point], models: list[str], codecs: list[str], qualities, default_quality: dict[str, float]
) -> dict:
    """The benchmark's summary; ``default_quality`` is each curve's default quality."""
    lossy = [c for c in codecs if c not in LOSSLESS and any(p.codec == c for p in points)]
    curves = {
        c: dict(zip(("bpp", "psnr", "msssim"), (v.tolist() for v in mean_curve(points, c)), strict=True))
        for c in list(models) + lossy
    }
    lossless = {
        c: {"bpp": float(np.mean([p.bpp for p in points if p.codec == c])), **_speed(points, c)}
        for c in LOSSLESS
        if any(p.codec == c for p in points)
    }
    summary: dict = {
        "rate": "whole files: .fool container vs raw J2K codestream / JPEG XL, WebP, JPEG files",
        "default_quality": default_quality,
        "curves": curves,
        "lossless": lossless,
        "bd_rate": {},
        "per_image": {},
        "at_default_quality": {},
        "matched": {},
        "speed": {c: _speed(points, c) for c in curves},
    }
    for m in models:
        rm, pm, mm = (np.array(curves[m][k]) for k in ("bpp", "psnr", "msssim"))
        payload = mean_curve(
            [replace(p, bpp=p.payload_bpp) for p in points if p.codec == m and p.payload_bpp is not None], m
        )
        for ref in lossy:
            rr, pr, mr = (np.array(curves[ref][k]) for k in ("bpp", "psnr", "msssim"))
            key = f"{m} vs {ref}"
            summary["bd_rate"][key] = {
                "psnr": bd_rate(rr, pr, rm, pm),
                "msssim": bd_rate(rr, mr, rm, mm),
                "psnr_payload_only": bd_rate(rr, pr, payload[0], payload[1]),
            }
            summary["per_image"][key] = per_image_bd(points, ref, m)
            summary["at_default_quality"][key] = matched_psnr(points, ref, m, default_quality[m])
            own = sorted(set(qualities) | {p.setting for p in points if p.codec == m})  # every level it ran
            summary["matched"][key] = {str(q): matched_psnr(points, ref, m, q) for q in own}
    summary["modes"] = mode_counts(points)
    # strict JSON: a lossless point's PSNR (infinite) is written as null
    summary["points"] = [asdict(p) | ({"psnr": None} if math.isinf(p.psnr) else {}) for p in points]
    return summary


def mode_counts(points: list[Point]) -> dict:
    """Per curve of ours that used tile modes other than learned: tiles per mode, over all
    points and per setting."""
    out: dict = {}
    mixed = {p.codec for p in points if p.modes and set(p.modes) - {"learned"}}
    for p in points:
        if not p.modes or p.codec not in mixed:
            continue
        entry = out.setdefault(p.codec, {"total": {}, "by_quality": {}})
        per = entry["by_quality"].setdefault(str(p.setting), {})
        for mode, n in p.modes.items():
            entry["total"][mode] = entry["total"].get(mode, 0) + n
            per[mode] = per.get(mode, 0) + n
    return out


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


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.1f}%"


def table(summary: dict, worst: int = 5) -> str:
    """What a person reads after a run: curves, both BD-rate aggregates, and the worst images."""
    lines = []
    for name, c in summary["curves"].items():
        lines.append(
            f"{name:<13} " + "  ".join(f"{b:.3f}bpp/{p:.2f}dB" for b, p in zip(c["bpp"], c["psnr"], strict=True))
        )
    for k, v in summary.get("lossless", {}).items():
        lines.append(f"lossless reference {k}: {v['bpp']:.3f} bpp (all bands), {v['encode_mp_s']:.1f} MP/s encode")
    lines.append("rates count whole files (our container: header, tiles, table and footer)")
    for k, v in summary["bd_rate"].items():
        lines.append(
            f"BD-rate {k} (mean curves): PSNR {_pct(v['psnr'])}, MS-SSIM {_pct(v['msssim'])}; "
            f"tile payloads only {_pct(v.get('psnr_payload_only'))}"
        )
        pi = summary.get("per_image", {}).get(k, {})
        if pi.get("measured"):
            lines.append(
                f"  per image: mean {_pct(pi['mean'])}, median {_pct(pi['median'])}, worst {_pct(pi['worst'])} "
                f"({Path(pi['worst_image']).name}); ahead on {pi['wins']} of {pi['measured']}, "
                f"within +3 % on {pi['within_3pct']}"
                + (f"; {pi['images'] - pi['measured']} without overlap" if pi["images"] > pi["measured"] else "")
            )
            for row in [r for r in pi["per_image"] if r["bd_rate"] is not None][:worst]:
                if row["bd_rate"] > 0:
                    lines.append(f"    behind on {Path(row['image']).name}: {_pct(row['bd_rate'])}")
    for name, m in summary.get("modes", {}).items():
        total = sum(m["total"].values()) or 1
        shares = ", ".join(f"{k} {100 * v / total:.1f} %" for k, v in sorted(m["total"].items()))
        lines.append(f"tile modes {name}: {shares} of {total} tiles")
        for q, counts in m["by_quality"].items():
            n = sum(counts.values()) or 1
            lines.append(f"  quality {float(q):g}: " + ", ".join(f"{k} {v}/{n}" for k, v in sorted(counts.items())))
    for k, v in summary["at_default_quality"].items():
        if v["delta_psnr_db"] is not None:
            lines.append(
                f"default quality {k}: {v['bpp']:.3f} bpp, {v['psnr']:.2f} dB, "
                f"{v['delta_psnr_db']:+.2f} dB vs {k.split(' vs ')[1]} at the same rate ({v['images']} images)"
            )
    return "\n".join(lines)


def save(summary: dict, path: Path) -> None:
    path.write_text(json.dumps(summary, separators=(",", ":")))
