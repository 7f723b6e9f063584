import struct
import zlib

import pytest

from shared.errors import ChecksumError, ContainerError, OutputError, VersionError
from shared.format import ENTRY, ENTRY_V2, FOOTER, PREAMBLE, Container, write_container


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


@pytest.mark.parametrize(("version", "field", "value"), [(3, 2, 10**9), (3, 2, 1), (2, 2, 10**9), (2, 3, 10**6)])
def test_table_pointing_outside_payload(tmp_path, version, field, value):
    """Version 3: a length that does not add up with the others; version 2: a bad offset or length."""
    p = _make(tmp_path / "a.fool", version=version)
    entry = ENTRY if version == 3 else ENTRY_V2
    raw = bytearray(p.read_bytes())
    table_offset, count, _, end = FOOTER.unpack_from(raw, len(raw) - FOOTER.size)
    row = list(entry.unpack_from(raw, table_offset))
    row[field] = value
    entry.pack_into(raw, table_offset, *row)
    table = bytes(raw[table_offset : table_offset + count * entry.size])
    FOOTER.pack_into(raw, len(raw) - FOOTER.size, table_offset, count, zlib.crc32(table), end)
    p.write_bytes(bytes(raw))
    with pytest.raises(ContainerError, match="outside"), Container.open(p):
        pass


def test_not_a_container(tmp_path):
    p = tmp_path / "x.fool"
    p.write_bytes(b"GIF89a" + bytes(100))
    with pytest.raises(ContainerError, match="not a .fool"), Container.open(p):
        pass


def test_version_3_entries_are_small_and_grids_are_bounded(tmp_path):
    assert ENTRY.size == 15 and ENTRY_V2.size == 27
    with pytest.raises(ContainerError, match="65536"), write_container(tmp_path / "g.fool", {}) as w:
        w.add_tile(1 << 16, 0, b"x", 1)
    assert list(tmp_path.iterdir()) == []
