"""Frozen containers of every readable version decode to the same latents, bit for bit.

The v3 and v4 files code the same scene with the same symbols (only the framing differs),
so their tiles must agree with each other as well as with expected.json.
"""

import json
from pathlib import Path

import pytest
import rasterio
from click.testing import CliRunner
from fool.shared.format import READABLE_VERSIONS, VERSION, Container

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


def test_version_4_is_much_smaller_than_version_3():
    """The binary header: the same tiles, a few dozen header bytes instead of JSON with WKT."""
    for name in SCENES:
        with Container.open(GOLDEN / f"v3_{name}.fool") as v3, Container.open(GOLDEN / f"v4_{name}.fool") as v4:
            assert v4.payload_start <= 96 < 1000 < v3.payload_start  # both have an EPSG CRS and a transform
            assert [(e.row, e.col, e.length, e.crc32) for e in v3.tiles] == [
                (e.row, e.col, e.length, e.crc32) for e in v4.tiles
            ]
