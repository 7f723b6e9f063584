"""`fool train` on tiny synthetic data: steps run, the CSV grows, runs resume and record their lineage."""

import csv

import numpy as np
import pytest
import torch
from fool.shared.errors import FoolError, ModelError

from fool.train import CropSource, TrainOptions, crop_at, init_lineage, train
from tests import data


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    data.write(folder / "rgb.tif", bands=3, height=96, width=96, seed=1)
    data.write(folder / "pan.tif", dtype="uint16", bands=1, bits=11, height=96, width=96, seed=2)
    return folder


def test_deep_bands_get_their_own_pool_and_range(images):
    src = CropSource(sorted(images.glob("*.tif")), 64, 0.0, np.random.default_rng(0), deep_prob=1.0)
    assert len(src.rgb) == 1 and len(src.gray) == 3 and len(src.deep) == 1
    crop = src.sample()
    assert crop.shape == (3, 64, 64) and np.array_equal(crop[0], crop[2])  # grey triple
    deep = src.deep[0]
    assert deep.min() == 0.0 and deep.max() == 1.0  # stretched by min/max, as the tiler does


def test_mixed_crop_sizes_cycle_at_about_equal_pixels(tmp_path):
    folder = tmp_path / "img"
    folder.mkdir()
    data.write(folder / "rgb.tif", bands=3, height=128, width=140, seed=1)
    data.write(folder / "small.tif", bands=3, height=64, width=64, seed=2)  # only for the 64-px crops
    opts = TrainOptions(data=[folder], out=tmp_path / "m", steps=2, batch=8, crop=64, more_crops=(128,), log_every=1)
    assert [crop_at(s, opts) for s in range(3)] == [(64, 8), (128, 2), (64, 8)]
    src = CropSource(sorted(folder.glob("*.tif")), 64, 0.0, np.random.default_rng(0))
    assert len(src.rgb) == 2 and src.batch(3, 128).shape == (3, 3, 128, 128) and src.sample().shape == (3, 64, 64)
    with pytest.raises(FoolError, match="at least 256 px"):
        src.sample(256)  # no image is that large: a clear error, not an endless re-draw
    train(opts, log=lambda *_: None)  # a step at each size
    rows = list(csv.DictReader(open(tmp_path / "m" / "train_log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2] and all(np.isfinite(float(r["loss"])) for r in rows)


def test_train_resume_and_lineage(images, tmp_path):
    opts = TrainOptions(data=[images], out=tmp_path / "a", steps=2, batch=2, crop=64, log_every=1, deep_prob=0.3)
    ckpt = train(opts, log=lambda *_: None)
    opts.steps = 3
    train(opts, log=lambda *_: None)  # resumes: one more step
    state = torch.load(ckpt, weights_only=False)
    assert state["step"] == 3 and state["lineage"] == []
    rows = list(csv.DictReader(open(tmp_path / "a" / "train_log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3] and all(np.isfinite(float(r["loss"])) for r in rows)

    child = TrainOptions(data=[images], out=tmp_path / "b", steps=1, batch=2, crop=64, init=ckpt)
    train(child, log=lambda *_: None)
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    assert [r["steps"] for r in state["lineage"]] == [3]
    assert [r["steps"] for r in init_lineage(tmp_path / "b" / "checkpoint.pt")] == [3, 1]


def test_grow_a_plain_model_keeps_its_output(images, tmp_path):
    """--dec-blocks on an --init model: new blocks start as the identity, so the grown model
    decodes exactly what the plain one did before its first step."""
    from fool.shared.nn.codec import FoolCodec

    plain = TrainOptions(data=[images], out=tmp_path / "plain", steps=1, batch=2, crop=64)
    ckpt = train(plain, log=lambda *_: None)
    grown = TrainOptions(data=[images], out=tmp_path / "grown", steps=0, batch=2, crop=64, init=ckpt, dec_blocks=1)
    train(grown, log=lambda *_: None)
    a, b = FoolCodec.load(ckpt), FoolCodec.load(tmp_path / "grown" / "checkpoint.pt")
    assert b.config.dec_blocks == 1 and a.config.dec_blocks == 0
    y = torch.randn(1, a.config.m, 4, 4)
    with torch.no_grad():
        assert torch.equal(a.synthesise(y), b.synthesise(y))
    grown.steps, grown.out = 1, tmp_path / "grown2"
    train(grown, log=lambda *_: None)  # and it trains
    back = TrainOptions(data=[images], out=tmp_path / "shallow", steps=0, crop=64, init=ckpt, dec_blocks=0)
    train(back, log=lambda *_: None)
    deep = TrainOptions(
        data=[images], out=tmp_path / "deeper", steps=0, crop=64, init=tmp_path / "grown2" / "checkpoint.pt"
    )
    deep.dec_blocks = 3  # a staged decoder grows further: its new blocks start as the identity too
    train(deep, log=lambda *_: None)
    c = FoolCodec.load(tmp_path / "deeper" / "checkpoint.pt")
    assert c.config.dec_blocks == 3
    with torch.no_grad():
        assert torch.equal(FoolCodec.load(tmp_path / "grown2" / "checkpoint.pt").synthesise(y), c.synthesise(y))
    shrink = TrainOptions(
        data=[images], out=tmp_path / "shallower", steps=0, crop=64, init=tmp_path / "deeper" / "checkpoint.pt"
    )
    shrink.dec_blocks = 1
    with pytest.raises(Exception, match="synthesis depth"):
        train(shrink, log=lambda *_: None)


@pytest.mark.parametrize(
    ("native", "forced", "expected"), [(False, None, "fp32"), (True, None, "bf16"), (True, False, "fp32")]
)
def test_bf16_autocast_only_where_the_cpu_has_it(images, tmp_path, monkeypatch, native, forced, expected):
    """Emulated bf16 made a step 25x slower than fp32 on an AVX2-only CPU: the default follows the CPU."""
    import fool.train

    monkeypatch.setattr(fool.train, "native_bf16", lambda: native)
    lines: list[str] = []
    opts = TrainOptions(data=[images], out=tmp_path / "r", steps=1, batch=2, crop=64, autocast=forced)
    train(opts, log=lines.append)
    assert any(f"transforms in {expected}" in line for line in lines)


def test_lr_warms_up_then_follows_the_cosine():
    from fool.train import _lr_at

    opts = TrainOptions(data=[], out=None, steps=1000, lr=1e-4, lr_min=1e-5, warmup=100)
    assert _lr_at(0, opts) == pytest.approx(1e-6, rel=0.01)
    assert _lr_at(49, opts) == pytest.approx(0.5e-4, rel=0.01)
    assert _lr_at(99, opts) <= 1e-4 and _lr_at(500, opts) == pytest.approx(5.5e-5, rel=0.01)
    assert _lr_at(1000, opts) == pytest.approx(1e-5)
    opts.warmup = 0
    assert _lr_at(0, opts) == pytest.approx(1e-4)


def test_latent_widens_an_init_model(images, tmp_path):
    from fool.shared.nn.codec import FoolCodec

    ckpt = train(TrainOptions(data=[images], out=tmp_path / "narrow", steps=1, batch=2, crop=64), log=lambda *_: None)
    wide = TrainOptions(data=[images], out=tmp_path / "wide", steps=1, batch=2, crop=64, init=ckpt, latent=160)
    b = FoolCodec.load(train(wide, log=lambda *_: None))
    assert b.config.m == 160 and b.log_gain.shape[1] == 160
    assert [r["steps"] for r in b.trained["lineage"]] == [1]
    assert torch.load(tmp_path / "wide" / "checkpoint.pt", weights_only=False)["rate_ramp"] == {
        "channels_from": 128,
        "steps": 3000,
    }
    both = TrainOptions(data=[images], out=tmp_path / "both", steps=0, crop=64, init=ckpt, latent=160, dec_blocks=1)
    with pytest.raises(ModelError, match="separate runs"):
        train(both, log=lambda *_: None)


def test_low_levels_extend_the_quality_range_below_an_init_model(images, tmp_path):
    from fool.shared.nn.codec import FoolCodec

    ckpt = train(TrainOptions(data=[images], out=tmp_path / "a", steps=1, batch=2, crop=64), log=lambda *_: None)
    a = FoolCodec.load(ckpt)
    low = TrainOptions(data=[images], out=tmp_path / "low", steps=0, crop=64, init=ckpt, low_levels=2)
    b = FoolCodec.load(train(low, log=lambda *_: None))
    lam = a.config.lambdas
    assert b.levels == a.levels + 2 and b.config.lambdas[2:] == lam
    ratio = lam[0] / lam[1]
    assert b.config.lambdas[:2] == pytest.approx((lam[0] * ratio**2, lam[0] * ratio))
    for key in ("log_gain", "log_inv_gain"):
        old, new = getattr(a, key).detach(), getattr(b, key).detach()
        assert torch.equal(new[2:], old)
        assert torch.allclose(new[1], 2 * old[0] - old[1]) and torch.allclose(new[0], 3 * old[0] - 2 * old[1])
    # quality 3 of the extended model is quality 1 of the original: same latents, same pixels
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(a(x, torch.tensor([1.0]))["x_hat"], b(x, torch.tensor([3.0]))["x_hat"], atol=1e-6)
    lean = TrainOptions(data=[images], out=tmp_path / "l2", steps=0, crop=64, init=ckpt, low_levels=1, enc_width=48)
    with pytest.raises(ModelError, match="run of its own"):
        train(lean, log=lambda *_: None)


def test_sigterm_stops_a_run_with_a_checkpoint(images, tmp_path):
    """Operators stop long runs with kill or Ctrl-C: the run must end cleanly and keep its steps."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "fool.cli", "train", str(images), "-o", str(out), "--batch", "2", "--crop", "64"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        log, deadline = out / "train_log.csv", time.time() + 300  # start-up and 50 steps on a busy machine
        while not (log.exists() and len(log.read_text().splitlines()) > 1):  # in the step loop
            assert proc.poll() is None and time.time() < deadline, "no step was logged"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "stopped on SIGTERM at step" in stdout and "Traceback" not in stderr
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] > 0


def test_checkerboard_context_checkpoints_are_refused(images, tmp_path):
    """The checkerboard context is gone: neither --init nor a resume accepts weights trained with
    it (their config says ``context: true``), and ``fool train`` has no --context any more."""
    from click.testing import CliRunner
    from fool.shared.zoo import find

    from fool.cli.train import train as train_cli

    state = torch.load(find("fool-m").weights, weights_only=False)
    ctx = tmp_path / "ctx.pt"
    torch.save(state | {"config": state["config"] | {"context": True}}, ctx)
    init = TrainOptions(data=[images], out=tmp_path / "init", steps=0, crop=64, init=ctx)
    with pytest.raises(ModelError, match="checkerboard context"):
        train(init, log=lambda *_: None)
    (tmp_path / "resume").mkdir()
    torch.save(state | {"config": state["config"] | {"context": True}}, tmp_path / "resume" / "checkpoint.pt")
    with pytest.raises(ModelError, match="checkerboard context"):
        train(TrainOptions(data=[images], out=tmp_path / "resume", steps=0, crop=64), log=lambda *_: None)
    result = CliRunner().invoke(train_cli, [str(images), "-o", str(tmp_path / "cli"), "--context"])
    assert result.exit_code == 2 and "No such option '--context'" in result.output


def test_encoder_only_run_narrows_the_analysis_and_keeps_the_decoder(images, tmp_path):
    from fool.shared.nn.codec import FoolCodec

    ckpt = train(TrainOptions(data=[images], out=tmp_path / "base", steps=1, batch=2, crop=64), log=lambda *_: None)
    base = FoolCodec.load(ckpt)
    lean = TrainOptions(
        data=[images], out=tmp_path / "lean", steps=3, batch=2, crop=64, init=ckpt, enc_width=48, train_only="encoder"
    )
    model = FoolCodec.load(train(lean, log=lambda *_: None))
    assert model.config.n_enc == 48 and base.config.n_enc == 64
    assert list(model.g_a[0].weight.shape) == [48, 3, 5, 5]
    assert list(model.g_a[6].weight.shape)[:2] == [base.config.m, 48]
    assert model.config.n_hyper == 64 and model.h_a[0].weight.shape == base.h_a[0].weight.shape
    before, after = base.state_dict(), model.state_dict()
    onboard = [k for k in after if k.startswith(("g_a.", "h_a."))]
    ground = [k for k in after if not k.startswith(("g_a.", "h_a.")) and not k.endswith(("_cdf", "_offset", "_length"))]
    ground = [k for k in ground if not k.endswith("quantiles")]  # the aux loss keeps tracking them
    assert ground and all(torch.equal(before[k], after[k]) for k in ground), "the ground decoder changed"
    assert any(not torch.equal(before[k], after[k]) for k in onboard if before[k].shape == after[k].shape)
    assert [r["steps"] for r in model.trained["lineage"]] == [1]
    widen = TrainOptions(data=[images], out=tmp_path / "w", steps=0, crop=64, init=ckpt, enc_width=80)
    with pytest.raises(ModelError, match="only narrow"):
        train(widen, log=lambda *_: None)
    scratch = TrainOptions(data=[images], out=tmp_path / "s", steps=0, crop=64, train_only="encoder")
    with pytest.raises(ModelError, match="needs --init"):
        train(scratch, log=lambda *_: None)


def test_narrowing_to_the_same_width_is_the_identity():
    import dataclasses

    from fool.shared.nn.codec import FoolCodec
    from fool.shared.nn.grow import narrow_analysis
    from fool.shared.zoo import find

    base = FoolCodec.load(find().weights).eval()
    same = FoolCodec(dataclasses.replace(base.config)).eval()
    x = torch.rand(4, 3, 64, 64)
    narrow_analysis(same, base, x)
    with torch.no_grad():
        assert torch.allclose(same.analyse(x)[0], base.analyse(x)[0], atol=1e-6)


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    from fool.tasks.classifier import SceneClassifier

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("clf") / "clf.pt"
    torch.save({"classes": ["a", "b"], "state": SceneClassifier(["a", "b"]).state_dict()}, path)
    return path


def test_feature_distortion_is_zero_on_the_original_and_grows_with_the_error(classifier_file):
    from fool.train import FeatureDistortion

    x = torch.rand(2, 3, 64, 64)
    term = FeatureDistortion(classifier_file, 10.0, "cpu")
    assert torch.allclose(term(x, x, False), torch.zeros(2))
    small, large = term(x + 0.01, x, False), term(x + 0.1 * torch.randn_like(x), x, False)
    assert (small > 0).all() and (large > small).all()
    with pytest.raises(ModelError, match="feature-weight"):
        FeatureDistortion(classifier_file, 0.0, "cpu")


def test_feature_loss_enters_the_loss_and_the_log(images, tmp_path, classifier_file):
    def run(name: str, **kw) -> list[dict]:
        opts = TrainOptions(data=[images], out=tmp_path / name, steps=1, batch=2, crop=64, log_every=1, seed=3, **kw)
        train(opts, log=lambda *_: None)
        return list(csv.DictReader(open(tmp_path / name / "train_log.csv")))

    from fool.shared.nn.codec import CodecConfig

    assert run("plain")[0]["feature_error"] == ""
    weight = 1e6  # the feature term outweighs 255² x MSE by far
    row = run("features", feature_loss=classifier_file, feature_weight=weight)[0]
    error, loss, bpp = float(row["feature_error"]), float(row["loss"]), float(row["bpp"])
    assert error > 0
    # loss = mean(lambda x (255² MSE + weight x error) + bpp): without the term it could not be this large
    assert loss - bpp >= min(CodecConfig().lambdas) * weight * error * 0.999


def test_synthesis_only_run_keeps_every_coded_byte_and_releases_as_a_variant(images, tmp_path):
    """--train-only synthesis --last-stage: a new, narrower half-resolution stage learns while
    every weight that decides the bytes stays the --init model's; release refuses a run whose
    encoder moved."""
    from fool.shared.latent_codec import file_sha256
    from fool.shared.nn.codec import FoolCodec, deepen_state
    from fool.shared.nn.release import release, release_synthesis

    plain = TrainOptions(data=[images], out=tmp_path / "base", steps=1, batch=2, crop=64)
    base_ckpt = train(plain, log=lambda *_: None)
    models = tmp_path / "models"
    release(base_ckpt, "tiny", models)
    fast = TrainOptions(
        data=[images], out=tmp_path / "fast", steps=2, batch=2, crop=64, init=models / "tiny.pt",
        train_only="synthesis", last_stage=(16, 1),
    )  # fmt: skip
    ckpt = train(fast, log=lambda *_: None)
    base, model = FoolCodec.load(models / "tiny.pt"), FoolCodec.load(ckpt)
    assert model.config.last_stage == (16, 1) and list(model.g_s[2][0].weight.shape)[:2] == [base.config.n_dec, 16]
    before, after = base.state_dict(), model.state_dict()
    coded = [k for k in before if not k.startswith("g_s.") and not k.endswith(("_cdf", "_offset", "_length"))]
    assert coded and all(torch.equal(before[k], after[k]) for k in coded), "a weight that decides the bytes moved"
    kept = deepen_state(before, 1)["g_s.1.0.weight"]  # the base decoder is flat; its second deconvolution
    assert kept.shape == after["g_s.1.0.weight"].shape and not torch.equal(kept, after["g_s.1.0.weight"])

    variant = release_synthesis(ckpt, models / "tiny.pt", "fast", models)
    assert variant.name == "tiny.fast.pt"
    y = torch.randn(1, base.config.m, 2, 2)
    with torch.no_grad():
        ours = FoolCodec.load_synthesis(variant, file_sha256(models / "tiny.pt")).synthesise(y)
        assert torch.allclose(ours, model.synthesise(y), atol=1e-2)  # weights stored in float16

    moved = TrainOptions(data=[images], out=tmp_path / "moved", steps=1, batch=2, crop=64, init=models / "tiny.pt")
    with pytest.raises(ModelError, match="codes other bytes"):
        release_synthesis(train(moved, log=lambda *_: None), models / "tiny.pt", "fast", models)
    alone = TrainOptions(data=[images], out=tmp_path / "alone", steps=0, crop=64, init=base_ckpt, last_stage=(16, 1))
    with pytest.raises(ModelError, match="--train-only synthesis"):
        train(alone, log=lambda *_: None)
