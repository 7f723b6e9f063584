"""Turn a training checkpoint into a shipped model: weights file + numpy tables."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import cast

import numpy as np
import torch
from fool.shared import intnet
from fool.shared.latent_codec import LatentCodec, file_sha256
from fool.shared.nn.codec import FoolCodec
from fool.shared.nn.layers import SubpixelUp, conv_bias


def quantise_hyper_synthesis(model: FoolCodec) -> list[intnet.IntConv]:
    layers, mods = [], list(model.h_s)
    for i, mod in enumerate(mods):
        relu = i + 1 < len(mods) and isinstance(mods[i + 1], torch.nn.ReLU)
        conv: torch.nn.Conv2d
        if isinstance(mod, SubpixelUp):  # built as (Conv2d, PixelShuffle)
            conv, shuffle = cast(torch.nn.Conv2d, mod[0]), cast(torch.nn.PixelShuffle, mod[1]).upscale_factor
        elif isinstance(mod, torch.nn.Conv2d):
            conv, shuffle = mod, 1
        else:
            continue
        bias = conv_bias(conv).detach().numpy()
        layers.append(intnet.quantise_conv(conv.weight.detach().numpy(), bias, relu, shuffle))
    return layers


def _stored(key: str, value: torch.Tensor) -> torch.Tensor:
    """Convolution weights are stored in float16, which halves the file so that several models
    fit the 25 MB budget of ``models/`` (they train under bf16 autocast, which is coarser, and
    load back into float32 parameters). GDN, gains and entropy parameters stay float32: GDN's
    re-parametrisation pedestal (2**-36) is below float16's range."""
    conv = key.startswith(("g_a.", "h_a.", "h_s.", "g_s.")) and key.endswith((".weight", ".bias"))
    return value.half() if conv and value.dtype == torch.float32 else value


def table_arrays(model: FoolCodec, meta: dict) -> dict[str, np.ndarray]:
    """The arrays of a ``<name>.npz``: entropy tables, gains and the integer hyper-synthesis of
    ``model``, whose CDFs :meth:`FoolCodec.update` has built, plus ``meta`` as JSON."""
    eb, gc = model.entropy_bottleneck, model.gaussian_conditional
    return {
        "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
        "z_cdf": eb._quantized_cdf.numpy().astype(np.int32),
        "z_len": eb._cdf_length.numpy().astype(np.int32),
        "z_off": eb._offset.numpy().astype(np.int32),
        "z_medians": eb._get_medians().detach().reshape(-1).numpy().astype(np.float32),
        "y_cdf": gc._quantized_cdf.numpy().astype(np.int32),
        "y_len": gc._cdf_length.numpy().astype(np.int32),
        "y_off": gc._offset.numpy().astype(np.int32),
        "scale_table": gc.scale_table.numpy().astype(np.float64),
        "gains": torch.exp(model.log_gain.detach()).double().numpy(),
        "inv_gains": torch.exp(model.log_inv_gain.detach()).double().numpy(),
    } | intnet.pack(quantise_hyper_synthesis(model))


def unreleased_codec(model: FoolCodec) -> LatentCodec:
    """The numpy half of a model that has no ``.npz`` (a training checkpoint, a model in memory),
    built from its current weights as :func:`release` would build it. It is named
    ``unreleased`` and has no weights hash: no file pins these weights."""
    model.update(force=True)
    meta = {"name": "unreleased", "weights_sha256": "", "config": model.config.to_dict()}
    return LatentCodec.from_arrays(table_arrays(model, meta), "an unreleased model")


def release(checkpoint: Path, name: str, out_dir: Path, extra_meta: dict | None = None) -> LatentCodec:
    """Write ``<name>.pt`` (weights) and ``<name>.npz`` (tables) into ``out_dir``."""
    model = FoolCodec.load(checkpoint)
    model.update(force=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{name}.pt"
    # CDF tables go to the .npz (the one source both sides read), not into the weights
    tables = ("._offset", "._quantized_cdf", "._cdf_length", ".scale_table")
    state = {k: _stored(k, v) for k, v in model.state_dict().items() if not k.endswith(tables)}
    torch.save({"config": model.config.to_dict(), "model": state}, weights)
    meta = {"name": name, "weights_sha256": file_sha256(weights), "config": model.config.to_dict()}
    meta |= getattr(model, "trained", {}) | (extra_meta or {})
    meta["parameters"] = {
        "onboard": sum(p.numel() for m in (model.g_a, model.h_a) for p in m.parameters()),
        "total": sum(p.numel() for p in model.parameters()),
    }
    tmp = out_dir / f".{name}.npz.tmp.npz"
    np.savez_compressed(tmp, **table_arrays(model, meta))
    os.replace(tmp, out_dir / f"{name}.npz")
    return LatentCodec.load(out_dir / f"{name}.npz")


def release_synthesis(checkpoint: Path, base: Path, variant: str, out_dir: Path) -> Path:
    """Write ``<base name>.<variant>.pt``: the synthesis of ``checkpoint`` as another ground
    decoder for ``base``'s containers. Refused unless every other weight of the checkpoint is
    ``base``'s as shipped, i.e. it codes the same bytes (``fool train --train-only synthesis``)."""
    from fool.shared.errors import ModelError

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    shipped = torch.load(base, map_location="cpu", weights_only=False)
    model = state["model"]
    moved = [
        k
        for k, v in shipped["model"].items()
        if not k.startswith("g_s.") and (k not in model or not torch.equal(_stored(k, model[k]), v))
    ]
    if moved:
        raise ModelError(f"{checkpoint} codes other bytes than {base}: {len(moved)} weights differ ({moved[0]}, ...)")
    synthesis = {k[len("g_s.") :]: _stored(k, v) for k, v in model.items() if k.startswith("g_s.")}
    out = out_dir / f"{base.stem}.{variant}.pt"
    tmp = out.with_name(f".{out.name}.tmp")
    torch.save(
        {
            "config": state["config"],
            "synthesis": synthesis,
            "base": {"name": base.stem, "weights_sha256": file_sha256(base)},
            "step": state.get("step"),
            "train_seconds": state.get("train_seconds"),
        },
        tmp,
    )
    os.replace(tmp, out)
    return out
