"""The FOOL downlink packet: CCSDS Space Packets (CCSDS 133.0-B-2) that carry a ``.fool`` scene.

Both sides import this module: the onboard packer builds packets, the ground unpacker parses them.
Every multi-byte field is big-endian (network order, as CCSDS). A packet is::

    primary header (6 bytes, built and parsed with ``spacepackets``):
        version 0, type TM, secondary-header flag 1, APID, sequence flags, 14-bit sequence count,
        data length (bytes in the data field - 1)
    data field:
        FOOL secondary header: u8 kind (format version << 4 | kind), u32 scene id
        body, per kind:
            HEADER  u8 name length, name (UTF-8), the container's header record (verbatim)
            TABLE   u16 fragment index, u16 fragment count, u32 span start, u32 span end,
                    entries of 13 bytes: u16 row, u16 col, u16 quality, u8 mode << 4 | flags,
                    u32 payload length, u16 payload check (the container's CRC-16)
            TILE    u16 row, u16 col, u16 fragment index, u16 fragment count, u32 byte offset,
                    u32 payload length, u16 payload check, u16 quality, u8 mode << 4 | flags,
                    the fragment's payload bytes
        u16 packet error control: CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of every byte before it

APIDs: scene ``i`` of a pack run goes on ``APID_BASE + i % APID_COUNT`` (0x100..0x7FE; 0x7FF is the
CCSDS idle APID and 0x000..0x0FF stay free for housekeeping). APIDs are reused after 1791 scenes, so
the ground never groups by APID: the 32-bit scene id in every packet names the scene. Sequence counts
run per APID and wrap at 2**14. The sequence flags say UNSEGMENTED for a packet that holds a whole unit
(a header, a one-packet table copy or tile) and FIRST/CONTINUATION/LAST for fragments of one tile or
table copy.

A table fragment covers a span of grid positions (raster index ``row * cols + col``, end exclusive)
and lists every table entry in it, so each fragment is useful alone: a position inside a received span
but without an entry was entirely nodata and never coded. A tile fragment repeats the tile's quality,
flags, length and check, so a scene can be rebuilt from tile packets even if no table copy arrives.

Parsing treats every byte as hostile: any malformed input raises :class:`PacketError`, and lengths are
checked before every read.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import fastcrc
from fool.shared.errors import PacketError
from fool.shared.format import FLAG_MASK, MODES
from spacepackets.ccsds.spacepacket import (
    SPACE_PACKET_HEADER_SIZE,
    PacketType,
    SequenceFlags,
    SpacePacket,
    SpacePacketHeader,
)

FORMAT_VERSION = 2  # 2: 16-bit tile checks, as container version 5
KIND_HEADER, KIND_TABLE, KIND_TILE = 1, 2, 3
KINDS = (KIND_HEADER, KIND_TABLE, KIND_TILE)
KIND_NAMES = {KIND_HEADER: "header", KIND_TABLE: "table", KIND_TILE: "tile"}

APID_BASE = 0x100
APID_IDLE = 0x7FF
APID_COUNT = APID_IDLE - APID_BASE
SEQ_MODULO = 1 << 14

PRIMARY = SPACE_PACKET_HEADER_SIZE
SECONDARY = struct.Struct(">BI")
TABLE_HEAD = struct.Struct(">HHII")
TABLE_ROW = struct.Struct(">HHHBIH")
TILE_HEAD = struct.Struct(">HHHHIIHHB")
CRC_SIZE = 2
MAX_NAME = 64
#: The CCSDS data field holds at most 65536 bytes.
MAX_DATA_FIELD = 1 << 16
DEFAULT_DATA_FIELD = 4096
#: The smallest data field a packer may be configured with: a header packet must fit.
MIN_DATA_FIELD = 256
#: Overheads, in bytes of a whole packet, beyond the body's variable part.
TILE_OVERHEAD = PRIMARY + SECONDARY.size + TILE_HEAD.size + CRC_SIZE
TABLE_OVERHEAD = PRIMARY + SECONDARY.size + TABLE_HEAD.size + CRC_SIZE
HEADER_OVERHEAD = PRIMARY + SECONDARY.size + 1 + CRC_SIZE
MIN_PACKET = PRIMARY + SECONDARY.size + CRC_SIZE + 1


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE, the CCSDS packet error control (poly 0x1021, init 0xFFFF, no reflection)."""
    return fastcrc.crc16.ibm_3740(bytes(data))


