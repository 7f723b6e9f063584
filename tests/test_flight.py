"""Flight runtime: ONNX export, torch-free onboard compression, cross-runtime determinism."""

import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from fool.ground.decode import decode_container
from fool.onboard.compress import compress_scene
from fool.shared import intnet
from fool.shared.zoo import find


@pytest.fixture(scope="module")
def flight(tmp_path_factory):
    from fool.shared.nn.export import export_flight

    out = tmp_path_factory.mktemp("flight")
    export_flight(find(), out)
    return out


def test_export_is_checked_and_deterministic(flight, tmp_path):
    import onnx
    from fool.shared.nn.export import export_flight

    onnx.checker.check_model(onnx.load(str(flight / "analysis.onnx")), full_check=True)
    export_flight(find(), tmp_path)
    for name in ("analysis.onnx", "hyper_analysis.onnx"):
        assert (tmp_path / name).read_bytes() == (flight / name).read_bytes()
    manifest = json.loads((flight / "manifest.json").read_text())
    assert manifest["weights_sha256"] and manifest["input"]["layout"] == "NCHW"


def test_onnx_compress_never_imports_torch(flight, scenes, tmp_path):
    code = (
        "import sys; from pathlib import Path; from fool.onboard.compress import compress_scene;"
        f"compress_scene(Path({str(scenes['rgb_nodata'])!r}), Path({str(tmp_path / 'o.fool')!r}),"
        f" runtime='onnx', flight_dir=Path({str(flight)!r}));"
        "assert 'torch' not in sys.modules, 'torch was imported'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
    assert (tmp_path / "o.fool").exists()


@pytest.mark.parametrize("halo", [0, 64])
def test_onnx_and_torch_containers_decode_to_same_pixels(flight, scenes, tmp_path, halo):
    src = scenes["four_band_uint8"]
    for rt in ("onnx", "torch"):
        compress_scene(src, tmp_path / f"{rt}.fool", runtime=rt, flight_dir=flight, tile_size=128, halo=halo)
        decode_container(tmp_path / f"{rt}.fool", tmp_path / f"{rt}.tif")
    with rasterio.open(tmp_path / "onnx.tif") as a, rasterio.open(tmp_path / "torch.tif") as b:
        diff = np.abs(a.read().astype(int) - b.read().astype(int))
    assert diff.max() <= 2 and (diff > 0).mean() < 0.01


def _real_tiles(team_data, size=64):
    """Unit-range 3-channel tiles cut from real scenes: NAIP RGB, WorldView-3 pan, Sentinel-2."""
    from fool.shared.bands import integer_range

    tiles = []
    for src in sorted((team_data / "scenes" / "naip").glob("*.tif")):
        with rasterio.open(src) as ds:
            rgb = ds.read([1, 2, 3]).astype(np.float32) / 255
        tiles += [
            rgb[:, y : y + size, x : x + size]
            for y in range(0, rgb.shape[1] - size + 1, size)
            for x in range(0, rgb.shape[2] - size + 1, size)
        ]
    for rel, bits in (("worldview3/road_scene_pan.tif", 11), ("sentinel2_l1c_20m/B05.jp2", 12)):
        with rasterio.open(team_data / "scenes" / rel) as ds:
            pan = integer_range(bits).to_unit(ds.read(1))
        tiles += [
            np.repeat(pan[None, y : y + size, x : x + size], 3, axis=0)
            for y in range(0, pan.shape[0] - size + 1, size)
            for x in range(0, pan.shape[1] - size + 1, size)
        ]
    return np.stack(tiles).astype(np.float32)


def _symbol_mismatches(analysis, codec, code, x, monkeypatch, ulp_noise: bool) -> int:
    """Tiles whose container does not decode to exactly the symbols the encoder chose."""
    import torch

    y, z = [], []
    for i in range(0, len(x), 256):
        yi, zi = analysis(x[i : i + 256])
        y.append(yi)
        z.append(zi)
    y, z = np.concatenate(y), np.concatenate(z)
    real = intnet.hyper_params
    bad = 0
    for i in range(len(x)):
        _, y_sym, _ = codec.quantise(y[i], z[i], code)
        payload = codec.encode_tile([(y[i], z[i])], code)
        # the ground derives symbols with numpy only; torch's thread count (set to 1 here,
        # 2 for the torch encoder) reaches the synthesis, never the entropy decoding
        torch.set_num_threads(1 + (i % 2))
        bad += not np.array_equal(codec.decode_tile_symbols(payload, 1, y.shape[2:], code)[0][0], y_sym)
        if ulp_noise and i % 4 == 0:  # ±1 ulp noise on a quarter of the tiles
            for sign in (1.0, -1.0):

                def noisy(zz, layers, s=sign):
                    a, b = real(zz, layers)
                    return np.nextafter(a, s * np.inf), np.nextafter(b, -s * np.inf)

                monkeypatch.setattr(intnet, "hyper_params", noisy)
                bad += not np.array_equal(codec.decode_tile_symbols(payload, 1, y.shape[2:], code)[0][0], y_sym)
                monkeypatch.setattr(intnet, "hyper_params", real)
    torch.set_num_threads(2)
    return bad


def test_determinism_across_threads_runtimes_and_ulp_noise(flight, team_data, monkeypatch):
    """>= 2,000 real tiles encoded by ORT (1 and 2 threads) and PyTorch (2 threads);
    every container decodes to exactly the symbols its encoder chose, also when the decoder's
    hyper-synthesis outputs are perturbed by ±1 ulp either way."""
    from fool.onboard.analysis import OnnxAnalysis, TorchAnalysis
    from fool.shared.latent_codec import LatentCodec, quality_code

    x = _real_tiles(team_data)
    assert len(x) >= 2000
    codec = LatentCodec.load(find().tables)
    code = quality_code(4.0, codec.levels)
    encoders = {"ort1": OnnxAnalysis(flight, 1), "ort2": OnnxAnalysis(flight, 2), "torch2": TorchAnalysis(find(), 2)}
    mismatches = {
        name: _symbol_mismatches(analysis, codec, code, x, monkeypatch, ulp_noise=name == "ort1")
        for name, analysis in encoders.items()
    }
    assert mismatches == dict.fromkeys(encoders, 0)


def test_high_bit_depth_model_is_deterministic_too(team_data, tmp_path, monkeypatch):
    """fool-m16 has its own tables and hyper-synthesis: its containers from >8-bit tiles decode
    to the encoder's symbols too, from ORT and PyTorch, with ±1 ulp noise."""
    from fool.onboard.analysis import OnnxAnalysis, TorchAnalysis
    from fool.shared.latent_codec import LatentCodec, quality_code
    from fool.shared.nn.export import export_flight
    from fool.shared.zoo import DEEP_MODEL, available

    if DEEP_MODEL not in available():
        pytest.skip(f"{DEEP_MODEL} is not shipped")
    files = find(DEEP_MODEL)
    export_flight(files, tmp_path)
    x = _real_tiles(team_data)
    x = x[np.all(x[:, 0] == x[:, 1], axis=(1, 2))]  # the grey triples: pan and Sentinel-2 tiles
    assert len(x) >= 500
    codec = LatentCodec.load(files.tables)
    code = quality_code(3.0, codec.levels)
    for analysis in (OnnxAnalysis(tmp_path, 1), TorchAnalysis(files, 2)):
        assert _symbol_mismatches(analysis, codec, code, x, monkeypatch, ulp_noise=True) == 0
