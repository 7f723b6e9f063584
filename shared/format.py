"""The ``.fool`` container: a self-describing, tile-addressable scene bitstream.

This module owns the container versions: it writes version 5 and reads versions 3 to 5,
and every other module asks it (``Container.scene``, ``Container.tiles``, ``Container.check``)
instead of branching on a version. Layout (little-endian; full description in docs/format.md)::

    version 5:  "FOOL" u8 5  v H  header(H bytes, binary)  u32 crc32(all before it)
                tile payloads, back to back in raster order
                tile table: v (N << 1 | dense), u16 base quality, per tile:
                    [v raster-index gap, unless dense], v (length << 3 | mode << 2 | own quality << 1 | mask),
                    u16 crc16(payload), [u16 quality], [u8 mode]
                footer: u32 table length, u32 crc32(table)
    version 4:  as version 5 but the table starts v N, each entry starts v row - previous row, v col,
                its check is a u32 crc32, and the footer ends in "LOOF"
    version 3:  "FOOL" u16 3 u16 0 u32 H  header(JSON)  u32 crc32(header)
                payloads as version 4; table without N, entries with length << 2 (no mode);
                footer: u64 table offset, u32 N, u32 crc32(table), "LOOF"

The table sits at the end so the onboard writer streams tiles in constant memory; the
footer finds it. Every tile carries its own CRC and length, so each decodes on its own; its
offset is the sum of the lengths before it. Version 5 spends 3-4 bytes a tile where version 4
spent 8: a scene without nodata tiles lists every grid cell in raster order, so positions are
implied, and a tile's check is CRC-16/CCITT (as CCSDS space packets use) rather than CRC-32,
which at low rates was a tenth of a uint16 scene's file. The header (:attr:`Container.header_bytes`) is
self-contained, with its own length and CRC, so the downlink packer can repeat it verbatim.
"""

from __future__ import annotations

import binascii
import json
import os
import struct
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from fool.shared.errors import ChecksumError, ContainerError, OutputError, VersionError
from fool.shared.header import decode_header, encode_header
from fool.shared.scene import SceneHeader
from fool.shared.varint import read_varint, varint

MAGIC = b"FOOL"
END_MAGIC = b"LOOF"
VERSION = 5
READABLE_VERSIONS = (3, 4, 5)
PREAMBLE_V3 = struct.Struct("<4sHHI")
FOOTER_V3 = struct.Struct("<QII4s")
FOOTER_V4 = struct.Struct("<II4s")
FOOTER = struct.Struct("<II")
MAX_HEADER = 1 << 20
FLAG_MASK = 1  # the payload starts with a lossless validity mask
OWN_QUALITY = 2  # the entry carries its own quality code
OWN_MODE = 4  # (version 4) the entry carries a mode byte
#: How a tile is held. A skipped tile has no payload: the onboard side chose not to send it
#: (priority, budget), and the table says so, so the ground reports it instead of losing it.
#: A lost tile has no payload either: the ground's reassembly (fool unpack) knew of it but did
#: not receive it intact. An intra tile holds a classical payload (JPEG 2000 or JPEG-LS of its raw
#: values, :mod:`fool.shared.intra`) instead of learned latents. Tiles absent from the table were
#: entirely nodata and never coded.
MODE_CODEC, MODE_SKIPPED, MODE_LOST, MODE_INTRA = 0, 1, 2, 3
MODES = (MODE_CODEC, MODE_SKIPPED, MODE_LOST, MODE_INTRA)
#: the modes whose tiles carry a payload
PAYLOAD_MODES = (MODE_CODEC, MODE_INTRA)
MIN_ENTRY = {3: 7, 4: 7, 5: 3}  # bytes of the shortest entry: its varints and its check


def tile_check(payload: bytes | bytearray, version: int = VERSION) -> int:
    """The check value a tile entry of ``version`` carries: CRC-16/CCITT-FALSE from version 5
    (the CRC of CCSDS space packets), CRC-32 before."""
    return binascii.crc_hqx(payload, 0xFFFF) if version >= 5 else zlib.crc32(payload)


@dataclass(frozen=True)
class TileEntry:
    row: int
    col: int
    offset: int
    length: int
    check: int  # the payload's CRC (tile_check) in the container's version
    quality: int
    flags: int = 0
    mode: int = MODE_CODEC


def header_record(scene: SceneHeader) -> bytes:
    """The version-4 header as it stands at the start of a file: magic, version, length, body, CRC."""
    body = encode_header(scene)
    head = MAGIC + bytes([VERSION]) + varint(len(body)) + body
    return head + struct.pack("<I", zlib.crc32(head))


