"""The container (version 5) and its binary scene header: round trips, sizes, and refusals."""

import dataclasses
import random
import struct
import zlib

import numpy as np
import pytest
from fool.shared.errors import ChecksumError, ContainerError, OutputError, VersionError
from fool.shared.format import (
    FOOTER,
    MODE_SKIPPED,
    Container,
    header_record,
    pack_table,
    parse_header_record,
    write_container,
)
from fool.shared.header import decode_header, encode_header
from fool.shared.scene import SceneHeader, keep_off_nodata
from fool.shared.varint import read_varint, varint

SHA = "0123456789abcdef" * 4


def scene(**kw) -> SceneHeader:
    """A 256x256 RGB scene without georeferencing: the smallest header there is."""
    fields = dict(
        width=256,
        height=256,
        dtype="uint8",
        bits=[8, 8, 8],
        ranges=[[0, 255]] * 3,
        groups=[[1, 2, 3]],
        nodata=None,
        mask="none",
        crs=None,
        transform=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        descriptions=[None] * 3,
        colorinterp=["red", "green", "blue"],
        source_bands=[1, 2, 3],
        tile_size=128,
        model_name="fool-m",
        model_sha256=SHA[:16],
        halo=0,
    )
    return SceneHeader.from_dict(fields | kw)


NAIP_LIKE = dict(
    width=934,
    height=723,
    bits=[8] * 4,
    ranges=[[0, 255]] * 4,
    groups=[[1, 2, 3], [4]],
    crs="EPSG:26914",
    transform=[5.0, 0.0, 514842.0, 0.0, -5.0, 5212596.0],
    descriptions=[None] * 4,
    colorinterp=["red", "green", "blue", "undefined"],
    source_bands=[1, 2, 3, 4],
)


def _make(path, tiles=((0, 0, b"abc"), (0, 1, b"defgh")), header=None):
    with write_container(path, header or scene()) as w:
        for r, c, p in tiles:
            w.add_tile(r, c, p, 1024)
    return path


def _rewrite_table(raw: bytearray, table: bytes) -> bytes:
    """Replace the table (with a valid CRC): what an adversary, not line noise, would do."""
    length, _ = FOOTER.unpack_from(raw, len(raw) - FOOTER.size)
    start = len(raw) - FOOTER.size - length
    raw[start:] = table + FOOTER.pack(len(table), zlib.crc32(table))
    return bytes(raw)


def test_round_trip(tmp_path):
    p = _make(tmp_path / "a.fool")
    with Container.open(p) as c:
        assert c.version == 5 and c.scene == scene()
        assert [(e.row, e.col) for e in c.tiles] == [(0, 0), (0, 1)]
        assert [c.payload(e) for e in c.tiles] == [b"abc", b"defgh"]
        assert all(e.quality == 1024 for e in c.tiles)
        assert c.header_bytes == header_record(scene())


@pytest.mark.parametrize(
    ("fields", "limit"),
    [({}, 64), (NAIP_LIKE, 96)],
    ids=["256px-rgb-no-georef", "naip-epsg-affine"],
)
def test_header_and_footer_are_small(tmp_path, fields, limit):
    """The issue's targets: <= 64 bytes for a plain 256x256 RGB image, <= 96 for NAIP."""
    with write_container(tmp_path / "h.fool", scene(**fields)):
        pass
    with Container.open(tmp_path / "h.fool") as c:
        assert c.payload_start + c.footer_bytes <= limit
        assert c.scene == scene(**fields)


@pytest.mark.parametrize(
    "fields",
    [
        NAIP_LIKE,
        dict(dtype="uint16", bits=[11, 11, 11], ranges=[[3, 2047]] * 3, groups=[[1], [2], [3]]),
        dict(dtype="float64", bits=[None] * 3, ranges=[[-200.25, 812.5], [0.1, 0.7], [-1e300, 1e300]]),
        dict(nodata=0.0, mask="nodata", descriptions=["red edge", None, "ünïcode"], source_bands=[4, 2, 9]),
        dict(nodata=float("nan"), mask="nan", dtype="float32", bits=[None] * 3, ranges=[[0, 1]] * 3),
        dict(crs='PROJCS["custom",GEOGCS["x",DATUM["y",SPHEROID["z",6378137,298.257]]]]', halo=128),
        dict(transform=[0.1, 0.02, -180.123456789, -0.01, -0.1, 90.5], colorinterp=["gray"] * 3),
    ],
)
def test_header_round_trips_every_field(fields):
    h = scene(**fields)
    back = decode_header(encode_header(h))
    assert back.to_dict() == h.to_dict()


def test_default_band_groups_cost_one_byte():
    """The tiler's own grouping (here RGB, then NIR alone) is planned again by the decoder."""
    naip = scene(**NAIP_LIKE)
    regrouped = scene(**(NAIP_LIKE | {"groups": [[1], [2], [3], [4]]}))
    assert len(encode_header(regrouped)) - len(encode_header(naip)) == 9 - 1  # v count, then u8 size + v band each
    assert decode_header(encode_header(naip)).groups == [[1, 2, 3], [4]]
    assert decode_header(encode_header(regrouped)).groups == [[1], [2], [3], [4]]


