"""Classical intra tile modes: JPEG 2000 / JPEG-LS payloads, MODE_INTRA in the container, the
onboard mode decision, upper qualities and the --max-error guarantee."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import rasterio
from fool.ground.decode import decode_container
from fool.onboard.compress import compress_scene
from fool.onboard.modes import lambda_for, unit_mse
from fool.shared import intra
from fool.shared.bands import BandRange
from fool.shared.errors import ContainerError, InputError
from fool.shared.format import FLAG_MASK, MODE_CODEC, MODE_INTRA, Container, write_container
from fool.shared.latent_codec import QUALITY_STEP, LatentCodec
from fool.shared.scene import unpack_tile
from fool.shared.windows import ContactWindow
from fool.shared.zoo import DEFAULT_LAMBDA, DEFAULT_MODEL, DEFAULT_QUALITY, default_quality, find

from tests import data
from tests.conftest import DATA

UCM = DATA / "ucmerced" / "dev"
AGRI = UCM / "agricultural" / "agricultural68.webp"


def _img(seed: int, shape: tuple[int, ...], top: int, dtype=np.uint8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[1], 0 : shape[2]]
    smooth = (np.sin(xx / 5.0) * np.cos(yy / 7.0) + 1) / 2
    noise = rng.random(shape)
    return np.rint((0.7 * smooth[None] + 0.3 * noise) * top).astype(dtype)


def _real(values: np.ndarray) -> np.ndarray:
    return values[0] if values.shape[0] == 1 else values.transpose(1, 2, 0)


CASES = [
    ((3, 128, 128), 255, np.uint8, [[1, 2, 3]]),
    ((3, 37, 100), 255, np.uint8, [[1, 2, 3]]),
    ((4, 64, 5), 255, np.uint8, [[1, 2, 3], [4]]),
    ((1, 1, 1), 255, np.uint8, [[1]]),
    ((1, 50, 70), 2047, np.uint16, [[1]]),
    ((2, 64, 64), 4095, np.uint16, [[1], [2]]),
]


@pytest.mark.parametrize("reversible", [True, False])
@pytest.mark.parametrize("shape,top,dtype,groups", CASES)
def test_regenerated_headers_decode_exactly_like_the_whole_codestream(shape, top, dtype, groups, reversible):
    values = _img(1, shape, top, dtype)
    for g in groups:
        part = np.ascontiguousarray(values[[b - 1 for b in g]])
        bits = 8 if dtype == np.uint8 else int(part.max()).bit_length()
        whole = intra._j2k_raw(part, bits, 33.0, reversible)
        rebuilt = intra.j2k_header(part.shape[1], part.shape[2], part.shape[0], bits, reversible)
        body = intra._strip(whole, rebuilt, intra.SOT, False)
        assert np.array_equal(imagecodecs.jpeg2k_decode(rebuilt + body + intra.EOC), imagecodecs.jpeg2k_decode(whole))
        whole = bytes(imagecodecs.jpegls_encode(intra._hwc(part), level=3))
        rebuilt = intra.jpegls_header(part.shape[1], part.shape[2], part.shape[0], part.dtype.name, 3)
        body = intra._strip(whole, rebuilt, intra.SOS, True)
        assert np.array_equal(imagecodecs.jpegls_decode(rebuilt + body + intra.EOC), imagecodecs.jpegls_decode(whole))


@pytest.mark.parametrize("wavelet", [53, 97])
@pytest.mark.parametrize("shape,top,dtype,groups", CASES)
def test_j2k_payloads_hold_no_tile_part_header_and_decode_like_the_whole_codestream(shape, top, dtype, groups, wavelet):
    values = _img(4, shape, top, dtype)
    payload = intra.encode_j2k(values, groups, 33.0, wavelet)
    assert payload[0] == {53: intra.CODEC_J2K, 97: intra.CODEC_J2K97}[wavelet]
    assert intra.codec_of(payload) == {53: "j2k", 97: "j2k97"}[wavelet]
    back = intra.decode(payload, groups, shape[1:], dtype.__name__)
    assert np.array_equal(intra.decode(payload, groups, shape[1:], dtype.__name__), back)  # 9/7: float, yet repeatable
    pos = 1
    for g in groups:
        part = np.ascontiguousarray(values[[b - 1 for b in g]])
        whole = intra._j2k_raw(part, payload[pos], 33.0, wavelet == 53)
        n, start = intra.read_varint(payload, pos + 1, "length", 5)
        _, body = intra._split_header(whole, intra.SOT, False)
        assert n == len(whole) - body - intra.TILE_PART_BYTES - 2  # stored: the tile-part data only
        assert payload[start : start + n] == whole[body + intra.TILE_PART_BYTES : -2]
        decoded = np.asarray(imagecodecs.jpeg2k_decode(whole))
        assert np.array_equal(back[[b - 1 for b in g]], decoded[None] if len(g) == 1 else decoded.transpose(2, 0, 1))
        pos = start + n
    assert pos == len(payload)


def test_the_regenerated_j2k_header_is_pinned():
    """The ground rebuilds headers with its own OpenJPEG: an upgrade that changes them must fail here."""
    header = intra.j2k_header(128, 128, 3, 8)
    assert len(header) == 88 and b"OpenJPEG" not in header  # the comment segment is dropped
    assert hashlib.sha256(header).hexdigest()[:16] == PINNED_J2K
    header = intra.j2k_header(128, 128, 3, 8, reversible=False)
    assert len(header) == 101 and b"OpenJPEG" not in header
    assert hashlib.sha256(header).hexdigest()[:16] == PINNED_J2K97
    assert len(intra.jpegls_header(128, 128, 3, "uint8", 2)) == 79


PINNED_J2K = "8f983a0fc555f3a2"
PINNED_J2K97 = "ac74ce267e92c569"


@pytest.mark.parametrize(
    "shape,dtype,top", [((3, 128, 128), np.uint8, 255), ((1, 128, 128), np.uint8, 255), ((1, 96, 80), np.uint16, 4095)]
)
def test_the_9_7_main_header_does_not_depend_on_content_or_target(shape, dtype, top):
    """The 9/7 QCD holds explicit step sizes: they must come from the geometry alone, or the
    regenerated header would decode another image."""
    bits = 8 if dtype == np.uint8 else 12
    rebuilt = intra.j2k_header(shape[1], shape[2], shape[0], bits, reversible=False)
    rng = np.random.default_rng(5)
    for scale in (0.1, 0.5, 1.0):
        values = (rng.random(shape) * top * scale).astype(dtype)
        values.flat[0] = top  # the stated precision
        for target in (20.0, 33.0, 45.0, 60.0):
            own, _ = intra._split_header(intra._j2k_raw(values, bits, target, False), intra.SOT, False)
            assert own == rebuilt


@pytest.mark.parametrize("shape,top,dtype,groups", CASES)
def test_round_trips_and_the_jpegls_bound(shape, top, dtype, groups):
    values = _img(2, shape, top, dtype)
    hw = shape[1:]
    for wavelet in intra.WAVELETS:
        j2k = intra.decode(intra.encode_j2k(values, groups, 40.0, wavelet), groups, hw, dtype.__name__)
        assert j2k.shape == values.shape and j2k.dtype == values.dtype
        assert _psnr_raw(values, j2k, top) > 30.0
    assert np.array_equal(intra.decode(intra.encode_jpegls(values, groups, 0), groups, hw, dtype.__name__), values)
    for near in (1, 4):
        back = intra.decode(intra.encode_jpegls(values, groups, near), groups, hw, dtype.__name__)
        err = np.abs(back.astype(np.int64) - values)
        assert err.max() <= near and err.max() > 0


def test_hostile_payloads_raise_only_container_errors():
    values = _img(3, (3, 64, 48), 255)
    groups = [[1, 2, 3]]
    rng = random.Random(7)
    payloads = [
        intra.encode_j2k(values, groups, 35.0, 53),
        intra.encode_jpegls(values, groups, 2),
        intra.encode_j2k(values, groups, 35.0, 97),
    ]
    for n in range(450):
        buf = bytearray(payloads[n % 3])
        kind = n % 3
        if kind == 0:
            for _ in range(rng.randint(1, 8)):
                buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif kind == 1:
            del buf[rng.randrange(1, len(buf)) :]
        else:
            pos = rng.randrange(len(buf))
            buf[pos:pos] = rng.randbytes(rng.randint(1, 30))
        try:
            out = intra.decode(bytes(buf), groups, (64, 48), "uint8")
        except ContainerError:
            continue
        assert out.shape == (3, 64, 48)
    for bad in (
        b"",
        b"\x00",
        b"\x09abc",
        b"\x01",
        b"\x03",
        b"\x02\xff\xff\xff\xff\x0f",
        bytes([1, 200, 3, 1, 2, 3]),
        bytes([3, 200, 3, 1, 2, 3]),
        payloads[2][:1] + bytes([9]) + payloads[2][2:],  # precision above uint8
        payloads[2] + b"\x00",
    ):
        with pytest.raises(ContainerError):
            intra.decode(bad, groups, (64, 48), "uint8")
    with pytest.raises(ContainerError):
        intra.decode(payloads[0], groups, (64, 48), "float32")


def test_intra_entries_in_the_table_and_unknown_modes_are_refused(tmp_path):
    template = Path(__file__).parent / "golden" / "v4_rgb_uint8.fool"
    with Container.open(template) as c:
        header = c.header_bytes
    path = tmp_path / "x.fool"
    with write_container(path, header) as w:
        w.add_tile(0, 0, b"abc", 768, 0, MODE_INTRA)
        w.add_tile(0, 1, b"de", 768, 0, MODE_CODEC)
    with Container.open(path) as c:
        assert [(e.mode, c.payload(e)) for e in c.coded_tiles] == [(MODE_INTRA, b"abc"), (MODE_CODEC, b"de")]
    bad = tmp_path / "bad.fool"
    with write_container(bad, header) as w:
        w.add_tile(0, 0, b"abc", 768, 0, MODE_INTRA)
        w.entries[-1] = dataclasses.replace(w.entries[-1], mode=4)  # a mode this reader does not know
    with pytest.raises(ContainerError, match="unknown tile mode 4"), Container.open(bad):
        pass
    with pytest.raises(ValueError, match="unknown tile mode"), write_container(tmp_path / "y.fool", header) as w:
        w.add_tile(0, 0, b"abc", 768, 0, 4)


def _crop(src: Path, dst: Path, size: int = 160, bands: list[int] | None = None) -> Path:
    from rasterio.windows import Window

    with rasterio.open(src) as ds:
        window = Window(ds.width // 3, ds.height // 3, min(size, ds.width), min(size + 17, ds.height))
        values = ds.read(bands, window=window)
        profile = ds.profile | {
            "driver": "GTiff",
            "width": values.shape[2],
            "height": values.shape[1],
            "count": values.shape[0],
            "transform": ds.window_transform(window),
        }
        for key in ("blockxsize", "blockysize", "tiled", "compress", "photometric", "quality"):
            profile.pop(key, None)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(values)
    return dst


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


REAL = [
    ("naip/m_4709963_se_14_1_20200831.tif", None, 3),
    ("worldview3/pan_0p5m.tif", None, 5),
    ("sentinel2_l1c_20m/B11.jp2", None, 2),
    ("sentinel2_l1c_20m/B05.jp2", None, 0),
]


@pytest.mark.parametrize("name,bands,near", REAL)
def test_max_error_holds_on_every_pixel_of_real_scenes(team_data, tmp_path, name, bands, near):
    src = _crop(team_data / "scenes" / name, tmp_path / "crop.tif", bands=bands)
    r = compress_scene(src, tmp_path / "x.fool", max_error=near, tile_size=64)
    assert r.modes == {"jpegls": r.tiles_coded}
    decode_container(tmp_path / "x.fool", tmp_path / "x.tif")
    a, b = _read(src).astype(np.int64), _read(tmp_path / "x.tif").astype(np.int64)
    assert a.shape == b.shape
    assert int(np.abs(a - b).max()) <= near
    if near:
        assert np.abs(a - b).max() == near  # lossy where allowed, so the test can tell a lossless fallback


def test_max_error_with_nodata_holds_on_valid_pixels_and_keeps_nodata(scenes, tmp_path):
    src = scenes["rgb_nodata"]
    compress_scene(src, tmp_path / "x.fool", max_error=3, tile_size=64)
    decode_container(tmp_path / "x.fool", tmp_path / "x.tif")
    a, b = _read(src).astype(np.int64), _read(tmp_path / "x.tif").astype(np.int64)
    invalid = (a == 0).all(axis=0)
    assert invalid.any() and (b[:, invalid] == 0).all()
    assert np.abs(a - b)[:, ~invalid].max() <= 3
    assert not ((b == 0).all(axis=0) & ~invalid).any()  # no valid pixel reads back as nodata


def test_max_error_refuses_float_scenes(scenes, tmp_path):
    with pytest.raises(InputError, match="float64, for which no maximum error"):
        compress_scene(scenes["ms_float64"], tmp_path / "x.fool", max_error=1)
    assert not (tmp_path / "x.fool").exists()
    with pytest.raises(InputError, match="max error must be an integer"):
        compress_scene(scenes["rgb_uint8"], tmp_path / "x.fool", max_error=-1)
    with pytest.raises(InputError, match="do not combine"):
        compress_scene(scenes["rgb_uint8"], tmp_path / "x.fool", modes="auto", budget=10000)
    with pytest.raises(InputError, match="outside 1..12 for fool-m "):
        compress_scene(scenes["rgb_uint8"], tmp_path / "x.fool", model="fool-m", quality=12.5)
    with pytest.raises(InputError, match="intra wavelet must be 53 or 97"):
        compress_scene(scenes["rgb_uint8"], tmp_path / "x.fool", quality=10.0, intra_wavelet=79)
    with pytest.raises(ValueError, match="wavelet must be one of"):
        intra.encode_j2k(np.zeros((1, 8, 8), np.uint8), [[1]], 30.0, 79)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def _psnr_raw(a: np.ndarray, b: np.ndarray, top: int) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return 100.0 if mse == 0 else float(10 * np.log10(top**2 / mse))


def _intra_codecs(path: Path) -> set[int]:
    with Container.open(path) as c:
        grid = c.scene.grid
        out = set()
        for e in c.coded_tiles:
            if e.mode == MODE_INTRA:
                tile = grid.tile(e.row, e.col)
                out.add(unpack_tile(c.payload(e), bool(e.flags & FLAG_MASK), (tile.height, tile.width))[0][0])
        return out


@pytest.fixture(scope="module")
def agri() -> Path:
    if not AGRI.exists():
        pytest.skip(f"UC Merced not found at {UCM} (set FOOL_DATA)")
    return AGRI


def test_upper_qualities_rise_past_the_learned_codec(agri, tmp_path):
    ref = _read(agri)
    got = []
    top = float(LatentCodec.load(find(DEFAULT_MODEL).tables).levels)  # the default model's best level
    for q in (top, top + 1, top + 4):
        r = compress_scene(agri, tmp_path / "x.fool", quality=q)
        decode_container(tmp_path / "x.fool", tmp_path / "x.tif")
        got.append((r.bytes, _psnr(ref, _read(tmp_path / "x.tif"))))
        assert r.modes == ({"learned": 4} if q == top else {"j2k": 4})
        if q > top:
            assert _intra_codecs(tmp_path / "x.fool") == {intra.CODEC_J2K97}  # the default wavelet
    assert got[0][1] < got[1][1] < got[2][1] and got[2][1] >= 45.0
    assert got[1][0] < got[2][0]
    r = compress_scene(agri, tmp_path / "x.fool", quality=top + 1, intra_wavelet=53)
    assert _intra_codecs(tmp_path / "x.fool") == {intra.CODEC_J2K}
    decode_container(tmp_path / "x.fool", tmp_path / "x.tif")
    assert r.bytes > got[1][0] and _psnr(ref, _read(tmp_path / "x.tif")) > got[0][1]  # 5/3 costs more bytes


def test_auto_lowers_the_rate_distortion_cost_on_crop_rows(agri, tmp_path):
    """On agricultural68 (periodic crop rows) JPEG 2000 wins tiles, and the image's cost
    J = λ·255²·MSE + bpp at the training λ falls."""
    ref = _read(agri)
    codec = LatentCodec.load(find("fool-m").tables)
    lam = lambda_for(codec, 3 * 256)
    assert lam == pytest.approx(0.0067)
    assert lambda_for(codec, int(3.5 * 256)) == pytest.approx((0.0067 * 0.013) ** 0.5)
    cost, modes = {}, {}
    for m in ("learned", "auto"):
        r = compress_scene(agri, tmp_path / f"{m}.fool", quality=3.0, modes=m)
        decode_container(tmp_path / f"{m}.fool", tmp_path / f"{m}.tif")
        rng = [BandRange(0, 255)] * 3
        cost[m] = lam * 255**2 * unit_mse(ref, _read(tmp_path / f"{m}.tif"), rng, [[1, 2, 3]], None) + r.bpp
        modes[m] = r.modes
    assert modes["learned"] == {"learned": 4} and modes["auto"].get("j2k", 0) >= 1
    assert cost["auto"] < cost["learned"]
    with Container.open(tmp_path / "auto.fool") as c:
        assert {e.mode for e in c.tiles} <= {MODE_CODEC, MODE_INTRA} and any(e.mode == MODE_INTRA for e in c.tiles)


def test_intra_tiles_cross_the_link(tmp_path):
    from fool.ground.unpack import unpack
    from fool.onboard.packer import pack

    src = data.write(tmp_path / "s.tif", bands=3, height=150, width=200)
    compress_scene(src, tmp_path / "s.fool", max_error=1, tile_size=64)
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    window = ContactWindow(t0, t0 + timedelta(minutes=8), 10**7, "Svalbard")
    report = pack([tmp_path / "s.fool"], [window], tmp_path / "packets", max_packet=1024)
    unpack(report.files, tmp_path / "ground")
    with Container.open(tmp_path / "s.fool") as a, Container.open(tmp_path / "ground" / "s.fool") as b:
        assert [(e.row, e.col, e.mode, a.payload(e)) for e in a.tiles] == [
            (e.row, e.col, e.mode, b.payload(e)) for e in b.tiles
        ]
        assert all(e.mode == MODE_INTRA for e in b.tiles)


def test_eval_adds_the_intra_curve_and_counts_tile_modes(scenes):
    from fool.evaluate import evaluate, table

    summary = evaluate(
        [scenes["rgb_uint8"]], ["fool-m"], ["jpeg2000"], qualities=(3.0,), intra=True, intra_qualities=(10.0,)
    )
    assert set(summary["curves"]) == {"fool-m", "fool-m+intra", "jpeg2000"}
    assert len(summary["curves"]["fool-m+intra"]["bpp"]) == 2  # qualities 3 and 10
    assert "fool-m+intra vs jpeg2000" in summary["bd_rate"] and "fool-m vs jpeg2000" in summary["bd_rate"]
    modes = summary["modes"]["fool-m+intra"]
    assert modes["by_quality"]["10.0"] == {"j2k": 4} and sum(modes["total"].values()) == 8  # 2x2 tiles
    assert "tile modes fool-m+intra" in table(summary)


@pytest.mark.parametrize("wavelet", [53, 97])
@pytest.mark.parametrize("top", [1, 200, 255, 256])
def test_dark_uint16_tiles_code_and_decode(wavelet, top):
    """A uint16 tile whose values all fit in 8 bits (a dark Sentinel-2 B11 tile at 256 px)."""
    values = _img(4, (1, 64, 72), top, np.uint16)
    payload = intra.encode_j2k(values, [[1]], 40.0, wavelet)
    back = intra.decode(payload, [[1]], (64, 72), "uint16")
    assert back.dtype == np.uint16 and back.shape == (1, 64, 72)
    peak = 2 ** max(9, top.bit_length()) - 1  # the declared precision's peak, which the target is on
    mse = np.mean((back.astype(float) - values.astype(float)) ** 2)
    assert 10 * np.log10(peak**2 / max(mse, 1e-9)) > 25.0


def test_upper_range_follows_the_models_levels(scenes, tmp_path):
    """A model with 11 learned levels (fool-m-task) codes qualities up to 11 with the learned
    codec and 12..15 with JPEG 2000; 8-level models keep 9..12."""
    src = scenes["rgb_uint8"]
    r = compress_scene(src, tmp_path / "x.fool", model="fool-m-task", quality=11.0)
    assert set(r.modes) == {"learned"}
    r = compress_scene(src, tmp_path / "x.fool", model="fool-m-task", quality=15.0)
    assert set(r.modes) == {"j2k"}
    with pytest.raises(InputError, match="outside 1..15 for fool-m-task"):
        compress_scene(src, tmp_path / "y.fool", model="fool-m-task", quality=15.5)
    assert not (tmp_path / "y.fool").exists()


@pytest.mark.parametrize("model,default", [("fool-m-task", 6.0), ("fool-m-lean48", 3.0)])
def test_default_quality_is_the_level_trained_at_the_default_lambda(scenes, tmp_path, model, default):
    """Growing a model by levels below (fool-m-task: 3) moves its default to the same λ."""
    codec = LatentCodec.load(find(model).tables)
    assert default_quality(codec.lambdas) == default
    assert codec.lambdas[int(default) - 1] == DEFAULT_LAMBDA
    compress_scene(scenes["rgb_uint8"], tmp_path / "x.fool", model=model)
    with Container.open(tmp_path / "x.fool") as c:
        assert {t.quality for t in c.tiles} == {int(default * QUALITY_STEP)}
    assert default_quality([]) == DEFAULT_QUALITY


JOINT_CASES = [c for c in CASES if len(c[3]) > 1]


@pytest.mark.parametrize("wavelet", [53, 97])
@pytest.mark.parametrize("shape,top,dtype,groups", JOINT_CASES)
def test_joint_layout_is_one_codestream_of_every_band_without_colour_transform(shape, top, dtype, groups, wavelet):
    values = _img(5, shape, top, dtype)
    payload = intra.encode_j2k(values, groups, 33.0, wavelet, intra.JOINT)
    assert payload[0] == {53: intra.CODEC_J2K_PARTS, 97: intra.CODEC_J2K97_PARTS}[wavelet]
    assert payload[1:3] == bytes([1, shape[0]])  # one part of every band, no colour transform
    back = intra.decode(payload, groups, shape[1:], dtype.__name__)
    whole = intra._j2k_raw(values, payload[3], 33.0, wavelet == 53, mct=False)
    n, start = intra.read_varint(payload, 4, "length", 5)
    _, body = intra._split_header(whole, intra.SOT, False)
    assert payload[start:] == whole[body + intra.TILE_PART_BYTES : -2] and start + n == len(payload)
    assert np.array_equal(back, np.asarray(imagecodecs.jpeg2k_decode(whole)).transpose(2, 0, 1))


def test_joint_layout_of_one_group_is_the_group_layout():
    values = _img(6, (3, 40, 40), 255)
    assert intra.encode_j2k(values, [[1, 2, 3]], 33.0, 97, intra.JOINT) == intra.encode_j2k(
        values, [[1, 2, 3]], 33.0, 97
    )
    with pytest.raises(ValueError, match="layout must be one of"):
        intra.encode_j2k(values, [[1, 2, 3]], 33.0, 97, "diagonal")


def test_explicit_parts_are_checked_against_the_bands():
    values = _img(7, (4, 32, 40), 255)
    groups = [[1, 2, 3], [4]]
    joint = intra.encode_j2k(values, groups, 35.0, 97, intra.JOINT)
    intra.decode(joint, groups, (32, 40), "uint8")
    body = joint[3:]
    for bad in (
        bytes([5]),  # no part count
        bytes([5, 0]) + body,  # no parts
        bytes([5, 5, 1, 1, 1, 1, 1]) + body,  # more parts than bands
        bytes([5, 1, 3]) + body,  # parts cover 3 of 4 bands
        bytes([5, 1, 5]) + body,  # and 5 of 4
        bytes([5, 2, 0, 4]) + body,  # an empty part
        bytes([5, 2, 0x82, 2]) + body,  # colour transform on 2 components
        bytes([5, 1, 0x84]) + body,  # and on 4
        bytes([5, 2, 0x83, 1]),  # parts but no codestreams
        bytes([5, 2, 0x83, 1]) + body,  # the second part's codestream is missing
        joint[:3] + bytes([17]) + joint[4:],  # precision above uint8
        joint[:-1],
        joint + b"\x00",
    ):
        with pytest.raises(ContainerError):
            intra.decode(bad, groups, (32, 40), "uint8")
    rng = random.Random(11)
    for _ in range(150):
        buf = bytearray(joint)
        for _ in range(rng.randint(1, 6)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        try:
            out = intra.decode(bytes(buf), groups, (32, 40), "uint8")
        except ContainerError:
            continue
        assert out.shape == (4, 32, 40)


def test_explicit_parts_with_the_colour_transform_decode():
    """The decoder takes any parts that cover the bands in order: RGB with ICT, then NIR."""
    values = _img(8, (4, 48, 48), 255)
    groups = [[1, 2, 3], [4]]
    grouped = intra.encode_j2k(values, groups, 35.0, 53)  # codec 1: the same codestreams, implicit parts
    payload = bytes([intra.CODEC_J2K_PARTS, 2, 0x83, 1]) + grouped[1:]
    assert np.array_equal(
        intra.decode(payload, groups, (48, 48), "uint8"), intra.decode(grouped, groups, (48, 48), "uint8")
    )


def _composite(team_data: Path, tmp_path: Path, size: int = 256) -> Path:
    """A Landsat SWIR/NIR/red/green composite crop with a nodata corner (correlated bands, the
    case one joint codestream wins)."""
    src = team_data / "scenes" / "landsat_composites" / "2005.tif"
    with rasterio.open(src) as r:
        y, x = (r.height - size) // 2, (r.width - size) // 2
        window = rasterio.windows.Window(x, y, size, size)
        values = r.read(window=window)
        profile = r.profile | {"width": size, "height": size, "transform": r.window_transform(window)}
    values[values == 0] = 1
    values[:, : size // 3, : size // 3] = 0
    profile.update(nodata=0, tiled=False)
    profile.pop("blockxsize", None), profile.pop("blockysize", None)
    with rasterio.open(tmp_path / "composite.tif", "w", **profile) as w:
        w.write(values)
    return tmp_path / "composite.tif"


@pytest.mark.parametrize("upper,modes", [(False, "auto"), (True, "learned")])
def test_masked_multispectral_tiles_code_classically_and_stay_off_nodata(team_data, tmp_path, upper, modes):
    """Masked tiles take part in ``auto`` and the upper range keeps JPEG 2000 on them (no lossless
    fallback); the upper range picks the joint codestream on correlated bands."""
    src = _composite(team_data, tmp_path)
    quality = LatentCodec.load(find("fool-m2").tables).levels + 1.0 if upper else 5.0
    r = compress_scene(src, tmp_path / "x.fool", model="fool-m2", quality=quality, modes=modes)
    assert "jpegls" not in r.modes
    if upper:
        assert r.modes == {"j2k": 4} and intra.CODEC_J2K97_PARTS in _intra_codecs(tmp_path / "x.fool")
    decode_container(tmp_path / "x.fool", tmp_path / "x.tif")
    a, b = _read(src), _read(tmp_path / "x.tif")
    invalid = (a == 0).all(axis=0)
    assert invalid.any() and (b[:, invalid] == 0).all()
    assert not (b[:, ~invalid] == 0).any()  # no valid sample reads back as nodata
    assert _psnr(a[:, ~invalid], b[:, ~invalid]) > 25.0


def test_auto_judges_masked_tiles_as_the_ground_decodes_them(team_data, tmp_path, monkeypatch):
    """The learned candidate of a masked tile is its decoded stream (not the mask bytes), so its
    PSNR is the learned codec's, and JPEG 2000 candidates are tried on it."""
    from fool.onboard import modes as modelib

    seen: list[tuple[float, str]] = []
    original = modelib.ModeChooser.j2k

    def spy(self, values, valid, target, layout=intra.GROUPS):
        seen.append((target, layout))
        return original(self, values, valid, target, layout)

    monkeypatch.setattr(modelib.ModeChooser, "j2k", spy)
    src = _composite(team_data, tmp_path)
    compress_scene(src, tmp_path / "x.fool", model="fool-m2", quality=5.0, modes="auto")
    # each tile: both layouts at the learned PSNR, then the search from there in one layout
    bases = [a[0] for a, b in itertools.pairwise(seen) if a[1] == intra.GROUPS and b == (a[0], intra.JOINT)]
    assert len(bases) == 4 and len(seen) >= 4 * 4
    assert min(bases) > 20.0  # every base is a real learned PSNR (the corner tile is 44 % nodata)
