"""Bounded, exact inflation of untrusted deflate streams (container masks and CRS text)."""

from __future__ import annotations

import zlib


def inflate_exact(d, data: bytes, limit: int) -> bytes:
    """All of ``data`` through the decompressor ``d`` (``zlib.decompressobj(...)``), at most
    ``limit`` bytes out. ValueError unless the stream is valid and ends exactly at the end of
    ``data`` within ``limit``: a truncated, oversized or padded stream is refused, not cut."""
    if limit < 1:
        raise ValueError("inflate limit must be positive")
    try:
        out = d.decompress(data, limit)
    except zlib.error as exc:
        raise ValueError(f"corrupt deflate stream ({exc})") from None
    if not d.eof or d.unused_data or d.unconsumed_tail:
        raise ValueError("deflate stream is truncated, too large or followed by extra bytes")
    return out