def test_header_crc_and_hostile_bodies():
    rec = bytearray(header_record(scene(**NAIP_LIKE)))
    rec[10] ^= 0x01
    with pytest.raises(ChecksumError):
        parse_header_record(bytes(rec))
    rng = random.Random(3)
    body = encode_header(scene(**NAIP_LIKE))
    for _ in range(300):  # CRC-valid garbage must give a ContainerError, never another exception
        bad = bytearray(body)
        for _ in range(rng.randint(1, 4)):
            bad[rng.randrange(len(bad))] = rng.randrange(256)
        bad = bad[: rng.randint(0, len(bad))] if rng.random() < 0.3 else bad
        try:
            decode_header(bytes(bad))
        except ContainerError:
            pass


def test_failed_write_leaves_nothing(tmp_path):
    p = tmp_path / "b.fool"
    with pytest.raises(RuntimeError), write_container(p, scene()) as w:
        w.add_tile(0, 0, b"x", 1)
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output(tmp_path):
    with pytest.raises(OutputError), write_container(tmp_path / "missing" / "x.fool", scene()):
        pass


@pytest.mark.parametrize("version", [1, 2, 6, 99])
def test_unknown_version_is_refused(tmp_path, version):
    p = _make(tmp_path / "a.fool")
    raw = bytearray(p.read_bytes())
    raw[4], raw[5] = version, 0
    p.write_bytes(bytes(raw))
    with pytest.raises(VersionError, match=f"version {version}"), Container.open(p):
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
    raw[9] ^= 0x01
    p.write_bytes(bytes(raw))
    with pytest.raises(ChecksumError, match="header CRC"), Container.open(p):
        pass


def test_table_crc_mismatch(tmp_path):
    p = _make(tmp_path / "a.fool")
    raw = bytearray(p.read_bytes())
    raw[-FOOTER.size - 3] ^= 0x01
    p.write_bytes(bytes(raw))
    with pytest.raises(ChecksumError, match="table CRC"), Container.open(p):
        pass


@pytest.mark.parametrize("cut", [0, 3, 5, 8, 30, -FOOTER.size - 1, -1])
def test_truncation_is_detected(tmp_path, cut):
    p = _make(tmp_path / "a.fool")
    raw = p.read_bytes()
    p.write_bytes(raw[:cut])
    with pytest.raises(ContainerError), Container.open(p):
        pass


@pytest.mark.parametrize("length", [10**9, 1, 0])
def test_lengths_must_fill_the_payload_area(tmp_path, length):
    p = _make(tmp_path / "a.fool")
    with Container.open(p) as c:
        entries = c.tiles
    entries[0] = dataclasses.replace(entries[0], length=length)
    p.write_bytes(_rewrite_table(bytearray(p.read_bytes()), pack_table(entries, 2)))
    with pytest.raises(ContainerError, match="outside"), Container.open(p):
        pass


@pytest.mark.parametrize("cut", [1, 3, 6])
def test_table_that_ends_inside_an_entry_or_has_extra_bytes(tmp_path, cut):
    p = _make(tmp_path / "a.fool")
    with Container.open(p) as c:
        table = pack_table(c.tiles, c.scene.grid.cols)
    for bad in (table[:-cut], table + bytes(cut)):
        raw = bytearray(p.read_bytes())
        with pytest.raises(ContainerError), _open_bytes(tmp_path, _rewrite_table(raw, bad)):
            pass


def _open_bytes(tmp_path, raw: bytes):
    (tmp_path / "b.fool").write_bytes(raw)
    return Container.open(tmp_path / "b.fool")


@pytest.mark.parametrize(
    "entries",
    [
        varint(5 << 1 | 1) + b"\x00\x04" + (varint(0) + b"\x00\x00") * 5,  # dense, one more than the grid
        varint(2 << 1) + b"\x00\x04" + (varint(0) + varint(0) + b"\x00\x00") + (varint(3) + varint(0) + b"\x00\x00"),
        varint(1 << 1) + b"\x00\x04" + varint(2**60) + varint(0) + b"\x00\x00",
    ],
    ids=["dense-past-the-grid", "gap-past-the-grid", "huge-gap"],
)
def test_entries_outside_the_grid_are_refused(tmp_path, entries):
    """Version 5 implies positions from raster-index gaps, so a tile can neither come twice nor
    out of order; a count or gap that runs past the 2x2 grid is refused."""
    p = _make(tmp_path / "a.fool", tiles=())
    p.write_bytes(_rewrite_table(bytearray(p.read_bytes()), entries))
    with pytest.raises(ContainerError, match="outside"), Container.open(p):
        pass


