"""Entropy tables and the rANS coder, in numpy only.

The tables (quantised CDFs, offsets, lengths, scale table, medians, gains) are computed once
when a model is released and shipped in its ``.npz``; both sides read them from there and
never recompute them, so the encoder and the decoder use the same integers.

compressai's compiled rANS extension is loaded straight from its file, without running
``compressai/__init__.py`` (which imports torch), so the flight path stays torch-free.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from fool.shared.errors import ContainerError


@cache
def rans():
    """The ``compressai.ans`` extension module, loaded without importing compressai."""
    spec = importlib.util.find_spec("compressai")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("compressai is not installed; it provides the rANS coder")
    folder = Path(next(iter(spec.submodule_search_locations)))
    lib = next(iter(sorted(folder.glob("ans*.so")) + sorted(folder.glob("ans*.pyd"))), None)
    if lib is None:
        raise ImportError(f"compressai's rANS extension not found in {folder}")
    loader = importlib.machinery.ExtensionFileLoader("compressai.ans", str(lib))
    mod_spec = importlib.util.spec_from_file_location("compressai.ans", lib, loader=loader)
    module = importlib.util.module_from_spec(mod_spec)
    loader.exec_module(module)
    return module


@dataclass(frozen=True)
class CdfTable:
    """Quantised CDFs for a family of distributions, indexed per symbol."""

    cdf: np.ndarray  # (K, L) int32
    length: np.ndarray  # (K,) int32
    offset: np.ndarray  # (K,) int32
    #: the rows, lengths and offsets as the coder takes them (set from the arrays)
    _lists: tuple[list[list[int]], list[int], list[int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "_lists", (_cdf_rows(self.cdf, self.length), self.length.tolist(), self.offset.tolist())
        )

    def encode(self, symbols: np.ndarray, indexes: np.ndarray) -> bytes:
        cdf, length, offset = self._lists
        enc = rans().RansEncoder()
        return enc.encode_with_indexes(
            symbols.reshape(-1).astype(np.int32).tolist(),
            indexes.reshape(-1).astype(np.int32).tolist(),
            cdf,
            length,
            offset,
        )

    def decode(self, data: bytes, indexes: np.ndarray) -> np.ndarray:
        if len(data) < 8:
            raise ContainerError(f"entropy-coded stream of {len(data)} bytes is too short (truncated tile?)")
        cdf, length, offset = self._lists
        # rANS reads ahead of where a damaged stream ends; zero padding keeps every read
        # inside our buffer: at most one 4-byte renormalisation per symbol, and bypass
        # (escape) runs end at the first zero nibble, so they cannot outrun the data + padding.
        padded = data + bytes(4 * indexes.size + len(data) + 64)
        values = (
            rans()
            .RansDecoder()
            .decode_with_indexes(padded, indexes.reshape(-1).astype(np.int32).tolist(), cdf, length, offset)
        )
        return np.asarray(values, dtype=np.int32).reshape(indexes.shape)


def _cdf_rows(cdf: np.ndarray, length: np.ndarray) -> list[list[int]]:
    """The CDF rows as lists, each cut to its length when that is safe.

    compressai converts the whole table to C++ vectors on every call: with the padded rows
    (64 x 3133 for y) that was most of the coder's time. The coder and the decoder only read
    entries below ``length`` (the decoder's search stops at the row's last entry, 2**16,
    which every state's cumulative frequency is below), so the cut rows code the same bits.
    Rows that do not end in 2**16 keep their padding, as before.
    """
    rows = cdf.tolist()
    n = np.asarray(length, dtype=np.int64)
    k = np.arange(len(n))
    ok = (n >= 2) & (n <= cdf.shape[1])
    if ok.all() and (cdf[k, n - 1] == 1 << 16).all():
        return [r[:m] for r, m in zip(rows, n.tolist(), strict=True)]
    return rows


#: (tables...) -> the tables' rows, lengths and offsets end to end, and each table's first index
_JOINT: dict[tuple[int, ...], tuple] = {}


def _joint(tables: tuple[CdfTable, ...]):
    key = tuple(id(t) for t in tables)
    hit = _JOINT.get(key)
    if hit is None or any(a is not b for a, b in zip(hit[0], tables, strict=True)):
        cdf: list[list[int]] = []
        length: list[int] = []
        offset: list[int] = []
        base: list[int] = []
        for t in tables:
            base.append(len(length))
            c, n, o = t._lists
            cdf += c
            length += n
            offset += o
        if len(_JOINT) > 16:
            _JOINT.clear()
        hit = _JOINT[key] = (tables, (cdf, length, offset), base)
    return hit[1], hit[2]


def encode_stream(chunks: list[tuple[CdfTable, np.ndarray, np.ndarray]]) -> bytes:
    """(table, symbols, indexes) chunks -> one rANS stream, decoded in the same order.

    One stream per tile instead of one per latent: every rANS stream ends in an 8-byte state
    flush and needs a length field, which at 128-px tiles and low rates was a tenth of the bits.

    The chunks go to the coder in one call, against their tables joined end to end (each
    chunk's indexes shifted to its table's rows): the buffered coder codes each symbol with
    its own row alone, so the stream is the one that a call per chunk would write, and the
    tables cross into C++ once per tile instead of once per chunk.
    """
    tables: list[CdfTable] = []
    for table, _, _ in chunks:
        if not any(table is t for t in tables):
            tables.append(table)
    (cdf, length, offset), base = _joint(tuple(tables))
    symbols, indexes = [], []
    for table, sym, idx in chunks:
        b = base[next(i for i, t in enumerate(tables) if t is table)]
        symbols.append(np.asarray(sym, dtype=np.int32).reshape(-1))
        indexes.append(np.asarray(idx, dtype=np.int32).reshape(-1) + np.int32(b))
    enc = rans().BufferedRansEncoder()
    if symbols:
        enc.encode_with_indexes(np.concatenate(symbols).tolist(), np.concatenate(indexes).tolist(), cdf, length, offset)
    return trim_state(enc.flush())


def trim_state(stream: bytes) -> bytes:
    """compressai's stream without the zero high bytes (up to 3) of its final rANS state.

    The stream is 32-bit words and starts with the coder's 64-bit final state, low word first.
    That state is spread roughly log-uniformly over [2**31, 2**63), so its high word often starts
    with zero bytes: 1.6 of them a tile on average. Dropping them leaves the length 1-3 bytes
    short of a whole word, and that remainder tells :func:`restore_state` how many to put back,
    so the saving needs no length field. A stream of whole words is returned as it is.
    """
    k = 0
    while k < 3 and stream[7 - k] == 0:
        k += 1
    return stream[: 8 - k] + stream[8:]


def restore_state(data: bytes) -> bytes:
    """The inverse of :func:`trim_state`: compressai's stream of whole 32-bit words."""
    k = -len(data) % 4
    return data[: 8 - k] + bytes(k) + data[8 - k :]


class StreamDecoder:
    """Reads the chunks of :func:`encode_stream` back, one call per chunk, in order.

    ``symbols`` bounds how many symbols all calls together may read; the zero padding it
    sizes keeps every read of a hostile stream inside our buffer (see :meth:`CdfTable.decode`).
    """

    def __init__(self, data: bytes, symbols: int) -> None:
        data = restore_state(data)
        if len(data) < 8:
            raise ContainerError(f"entropy-coded stream of {len(data)} bytes is too short (truncated tile?)")
        self._budget = symbols
        self._dec = rans().RansDecoder()
        self._dec.set_stream(data + bytes(4 * symbols + len(data) + 64))

    def decode(self, table: CdfTable, indexes: np.ndarray) -> np.ndarray:
        if indexes.size > self._budget:
            raise ContainerError("tile stream holds more symbols than its latents")
        self._budget -= indexes.size
        cdf, length, offset = table._lists
        values = self._dec.decode_stream(indexes.reshape(-1).astype(np.int32).tolist(), cdf, length, offset)
        return np.asarray(values, dtype=np.int32).reshape(indexes.shape)


def scale_indexes(scales: np.ndarray, scale_table: np.ndarray) -> np.ndarray:
    """Same rule as compressai's GaussianConditional.build_indexes, on exact float64 inputs."""
    return np.searchsorted(scale_table[:-1], scales, side="left").astype(np.int32)
