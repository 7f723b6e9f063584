"""Invariants of the numpy codec half: exact entropy coding, exact integer hyper-synthesis,
and agreement between the training forward pass and what compress/decompress send."""

import numpy as np
import pytest
from fool.shared import intnet
from fool.shared.errors import ContainerError
from fool.shared.latent_codec import LatentCodec, quality_code
from fool.shared.zoo import find


@pytest.fixture(scope="module")
def codec() -> LatentCodec:
    return LatentCodec.load(find().tables)


def test_rans_loads_without_torch():
    import subprocess
    import sys

    code = "import sys; from fool.shared.entropy import rans; rans(); assert 'torch' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_latent_round_trip_is_exact(codec):
    rng = np.random.default_rng(1)
    m, nz = codec.gains.shape[1], codec.z_medians.shape[0]
    y = rng.normal(0, 3, (m, 8, 12)).astype(np.float32)
    z = rng.normal(0, 2, (nz, 2, 3)).astype(np.float32)
    code = quality_code(3.5, codec.levels)
    payload = codec.encode(y, z, code)
    y_hat = codec.decode(payload, (8, 12), code)
    # y_hat is y quantised with step 1/gain around the predicted mean: error at most half a step
    gain, inv = codec.gain_vectors(code)
    assert np.all(np.abs(y * gain - y_hat / inv) <= 0.5 + 1e-3)  # within half a quantisation step
    assert codec.decode(payload, (8, 12), code).tobytes() == y_hat.tobytes()


@pytest.mark.parametrize("use_context", [False, True])
def test_unsent_latents_cost_nothing_and_decode_to_their_means(codec, context_model, use_context):
    """Latents outside ``coded`` (alignment padding, nodata) are not in the payload."""
    c = context_model[1] if use_context else codec
    rng = np.random.default_rng(8)
    y = rng.normal(0, 3, (c.gains.shape[1], 8, 12)).astype(np.float32)
    z = rng.normal(0, 2, (c.z_medians.shape[0], 2, 3)).astype(np.float32)
    code = quality_code(6.0, c.levels)
    coded = np.zeros((8, 12), bool)
    coded[:5, :9] = True
    coded[2, 3] = False  # an irregular (nodata) hole too
    payload = c.encode(y, z, code, coded)
    assert len(payload) < 0.8 * len(c.encode(y, z, code))
    y_sym, means_g, inv = c.decode_symbols(payload, (8, 12), code, coded)
    assert np.array_equal(y_sym, c.quantise(y, z, code, coded)[1])
    assert not y_sym[:, ~coded].any() and y_sym[:, coded].any()
    y_hat = c.decode(payload, (8, 12), code, coded)
    gain, _ = c.gain_vectors(code)
    assert np.all(np.abs(y * gain - y_hat / inv)[:, coded] <= 0.5 + 1e-3)
    with pytest.raises(ContainerError, match="mask"):
        c.decode(payload, (8, 12), code, coded[:4])


@pytest.mark.parametrize("use_context", [False, True])
def test_one_stream_per_tile_decodes_the_same_symbols_in_fewer_bytes(codec, context_model, use_context):
    """Version 3 codes every band group of a tile in one rANS stream: same symbols, no length
    fields, one state flush."""
    c = context_model[1] if use_context else codec
    rng = np.random.default_rng(9)
    groups = [
        (
            rng.normal(0, 3, (c.gains.shape[1], 8, 12)).astype(np.float32),
            rng.normal(0, 2, (c.z_medians.shape[0], 2, 3)).astype(np.float32),
        )
        for _ in range(2)
    ]
    code = quality_code(2.0, c.levels)
    coded = np.ones((8, 12), bool)
    coded[6:, :] = False
    stream = c.encode_tile(groups, code, coded)
    assert len(stream) + 8 * len(groups) < sum(len(c.encode(y, z, code, coded)) for y, z in groups)
    decoded = c.decode_tile_symbols(stream, 2, (8, 12), code, coded)
    for (y, z), (y_sym, _, _) in zip(groups, decoded, strict=True):
        assert np.array_equal(y_sym, c.quantise(y, z, code, coded)[1])
    y_hat = c.decode_tile(stream, 2, (8, 12), code, coded)
    assert [a.tobytes() for a in y_hat] == [
        c.decode(c.encode(y, z, code, coded), (8, 12), code, coded).tobytes() for y, z in groups
    ]
    with pytest.raises(ContainerError, match="too short"):
        c.decode_tile(stream[:5], 2, (8, 12), code, coded)


