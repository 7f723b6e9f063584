"""Rate control to a byte budget and tile priority (onboard.rate_control, onboard.priority)."""

import json

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from fool.ground.decode import decode_container
from fool.onboard.compress import compress_scene
from fool.onboard.rate_control import PlannedTile, allocate
from fool.shared.errors import InputError
from fool.shared.format import MODE_SKIPPED, Container

from fool.cli import main
from tests import data


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """3 x 4 tiles of 64 px with varied texture."""
    return data.write(tmp_path_factory.mktemp("rc") / "s.tif", bands=3, height=190, width=250, seed=11)


def _psnr(a, b):
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(float) - b.astype(float)) ** 2)))


def _decoded_psnr(src, fool, tmp_path):
    out = tmp_path / (fool.stem + ".tif")
    decode_container(fool, out)
    with rasterio.open(src) as a, rasterio.open(out) as b:
        return _psnr(a.read(), b.read())


def test_allocate_picks_the_largest_common_quality_that_fits():
    """A fake coder whose tiles cost `code` bytes each: the exact answer is known."""
    tiles = [PlannedTile(0, c, 0.0, False, False) for c in range(4)]
    calls = []

    def encode(i, code):
        calls.append((i, code))
        return bytes(code // 8)

    budget = 890
    alloc = allocate(tiles, encode, header_bytes=50, budget=budget, code=768, cols=4)
    assert alloc.size <= budget and len(set(alloc.codes)) == 1
    code = alloc.codes[0]
    # the next code that changes any tile's size no longer fits
    assert len(calls) == len(set(calls))  # every (tile, quality) coded once
    nxt = next(c for c in range(code + 1, 2049) if c // 8 != code // 8)
    assert allocate(tiles, encode, 50, None, nxt, cols=4).size > budget
    assert allocate(tiles, encode, 50, None, 768, cols=4).codes == [768] * 4


def test_allocate_drops_lowest_rank_last_in_order_first():
    tiles = [PlannedTile(0, c, rank, False, False) for c, rank in enumerate([1.0, 0.0, 0.0, 1.0])]
    alloc = allocate(tiles, lambda i, code: bytes(100), header_bytes=20, budget=20 + 2 * 100 + 60, code=768, cols=4)
    assert alloc.codes[0] == alloc.codes[3] == 256 and alloc.codes[1] is None and alloc.codes[2] is None
    assert alloc.dropped == [1, 2] and alloc.size <= 280
    with pytest.raises(InputError, match="does not hold even"):
        allocate(tiles, lambda i, code: bytes(100), header_bytes=20, budget=25, code=768, cols=4)


def test_budget_is_filled_never_exceeded_and_beats_every_fixed_quality_that_fits(scene, tmp_path):
    fixed = {}
    for q in range(1, 9):
        r = compress_scene(scene, tmp_path / f"q{q}.fool", quality=q, tile_size=64)
        fixed[q] = r.bytes
    budget = (fixed[3] + fixed[4]) // 2
    r = compress_scene(scene, tmp_path / "b.fool", budget=budget, tile_size=64)
    assert 0.99 * budget <= r.bytes <= budget
    best_fixed = max(q for q in fixed if fixed[q] <= budget)
    assert _decoded_psnr(scene, tmp_path / "b.fool", tmp_path) >= _decoded_psnr(
        scene, tmp_path / f"q{best_fixed}.fool", tmp_path
    )
    again = compress_scene(scene, tmp_path / "b2.fool", budget=budget, tile_size=64)
    assert (tmp_path / "b.fool").read_bytes() == (tmp_path / "b2.fool").read_bytes() and again.bytes == r.bytes


def test_tiny_budget_skips_tiles_and_records_them(scene, tmp_path):
    r = compress_scene(scene, tmp_path / "t.fool", quality=1, tile_size=64)
    budget = r.bytes // 3
    r = compress_scene(scene, tmp_path / "s.fool", budget=budget, tile_size=64)
    assert r.bytes <= budget and r.tiles_skipped > 0
    with Container.open(tmp_path / "s.fool") as c:
        skipped = [(e.row, e.col) for e in c.tiles if e.mode == MODE_SKIPPED]
        assert len(c.tiles) == 12 and len(skipped) == r.tiles_skipped  # every tile accounted for
        assert skipped == sorted(skipped)[-len(skipped) :] and skipped[-1] == (2, 3)  # last in scene order first
    report = decode_container(tmp_path / "s.fool", tmp_path / "s.tif")
    assert report.skipped == skipped and not report.partial


def test_budget_errors_are_one_line(scene, tmp_path):
    r = CliRunner().invoke(main, ["compress", str(scene), "-o", str(tmp_path / "x.fool"), "--budget", "20"])
    assert r.exit_code == 1 and "does not hold even" in r.output and not (tmp_path / "x.fool").exists()
    r = CliRunner().invoke(
        main, ["compress", str(scene), "-o", str(tmp_path / "x.fool"), "--budget", "9000", "--bpp", "1"]
    )
    assert r.exit_code == 1 and "not both" in r.output


def test_bpp_budget_counts_the_whole_file(scene, tmp_path):
    r = CliRunner().invoke(
        main, ["compress", str(scene), "-o", str(tmp_path / "x.fool"), "--bpp", "0.5", "--tile-size", "64"]
    )
    assert r.exit_code == 0, r.output
    size = (tmp_path / "x.fool").stat().st_size
    assert 0.99 * 0.5 * 190 * 250 / 8 <= size <= 0.5 * 190 * 250 / 8


def test_region_of_interest_gets_the_bits(scene, tmp_path):
    """Tiles touching the ROI keep the quality asked for; the others get the lowest, or nothing."""
    with rasterio.open(scene) as ds:
        t = ds.transform
    x0, y0 = t * (10, 10)
    x1, y1 = t * (60, 60)  # inside tile (0, 0) only
    roi = tmp_path / "roi.geojson"
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    roi.write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    r = compress_scene(scene, tmp_path / "r.fool", quality=6, tile_size=64, roi=roi, roi_crs="scene")
    with Container.open(tmp_path / "r.fool") as c:
        qualities = {(e.row, e.col): e.quality for e in c.tiles}
    assert qualities[(0, 0)] == 6 * 256 and set(qualities.values()) == {6 * 256, 256}
    r = compress_scene(
        scene, tmp_path / "o.fool", quality=6, tile_size=64, roi=roi, roi_crs="scene", roi_outside="skip"
    )
    assert r.tiles_coded == 1 and r.tiles_skipped == 11
    roi.write_text(json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}))
    with pytest.raises(InputError, match="does not touch"):
        compress_scene(scene, tmp_path / "n.fool", tile_size=64, roi=roi, roi_crs="scene")


def test_flat_tiles_get_the_lowest_quality_or_nothing(tmp_path):
    src = data.write(tmp_path / "f.tif", bands=3, height=128, width=256, seed=2)
    with rasterio.open(src, "r+") as ds:
        arr = ds.read()
        arr[:, :, 128:] = 77  # the right half is flat: two tiles of 64 px per row
        ds.write(arr)
    r = compress_scene(src, tmp_path / "l.fool", quality=5, tile_size=64, flat="lowest")
    with Container.open(tmp_path / "l.fool") as c:
        q = {(e.row, e.col): e.quality for e in c.tiles}
    assert {q[(r_, c_)] for r_ in range(2) for c_ in (2, 3)} == {256} and q[(0, 0)] == 5 * 256
    r = compress_scene(src, tmp_path / "s.fool", quality=5, tile_size=64, flat="skip")
    assert r.tiles_coded == 4 and r.tiles_skipped == 4
