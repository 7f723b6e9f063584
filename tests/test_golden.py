"""Frozen containers of every readable version decode to the same latents, bit for bit.

The v3, v4 and v5 files code the same scene with the same symbols (only the framing differs),
so their tiles must agree with each other as well as with expected.json.
"""

import json
from pathlib import Path

import pytest
import rasterio
from click.testing import CliRunner
from fool.shared.format import READABLE_VERSIONS, VERSION, Container, tile_check

from fool.cli import main
from tests.golden.make import SCENES, tile_hashes

GOLDEN = Path(__file__).parent / "golden"
EXPECTED = json.loads((GOLDEN / "expected.json").read_text())


@pytest.mark.parametrize("version", READABLE_VERSIONS)
@pytest.mark.parametrize("name", list(SCENES))
def test_golden_file_decodes_bit_exactly(name, version):
    path = GOLDEN / f"v{version}_{name}.fool"
    got = tile_hashes(path)
    assert got["version"] == version
    assert got == EXPECTED[path.name]
    assert got["tiles"] == EXPECTED[f"v{VERSION}_{name}.fool"]["tiles"]  # framing changed, symbols did not


@pytest.mark.parametrize("version", READABLE_VERSIONS)
def test_golden_file_decodes_to_a_georeferenced_tiff(tmp_path, version):
    out = tmp_path / "g.tif"
    r = CliRunner().invoke(main, ["decode", str(GOLDEN / f"v{version}_masked_uint16.fool"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    with rasterio.open(out) as ds:
        assert (ds.width, ds.height, ds.count, ds.dtypes[0]) == (130, 90, 2, "uint16")
        assert ds.crs.to_epsg() == 32633 and ds.transform.c == 600000
        assert not ds.dataset_mask()[-10:, -10:].any()  # the internal mask came through


def test_each_version_holds_the_same_tiles_in_less_framing():
    """v4's binary header: a few dozen bytes instead of JSON with WKT. v5: implied positions,
    16-bit checks (which the packer derives from a v4 file), and streams without the zero high
    bytes of their final rANS state (the same symbols: see the test above)."""
    for name in SCENES:
        with (
            Container.open(GOLDEN / f"v3_{name}.fool") as v3,
            Container.open(GOLDEN / f"v4_{name}.fool") as v4,
            Container.open(GOLDEN / f"v5_{name}.fool") as v5,
        ):
            assert v4.payload_start <= 96 < 1000 < v3.payload_start  # both have an EPSG CRS and a transform
            assert [(e.row, e.col, e.length, e.check) for e in v3.tiles] == [
                (e.row, e.col, e.length, e.check) for e in v4.tiles
            ]
            assert [(e.row, e.col, e.flags) for e in v4.tiles] == [(e.row, e.col, e.flags) for e in v5.tiles]
            trimmed = [a.length - b.length for a, b in zip(v4.tiles, v5.tiles, strict=True)]
            assert all(0 <= t <= 3 for t in trimmed) and sum(trimmed) > 0  # zero bytes of the rANS state
            old = v4.current_tiles()
            assert [tile_check(v4.payload(e)) for e in v4.tiles] == [e.check for e in old]
            assert v5.scene == v4.scene and len(v5.header_bytes) < len(v4.header_bytes)  # default band groups
            assert v5.table_bytes + v5.footer_bytes <= v4.table_bytes + v4.footer_bytes - 4 * len(v5.tiles) - 4
