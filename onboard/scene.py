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
from fool.shared import bands as bandlib
from fool.shared.errors import RasterReadError, UnsupportedRasterError
from fool.shared.geometry import Tile, TileGrid
from fool.shared.scene import GDAL_CACHE_MB
from rasterio.enums import MaskFlags

#: How deep integer bands map onto the codec's [0, 1]: their scanned min/max, or their bit depth.
VALUE_RANGES = ("scene", "bitdepth")


@dataclass
class Halo:
    """A tile's window widened by up to ``halo`` pixels of its neighbours (clipped at the scene edge)."""

    values: np.ndarray  # (k, top + h + bottom, left + w + right)
    valid: np.ndarray | None
    top: int
    left: int
    bottom: int
    right: int


@dataclass
class TileData:
    tile: Tile
    values: np.ndarray  # (k, h, w) raw values of the selected bands
    valid: np.ndarray | None  # (h, w) bool, None when every pixel is valid
    halo: Halo | None = None


class SceneReader:
    """Context manager around a rasterio dataset, with the plan for coding it."""

    def __init__(
        self,
        path: Path,
        tile_size: int,
        bands: list[int] | None = None,
        band_groups: str | None = None,
        value_range: str = "scene",
    ) -> None:
        if value_range not in VALUE_RANGES:
            raise UnsupportedRasterError(f"value range {value_range!r}: use one of {', '.join(VALUE_RANGES)}")
        self.value_range = value_range
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
        """Per-band value ranges, the one piece of scene statistics the codec sees.

        8-bit bands map 0..255 (the content the model was trained on already spans it).
        Deeper bands map their scanned min..max (``value_range="scene"``): an 11- or 12-bit
        band rarely fills its bit depth, and stretching it costs no bits (two numbers per band
        in the header) but measured -13.5 % BD-rate on the uint16 scenes (bench/ablation.py).
        ``"bitdepth"`` keeps the v1 behaviour, 0..2**bits-1.
        """
        ds, k = self.ds, len(self.bands)
        self.bits: list[int | None] = [8] * k if self.dtype == "uint8" else [None] * k
        nbits = ds.tags(ns="IMAGE_STRUCTURE").get("NBITS")
        if self.dtype == "uint8":
            self.ranges = [bandlib.integer_range(8)] * k
            return
        tagged = self.dtype in ("uint16", "uint32") and nbits is not None and nbits.isdigit()
        if tagged and self.value_range == "bitdepth":
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
        self.ranges = [bandlib.BandRange(float(a), float(b)) for a, b in zip(lo, hi, strict=True)]
        if self.dtype in ("uint16", "uint32"):
            bits = [int(nbits) if tagged else bandlib.bits_for_max(h, self.dtype) for h in hi]
            self.bits = list(bits)
            if self.value_range == "bitdepth":
                self.ranges = [bandlib.integer_range(b) for b in bits]

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

    def tiles(self, halo: int = 0) -> Iterator[TileData]:
        """Tiles in raster order; with ``halo`` each also carries its surroundings, so the
        analysis sees real neighbours at the tile border instead of padding."""
        from rasterio.windows import Window

        for tile in self.grid:
            top, left = min(halo, tile.y), min(halo, tile.x)
            bottom = min(halo, self.ds.height - tile.y - tile.height)
            right = min(halo, self.ds.width - tile.x - tile.width)
            window = Window(tile.x - left, tile.y - top, tile.width + left + right, tile.height + top + bottom)
            try:
                values = self.ds.read(self.bands, window=window)
                valid = self._valid(values, window)
            except rasterio.errors.RasterioError as exc:
                raise RasterReadError(f"{self.path}: cannot read tile ({tile.row}, {tile.col}): {exc}") from None
            inner = (slice(top, top + tile.height), slice(left, left + tile.width))
            ring = None
            if halo:
                ring = Halo(values, valid, top, left, bottom, right)
                values = values[(slice(None), *inner)]
                valid = None if valid is None else valid[inner]
            if valid is not None and valid.all():
                valid = None
            yield TileData(tile, values, valid, ring)

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
            "crs": crs_text(ds.crs),
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


def crs_text(crs) -> str | None:
    """ "EPSG:<code>" when that code gives back exactly this CRS (a few bytes in the header),
    else the CRS's WKT (compressed in the header)."""
    if not crs:
        return None
    from rasterio.crs import CRS

    code = crs.to_epsg(confidence_threshold=100)
    if code is not None and CRS.from_epsg(code).to_wkt() == crs.to_wkt():
        return f"EPSG:{code}"
    return crs.to_wkt()
