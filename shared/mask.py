"""Lossless coding of a tile's validity mask: row transitions coded against the row above.

A nodata mask is mostly the edge of a scene's footprint (a rotated rectangle) plus a few holes.
zlib of the packed bits spends 360-2,000 bytes on such a scene (on a 790x720 Landsat scene at
0.1 bpp, over a quarter of the file); the footprint's edges move by a pixel or a few from row to
row, so this coder writes, for each row, where the validity changes relative to the changes of
the row above, as fax coders do (ITU-T T.6 "vertical mode"):

- a row is the sorted positions ``t`` in ``0..width`` where pixel ``t`` differs from pixel
  ``t - 1``, pixels outside the row counting as valid, so a wholly valid row has none and the
  positions alternate between the start of an invalid run (even index) and its end (odd index);
- each position ``a1`` is a byte ``V + d`` (0..30) when the row above has a change of the same
  kind (same index parity) at ``b1 = a1 - d`` with ``|d| <= V``, where ``b1`` is the first such
  change at a position greater than the previous position ``a0`` of this row (``a0 = -1`` at
  the start of a row), as in T.6; else the byte ``HORIZONTAL`` (31) and the LEB128 (at most
  5 bytes) of ``a1 - a0 - 1``; the byte ``END_OF_ROW`` (32) closes every row. The first row's
  reference is a row without changes; there are exactly ``height`` rows and nothing after;
- the symbol bytes are deflated (raw, no zlib header) behind the method byte :data:`TRANSITIONS`.

A mask payload is either this or, as before, a zlib stream of the packed bits (whose first byte
always has 8 in its low nibble, so it never equals :data:`TRANSITIONS`); the encoder keeps the
smaller. Decoding treats every byte as hostile: positions must rise strictly within the row,
stay within it, pair up, and the output is bounded by the tile's size. The decoder accepts
non-canonical forms (a horizontal code where a vertical one would do), so the bytes of a mask
are not unique; its pixels are.
"""

from __future__ import annotations

import zlib
from bisect import bisect_right

import numpy as np
from fool.shared.deflate import inflate_exact
from fool.shared.errors import ContainerError
from fool.shared.varint import read_varint, varint

#: method byte of the transition coding (a zlib stream's first byte is 0x?8, never this)
TRANSITIONS = 0x01
#: largest vertical offset coded as one symbol; bytes 0 .. 2V are the offsets -V .. V
V = 15
HORIZONTAL = 2 * V + 1
END_OF_ROW = 2 * V + 2


def _changes(mask: np.ndarray) -> list[np.ndarray]:
    """Per row, the positions where validity changes (pixels outside the row count as valid)."""
    h, w = mask.shape
    padded = np.ones((h, w + 2), np.int8)
    padded[:, 1:-1] = mask
    rows, cols = np.nonzero(np.diff(padded, axis=1))
    return np.split(cols, np.searchsorted(rows, np.arange(1, h)))


def _reference(above: list[int], a0: int, index: int) -> int | None:
    """T.6's b1: the first change of the row above after ``a0`` of the same kind as ``index``."""
    j = bisect_right(above, a0)
    if j % 2 != index % 2:
        j += 1
    return above[j] if j < len(above) else None


def encode_transitions(mask: np.ndarray) -> bytes:
    """(h, w) bool -> method byte + raw deflate of the transition symbols."""
    symbols = bytearray()
    above: list[int] = []
    for changes in _changes(mask.astype(bool)):
        row = changes.tolist()
        a0 = -1
        for i, a1 in enumerate(row):
            b1 = _reference(above, a0, i)
            if b1 is not None and abs(a1 - b1) <= V:
                symbols.append(V + a1 - b1)
            else:
                symbols.append(HORIZONTAL)
                symbols += varint(a1 - a0 - 1)
            a0 = a1
        symbols.append(END_OF_ROW)
        above = row
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return bytes([TRANSITIONS]) + c.compress(bytes(symbols)) + c.flush()


def decode_transitions(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    """The inverse of :func:`encode_transitions` for a tile of ``shape``; ContainerError on
    anything that is not exactly one well-formed mask of that shape."""
    h, w = shape
    if h < 1 or w < 1:
        raise ContainerError("tile mask of an empty tile")
    if not data or data[0] != TRANSITIONS:
        raise ContainerError("tile mask has an unknown coding")
    # a row holds at most w + 1 changes of at most 1 + len(v(w)) bytes each, plus its end byte
    limit = h * ((w + 1) * (1 + len(varint(w))) + 1)
    symbols = _inflate(zlib.decompressobj(-15), data[1:], limit)
    mask = np.ones(shape, bool)
    above: list[int] = []
    pos = 0
    for r in range(h):
        row: list[int] = []
        a0 = -1
        while True:
            if pos >= len(symbols):
                raise ContainerError("tile mask ends inside a row")
            s = symbols[pos]
            pos += 1
            if s == END_OF_ROW:
                break
            if s == HORIZONTAL:
                run, pos = read_varint(symbols, pos, "tile mask run", 5)
                a1 = a0 + 1 + run
            elif s < HORIZONTAL:
                b1 = _reference(above, a0, len(row))
                if b1 is None:
                    raise ContainerError("tile mask refers to a change the row above does not have")
                a1 = b1 + s - V
            else:
                raise ContainerError(f"tile mask has an unknown symbol {s}")
            if not a0 < a1 <= w:
                raise ContainerError("tile mask changes out of order or outside the tile")
            row.append(a1)
            a0 = a1
        if len(row) % 2:
            raise ContainerError("tile mask has a row with an unclosed invalid run")
        for start, end in zip(row[::2], row[1::2], strict=True):
            mask[r, start:end] = False
        above = row
    if pos != len(symbols):
        raise ContainerError("tile mask has symbols past its last row")
    return mask


def encode_mask(mask: np.ndarray) -> bytes:
    """The smaller of the transition coding and zlib of the packed bits (the transitions are
    not tried when there are so many that their symbols alone would outweigh the bits)."""
    valid = mask.astype(bool)
    packed = zlib.compress(np.packbits(valid).tobytes(), 9)
    changes = int(np.count_nonzero(np.diff(valid, axis=1))) + int(np.count_nonzero(~valid[:, [0, -1]]))
    if changes >= 8 * len(packed):
        return packed
    transitions = encode_transitions(valid)
    return transitions if len(transitions) < len(packed) else packed


def _inflate(d, data: bytes, limit: int) -> bytes:
    try:
        return inflate_exact(d, data, limit)
    except ValueError as exc:
        raise ContainerError(f"tile mask is corrupt ({exc})") from None


def decode_mask(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    """Either coding of :func:`encode_mask` -> (h, w) bool; ContainerError on hostile bytes."""
    if data[:1] == bytes([TRANSITIONS]):
        return decode_transitions(data, shape)
    if shape[0] < 1 or shape[1] < 1:
        raise ContainerError("tile mask of an empty tile")
    expected = (shape[0] * shape[1] + 7) // 8
    raw = _inflate(zlib.decompressobj(), data, expected + 1)
    if len(raw) != expected:
        raise ContainerError("tile mask has the wrong size")
    return np.unpackbits(np.frombuffer(raw, np.uint8))[: shape[0] * shape[1]].reshape(shape).astype(bool)
