"""The onboard tiler: opens a scene, plans bands and value ranges, yields tiles by window.

Never reads the whole raster: value ranges come from a windowed scan, tiles from windowed
reads, so a scene larger than memory compresses in constant memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import MaskFlags

from shared import bands as bandlib
from shared.errors import RasterReadError, UnsupportedRasterError
from shared.geometry import Tile, TileGrid
from shared.scene import GDAL_CACHE_MB


@dataclass
class TileData:
    tile: Tile
    values: np.ndarray  # (k, h, w) raw values of the selected bands
    valid: np.ndarray | None  # (h, w) bool, None when every pixel is valid


class SceneReader:
    """Context manager around a rasterio dataset, with the plan for coding it."""

    def __init__(
        self, path: Path, tile_size: int, bands: list[int] | None = None, band_groups: str | None = None
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise RasterReadError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise RasterReadError(f"{self.path} is a directory, not a raster")
        if self.path.stat().st_size == 0:
            raise RasterReadError(f"{self.path} is empty (0 bytes)")
        # GDAL's block cache defaults to 5 % of RAM and would grow to that over a large scene;
        # one row of tiles is all the tiler ever revisits.
        self._env = rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB)
        self._env.__enter__()
        try:
            self.ds = rasterio.open(self.path)
        except rasterio.errors.RasterioIOError as exc:
            self._env.__exit__(None, None, None)
            raise RasterReadError(f"{self.path} is not a raster rasterio can open: {exc}") from None
        try:
            self._plan(tile_size, bands, band_groups)
        except Exception:
            self.close()
            raise

    def _plan(self, tile_size: int, bands: list[int] | None, band_groups: str | None) -> None:
        ds = self.ds
        if ds.width == 0 or ds.height == 0 or ds.count == 0:
            raise UnsupportedRasterError(f"{self.path} has no pixels ({ds.width}x{ds.height}, {ds.count} bands)")
        self.bands = list(bands) if bands else list(range(1, ds.count + 1))
        bad = [b for b in self.bands if not 1 <= b <= ds.count]
        if bad or len(set(self.bands)) != len(self.bands):
            raise UnsupportedRasterError(f"--bands {self.bands}: the scene has bands 1..{ds.count}, each usable once")
        dtypes = {ds.dtypes[b - 1] for b in self.bands}
        if len(dtypes) != 1:
            raise UnsupportedRasterError(f"selected bands mix dtypes {sorted(dtypes)}; select bands of one dtype")
        self.dtype = dtypes.pop()
        bandlib.check_dtype(self.dtype)
        try:
            self.grid = TileGrid(ds.width, ds.height, tile_size)
        except ValueError as exc:
            raise UnsupportedRasterError(str(exc)) from None
        self.nodata = ds.nodata
        flags = [ds.mask_flag_enums[b - 1] for b in self.bands]
        if self.nodata is not None:
            self.mask_kind = "nodata"
        elif any(MaskFlags.per_dataset in f and MaskFlags.alpha not in f for f in flags):
            self.mask_kind = "internal"
        else:
            self.mask_kind = "none"
        colorinterp = tuple(ds.colorinterp[b - 1].name for b in self.bands)
        k = len(self.bands)
        self.groups = (
            bandlib.parse_groups(band_groups, k) if band_groups else bandlib.plan_groups(k, self.dtype, colorinterp)
        )
        self.colorinterp = list(colorinterp)
        self._scan_ranges()

    def _scan_ranges(self) -> None:
        """Per-band value ranges: bit depth for unsigned integers, min/max otherwise."""
        ds, k = self.ds, len(self.bands)
        self.bits: list[int | None] = [8] * k if self.dtype == "uint8" else [None] * k
        nbits = ds.tags(ns="IMAGE_STRUCTURE").get("NBITS")
        if self.dtype == "uint8":
            self.ranges = [bandlib.integer_range(8)] * k
            return
        if self.dtype in ("uint16", "uint32") and nbits and nbits.isdigit():
            self.bits = [int(nbits)] * k
            self.ranges = [bandlib.integer_range(int(nbits))] * k
            return
        lo = np.full(k, np.inf)
        hi = np.full(k, -np.inf)
        has_nan = False
        for window in self.windows():
            data = ds.read(self.bands, window=window).astype(np.float64)
            valid = self._valid(data, window)
            if self.dtype.startswith("float"):
                finite = np.isfinite(data)
                has_nan |= not finite.all()
                valid = finite if valid is None else finite & valid[None]
            for i in range(k):
                v = data[i] if valid is None else data[i][valid if valid.ndim == 2 else valid[i]]
                if v.size:
                    lo[i], hi[i] = min(lo[i], v.min()), max(hi[i], v.max())
        if has_nan and self.mask_kind == "none":
            self.mask_kind = "nan"
        lo[~np.isfinite(lo)], hi[~np.isfinite(hi)] = 0.0, 0.0
        if self.dtype in ("uint16", "uint32"):
            self.bits = [bandlib.bits_for_max(h, self.dtype) for h in hi]
            self.ranges = [bandlib.integer_range(b) for b in self.bits]
        else:
            self.ranges = [bandlib.BandRange(float(a), float(b)) for a, b in zip(lo, hi, strict=True)]

    def windows(self, rows: int = 512):
        from rasterio.windows import Window

        for y in range(0, self.ds.height, rows):
            yield Window(0, y, self.ds.width, min(rows, self.ds.height - y))

    def _valid(self, data: np.ndarray, window) -> np.ndarray | None:
        if self.mask_kind == "nodata":
            nd = self.nodata
            invalid = np.isnan(data) if isinstance(nd, float) and math.isnan(nd) else data == nd
            return ~invalid.all(axis=0)
        if self.mask_kind == "internal":
            return self.ds.dataset_mask(window=window) > 0
        if self.mask_kind == "nan":
            return np.isfinite(data).all(axis=0)
        return None

    def tiles(self) -> Iterator[TileData]:
        for tile in self.grid:
            window = tile.window()
            try:
                values = self.ds.read(self.bands, window=window)
                valid = self._valid(values, window)
            except rasterio.errors.RasterioError as exc:
                raise RasterReadError(f"{self.path}: cannot read tile ({tile.row}, {tile.col}): {exc}") from None
            if valid is not None and valid.all():
                valid = None
            yield TileData(tile, values, valid)

    def profile_header(self) -> dict:
        ds = self.ds
        return {
            "width": ds.width,
            "height": ds.height,
            "dtype": self.dtype,
            "bits": self.bits,
            "ranges": [[r.lo, r.hi] for r in self.ranges],
            "groups": [list(g) for g in self.groups],
            "nodata": self.nodata,
            "mask": self.mask_kind,
            "crs_wkt": ds.crs.to_wkt() if ds.crs else None,
            "transform": list(ds.transform)[:6],
            "descriptions": [ds.descriptions[b - 1] for b in self.bands],
            "colorinterp": self.colorinterp,
            "source_bands": self.bands,
            "tile_size": self.grid.tile_size,
        }

    def close(self) -> None:
        self.ds.close()
        self._env.__exit__(None, None, None)

    def __enter__(self) -> SceneReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
