"""Classical intra coding of one tile: JPEG 2000 (irreversible 9/7 or reversible 5/3) and JPEG-LS.

A tile in mode ``MODE_INTRA`` (shared.format) holds one of these payloads instead of learned
latents. They serve where the learned codec is weak: periodic textures a wavelet codes cheaply,
rates above the model's top level, and a guaranteed maximum absolute error (JPEG-LS ``NEAR``).

Both sides code the tile's raw values (uint8 or uint16) over its true size. Codecs 1..3 code
one image per band group (a 3-band group is one 3-component image; JPEG 2000 then applies its
colour transform: irreversible ICT with 9/7, reversible RCT with 5/3). Layout (``v`` is a
LEB128 varint)::

    u8 codec                1 JPEG 2000 reversible 5/3, 2 JPEG-LS, 3 JPEG 2000 irreversible 9/7
    [JPEG-LS: v near]       the maximum absolute error of every sample
    per band group, in header order:
      [JPEG 2000: u8 bits]  sample precision of the group's codestream (1..16)
      v length, bytes       the codestream without its main header and without the final EOC;
                            JPEG 2000: also without its one tile-part header (SOT, SOD)

Codecs 4 (5/3) and 5 (9/7) are JPEG 2000 in explicit parts, which cover the bands in band
order, independent of the band groups::

    u8 codec, u8 parts      4 or 5; 1 .. (number of bands) parts
    parts x u8              the part's component count (1..127) | 0x80 if it has the colour
                            transform (3 components only)
    per part: u8 bits, v length, bytes   as for codecs 1 and 3

The encoder writes them for the ``joint`` layout (:data:`LAYOUTS`): one codestream of every
band without the colour transform, whose wavelet coder shares one rate allocation across bands.
Each band group coded alone to the same PSNR target spends bits where they buy least on
correlated multispectral bands: on a 128-px Landsat SWIR/NIR/red/green tile at 28 dB, one
4-component codestream took 1,937 bytes against 3,836 for RGB-with-ICT plus NIR
(docs/experiments.md, "Team scenes, image by image").

The main headers hold nothing the scene header and the codec byte do not say already (size,
components, precision, wavelet; measured: 88 bytes for a 128x128 RGB uint8 tile with 5/3, 101
with 9/7, 79 for JPEG-LS), so the decoder regenerates them by coding a zero image of the same
geometry with the same parameters and keeping its header (cached). The 9/7 header's QCD segment
holds explicit quantisation step sizes; OpenJPEG derives them from the precision and the number
of decomposition levels only (the rate is set by truncating code-blocks, not by the step), so
they are the same for every content and PSNR target: measured on uint8 RGB, uint8 grey and
12-bit uint16 tiles of random and zero content at 20..60 dB. Comment segments (OpenJPEG's
version string) are dropped from the regenerated header, so it does not depend on the
library's version. The encoder checks that its own header is the regenerated one before it
strips it. OpenJPEG writes one tile holding one tile-part, so its SOT segment (tile 0, part 0
of 1) and SOD say nothing but the tile-part length, which the decoder rebuilds from the stored
length: 14 bytes a band group fewer (UC Merced dev, 22 hard images, ``--modes auto``: mean
per-image BD-rate vs JPEG 2000 +11.7 % -> +10.9 %). The encoder checks that its tile-part
header is that one. A side effect is safety: the image size the decoder allocates comes from
trusted code, not from the payload, and the component counts of codecs 4/5 are checked
against the scene's bands.

Determinism. The codestream (the symbols) of every codec decodes bit-exactly everywhere. The
samples differ in kind: the reversible 5/3 wavelet and RCT are integer arithmetic, so every
machine decodes the same samples, as does JPEG-LS. The irreversible 9/7 reconstruction is
OpenJPEG's floating-point inverse DWT and ICT, rounded to integers: deterministic for a given
OpenJPEG build and CPU, and it may differ by +-1 grey level across builds or architectures --
the same class as the learned codec, whose symbols are exact and whose synthesis is float.
9/7 costs far fewer bytes (UC Merced, 22 hard images, every tile JPEG 2000 at 128 px: +8.3 %
BD-rate vs whole-image JPEG 2000 against +30.1 % with 5/3), so it is the default of
``--modes auto`` and qualities 9..12; 5/3 stays for a bit-exact guarantee, and ``--max-error``
(JPEG-LS) needs exact decoding for its bound.

Every failure to parse a payload raises :class:`ContainerError`.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence

import numpy as np
from fool.shared.errors import ContainerError
from fool.shared.varint import read_varint, varint

#: codec bytes: CODEC_J2K is JPEG 2000 with the reversible 5/3 wavelet (integer-exact decode);
#: CODEC_J2K_PARTS and CODEC_J2K97_PARTS are JPEG 2000 in explicit parts (5/3, 9/7)
CODEC_J2K, CODEC_JPEGLS, CODEC_J2K97, CODEC_J2K_PARTS, CODEC_J2K97_PARTS = 1, 2, 3, 4, 5
CODEC_NAMES = {
    CODEC_J2K: "j2k",
    CODEC_JPEGLS: "jpegls",
    CODEC_J2K97: "j2k97",
    CODEC_J2K_PARTS: "j2k-parts",
    CODEC_J2K97_PARTS: "j2k97-parts",
}
#: JPEG 2000 wavelets by name (``--intra-wavelet``) -> codec byte; 97 is irreversible (float decode)
WAVELETS = {53: CODEC_J2K, 97: CODEC_J2K97}
_PARTS_CODEC = {CODEC_J2K: CODEC_J2K_PARTS, CODEC_J2K97: CODEC_J2K97_PARTS}
DEFAULT_WAVELET = 97
_REVERSIBLE = {CODEC_J2K: True, CODEC_J2K97: False, CODEC_J2K_PARTS: True, CODEC_J2K97_PARTS: False}
#: JPEG 2000 layouts of a tile's bands: one codestream per band group (3-band groups with the
#: colour transform), or one codestream of every band without it
GROUPS, JOINT = "groups", "joint"
LAYOUTS = (GROUPS, JOINT)
_MCT = 0x80
MAX_PART_COMPONENTS = 127
#: dtypes the classical modes code (JPEG-LS and JPEG 2000 take unsigned samples up to 16 bits)
INTRA_DTYPES = ("uint8", "uint16")
#: PSNR target of the zero image whose JPEG 2000 header is regenerated: any lossy target gives the
#: same header (a target below 1 dB means lossless to OpenJPEG, which codes another COD segment)
_HEADER_TARGET = 40.0
_MIN_TARGET = 1.0
MAX_NEAR = 255  # JPEG-LS allows up to half the sample range; larger values buy nothing here

SOT, EOC, SOS, EOI, COM_J2K, COM_JPEG = 0xFF90, b"\xff\xd9", 0xFFDA, b"\xff\xd9", 0xFF64, 0xFFFE
SOD = b"\xff\x93"
#: SOT segment (Lsot 10, tile 0, Psot, part 0 of 1) and SOD: the tile-part header the decoder rebuilds
_TILE_PART = struct.Struct(">HHHIBB")
TILE_PART_BYTES = _TILE_PART.size + len(SOD)


def _tile_part_header(body: int) -> bytes:
    """The SOT and SOD of the one tile-part whose data (between SOD and EOC) is ``body`` bytes."""
    return _TILE_PART.pack(SOT, 10, 0, TILE_PART_BYTES + body, 0, 1) + SOD


def _ic():
    import imagecodecs

    return imagecodecs


def _hwc(values: np.ndarray) -> np.ndarray:
    """(c, h, w) -> what imagecodecs takes: (h, w) for one component, (h, w, c) otherwise."""
    # a copy, not ascontiguousarray: that keeps odd strides on size-1 axes, which CharLS refuses
    return np.array(values[0] if values.shape[0] == 1 else values.transpose(1, 2, 0), order="C", copy=True)


def _split_header(stream: bytes, stop: int, include_stop: bool) -> tuple[bytes, int]:
    """-> (main header without comment segments, offset where the body starts).

    Walks the marker segments by their lengths from SOC/SOI (never by searching for a marker,
    whose two bytes can occur inside a segment) up to the ``stop`` marker; with
    ``include_stop`` the stop segment (JPEG-LS's SOS) belongs to the header."""
    pos, kept = 2, bytearray(stream[:2])
    while pos + 4 <= len(stream):
        (marker, length) = struct.unpack_from(">HH", stream, pos)
        if marker == stop and not include_stop:
            return bytes(kept), pos
        end = pos + 2 + length
        if length < 2 or end > len(stream):
            break
        if marker not in (COM_J2K, COM_JPEG):
            kept += stream[pos:end]
        if marker == stop:
            return bytes(kept), end
        pos = end
    raise RuntimeError("codestream has no body after its main header")


@functools.lru_cache(maxsize=64)
def j2k_header(height: int, width: int, components: int, bits: int, reversible: bool = True, mct: bool = True) -> bytes:
    """The main header OpenJPEG writes for a lossy tile of this geometry and wavelet (reversible
    5/3 or irreversible 9/7), comments dropped; ``mct`` (3 components only) is the colour transform."""
    dtype = np.uint8 if bits <= 8 else np.uint16
    zero = np.zeros((components, height, width), dtype)
    return _split_header(_j2k_raw(zero, bits, _HEADER_TARGET, reversible, mct), SOT, False)[0]


@functools.lru_cache(maxsize=64)
def jpegls_header(height: int, width: int, components: int, dtype: str, near: int) -> bytes:
    """The JPEG-LS header (SOI .. end of SOS) CharLS writes for this geometry and ``near``."""
    zero = np.zeros((components, height, width), dtype)
    return _split_header(bytes(_ic().jpegls_encode(_hwc(zero), level=near)), SOS, True)[0]


def _j2k_raw(values: np.ndarray, bits: int, target: float, reversible: bool = True, mct: bool = True) -> bytes:
    depth = bits if values.dtype == np.uint16 else None
    data = _ic().jpeg2k_encode(
        _hwc(values),
        level=max(float(target), _MIN_TARGET),
        codecformat="J2K",
        reversible=reversible,
        mct=mct and values.shape[0] == 3,
        bitspersample=depth,
    )
    return bytes(data)


def _precision(values: np.ndarray) -> int:
    """Bits per sample a tile declares: 8 for uint8; for uint16 what its largest value needs,
    at least 9, because OpenJPEG writes 16-bit samples declared 8-bit or less with a 16-bit SIZ
    while :func:`j2k_header` would rebuild an 8-bit one (a dark Sentinel-2 B11 tile did)."""
    if values.dtype == np.uint8:
        return 8
    top = int(values.max()) if values.size else 0
    return max(9, top.bit_length())


def _strip(stream: bytes, header: bytes, stop: int, include_stop: bool) -> bytes:
    own, start = _split_header(stream, stop, include_stop)
    if own != header:
        raise RuntimeError("the codec wrote another main header than the one the decoder regenerates")
    if stream[-2:] != EOC:
        raise RuntimeError("codestream does not end with EOC")
    return stream[start:-2]


def _check_values(values: np.ndarray, groups: Sequence[Sequence[int]]) -> None:
    if values.dtype.name not in INTRA_DTYPES or values.ndim != 3 or not values.shape[1] or not values.shape[2]:
        raise ValueError(f"intra coding takes (bands, h, w) uint8 or uint16 values, got {values.dtype} {values.shape}")
    if sorted(b for g in groups for b in g) != list(range(1, values.shape[0] + 1)):
        raise ValueError(f"band groups {groups} do not cover the tile's {values.shape[0]} bands")


def _j2k_part(part: np.ndarray, target: float, reversible: bool, mct: bool) -> bytes:
    """One codestream of ``part`` (components, h, w) -> u8 bits, v length, data (headers stripped)."""
    bits = _precision(part)
    stream = _j2k_raw(part, bits, target, reversible, mct)
    header = j2k_header(part.shape[1], part.shape[2], part.shape[0], bits, reversible, mct and part.shape[0] == 3)
    body = _strip(stream, header, SOT, False)
    data = body[TILE_PART_BYTES:]
    if body[:TILE_PART_BYTES] != _tile_part_header(len(data)):
        raise RuntimeError("the codec wrote another tile-part header than the one the decoder rebuilds")
    return bytes([bits]) + varint(len(data)) + data


def encode_j2k(
    values: np.ndarray,
    groups: Sequence[Sequence[int]],
    target_psnr: float,
    wavelet: int = DEFAULT_WAVELET,
    layout: str = GROUPS,
) -> bytes:
    """(bands, h, w) raw values -> a JPEG 2000 intra payload at a PSNR target (dB, per codestream,
    peak of its precision), with the 9/7 (float decode) or 5/3 (integer-exact) wavelet, one
    codestream per band group or (``layout="joint"``) one of every band (:data:`LAYOUTS`)."""
    _check_values(values, groups)
    if wavelet not in WAVELETS:
        raise ValueError(f"JPEG 2000 wavelet must be one of {sorted(WAVELETS)}, got {wavelet}")
    if layout not in LAYOUTS:
        raise ValueError(f"JPEG 2000 layout must be one of {LAYOUTS}, got {layout!r}")
    codec = WAVELETS[wavelet]
    reversible = _REVERSIBLE[codec]
    bands = values.shape[0]
    if layout == JOINT and len(groups) > 1:
        if bands > MAX_PART_COMPONENTS:
            raise ValueError(f"a joint JPEG 2000 codestream holds at most {MAX_PART_COMPONENTS} bands, got {bands}")
        return bytes([_PARTS_CODEC[codec], 1, bands]) + _j2k_part(values, target_psnr, reversible, False)
    out = bytearray([codec])
    for g in groups:
        out += _j2k_part(np.ascontiguousarray(values[[b - 1 for b in g]]), target_psnr, reversible, True)
    return bytes(out)


def encode_jpegls(values: np.ndarray, groups: Sequence[Sequence[int]], near: int) -> bytes:
    """(bands, h, w) raw values -> a JPEG-LS payload whose every sample decodes within ``near``."""
    _check_values(values, groups)
    if not 0 <= near <= MAX_NEAR:
        raise ValueError(f"near must be 0..{MAX_NEAR}, got {near}")
    out = bytearray([CODEC_JPEGLS]) + varint(near)
    for g in groups:
        part = np.ascontiguousarray(values[[b - 1 for b in g]])
        stream = bytes(_ic().jpegls_encode(_hwc(part), level=near))
        header = jpegls_header(part.shape[1], part.shape[2], part.shape[0], part.dtype.name, near)
        body = _strip(stream, header, SOS, True)
        out += varint(len(body)) + body
    return bytes(out)


def codec_of(payload: bytes) -> str:
    """The classical codec's name a payload names (:data:`CODEC_NAMES`; 'j2k' is 5/3); ContainerError if none."""
    if not payload or payload[0] not in CODEC_NAMES:
        raise ContainerError(f"intra tile names unknown codec {payload[0] if payload else None}")
    return CODEC_NAMES[payload[0]]


def _read_parts(payload: bytes, bands: int) -> tuple[list[tuple[list[int], bool]], int]:
    """The explicit parts of a codec 4/5 payload -> ([(bands of the part, colour transform)], offset)."""
    if len(payload) < 2:
        raise ContainerError("intra tile is truncated")
    count = payload[1]
    if not 1 <= count <= bands or len(payload) < 2 + count:
        raise ContainerError(f"intra tile declares {count} JPEG 2000 parts for {bands} bands")
    parts, first = [], 1
    for byte in payload[2 : 2 + count]:
        n, mct = byte & ~_MCT, bool(byte & _MCT)
        if not n or (mct and n != 3) or first + n - 1 > bands:
            what = " with colour transform" if mct else ""
            raise ContainerError(f"intra tile part of {n} components{what} is invalid")
        parts.append((list(range(first, first + n)), mct))
        first += n
    if first != bands + 1:
        raise ContainerError(f"intra tile parts cover {first - 1} of {bands} bands")
    return parts, 2 + count


def decode(payload: bytes, groups: Sequence[Sequence[int]], shape: tuple[int, int], dtype: str) -> np.ndarray:
    """An intra payload -> (bands, h, w) raw values of ``dtype``. The payload is untrusted:
    every failure, whatever the library raised, is a ContainerError."""
    if dtype not in INTRA_DTYPES:
        raise ContainerError(f"intra tiles hold uint8 or uint16 samples; the scene is {dtype}")
    codec = codec_of(payload)
    j2k = codec != "jpegls"
    h, w = shape
    bands = sum(len(g) for g in groups)
    out = np.empty((bands, h, w), dtype)
    pos, near = 1, 0
    parts: list[tuple[list[int], bool]] = [(list(g), True) for g in groups]
    if codec == "jpegls":
        near, pos = read_varint(payload, pos, "intra tile NEAR", 3)
        if near > MAX_NEAR:
            raise ContainerError(f"intra tile NEAR {near} is out of range")
    elif payload[0] in (CODEC_J2K_PARTS, CODEC_J2K97_PARTS):
        parts, pos = _read_parts(payload, bands)
    for g, mct in parts:
        if j2k:
            if pos >= len(payload):
                raise ContainerError("intra tile is truncated")
            bits, pos = payload[pos], pos + 1
            if not 1 <= bits <= (8 if dtype == "uint8" else 16):
                raise ContainerError(f"intra tile precision {bits} does not fit {dtype}")
            header = j2k_header(h, w, len(g), bits, _REVERSIBLE[payload[0]], mct and len(g) == 3)
        else:
            header = jpegls_header(h, w, len(g), dtype, near)
        n, pos = read_varint(payload, pos, "intra tile length", 5)
        if pos + n > len(payload):
            raise ContainerError("intra tile declares more bytes than it holds")
        body = payload[pos : pos + n]
        stream = header + (_tile_part_header(n) if j2k else b"") + body + EOC
        pos += n
        try:
            ic = _ic()
            img = np.asarray(ic.jpeg2k_decode(stream) if j2k else ic.jpegls_decode(stream))
        except Exception as exc:  # noqa: BLE001 - hostile bytes: whatever the library raises is a damaged tile
            raise ContainerError(f"intra tile does not decode ({type(exc).__name__}: {exc})") from None
        want = (h, w) if len(g) == 1 else (h, w, len(g))
        if img.shape != want or img.dtype != np.dtype(dtype):
            raise ContainerError(f"intra tile decoded to {img.dtype} {img.shape}, expected {dtype} {want}")
        part = img[None] if len(g) == 1 else img.transpose(2, 0, 1)
        for j, band in enumerate(g):
            out[band - 1] = part[j]
    if pos != len(payload):
        raise ContainerError(f"intra tile holds {len(payload) - pos} bytes after its last band group")
    return out
