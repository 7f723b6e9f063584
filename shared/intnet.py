"""Integer hyper-synthesis: the entropy parameters computed bit-exactly on any machine.

A hyperprior decodes only if the ground derives exactly the scale indexes the encoder used;
float convolutions differ in the last ulp between thread counts, SIMD widths, ORT and
PyTorch, and one flipped index corrupts the rest of a tile (CompressAI issue #279). After
Ballé et al. 2019 ("Integer networks for data compression") the hyper-synthesis runs on
integers here: weights are quantised per output channel to 12-bit, activations to fixed
point with :data:`FRAC_BITS` fractional bits, and rescaling is by powers of two with
explicit rounding. Both the onboard encoder and the ground decoder call :func:`hyper_params`.

The products run on ONNX Runtime's 8-bit integer GEMM (``MatMulInteger``, int32 sums), which
is exact by definition: weights are split into two signed 7-bit digits, activations into
unsigned 7-bit digits (as many as their largest value needs, negative values apart), and the
digit products are summed per power of two in int32, then scaled and added in float64.
Digits this small cannot saturate any of MLAS's kernels (AVX2's pairwise 16-bit sums
included), so the result is the exact integer sum on every CPU. Where the CPU has 8-bit dot
products (VNNI, AMX) this runs 2-3x faster than float64 BLAS products of the same integers
(:func:`_conv3x3_blas`), which stay the kernel elsewhere. Both are exact while every sum of
|weight x activation| stays below 2**53, which the encoder's bounded latents always do, so
the choice changes no bit of any stream an encoder wrote; a hostile stream beyond that range
decodes to garbage that may differ between machines.
"""

from __future__ import annotations

import threading
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


def _conv3x3_blas(a: np.ndarray, layer: IntConv) -> np.ndarray:
    """3x3 'same' convolution of channels-last (B, H, W, C) integers -> (B, H, W, out), as
    float64 BLAS products: exact while the sum of |weight x activation| stays below 2**53, and
    there the same values as :func:`_conv3x3_digits`."""
    b, h, w, c = a.shape
    padded = np.zeros((b, h + 2, w + 2, c), np.float64)
    padded[:, 1:-1, 1:-1] = a
    cols = sliding_window_view(padded, (3, 3), axis=(1, 2))  # type: ignore[call-overload]
    cols = cols.reshape(b * h * w, c * 9)  # columns (in, kh, kw)
    acc = cols @ layer.weight.T  # exact: integers < 2**53
    acc += layer.bias
    return acc.reshape(b, h, w, -1)


DIGIT_BITS = 7  # activation digits 0..127 and weight digits -64..63: no 16-bit pair sum saturates


