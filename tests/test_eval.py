"""`fool eval` on synthetic scenes: curves, BD-rate, matched deltas and the lossless reference."""

import json

from click.testing import CliRunner

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
    bpp, psnr = s["curves"]["fool-m"]["bpp"], s["curves"]["fool-m"]["psnr"]
    assert bpp == sorted(bpp) and psnr == sorted(psnr)  # more bits, more quality
    assert s["lossless"]["ccsds121"]["bpp"] > max(bpp)  # lossy must be cheaper than lossless
    assert s["bd_rate"]["fool-m vs jpeg2000"]["psnr"] is not None
    lossless = [p for p in s["points"] if p["codec"] == "ccsds121"]
    assert len(lossless) == 2 and all(p["psnr"] is None for p in lossless)


def test_eval_cli_writes_json_and_plot(scenes, tmp_path):
    out = tmp_path / "rd.json"
    r = CliRunner().invoke(main, ["eval", str(scenes["rgb_uint8"]), "--codec", "jpeg,ccsds121", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "lossless reference ccsds121" in r.output and "BD-rate fool-m vs jpeg" in r.output
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
