"""The ground's ONNX Runtime synthesis: a real export of the shipped model against PyTorch's."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import rasterio
from fool.ground.decode import decode_container
from fool.ground.synthesis import OnnxSynthesis, TorchSynthesis, synthesis_export
from fool.onboard.compress import compress_scene
from fool.shared import zoo
from fool.shared.errors import ModelError
from fool.shared.latent_codec import LatentCodec


def _sha(model: str = "fool-m") -> str:
    return LatentCodec.load(zoo.find(model).tables).weights_sha256


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A cache folder holding a real export of fool-m's synthesis (made here, once)."""
    root = tmp_path_factory.mktemp("fool-cache")
    synthesis_export("fool-m", _sha(), root)
    return root


@pytest.fixture(scope="module")
def container(scenes, tmp_path_factory):
    """4-band uint8 (an RGB group and a grey group), 70x530: full and edge tiles."""
    out = tmp_path_factory.mktemp("synthesis") / "four.fool"
    compress_scene(scenes["four_band_uint8"], out, model="fool-m", tile_size=128)
    return out


def test_export_is_reused_and_checked(cache):
    folder = synthesis_export("fool-m", _sha(), cache)  # the cached one: no second export
    assert {p.name for p in folder.iterdir()} == {"synthesis.onnx", "synthesis.json"}
    with pytest.raises(ModelError, match="no ONNX synthesis"):
        OnnxSynthesis("fool-m16", _sha("fool-m16"), 1, export_dir=folder)  # another model's weights
    with pytest.raises(ModelError, match="coded with"):
        OnnxSynthesis("fool-m", "0" * 16, 1, export_dir=folder)


def test_onnx_decode_is_within_one_grey_level_of_torch(cache, container, tmp_path):
    folder = synthesis_export("fool-m", _sha(), cache)
    runtimes = {
        "onnx": OnnxSynthesis("fool-m", _sha(), 1, export_dir=folder),
        "torch": TorchSynthesis("fool-m", _sha(), 1),
    }
    images, profiles = {}, {}
    for name, synthesis in runtimes.items():
        decode_container(container, tmp_path / f"{name}.tif", synthesis=synthesis)
        with rasterio.open(tmp_path / f"{name}.tif") as ds:
            images[name], profiles[name] = ds.read().astype(int), (ds.crs, ds.transform, ds.count, ds.dtypes)
    assert profiles["onnx"] == profiles["torch"]
    diff = np.abs(images["onnx"] - images["torch"])
    assert diff.max() <= 1
    assert (diff > 0).mean() < 1e-3  # float paths: a rounding flips now and then, nothing more


def test_onnx_batches_change_no_value(cache):
    """ORT's CPU convolutions run image by image: a tile's pixels do not depend on its batch."""
    synthesis = OnnxSynthesis("fool-m", _sha(), 1, export_dir=synthesis_export("fool-m", _sha(), cache))
    y = np.random.default_rng(0).standard_normal((4, 192, 4, 4)).astype(np.float32)
    whole = synthesis(y)
    assert whole.shape == (4, 3, 64, 64) and 0 <= whole.min() and whole.max() <= 1
    assert np.array_equal(whole, np.concatenate([synthesis(y[i : i + 1]) for i in range(4)]))


def test_onnx_cli_decode_imports_neither_torch_nor_compressai(cache, container, tmp_path):
    """`fool decode --runtime onnx` with the export cached: start-up without torch (issue 18)."""
    out = tmp_path / "cli.tif"
    code = (
        "import sys\n"
        "from fool.cli import main\n"
        f"main(['decode', {str(container)!r}, '-o', {str(out)!r}, '--runtime', 'onnx'], standalone_mode=False)\n"
        "heavy = [m for m in ('torch', 'compressai', 'scipy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = {"FOOL_CACHE": str(cache), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    with rasterio.open(out) as ds:
        assert (ds.width, ds.height, ds.count) == (530, 70, 4)


@pytest.fixture(scope="module")
def variant_models(tmp_path_factory):
    """A models folder with fool-m and an untrained narrow synthesis variant of it, ``fast``:
    a real variant file, released as `fool release --synthesis` releases one."""
    import torch
    from fool.shared.nn.codec import CodecConfig, FoolCodec
    from fool.shared.nn.release import release_synthesis

    folder = tmp_path_factory.mktemp("models")
    files = zoo.find("fool-m")
    for f in (files.weights, files.tables):
        (folder / f.name).symlink_to(f)
    shipped = torch.load(files.weights, weights_only=False)
    config = CodecConfig.from_dict(shipped["config"] | {"last_stage": (16, 0)})
    model = FoolCodec(config)
    model.load_state_dict({k: v for k, v in shipped["model"].items() if not k.startswith(("g_s.2.", "g_s.3."))}, False)
    state = {k: v for k, v in model.state_dict().items() if k.startswith("g_s.")}
    state |= {k: v for k, v in shipped["model"].items() if not k.startswith("g_s.")}  # exactly as shipped
    torch.save({"config": config.to_dict(), "model": state}, folder / "ckpt.pt")
    release_synthesis(folder / "ckpt.pt", folder / "fool-m.pt", "fast", folder)
    return folder


def test_a_synthesis_variant_decodes_the_models_containers(variant_models, container, tmp_path, monkeypatch):
    monkeypatch.setenv("FOOL_MODELS", str(variant_models))
    monkeypatch.setenv("FOOL_CACHE", str(tmp_path / "cache"))
    assert zoo.synthesis_variants("fool-m") == ["fast"]
    images = {}
    for runtime in ("torch", "onnx"):
        decode_container(container, tmp_path / f"{runtime}.tif", runtime=runtime, variant="fast")
        with rasterio.open(tmp_path / f"{runtime}.tif") as ds:
            images[runtime] = ds.read().astype(int)
    decode_container(container, tmp_path / "own.tif", runtime="torch")
    with rasterio.open(tmp_path / "own.tif") as ds:
        own = ds.read().astype(int)
    assert np.abs(images["onnx"] - images["torch"]).max() <= 1
    assert np.abs(images["torch"] - own).mean() > 1  # an untrained stage: another decoder indeed ran
    with pytest.raises(ModelError, match="no synthesis 'slow'.*available: fast"):
        decode_container(container, tmp_path / "x.tif", runtime="onnx", variant="slow")
    assert not (tmp_path / "x.tif").exists()


def test_variant_labels_name_a_model_and_its_synthesis():
    from fool.evaluate import model_default_quality

    assert zoo.split_variant("fool-m2:fast") == ("fool-m2", "fast")
    assert zoo.split_variant("fool-m2") == ("fool-m2", None)
    assert model_default_quality("fool-m2:fast") == model_default_quality("fool-m2")
    with pytest.raises(ModelError, match="no synthesis 'x' for fool-m"):
        zoo.synthesis_variant("fool-m", "x")


def test_decode_reports_its_own_wall_time(container, tmp_path):
    import time

    t0 = time.perf_counter()
    report = decode_container(container, tmp_path / "t.tif", runtime="torch")
    assert 0 < report.seconds <= time.perf_counter() - t0
