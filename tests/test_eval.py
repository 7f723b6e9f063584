"""`fool eval` on synthetic scenes: curves, BD-rate, matched deltas and the lossless reference."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fool.shared import zoo

from fool.cli import main
from fool.evaluate import evaluate


def test_eval_reports_curves_and_lossless_reference(scenes):
    s = evaluate(
        [scenes["rgb_uint8"], scenes["pan_uint16_11bit"]],
        ["fool-m"],
        ["jpeg2000", "ccsds121"],
        qualities=(1.0, 3.0, 5.0, 8.0),
        log=lambda *_: None,
    )
    assert s["images"] == 2 and set(s["curves"]) == {"fool-m", "jpeg2000"}
    for image in {p["image"] for p in s["points"]}:  # per image, in quality order: more bits, more quality
        ours = sorted(
            (p["setting"], p["bpp"], p["psnr"]) for p in s["points"] if p["codec"] == "fool-m" and p["image"] == image
        )
        assert [b for _, b, _ in ours] == sorted(b for _, b, _ in ours)
        assert [q for _, _, q in ours] == sorted(q for _, _, q in ours)
        assert all(p["bpp"] > p["payload_bpp"] for p in s["points"] if p["codec"] == "fool-m")  # whole files
    bpp = s["curves"]["fool-m"]["bpp"]
    assert s["lossless"]["ccsds121"]["bpp"] > max(bpp)  # lossy must be cheaper than lossless
    bd = s["bd_rate"]["fool-m vs jpeg2000"]
    assert -90 < bd["psnr"] < 300 and bd["psnr_payload_only"] < bd["psnr"]  # the header and table cost bits
    pi = s["per_image"]["fool-m vs jpeg2000"]
    assert pi["images"] == 2 and pi["measured"] >= 1 and pi["worst"] >= pi["median"]
    lossless = [p for p in s["points"] if p["codec"] == "ccsds121"]
    assert len(lossless) == 2 and all(p["psnr"] is None for p in lossless)


def test_eval_cli_writes_json_and_plot(scenes, tmp_path):
    out = tmp_path / "rd.json"
    r = CliRunner().invoke(main, ["eval", str(scenes["rgb_uint8"]), "--codec", "jpeg,ccsds121", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "lossless reference ccsds121" in r.output and f"BD-rate {zoo.DEFAULT_MODEL} vs jpeg" in r.output
    assert json.loads(out.read_text())["images"] == 1 and out.with_suffix(".png").exists()


def test_eval_refuses_an_unknown_reference_codec(scenes, tmp_path):
    out = tmp_path / "rd.json"
    r = CliRunner().invoke(main, ["eval", str(scenes["rgb_uint8"]), "--codec", "jpeg2000,j2k", "-o", str(out)])
    assert r.exit_code != 0 and "unknown reference codec j2k" in r.output and "jpegxl" in r.output
    assert "Traceback" not in r.output and not out.exists()


def test_eval_defaults_to_the_models_compress_picks(scenes):
    from fool.shared import zoo

    from fool.evaluate import default_models

    assert default_models([scenes["rgb_uint8"]]) == [zoo.DEFAULT_MODEL]
    assert default_models([scenes["pan_uint16_11bit"]]) == [zoo.model_for("uint16")]
    both = default_models([scenes["rgb_uint8"], scenes["pan_uint16_11bit"]])
    assert both == sorted({zoo.DEFAULT_MODEL, zoo.model_for("uint16")})


def test_bd_rate_known_answers():
    """A curve against itself with every rate x0.8 is -20 %; x1.25 is +25 %; itself is 0."""
    import numpy as np

    from fool.evaluate import bd_rate

    rate = np.array([0.1, 0.2, 0.4, 0.8, 1.6])
    dist = np.array([26.0, 29.0, 32.5, 35.0, 38.5])
    assert abs(bd_rate(rate, dist, rate * 0.8, dist) + 20.0) < 1e-9
    assert abs(bd_rate(rate, dist, rate * 1.25, dist) - 25.0) < 1e-9
    assert abs(bd_rate(rate, dist, rate, dist)) < 1e-12
    # only the overlap counts: B is A x0.5 there (a point beyond bends the last interval a little)
    assert abs(bd_rate(rate, dist, np.append(rate * 0.5, 50.0), np.append(dist, 60.0)) + 50.0) < 1.0
    assert bd_rate(rate, dist, rate, dist + 100) is None  # no overlap: no number


def test_matched_psnr_and_per_image_known_answers():
    from fool.evaluate import Point, matched_psnr, per_image_bd

    def pts(codec, image, curve):
        return [Point(codec, float(i + 1), image, b, q, None, 0.0, 0.0, 1) for i, (b, q) in enumerate(curve)]

    ref = [(0.1, 30.0), (0.2, 32.0), (0.4, 34.0), (0.8, 36.0)]
    points = pts("ref", "a", ref) + pts("ref", "b", ref)
    points += pts("ours", "a", [(0.2, 33.0), (0.4, 35.0)])  # +1 dB at the same rate
    points += pts("ours", "b", [(b * 2, q) for b, q in ref])  # twice the bits
    m = matched_psnr(points, "ref", "ours", 1.0)
    assert m["images"] == 2 and abs(m["delta_psnr_db"] - (1.0 + -2.0) / 2) < 1e-9  # a: +1 dB, b: 0.4 bpp -> 34 vs 32
    pi = per_image_bd(points, "ref", "ours")
    assert pi["measured"] == 2 and pi["wins"] == 1 and abs(pi["worst"] - 100.0) < 1e-9
    assert pi["worst_image"] == "b" and pi["per_image"][0]["image"] == "b"


def test_lossless_reference_round_trips_odd_band_sizes():
    """libaec decodes whole sample intervals, so the output runs past a band that does not fill one."""
    from fool.evaluate import eval_lossless

    rng = np.random.default_rng(4)
    img = rng.integers(0, 2**14, (2, 411, 634)).astype(np.uint16)
    [point] = eval_lossless("ccsds121", Path("odd.tif"), img, 14)
    assert 2 * 13.0 < point.bpp < 2 * 16.0  # both bands, random 14-bit samples


def test_classical_references_skip_float_images():
    from fool.evaluate import eval_classical

    img = np.random.default_rng(5).random((3, 64, 64))
    assert eval_classical("jpeg2000", Path("f.tif"), img, 8) == []


def test_the_colour_transform_reference_codes_rgb_with_ict_plus_the_rest():
    """4-band images: bands 1-3 with the colour transform and band 4 as two codestreams, whose
    every byte (and the 4-byte split) is counted; 3-band images have no such reference."""
    import imagecodecs

    from fool.evaluate import eval_classical

    yy, xx = np.mgrid[0:96, 0:128]
    base = (np.sin(xx / 6.0) * np.cos(yy / 9.0) + 1) * 100
    img = np.stack([base + 10, base + 20, base + 5, 255 - base]).astype(np.uint8)
    points = eval_classical("jpeg2000-ict", Path("four.tif"), img, 8)
    assert points and all(p.codec == "jpeg2000-ict" for p in points)
    p = points[3]
    hwc = np.ascontiguousarray(img.transpose(1, 2, 0))
    rgb = imagecodecs.jpeg2k_encode(np.ascontiguousarray(hwc[..., :3]), level=p.setting, codecformat="J2K")
    nir = imagecodecs.jpeg2k_encode(np.ascontiguousarray(hwc[..., 3]), level=p.setting, codecformat="J2K")
    assert p.bpp == pytest.approx(8 * (4 + len(rgb) + len(nir)) / (96 * 128))
    assert p.psnr > 25.0
    assert eval_classical("jpeg2000-ict", Path("three.tif"), img[:3], 8) == []
