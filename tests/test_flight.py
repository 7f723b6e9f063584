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


def test_workers_write_the_same_file(flight, scenes, tmp_path):
    """Batches coded side by side land in tile order: the file does not depend on the workers."""
    src = scenes["four_band_uint8"]
    sizes = set()
    for workers in (1, 2, 3):
        out = tmp_path / f"w{workers}.fool"
        report = compress_scene(src, out, runtime="onnx", flight_dir=flight, workers=workers)
        sizes.add(out.read_bytes())
        assert report.tiles_coded > 2
    assert len(sizes) == 1


def test_bad_worker_counts_are_refused(flight, scenes, tmp_path):
    from fool.shared.errors import InputError

    for bad in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="workers"):
            compress_scene(scenes["rgb_nodata"], tmp_path / "x.fool", runtime="onnx", flight_dir=flight, workers=bad)
    assert not (tmp_path / "x.fool").exists()


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    """Four 256-px RGB images of the synthetic texture, as a calibration folder."""
    from PIL import Image

    from tests import data

    folder = tmp_path_factory.mktemp("calibration")
    for i in range(4):
        rgb = data._texture(3, 256, 256, seed=10 + i)
        Image.fromarray(np.moveaxis(rgb, 0, -1).astype(np.uint8)).save(folder / f"t{i}.png")
    return folder


def test_int8_export_quantises_only_the_middle_convolutions(calibration, scenes, flight, tmp_path):
    import onnx
    from fool.shared.nn.export import export_flight
    from fool.shared.nn.quantise import INT8_NODES, calibration_tiles

    tiles = calibration_tiles(calibration, 8)
    assert tiles.shape == (8, 3, 128, 128) and tiles.dtype == np.float32 and 0 <= tiles.min() <= tiles.max() <= 1
    int8 = tmp_path / "int8"
    manifest = export_flight(find(), int8, tiles)
    assert manifest["analysis_precision"]["int8"] == list(INT8_NODES)
    assert json.loads((flight / "manifest.json").read_text())["analysis_precision"] == {"default": "float32"}
    graph = onnx.load(str(int8 / "analysis.onnx")).graph
    dequantised = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    convs = {n.name: n for n in graph.node if n.op_type == "Conv"}
    int8_convs = {name for name, n in convs.items() if n.input[1] in dequantised}
    assert int8_convs == set(INT8_NODES)
    assert not list(int8.glob("*.pre.onnx")) and not (int8 / "analysis.float.onnx").exists()

    src = scenes["four_band_uint8"]
    decoded = {}
    for name, folder in (("float", flight), ("int8", int8)):
        report = compress_scene(src, tmp_path / f"{name}.fool", runtime="onnx", flight_dir=folder)
        decode_container(tmp_path / f"{name}.fool", tmp_path / f"{name}.tif")
        with rasterio.open(tmp_path / f"{name}.tif") as ds:
            decoded[name] = (ds.read().astype(float), report.bytes)
    with rasterio.open(src) as ds:
        original = ds.read().astype(float)

    def psnr(x):
        return 10 * np.log10(255**2 / np.mean((x - original) ** 2))

    assert (tmp_path / "int8.fool").read_bytes() != (tmp_path / "float.fool").read_bytes()
    # calibrated on 8 synthetic tiles: a loose bound that a broken graph (garbage latents) fails;
    # bench/int8_analysis.py --rd measures the real cost on team images
    assert abs(psnr(decoded["int8"][0]) - psnr(decoded["float"][0])) < 2.0
    assert abs(decoded["int8"][1] / decoded["float"][1] - 1) < 0.1


def test_calibration_needs_images(tmp_path):
    from fool.shared.errors import InputError
    from fool.shared.nn.quantise import calibration_tiles

    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(InputError, match="no calibration images"):
        calibration_tiles(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(InputError, match="cannot read calibration image"):
        calibration_tiles(tmp_path)
