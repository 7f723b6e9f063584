"""Task A: the classifier, the feature mode and `fool eval-task classify`, on tiny class folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from fool.shared.errors import InputError, ModelError
from PIL import Image

from fool import open_features
from fool.cli import main
from fool.tasks.classification import bits_for_accuracy
from fool.tasks.classifier import (
    FEATURE_CHANNELS,
    ClassifierOptions,
    SceneClassifier,
    labelled_images,
    train_classifier,
)
from fool.tasks.feature_mode import FeatureModeModel, FeatureModeOptions, stitch_tiles, train_feature_mode

MODELS = Path(__file__).resolve().parents[1] / "models"


def _folder(root: Path, per_class: int = 2, size: int = 256) -> Path:
    """Two classes a classifier can tell apart: horizontal stripes and smooth gradients."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    for name in ("fields", "water"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            if name == "fields":
                base = 127 + 100 * np.sin(yy / (3 + i))
            else:
                base = 60 + 0.3 * xx + 0.1 * yy
            img = np.clip(base[..., None] + rng.normal(0, 4, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{name}{i:02d}.png")
    return root


def test_backbone_ends_on_the_latent_grid() -> None:
    model = SceneClassifier(["a", "b", "c"]).eval()
    x = torch.rand(2, 3, 256, 256) * 255
    feats = model.features(x)
    assert feats.shape == (2, FEATURE_CHANNELS, 16, 16)  # FOOL's latents of a 256² image are 16 × 16
    assert model.head(feats).shape == (2, 3)


def test_labelled_images_refuses_unknown_classes(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d")
    paths, labels, classes = labelled_images(root)
    assert classes == ["fields", "water"] and list(labels) == [0, 0, 1, 1] and len(paths) == 4
    with pytest.raises(InputError, match="class folders"):
        labelled_images(root, ["fields"])
    with pytest.raises(InputError):
        labelled_images(tmp_path / "missing")


def test_bits_for_accuracy_interpolates() -> None:
    pts = [{"bpp_per_band": 0.1, "accuracy": 0.5}, {"bpp_per_band": 0.3, "accuracy": 0.9}]
    assert bits_for_accuracy(pts, 0.7) == pytest.approx(0.2)
    assert bits_for_accuracy(pts, 0.4) == pytest.approx(0.1)
    assert bits_for_accuracy(pts, 0.95) is None


def test_training_lowers_the_loss_and_saves_a_loadable_classifier(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", per_class=4)
    out = tmp_path / "clf.pt"
    last = train_classifier(root, out, ClassifierOptions(epochs=10, batch=4, crop=64, lr=3e-3), val_dir=root)
    history = torch.load(out, weights_only=True)["history"]
    assert min(h["loss"] for h in history[-3:]) < history[0]["loss"]
    assert last["epoch"] == 10 and "val_accuracy" in last
    model = SceneClassifier.load(out)
    assert model.classes == ["fields", "water"] and not model.training


@pytest.mark.skipif(not (MODELS / "fool-m.pt").exists(), reason="shipped fool-m weights absent")
def test_eval_task_classify_end_to_end(tmp_path: Path) -> None:
    """The real chain: train tiny models, code with FOOL, decode pixels and features, classify."""
    root = _folder(tmp_path / "d", per_class=2)
    clf = tmp_path / "clf.pt"
    train_classifier(root, clf, ClassifierOptions(epochs=2, batch=4, crop=128))
    feats = tmp_path / "feat.pt"
    train_feature_mode(root, clf, "fool-m", feats, FeatureModeOptions(steps=4, batch=4))
    fm = FeatureModeModel.load(feats)
    assert fm.codec_id.startswith("fool-m@") and fm.classifier is None
    with pytest.raises(ModelError, match="another classifier"):
        FeatureModeModel.load(feats, feats)
    out = tmp_path / "task.json"
    res = CliRunner().invoke(
        main,
        ["eval-task", "classify", str(root), "-o", str(out), "--classifier", str(clf), "--features", str(feats)]
        + ["--quality", "2", "--limit", "1"],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert 0.0 <= data["originals"]["accuracy"] <= 1.0
    for codec in ("fool", "fool-features", "jpeg2000", "jpegxl"):
        assert data[codec], codec
        for p in data[codec]:
            assert 0.0 <= p["accuracy"] <= 1.0 and p["bpp_per_band"] > 0
    # feature and image mode read the same containers: the same bits
    assert data["fool"][0]["bpp_per_band"] == data["fool-features"][0]["bpp_per_band"]
    assert out.with_suffix(".png").stat().st_size > 1000
    bad = CliRunner().invoke(main, ["eval-task", "classify", str(tmp_path / "nope"), "-o", str(out)])
    assert bad.exit_code == 2
    # a subset of codecs: no pixel synthesis without fool, the same feature-mode points
    part = tmp_path / "part.json"
    args = ["eval-task", "classify", str(root), "-o", str(part), "--classifier", str(clf), "--features", str(feats)]
    res = CliRunner().invoke(main, [*args, "--quality", "2", "--limit", "1", "--codec", "fool-features,jpeg2000"])
    assert res.exit_code == 0, res.output
    sub = json.loads(part.read_text())
    assert "fool" not in sub and "jpegxl" not in sub
    assert sub["fool-features"] == data["fool-features"] and sub["jpeg2000"] == data["jpeg2000"]
    res = CliRunner().invoke(main, [*args, "--codec", "webp"])
    assert res.exit_code == 2 and "webp" in res.output

    # the same model restores backbone features in the ground's batch decode, tile by tile
    image = next((root / "fields").iterdir())
    cont = tmp_path / "one.fool"
    args = ["compress", str(image), "-o", str(cont), "-q", "2", "--model", "fool-m"]  # ucm-features' model
    assert CliRunner().invoke(main, args).exit_code == 0
    res = CliRunner().invoke(
        main,
        ["decode", str(cont), "-o", str(tmp_path / "dec"), "--output", "features", "--feature-model", str(feats)],
    )
    assert res.exit_code == 0, res.output
    tiles = list(open_features(tmp_path / "dec" / "one.features"))
    assert len(tiles) == 4
    for tile in tiles:
        assert tile.backbone is not None and tile.backbone.shape == (FEATURE_CHANNELS, 8, 8)
        assert np.allclose(tile.backbone, fm.features(np.asarray(tile.array)[0]), atol=1e-5)
    res = CliRunner().invoke(main, ["decode", str(cont), "-o", str(tmp_path / "x"), "--feature-model", str(feats)])
    assert res.exit_code == 1 and "feature output" in res.output


def test_stitch_tiles_puts_tiles_in_place() -> None:
    tiles = {(r, c): np.full((2, 3, 4), 10 * r + c, np.float32) for r in range(2) for c in range(3)}
    whole = stitch_tiles(tiles)
    assert whole.shape == (2, 6, 12)
    assert whole[0, 4, 9] == 12 and whole[1, 0, 0] == 0 and whole[0, 2, 4] == 1


@pytest.mark.skipif(not (MODELS / "fool-m.pt").exists(), reason="shipped fool-m weights absent")
def test_train_feature_mode_variants_and_validation(tmp_path: Path) -> None:
    """Rotations, mirrors and jitter multiply the training latents; --val logs accuracy; dropout
    acts in training only."""
    root = _folder(tmp_path / "d", per_class=1)
    clf = tmp_path / "clf.pt"
    train_classifier(root, clf, ClassifierOptions(epochs=1, batch=2, crop=128))
    feats = tmp_path / "feat.pt"
    logged: list[str] = []
    opts = FeatureModeOptions(steps=2, batch=2, variants=8, jitter=True, dropout=0.5)
    last = train_feature_mode(root, clf, "fool-m", feats, opts, logged.append, val_dir=root)
    assert "latents and targets of 16 images" in logged[0]
    assert {"val_accuracy_q1", "val_accuracy_q8"} <= set(last)
    fm = FeatureModeModel.load(feats)
    assert fm.decoder.config["dropout"] == 0.5 and not fm.decoder.training
    y = np.random.default_rng(0).normal(size=(2, 192, 8, 8)).astype(np.float32)
    assert np.array_equal(fm.features(y), fm.features(y))  # no dropout when decoding
    fm.decoder.train()
    with torch.no_grad():
        a, b = (fm.decoder(torch.from_numpy(y)) for _ in range(2))
    assert not torch.equal(a, b)  # and it acts in training
    with pytest.raises(ModelError, match="variants"):
        train_feature_mode(root, clf, "fool-m", feats, FeatureModeOptions(steps=1, variants=3))
    # --init starts from a trained decoder: its weights, not a fresh one's
    again = tmp_path / "again.pt"
    logged.clear()
    train_feature_mode(root, clf, "fool-m", again, FeatureModeOptions(steps=1, lr=0.0, init=str(feats)), logged.append)
    assert any("initialised from" in line for line in logged)
    start, fresh = FeatureModeModel.load(feats).decoder.state_dict(), FeatureModeModel.load(again)
    assert all(torch.equal(v, fresh.decoder.state_dict()[k]) for k, v in start.items())