def test_varints_are_bounded():
    assert read_varint(varint(2**34 + 5), 0, max_bytes=5) == (2**34 + 5, 5)
    with pytest.raises(ContainerError, match="longer than 5"):
        read_varint(b"\xff" * 6, 0, max_bytes=5)
    with pytest.raises(ContainerError, match="past the end"):
        read_varint(b"\x80", 0)


def test_not_a_container(tmp_path):
    p = tmp_path / "x.fool"
    p.write_bytes(b"GIF89a" + bytes(100))
    with pytest.raises(ContainerError, match="not a .fool"), Container.open(p):
        pass


def test_entries_are_small_in_raster_order_and_record_skipped_tiles(tmp_path):
    """A scene without nodata tiles lists its grid cells in raster order, so an entry is 4 bytes
    (length and flags, CRC-16); a gap before it (tiles that were all nodata) adds 1, an odd
    quality 2, a mode (a tile skipped on board) 1."""
    big = scene(width=40 * 64, height=6 * 64, tile_size=64)
    tiles = [(r, c, bytes(200)) for r in range(3) for c in range(40)]
    p = _make(tmp_path / "a.fool", tiles, big)
    with Container.open(p) as c:
        assert len(c.tiles) == 120 and c.table_bytes == 2 + 2 + 120 * 4
        assert [(e.row, e.col) for e in c.tiles] == [(r, c) for r, c, _ in tiles]
    holes = [t for t in tiles if t[1] % 3]  # every third column all nodata
    p = _make(tmp_path / "h.fool", holes, big)
    with Container.open(p) as c:
        assert len(c.tiles) == len(holes) == 78 and c.table_bytes == 2 + 2 + 78 * 5
        assert [(e.row, e.col) for e in c.tiles] == [(r, c) for r, c, _ in holes]
    with write_container(tmp_path / "q.fool", big) as w:
        w.add_tile(0, 0, b"a", 1024)
        w.add_tile(0, 1, b"b", 777)
        w.add_tile(0, 2, b"", 1024, mode=MODE_SKIPPED)
        w.add_tile(5, 39, b"c", 1024, flags=1)
    with Container.open(tmp_path / "q.fool") as c:
        assert [(e.row, e.col, e.quality, e.flags, e.mode) for e in c.tiles] == [
            (0, 0, 1024, 0, 0),
            (0, 1, 777, 0, 0),
            (0, 2, 1024, 0, MODE_SKIPPED),
            (5, 39, 1024, 1, 0),
        ]
        assert [c.payload(e) for e in c.coded_tiles] == [b"a", b"b", b"c"]
    with pytest.raises(ValueError, match="raster order"), write_container(tmp_path / "r.fool", big) as w:
        w.add_tile(1, 0, b"x", 1)
        w.add_tile(0, 5, b"y", 1)
    assert not (tmp_path / "r.fool").exists()


def test_writer_copies_a_received_header_record_verbatim(tmp_path):
    """The downlink's reassembly writes the header record it received, byte for byte; a record
    of an older version gets this version's number (and CRC) so that it matches the table."""
    rec = header_record(scene(**NAIP_LIKE))
    with write_container(tmp_path / "r.fool", rec):
        pass
    assert (tmp_path / "r.fool").read_bytes()[: len(rec)] == rec
    assert struct.unpack_from("<I", rec, len(rec) - 4)[0] == zlib.crc32(rec[:-4])
    old = bytearray(rec[:-4])
    old[4] = 4
    old += struct.pack("<I", zlib.crc32(old))
    with write_container(tmp_path / "o.fool", bytes(old)) as w:
        w.add_tile(0, 0, b"abc", 1024)
    with Container.open(tmp_path / "o.fool") as c:
        assert c.version == 5 and c.header_bytes == rec and c.payload(c.tiles[0]) == b"abc"


@pytest.mark.parametrize(
    "dtype,nodata,to", [("uint8", 0, 1), ("uint8", 255, 254), ("uint16", 0.0, 1), ("uint16", 65535, 65534)]
)
def test_valid_samples_are_moved_one_step_off_nodata(dtype, nodata, to):
    values = np.full((2, 3, 3), nodata, dtype)
    values[1, 0, 0] = 7
    valid = np.ones((3, 3), bool)
    valid[2, 2] = False
    keep_off_nodata(values, valid, nodata)
    assert values[1, 0, 0] == 7 and values[0, 2, 2] == nodata and values[1, 2, 2] == nodata
    assert (values[:, :2] != nodata).all() and values[0, 0, 0] == to


@pytest.mark.parametrize("dtype,nodata", [("uint8", None), ("uint8", float("nan")), ("uint8", -9999), ("float32", 0)])
def test_nothing_moves_without_an_integer_nodata_in_range(dtype, nodata):
    values = np.zeros((1, 2, 2), dtype)
    keep_off_nodata(values, np.ones((2, 2), bool), nodata)
    assert (values == 0).all()
