"""Quality of a decoded scene against its source, computed window by window."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class SceneQuality:
    psnr: float  # over all bands, peak of the real bit depth (or value range for floats)
    psnr_per_band: list[float]
    valid_pixels: int


def peaks_of(scene) -> list[float]:
    """PSNR peaks from a container's scene header: 2**bits - 1, or the value range of floats."""
    return [float(2**b - 1) if b else max(hi - lo, 1e-12) for b, (lo, hi) in zip(scene.bits, scene.ranges, strict=True)]


def compare(src: Path, decoded: Path, bands: list[int], peaks: list[float]) -> SceneQuality:
    """PSNR over valid pixels (source nodata/mask excluded), streaming by row blocks."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(src) as a, rasterio.open(decoded) as b:
        idx = bands
        sse = np.zeros(len(idx))
        n = 0
        for y in range(0, a.height, 512):
            w = Window(0, y, a.width, min(512, a.height - y))
            x = a.read(idx, window=w).astype(np.float64)
            r = b.read(window=w).astype(np.float64)
            valid = (a.dataset_mask(window=w) > 0) & np.isfinite(x).all(axis=0)
            d = (x - r)[:, valid]
            sse += (d**2).sum(axis=1)
            n += int(valid.sum())
    mse = sse / max(n, 1)
    per_band = [10 * math.log10(p**2 / m) if m > 0 else float("inf") for p, m in zip(peaks, mse, strict=True)]
    total = 10 * math.log10(np.mean(np.square(peaks)) / mse.mean()) if mse.mean() > 0 else float("inf")
    return SceneQuality(total, per_band, n)
