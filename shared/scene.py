"""The scene header carried in a container, and the per-tile payload layout.

Both sides build and read it here; the ground validates every field before using it,
because a container is untrusted input.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import asdict, dataclass

import numpy as np
from fool.shared.bands import SUPPORTED_DTYPES, BandRange
from fool.shared.errors import ContainerError
from fool.shared.format import read_varint, varint
from fool.shared.geometry import ALIGN, TileGrid

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
    crs_wkt: str | None
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
                and isinstance(h.halo, int)
                and 0 <= h.halo <= MAX_HALO
                and h.halo % ALIGN == 0
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ContainerError(f"scene header is malformed ({exc.__class__.__name__}: {exc})") from None
        if not ok:
            raise ContainerError("scene header has out-of-range or inconsistent fields")
        return h


def pack_tile(streams: list[bytes], valid: np.ndarray | None, version: int) -> bytes:
    """A tile payload: the optional lossless validity mask, then the entropy-coded latents.

    Version 3 holds one stream for the whole tile and a LEB128 mask length (the stream takes
    the rest); versions 1-2 held one u32-length-prefixed payload per band group.
    """
    parts = []
    if valid is not None:
        mask = zlib.compress(np.packbits(valid.astype(bool)).tobytes(), 9)
        parts.append((varint(len(mask)) if version >= 3 else struct.pack("<I", len(mask))) + mask)
    if version >= 3:
        if len(streams) != 1:
            raise ValueError("a version-3 tile holds exactly one stream")
        return b"".join(parts) + streams[0]
    return b"".join(parts + [struct.pack("<I", len(p)) + p for p in streams])


def unpack_tile(payload: bytes, groups: int, has_mask: bool, shape: tuple[int, int], version: int):
    """-> (streams, validity mask or None): one stream per band group (versions 1-2) or one for the
    tile (version 3). Sizes are checked, not trusted."""
    pos, mask = 0, None

    def take() -> bytes:
        nonlocal pos
        if version >= 3:
            n, pos = read_varint(payload, pos, "tile mask length")
            if pos + n > len(payload):
                raise ContainerError("tile payload declares more bytes than it holds")
            pos += n
            return payload[pos - n : pos]
        if pos + 4 > len(payload):
            raise ContainerError("tile payload is truncated")
        (n,) = struct.unpack_from("<I", payload, pos)
        if pos + 4 + n > len(payload):
            raise ContainerError("tile payload declares more bytes than it holds")
        pos += 4 + n
        return payload[pos - n : pos]

    if has_mask:
        expected = (shape[0] * shape[1] + 7) // 8
        d = zlib.decompressobj()
        try:
            raw = d.decompress(take(), expected + 1)
        except zlib.error as exc:
            raise ContainerError(f"tile mask is corrupt ({exc})") from None
        if len(raw) != expected:
            raise ContainerError("tile mask has the wrong size")
        mask = np.unpackbits(np.frombuffer(raw, np.uint8))[: shape[0] * shape[1]].reshape(shape).astype(bool)
    if version >= 3:
        return [payload[pos:]], mask
    parts = [take() for _ in range(groups)]
    if pos != len(payload):
        raise ContainerError("tile payload has trailing bytes")
    return parts, mask
