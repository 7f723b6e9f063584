"""End-to-end through the click commands: exit codes, written files, georeferencing."""

import json

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from fool.shared import zoo

from fool.cli import main
from tests import data


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def assert_same_georef(a_path, b_path, bands=None):
    with rasterio.open(a_path) as a, rasterio.open(b_path) as b:
        n = len(bands) if bands else a.count
        assert (b.width, b.height, b.count) == (a.width, a.height, n)
        assert b.crs == a.crs and b.transform == a.transform
        assert b.dtypes[0] == a.dtypes[0]
        assert (b.nodata == a.nodata) or (np.isnan(b.nodata) and np.isnan(a.nodata))


@pytest.mark.parametrize("name", list(data.SCENES))
def test_round_trip_synthetic(scenes, tmp_path, name):
    src = scenes[name]
    fool, out = tmp_path / "s.fool", tmp_path / "s.tif"
    r = run("compress", src, "-o", fool)
    assert r.exit_code == 0, r.output
    r = run("decode", fool, "-o", out)
    assert r.exit_code == 0, r.output
    assert_same_georef(src, out)
    with rasterio.open(src) as a, rasterio.open(out) as b:
        x, y = a.read().astype(float), b.read().astype(float)
        valid = a.dataset_mask() > 0
        assert (b.dataset_mask() > 0).tolist() == valid.tolist()  # nodata / masks carried through
        err = np.abs(x - y)[:, valid]
        span = x[:, valid].max() - x[:, valid].min()
        assert err.mean() < 0.1 * span  # a real reconstruction, not noise
        if a.dtypes[0] == "uint16":
            assert y.max() <= 2 ** (11 if "11bit" in name else 12) - 1  # clipped to the real bit depth


def test_nodata_tiles_are_not_coded(tmp_path):
    src = data.write(tmp_path / "nd.tif", nodata=0, height=200, width=200)
    with rasterio.open(src, "r+") as ds:
        arr = ds.read()
        arr[:, :, :128] = 0
        ds.write(arr)
    r = run("compress", src, "-o", tmp_path / "nd.fool", "--tile-size", 64)
    assert r.exit_code == 0, r.output
    assert "8 not sent" in r.output  # 4 rows x 2 fully-nodata columns
    info = json.loads(run("info", tmp_path / "nd.fool", "--json").output)
    assert info["tiles"]["coded"] == 8 and info["tiles"]["grid"] == 16


def test_bands_option_and_info(scenes, tmp_path):
    src = scenes["four_band_uint8"]
    r = run("compress", src, "-o", tmp_path / "b.fool", "--bands", "4,2", "-q", "2.5")
    assert r.exit_code == 0, r.output
    info = json.loads(run("info", tmp_path / "b.fool", "--json").output)
    assert info["scene"]["source_bands"] == [4, 2]
    assert {t["quality"] for t in info["tiles"]["table"]} == {2.5}
    assert sum(info["layout"].values()) == info["bytes"]  # header, payloads, table, footer: the whole file
    coded = info["tiles"]["coded"]
    assert 3 + 3 * coded <= info["layout"]["table"] <= 4 + 4 * coded  # count, base quality, 3-4-byte entries
    assert run("decode", tmp_path / "b.fool", "-o", tmp_path / "b.tif").exit_code == 0
    with rasterio.open(tmp_path / "b.tif") as ds:
        assert ds.count == 2
    text = run("info", tmp_path / "b.fool").output
    assert f"{zoo.DEFAULT_MODEL}@" in text and "EPSG:32633" in text


def test_quality_orders_rate(scenes, tmp_path):
    sizes = []
    for q in (1, 4, 8):
        assert run("compress", scenes["rgb_uint8"], "-o", tmp_path / f"{q}.fool", "-q", q).exit_code == 0
        sizes.append((tmp_path / f"{q}.fool").stat().st_size)
    assert sizes[0] < sizes[1] < sizes[2]


@pytest.fixture
def bad_inputs(tmp_path, scenes):
    (tmp_path / "empty.tif").write_bytes(b"")
    (tmp_path / "text.tif").write_text("not a raster\n")
    import shutil

    shutil.copy(scenes["rgb_uint8"], tmp_path / "ok.tif")
    with rasterio.open(tmp_path / "c64.tif", "w", driver="GTiff", width=8, height=8, count=1, dtype="complex64") as d:
        d.write(np.zeros((1, 8, 8), np.complex64))
    return tmp_path