def apid_for(scene_index: int) -> int:
    """The APID of the ``scene_index``-th scene of a pack run (see the module docstring)."""
    return APID_BASE + scene_index % APID_COUNT


def segment_flags(index: int, count: int) -> SequenceFlags:
    """The CCSDS sequence flags of fragment ``index`` of ``count``."""
    if count == 1:
        return SequenceFlags.UNSEGMENTED
    if index == 0:
        return SequenceFlags.FIRST_SEGMENT
    return SequenceFlags.LAST_SEGMENT if index == count - 1 else SequenceFlags.CONTINUATION_SEGMENT


@dataclass(frozen=True)
class HeaderBody:
    """A copy of the container's header record, with the scene's name for the ground's file name."""

    name: str
    record: bytes


@dataclass(frozen=True)
class TableRow:
    """One entry of the tile table as it crosses the link (the container's offset is implied)."""

    row: int
    col: int
    quality: int
    flags: int
    mode: int
    length: int
    check: int  # the payload's tile_check, as the container holds it


@dataclass(frozen=True)
class TableBody:
    """Fragment ``index`` of ``count`` of one table copy: every entry with a raster index in the span."""

    index: int
    count: int
    span_start: int
    span_end: int
    rows: tuple[TableRow, ...]


@dataclass(frozen=True)
class TileBody:
    """Fragment ``index`` of ``count`` of tile (row, col): ``data`` is payload[offset:offset + len(data)]."""

    row: int
    col: int
    index: int
    count: int
    offset: int
    length: int
    check: int  # the payload's tile_check, as the container holds it
    quality: int
    flags: int
    mode: int
    data: bytes = field(repr=False)


Body = HeaderBody | TableBody | TileBody
BODY_KIND = {HeaderBody: KIND_HEADER, TableBody: KIND_TABLE, TileBody: KIND_TILE}


@dataclass(frozen=True)
class Packet:
    """A parsed packet: routing fields of the primary header, the scene it belongs to, and its body."""

    apid: int
    seq_count: int
    seq_flags: SequenceFlags
    scene_id: int
    body: Body

    @property
    def kind(self) -> int:
        return BODY_KIND[type(self.body)]


def _mode_flags(mode: int, flags: int) -> int:
    return mode << 4 | flags & FLAG_MASK


def name_bytes(name: str) -> bytes:
    """A scene name as a header packet carries it: UTF-8, cut to MAX_NAME bytes on a character boundary."""
    return name.encode("utf-8")[:MAX_NAME].decode("utf-8", "ignore").encode("utf-8")


def encode_body(body: Body) -> bytes:
    """The kind-specific part of a data field."""
    if isinstance(body, HeaderBody):
        name = name_bytes(body.name)
        return bytes([len(name)]) + name + body.record
    if isinstance(body, TableBody):
        head = TABLE_HEAD.pack(body.index, body.count, body.span_start, body.span_end)
        return head + b"".join(encode_row(r) for r in body.rows)
    head = TILE_HEAD.pack(
        body.row,
        body.col,
        body.index,
        body.count,
        body.offset,
        body.length,
        body.check,
        body.quality,
        _mode_flags(body.mode, body.flags),
    )
    return head + body.data


def encode_row(row: TableRow) -> bytes:
    return TABLE_ROW.pack(row.row, row.col, row.quality, _mode_flags(row.mode, row.flags), row.length, row.check)


