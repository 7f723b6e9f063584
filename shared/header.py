"""The binary scene header of container version 4: a :class:`SceneHeader` in a few dozen bytes.

It is small and self-contained (its own length and CRC-32) because the downlink packer repeats
it in several packets of a scene, so that losing any one packet never loses the scene, and
because at low rates a JSON header was a sixth of a 256x256 image's file. Fields that are
usually at their default (bit depth from the dtype, 8-bit value ranges, source bands 1..n,
no band descriptions, no halo) cost one flag bit, and the tiler's default band groups
(:func:`plan_groups` of the band count, dtype and colour interpretation) one zero byte; the
CRS is an EPSG code when that code reproduces the source CRS exactly, otherwise WKT deflated
against a fixed dictionary of common WKT (:mod:`fool.shared.crs`). Layout: docs/format.md.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence

from fool.shared.bands import SUPPORTED_DTYPES, plan_groups
from fool.shared.crs import deflate_wkt, inflate_wkt
from fool.shared.deflate import inflate_exact
from fool.shared.errors import ContainerError
from fool.shared.geometry import ALIGN
from fool.shared.scene import MASK_KINDS, SceneHeader
from fool.shared.varint import read_varint, varint

#: GDAL colour interpretations by code; anything else is coded as "undefined".
COLORINTERP = (
    "undefined",
    "gray",
    "palette",
    "red",
    "green",
    "blue",
    "alpha",
    "hue",
    "saturation",
    "lightness",
    "cyan",
    "magenta",
    "yellow",
    "black",
    "Y",
    "Cb",
    "Cr",
)
SHA_PREFIX = 8  # bytes of the weights' SHA-256 kept: enough to refuse a wrong model
MAX_WKT = 1 << 16

# flag bits: which optional fields follow
_BITS, _RANGES, _SOURCE, _CRS, _TRANSFORM, _DESCRIPTIONS, _COLORINTERP, _HALO = (1 << i for i in range(8))
_CRS_EPSG, _CRS_WKT, _CRS_WKT_DICT = 1, 2, 3  # kind 2 (plain zlib) is read, no longer written
# number tags
_NONE, _INT, _F32, _F64, _NAN = range(5)


def _num(v: float | None) -> bytes:
    """A number in as few bytes as it needs: integers as zigzag varints, floats as f32 when exact."""
    if v is None:
        return bytes([_NONE])
    if isinstance(v, float) and math.isnan(v):
        return bytes([_NAN])
    if float(v).is_integer() and abs(v) < 2**62:
        n = int(v)
        return bytes([_INT]) + varint(n << 1 if n >= 0 else (-n << 1) - 1)
    if abs(v) < 3e38 and struct.unpack("<f", struct.pack("<f", v))[0] == v:
        return bytes([_F32]) + struct.pack("<f", v)
    return bytes([_F64]) + struct.pack("<d", v)


def _str(s: str) -> bytes:
    raw = s.encode()
    return varint(len(raw)) + raw


def default_bits(dtype: str) -> int | None:
    return {"uint8": 8, "uint16": 16, "uint32": 32}.get(dtype)


def default_ranges(scene_bits: list[int | None], dtype: str) -> list[list[float]] | None:
    """The value ranges a plain 8-bit scene has; deeper or float scenes always carry theirs."""
    return [[0, 255]] * len(scene_bits) if dtype == "uint8" else None


def encode_header(h: SceneHeader) -> bytes:
    """The header body (without the container's magic, version, length and CRC)."""
    n = h.count
    flags = 0
    opt = bytearray()
    if h.bits != [default_bits(h.dtype)] * n:
        flags |= _BITS
        opt += bytes(b or 0 for b in h.bits)
    if h.ranges != default_ranges(h.bits, h.dtype):
        flags |= _RANGES
        opt += b"".join(_num(lo) + _num(hi) for lo, hi in h.ranges)
    if h.source_bands != list(range(1, n + 1)):
        flags |= _SOURCE
        opt += b"".join(varint(b) for b in h.source_bands)
    if h.crs:
        flags |= _CRS
        if h.crs.startswith("EPSG:") and h.crs[5:].isdigit():
            opt += bytes([_CRS_EPSG]) + varint(int(h.crs[5:]))
        else:
            wkt = deflate_wkt(h.crs)
            if len(h.crs.encode()) > MAX_WKT or len(wkt) > MAX_WKT:
                raise ContainerError(f"the scene's CRS WKT is longer than {MAX_WKT} bytes")
            opt += bytes([_CRS_WKT_DICT]) + varint(len(wkt)) + wkt
    if list(h.transform) != [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]:
        flags |= _TRANSFORM
        opt += b"".join(_num(v) for v in h.transform)
    if any(h.descriptions):
        flags |= _DESCRIPTIONS
        opt += b"".join(_str(d or "") for d in h.descriptions)
    if any(c != "undefined" for c in h.colorinterp):
        flags |= _COLORINTERP
        opt += bytes(COLORINTERP.index(c) if c in COLORINTERP else 0 for c in h.colorinterp)
    if h.halo:
        flags |= _HALO
        opt += varint(h.halo // ALIGN)
    sha = bytes.fromhex(h.model_sha256[: 2 * SHA_PREFIX])
    if [list(g) for g in h.groups] == [list(g) for g in plan_groups(n, h.dtype, tuple(h.colorinterp))]:
        groups = varint(0)  # the tiler's default grouping, which the decoder plans again
    else:
        groups = varint(len(h.groups)) + b"".join(bytes([len(g)]) + b"".join(varint(b) for b in g) for g in h.groups)
    return (
        bytes([flags])
        + varint(h.width)
        + varint(h.height)
        + varint(n)
        + bytes([SUPPORTED_DTYPES.index(h.dtype), MASK_KINDS.index(h.mask)])
        + _num(h.nodata)
        + varint(h.tile_size // ALIGN)
        + _str(h.model_name)
        + sha
        + groups
        + bytes(opt)
    )


class _Reader:
    """Bounds-checked reads from an untrusted header body; every failure is a ContainerError."""

    def __init__(self, buf: bytes) -> None:
        self.buf, self.pos = buf, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise ContainerError("scene header is truncated")
        self.pos += n
        return self.buf[self.pos - n : self.pos]

    def byte(self) -> int:
        return self.take(1)[0]

    def varint(self, limit: int) -> int:
        v, self.pos = read_varint(self.buf, self.pos, "scene header field")
        if v > limit:
            raise ContainerError(f"scene header field {v} exceeds {limit}")
        return v

    def num(self) -> float | None:
        tag = self.byte()
        if tag == _NONE:
            return None
        if tag == _NAN:
            return float("nan")
        if tag == _INT:
            z = self.varint(1 << 63)
            return float(z >> 1 if not z & 1 else -((z + 1) >> 1))
        if tag == _F32:
            return struct.unpack("<f", self.take(4))[0]
        if tag == _F64:
            return struct.unpack("<d", self.take(8))[0]
        raise ContainerError(f"scene header has an unknown number tag {tag}")

    def str(self, limit: int = 4096) -> str:
        try:
            return self.take(self.varint(limit)).decode()
        except UnicodeDecodeError:
            raise ContainerError("scene header text is not UTF-8") from None


def decode_header(body: bytes) -> SceneHeader:
    """Parse and validate an untrusted header body (see :func:`encode_header`)."""
    r = _Reader(body)
    flags = r.byte()
    width, height, n = r.varint(1 << 24), r.varint(1 << 24), r.varint(4096)
    dtype_code, mask_code = r.byte(), r.byte()
    if dtype_code >= len(SUPPORTED_DTYPES) or mask_code >= len(MASK_KINDS) or n == 0:
        raise ContainerError("scene header has an unknown dtype, mask kind or no bands")
    dtype = SUPPORTED_DTYPES[dtype_code]
    nodata = r.num()
    tile_size = r.varint(8192 // ALIGN) * ALIGN
    model_name, sha = r.str(256), r.take(SHA_PREFIX).hex()
    groups: list[list[int]] = []
    for _ in range(r.varint(n)):
        size = r.byte()
        groups.append([r.varint(n) for _ in range(size)])
    bits = [b or None for b in r.take(n)] if flags & _BITS else [default_bits(dtype)] * n
    ranges: Sequence[Sequence[float | None]] | None  # untrusted: SceneHeader.from_dict checks them
    if flags & _RANGES:
        ranges = [[r.num(), r.num()] for _ in range(n)]
    else:
        ranges = default_ranges(bits, dtype)
        if ranges is None:
            raise ContainerError("scene header lacks the value ranges of a non-8-bit scene")
    source = [r.varint(1 << 16) for _ in range(n)] if flags & _SOURCE else list(range(1, n + 1))
    crs = None
    if flags & _CRS:
        kind = r.byte()
        if kind == _CRS_EPSG:
            crs = f"EPSG:{r.varint(1 << 31)}"
        elif kind == _CRS_WKT:
            try:
                crs = inflate_exact(zlib.decompressobj(), r.take(r.varint(MAX_WKT)), MAX_WKT).decode()
            except (ValueError, UnicodeDecodeError):
                raise ContainerError("scene header CRS is corrupt") from None
        elif kind == _CRS_WKT_DICT:
            try:
                crs = inflate_wkt(r.take(r.varint(MAX_WKT)), MAX_WKT)
            except ValueError:
                raise ContainerError("scene header CRS is corrupt") from None
        else:
            raise ContainerError(f"scene header has an unknown CRS kind {kind}")
    transform = [r.num() for _ in range(6)] if flags & _TRANSFORM else [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    descriptions = [r.str() or None for _ in range(n)] if flags & _DESCRIPTIONS else [None] * n
    if flags & _COLORINTERP:
        codes = r.take(n)
        colorinterp = [COLORINTERP[c] if c < len(COLORINTERP) else "undefined" for c in codes]
    else:
        colorinterp = ["undefined"] * n
    halo = r.varint(64) * ALIGN if flags & _HALO else 0
    if not groups:
        groups = [list(g) for g in plan_groups(n, dtype, tuple(colorinterp))]
    if r.pos != len(body):
        raise ContainerError(f"scene header holds {len(body) - r.pos} bytes after its fields")
    fields = {
        "width": width,
        "height": height,
        "dtype": dtype,
        "bits": bits,
        "ranges": ranges,
        "groups": groups,
        "nodata": "nan" if isinstance(nodata, float) and math.isnan(nodata) else nodata,
        "mask": MASK_KINDS[mask_code],
        "crs": crs,
        "transform": transform,
        "descriptions": descriptions,
        "colorinterp": colorinterp,
        "source_bands": source,
        "tile_size": tile_size,
        "model_name": model_name,
        "model_sha256": sha,
        "halo": halo,
    }
    return SceneHeader.from_dict(fields)