@pytest.mark.parametrize(
    "args,message",
    [
        (["compress", "empty.tif"], "empty"),
        (["compress", "text.tif"], "not a raster"),
        (["compress", "missing.tif"], "no such file"),
        (["compress", "c64.tif"], "complex64"),
        (["compress", "ok.tif", "--bands", "7"], "bands"),
        (["compress", "ok.tif", "--tile-size", "100"], "multiple of 64"),
        (["compress", "ok.tif", "-q", "16"], "quality"),
        (["compress", "ok.tif", "-q", "0"], "quality"),
        (["demo", "ok.tif", "-q", "0"], "quality"),
        (["compress", "ok.tif", "--model", "nope"], "not found"),
        (["compress", "ok.tif", "--band-groups", "1,2;3"], "1 or 3"),
        (["decode", "text.tif"], "not a .fool"),
        (["decode", "empty.tif"], "not a .fool"),
        (["info", "missing.fool"], "cannot open"),
    ],
)
def test_bad_input_gives_clear_error_and_no_output(bad_inputs, monkeypatch, args, message):
    monkeypatch.chdir(bad_inputs)
    before = set(bad_inputs.iterdir())
    r = run(*args, "-o", "out.x") if args[0] not in ("info", "demo") else run(*args)
    assert r.exit_code != 0
    assert message in r.output
    assert "Traceback" not in r.output
    assert set(bad_inputs.iterdir()) == before


