"""LEB128 varints: 7 bits a byte, low first; the high bit says another byte follows.

The container's table and header use them so that small numbers (tile steps, lengths,
sizes) cost one or two bytes.
"""

from __future__ import annotations

from fool.shared.errors import ContainerError


def varint(n: int) -> bytes:
    if n < 0:
        raise ValueError(f"varints are unsigned, got {n}")
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def read_varint(buf: bytes, pos: int, what: str = "varint", max_bytes: int = 10) -> tuple[int, int]:
    """-> (value, position after it); at most ``max_bytes`` bytes, inside ``buf``."""
    n = 0
    for i in range(max_bytes):
        if pos >= len(buf):
            raise ContainerError(f"{what} runs past the end of its data")
        byte = buf[pos]
        pos += 1
        n |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return n, pos
    raise ContainerError(f"{what} is longer than {max_bytes} bytes")
