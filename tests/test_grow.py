"""Widening the latent of a trained model: the old channels keep their function and their
bits, the new ones start unread and unpaid, and the widened model releases and codes like any other."""

import dataclasses

import pytest
from fool.shared.errors import ModelError
from fool.shared.latent_codec import LatentCodec
from fool.shared.zoo import find

from tests.test_codec import _assert_forward_matches_compress_path

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def pair():
    from fool.shared.nn.codec import FoolCodec
    from fool.shared.nn.grow import widen_latent

    base = FoolCodec.load(find().weights)
    wide = FoolCodec(dataclasses.replace(base.config, m=base.config.m + 32))
    torch.manual_seed(0)
    widen_latent(wide, base, torch.rand(4, 3, 64, 64))
    return base, wide.eval()


def test_widened_model_keeps_the_trained_channels(pair):
    base, wide = pair
    old = base.config.m
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        y, z = base.analyse(x)
        y2, z2 = wide.analyse(x)
        assert torch.equal(y2[:, :old], y) and y2[:, old:].abs().max() > 0  # new filters are not dead
        assert torch.allclose(z2, z, atol=1e-5)  # the hyper-latent ignores the new channels
        s, m = base.hyper_params(torch.round(z))
        s2, m2 = wide.hyper_params(torch.round(z))
        assert torch.allclose(s2[:, :old], s, atol=1e-5) and torch.allclose(m2[:, :old], m, atol=1e-5)
        assert (s2[:, old:].abs() > 0).all()  # the new channels get a spread, so their rate is finite
        # the synthesis ignores the new channels until training teaches it to read them
        assert torch.allclose(wide.synthesise(torch.round(y2)), base.synthesise(torch.round(y)), atol=1e-5)
    assert torch.allclose(wide.log_gain[:, old:], base.log_gain.mean(1, keepdim=True).expand(-1, 32))


def test_new_channels_ride_free_then_pay():
    from fool.shared.nn.grow import rate_weights

    assert rate_weights(8, 8, 0, 100).tolist() == [1.0] * 8
    assert rate_weights(8, 6, 0, 100).tolist() == [1.0] * 6 + [0.0] * 2
    assert rate_weights(8, 6, 50, 100)[6:].tolist() == [0.5, 0.5]
    assert rate_weights(8, 6, 500, 100).tolist() == [1.0] * 8


def test_widened_model_releases_and_codes_exactly(pair, tmp_path):
    from fool.shared.nn.codec import FoolCodec
    from fool.shared.nn.release import release

    _, wide = pair
    torch.save({"config": wide.config.to_dict(), "model": wide.state_dict()}, tmp_path / "ckpt.pt")
    codec = release(tmp_path / "ckpt.pt", "wide", tmp_path)
    assert isinstance(codec, LatentCodec) and codec.gains.shape[1] == wide.config.m
    released = FoolCodec.load(tmp_path / "wide.pt")
    assert released.latent_codec().weights_sha256 == codec.weights_sha256  # codes with the released tables
    _assert_forward_matches_compress_path(released, 7.0)


def test_latent_only_grows(pair):
    from fool.shared.nn.codec import FoolCodec
    from fool.shared.nn.grow import widen_latent

    base, wide = pair
    with pytest.raises(ModelError, match="only grow"):
        widen_latent(FoolCodec(base.config), wide, torch.rand(1, 3, 64, 64))