@pytest.mark.parametrize("use_context", [False, True])
def test_garbage_tile_streams_never_crash(codec, context_model, use_context):
    c = context_model[1] if use_context else codec
    rng = np.random.default_rng(10)
    for _ in range(20):
        junk = rng.integers(0, 256, rng.integers(8, 400)).astype(np.uint8).tobytes()
        try:
            out = c.decode_tile(junk, 2, (8, 8), 1024)
            assert [a.shape for a in out] == [(c.gains.shape[1], 8, 8)] * 2
        except ContainerError:
            pass


def test_quality_changes_rate(codec):
    rng = np.random.default_rng(2)
    y = rng.normal(0, 3, (codec.gains.shape[1], 16, 16)).astype(np.float32)
    z = rng.normal(0, 2, (codec.z_medians.shape[0], 4, 4)).astype(np.float32)
    sizes = [len(codec.encode(y, z, quality_code(q, codec.levels))) for q in (1, 4, 8)]
    assert sizes[0] < sizes[1] < sizes[2]


def test_quality_range_is_checked(codec):
    with pytest.raises(ValueError):
        quality_code(0.5, codec.levels)
    with pytest.raises(ValueError):
        quality_code(codec.levels + 0.1, codec.levels)


@pytest.mark.parametrize("damage", ["truncate", "short", "zlen"])
def test_damaged_payload_raises_cleanly(codec, damage):
    rng = np.random.default_rng(3)
    y = rng.normal(0, 3, (codec.gains.shape[1], 8, 8)).astype(np.float32)
    z = rng.normal(0, 2, (codec.z_medians.shape[0], 2, 2)).astype(np.float32)
    payload = codec.encode(y, z, 1024)
    bad = {"truncate": payload[:2], "short": payload[:9], "zlen": b"\xff\xff\xff\x7f" + payload[4:]}[damage]
    with pytest.raises(ContainerError):
        codec.decode(bad, (8, 8), 1024)


def test_garbage_bytes_never_crash(codec):
    _decode_garbage(codec)


def _decode_garbage(codec: LatentCodec) -> None:
    rng = np.random.default_rng(4)
    for _ in range(20):
        junk = rng.integers(0, 256, rng.integers(12, 400)).astype(np.uint8).tobytes()
        # plausible stream lengths, so the junk reaches the rANS decoders (both halves with a context)
        junk = (8).to_bytes(4, "little") + junk[:8] + (len(junk) // 3).to_bytes(4, "little") + junk[8:]
        try:
            out = codec.decode(junk, (8, 8), 1024)
            assert out.shape == (codec.gains.shape[1], 8, 8)
        except ContainerError:
            pass


def test_integer_hyper_synthesis_is_exact_under_threads_and_layout(codec):
    """Same integers whatever the BLAS blocking: batch vs single, shuffled batch order."""
    rng = np.random.default_rng(5)
    z = (np.rint(rng.normal(0, 3, (3, codec.z_medians.shape[0], 4, 5))) + codec.z_medians[:, None, None]).astype(
        np.float32
    )
    s_all, m_all = intnet.hyper_params(z, codec.hyper)
    for i in range(3):
        s_i, m_i = intnet.hyper_params(z[i : i + 1], codec.hyper)
        assert s_i.tobytes() == s_all[i : i + 1].tobytes() and m_i.tobytes() == m_all[i : i + 1].tobytes()
    # every value is an integer multiple of a power of two: fixed point, not float noise
    assert np.all(np.isfinite(s_all))


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


def _assert_forward_matches_compress_path(model, codec: LatentCodec, quality: float) -> None:
    """The training forward pass and the bitstream path reconstruct the same latents."""
    import torch

    x = torch.rand(1, 3, 128, 128)
    code = quality_code(quality, codec.levels)
    with torch.no_grad():
        y, z = model.analyse(x)
        y_hat = codec.decode(codec.encode(y[0].numpy(), z[0].numpy(), code), y.shape[2:], code)
        med = model.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)
        scales, means = model.hyper_params(torch.round(z - med) + med)
        gain, inv = model.gains(torch.tensor([quality]))
        yg, mg = y * gain, means * gain
        if model.context is not None:  # float context in training, integer one in the bitstream
            _, mg = model.context_params(yg, scales.abs() * gain, mg)
        y_ref = (torch.round(yg - mg) + mg) * inv
    diff = np.abs(y_hat - y_ref[0].numpy()) / inv[0].numpy()  # in quantisation steps
    # identical up to the fixed-point error of the mean, except where that error moves a
    # value across a rounding boundary (a whole step)
    assert np.median(diff) < 0.01
    assert (diff > 0.5).mean() < 0.01