def parse_header_record(buf: bytes, name: str = "container") -> tuple[SceneHeader, int]:
    """-> (scene, bytes used) from the start of ``buf``; every failure is a ContainerError."""
    if len(buf) < 6 or buf[:4] != MAGIC:
        raise ContainerError(f"{name} is not a .fool container (bad magic {bytes(buf[:4])!r})")
    if buf[4] not in READABLE_VERSIONS or buf[4] < 4:
        raise VersionError(f"{name}: header record of version {buf[4]}, expected 4 to {VERSION}")
    n, pos = read_varint(buf, 5, f"{name}: header length", 4)
    if n > MAX_HEADER or pos + n + 4 > len(buf):
        raise ContainerError(f"{name} is truncated or its header length ({n}) is implausible")
    (crc,) = struct.unpack_from("<I", buf, pos + n)
    if zlib.crc32(buf[: pos + n]) != crc:
        raise ChecksumError(f"{name}: header CRC mismatch (damaged file)")
    return decode_header(bytes(buf[pos : pos + n])), pos + n + 4


def pack_table(entries: list[TileEntry], cols: int) -> bytes:
    """The version-5 tile table of ``entries`` (in raster order) on a grid ``cols`` tiles wide."""
    common = Counter(e.quality for e in entries).most_common(1)
    base = common[0][0] if common else 0
    index = [e.row * cols + e.col for e in entries]
    dense = index == list(range(len(entries)))
    out, prev = bytearray(varint(len(entries) << 1 | dense) + struct.pack("<H", base)), -1
    for e, i in zip(entries, index, strict=True):
        own = OWN_QUALITY if e.quality != base else 0
        mode = OWN_MODE if e.mode != MODE_CODEC else 0
        out += b"" if dense else varint(i - prev - 1)
        out += varint(e.length << 3 | mode | own | e.flags & FLAG_MASK) + struct.pack("<H", e.check)
        out += struct.pack("<H", e.quality) if own else b""
        out += bytes([e.mode]) if mode else b""
        prev = i
    return bytes(out)


def container_bytes(header_bytes: int, entries: list[TileEntry], cols: int) -> int:
    """The exact size of the version-5 container holding ``entries``: header, payloads, table, footer."""
    return header_bytes + sum(e.length for e in entries) + len(pack_table(entries, cols)) + FOOTER.size


class ContainerWriter:
    """Streams tiles into a temporary file; :meth:`close` publishes it atomically.

    ``header`` is a :class:`SceneHeader` or a header record already encoded (the packer's
    reassembly copies the record it received, re-encoded only if an older version wrote it)."""

    def __init__(self, path: Path, header: SceneHeader | bytes) -> None:
        self.path = Path(path)
        self.table_bytes = 0  # set by close()
        if isinstance(header, bytes):
            scene, used = parse_header_record(header)
            self.header_bytes = header[:used] if header[4] == VERSION else header_record(scene)
        else:
            scene, self.header_bytes = header, header_record(header)
        self.cols = scene.grid.cols
        self.tmp = self.path.with_name(f".{self.path.name}.partial")
        try:
            self._fh: BinaryIO = open(self.tmp, "wb")
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror}") from None
        self._fh.write(self.header_bytes)
        self.entries: list[TileEntry] = []

    def add_tile(
        self, row: int, col: int, payload: bytes, quality: int, flags: int = 0, mode: int = MODE_CODEC
    ) -> TileEntry:
        last = self.entries[-1] if self.entries else None
        if last is not None and (row, col) <= (last.row, last.col):
            raise ValueError(f"tile ({row}, {col}) after ({last.row}, {last.col}): tiles go in raster order")
        if mode not in MODES:
            raise ValueError(f"unknown tile mode {mode}")
        if mode not in PAYLOAD_MODES and payload:
            raise ValueError("a skipped or lost tile has no payload")
        entry = TileEntry(row, col, self._fh.tell(), len(payload), tile_check(payload), quality, flags, mode)
        self._fh.write(payload)
        self.entries.append(entry)
        return entry

    def close(self) -> int:
        table = pack_table(self.entries, self.cols)
        self.table_bytes = len(table)
        self._fh.write(table + FOOTER.pack(len(table), zlib.crc32(table)))
        size = self._fh.tell()
        self._fh.close()
        os.replace(self.tmp, self.path)
        return size

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self.tmp.unlink(missing_ok=True)


