import dataclasses
import struct
import zlib

import pytest
from fool.shared.errors import ChecksumError, ContainerError, OutputError, VersionError
from fool.shared.format import ENTRY_V2, FOOTER, PREAMBLE, Container, pack_table, read_varint, varint, write_container


def _write(path, raw: bytes):
    path.write_bytes(raw)
    return path


def _make(path, tiles=((0, 0, b"abc"), (0, 1, b"defgh")), version=3):
    with write_container(path, {"scene": {"x": 1}}, version) as w:
        for r, c, p in tiles:
            w.add_tile(r, c, p, 1024)
    return path


@pytest.mark.parametrize("version", [1, 2, 3])
def test_round_trip(tmp_path, version):
    p = _make(tmp_path / "a.fool", version=version)
    with Container.open(p) as c:
        assert c.version == version
        assert c.header == {"scene": {"x": 1}}
        assert [(e.row, e.col) for e in c.tiles] == [(0, 0), (0, 1)]
        assert [c.payload(e) for e in c.tiles] == [b"abc", b"defgh"]
        assert all(e.quality == 1024 for e in c.tiles)


def test_failed_write_leaves_nothing(tmp_path):
    p = tmp_path / "b.fool"
    with pytest.raises(RuntimeError), write_container(p, {}) as w:
        w.add_tile(0, 0, b"x", 1)
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output(tmp_path):
    with pytest.raises(OutputError), write_container(tmp_path / "missing" / "x.fool", {}):
        pass


def test_unknown_version_is_refused(tmp_path):
    p = _make(tmp_path / "a.fool")
    raw = bytearray(p.read_bytes())
    struct.pack_into("<H", raw, 4, 99)
    p.write_bytes(bytes(raw))
    with pytest.raises(VersionError, match="version 99"), Container.open(p):
        pass


def test_payload_crc_mismatch(tmp_path):
    p = _make(tmp_path / "a.fool")
    raw = bytearray(p.read_bytes())
    with Container.open(p) as c:
        off = c.tiles[1].offset
    raw[off] ^= 0xFF
    p.write_bytes(bytes(raw))
    with Container.open(p) as c:
        assert c.payload(c.tiles[0]) == b"abc"  # other tiles still decode
        with pytest.raises(ChecksumError, match=r"\(0, 1\)"):
            c.payload(c.tiles[1])


def test_header_crc_mismatch(tmp_path):
    p = _make(tmp_path / "a.fool")
    raw = bytearray(p.read_bytes())
    raw[PREAMBLE.size + 2] ^= 0x01
    p.write_bytes(bytes(raw))
    with pytest.raises(ChecksumError), Container.open(p):
        pass


@pytest.mark.parametrize("cut", [0, 3, PREAMBLE.size, 30, -FOOTER.size - 1, -1])
def test_truncation_is_detected(tmp_path, cut):
    p = _make(tmp_path / "a.fool")
    raw = p.read_bytes()
    p.write_bytes(raw[:cut])
    with pytest.raises(ContainerError), Container.open(p):
        pass


def _rewrite_table(raw: bytearray, table: bytes) -> bytes:
    table_offset, count, _, end = FOOTER.unpack_from(raw, len(raw) - FOOTER.size)
    raw[table_offset:] = table + FOOTER.pack(table_offset, count, zlib.crc32(table), end)
    return bytes(raw)


@pytest.mark.parametrize("length", [10**9, 1, 0])
def test_version_3_lengths_must_fill_the_payload_area(tmp_path, length):
    p = _make(tmp_path / "a.fool")
    with Container.open(p) as c:
        entries = c.tiles
    entries[0] = dataclasses.replace(entries[0], length=length)
    p.write_bytes(_rewrite_table(bytearray(p.read_bytes()), pack_table(entries)))
    with pytest.raises(ContainerError, match="outside"), Container.open(p):
        pass


@pytest.mark.parametrize("cut", [1, 3, 6])
def test_version_3_table_that_ends_inside_an_entry_or_has_extra_bytes(tmp_path, cut):
    p = _make(tmp_path / "a.fool")
    with Container.open(p) as c:
        table = pack_table(c.tiles)
    for bad in (table[:-cut], table + bytes(cut)):
        raw = bytearray(p.read_bytes())
        with pytest.raises(ContainerError), Container.open(_write(tmp_path / "b.fool", _rewrite_table(raw, bad))):
            pass


def test_version_3_varints_are_bounded():
    assert read_varint(varint(2**34 + 5), 0) == (2**34 + 5, 5)
    with pytest.raises(ContainerError, match="longer than 5"):
        read_varint(b"\xff" * 6, 0)
    with pytest.raises(ContainerError, match="past the end"):
        read_varint(b"\x80", 0)


@pytest.mark.parametrize(("field", "value"), [(2, 10**9), (3, 10**6)])
def test_version_2_table_pointing_outside_payload(tmp_path, field, value):
    p = _make(tmp_path / "a.fool", version=2)
    raw = bytearray(p.read_bytes())
    table_offset, count, _, end = FOOTER.unpack_from(raw, len(raw) - FOOTER.size)
    row = list(ENTRY_V2.unpack_from(raw, table_offset))
    row[field] = value  # offset far beyond the file, or a length running past the table
    ENTRY_V2.pack_into(raw, table_offset, *row)
    table = bytes(raw[table_offset : table_offset + count * ENTRY_V2.size])
    FOOTER.pack_into(raw, len(raw) - FOOTER.size, table_offset, count, zlib.crc32(table), end)
    p.write_bytes(bytes(raw))
    with pytest.raises(ContainerError, match="outside"), Container.open(p):
        pass


def test_not_a_container(tmp_path):
    p = tmp_path / "x.fool"
    p.write_bytes(b"GIF89a" + bytes(100))
    with pytest.raises(ContainerError, match="not a .fool"), Container.open(p):
        pass


def test_version_3_entries_are_small_and_in_raster_order(tmp_path):
    """A typical entry is 8 bytes (row step, column, length and flag, CRC); odd qualities add 2."""
    tiles = [(r, c, bytes(300)) for r in range(3) for c in range(40)]
    p = _make(tmp_path / "a.fool", tiles)
    raw = p.read_bytes()
    table_offset, count, _, _ = FOOTER.unpack_from(raw, len(raw) - FOOTER.size)
    assert count == 120 and len(raw) - FOOTER.size - table_offset == 2 + 120 * 8
    with write_container(tmp_path / "q.fool", {}) as w:
        w.add_tile(0, 0, b"a", 1024)
        w.add_tile(0, 1, b"b", 777)
        w.add_tile(5, 1000, b"c", 1024, flags=1)
    with Container.open(tmp_path / "q.fool") as c:
        assert [(e.row, e.col, e.quality, e.flags) for e in c.tiles] == [
            (0, 0, 1024, 0),
            (0, 1, 777, 0),
            (5, 1000, 1024, 1),
        ]
        assert [c.payload(e) for e in c.tiles] == [b"a", b"b", b"c"]
    with pytest.raises(ValueError, match="raster order"), write_container(tmp_path / "r.fool", {}) as w:
        w.add_tile(1, 0, b"x", 1)
        w.add_tile(0, 5, b"y", 1)
    assert not (tmp_path / "r.fool").exists()
