"""Quicklook PNG of a decoded scene: a small stretched preview with missing and damaged tiles marked.

Bands: red, green, blue by colour interpretation when the image has them, else the first three
of a 3+ band image, else band 1 as grey. Each band is stretched from its 2nd to 98th percentile
of valid pixels. The image is read at the preview's size (``out_shape``), so GDAL reads its
overviews (a COG has them) and a big scene is never loaded whole. Nodata is black; tiles that
never arrived get a red cross-hatch, damaged tiles (failed CRC) a magenta fill with hatching.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_SIDE = 1024
MISSING_RGB = (255, 0, 0)
DAMAGED_RGB = (255, 0, 255)
HATCH = 8  # pixels between hatch lines


def preview_shape(width: int, height: int, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """(height, width) of the preview: the scene scaled down so its longer side is at most ``max_side``."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(height * scale)), max(1, round(width * scale))


def pick_bands(colorinterp: list[str], count: int) -> list[int]:
    names = [c.lower() for c in colorinterp]
    if all(c in names for c in ("red", "green", "blue")):
        return [names.index(c) + 1 for c in ("red", "green", "blue")]
    return [1, 2, 3] if count >= 3 else [1]


def stretch(band: np.ma.MaskedArray) -> np.ndarray:
    """2-98 % percentile stretch of the valid pixels to 0..255; invalid pixels are 0."""
    valid = band.compressed().astype(np.float64)
    if valid.size == 0:
        return np.zeros(band.shape, np.uint8)
    lo, hi = np.percentile(valid, [2, 98])
    scaled = (band.filled(lo).astype(np.float64) - lo) / (hi - lo if hi > lo else 1.0)
    out = np.clip(np.rint(scaled * 255), 0, 255).astype(np.uint8)
    out[np.ma.getmaskarray(band)] = 0
    return out


def read_preview(image: Path, max_side: int = MAX_SIDE) -> tuple[np.ndarray, tuple[float, float]]:
    """-> (uint8 array (h, w, 3), (row scale, col scale) from scene pixels to preview pixels)."""
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(image) as ds:
        bands = pick_bands([c.name for c in ds.colorinterp], ds.count)
        h, w = preview_shape(ds.width, ds.height, max_side)
        data = ds.read(bands, out_shape=(len(bands), h, w), masked=True, resampling=Resampling.nearest)
        scale = (h / ds.height, w / ds.width)
    rgb = np.stack([stretch(b) for b in data], axis=-1)
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    return rgb, scale


def mark(rgb: np.ndarray, windows: list, scale: tuple[float, float], colour: tuple[int, int, int], fill: bool) -> None:
    """Cross-hatch (and with ``fill`` a dimmed colour fill) over each pixel window, in place."""
    for win in windows:
        r0, c0 = int(win.row_off * scale[0]), int(win.col_off * scale[1])
        r1 = max(r0 + 1, round((win.row_off + win.height) * scale[0]))
        c1 = max(c0 + 1, round((win.col_off + win.width) * scale[1]))
        yy, xx = np.mgrid[r0:r1, c0:c1]
        lines = ((yy + xx) % HATCH < 2) | ((yy - xx) % HATCH < 2)
        lines[[0, -1], :] = True  # outline
        lines[:, [0, -1]] = True
        block = rgb[r0:r1, c0:c1]
        if fill:
            block[...] = (np.asarray(colour) * 0.45).astype(np.uint8)
        block[lines[: block.shape[0], : block.shape[1]]] = colour


def write_quicklook(image: Path, dst: Path, missing: list, damaged: list, max_side: int = MAX_SIDE) -> Path:
    """Write the PNG quicklook of GeoTIFF ``image`` to ``dst`` (atomically); windows are rasterio Windows."""
    import os

    from PIL import Image

    rgb, scale = read_preview(image, max_side)
    mark(rgb, missing, scale, MISSING_RGB, fill=False)
    mark(rgb, damaged, scale, DAMAGED_RGB, fill=True)
    tmp = dst.with_name(f".{dst.name}.partial.png")
    Image.fromarray(rgb, "RGB").save(tmp, format="PNG", optimize=True)
    os.replace(tmp, dst)
    return dst