def test_forward_matches_compress_path():
    pytest.importorskip("torch")
    from fool.shared.nn.codec import FoolCodec

    files = find()
    _assert_forward_matches_compress_path(FoolCodec.load(files.weights), LatentCodec.load(files.tables), 4.0)


@pytest.fixture(scope="module")
def context_model(tmp_path_factory):
    """The shipped model with a (random, small) checkerboard context, released like a trained one."""
    torch = pytest.importorskip("torch")
    import dataclasses

    from fool.shared.nn.codec import FoolCodec
    from fool.shared.nn.release import release

    base = FoolCodec.load(find().weights)
    model = FoolCodec(dataclasses.replace(base.config, context=True))
    model.load_state_dict(base.state_dict(), strict=False)
    torch.manual_seed(0)
    with torch.no_grad():
        model.context.weight.normal_(0, 0.01)
    out = tmp_path_factory.mktemp("ctx")
    torch.save({"config": model.config.to_dict(), "model": model.state_dict()}, out / "ckpt.pt")
    codec = release(out / "ckpt.pt", "ctx-test", out)
    return FoolCodec.load(out / "ctx-test.pt").eval(), codec


def test_context_round_trip_is_exact_and_uses_the_context(context_model):
    import dataclasses

    _, ctx = context_model
    plain = dataclasses.replace(ctx, context=None)
    assert ctx.context is not None
    rng = np.random.default_rng(6)
    y = rng.normal(0, 3, (ctx.gains.shape[1], 8, 12)).astype(np.float32)
    z = rng.normal(0, 2, (ctx.z_medians.shape[0], 2, 3)).astype(np.float32)
    code = quality_code(5.0, ctx.levels)
    payload = ctx.encode(y, z, code)
    z_sym, y_sym, _ = ctx.quantise(y, z, code)
    assert np.array_equal(ctx.decode_symbols(payload, (8, 12), code)[0], y_sym)
    gain, inv = ctx.gain_vectors(code)
    y_hat = ctx.decode(payload, (8, 12), code)
    assert np.all(np.abs(y * gain - y_hat / inv) <= 0.5 + 1e-3)
    # the second half is quantised around context-corrected means, unlike the plain model
    assert not np.array_equal(y_hat, plain.decode(plain.encode(y, z, code), (8, 12), code))


def test_context_payload_damage_is_a_container_error_or_decodes(context_model):
    _, ctx = context_model
    rng = np.random.default_rng(7)
    y = rng.normal(0, 3, (ctx.gains.shape[1], 8, 8)).astype(np.float32)
    z = rng.normal(0, 2, (ctx.z_medians.shape[0], 2, 2)).astype(np.float32)
    payload = ctx.encode(y, z, 1024)
    for cut in (3, 10):
        with pytest.raises(ContainerError):
            ctx.decode(payload[:cut], (8, 8), 1024)
    # a tail cut inside the last stream decodes to garbage of the right shape (the tile CRC catches it)
    assert ctx.decode(payload[:-5], (8, 8), 1024).shape == (ctx.gains.shape[1], 8, 8)
    (z_len,) = np.frombuffer(payload[:4], "<u4")
    liar = payload[: 4 + z_len] + b"\xff\xff\xff\x7f" + payload[8 + z_len :]
    with pytest.raises(ContainerError, match="anchor"):
        ctx.decode(liar, (8, 8), 1024)


def test_context_garbage_bytes_never_crash(context_model):
    _decode_garbage(context_model[1])


def test_context_forward_matches_compress_path(context_model):
    _assert_forward_matches_compress_path(*context_model, 6.0)


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