def build_packet(apid: int, seq_count: int, scene_id: int, body: Body, seq_flags: SequenceFlags | None = None) -> bytes:
    """One complete packet, CRC-16 last; ``seq_flags`` defaults to what the body's fragment fields say."""
    if seq_flags is None:
        seq_flags = SequenceFlags.UNSEGMENTED if isinstance(body, HeaderBody) else segment_flags(body.index, body.count)
    secondary = SECONDARY.pack(FORMAT_VERSION << 4 | BODY_KIND[type(body)], scene_id)
    data = encode_body(body)
    size = len(secondary) + len(data) + CRC_SIZE
    if size > MAX_DATA_FIELD:
        raise PacketError(f"a data field of {size} bytes exceeds the CCSDS maximum of {MAX_DATA_FIELD}")
    header = SpacePacketHeader(
        PacketType.TM, apid, seq_count % SEQ_MODULO, size - 1, sec_header_flag=True, seq_flags=seq_flags
    )
    raw = SpacePacket(header, secondary, data).pack()
    return bytes(raw) + crc16(raw).to_bytes(CRC_SIZE, "big")


def plausible_length(buf: bytes | memoryview, pos: int) -> int | None:
    """The length of a packet that could start at ``buf[pos]``, from its primary header, else None.

    Cheap checks only (version, type, secondary-header flag, APID range, FOOL kind byte, fits in
    ``buf``); the CRC decides. The resynchronising scanner calls this at every offset."""
    end = len(buf)
    if pos + MIN_PACKET > end:
        return None
    b0 = buf[pos]
    if b0 & 0xF8 != 0x08:  # version 0, TM, secondary header present
        return None
    apid = (b0 & 0x07) << 8 | buf[pos + 1]
    if not APID_BASE <= apid < APID_IDLE:
        return None
    kind = buf[pos + PRIMARY]
    if kind >> 4 != FORMAT_VERSION or kind & 0x0F not in KINDS:
        return None
    n = PRIMARY + (buf[pos + 4] << 8 | buf[pos + 5]) + 1
    return n if MIN_PACKET <= n and pos + n <= end else None


def parse_packet(raw: bytes) -> Packet:
    """Parse exactly one packet (``raw`` is the whole packet); every failure is a PacketError."""
    raw = bytes(raw)
    if len(raw) < MIN_PACKET:
        raise PacketError(f"packet of {len(raw)} bytes is shorter than the minimum {MIN_PACKET}")
    try:
        header = SpacePacketHeader.unpack(raw[:PRIMARY])
    except ValueError as exc:
        raise PacketError(f"bad primary header: {exc}") from None
    if header.packet_len != len(raw):
        raise PacketError(f"primary header says {header.packet_len} bytes, the packet has {len(raw)}")
    if header.ccsds_version != 0 or header.packet_type != PacketType.TM or not header.sec_header_flag:
        raise PacketError("not a FOOL telemetry packet (version, type or secondary-header flag)")
    if not APID_BASE <= header.apid < APID_IDLE:
        raise PacketError(f"APID {header.apid:#x} is outside the FOOL range")
    if crc16(raw) != 0:  # the CRC of a packet with its correct CRC appended is 0
        raise PacketError("packet error control (CRC-16) mismatch")
    kind, scene_id = SECONDARY.unpack_from(raw, PRIMARY)
    if kind >> 4 != FORMAT_VERSION or kind & 0x0F not in KINDS:
        raise PacketError(f"unknown FOOL packet kind byte {kind:#04x}")
    body = _parse_body(kind & 0x0F, raw[PRIMARY + SECONDARY.size : len(raw) - CRC_SIZE])
    return Packet(header.apid, header.seq_count, header.seq_flags, scene_id, body)


def _parse_body(kind: int, data: bytes) -> Body:
    if kind == KIND_HEADER:
        return _parse_header(data)
    if kind == KIND_TABLE:
        return _parse_table(data)
    return _parse_tile(data)


def _parse_header(data: bytes) -> HeaderBody:
    if not data or 1 + data[0] > len(data) or data[0] > MAX_NAME:
        raise PacketError("header packet: name runs past the packet")
    try:
        name = data[1 : 1 + data[0]].decode("utf-8")
    except UnicodeDecodeError:
        raise PacketError("header packet: scene name is not UTF-8") from None
    record = data[1 + data[0] :]
    if not record:
        raise PacketError("header packet holds no header record")
    return HeaderBody(name, record)


