"""Integer hyper-synthesis: the entropy parameters computed bit-exactly on any machine.

A hyperprior decodes only if the ground derives exactly the scale indexes the encoder used;
float convolutions differ in the last ulp between thread counts, SIMD widths, ORT and
PyTorch, and one flipped index corrupts the rest of a tile (CompressAI issue #279). After
Ballé et al. 2019 ("Integer networks for data compression") the hyper-synthesis runs on
integers here: weights are quantised per output channel to 12-bit, activations to fixed
point with :data:`FRAC_BITS` fractional bits, and rescaling is by powers of two with
explicit rounding. The integers are held in float64 and multiplied with BLAS: every product
and partial sum is an integer below 2**53, so the result is exact whatever the summation
order. Both the onboard encoder and the ground decoder call :func:`hyper_params`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

FRAC_BITS = 8
WEIGHT_BITS = 11  # magnitude bits; a sign makes 12


@dataclass(frozen=True)
class IntConv:
    """One 3x3 'same' convolution on fixed-point integers."""

    weight: np.ndarray  # (out, in*9) integer-valued float64
    bias: np.ndarray  # (out,) integer-valued float64, scale 2**(shift + FRAC_BITS)
    shift: np.ndarray  # (out,) int: weight scale exponent
    relu: bool
    shuffle: int  # pixel-shuffle factor after the conv (1 = none)


def quantise_conv(weight: np.ndarray, bias: np.ndarray, relu: bool, shuffle: int) -> IntConv:
    """Quantise a float conv (out, in, 3, 3) to an :class:`IntConv`."""
    w = weight.reshape(weight.shape[0], -1).astype(np.float64)
    peak = np.maximum(np.abs(w).max(axis=1), 1e-12)
    shift = np.floor(np.log2((2**WEIGHT_BITS - 1) / peak)).astype(np.int64)
    wq = np.rint(w * np.exp2(shift)[:, None])
    bq = np.rint(bias.astype(np.float64) * np.exp2(shift + FRAC_BITS))
    return IntConv(wq, bq, shift, relu, shuffle)


def _conv3x3(a: np.ndarray, layer: IntConv) -> np.ndarray:
    """3x3 'same' convolution of channels-last (B, H, W, C) integers -> (B, H, W, out).

    Channels-last keeps the im2col copy and the product contiguous, with no transposes
    between layers; every output is the same exact integer sum in any layout, batch size
    or BLAS blocking, so batching the band groups and tiles of a scene changes no value.
    """
    b, h, w, c = a.shape
    padded = np.zeros((b, h + 2, w + 2, c), np.float64)
    padded[:, 1:-1, 1:-1] = a
    cols = sliding_window_view(padded, (3, 3), axis=(1, 2))  # type: ignore[call-overload]
    cols = cols.reshape(b * h * w, c * 9)  # columns (in, kh, kw)
    acc = cols @ layer.weight.T  # exact: integers < 2**53
    acc += layer.bias
    return acc.reshape(b, h, w, -1)


def _pixel_shuffle(a: np.ndarray, r: int) -> np.ndarray:
    """Channels-last pixel shuffle: channel c * r * r + i * r + j -> pixel (y * r + i, x * r + j)."""
    b, h, w, c = a.shape
    a = a.reshape(b, h, w, c // (r * r), r, r).transpose(0, 1, 4, 2, 5, 3)
    return a.reshape(b, h * r, w * r, c // (r * r))


def hyper_params(z_hat: np.ndarray, layers: list[IntConv]) -> tuple[np.ndarray, np.ndarray]:
    """(scales, means) of y before the gain, float64, from z_hat (B, C, h, w).

    The B hyper-latents are independent: calling this once on a batch gives exactly the
    values of B calls on one each (tests/test_codec.py checks it)."""
    a = np.rint(np.asarray(z_hat, dtype=np.float64).transpose(0, 2, 3, 1) * 2.0**FRAC_BITS)
    for i, layer in enumerate(layers):
        acc = _conv3x3(a, layer)
        if i == len(layers) - 1:
            acc *= np.exp2(-(layer.shift + FRAC_BITS))
            out = acc.transpose(0, 3, 1, 2)
            scales, means = np.split(out, 2, axis=1)
            return np.abs(scales), np.ascontiguousarray(means)
        acc *= np.exp2(-layer.shift)
        acc += 0.5
        a = np.floor(acc, out=acc)
        if layer.relu:
            a = np.maximum(a, 0.0, out=a)
        if layer.shuffle > 1:
            a = _pixel_shuffle(a, layer.shuffle)
    raise ValueError("integer hyper-synthesis has no layers")


def snap(values: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Round final-layer outputs back onto their fixed-point grid (per-channel ``shift``).

    A no-op on exact outputs; it absorbs any last-ulp error that another implementation of
    the final rescale could introduce, so scale indexes cannot flip (see the ±1 ulp test).
    """
    scale = np.exp2(shift + FRAC_BITS)[None, :, None, None]
    return np.rint(values * scale) / scale


def pack(layers: list[IntConv], prefix: str = "hs") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {f"{prefix}_count": np.array(len(layers))}
    for i, layer in enumerate(layers):
        out[f"{prefix}{i}_w"] = layer.weight.astype(np.int16)  # 12-bit values
        out[f"{prefix}{i}_b"] = layer.bias.astype(np.int64)
        out[f"{prefix}{i}_shift"] = layer.shift.astype(np.int32)
        out[f"{prefix}{i}_flags"] = np.array([int(layer.relu), layer.shuffle])
    return out


def unpack(arrays, prefix: str = "hs") -> list[IntConv]:
    layers = []
    for i in range(int(arrays[f"{prefix}_count"]) if f"{prefix}_count" in arrays else 0):
        relu, shuffle = (int(v) for v in arrays[f"{prefix}{i}_flags"])
        layers.append(
            IntConv(
                arrays[f"{prefix}{i}_w"].astype(np.float64),
                arrays[f"{prefix}{i}_b"].astype(np.float64),
                arrays[f"{prefix}{i}_shift"].astype(np.int64),
                bool(relu),
                shuffle,
            )
        )
    return layers
