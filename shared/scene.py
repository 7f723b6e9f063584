"""The scene header carried in a container, and the per-tile payload layout.

Both sides build and read it here; the ground validates every field before using it,
because a container is untrusted input. Its binary form is in :mod:`fool.shared.header`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from fool.shared.bands import SUPPORTED_DTYPES, BandRange
from fool.shared.errors import ContainerError
from fool.shared.geometry import ALIGN, TileGrid
from fool.shared.mask import decode_mask, encode_mask
from fool.shared.varint import read_varint, varint

#: GDAL block cache for tiling and decoding (GDAL's default, 5 % of RAM, grows with the scene;
#: one row of tiles is all either side revisits).
GDAL_CACHE_MB = 256
MASK_KINDS = ("none", "nodata", "internal", "nan")
MAX_SIDE = 1 << 24
MAX_PIXELS = 1 << 36  # 262k x 262k: far beyond any capture, small enough to refuse absurd headers
MAX_TILE_VALUES = 1 << 28  # bands x tile_size**2 decoded at once
MAX_HALO = 256  # inter-tile context, pixels; the synthesis' receptive field is far smaller


@dataclass(frozen=True)
class SceneHeader:
    width: int
    height: int
    dtype: str
    bits: list[int | None]
    ranges: list[list[float]]
    groups: list[list[int]]
    nodata: float | None
    mask: str
    crs: str | None  # "EPSG:<code>" when that code is the source CRS exactly, else WKT
    transform: list[float]
    descriptions: list[str | None]
    colorinterp: list[str]
    source_bands: list[int]
    tile_size: int
    model_name: str
    model_sha256: str
    halo: int = 0  # inter-tile context the encoder used (pixels); absent in pre-halo containers

    @property
    def count(self) -> int:
        return len(self.ranges)

    @property
    def crs_wkt(self) -> str | None:
        """The CRS as WKT (an EPSG code is expanded by rasterio)."""
        if not self.crs or not self.crs.startswith("EPSG:"):
            return self.crs
        from rasterio.crs import CRS

        return CRS.from_user_input(self.crs).to_wkt()

    def model_matches(self, sha256: str) -> bool:
        """Whether the installed weights (full SHA-256) are the ones this scene names (a prefix in v4)."""
        return len(self.model_sha256) >= 16 and sha256.startswith(self.model_sha256)

    @property
    def grid(self) -> TileGrid:
        return TileGrid(self.width, self.height, self.tile_size)

    def band_range(self, band: int) -> BandRange:
        lo, hi = self.ranges[band - 1]
        return BandRange(lo, hi)

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.nodata is not None and math.isnan(self.nodata):
            d["nodata"] = "nan"
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SceneHeader:
        """Validate an untrusted header; every failure is a ContainerError."""
        try:
            if "crs_wkt" in d and "crs" not in d:  # version 3 (JSON) names it so
                d = {**d, "crs": d["crs_wkt"]}
            h = cls(**{k: d[k] for k in cls.__dataclass_fields__ if k != "halo"}, halo=d.get("halo", 0))
            if h.nodata == "nan":
                h = cls(**(h.__dict__ | {"nodata": float("nan")}))
            ok = (
                all(isinstance(v, int) and 0 < v <= MAX_SIDE for v in (h.width, h.height))
                and h.dtype in SUPPORTED_DTYPES
                and isinstance(h.tile_size, int)
                and ALIGN <= h.tile_size <= 8192
                and h.tile_size % ALIGN == 0
                and 0 < h.count <= 4096
                and h.width * h.height <= MAX_PIXELS
                and h.count * h.tile_size**2 <= MAX_TILE_VALUES
                and all(
                    len(r) == 2 and all(isinstance(v, int | float) and math.isfinite(v) for v in r) and r[0] <= r[1]
                    for r in h.ranges
                )
                and len(h.bits) == len(h.descriptions) == len(h.source_bands) == h.count
                and sorted(b for g in h.groups for b in g) == list(range(1, h.count + 1))
                and all(len(g) in (1, 3) for g in h.groups)
                and h.mask in MASK_KINDS
                and len(h.transform) == 6
                and all(isinstance(v, int | float) for v in h.transform)
                and (h.nodata is None or isinstance(h.nodata, int | float))
                and isinstance(h.model_name, str)
                and isinstance(h.model_sha256, str)
                and len(h.model_sha256) in (16, 64)
                and all(c in "0123456789abcdef" for c in h.model_sha256)
                and (h.crs is None or isinstance(h.crs, str))
                and all(isinstance(c, str) for c in h.colorinterp)
                and all(b is None or (isinstance(b, int) and 1 <= b <= 64) for b in h.bits)
                and isinstance(h.halo, int)
                and 0 <= h.halo <= MAX_HALO
                and h.halo % ALIGN == 0
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ContainerError(f"scene header is malformed ({exc.__class__.__name__}: {exc})") from None
        if not ok:
            raise ContainerError("scene header has out-of-range or inconsistent fields")
        return h


def pack_tile(stream: bytes, valid: np.ndarray | None) -> bytes:
    """A tile payload: the optional lossless validity mask (LEB128 length, then
    :func:`fool.shared.mask.encode_mask`), then the tile's one entropy-coded stream, which
    takes the rest."""
    if valid is None:
        return stream
    mask = encode_mask(valid)
    return varint(len(mask)) + mask + stream


def unpack_tile(payload: bytes, has_mask: bool, shape: tuple[int, int]) -> tuple[bytes, np.ndarray | None]:
    """-> (the tile's stream, validity mask or None). Sizes are checked, not trusted."""
    if not has_mask:
        return payload, None
    n, pos = read_varint(payload, 0, "tile mask length", 5)
    if pos + n > len(payload):
        raise ContainerError("tile payload declares more bytes than it holds")
    return payload[pos + n :], decode_mask(payload[pos : pos + n], shape)


def keep_off_nodata(values: np.ndarray, valid: np.ndarray | None, nodata: float | None) -> None:
    """Moves valid samples (every sample when ``valid`` is None) that decoded to the integer
    ``nodata`` value one step off it, in place.

    A reader drops every sample equal to nodata, so a lossy decode must not land a valid pixel
    on it; one grey level is the smallest change that keeps it. Both sides call this: the ground
    on every lossy tile, the encoder to judge a tile as the ground will decode it. (Lossless and
    max-error tiles never need it: the encoder keeps them off nodata itself.)"""
    if nodata is None or (isinstance(nodata, float) and math.isnan(nodata)):
        return
    if not np.issubdtype(values.dtype, np.integer):
        return
    info = np.iinfo(values.dtype)
    if not info.min <= nodata <= info.max:
        return
    bump = 1 if nodata < info.max else -1
    clash = values == nodata
    if valid is not None:
        clash &= valid[None]
    values[clash] = values.dtype.type(nodata + bump)
