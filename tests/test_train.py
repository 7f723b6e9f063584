"""`fool train` on tiny synthetic data: steps run, the CSV grows, runs resume and record their lineage."""

import csv

import numpy as np
import pytest
import torch

from ground.train import CropSource, TrainOptions, init_lineage, train
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
