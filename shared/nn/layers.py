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


def synthesis(out_ch: int, n: int, m: int) -> nn.Sequential:
    """Ground decoder: mirror of :func:`analysis`, may be wider because the ground has compute."""
    return nn.Sequential(
        deconv(m, n),
        GDN(n, inverse=True),
        deconv(n, n),
        GDN(n, inverse=True),
        deconv(n, n),
        GDN(n, inverse=True),
        deconv(n, out_ch),
    )


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
    def forward(ctx, x):  # type: ignore[override]
        return torch.round(x)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g


def ste_round(x: torch.Tensor) -> torch.Tensor:
    return STERound.apply(x)
