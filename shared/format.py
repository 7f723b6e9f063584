"""The ``.fool`` container: a self-describing, tile-addressable scene bitstream.

Layout (little-endian; full description in docs/format.md)::

    "FOOL" u16 version u16 reserved u32 header_len  header(JSON, UTF-8)  u32 crc32(header)
    tile payloads, back to back in raster order
    tile table: u16 base quality, then per tile (LEB128 varints "v"):
        v row - previous row, v col, v (length << 2 | own quality << 1 | mask flag), u32 crc32,
        [u16 quality, if it differs from the base]
    footer: u64 table_offset, u32 tile_count, u32 crc32(table), "LOOF"

The table sits at the end so the onboard writer streams tiles in constant memory; the
footer finds it. Every tile carries its own CRC and length, so each decodes on its own; its
offset is the sum of the lengths before it. A typical entry is 8 bytes: at 128-px tiles and
low rates the framing is a large share of a grey band's bits. The reader checks the table's
CRC, then that the entries fill it and the lengths fill the payload area exactly, before it
trusts any of them. Versions 1 and 2 had fixed 27-byte entries with an explicit u64 offset;
they are still read.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from fool.shared.errors import ChecksumError, ContainerError, OutputError, VersionError

MAGIC = b"FOOL"
END_MAGIC = b"LOOF"
#: Version 3 codes each tile as one rANS stream and has varint table entries (offsets implied);
#: version 2 sends only the latents that cover valid pixels (shared.geometry.coded_latents);
#: version 1 sent every latent of the padded tile. All are read.
VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
PREAMBLE = struct.Struct("<4sHHI")
ENTRY_V2 = struct.Struct("<IIQIIHB")  # versions 1 and 2
FOOTER = struct.Struct("<QII4s")
MAX_HEADER = 16 << 20
FLAG_MASK = 1  # the payload starts with a lossless validity mask
OWN_QUALITY = 2  # (version 3 table only) the entry carries its own quality code
MIN_ENTRY = 7  # bytes of the shortest version-3 entry


def varint(n: int) -> bytes:
    """LEB128: 7 bits a byte, low first; the high bit says another byte follows."""
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def read_varint(buf: bytes, pos: int, what: str = "varint") -> tuple[int, int]:
    """-> (value, position after it); at most 5 bytes (values below 2**35), inside ``buf``."""
    n = 0
    for i in range(5):
        if pos >= len(buf):
            raise ContainerError(f"{what} runs past the end of its data")
        byte = buf[pos]
        pos += 1
        n |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return n, pos
    raise ContainerError(f"{what} is longer than 5 bytes")


@dataclass(frozen=True)
class TileEntry:
    row: int
    col: int
    offset: int
    length: int
    crc32: int
    quality: int
    flags: int = 0


def pack_table(entries: list[TileEntry]) -> bytes:
    """The version-3 tile table of ``entries`` (in raster order)."""
    common = Counter(e.quality for e in entries).most_common(1)
    base = common[0][0] if common else 0
    out, prev_row = bytearray(struct.pack("<H", base)), 0
    for e in entries:
        own = OWN_QUALITY if e.quality != base else 0
        out += varint(e.row - prev_row) + varint(e.col) + varint(e.length << 2 | own | e.flags & FLAG_MASK)
        out += struct.pack("<I", e.crc32) + (struct.pack("<H", e.quality) if own else b"")
        prev_row = e.row
    return bytes(out)


class ContainerWriter:
    """Streams tiles into a temporary file; :meth:`close` publishes it atomically."""

    def __init__(self, path: Path, header: dict, version: int = VERSION) -> None:
        if version not in READABLE_VERSIONS:
            raise ValueError(f"cannot write container version {version}")
        self.path, self.version = Path(path), version
        self.table_bytes = 0  # set by close()
        self.tmp = self.path.with_name(f".{self.path.name}.partial")
        try:
            self._fh: BinaryIO = open(self.tmp, "wb")
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror}") from None
        head = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
        self._fh.write(PREAMBLE.pack(MAGIC, version, 0, len(head)) + head + struct.pack("<I", zlib.crc32(head)))
        self.entries: list[TileEntry] = []

    def add_tile(self, row: int, col: int, payload: bytes, quality: int, flags: int = 0) -> TileEntry:
        last = self.entries[-1] if self.entries else None
        if self.version >= 3 and last is not None and (row, col) <= (last.row, last.col):
            raise ValueError(f"tile ({row}, {col}) after ({last.row}, {last.col}): version 3 needs raster order")
        entry = TileEntry(row, col, self._fh.tell(), len(payload), zlib.crc32(payload), quality, flags)
        self._fh.write(payload)
        self.entries.append(entry)
        return entry

    def close(self) -> int:
        if self.version >= 3:
            table = pack_table(self.entries)
        else:
            table = b"".join(
                ENTRY_V2.pack(e.row, e.col, e.offset, e.length, e.crc32, e.quality, e.flags) for e in self.entries
            )
        table_offset, self.table_bytes = self._fh.tell(), len(table)
        self._fh.write(table + FOOTER.pack(table_offset, len(self.entries), zlib.crc32(table), END_MAGIC))
        size = self._fh.tell()
        self._fh.close()
        os.replace(self.tmp, self.path)
        return size

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self.tmp.unlink(missing_ok=True)


@contextmanager
def write_container(path: Path, header: dict, version: int = VERSION) -> Iterator[ContainerWriter]:
    """Context manager: the output exists only if the block finished without error."""
    writer = ContainerWriter(path, header, version)
    try:
        yield writer
    except BaseException:
        writer.abort()
        raise
    try:
        writer.close()
    except OSError as exc:
        writer.abort()
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


class Container:
    """A parsed ``.fool`` file: header, tile table, and CRC-checked access to payloads."""

    def __init__(self, fh: BinaryIO, size: int, name: str = "container") -> None:
        self._fh, self.size, self.name = fh, size, name
        self.version, self.header, self.payload_start = self._read_header()
        self.tiles = self._read_table()
        self.table_bytes = self.size - FOOTER.size - self.table_offset

    @classmethod
    @contextmanager
    def open(cls, path: Path) -> Iterator[Container]:
        path = Path(path)
        try:
            fh = open(path, "rb")
        except OSError as exc:
            raise ContainerError(f"cannot open {path}: {exc.strerror}") from exc
        with fh:
            yield cls(fh, os.fstat(fh.fileno()).st_size, str(path))

    def _read(self, offset: int, n: int) -> bytes:
        if offset < 0 or n < 0 or offset + n > self.size:
            raise ContainerError(f"{self.name} is truncated: needs bytes {offset}..{offset + n}, has {self.size}")
        self._fh.seek(offset)
        data = self._fh.read(n)
        if len(data) != n:
            raise ContainerError(f"{self.name} is truncated")
        return data

    def _read_header(self) -> tuple[int, dict, int]:
        if self.size < PREAMBLE.size:
            raise ContainerError(f"{self.name} is not a .fool container (only {self.size} bytes)")
        magic, version, _, head_len = PREAMBLE.unpack(self._read(0, PREAMBLE.size))
        if magic != MAGIC:
            raise ContainerError(f"{self.name} is not a .fool container (bad magic {magic!r})")
        if version not in READABLE_VERSIONS:
            raise VersionError(
                f"{self.name} uses container version {version}; this decoder reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}. Use a FOOL release that supports it."
            )
        if head_len > MAX_HEADER:
            raise ContainerError(f"{self.name}: header length {head_len} is implausible")
        head = self._read(PREAMBLE.size, head_len)
        (crc,) = struct.unpack("<I", self._read(PREAMBLE.size + head_len, 4))
        if zlib.crc32(head) != crc:
            raise ChecksumError(f"{self.name}: header CRC mismatch (damaged file)")
        try:
            header = json.loads(head.decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ContainerError(f"{self.name}: header is not valid JSON ({exc})") from None
        if not isinstance(header, dict):
            raise ContainerError(f"{self.name}: header is not a JSON object")
        return version, header, PREAMBLE.size + head_len + 4

    def _read_table(self) -> list[TileEntry]:
        if self.size < self.payload_start + FOOTER.size:
            raise ContainerError(f"{self.name} is truncated (no tile table)")
        table_offset, count, crc, end = FOOTER.unpack(self._read(self.size - FOOTER.size, FOOTER.size))
        if end != END_MAGIC:
            raise ContainerError(f"{self.name} is truncated or damaged (no end marker)")
        self.table_offset, table_end = table_offset, self.size - FOOTER.size
        if self.version < 3:
            if table_offset < self.payload_start or table_offset + count * ENTRY_V2.size != table_end:
                raise ContainerError(f"{self.name}: tile table position is inconsistent with the file size")
        elif not self.payload_start <= table_offset <= table_end - 2 - count * MIN_ENTRY:
            raise ContainerError(f"{self.name}: tile table position is inconsistent with the file size")
        table = self._read(table_offset, table_end - table_offset)
        if zlib.crc32(table) != crc:
            raise ChecksumError(f"{self.name}: tile table CRC mismatch (damaged file)")
        if self.version < 3:
            entries = [TileEntry(*ENTRY_V2.unpack_from(table, i * ENTRY_V2.size)) for i in range(count)]
        else:
            entries = self._parse_table(table, count)
            offset = self.payload_start + sum(e.length for e in entries)
            if offset != table_offset:
                raise ContainerError(
                    f"{self.name}: tile lengths add up to {offset - self.payload_start} bytes, the payload area "
                    f"holds {table_offset - self.payload_start}: tiles would point outside it"
                )
        for e in entries:
            if e.offset < self.payload_start or e.offset + e.length > table_offset:
                raise ContainerError(f"{self.name}: tile ({e.row}, {e.col}) points outside the payload area")
        return entries

    def _parse_table(self, table: bytes, count: int) -> list[TileEntry]:
        (base,) = struct.unpack_from("<H", table, 0)
        entries, pos, row, offset = [], 2, 0, self.payload_start
        what = f"{self.name}: tile table entry"
        for _ in range(count):
            step, pos = read_varint(table, pos, what)
            col, pos = read_varint(table, pos, what)
            packed, pos = read_varint(table, pos, what)
            own = packed & OWN_QUALITY
            if pos + 4 + (2 if own else 0) > len(table):
                raise ContainerError(f"{what} runs past the end of the table")
            (crc32,) = struct.unpack_from("<I", table, pos)
            quality = struct.unpack_from("<H", table, pos + 4)[0] if own else base
            pos += 6 if own else 4
            row += step
            entries.append(TileEntry(row, col, offset, packed >> 2, crc32, quality, packed & FLAG_MASK))
            offset += packed >> 2
        if pos != len(table):
            raise ContainerError(f"{self.name}: tile table holds {len(table) - pos} bytes after its {count} entries")
        return entries

    def payload(self, entry: TileEntry) -> bytes:
        data = self._read(entry.offset, entry.length)
        if zlib.crc32(data) != entry.crc32:
            raise ChecksumError(f"{self.name}: tile ({entry.row}, {entry.col}) CRC mismatch (damaged in transit?)")
        return data
