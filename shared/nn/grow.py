"""Growing a trained codec instead of training a bigger one from scratch.

Training is the scarcest thing we have (hours of CPU), so a model that needs more capacity
inherits everything its smaller predecessor learned. Each grow step starts the bigger
network at (or within noise of) the smaller one's rate-distortion point.
"""

from __future__ import annotations

from typing import TypeVar, cast

import torch
from compressai.layers import GDN
from fool.shared.errors import ModelError
from fool.shared.nn.codec import FoolCodec
from fool.shared.nn.layers import conv_bias
from torch import nn

M = TypeVar("M", bound=nn.Module)


def _first(module: nn.Module, kind: type[M]) -> M:
    return next(m for m in module.modules() if isinstance(m, kind))


def _last(module: nn.Module, kind: type[M]) -> M:
    return [m for m in module.modules() if isinstance(m, kind)][-1]


def _rms(t: torch.Tensor) -> torch.Tensor:
    return t.float().pow(2).mean().sqrt()


@torch.no_grad()
def widen_latent(model: FoolCodec, trained: FoolCodec, x: torch.Tensor, seed: int = 0) -> None:
    """Load ``trained`` into ``model``, whose latent ``y`` has more channels.

    High rates are capped by the on-board transform (session 4: with unquantised latents the
    M=128 model decodes only 0.47 dB above its q8 point), and the latent width is the part
    of it that is cheapest to grow on board (only the last, 1/16-resolution layer widens). New
    channels get fresh analysis filters at the trained filters' scale and the trained
    channels' mean gains; the hyper-analysis ignores them (zero weights, so ``z`` and its bits
    are unchanged); the hyper-synthesis predicts their mean and spread as measured on ``x``
    (a batch of training crops); the synthesis reads them through zero weights, so the image
    is unchanged. The new channels do cost bits from the first step, and rate pressure
    kills them (they round to their predicted mean and carry nothing) before the synthesis
    learns to use them: session 5 lost a 5,000-step run that way. So training must keep
    their rate out of the loss at first (``rate_weights``, ``fool train --latent-ramp``).
    """
    old, new = trained.config.m, model.config.m
    if new < old:
        raise ModelError(f"the latent can only grow: {old} -> {new} channels")
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
    conv_bias(new_a)[:old] = conv_bias(out_a)
    conv_bias(new_a)[old:] = 0

    in_ha, new_ha = _first(trained.h_a, nn.Conv2d), _first(model.h_a, nn.Conv2d)
    new_ha.weight.zero_()
    new_ha.weight[:, :old] = in_ha.weight

    in_gs, new_gs = _first(trained.g_s, nn.ConvTranspose2d), _first(model.g_s, nn.ConvTranspose2d)
    new_gs.weight[:old] = in_gs.weight
    new_gs.weight[old:] = 0

    for name in ("log_gain", "log_inv_gain"):
        t = getattr(trained, name)
        getattr(model, name)[:, :old] = t
        getattr(model, name)[:, old:] = t.mean(1, keepdim=True)

    y = model.g_a(x)[:, old:].float()
    spread = y.std(dim=(0, 2, 3))
    centre = y.mean(dim=(0, 2, 3))
    out_hs, new_hs = _last(trained.h_s, nn.Conv2d), _last(model.h_s, nn.Conv2d)
    new_hs.weight.zero_()
    new_hs.weight[:old] = out_hs.weight[:old]  # scales
    new_hs.weight[new : new + old] = out_hs.weight[old:]  # means
    bias, out_bias = conv_bias(new_hs), conv_bias(out_hs)
    bias[:old] = out_bias[:old]
    bias[old:new] = spread
    bias[new : new + old] = out_bias[old:]
    bias[new + old :] = centre


def rate_weights(m: int, channels_from: int, step: int, ramp_steps: int) -> torch.Tensor:
    """Weight of each latent channel's bits in the training loss, shape (M,): 1 for trained
    channels; for channels grown at ``channels_from``, 0 at first, rising linearly to 1 over
    ``ramp_steps`` steps, so the synthesis learns to use them before they have to pay."""
    w = torch.ones(m)
    if channels_from < m:
        w[channels_from:] = min(1.0, step / ramp_steps) if ramp_steps > 0 else 1.0
    return w


@torch.no_grad()
def narrow_analysis(model: FoolCodec, trained: FoolCodec, x: torch.Tensor) -> None:
    """Load ``trained`` into ``model``, whose analysis has fewer hidden channels (``n_enc``).

    The onboard analysis is most of the encoder's arithmetic, and its cost grows with the
    square of its width (64 -> 48 channels: about 45 % fewer multiply-adds per pixel). Each
    hidden stage keeps the channels that carry the most signal forward, scored on ``x`` (a
    batch of training crops) as the channel's RMS after its GDN times the norm of the next
    convolution's weights reading it; everything else (latent layer, hyper-networks,
    synthesis, entropy models, gains) is copied whole, so the ground decoder is unchanged.
    Fine-tuning with ``fool train --train-only encoder`` then recovers the dropped channels'
    work.
    """
    old, new = trained.config.n_enc, model.config.n_enc
    if new > old:
        raise ModelError(f"the analysis can only narrow: {old} -> {new} channels")
    if (model.config.n_hyper or new) != (trained.config.n_hyper or old):
        raise ModelError("narrowing the analysis keeps the hyper-analysis's width (set n_hyper)")
    src = trained.state_dict()
    dst = model.state_dict()
    for key, value in dst.items():
        if key in src and src[key].shape == value.shape:  # all but the narrowed tensors
            value.copy_(src[key])
    layers = list(trained.g_a)
    convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
    keep: torch.Tensor | None = None  # input channels kept by the previous stage
    h = x
    for stage, i in enumerate(convs):
        w, b = src[f"g_a.{i}.weight"], src[f"g_a.{i}.bias"]
        if keep is not None:
            w = w[:, keep]
        h = layers[i](h)
        if stage == len(convs) - 1:  # the latent layer: every output channel stays
            dst[f"g_a.{i}.weight"].copy_(w)
            dst[f"g_a.{i}.bias"].copy_(b)
            break
        energy = h.float().pow(2).mean(dim=(0, 2, 3))  # E[h_j**2] before the GDN
        gdn_in, gdn_out = cast(GDN, layers[i + 1]), cast(GDN, list(model.g_a)[i + 1])
        h = gdn_in(h)
        reader = src[f"g_a.{convs[stage + 1]}.weight"]
        score = h.float().pow(2).mean(dim=(0, 2, 3)).sqrt() * reader.float().pow(2).sum(dim=(0, 2, 3)).sqrt()
        idx = torch.sort(torch.argsort(score, descending=True)[:new]).values
        dropped = torch.ones(old, dtype=torch.bool)
        dropped[idx] = False
        dst[f"g_a.{i}.weight"].copy_(w[idx])
        dst[f"g_a.{i}.bias"].copy_(b[idx])
        # GDN divides each channel by sqrt(beta_i + sum_j gamma_ij h_j**2): the dropped channels'
        # share of that sum goes into beta at its mean, so the kept channels keep their scale
        beta = gdn_in.beta_reparam(gdn_in.beta)
        gamma = gdn_in.gamma_reparam(gdn_in.gamma)
        beta = beta + gamma[:, dropped].float() @ energy[dropped]
        gdn = f"g_a.{i + 1}"
        dst[f"{gdn}.beta"].copy_(gdn_out.beta_reparam.init(beta[idx]))
        dst[f"{gdn}.gamma"].copy_(gdn_out.gamma_reparam.init(gamma[idx][:, idx]))
        keep = idx
    model.load_state_dict(dst)
