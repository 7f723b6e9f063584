"""Growing a trained codec instead of training a bigger one from scratch.

Training is the scarcest thing we have (hours of CPU), so a model that needs more capacity
inherits everything its smaller predecessor learned. Each grow step starts the bigger
network at (or within noise of) the smaller one's rate-distortion point.
"""

from __future__ import annotations

import torch
from torch import nn

from shared.errors import ModelError
from shared.nn.codec import FoolCodec

#: Initial size of the new channels' synthesis weights, relative to the trained ones: small
#: enough to leave the decoded image almost unchanged, large enough that the new latents get
#: a distortion gradient from the first step (with zeros, rate pressure would kill them first).
NEW_SYNTHESIS_SCALE = 0.05


#: New latents start quantised coarser than the trained ones (gain e^-1.5, inverse gain to
#: match), so the widened model starts about 10 % above the trained model's rate, not 50 %.
NEW_LOG_GAIN = -1.5


def _first(module: nn.Module, kind: type) -> nn.Module:
    return next(m for m in module.modules() if isinstance(m, kind))


def _last(module: nn.Module, kind: type) -> nn.Module:
    return [m for m in module.modules() if isinstance(m, kind)][-1]


def _rms(t: torch.Tensor) -> torch.Tensor:
    return t.float().pow(2).mean().sqrt()


@torch.no_grad()
def widen_latent(model: FoolCodec, trained: FoolCodec, x: torch.Tensor, seed: int = 0) -> None:
    """Load ``trained`` into ``model``, whose latent ``y`` has more channels.

    The transforms' ceiling at high rates is set by the latent width (session 4: with
    unquantised latents the M=128 model decodes only 0.47 dB above its q8 point). New
    channels get fresh analysis filters at the trained filters' scale; the hyper-analysis
    ignores them (zero weights, so ``z`` and its bits are unchanged); the hyper-synthesis
    predicts their mean and spread as measured on ``x`` (a batch of training crops), so
    they start at a fair rate; and the synthesis reads them through small random weights.
    Their per-level gains start at the mean of the trained channels', times e^-1.5.
    """
    old, new = trained.config.m, model.config.m
    if new < old:
        raise ModelError(f"the latent can only grow: {old} -> {new} channels")
    if trained.config.context or model.config.context:
        raise ModelError("widening the latent of a model with the checkerboard context is not supported")
    gen = torch.Generator().manual_seed(seed)
    src = trained.state_dict()
    dst = model.state_dict()
    for key, value in dst.items():
        if key in src and src[key].shape == value.shape:
            value.copy_(src[key])
    missing = [k for k in dst if k not in src and not k.endswith(("_cdf", "_offset", "_length"))]
    if missing:
        raise ModelError(f"cannot widen: the trained model lacks {missing[:3]}")

    out_a = _last(trained.g_a, nn.Conv2d)
    new_a = _last(model.g_a, nn.Conv2d)
    fresh = torch.randn(new - old, *out_a.weight.shape[1:], generator=gen)
    new_a.weight[:old] = out_a.weight
    new_a.weight[old:] = fresh * _rms(out_a.weight) / _rms(fresh)
    new_a.bias[:old] = out_a.bias
    new_a.bias[old:] = 0

    in_ha, new_ha = _first(trained.h_a, nn.Conv2d), _first(model.h_a, nn.Conv2d)
    new_ha.weight.zero_()
    new_ha.weight[:, :old] = in_ha.weight

    in_gs, new_gs = _first(trained.g_s, nn.ConvTranspose2d), _first(model.g_s, nn.ConvTranspose2d)
    noise = torch.randn(new - old, *in_gs.weight.shape[1:], generator=gen)
    new_gs.weight[:old] = in_gs.weight
    new_gs.weight[old:] = noise * NEW_SYNTHESIS_SCALE * _rms(in_gs.weight) / _rms(noise)

    for name in ("log_gain", "log_inv_gain"):
        t = getattr(trained, name)
        getattr(model, name)[:, :old] = t
        sign = 1 if name == "log_gain" else -1
        getattr(model, name)[:, old:] = t.mean(1, keepdim=True) + sign * NEW_LOG_GAIN

    y = model.g_a(x)[:, old:].float()
    spread = y.std(dim=(0, 2, 3))
    centre = y.mean(dim=(0, 2, 3))
    out_hs, new_hs = _last(trained.h_s, nn.Conv2d), _last(model.h_s, nn.Conv2d)
    new_hs.weight.zero_()
    new_hs.weight[:old] = out_hs.weight[:old]  # scales
    new_hs.weight[new : new + old] = out_hs.weight[old:]  # means
    new_hs.bias[:old] = out_hs.bias[:old]
    new_hs.bias[old:new] = spread
    new_hs.bias[new : new + old] = out_hs.bias[old:]
    new_hs.bias[new + old :] = centre