@pytest.mark.parametrize("damage", ["truncate", "flip", "version", "model"])
def test_damaged_container_is_refused_without_output(scenes, tmp_path, damage):
    fool = tmp_path / "s.fool"
    assert run("compress", scenes["rgb_uint8"], "-o", fool).exit_code == 0
    raw = bytearray(fool.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip":
        raw[len(raw) // 2] ^= 0x40
    elif damage == "version":
        raw[4] = 7
    else:  # another model's weights hash, with the header CRC made valid again
        import struct
        import zlib

        from fool.shared.varint import read_varint

        name = zoo.DEFAULT_MODEL.encode()
        at = raw.index(bytes([len(name)]) + name) + 1 + len(name)
        raw[at] ^= 0xFF
        n, pos = read_varint(bytes(raw), 5)
        struct.pack_into("<I", raw, pos + n, zlib.crc32(bytes(raw[: pos + n])))
    fool.write_bytes(bytes(raw))
    r = run("decode", fool, "-o", tmp_path / "o.tif")
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert {"truncate": "truncated", "flip": "CRC", "version": "version 7", "model": "coded with"}[damage] in r.output
    assert not (tmp_path / "o.tif").exists()
    assert not any(p.name.startswith(".o.tif") for p in tmp_path.iterdir())


def test_demo_without_team_data(monkeypatch, tmp_path):
    monkeypatch.setenv("FOOL_DATA", str(tmp_path / "none"))
    r = run("demo", "--workdir", tmp_path)
    assert r.exit_code == 0, r.output
    assert "generated" in r.output and "PSNR" in r.output and "bpp" in r.output


def test_help_is_fast_and_torch_free():
    import subprocess
    import sys

    code = "import sys; from fool.cli import main; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_hostile_payload_with_valid_crc_never_crashes(scenes, tmp_path):
    """Bytes changed *and* CRCs fixed up (an adversary, not line noise): clean error or a decode."""
    import dataclasses
    import random
    import zlib

    from fool.shared.format import FOOTER, Container, pack_table, tile_check

    fool = tmp_path / "s.fool"
    assert run("compress", scenes["rgb_uint8"], "-o", fool, "--tile-size", 64).exit_code == 0
    clean = fool.read_bytes()
    with Container.open(fool) as c:
        entries, table_offset, cols = c.tiles, c.table_offset, c.scene.grid.cols
    count = len(entries)
    rng = random.Random(7)
    for trial in range(12):
        raw = bytearray(clean)
        i = rng.randrange(count)
        e = entries[i]
        for _ in range(rng.randint(1, 8)):
            raw[e.offset + rng.randrange(e.length)] = rng.randrange(256)
        fixed = list(entries)
        fixed[i] = dataclasses.replace(e, check=tile_check(bytes(raw[e.offset : e.offset + e.length])))
        table = pack_table(fixed, cols)
        raw[table_offset:] = table + FOOTER.pack(len(table), zlib.crc32(table))
        fool.write_bytes(bytes(raw))
        r = run("decode", fool, "-o", tmp_path / f"o{trial}.tif")
        assert r.exit_code in (0, 1), r.output
        assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)


def test_output_path_that_is_a_directory(scenes, tmp_path):
    (tmp_path / "out.fool").mkdir()
    r = run("compress", scenes["rgb_uint8"], "-o", tmp_path / "out.fool")
    assert r.exit_code == 1 and "Error" in r.output and "Traceback" not in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.fool"]


def test_default_names_never_overwrite_the_source(scenes, tmp_path):
    import shutil

    src = tmp_path / "scene.tif"
    shutil.copy(scenes["rgb_uint8"], src)
    before = src.read_bytes()
    assert run("compress", src).exit_code == 0
    assert run("decode", tmp_path / "scene.fool").exit_code == 0
    assert src.read_bytes() == before and (tmp_path / "scene.decoded.tif").exists()
    r = run("compress", src, "-o", src)
    assert r.exit_code == 1 and "is the input" in r.output and src.read_bytes() == before


def test_default_model_follows_the_scene_dtype(scenes, tmp_path, monkeypatch):
    """High-bit-depth integer scenes go to the high-bit-depth model when it is shipped,
    everything else (and every scene when it is not) to fool-m."""
    from fool.shared import zoo

    assert zoo.model_for("uint8") == zoo.model_for("float32") == zoo.DEFAULT_MODEL
    deep = zoo.model_for("uint16")
    assert deep == (zoo.DEEP_MODEL if zoo.DEEP_MODEL in zoo.available() else zoo.DEFAULT_MODEL)
    src = next(p for n, p in scenes.items() if rasterio.open(p).dtypes[0] == "uint16")
    assert run("compress", src, "-o", tmp_path / "a.fool", "--tile-size", 128).exit_code == 0
    assert json.loads(run("info", tmp_path / "a.fool", "--json").output)["model"]["name"] == deep
    only = tmp_path / "models"
    only.mkdir()
    for f in zoo.find(zoo.DEFAULT_MODEL).weights, zoo.find(zoo.DEFAULT_MODEL).tables:
        (only / f.name).symlink_to(f)
    monkeypatch.setenv("FOOL_MODELS", str(only))
    assert zoo.model_for("uint16") == zoo.DEFAULT_MODEL


def test_onnx_runtime_without_an_export_names_the_model(scenes, tmp_path, monkeypatch):
    from pathlib import Path

    from fool.shared import zoo

    shipped = Path(__file__).resolve().parents[1] / "models"
    monkeypatch.setenv("FOOL_MODELS", str(tmp_path))  # a models folder without fool-m.onnx/
    for f in (f"{zoo.DEFAULT_MODEL}.pt", f"{zoo.DEFAULT_MODEL}.npz"):
        (zoo.models_dir() / f).symlink_to(shipped / f)
    r = run("compress", scenes["rgb_uint8"], "-o", tmp_path / "o.fool", "--runtime", "onnx")
    assert r.exit_code == 1 and f"fool export-onnx --model {zoo.DEFAULT_MODEL} -o DIR" in r.output
    assert not (tmp_path / "o.fool").exists()


def test_bad_output_is_refused_before_the_model_loads(scenes, tmp_path, monkeypatch):
    """A typo in -o must fail at once, not after the model has loaded, and name no temp file."""
    import fool.onboard.compress as compress

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(compress, "load_runtime", no_model)
    r = run("compress", scenes["rgb_uint8"], "-o", tmp_path / "no" / "such" / "dir" / "x.fool")
    assert r.exit_code == 1 and "does not exist" in r.output and ".partial" not in r.output


def test_decode_output_equal_to_input_is_refused(scenes, tmp_path):
    fool = tmp_path / "s.fool"
    assert run("compress", scenes["rgb_uint8"], "-o", fool, "-q", 1).exit_code == 0
    before = fool.read_bytes()
    r = run("decode", fool, "-o", fool)
    assert r.exit_code == 1 and "is the input" in r.output and fool.read_bytes() == before


def test_skip_damaged_leaves_the_tile_empty_and_exits_3(scenes, tmp_path):
    from fool.shared.format import Container

    fool = tmp_path / "s.fool"
    assert run("compress", scenes["rgb_uint8"], "-o", fool, "--tile-size", 64, "-q", 1).exit_code == 0
    with Container.open(fool) as c:
        e = c.tiles[1]
    raw = bytearray(fool.read_bytes())
    raw[e.offset + e.length // 2] ^= 0x10
    fool.write_bytes(bytes(raw))
    assert run("decode", fool, "-o", tmp_path / "strict.tif").exit_code == 1
    r = run("decode", fool, "-o", tmp_path / "o.tif", "--skip-damaged")
    assert r.exit_code == 3 and f"({e.row}, {e.col})" in r.output
    with rasterio.open(tmp_path / "o.tif") as ds:
        window = ds.read(1, window=((e.row * 64, e.row * 64 + 64), (e.col * 64, e.col * 64 + 64)))
        other = ds.read(1, window=((0, 64), (0, 64)))
    assert not window.any() and other.any()  # the damaged tile is empty, the others decoded
