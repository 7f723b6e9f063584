"""Building blocks of the FOOL transforms."""

from __future__ import annotations

import torch
from compressai.layers import GDN
from torch import nn


def conv(in_ch: int, out_ch: int, kernel_size: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2)


def deconv(in_ch: int, out_ch: int, kernel_size: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(
        in_ch, out_ch, kernel_size, stride=stride, output_padding=stride - 1, padding=kernel_size // 2
    )


def conv_bias(layer: nn.Conv2d | nn.ConvTranspose2d) -> torch.Tensor:
    """The bias of a convolution (every one FOOL builds has one; torch types it optional)."""
    if layer.bias is None:
        raise ValueError(f"{layer} has no bias")
    return layer.bias


class SubpixelUp(nn.Sequential):
    """3x3 conv + pixel shuffle: upsampling made only of ops an integer network can do exactly.

    The hyper-synthesis must be reproducible bit for bit on any machine (see
    ``shared/intnet.py``), so it avoids transposed convolutions and leaky slopes.
    """

    def __init__(self, in_ch: int, out_ch: int, factor: int = 2) -> None:
        super().__init__(nn.Conv2d(in_ch, out_ch * factor * factor, 3, padding=1), nn.PixelShuffle(factor))


def analysis(in_ch: int, n: int, m: int) -> nn.Sequential:
    """Onboard encoder: four stride-2 convolutions with GDN, 16x downsampling."""
    return nn.Sequential(conv(in_ch, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m))


class ResidualBottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 residual block at half width (ELIC's ResidualBottleneckBlock).

    It deepens the ground synthesis for a sixth of the cost of a 5x5 deconvolution. The last
    convolution starts at zero, so a block added to a trained decoder starts as the identity:
    a model can grow deeper without losing what it has learned.
    """

    def __init__(self, n: int) -> None:
        super().__init__()
        h = n // 2
        last = nn.Conv2d(h, n, 1)
        self.body = nn.Sequential(
            nn.Conv2d(n, h, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(h, h, 3, padding=1),
            nn.ReLU(inplace=True),
            last,
        )
        nn.init.zeros_(last.weight)
        nn.init.zeros_(conv_bias(last))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def synthesis(out_ch: int, n: int, m: int, blocks: int = 0, last_stage: tuple[int, int] | None = None) -> nn.Sequential:
    """Ground decoder: mirror of :func:`analysis`, deeper because the ground has compute.

    ``blocks`` residual bottlenecks follow each of the three inner upsampling stages;
    :func:`shared.nn.codec.deepen_state` maps a plain decoder's weights into this layout.
    ``last_stage`` = (width, blocks) of the half-resolution stage when it differs from the
    others: that stage does three quarters of the multiply-adds, so narrowing it alone is what
    makes a fast ground synthesis (``fool train --train-only synthesis --last-stage``).
    """

    def stage(in_ch: int, width: int, k: int) -> list[nn.Module]:
        return [deconv(in_ch, width), GDN(width, inverse=True), *(ResidualBottleneck(width) for _ in range(k))]

    width, k = last_stage if last_stage is not None else (n, blocks)
    stages = [stage(m, n, blocks), stage(n, n, blocks), stage(n, width, k)]
    if blocks == 0 and last_stage is None:  # flat, the layout the first models were trained and shipped with
        return nn.Sequential(*(layer for s in stages for layer in s), deconv(n, out_ch))
    return nn.Sequential(*(nn.Sequential(*s) for s in stages), deconv(width, out_ch))


def hyper_analysis(m: int, n: int, nz: int) -> nn.Sequential:
    return nn.Sequential(conv(m, n, 3, 1), nn.ReLU(inplace=True), conv(n, n), nn.ReLU(inplace=True), conv(n, nz))


def hyper_synthesis(nz: int, n: int, m: int) -> nn.Sequential:
    """z_hat -> (scales, means) of y. Integer-friendly: conv, ReLU and pixel shuffle only."""
    return nn.Sequential(
        nn.Conv2d(nz, n, 3, padding=1),
        nn.ReLU(inplace=True),
        SubpixelUp(n, n),
        nn.ReLU(inplace=True),
        SubpixelUp(n, n),
        nn.ReLU(inplace=True),
        nn.Conv2d(n, 2 * m, 3, padding=1),
    )


class STERound(torch.autograd.Function):
    """Rounding with a straight-through gradient, so training decodes what compress() sends."""

    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, g):
        return g


def ste_round(x: torch.Tensor) -> torch.Tensor:
    return STERound.apply(x)
