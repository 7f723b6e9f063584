"""Task B, cloud/shadow mask agreement: a real run of ukis-csmask, FOOL and JPEG 2000 on a small
crop of a team scene (skipped without the team data or ukis-csmask)."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
from fool.shared.errors import InputError
from rasterio.windows import Window

pytest.importorskip("ukis_csmask", reason="ukis-csmask not installed (pip install 'ukis-csmask>=1.0')")

from fool.tasks.cloudmask import CLASSES, evaluate_cloudmask, mask_iou, plot_cloudmask  # noqa: E402

NAIP = "naip/m_4709963_se_14_1_20140720.tif"  # R, G, B, NIR uint8; this crop has some "cloud"


@pytest.fixture(scope="module")
def crop(team_data, tmp_path_factory) -> Path:
    """A 256x256 corner of a NAIP scene with all four bands and its georeferencing."""
    out = tmp_path_factory.mktemp("cloudmask") / "naip_crop.tif"
    with rasterio.open(team_data / "scenes" / NAIP) as ds:
        win = Window(0, 0, 256, 256)
        profile = ds.profile | {"driver": "GTiff", "width": 256, "height": 256, "transform": ds.window_transform(win)}
        for key in ("blockxsize", "blockysize", "tiled", "compress", "interleave", "photometric"):
            profile.pop(key, None)
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(ds.read(window=win))
    return out


@pytest.fixture(scope="module")
def result(crop) -> dict:
    return evaluate_cloudmask([crop], [3, 2, 1, 4], 1 / 255, qualities=[1, 4], threads=1)


def _in_unit(values) -> bool:
    return all(v is None or 0.0 <= v <= 1.0 for v in values)


def test_structure_and_ranges(result):
    assert set(result) == {"scenes", "points", "summary"}
    assert set(result["points"]) == {"original", "fool", "jpeg2000"}
    (scene,) = result["scenes"]
    assert scene["size"] == [256, 256] and scene["bands_coded"] == 4
    assert abs(sum(scene["reference_fractions"].values()) - 1) < 1e-9
    for codec in ("fool", "jpeg2000"):
        assert [p["quality"] for p in result["points"][codec]] == [1.0, 4.0]
        for p in result["points"][codec] + scene["points"][codec]:
            assert set(p["iou"]) == set(CLASSES)
            assert _in_unit(p["iou"].values()) and _in_unit([p["mean_iou"], p["agreement"]])
            assert p["bpp_per_band"] > 0
    fool = [p["bpp_per_band"] for p in result["points"]["fool"]]
    assert fool[0] < fool[1]  # quality 4 costs more bits than quality 1
    target = result["summary"]["target"]
    assert isinstance(target["fool"]["met"], bool) and isinstance(target["jpeg2000"]["met"], bool)


def test_original_agrees_with_itself(result):
    """The masker is deterministic: any loss below is the codec's."""
    original = result["points"]["original"]
    assert original["mean_iou"] == 1.0 and original["agreement"] == 1.0
    assert all(v in (None, 1.0) for v in original["iou"].values())


def test_jpeg2000_matches_fool_rates(result):
    """JPEG 2000 gets the FOOL file's bytes and uses nearly all of them, never more."""
    for f, j in zip(result["scenes"][0]["points"]["fool"], result["scenes"][0]["points"]["jpeg2000"], strict=True):
        assert j["bytes"] <= f["bytes"]
        assert j["bytes"] >= 0.9 * f["bytes"], (f["bytes"], j["bytes"])


def test_plot(result, tmp_path):
    out = tmp_path / "cloudmask.png"
    plot_cloudmask(result, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_iou_rule():
    """A class absent from both masks has no IoU and stays out of the mean; one in a single mask scores 0."""
    ref = np.zeros((4, 4), np.uint8)
    other = ref.copy()
    other[0, 0] = 1
    r = mask_iou(ref, other)
    assert r["iou"] == {"clear": 15 / 16, "cloud": 0.0, "shadow": None}
    assert r["mean_iou"] == pytest.approx((15 / 16) / 2)


@pytest.mark.parametrize("bands", [[1, 2, 3], [1, 2, 3, 4, 1], []])
def test_wrong_band_count_is_refused(crop, bands):
    with pytest.raises(InputError, match="4 bands"):
        evaluate_cloudmask([crop], bands, 1 / 255)


def test_band_outside_scene_is_refused(crop):
    with pytest.raises(InputError, match="do not exist"):
        evaluate_cloudmask([crop], [1, 2, 3, 9], 1 / 255, qualities=[1])


def test_cli_refuses_a_wrong_band_count_in_one_line(crop, tmp_path):
    from click.testing import CliRunner

    from fool.cli import main

    out = tmp_path / "cm.json"
    res = CliRunner().invoke(
        main, ["eval-task", "cloudmask", str(crop), "--bands", "1,2,3", "--scale", "0.004", "-o", str(out)]
    )
    assert res.exit_code == 1 and res.output.count("\n") == 1 and "4 bands" in res.output
    assert not out.exists()
