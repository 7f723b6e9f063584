"""One exception tree for FOOL; each error also inherits the builtin it is a kind of.

Messages say what is wrong and what to do, because operators read them at 3 a.m.
"""

from __future__ import annotations


class FoolError(Exception):
    """Root of every error FOOL raises on purpose."""


class InputError(FoolError, ValueError):
    """The input raster or option cannot be compressed as given."""


class RasterReadError(InputError, OSError):
    """rasterio could not open or read the input."""


class UnsupportedRasterError(InputError):
    """The raster opened, but its dtype, size or band layout is not one FOOL codes."""


class OutputError(FoolError, OSError):
    """The output file cannot be written where asked."""


class ContainerError(FoolError, ValueError):
    """A .fool container is malformed: bad magic, truncated, corrupted."""


class VersionError(ContainerError):
    """The container was written by a format version this decoder does not know."""


class ChecksumError(ContainerError):
    """A CRC-32 did not match: the bytes were damaged in transit or storage."""


class ModelError(FoolError, LookupError):
    """A model is unknown, missing its weights, or not the one a container was coded with."""


class PacketError(ContainerError):
    """A downlink packet is malformed: bad primary header, length, CRC-16 or FOOL data field."""
