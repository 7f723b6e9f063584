"""Tiny synthetic rasters for the tests, written on demand (run as a script to write them to a folder).

Texture is smooth fields plus noise so the codec sees something image-like; every raster
is georeferenced except where a test needs otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin


def _texture(bands: int, height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = 0.5 + 0.3 * np.sin(xx / 9.0 + rng.random() * 6)[None] * np.cos(yy / 13.0)[None]
    base = np.repeat(base, bands, axis=0) + 0.05 * rng.standard_normal((bands, height, width))
    return np.clip(base, 0, 1)


def write(
    path: Path,
    dtype: str = "uint8",
    bands: int = 3,
    height: int = 150,
    width: int = 200,
    bits: int = 8,
    nodata: float | None = None,
    nodata_corner: bool = False,
    crs: str | None = "EPSG:32633",
    internal_mask: bool = False,
    seed: int = 0,
) -> Path:
    unit = _texture(bands, height, width, seed)
    if dtype.startswith("float"):
        data = (unit * 1000 - 200).astype(dtype)
    else:
        data = np.rint(unit * (2**bits - 1)).astype(dtype)
    if nodata is not None:
        data[data == nodata] = nodata + 1
    if nodata_corner:
        data[:, : height // 3, : width // 3] = nodata
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": bands,
        "dtype": dtype,
        "transform": from_origin(600000, 4000000, 10.0, 10.0),
        "nodata": nodata,
    }
    if crs:
        profile["crs"] = crs
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if internal_mask:
            mask = np.full((height, width), 255, np.uint8)
            mask[-height // 4 :, -width // 4 :] = 0
            dst.write_mask(mask)
    return path


SCENES = {
    "rgb_uint8": {},
    "rgb_nodata": {"nodata": 0, "nodata_corner": True},
    "pan_uint16_11bit": {"dtype": "uint16", "bands": 1, "bits": 11},
    "ms_float64": {"dtype": "float64", "bands": 4},
    "four_band_uint8": {"bands": 4, "height": 70, "width": 530},
    "masked_uint16": {"dtype": "uint16", "bands": 2, "bits": 12, "internal_mask": True},
    "no_crs": {"crs": None, "bands": 1},
}


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/_data")
    out.mkdir(parents=True, exist_ok=True)
    for name, kw in SCENES.items():
        print(write(out / f"{name}.tif", **kw))
