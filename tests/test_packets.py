"""The FOOL packet format: build/parse round trips, the CRC-16, and a hostile-input fuzz of the parser."""

from __future__ import annotations

import struct

import pytest
from fool.shared.errors import ContainerError, PacketError
from fool.shared.format import MODE_CODEC, MODE_SKIPPED
from fool.shared.packets import (
    APID_BASE,
    APID_COUNT,
    PRIMARY,
    HeaderBody,
    TableBody,
    TableRow,
    TileBody,
    apid_for,
    build_packet,
    crc16,
    parse_packet,
    scan_packets,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spacepackets.ccsds.spacepacket import PacketType, SequenceFlags, SpacePacketHeader

RECORD = b"FOOL\x04" + bytes(range(40))
ROWS = (TableRow(0, 1, 256, 1, MODE_CODEC, 700, 0xBEEF), TableRow(2, 0, 300, 0, MODE_SKIPPED, 0, 0))
BODIES = [
    HeaderBody("m_4709963_se_14", RECORD),
    TableBody(0, 2, 0, 9, ROWS),
    TileBody(3, 4, 1, 3, 1000, 2500, 0x5678, 256, 1, MODE_CODEC, bytes(range(256)) * 4),
]


def stream(n: int = 12) -> list[bytes]:
    """A valid stream: every body kind, two scenes on two APIDs."""
    return [build_packet(apid_for(i % 2), i, 1000 + i % 2, BODIES[i % 3]) for i in range(n)]


def test_crc16_is_ccitt_false():
    assert crc16(b"123456789") == 0x29B1
    raw = build_packet(APID_BASE, 0, 1, BODIES[0])
    assert int.from_bytes(raw[-2:], "big") == crc16(raw[:-2])


@pytest.mark.parametrize("body", BODIES, ids=["header", "table", "tile"])
def test_round_trip(body):
    raw = build_packet(apid_for(5), 16384 + 7, 0xCAFE0001, body)
    p = parse_packet(raw)
    assert (p.apid, p.seq_count, p.scene_id, p.body) == (APID_BASE + 5, 7, 0xCAFE0001, body)
    header = SpacePacketHeader.unpack(raw[:PRIMARY])  # the primary header is plain CCSDS
    assert header.packet_type == PacketType.TM and header.sec_header_flag and header.ccsds_version == 0
    assert header.packet_len == len(raw) and header.data_len == len(raw) - PRIMARY - 1


def test_sequence_flags_and_apids():
    assert parse_packet(build_packet(APID_BASE, 0, 1, BODIES[0])).seq_flags == SequenceFlags.UNSEGMENTED
    assert parse_packet(build_packet(APID_BASE, 0, 1, BODIES[1])).seq_flags == SequenceFlags.FIRST_SEGMENT
    assert parse_packet(build_packet(APID_BASE, 0, 1, BODIES[2])).seq_flags == SequenceFlags.CONTINUATION_SEGMENT
    last = TileBody(0, 0, 2, 3, 0, 10, 0, 1, 0, 0, b"x")
    assert parse_packet(build_packet(APID_BASE, 0, 1, last)).seq_flags == SequenceFlags.LAST_SEGMENT
    assert apid_for(APID_COUNT) == APID_BASE and max(apid_for(i) for i in range(5000)) == 0x7FE


def test_every_single_bit_flip_is_caught():
    raw = build_packet(APID_BASE, 3, 9, BODIES[2])
    for bit in range(len(raw) * 8):
        bad = bytearray(raw)
        bad[bit // 8] ^= 1 << bit % 8
        with pytest.raises(PacketError):
            parse_packet(bytes(bad))


def _recrc(raw: bytes) -> bytes:
    """Give a hand-edited packet a valid CRC-16 again, so the field checks behind it are reached."""
    return raw[:-2] + crc16(raw[:-2]).to_bytes(2, "big")


@pytest.mark.parametrize(
    "edit",
    [
        lambda r: r[:-1],  # shorter than its primary header says
        lambda r: bytes([r[0] | 0x10]) + r[1:],  # telecommand, not telemetry
        lambda r: bytes([r[0] & 0xF8]) + bytes([0x10]) + r[2:],  # APID below the FOOL range
        lambda r: r[:PRIMARY] + b"\x29" + r[PRIMARY + 1 :],  # unknown kind 9
        lambda r: r[:PRIMARY] + b"\x13" + r[PRIMARY + 1 :],  # format version 1 (32-bit tile checks)
    ],
)
def test_parser_rejects_malformed_fields(edit):
    raw = build_packet(APID_BASE + 1, 0, 1, BODIES[2])
    with pytest.raises(PacketError):
        parse_packet(_recrc(edit(raw)))


def _with_body(kind: int, body: bytes) -> bytes:
    """A packet of FOOL kind ``kind`` around a hand-made ``body``, with a valid CRC."""
    return _recrc(_primary(len(body)) + bytes([0x20 | kind]) + (7).to_bytes(4, "big") + body + b"\0\0")


def _primary(body_len: int) -> bytes:
    return struct.pack(">HHH", 0x0800 | APID_BASE, 0xC000, 5 + body_len + 2 - 1)


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (1, b"\x40abc"),  # name longer than the packet
        (1, b"\x00"),  # no header record
        (1, b"\x02\xff\xfe rec"),  # name not UTF-8
        (2, b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x05" + b"\0" * 14),  # not whole entries
        (2, b"\x00\x01\x00\x01" + b"\0" * 8),  # fragment 1 of 1
        (2, struct.pack(">HHII", 0, 1, 0, 9) + struct.pack(">HHHBIH", 1, 1, 0, 0, 0, 0) * 2),  # not raster order
        (2, struct.pack(">HHII", 0, 1, 0, 9) + struct.pack(">HHHBIH", 1, 1, 0, 0x90, 0, 0)),  # mode 9
        (3, b"\0" * 10),  # short tile header
        (3, struct.pack(">HHHHIIHHB", 0, 0, 0, 1, 10, 12, 0, 0, 0) + b"abc"),  # past the payload's end
        (3, struct.pack(">HHHHIIHHB", 0, 0, 1, 1, 0, 12, 0, 0, 0) + b"abc"),  # fragment 1 of 1
    ],
)
def test_parser_rejects_malformed_bodies(kind, body):
    with pytest.raises(PacketError):
        parse_packet(_with_body(kind, body))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_fuzz_arbitrary_bytes(data):
    try:
        parse_packet(data)
    except ContainerError:
        pass
    for frame in scan_packets(data):
        assert parse_packet(frame.raw) == frame.packet


MUTATION = st.tuples(
    st.sampled_from(["flip", "delete", "insert", "byte"]), st.integers(0, 1 << 20), st.binary(max_size=9)
)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(MUTATION, max_size=8), st.integers(0, 12))
def test_fuzz_mutated_streams(mutations, cut):
    """Damage a valid stream: the scanner never raises and yields only packets that were sent intact."""
    packets = stream()
    data = bytearray(b"".join(packets))
    for op, where, junk in mutations:
        at = where % max(1, len(data))
        if not data:
            break
        if op == "flip":
            data[at] ^= 1 << where % 8
        elif op == "delete":
            del data[at : at + 1 + where % 300]
        elif op == "insert":
            data[at:at] = junk
        else:
            data[at] = junk[0] if junk else 0
    data = data[: len(data) - cut * 97] if cut else data
    sent = set(packets)
    for frame in scan_packets(bytes(data)):
        assert frame.raw in sent
    try:
        parse_packet(bytes(data))
    except ContainerError:
        pass


def test_scan_resynchronises_after_damage():
    packets = stream()
    damaged = bytearray(b"".join(packets))
    damaged[len(packets[0]) + 3] ^= 0x40  # damage packet 1
    cut = b"".join(packets[:5]) + packets[5][:20] + b"".join(packets[6:])  # truncate packet 5
    assert [f.raw for f in scan_packets(bytes(damaged))] == packets[:1] + packets[2:]
    assert [f.raw for f in scan_packets(cut)] == packets[:5] + packets[6:]
