"""The validity mask's coding: exact round trips, smaller than packed bits, hostile bytes refused."""

import zlib

import numpy as np
import pytest
from fool.shared.errors import ContainerError
from fool.shared.mask import (
    END_OF_ROW,
    HORIZONTAL,
    TRANSITIONS,
    V,
    decode_mask,
    decode_transitions,
    encode_mask,
    encode_transitions,
)
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


def _coded(symbols: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return bytes([TRANSITIONS]) + c.compress(symbols) + c.flush()


def test_the_symbol_layer_is_frozen():
    """Pins the format (symbol values, a0 = -1, b1's parity rule), not just the round trip:
    row 0 invalid on 2..4 and from 7 on; row 1 the same shifted right by one (vertical +1s);
    row 2 only 0..0 invalid, coded horizontally; row 3 all valid."""
    H, E = bytes([HORIZONTAL]), bytes([END_OF_ROW])
    symbols = H + b"\x02" + H + b"\x02" + H + b"\x01" + H + b"\x01" + E  # changes 2, 5, 7, 9
    symbols += bytes([V + 1, V + 1, V + 1, V]) + E  # 3, 6, 8, 9: the last one vertical 0
    symbols += H + b"\x00" + H + b"\x00" + E  # 0, 1
    symbols += E
    expected = np.ones((4, 9), bool)
    expected[0, 2:5] = expected[0, 7:] = False
    expected[1, 3:6] = expected[1, 8:] = False
    expected[2, 0:1] = False
    assert np.array_equal(decode_mask(_coded(symbols), (4, 9)), expected)
    assert (V, HORIZONTAL, END_OF_ROW, TRANSITIONS) == (15, 31, 32, 1)


def test_hostile_bytes_are_container_errors():
    mask = footprint()
    data = encode_transitions(mask)
    rng = np.random.default_rng(0)
    H, E = bytes([HORIZONTAL]), bytes([END_OF_ROW])
    rows = E * 255
    bad = {
        "empty": b"",
        "method byte alone": data[:1],
        "truncated": data[:-3],
        "trailing byte": data + b"\x00",
        "random deflate": bytes([TRANSITIONS]) + bytes(rng.integers(0, 256, 200, dtype=np.uint8)),
        "unclosed run": _coded((H + b"\x05" + E) * 256),
        "extra row": _coded(E * 257),
        "short": _coded(E * 255),
        "ends inside a row": _coded(E * 255 + H + b"\x05"),
        "out of order": _coded(H + b"\x05" + H + b"\x00" + E + bytes([V, 0]) + E + E * 254),
        "no change above": _coded(bytes([V, V]) + E + rows),
        "unknown symbol": _coded(bytes([END_OF_ROW + 1]) + E + rows),
        "past the tile": _coded(H + b"\x05" + H + b"\xff\x01" + E + rows),
        "varint over 5 bytes": _coded(H + b"\x80\x80\x80\x80\x80\x00" + E + rows),
        "over the size bound": _coded(E * (256 * 257 * 3 + 256 + 1)),
    }
    for what, b in bad.items():
        with pytest.raises(ContainerError):
            decode_mask(b, mask.shape)
            pytest.fail(what)
    for i in range(1, len(data), 7):  # a flipped byte is refused or decodes to some mask of the shape
        flipped = bytearray(data)
        flipped[i] ^= 0xFF
        try:
            out = decode_mask(bytes(flipped), mask.shape)
        except ContainerError:
            continue
        assert out.shape == mask.shape and out.dtype == bool


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64).map(lambda b: bytes(x % (END_OF_ROW + 4) for x in b)))
def test_arbitrary_symbols_decode_or_are_refused(symbols):
    try:
        out = decode_mask(_coded(symbols), (6, 11))
    except ContainerError:
        return
    assert out.shape == (6, 11)


def test_packed_bits_with_trailing_bytes_or_no_checksum_are_refused():
    packed = zlib.compress(np.packbits(footprint()).tobytes(), 9)
    for b in (packed + b"\x00", packed[:-4]):
        with pytest.raises(ContainerError):
            decode_mask(b, (256, 256))


def test_wrong_shape_is_refused():
    data = encode_transitions(footprint())
    with pytest.raises(ContainerError):
        decode_mask(data, (255, 256))
    with pytest.raises(ContainerError):
        decode_mask(zlib.compress(np.packbits(footprint()).tobytes()), (128, 256))