class _DigitProducts:
    """One layer's weights as two signed 7-bit digits (``w = lo + 128 * hi``), columns in
    (kh, kw, in) order, and the ONNX Runtime session that multiplies activation digits by them:
    (rows, 9 C) uint8 @ (9 C, 2 out) int8 -> int32, the lo products then the hi ones."""

    def __init__(self, layer: IntConv) -> None:
        from fool.shared.runtime import ort_session
        from onnx import TensorProto, helper, numpy_helper

        out = layer.weight.shape[0]
        c = layer.weight.shape[1] // 9
        if 4 * 9 * c * 127 * 64 >= 2**31:  # the int32 sums of :func:`_conv3x3_digits` must not wrap
            raise ValueError(f"an integer layer of {c} input channels is too wide for the digit kernel")
        w = layer.weight.reshape(out, c, 3, 3).transpose(0, 2, 3, 1).reshape(out, 9 * c).astype(np.int64)
        lo = (w + 64) % 128 - 64
        hi = (w - lo) // 128
        if np.abs(w).max(initial=0) > 2**WEIGHT_BITS - 1:
            raise ValueError(f"integer weights exceed {WEIGHT_BITS + 1} bits")
        digits = np.concatenate([lo.T, hi.T], axis=1).astype(np.int8)
        graph = helper.make_graph(
            [helper.make_node("MatMulInteger", ["a", "w"], ["p"])],
            "int_conv",
            [helper.make_tensor_value_info("a", TensorProto.UINT8, [None, 9 * c])],
            [helper.make_tensor_value_info("p", TensorProto.INT32, [None, 2 * out])],
            [numpy_helper.from_array(digits, "w")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        self.out, self.session = out, ort_session(model.SerializeToString(), threads=1)

    def __call__(self, cols: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"a": cols})[0]


_PRODUCTS: dict[int, tuple[IntConv, _DigitProducts]] = {}
_PRODUCTS_LOCK = threading.Lock()


def _products(layer: IntConv) -> _DigitProducts:
    hit = _PRODUCTS.get(id(layer))
    if hit is None or hit[0] is not layer:
        with _PRODUCTS_LOCK:
            hit = _PRODUCTS.get(id(layer))
            if hit is None or hit[0] is not layer:
                if len(_PRODUCTS) > 64:
                    _PRODUCTS.clear()
                hit = _PRODUCTS[id(layer)] = (layer, _DigitProducts(layer))
    return hit[1]


def _digits(a: np.ndarray) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """Integer array -> unsigned 7-bit digit arrays, and the (sign, power of 2) of each. Values
    are clipped to ±2**62 first (only a hostile stream gets there), so the int64 cast is defined."""
    v = np.clip(a, -(2.0**62), 2.0**62).astype(np.int64)
    parts = [(1, v)] if v.min(initial=0) >= 0 else [(1, np.maximum(v, 0)), (-1, np.maximum(-v, 0))]
    digits, weights = [], []
    for sign, part in parts:
        top = int(part.max(initial=0))
        k = 0
        while top >> (DIGIT_BITS * k):
            digits.append(((part >> (DIGIT_BITS * k)) & 127).astype(np.uint8))
            weights.append((sign, DIGIT_BITS * k))
            k += 1
    return digits, weights


def _conv3x3_digits(a: np.ndarray, layer: IntConv) -> np.ndarray:
    """3x3 'same' convolution of channels-last (B, H, W, C) integers -> (B, H, W, out), float64,
    on the 8-bit GEMM.

    The digit products (int32, each below 9 C * 127 * 64, 2**23 for C = 96; at most four share
    a power of two, so their int32 sum cannot wrap) are summed in int32 per power of two, then
    scaled and added in float64 in a fixed order: every partial sum is bounded by the sum of
    |weight x activation|, so the result is the exact integer while that stays below 2**53
    (where :func:`_conv3x3_blas` is exact too), and the same value on every machine beyond.
    No value depends on the layout, batch size or CPU, so batching the band groups and tiles
    of a scene changes none.
    """
    b, h, w, c = a.shape
    products = _products(layer)
    digits, weights = _digits(a)
    if not digits:
        out = np.zeros((b * h * w, products.out), np.float64)
    else:
        p = len(digits)
        padded = np.zeros((p * b, h + 2, w + 2, c), np.uint8)
        padded[:, 1:-1, 1:-1] = np.stack(digits).reshape(p * b, h, w, c)
        cols = np.empty((p * b, h, w, 9, c), np.uint8)  # columns (kh, kw, in)
        for k in range(9):
            cols[:, :, :, k] = padded[:, k // 3 : k // 3 + h, k % 3 : k % 3 + w]
        prod = products(cols.reshape(p * b * h * w, 9 * c)).reshape(p, b * h * w, 2, products.out)
        sums: dict[int, np.ndarray] = {}  # power of 2 -> int32 sum of its digit products
        for i, (sign, shift) in enumerate(weights):
            for j in (0, 1):
                term, key = prod[i, :, j], shift + DIGIT_BITS * j
                if key not in sums:
                    sums[key] = term.copy() if sign > 0 else -term
                elif sign > 0:
                    sums[key] += term
                else:
                    sums[key] -= term
        out = np.zeros((b * h * w, products.out), np.float64)
        for key in sorted(sums):
            out += sums[key] * float(2**key)
    out += layer.bias
    return out.reshape(b, h, w, products.out)


def _cpu_has_int8_dot() -> bool:
    """Whether the CPU multiplies 8-bit integers natively (VNNI or AMX): there the digit
    kernel is 2-3x faster than float64 BLAS; with AVX2 alone it is about even."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "").split()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


_KERNEL: list = []


def _conv3x3(a: np.ndarray, layer: IntConv) -> np.ndarray:
    """The integer 3x3 convolution on the faster of the two exact kernels for this CPU. Both
    give the same values (tests/test_codec.py), so the choice changes no bit of any stream."""
    if not _KERNEL:
        _KERNEL.append(_conv3x3_digits if _cpu_has_int8_dot() else _conv3x3_blas)
    return _KERNEL[0](a, layer)


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