@contextmanager
def write_container(path: Path, header: SceneHeader | bytes) -> Iterator[ContainerWriter]:
    """Context manager: the output exists only if the block finished without error."""
    writer = ContainerWriter(path, header)
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
    """A parsed ``.fool`` file: scene header, tile table, and CRC-checked access to payloads."""

    def __init__(self, fh: BinaryIO, size: int, name: str = "container") -> None:
        self._fh, self.size, self.name = fh, size, name
        self.version = self._read_version()
        dense = False
        if self.version == 3:
            self.scene, self.payload_start = self._read_header_v3()
            self.table_offset, table, count = self._read_footer_v3()
        else:
            head = self._read(0, min(self.size, MAX_HEADER + 16))
            self.scene, self.payload_start = parse_header_record(head, self.name)
            self.table_offset, table, count = self._read_footer()
            if self.version >= 5:
                count, dense = count >> 1, bool(count & 1)
        self.header_bytes = self._read(0, self.payload_start)
        self.tiles = self._parse_table(table, count, dense)
        self.footer_bytes = {3: FOOTER_V3.size, 4: FOOTER_V4.size}.get(self.version, FOOTER.size)
        self.table_bytes = self.size - self.table_offset - self.footer_bytes
        self._check_tiles()

    @classmethod
    @contextmanager
    def open(cls, path: Path) -> Iterator[Container]:
        path = Path(path)
        try:
            fh = open(path, "rb")
        except OSError as exc:
            raise ContainerError(f"cannot open {path}: {exc.strerror}") from exc
        with fh:
            yield cls(fh, os.fstat(fh.fileno()).st_size, path.name)

    def _read(self, offset: int, n: int) -> bytes:
        if offset < 0 or n < 0 or offset + n > self.size:
            raise ContainerError(f"{self.name} is truncated: needs bytes {offset}..{offset + n}, has {self.size}")
        self._fh.seek(offset)
        data = self._fh.read(n)
        if len(data) != n:
            raise ContainerError(f"{self.name} is truncated")
        return data

    def _read_version(self) -> int:
        if self.size < 6:
            raise ContainerError(f"{self.name} is not a .fool container (only {self.size} bytes)")
        head = self._read(0, 6)
        if head[:4] != MAGIC:
            raise ContainerError(f"{self.name} is not a .fool container (bad magic {head[:4]!r})")
        version = head[4]  # a u8 since version 4; versions 1-3 had a u16 whose high byte was 0
        if version not in READABLE_VERSIONS:
            raise VersionError(
                f"{self.name} uses container version {version}; this decoder reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}. Use a FOOL release that supports it."
            )
        return version

    def _read_header_v3(self) -> tuple[SceneHeader, int]:
        _, _, _, head_len = PREAMBLE_V3.unpack(self._read(0, PREAMBLE_V3.size))
        if head_len > MAX_HEADER:
            raise ContainerError(f"{self.name}: header length {head_len} is implausible")
        head = self._read(PREAMBLE_V3.size, head_len)
        (crc,) = struct.unpack("<I", self._read(PREAMBLE_V3.size + head_len, 4))
        if zlib.crc32(head) != crc:
            raise ChecksumError(f"{self.name}: header CRC mismatch (damaged file)")
        try:
            header = json.loads(head.decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ContainerError(f"{self.name}: header is not valid JSON ({exc})") from None
        if not isinstance(header, dict) or not isinstance(header.get("scene"), dict):
            raise ContainerError(f"{self.name}: header has no scene description")
        return SceneHeader.from_dict(header["scene"]), PREAMBLE_V3.size + head_len + 4

    def _read_footer(self) -> tuple[int, bytes, int]:
        footer = FOOTER_V4 if self.version == 4 else FOOTER
        if self.size < self.payload_start + footer.size:
            raise ContainerError(f"{self.name} is truncated (no tile table)")
        length, crc, *end = footer.unpack(self._read(self.size - footer.size, footer.size))
        if end and end[0] != END_MAGIC:
            raise ContainerError(f"{self.name} is truncated or damaged (no end marker)")
        table_offset = self.size - footer.size - length
        if table_offset < self.payload_start:
            raise ContainerError(f"{self.name} is truncated or damaged: its tile table position is inconsistent")
        table = self._read(table_offset, length)
        if zlib.crc32(table) != crc:
            raise ChecksumError(f"{self.name}: tile table CRC mismatch (damaged or truncated file)")
        count, pos = read_varint(table, 0, f"{self.name}: tile count", 5)
        return table_offset, table[pos:], count

    def _read_footer_v3(self) -> tuple[int, bytes, int]:
        if self.size < self.payload_start + FOOTER_V3.size:
            raise ContainerError(f"{self.name} is truncated (no tile table)")
        table_offset, count, crc, end = FOOTER_V3.unpack(self._read(self.size - FOOTER_V3.size, FOOTER_V3.size))
        if end != END_MAGIC:
            raise ContainerError(f"{self.name} is truncated or damaged (no end marker)")
        table_end = self.size - FOOTER_V3.size
        if not self.payload_start <= table_offset <= table_end - 2:
            raise ContainerError(f"{self.name}: tile table position is inconsistent with the file size")
        table = self._read(table_offset, table_end - table_offset)
        if zlib.crc32(table) != crc:
            raise ChecksumError(f"{self.name}: tile table CRC mismatch (damaged file)")
        return table_offset, table, count

    def _parse_table(self, table: bytes, count: int, dense: bool) -> list[TileEntry]:
        what = f"{self.name}: tile table entry"
        if len(table) < 2 or count * MIN_ENTRY[self.version] > len(table) - 2:
            raise ContainerError(f"{self.name}: tile table is too short for its {count} tiles")
        (base,) = struct.unpack_from("<H", table, 0)
        shift = 3 if self.version >= 4 else 2
        check = 2 if self.version >= 5 else 4
        cols = self.scene.grid.cols
        entries, pos, row, index, offset = [], 2, 0, -1, self.payload_start
        for _ in range(count):
            if self.version >= 5:
                gap = 0
                if not dense:
                    gap, pos = read_varint(table, pos, what, 9)
                index += 1 + gap
                row, col = divmod(index, cols)
            else:
                step, pos = read_varint(table, pos, what, 5)
                col, pos = read_varint(table, pos, what, 5)
                row += step
            packed, pos = read_varint(table, pos, what, 6)
            own, has_mode = packed & OWN_QUALITY, shift == 3 and packed & OWN_MODE
            extra = check + (2 if own else 0) + (1 if has_mode else 0)
            if pos + extra > len(table):
                raise ContainerError(f"{what} runs past the end of the table")
            (crc,) = struct.unpack_from("<H" if check == 2 else "<I", table, pos)
            quality = struct.unpack_from("<H", table, pos + check)[0] if own else base
            mode = table[pos + extra - 1] if has_mode else MODE_CODEC
            if mode not in MODES:
                raise ContainerError(f"{what}: unknown tile mode {mode}")
            pos += extra
            length = packed >> shift
            entries.append(TileEntry(row, col, offset, length, crc, quality, packed & FLAG_MASK, mode))
            offset += length
        if pos != len(table):
            raise ContainerError(f"{self.name}: tile table holds {len(table) - pos} bytes after its {count} entries")
        if offset != self.table_offset:
            raise ContainerError(
                f"{self.name}: tile lengths add up to {offset - self.payload_start} bytes, the payload area "
                f"holds {self.table_offset - self.payload_start}: tiles would point outside it"
            )
        return entries

    def _check_tiles(self) -> None:
        """Every entry inside the scene's tile grid, once; skipped tiles without payload."""
        grid, seen = self.scene.grid, set()
        for e in self.tiles:
            if not (0 <= e.row < grid.rows and 0 <= e.col < grid.cols):
                raise ContainerError(
                    f"{self.name}: tile ({e.row}, {e.col}) is outside the {grid.rows}x{grid.cols} grid"
                )
            if (e.row, e.col) in seen:
                raise ContainerError(f"{self.name}: tile ({e.row}, {e.col}) appears twice")
            if e.mode not in PAYLOAD_MODES and e.length:
                raise ContainerError(f"{self.name}: skipped or lost tile ({e.row}, {e.col}) has a payload")
            seen.add((e.row, e.col))

    def current_tiles(self) -> list[TileEntry]:
        """The tile entries with the check values the current version writes, which the packet
        layer carries and ``fool unpack`` verifies. An older file's payloads are read, and
        checked against their own CRC, to recompute them."""
        if self.version == VERSION:
            return self.tiles
        return [replace(e, check=tile_check(self.payload(e))) for e in self.tiles]

    @property
    def coded_tiles(self) -> list[TileEntry]:
        """The tiles with a payload, learned or intra (neither skipped on board nor lost on the way)."""
        return [e for e in self.tiles if e.mode in PAYLOAD_MODES]

    def payload(self, entry: TileEntry) -> bytes:
        data = self._read(entry.offset, entry.length)
        if tile_check(data, self.version) != entry.check:
            raise ChecksumError(f"{self.name}: tile ({entry.row}, {entry.col}) CRC mismatch (damaged in transit?)")
        return data
