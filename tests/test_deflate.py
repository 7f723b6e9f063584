"""inflate_exact: the whole stream and nothing else, within the bound."""

import zlib

import pytest
from fool.shared.deflate import inflate_exact


def test_exact_streams_only():
    z = zlib.compress(b"abc" * 100, 9)
    assert inflate_exact(zlib.decompressobj(), z, 300) == b"abc" * 100
    for bad, limit in ((z[:-1], 300), (z + b"x", 300), (z, 299), (z, 0), (b"\x00\x01", 10)):
        with pytest.raises(ValueError):
            inflate_exact(zlib.decompressobj(), bad, limit)
