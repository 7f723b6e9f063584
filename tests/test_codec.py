"""Invariants of the numpy codec half: exact entropy coding, exact integer hyper-synthesis,
and agreement between the training forward pass and what compress/decompress send."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from fool.shared import intnet
from fool.shared.errors import ContainerError
from fool.shared.latent_codec import LatentCodec, dequantise, quality_code
from fool.shared.zoo import find


@pytest.fixture(scope="module")
def codec() -> LatentCodec:
    return LatentCodec.load(find().tables)


def test_rans_loads_without_torch():
    code = "import sys; from fool.shared.entropy import rans; rans(); assert 'torch' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def _latents(codec: LatentCodec, seed: int, shape: tuple[int, int] = (8, 12)) -> tuple[np.ndarray, np.ndarray]:
    """Analysis-like (y, z) of one band group, latent ``shape`` (a multiple of 4)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    y = rng.normal(0, 3, (codec.gains.shape[1], h, w)).astype(np.float32)
    z = rng.normal(0, 2, (codec.z_medians.shape[0], h // 4, w // 4)).astype(np.float32)
    return y, z


def test_latent_round_trip_is_exact(codec):
    y, z = _latents(codec, 1)
    code = quality_code(3.5, codec.levels)
    stream = codec.encode_tile([(y, z)], code)
    [(y_sym, means_g, inv)] = codec.decode_tile_symbols(stream, 1, (8, 12), code)
    assert np.array_equal(y_sym, codec.quantise(y, z, code)[1])  # the symbols the encoder chose
    [y_hat] = codec.decode_tile(stream, 1, (8, 12), code)
    # y_hat is y quantised with step 1/gain around the predicted mean: error at most half a step
    gain, _ = codec.gain_vectors(code)
    assert np.all(np.abs(y * gain - y_hat / inv) <= 0.5 + 1e-3)
    assert codec.decode_tile(stream, 1, (8, 12), code)[0].tobytes() == y_hat.tobytes()


def test_unsent_latents_cost_nothing_and_decode_to_their_means(codec):
    """Latents outside ``coded`` (alignment padding, nodata) are not in the stream."""
    y, z = _latents(codec, 8)
    code = quality_code(6.0, codec.levels)
    coded = np.zeros((8, 12), bool)
    coded[:5, :9] = True
    coded[2, 3] = False  # an irregular (nodata) hole too
    stream = codec.encode_tile([(y, z)], code, coded)
    assert len(stream) < 0.8 * len(codec.encode_tile([(y, z)], code))
    [(y_sym, means_g, inv)] = codec.decode_tile_symbols(stream, 1, (8, 12), code, coded)
    assert np.array_equal(y_sym, codec.quantise(y, z, code, coded)[1])
    assert not y_sym[:, ~coded].any() and y_sym[:, coded].any()
    [y_hat] = codec.decode_tile(stream, 1, (8, 12), code, coded)
    assert np.array_equal(y_hat[:, ~coded], (means_g * inv).astype(np.float32)[:, ~coded])
    gain, _ = codec.gain_vectors(code)
    assert np.all(np.abs(y * gain - y_hat / inv)[:, coded] <= 0.5 + 1e-3)
    with pytest.raises(ContainerError, match="mask"):
        codec.decode_tile(stream, 1, (8, 12), code, coded[:4])


def test_band_groups_in_one_stream_decode_as_each_group_alone(codec):
    """A tile's band groups share one rANS stream, run after run: each group decodes to the
    symbols and latents it decodes to when coded alone in its own stream, and the stream's
    first group can be read without the others."""
    groups = [_latents(codec, 9 + g) for g in range(3)]
    code = quality_code(2.0, codec.levels)
    coded = np.ones((8, 12), bool)
    coded[6:, :] = False
    stream = codec.encode_tile(groups, code, coded)
    alone = [codec.encode_tile([g], code, coded) for g in groups]
    together = codec.decode_tile_symbols(stream, 3, (8, 12), code, coded)
    for one, (y_sym, means_g, inv) in zip(alone, together, strict=True):
        [(y_ref, means_ref, inv_ref)] = codec.decode_tile_symbols(one, 1, (8, 12), code, coded)
        assert np.array_equal(y_sym, y_ref) and np.array_equal(means_g, means_ref) and np.array_equal(inv, inv_ref)
    assert len({s.tobytes() for s, _, _ in together}) == 3  # the groups differ, so order is tested
    y_hat = codec.decode_tile(stream, 3, (8, 12), code, coded)
    assert [a.tobytes() for a in y_hat] == [
        codec.decode_tile(one, 1, (8, 12), code, coded)[0].tobytes() for one in alone
    ]
    assert np.array_equal(codec.decode_tile_symbols(stream, 1, (8, 12), code, coded)[0][0], together[0][0])
    with pytest.raises(ContainerError, match="too short"):
        codec.decode_tile(stream[:4], 3, (8, 12), code, coded)


def test_tiles_decoded_together_match_each_decoded_alone(codec):
    """decode_tiles_symbols (the ground's row-wise decode, hyper-synthesis batched across tiles)
    gives each tile the values decode_tile_symbols gives it alone, for tiles of different
    shapes, groups, qualities and masks; a bad stream fails only its own tile."""
    coded = np.ones((8, 12), bool)
    coded[:, 9:] = False
    specs = [((8, 12), 1, 2.0, None), ((8, 12), 2, 5.5, coded), ((4, 8), 3, 1.0, None), ((8, 12), 2, 7.0, None)]
    tiles = []
    for k, (shape, groups, q, mask) in enumerate(specs):
        code = quality_code(q, codec.levels)
        stream = codec.encode_tile([_latents(codec, 40 + 3 * k + g, shape) for g in range(groups)], code, mask)
        tiles.append((stream, groups, shape, code, mask))
    tiles.insert(2, (tiles[1][0][:4], 2, (8, 12), tiles[1][3], coded))  # truncated
    together = codec.decode_tiles_symbols(tiles)
    assert isinstance(together[2], ContainerError)
    for tile, got in zip(tiles[:2] + tiles[3:], together[:2] + together[3:], strict=True):
        want = codec.decode_tile_symbols(*tile)
        assert len(got) == len(want) == tile[1]
        for a, b in zip(got, want, strict=True):
            assert all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("groups", [1, 2])
def test_garbage_tile_streams_never_crash(codec, groups):
    """Junk bytes either decode to latents of the right shape (the tile CRC rejects them
    upstream) or raise ContainerError; nothing else escapes."""
    rng = np.random.default_rng(10)
    decoded = 0
    for _ in range(20):
        junk = rng.integers(0, 256, rng.integers(2, 400)).astype(np.uint8).tobytes()
        try:
            out = codec.decode_tile(junk, groups, (8, 8), 1024)
        except ContainerError:
            continue
        assert [a.shape for a in out] == [(codec.gains.shape[1], 8, 8)] * groups
        decoded += 1
    assert decoded > 0  # the junk did reach the rANS decoder


def test_quality_changes_rate(codec):
    y, z = _latents(codec, 2, (16, 16))
    sizes = [len(codec.encode_tile([(y, z)], quality_code(q, codec.levels))) for q in (1, 4, 8)]
    assert sizes[0] < sizes[1] < sizes[2]


def test_quality_range_is_checked(codec):
    with pytest.raises(ValueError):
        quality_code(0.5, codec.levels)
    with pytest.raises(ValueError):
        quality_code(codec.levels + 0.1, codec.levels)


@pytest.mark.parametrize("cut", [0, 2, 4])
def test_truncated_stream_raises_cleanly(codec, cut):
    """Shorter than a final rANS state (5-7 bytes are one with its zero high bytes dropped)."""
    y, z = _latents(codec, 3, (8, 8))
    stream = codec.encode_tile([(y, z)], 1024)
    with pytest.raises(ContainerError, match="too short"):
        codec.decode_tile(stream[:cut], 1, (8, 8), 1024)


def test_latent_shape_must_be_a_multiple_of_4(codec):
    y, z = _latents(codec, 3, (8, 8))
    stream = codec.encode_tile([(y, z)], 1024)
    with pytest.raises(ContainerError, match="multiple of 4"):
        codec.decode_tile(stream, 1, (8, 6), 1024)


_HYPER_IN_SUBPROCESS = """
import hashlib, sys
import numpy as np
from fool.shared import intnet
from fool.shared.latent_codec import LatentCodec
codec = LatentCodec.load(sys.argv[1])
s, m = intnet.hyper_params(np.load(sys.argv[2]), codec.hyper)
print(hashlib.sha256(s.tobytes() + m.tobytes()).hexdigest())
"""


def _exact_hyper_params(z_hat: np.ndarray, layers: list[intnet.IntConv]) -> tuple[np.ndarray, np.ndarray]:
    """The integer hyper-synthesis evaluated in int64 (no BLAS, no floats): the reference that
    the float64 BLAS evaluation must equal bit for bit."""
    from numpy.lib.stride_tricks import sliding_window_view

    a = np.rint(z_hat.astype(np.float64) * 2.0**intnet.FRAC_BITS).astype(np.int64)
    for i, layer in enumerate(layers):
        b, c, h, w = a.shape
        cols = sliding_window_view(np.pad(a, ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3), axis=(2, 3))
        cols = cols.transpose(0, 2, 3, 1, 4, 5).reshape(b * h * w, c * 9)
        acc = cols @ layer.weight.astype(np.int64).T + layer.bias.astype(np.int64)
        acc = acc.reshape(b, h, w, -1).transpose(0, 3, 1, 2)
        shift = layer.shift.astype(np.int64)[None, :, None, None]
        if i == len(layers) - 1:
            out = acc / np.exp2(shift + intnet.FRAC_BITS)  # one exact power-of-two scaling
            scales, means = np.split(out, 2, axis=1)
            return np.abs(scales), means
        assert (shift > 0).all()
        a = (acc + (1 << (shift - 1))) >> shift  # floor(acc / 2**shift + 0.5), in integers
        if layer.relu:
            a = np.maximum(a, 0)
        if layer.shuffle > 1:
            r = layer.shuffle
            b, c, h, w = a.shape
            a = (
                a.reshape(b, c // (r * r), r, r, h, w)
                .transpose(0, 1, 4, 2, 5, 3)
                .reshape(b, c // (r * r), h * r, w * r)
            )
    raise AssertionError("no layers")


def test_integer_hyper_synthesis_is_exact_under_threads_and_layout(codec, tmp_path):
    """The entropy parameters are the same bits whatever the BLAS blocking and threads: they
    equal an int64 evaluation of the same network, and do not change with the batch, the batch
    order, the input's memory layout, or 1 vs 2 BLAS/OpenMP threads in a fresh process."""
    rng = np.random.default_rng(5)
    nz = codec.z_medians.shape[0]
    z = (np.rint(rng.normal(0, 3, (3, nz, 4, 5))) + codec.z_medians[:, None, None]).astype(np.float32)
    s_all, m_all = intnet.hyper_params(z, codec.hyper)
    s_ref, m_ref = _exact_hyper_params(z, codec.hyper)
    assert s_all.tobytes() == s_ref.tobytes() and m_all.tobytes() == m_ref.tobytes()
    assert np.abs(m_all).max() > 0.1 and s_all.max() > 0.1  # not a degenerate all-zero output
    for i in range(3):
        s_i, m_i = intnet.hyper_params(z[i : i + 1], codec.hyper)
        assert s_i.tobytes() == s_all[i : i + 1].tobytes() and m_i.tobytes() == m_all[i : i + 1].tobytes()
    order = [2, 0, 1]
    s_o, m_o = intnet.hyper_params(z[order], codec.hyper)
    assert s_o.tobytes() == s_all[order].tobytes() and m_o.tobytes() == m_all[order].tobytes()
    fortran = np.asfortranarray(z)
    strided = np.ascontiguousarray(z.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)  # same values, other strides
    assert not strided.flags.c_contiguous and not fortran.flags.c_contiguous
    for view in (fortran, strided):
        s_v, m_v = intnet.hyper_params(view, codec.hyper)
        assert s_v.tobytes() == s_all.tobytes() and m_v.tobytes() == m_all.tobytes()
    # final outputs sit on their fixed-point grid: integer multiples of 2**-(shift + FRAC_BITS)
    grid = np.exp2(codec.hyper[-1].shift + intnet.FRAC_BITS)[None, :, None, None]
    both = np.concatenate([s_all, m_all], axis=1) * grid
    assert np.array_equal(both, np.rint(both))
    np.save(tmp_path / "z.npy", z)
    want = hashlib.sha256(s_all.tobytes() + m_all.tobytes()).hexdigest()
    for threads in ("1", "2"):
        env = {"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        out = subprocess.run(
            [sys.executable, "-c", _HYPER_IN_SUBPROCESS, str(find().tables), str(tmp_path / "z.npy")],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **env},
        )
        assert out.stdout.strip() == want, f"{threads} threads"


def _int64_conv3x3(a: np.ndarray, layer: intnet.IntConv) -> np.ndarray:
    """One integer layer in int64 (channels-last in and out), bias added, nothing rescaled."""
    from numpy.lib.stride_tricks import sliding_window_view

    b, h, w, c = a.shape
    padded = np.pad(a.astype(np.int64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = sliding_window_view(padded, (3, 3), axis=(1, 2)).reshape(b * h * w, c * 9)  # (in, kh, kw)
    return (cols @ layer.weight.astype(np.int64).T + layer.bias.astype(np.int64)).reshape(b, h, w, -1)


@pytest.mark.parametrize("top", [0, 1, 127, 128, 2**14 - 1, 2**14, 2**20 + 3, 2**30])
def test_digit_kernel_is_the_exact_integer_sum(top):
    """The 8-bit GEMM kernel gives the exact integer sum of a layer for any activation size
    and sign, extreme 12-bit weights included (the digits that could saturate a 16-bit pair
    sum if they were wider), as the float64 BLAS product does where that is exact."""
    rng = np.random.default_rng(top)
    c, out = 24, 40
    weight = rng.integers(-2047, 2048, (out, c * 9)).astype(np.float64)
    weight[0], weight[1] = 2047.0, -2047.0  # the largest weights
    weight[2], weight[3] = 1984.0, -1984.0  # the largest low digits (-64 and 64 - 128 = -64)
    weight[4, ::2] = 64.0  # low digit -64, high digit 1
    bias = rng.integers(-(2**20), 2**20, out).astype(np.float64)
    layer = intnet.IntConv(weight, bias, np.zeros(out, np.int64), True, 1)
    a = rng.integers(-top, top + 1, (3, 5, 6, c)).astype(np.float64)
    a[0, 0, 0] = top
    a[2, 1] = min(top, 2**21 - 1)  # every digit 127 where top allows it
    a[1, 2] = -top
    want = _int64_conv3x3(a, layer)
    got = intnet._conv3x3_digits(a, layer)
    assert got.dtype == np.float64 and np.array_equal(got, want.astype(np.float64))
    assert np.array_equal(intnet._conv3x3_blas(a, layer), got)
    assert np.array_equal(intnet._conv3x3(a, layer), got)  # whichever kernel this CPU picks
    positive = np.abs(a)
    assert np.array_equal(intnet._conv3x3_digits(positive, layer), _int64_conv3x3(positive, layer).astype(np.float64))


@pytest.mark.parametrize("kernel", ["_conv3x3_digits", "_conv3x3_blas"])
def test_both_kernels_give_the_int64_hyper_synthesis(codec, monkeypatch, kernel):
    """Whichever kernel a CPU picks, the whole integer hyper-synthesis is the int64 one."""
    rng = np.random.default_rng(11)
    nz = codec.z_medians.shape[0]
    z = (np.rint(rng.normal(0, 4, (4, nz, 2, 3))) + codec.z_medians[:, None, None]).astype(np.float32)
    monkeypatch.setattr(intnet, "_conv3x3", getattr(intnet, kernel))
    s, m = intnet.hyper_params(z, codec.hyper)
    s_ref, m_ref = _exact_hyper_params(z, codec.hyper)
    assert s.tobytes() == s_ref.tobytes() and m.tobytes() == m_ref.tobytes()


def test_integer_hyper_synthesis_tracks_float_network():
    torch = pytest.importorskip("torch")
    from fool.shared.nn.codec import FoolCodec

    files = find()
    model = FoolCodec.load(files.weights)
    codec = LatentCodec.load(files.tables)
    z = torch.round(torch.randn(1, model.config.nz, 4, 4) * 2) + torch.from_numpy(codec.z_medians)[None, :, None, None]
    with torch.no_grad():
        s, m = model.hyper_params(z)
    si, mi = intnet.hyper_params(z.numpy(), codec.hyper)
    assert np.abs(si - s.abs().numpy()).max() < 0.05 * max(1.0, float(s.abs().max()))
    assert np.abs(mi - m.numpy()).max() < 0.05 * max(1.0, float(m.abs().max()))


def _assert_forward_matches_compress_path(model, quality: float) -> None:
    """The bitstream path (:meth:`FoolCodec.compress` / ``decompress``) reproduces the eval-mode
    training path (:meth:`FoolCodec.forward`), captured inside ``forward`` by hooks:

    - the decoded hyper-latent is forward's ``z_hat`` exactly: the integer hyper-synthesis of
      forward's ``z_hat`` gives, bit for bit, the means the decoder derived;
    - the decoded y symbols are forward's ``round(y * gain - means * gain)``, except where the
      float hyper-synthesis of training and the integer one of the bitstream put the mean on
      the two sides of a rounding boundary (then they differ by one, and only there);
    - ``decompress`` returns the synthesis of exactly the latents the stream decodes to.
    """
    import torch

    seen: dict[str, torch.Tensor] = {}
    hooks = [
        model.h_a.register_forward_pre_hook(lambda _m, a: seen.__setitem__("y", a[0])),
        model.h_s.register_forward_pre_hook(lambda _m, a: seen.__setitem__("z_hat", a[0])),
        model.g_s.register_forward_pre_hook(lambda _m, a: seen.__setitem__("y_hat", a[0])),
    ]
    torch.manual_seed(11)
    x = torch.rand(2, 3, 128, 128)
    q = torch.full((2,), quality)
    model.eval()
    try:
        with torch.no_grad():
            model(x, q)
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        means = model.hyper_params(seen["z_hat"])[1]
        gain, inv = model.gains(q)
        mg = (means * gain).double().numpy()
        y_fwd = (seen["y"] * gain).double().numpy() - mg  # forward rounds this
        sym_fwd = np.rint(seen["y_hat"].double().numpy() / inv.double().numpy() - mg)

    bits = model.compress(x, quality)
    assert bits["shape"] == (8, 8) and len(bits["strings"]) == 2
    codec = model.latent_codec()
    code = quality_code(quality, codec.levels)
    y_hats = []
    for i, stream in enumerate(bits["strings"]):
        [(y_sym, means_g, inv_np)] = codec.decode_tile_symbols(stream, 1, bits["shape"], code)
        g, _ = codec.gain_vectors(code)
        assert np.array_equal(means_g, codec.hyper_params(seen["z_hat"][i].numpy())[1][0] * g)
        diff = y_sym - sym_fwd[i]
        assert set(np.unique(diff)) <= {-1.0, 0.0, 1.0}
        # a mismatch needs the rounding boundary between the float mean and the integer one
        mean_error = np.abs(means_g - mg[i])
        to_boundary = np.abs(np.abs(y_fwd[i] - np.floor(y_fwd[i])) - 0.5)
        assert np.all(to_boundary[diff != 0] <= mean_error[diff != 0] + 1e-4)
        assert (diff != 0).mean() < 0.01
        y_hats.append(dequantise(y_sym, means_g, inv_np))
    x_hat = model.decompress(bits["strings"], bits["shape"], quality)["x_hat"]
    with torch.no_grad():
        x_ref = model.synthesise(torch.from_numpy(np.stack(y_hats))).clamp_(0, 1)
    assert torch.equal(x_hat, x_ref)


def test_forward_matches_compress_path():
    pytest.importorskip("torch")
    from fool.shared.nn.codec import FoolCodec

    model = FoolCodec.load(find("fool-m").weights)
    assert model.latent_codec().weights_sha256 == LatentCodec.load(find("fool-m").tables).weights_sha256
    _assert_forward_matches_compress_path(model, 4.0)


def test_compress_writes_the_bytes_of_a_container_tile(tmp_path):
    """``FoolCodec.compress`` of a tile's pixels is the payload the onboard pipeline stores for
    that tile (one band group, every pixel valid: no mask prefix), and ``decompress`` of it is
    what the ground decoder writes."""
    torch = pytest.importorskip("torch")
    import rasterio
    from fool.ground.decode import decode_container
    from fool.onboard.compress import compress_scene
    from fool.shared.bands import integer_range
    from fool.shared.format import Container
    from fool.shared.nn.codec import FoolCodec

    from tests import data

    src = data.write(tmp_path / "rgb.tif", bands=3, height=128, width=128, seed=4)
    compress_scene(src, tmp_path / "rgb.fool", model="fool-m", quality=3.0, tile_size=128)
    with Container.open(tmp_path / "rgb.fool") as c:
        [entry] = c.coded_tiles
        payload = c.payload(entry)
    with rasterio.open(src) as ds:
        pixels = ds.read()
    x = torch.from_numpy(integer_range(8).to_unit(pixels))[None]
    model = FoolCodec.load(find("fool-m").weights)
    bits = model.compress(x, 3.0)
    assert bits["strings"] == [payload]
    x_hat = model.decompress(bits["strings"], bits["shape"], 3.0)["x_hat"]
    decode_container(tmp_path / "rgb.fool", tmp_path / "out.tif")
    with rasterio.open(tmp_path / "out.tif") as ds:
        ground = ds.read()
    assert np.array_equal(integer_range(8).from_unit(x_hat[0].numpy(), "uint8"), ground)


def test_saved_context_flag_is_ignored_when_false_and_refused_when_true(tmp_path):
    """The shipped models were saved when the config still had ``context``: false loads (as it
    does for them), true is refused, in both the weights and the tables."""
    torch = pytest.importorskip("torch")
    from fool.shared.errors import ModelError
    from fool.shared.nn.codec import FoolCodec

    files = find("fool-m")
    state = torch.load(files.weights, weights_only=False)
    assert state["config"].get("context") is False and LatentCodec.load(files.tables).config["context"] is False
    assert "context" not in FoolCodec.load(files.weights).config.to_dict()
    torch.save(state | {"config": state["config"] | {"context": True}}, tmp_path / "ctx.pt")
    with pytest.raises(ModelError, match="checkerboard context"):
        FoolCodec.load(tmp_path / "ctx.pt")
    tables = dict(np.load(files.tables))
    meta = json.loads(bytes(tables["meta"]).decode())
    meta["config"]["context"] = True
    with pytest.raises(ModelError, match="checkerboard context"):
        LatentCodec.from_arrays(tables | {"meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)})
    with pytest.raises(ModelError, match="checkerboard context"):
        LatentCodec.from_arrays(tables | {"ctx_count": np.array(1)})


def test_released_weights_store_convolutions_in_float16(tmp_path):
    """Halved weight files keep several models within the 25 MB budget; GDN and entropy
    parameters stay float32, and the loaded model computes in float32."""
    torch = pytest.importorskip("torch")
    from fool.shared.nn.codec import FoolCodec
    from fool.shared.nn.release import release

    base = FoolCodec.load(find().weights)
    torch.save({"config": base.config.to_dict(), "model": base.state_dict()}, tmp_path / "ckpt.pt")
    release(tmp_path / "ckpt.pt", "half", tmp_path)
    state = torch.load(tmp_path / "half.pt", weights_only=False)["model"]
    assert state["g_a.0.weight"].dtype == state["g_s.3.weight"].dtype == torch.float16
    assert state["g_a.1.beta"].dtype == state["log_gain"].dtype == torch.float32
    model = FoolCodec.load(tmp_path / "half.pt")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        y = torch.round(base.analyse(x)[0])
        assert (base.synthesise(y) - model.synthesise(y)).abs().max() < 2 / 255


def test_fractional_qualities_sit_between_their_levels(codec):
    """Between two levels the gain moves linearly and so does gain x inverse gain; at the levels
    both are exactly the trained vectors. Interpolating the inverse gains instead inflated the
    decoded latents by 2-4 % and made quality 5.5 decode worse than quality 5."""
    for level in range(codec.levels):
        gain, inv = codec.gain_vectors((level + 1) * 256)
        assert np.array_equal(gain[:, 0, 0], codec.gains[level]) and np.array_equal(
            inv[:, 0, 0], codec.inv_gains[level]
        )
    for code in (1.25 * 256, 5.5 * 256, 7.75 * 256):
        lo, t = int(code // 256) - 1, (code % 256) / 256
        gain, inv = codec.gain_vectors(int(code))
        products = codec.gains * codec.inv_gains
        want = (1 - t) * products[lo] + t * products[lo + 1]
        assert np.allclose(gain[:, 0, 0] * inv[:, 0, 0], want, rtol=1e-12)
        assert np.allclose(gain[:, 0, 0], (1 - t) * codec.gains[lo] + t * codec.gains[lo + 1], rtol=0)


@pytest.mark.parametrize("high", [0, 1, 0x80, 0x1234, 0xABCDEF, 0x7FFFFFFF])
def test_trimmed_state_bytes_come_back_from_the_length(high):
    """The zero high bytes of the final rANS state are dropped and restored from the length alone."""
    from fool.shared.entropy import restore_state, trim_state

    stream = (0x80000001).to_bytes(4, "little") + high.to_bytes(4, "little") + bytes(range(1, 13))
    trimmed = trim_state(stream)
    assert len(trimmed) == len(stream) - min(3, (32 - high.bit_length()) // 8)
    assert restore_state(trimmed) == stream
    assert restore_state(stream) == stream  # a whole-word stream (container version 4) is untouched