def _split_mode(value: int, what: str) -> tuple[int, int]:
    mode, flags = value >> 4, value & 0x0F
    if mode not in MODES or flags & ~FLAG_MASK:
        raise PacketError(f"{what}: unknown mode/flags byte {value:#04x}")
    return mode, flags


def _parse_table(data: bytes) -> TableBody:
    if len(data) < TABLE_HEAD.size or (len(data) - TABLE_HEAD.size) % TABLE_ROW.size:
        raise PacketError(f"table packet: {len(data)} bytes is not a whole number of entries")
    index, count, start, end = TABLE_HEAD.unpack_from(data, 0)
    if not index < count or start > end:
        raise PacketError(f"table packet: fragment {index} of {count}, span {start}..{end}")
    rows, prev = [], None
    for pos in range(TABLE_HEAD.size, len(data), TABLE_ROW.size):
        row, col, quality, mode_flags, length, crc = TABLE_ROW.unpack_from(data, pos)
        mode, flags = _split_mode(mode_flags, "table entry")
        if prev is not None and (row, col) <= prev:
            raise PacketError(f"table packet: entry ({row}, {col}) is out of raster order")
        rows.append(TableRow(row, col, quality, flags, mode, length, crc))
        prev = (row, col)
    return TableBody(index, count, start, end, tuple(rows))


def _parse_tile(data: bytes) -> TileBody:
    if len(data) < TILE_HEAD.size:
        raise PacketError("tile packet is shorter than its tile header")
    row, col, index, count, offset, length, crc, quality, mode_flags = TILE_HEAD.unpack_from(data, 0)
    mode, flags = _split_mode(mode_flags, "tile packet")
    chunk = data[TILE_HEAD.size :]
    if not index < count or offset + len(chunk) > length:
        raise PacketError(f"tile packet ({row}, {col}): fragment {index} of {count}, bytes past the payload")
    return TileBody(row, col, index, count, offset, length, crc, quality, flags, mode, chunk)


@dataclass
class ScanStats:
    """What a scan of one byte stream found: good packets, damaged stretches skipped over."""

    packets: int = 0
    resyncs: int = 0
    skipped_bytes: int = 0
    malformed: int = 0

    def add(self, other: ScanStats) -> None:
        self.packets += other.packets
        self.resyncs += other.resyncs
        self.skipped_bytes += other.skipped_bytes
        self.malformed += other.malformed


@dataclass(frozen=True)
class Frame:
    """A packet found in a stream: where it starts, its raw bytes, and its parsed form."""

    offset: int
    raw: bytes = field(repr=False)
    packet: Packet


def scan_packets(buf: bytes, stats: ScanStats | None = None) -> Iterator[Frame]:
    """Every intact packet in ``buf``, in stream order, resynchronising after damage.

    At each offset a packet is accepted only if its primary header is plausible, its CRC-16 checks
    and its data field parses; otherwise the scan moves one byte on. A damaged or truncated packet is
    therefore skipped whole and the next intact one is found at its first byte. Nothing here raises."""
    stats = stats if stats is not None else ScanStats()
    view, pos, skipping = memoryview(buf), 0, False
    while pos < len(buf):
        frame = _frame_at(view, pos, stats)
        if frame is None:
            stats.skipped_bytes += 1
            stats.resyncs += 0 if skipping else 1
            skipping, pos = True, pos + 1
            continue
        stats.packets += 1
        skipping, pos = False, pos + len(frame.raw)
        yield frame


def _frame_at(view: memoryview, pos: int, stats: ScanStats) -> Frame | None:
    n = plausible_length(view, pos)
    if n is None:
        return None
    raw = bytes(view[pos : pos + n])
    if crc16(raw) != 0:
        return None
    try:
        return Frame(pos, raw, parse_packet(raw))
    except PacketError:
        stats.malformed += 1
        return None


def scene_id_for(header_record: bytes, rows: list[TableRow]) -> int:
    """A 32-bit id of a scene's content: the same container always gets the same id."""
    return zlib.crc32(b"".join(encode_row(r) for r in rows), zlib.crc32(header_record))
