"""Which bands are coded together, and how raw values map to the codec's [0, 1] range.

Strategy (documented in README): the codec is a 3-channel model. Three bands that are
colour (or, for 8-bit scenes, the first three bands, as in NAIP and Landsat products) are
coded as one group, so the model can exploit inter-band correlation. Every other band is
coded alone as a grey triple, which the model was trained on. Integer bands are scaled by
their real bit depth (11-bit pan: /2047); float bands by their scanned min/max.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from fool.shared.errors import UnsupportedRasterError

SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")
INTEGER_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32")


@dataclass(frozen=True)
class BandRange:
    """The values [lo, hi] of one band map linearly onto [0, 1]."""

    lo: float
    hi: float

    def to_unit(self, values: np.ndarray) -> np.ndarray:
        span = self.hi - self.lo if self.hi > self.lo else 1.0
        return ((values.astype(np.float64) - self.lo) / span).astype(np.float32)

    def from_unit(self, unit: np.ndarray, dtype: str) -> np.ndarray:
        span = self.hi - self.lo if self.hi > self.lo else 1.0
        # NaN only comes from hostile latents (CRC-valid garbage); it must not reach an integer cast
        values = np.clip(np.nan_to_num(unit.astype(np.float64), nan=0.0), 0.0, 1.0) * span + self.lo
        if dtype in INTEGER_DTYPES:
            values = np.rint(values)
        return np.clip(values, self.lo, self.hi).astype(dtype)


def check_dtype(dtype: str) -> None:
    if dtype not in SUPPORTED_DTYPES:
        raise UnsupportedRasterError(
            f"dtype {dtype} is not supported; FOOL codes {', '.join(SUPPORTED_DTYPES)}. "
            "Convert the scene first, e.g. `rio convert --dtype float32`."
        )


def bits_for_max(vmax: float, dtype: str) -> int:
    """Bit depth that holds ``vmax``: 11 for WorldView-3 pan in uint16, 12 for Sentinel-2."""
    if dtype == "uint8":
        return 8
    return max(8, int(math.ceil(math.log2(max(float(vmax), 1.0) + 1))))


def integer_range(bits: int) -> BandRange:
    return BandRange(0.0, float(2**bits - 1))


def plan_groups(count: int, dtype: str, colorinterp: tuple[str, ...] = ()) -> list[tuple[int, ...]]:
    """Default band groups (1-based band numbers)."""
    colour = [i + 1 for i, c in enumerate(colorinterp) if c in ("red", "green", "blue")]
    if len(colour) == 3:
        first = tuple(colour)
    elif count >= 3 and dtype == "uint8":
        first = (1, 2, 3)
    else:
        first = ()
    groups: list[tuple[int, ...]] = [first] if first else []
    groups += [(b,) for b in range(1, count + 1) if b not in first]
    return groups


def parse_groups(text: str, count: int) -> list[tuple[int, ...]]:
    """Parse ``--band-groups "1,2,3;4"``: groups of 1 or 3 bands, each band once."""
    try:
        groups = [tuple(int(b) for b in part.split(",")) for part in text.split(";") if part.strip()]
    except ValueError:
        raise UnsupportedRasterError(f"band groups {text!r}: write e.g. '1,2,3;4'") from None
    seen = [b for g in groups for b in g]
    if any(len(g) not in (1, 3) for g in groups):
        raise UnsupportedRasterError("each band group must have 1 or 3 bands, e.g. '1,2,3;4'")
    if sorted(seen) != list(range(1, count + 1)):
        raise UnsupportedRasterError(f"band groups {text!r} must use each of bands 1..{count} exactly once")
    return groups
