"""Batch products: COG, STAC Item (validated offline), features round trip, quicklook marks and
the HTML pass report as a person sees it in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from tests import data
from tests.test_batch import compress_all, damage_tile, run

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TILE = 64


@pytest.fixture(scope="module")
def decoded(tmp_path_factory) -> Path:
    """Two scenes in 64-px tiles: ``holes`` lost tile (0, 0) on the link (marked lost, as
    ``fool unpack`` writes it) and tile (1, 2) arrived damaged; ``clean`` is whole. Decoded with
    every output."""
    root = tmp_path_factory.mktemp("products")
    src = root / "in"
    fools = compress_all(src, {"clean": {"seed": 3}}, tile_size=TILE)
    holes = data.write(src / "holes.src.tif", nodata=0, seed=4)
    from fool.onboard.compress import compress_scene
    from fool.shared.format import MODE_LOST, Container, write_container

    compress_scene(holes, src / "whole.fool", quality=1.0, tile_size=TILE)
    holes.unlink()
    with Container.open(src / "whole.fool") as c, write_container(src / "holes.fool", c.header_bytes) as w:
        for e in c.tiles:
            lost = (e.row, e.col) == (0, 0)
            w.add_tile(e.row, e.col, b"" if lost else c.payload(e), e.quality, e.flags, MODE_LOST if lost else e.mode)
    (src / "whole.fool").unlink()
    damage_tile(src / "holes.fool", 1, 2)
    out = root / "out"
    r = run("decode", src, "-o", out, "--output", "both", "--cog", "--quicklook", "--stac", "--workers", 1)
    assert r.exit_code == 3, r.output
    assert fools["clean"].exists()
    return out


def test_summary_counts_missing_and_damaged(decoded):
    s = json.loads((decoded / "summary.json").read_text())
    holes = next(r for r in s["results"] if r["stem"] == "holes")
    assert holes["missing"] == [[0, 0]] and holes["damaged"] == [[1, 2]] and holes["status"] == "partial"
    assert holes["tiles"] == 12 and holes["received"] == 11  # 4x3 grid of 64-px tiles, one lost
    assert s["missing_tiles"] == 1 and s["damaged_tiles"] == 1 and s["decoded"] == 1 and s["exit_code"] == 3


def test_cog_layout_and_overviews(decoded):
    """GDAL's own check: LAYOUT=COG is reported only for a file whose IFDs, overviews and tiles
    are in COG order (the COG driver's ghost header)."""
    for name in ("clean", "holes"):
        with rasterio.open(decoded / f"{name}.tif") as ds:
            assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            assert ds.overviews(1) == [2] and ds.profile["tiled"]
            assert ds.crs.to_epsg() == 32633 and ds.nodata == (0 if name == "holes" else None)
    with rasterio.open(decoded / "holes.tif") as ds:
        assert not ds.read_masks(1, window=Window(2 * TILE, TILE, TILE, TILE)).any()  # damaged tile is nodata


def test_cog_validates_with_rio_cogeo(decoded):
    cogeo = pytest.importorskip("rio_cogeo.cogeo", reason="rio-cogeo not installed (pip install rio-cogeo)")
    for name in ("clean", "holes"):
        valid, errors, _warnings = cogeo.cog_validate(str(decoded / f"{name}.tif"), strict=True)
        assert valid, errors
    plain = decoded.parent / "plain.tif"
    with rasterio.open(decoded / "clean.tif") as src:
        profile = src.profile | {"driver": "GTiff", "tiled": True, "blockxsize": 64, "blockysize": 64}
        with rasterio.open(plain, "w", **profile) as dst:
            dst.write(src.read())
    with rasterio.open(plain, "r+") as dst:
        dst.build_overviews([2])  # overviews appended after the image: not COG order
    assert not cogeo.cog_validate(str(plain), strict=True)[0]  # the check can fail


def test_stac_item_validates_offline(decoded, monkeypatch):
    import jsonschema
    from fool.ground.stac import validate_item

    def no_network(*args, **kwargs):
        raise OSError("network access during an offline validation")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    item = json.loads((decoded / "holes.item.json").read_text())
    validate_item(item)
    assert item["id"] == "holes" and item["properties"]["proj:epsg"] == 32633
    assert item["properties"]["fool:datetime_source"].startswith("container file mtime")
    assert set(item["assets"]) == {"image", "features", "quicklook", "source"}
    assert item["assets"]["image"]["type"].endswith("profile=cloud-optimized")
    for asset in item["assets"].values():
        assert (decoded / asset["href"]).exists(), asset["href"]
    lon, lat = _corner_lonlat(600000, 4000000)  # the scene's top-left corner (tests/data.py)
    ring = np.array(item["geometry"]["coordinates"][0])
    assert np.abs(ring - [lon, lat]).sum(axis=1).min() < 1e-7
    west, south, east, north = item["bbox"]
    assert west < lon < east and south < lat <= north + 1e-9
    broken = dict(item, geometry={"type": "Polygon", "coordinates": "nowhere"})
    with pytest.raises(jsonschema.ValidationError):
        validate_item(broken)


def _corner_lonlat(x: float, y: float) -> tuple[float, float]:
    from rasterio.warp import transform

    lons, lats = transform("EPSG:32633", "EPSG:4326", [x], [y])
    return lons[0], lats[0]


def test_features_round_trip(decoded):
    from fool.ground.batch import synthesis_for
    from fool.ground.decode import decode_latents, read_header
    from fool.shared.format import Container

    import fool

    src = Path(json.loads((decoded / "clean.item.json").read_text())["assets"]["source"]["href"])
    features = fool.open_features(decoded / "clean.features")
    with Container.open(decoded / src) as c:
        scene = read_header(c)
        codec = synthesis_for(scene.model_name, scene.model_sha256, 1).codec
        expected = {(e.row, e.col): decode_latents(e, c.payload(e), scene, codec).y_hat for e in c.tiles}
    tiles = list(features)
    assert len(tiles) == len(expected) == 12
    for tile in tiles:
        assert np.array_equal(tile.array, expected[(tile.row, tile.col)])
        assert tile.array.dtype == np.float32
        assert tile.window == scene.grid.tile(tile.row, tile.col).window()
        with rasterio.open(decoded / "clean.tif") as ds:
            assert tile.bounds == pytest.approx(tuple(ds.window_bounds(tile.window)))
            assert tile.crs == ds.crs
    holes = fool.open_features(decoded / "holes.features" / "tiles.json")
    assert {(t.row, t.col) for t in holes} == {(t.row, t.col) for t in tiles} - {(0, 0), (1, 2)}
    assert holes.missing == [(0, 0)] and holes.damaged == [(1, 2)]


def test_quicklook_marks_missing_and_damaged_tiles(decoded):
    from fool.ground.quicklook import DAMAGED_RGB, MISSING_RGB, preview_shape
    from PIL import Image

    assert preview_shape(20000, 5000) == (256, 1024) and preview_shape(200, 150) == (150, 200)
    png = np.asarray(Image.open(decoded / "holes.png").convert("RGB"))
    assert png.shape == (150, 200, 3)

    def share(colour, rows, cols) -> float:
        return float((png[rows, cols] == colour).all(axis=-1).mean())

    tile = slice(0, TILE), slice(0, TILE)
    damaged = slice(TILE, 2 * TILE), slice(2 * TILE, 3 * TILE)
    assert share(MISSING_RGB, *tile) > 0.2 and share(DAMAGED_RGB, *damaged) > 0.2
    assert share(MISSING_RGB, *damaged) == 0 and share(DAMAGED_RGB, *tile) == 0
    good = slice(TILE, 2 * TILE), slice(TILE, 2 * TILE)
    assert share(MISSING_RGB, *good) == 0 and share(DAMAGED_RGB, *good) == 0 and png[good].std() > 10
    clean = np.asarray(Image.open(decoded / "clean.png").convert("RGB"))
    assert not (clean == MISSING_RGB).all(axis=-1).any() and not (clean == DAMAGED_RGB).all(axis=-1).any()


def test_report_is_self_contained(decoded):
    r = run("report", decoded)
    assert r.exit_code == 0, r.output
    html = (decoded / "report.html").read_text()
    for link in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert "://" not in link and (decoded / link).exists(), link
    assert "<script" not in html and "@import" not in html
    assert run("report", decoded / "nowhere").exit_code == 1


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    flags += ["--disable-component-update", "--no-first-run", f"--user-data-dir={profile}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed (apt-get install chromium)")
def test_report_in_a_browser(decoded, tmp_path):
    assert run("report", decoded).exit_code == 0
    page = decoded / "report.html"
    # a copy of the page that records, after load, whether each image decoded (the report has no scripts)
    probe = decoded / "probe.html"
    check = (
        "<script>window.addEventListener('load', () => { document.body.dataset.images = "
        "[...document.images].map(i => i.complete && i.naturalWidth + 'x' + i.naturalHeight).join(' '); });"
        "</script></body>"
    )
    probe.write_text(page.read_text().replace("</body>", check))
    dom = _chromium("--dump-dom", "--virtual-time-budget=5000", probe.as_uri(), profile=tmp_path / "p1").stdout
    assert 'data-images="200x150 200x150"' in dom  # both quicklooks loaded
    text = re.sub(r"<[^>]+>", " ", dom)
    assert "clean" in text and "holes" in text and "partial" in text and "decoded" in text
    assert re.search(r"holes\s+partial\s+11 / 12\s+1\s+1\b", re.sub(r"\s+", " ", text))
    assert len(re.findall(r"<polygon ", dom)) == 2
    shot = tmp_path / "report.png"
    _chromium("--screenshot=" + str(shot), "--window-size=1000,1100", page.as_uri(), profile=tmp_path / "p2")
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (1100, 1000) and pixels.std() > 20  # not a blank page
