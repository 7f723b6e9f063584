"""The validity mask's coding: exact round trips, smaller than packed bits, hostile bytes refused."""

import zlib

import numpy as np
import pytest
from fool.shared.errors import ContainerError
from fool.shared.mask import TRANSITIONS, decode_mask, decode_transitions, encode_mask, encode_transitions
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays


def footprint(h: int = 256, w: int = 256, holes: int = 12, seed: int = 0) -> np.ndarray:
    """A rotated-rectangle scene footprint with a few single-pixel and small holes."""
    yy, xx = np.mgrid[:h, :w]
    valid = (yy > 0.18 * xx + 30) & (xx < 230 - 0.1 * yy)
    rng = np.random.default_rng(seed)
    for y, x in rng.integers(0, min(h, w) - 3, (holes, 2)):
        valid[y : y + rng.integers(1, 4), x : x + rng.integers(1, 4)] = False
    return valid


@pytest.mark.parametrize(
    "mask",
    [
        footprint(),
        footprint(100, 37, holes=30, seed=3),
        np.ones((64, 64), bool),
        np.zeros((64, 64), bool),
        np.eye(40, dtype=bool),
        np.random.default_rng(5).random((50, 70)) < 0.5,  # noise: the worst case
        np.zeros((1, 1), bool),
    ],
)
def test_round_trips_exactly(mask):
    for data in (encode_transitions(mask), encode_mask(mask)):
        assert np.array_equal(decode_mask(data, mask.shape), mask)


@settings(max_examples=150, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 24), st.integers(1, 24))))
def test_any_mask_round_trips(mask):
    assert np.array_equal(decode_transitions(encode_transitions(mask), mask.shape), mask)
    assert np.array_equal(decode_mask(encode_mask(mask), mask.shape), mask)


def test_a_footprint_costs_well_under_half_of_packed_bits():
    mask = footprint()
    packed = zlib.compress(np.packbits(mask).tobytes(), 9)
    assert encode_mask(mask)[0] == TRANSITIONS and len(encode_mask(mask)) < 0.5 * len(packed)


def test_noise_keeps_packed_bits_whichever_is_smaller():
    noise = np.random.default_rng(1).random((64, 64)) < 0.5
    data = encode_mask(noise)
    assert len(data) <= len(encode_transitions(noise)) and np.array_equal(decode_mask(data, noise.shape), noise)


def test_hostile_bytes_are_container_errors():
    mask = footprint()
    data = encode_transitions(mask)
    rng = np.random.default_rng(0)
    bad = [
        b"",
        data[:1],
        data[:-3],
        data + b"\x00",
        bytes([TRANSITIONS]) + bytes(rng.integers(0, 256, 200, dtype=np.uint8)),
        bytes([TRANSITIONS]) + zlib.compress(b"\x1f" * 10, 9)[2:-4],  # unknown symbols
    ]
    unclosed, extra_row, short = b"\x1f\x05\x20" * 256, b"\x20" * 257, b"\x20" * 255
    out_of_order = b"\x1f\x05\x1f\x00\x20" + b"\x0f\x00\x20" + b"\x20" * 254  # V-15 lands before a0
    for symbols in (unclosed, extra_row, short, out_of_order):
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        bad.append(bytes([TRANSITIONS]) + c.compress(symbols) + c.flush())
    c = zlib.compressobj(9, zlib.DEFLATED, -15)  # a vertical symbol with no change above it
    bad.append(bytes([TRANSITIONS]) + c.compress(b"\x0f\x0f\x20" + b"\x20" * 255) + c.flush())
    for b in bad:
        with pytest.raises(ContainerError):
            decode_mask(b, mask.shape)
    for i in range(1, len(data), 7):  # a flipped byte is refused or decodes to some mask of the shape
        flipped = bytearray(data)
        flipped[i] ^= 0xFF
        try:
            out = decode_mask(bytes(flipped), mask.shape)
        except ContainerError:
            continue
        assert out.shape == mask.shape and out.dtype == bool


def test_wrong_shape_is_refused():
    data = encode_transitions(footprint())
    with pytest.raises(ContainerError):
        decode_mask(data, (255, 256))
    with pytest.raises(ContainerError):
        decode_mask(zlib.compress(np.packbits(footprint()).tobytes()), (128, 256))
