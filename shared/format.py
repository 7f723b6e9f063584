"""The ``.fool`` container: a self-describing, tile-addressable scene bitstream.

Layout (little-endian; full description in docs/format.md)::

    "FOOL" u16 version u16 reserved u32 header_len  header(JSON, UTF-8)  u32 crc32(header)
    tile payloads, back to back in table order
    tile table: count x (u16 row, u16 col, u32 length, u32 crc32, u16 quality, u8 flags)
    footer: u64 table_offset, u32 tile_count, u32 crc32(table), "LOOF"

The table sits at the end so the onboard writer streams tiles in constant memory; the
footer finds it. Every tile carries its own CRC and length, so each decodes on its own; its
offset is the sum of the lengths before it. The reader checks that the lengths fill the
payload area exactly before it trusts any of them. Versions 1 and 2 had 27-byte entries with
u32 row/col and an explicit u64 offset; they are still read.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from shared.errors import ChecksumError, ContainerError, OutputError, VersionError

MAGIC = b"FOOL"
END_MAGIC = b"LOOF"
#: Version 3 codes each tile as one rANS stream and has 15-byte table entries (offsets implied);
#: version 2 sends only the latents that cover valid pixels (shared.geometry.coded_latents);
#: version 1 sent every latent of the padded tile. All are read.
VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
PREAMBLE = struct.Struct("<4sHHI")
ENTRY = struct.Struct("<HHIIHB")
ENTRY_V2 = struct.Struct("<IIQIIHB")  # versions 1 and 2
MAX_GRID = 1 << 16  # tile rows and columns addressable by a u16
FOOTER = struct.Struct("<QII4s")
MAX_HEADER = 16 << 20
FLAG_MASK = 1  # the payload starts with a lossless validity mask


@dataclass(frozen=True)
class TileEntry:
    row: int
    col: int
    offset: int
    length: int
    crc32: int
    quality: int
    flags: int = 0


class ContainerWriter:
    """Streams tiles into a temporary file; :meth:`close` publishes it atomically."""

    def __init__(self, path: Path, header: dict, version: int = VERSION) -> None:
        if version not in READABLE_VERSIONS:
            raise ValueError(f"cannot write container version {version}")
        self.path, self.version = Path(path), version
        self.entry = ENTRY if version >= 3 else ENTRY_V2
        self.tmp = self.path.with_name(f".{self.path.name}.partial")
        try:
            self._fh: BinaryIO = open(self.tmp, "wb")
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror}") from None
        head = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
        self._fh.write(PREAMBLE.pack(MAGIC, version, 0, len(head)) + head + struct.pack("<I", zlib.crc32(head)))
        self.entries: list[TileEntry] = []

    def add_tile(self, row: int, col: int, payload: bytes, quality: int, flags: int = 0) -> TileEntry:
        if self.version >= 3 and not (0 <= row < MAX_GRID and 0 <= col < MAX_GRID):
            raise ContainerError(f"tile ({row}, {col}) is beyond the {MAX_GRID}x{MAX_GRID} tiles a container addresses")
        entry = TileEntry(row, col, self._fh.tell(), len(payload), zlib.crc32(payload), quality, flags)
        self._fh.write(payload)
        self.entries.append(entry)
        return entry

    def close(self) -> int:
        if self.version >= 3:
            table = b"".join(ENTRY.pack(e.row, e.col, e.length, e.crc32, e.quality, e.flags) for e in self.entries)
        else:
            table = b"".join(
                ENTRY_V2.pack(e.row, e.col, e.offset, e.length, e.crc32, e.quality, e.flags) for e in self.entries
            )
        table_offset = self._fh.tell()
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
        entry = ENTRY if self.version >= 3 else ENTRY_V2
        if table_offset < self.payload_start or table_offset + count * entry.size != self.size - FOOTER.size:
            raise ContainerError(f"{self.name}: tile table position is inconsistent with the file size")
        table = self._read(table_offset, count * entry.size)
        if zlib.crc32(table) != crc:
            raise ChecksumError(f"{self.name}: tile table CRC mismatch (damaged file)")
        if self.version < 3:
            entries = [TileEntry(*ENTRY_V2.unpack_from(table, i * entry.size)) for i in range(count)]
        else:
            entries, offset = [], self.payload_start
            for i in range(count):
                row, col, length, crc32, quality, flags = ENTRY.unpack_from(table, i * entry.size)
                entries.append(TileEntry(row, col, offset, length, crc32, quality, flags))
                offset += length
            if offset != table_offset:
                raise ContainerError(
                    f"{self.name}: tile lengths add up to {offset - self.payload_start} bytes, the payload area "
                    f"holds {table_offset - self.payload_start}: tiles would point outside it"
                )
        for e in entries:
            if e.offset < self.payload_start or e.offset + e.length > table_offset:
                raise ContainerError(f"{self.name}: tile ({e.row}, {e.col}) points outside the payload area")
        return entries

    def payload(self, entry: TileEntry) -> bytes:
        data = self._read(entry.offset, entry.length)
        if zlib.crc32(data) != entry.crc32:
            raise ChecksumError(f"{self.name}: tile ({entry.row}, {entry.col}) CRC mismatch (damaged in transit?)")
        return data
