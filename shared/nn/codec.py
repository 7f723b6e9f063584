"""The FOOL codec: shallow onboard analysis, mean-scale hyperprior, variable rate by gain vectors.

Variable rate follows "Asymmetric Gained Deep Image Compression" (Cui et al. 2021): one model
is trained on ``L`` rate-distortion trade-offs at once; level ``l`` scales the latent by a
learned per-channel gain before quantisation and by a learned inverse gain after it.
A continuous quality ``q`` in ``[1, L]`` interpolates the gain linearly between adjacent
levels, and the inverse gain so that their product does too. We prefer this to compressai's
``MeanScaleHyperpriorVbr`` because the rate is set by a fixed table of numbers rather than by
a float MLP evaluated at run time: the ground
derives bit-identical quantisation steps from the quality byte in the container, on any
machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from fool.shared.errors import ModelError
from fool.shared.latent_codec import LatentCodec, file_sha256, quality_code
from fool.shared.nn.layers import analysis, hyper_analysis, hyper_synthesis, ste_round, synthesis
from torch import nn

#: Lambdas of the trained levels, for MSE on [0, 1] pixels scaled by 255**2 (compressai's scale).
DEFAULT_LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)


@dataclass(frozen=True)
class CodecConfig:
    """Everything needed to rebuild the network before loading weights."""

    channels: int = 3
    n_enc: int = 64
    n_dec: int = 96
    m: int = 128
    nz: int = 64
    dec_blocks: int = 0  # residual bottlenecks per synthesis stage (ground only; 0 = the v1 decoder)
    #: hidden channels of the hyper-analysis (None: ``n_enc``, as every model before the
    #: narrowed analyses); kept when ``fool train --enc-width`` narrows the analysis
    n_hyper: int | None = None
    #: (width, residual blocks) of the half-resolution synthesis stage when it is narrower than
    #: the others (a fast ground synthesis); None: ``n_dec`` and ``dec_blocks`` like the others
    last_stage: tuple[int, int] | None = None
    lambdas: tuple[float, ...] = field(default=DEFAULT_LAMBDAS)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CodecConfig:
        """The config saved with weights or a checkpoint. Older files carry ``context: false``
        (the checkerboard context FOOL no longer has), which is dropped; ``context: true`` is
        refused, since those weights code payloads this codec cannot read."""
        d = dict(d)
        if d.pop("context", False):
            raise ModelError(
                "these weights were trained with the checkerboard context, which FOOL no longer supports "
                "(docs/experiments.md); use a model without it"
            )
        d["lambdas"] = tuple(d["lambdas"])
        if d.get("last_stage") is not None:
            d["last_stage"] = tuple(d["last_stage"])
        return cls(**d)


def _scale_table(lo: float = 0.11, hi: float = 256.0, levels: int = 64) -> torch.Tensor:
    return torch.exp(torch.linspace(torch.log(torch.tensor(lo)), torch.log(torch.tensor(hi)), levels))


def deepen_state(state: dict[str, torch.Tensor], blocks: int) -> dict[str, torch.Tensor]:
    """Rename a plain decoder's weights (``g_s.0`` .. ``g_s.6``) to the staged layout that
    :func:`shared.nn.layers.synthesis` builds when ``blocks > 0``; new blocks keep their
    identity initialisation, so the deeper model starts exactly where the plain one was."""
    if blocks == 0:
        return state
    out = {}
    for key, value in state.items():
        if key.startswith("g_s."):
            _, idx, rest = key.split(".", 2)
            i = int(idx)
            key = f"g_s.3.{rest}" if i == 6 else f"g_s.{i // 2}.{i % 2}.{rest}"
        out[key] = value
    return out


class FoolCodec(nn.Module):
    """Contract as compressai's models: :meth:`forward` is the training path (noise-free
    rounding with a straight-through gradient, likelihoods for the rate); :meth:`compress` and
    :meth:`decompress` are the bitstream path, one container tile's rANS stream per image,
    coded with the numpy tables of :meth:`latent_codec`. Both are built from :meth:`analyse`,
    :meth:`hyper_params` and :meth:`synthesise`."""

    trained: dict[str, Any]  # set by :meth:`load` only: the checkpoint's step, train seconds and lineage

    def __init__(self, config: CodecConfig = CodecConfig()) -> None:
        super().__init__()
        self.config = config
        c = config
        self.g_a = analysis(c.channels, c.n_enc, c.m)
        self.h_a = hyper_analysis(c.m, c.n_hyper or c.n_enc, c.nz)
        self.h_s = hyper_synthesis(c.nz, c.n_dec, c.m)
        self.g_s = synthesis(c.channels, c.n_dec, c.m, c.dec_blocks, c.last_stage)
        levels = len(c.lambdas)
        init = torch.linspace(-1.5, 1.5, levels)[:, None].repeat(1, c.m)
        self.log_gain = nn.Parameter(init.clone())
        self.log_inv_gain = nn.Parameter(-init.clone())
        self.entropy_bottleneck = EntropyBottleneck(c.nz)
        self.gaussian_conditional = GaussianConditional(None)
        self.register_buffer("scale_table", _scale_table(), persistent=False)
        self.source: Path | None = None  # the weights file this model was loaded from
        self._latent_codec: LatentCodec | None = None

    @classmethod
    def load(cls, path) -> FoolCodec:
        """A model from a shipped weights file or a training checkpoint, in eval mode."""
        state = torch.load(path, map_location="cpu", weights_only=False)
        model = cls(CodecConfig.from_dict(state["config"]))
        model.load_state_dict(state["model"], strict=False)  # CDF tables live in the .npz
        model.trained = {
            "step": state.get("step"),
            "train_seconds": state.get("train_seconds"),
            "lineage": state.get("lineage", []),
        }
        model.source = Path(path)
        return model.eval()

    @classmethod
    def load_synthesis(cls, path, weights_sha256: str) -> FoolCodec:
        """A model whose ground synthesis is the variant in ``path`` (``fool release
        --synthesis``) made for the weights of hash ``weights_sha256`` (ModelError otherwise);
        only :meth:`synthesise` is meant to be used: the other parts are untrained, as the
        variant file carries the synthesis alone."""
        state = torch.load(path, map_location="cpu", weights_only=False)
        if "synthesis" not in state:
            raise ModelError(f"{path} is not a synthesis variant (no 'synthesis' weights)")
        if state.get("base", {}).get("weights_sha256") != weights_sha256:
            raise ModelError(f"{path} is a synthesis for other weights than {weights_sha256[:16]}")
        model = cls(CodecConfig.from_dict(state["config"]))
        model.g_s.load_state_dict({k: v.float() for k, v in state["synthesis"].items()})
        model.trained = {"step": state.get("step"), "train_seconds": state.get("train_seconds"), "lineage": []}
        model.source = Path(path)
        return model.eval()

    def latent_codec(self) -> LatentCodec:
        """The numpy half that :meth:`compress` and :meth:`decompress` code with, found once.

        For shipped weights (``<name>.pt`` beside its ``<name>.npz``) these are the released
        tables, the ones the container's onboard and ground sides use: the ``.pt`` stores
        convolutions in float16, so re-quantising its hyper-synthesis could give other integers.
        Otherwise (a checkpoint, a model built in memory) they are built from the current weights
        as ``fool release`` builds them, until :meth:`update` drops them.
        """
        if self._latent_codec is None:
            source = self.source
            tables = source.with_suffix(".npz") if source is not None else None
            if source is not None and tables is not None and tables.exists():
                codec = LatentCodec.load(tables)
                if codec.weights_sha256 != file_sha256(source):
                    raise ModelError(f"{tables} was released from other weights than {source}")
                self._latent_codec = codec
            else:
                from fool.shared.nn.release import unreleased_codec

                self._latent_codec = unreleased_codec(self)
        return self._latent_codec

    @property
    def levels(self) -> int:
        return len(self.config.lambdas)

    def gains(self, quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample gain and inverse gain, shape (B, M, 1, 1), for quality in [1, L]."""
        q = quality.to(torch.float32).clamp(1, self.levels) - 1
        lo = q.floor().long().clamp(max=self.levels - 2)
        t = (q - lo)[:, None]
        g = torch.exp(self.log_gain)
        ig = torch.exp(self.log_inv_gain)
        gain = (1 - t) * g[lo] + t * g[lo + 1]
        # the product gain x inverse gain, not the inverse gain, moves linearly between levels
        # (as in fool.shared.latent_codec.LatentCodec.gain_vectors)
        inv = ((1 - t) * g[lo] * ig[lo] + t * g[lo + 1] * ig[lo + 1]) / gain
        return gain[:, :, None, None], inv[:, :, None, None]

    def analyse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.g_a(x)
        z = self.h_a(y)
        return y, z

    def hyper_params(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scales and means of y *before* the gain, from the decoded hyper-latent."""
        scales, means = self.h_s(z_hat).float().chunk(2, 1)
        return scales, means

    def synthesise(self, y_hat: torch.Tensor) -> torch.Tensor:
        return self.g_s(y_hat)

    def forward(self, x: torch.Tensor, quality: torch.Tensor, autocast: bool = False) -> dict:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y, z = self.analyse(x)
        y, z = y.float(), z.float()
        z_hat, z_lik = self.entropy_bottleneck(z)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            scales, means = self.hyper_params(z_hat)
        gain, inv = self.gains(quality)
        yg, mg, sg = y * gain, means * gain, scales.abs() * gain
        _, y_lik = self.gaussian_conditional(yg, sg, means=mg)
        y_hat = (ste_round(yg - mg) + mg) * inv
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            x_hat = self.synthesise(y_hat)
        return {"x_hat": x_hat.float(), "likelihoods": {"y": y_lik, "z": z_lik}}

    @torch.no_grad()
    def compress(self, x: torch.Tensor, quality: float) -> dict:
        """Images (B, C, H, W) in [0, 1], H and W multiples of 64 -> ``{"strings": [bytes per
        image], "shape": latent (h, w)}``. Each string is the rANS stream a container tile of that
        image holds (one band group, every latent sent): :meth:`LatentCodec.encode_tile`."""
        codec = self.latent_codec()
        code = quality_code(quality, codec.levels)
        y_t, z_t = self.analyse(x.float())
        y, z = y_t.numpy(), z_t.numpy()
        strings = [codec.encode_tile([(y[i], z[i])], code) for i in range(y.shape[0])]
        return {"strings": strings, "shape": tuple(y.shape[2:])}

    @torch.no_grad()
    def decompress(self, strings: list[bytes], shape: tuple[int, int], quality: float) -> dict:
        """The inverse of :meth:`compress`: ``{"x_hat": (B, C, 16 h, 16 w) in [0, 1]}``, the
        synthesis of the latents :meth:`LatentCodec.decode_tile` reads, clamped as the ground
        decoder clamps them."""
        codec = self.latent_codec()
        code = quality_code(quality, codec.levels)
        y_hat = np.stack([codec.decode_tile(s, 1, (shape[0], shape[1]), code)[0] for s in strings])
        return {"x_hat": self.synthesise(torch.from_numpy(y_hat)).clamp_(0, 1)}

    def aux_loss(self) -> torch.Tensor:
        return self.entropy_bottleneck.loss()

    def update(self, force: bool = True) -> None:
        """Build the CDF tables used by the rANS coder (ship them; never rebuild on the ground).
        Drops tables :meth:`latent_codec` built from the weights, so the next ones follow them."""
        if self._latent_codec is not None and not self._latent_codec.weights_sha256:
            self._latent_codec = None
        self.gaussian_conditional.update_scale_table(self.scale_table, force=force)
        self.entropy_bottleneck.update(force=force)
