"""Rate control: one quality per tile so that the whole container fits a byte budget.

Why one search over a single quality code is rate-distortion optimal across tiles: each
quality level of the variable-rate model was trained at one Lagrangian λ for all content, so
coding every tile at the same quality puts every tile at (approximately) the same slope
dD/dR, which is the equal-slope condition; searching that one code is the bisection on λ. The
search counts exact bytes (tiles are entropy-coded, the table and header are built), so the
result never exceeds the budget. Quality codes step by 1/256 of a level, so what is left of
the budget after the search is less than one step's growth of the whole scene (well under
1 %). Tiles marked low-value keep the lowest quality. Only when the scene does not fit even
at the lowest quality are tiles dropped, lowest rank first, and recorded as skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fool.shared.errors import InputError
from fool.shared.format import MODE_CODEC, MODE_SKIPPED, TileEntry, container_bytes
from fool.shared.latent_codec import QUALITY_STEP


@dataclass(frozen=True)
class PlannedTile:
    row: int
    col: int
    rank: float
    lowest: bool  # low value: always the lowest quality
    skip: bool  # low value: not sent


@dataclass
class Allocation:
    codes: list[int | None]  # quality code per tile; None = skipped
    payloads: dict[int, bytes]  # tile index -> payload at its code
    size: int  # exact container bytes
    dropped: list[int]  # tiles skipped to fit the budget (not by their own value)


def container_size(header_bytes: int, tiles: Sequence[PlannedTile], codes, payloads, cols: int) -> int:
    """Exact size of the container these codes give: header, payloads, table, footer."""
    entries = [
        TileEntry(
            t.row,
            t.col,
            0,
            len(payloads[i]) if codes[i] is not None else 0,
            0,
            codes[i] or 0,
            0,
            MODE_CODEC if codes[i] is not None else MODE_SKIPPED,
        )
        for i, t in enumerate(tiles)
    ]
    return container_bytes(header_bytes, entries, cols)


def allocate(
    tiles: Sequence[PlannedTile],
    encode: Callable[[int, int], bytes],
    header_bytes: int,
    budget: int | None,
    code: int,
    lowest: int = QUALITY_STEP,
    highest: int = 8 * QUALITY_STEP,
    *,
    cols: int,
) -> Allocation:
    """Quality codes for ``tiles`` (on a tile grid ``cols`` wide): ``code`` everywhere without a
    budget; with one, the largest common code (between ``lowest`` and ``highest``) whose container
    fits. ``encode(i, code)`` codes tile ``i``; results are cached, so each (tile, code) is coded once."""
    cache: dict[tuple[int, int], bytes] = {}

    def payload(i: int, c: int) -> bytes:
        if (i, c) not in cache:
            cache[(i, c)] = encode(i, c)
        return cache[(i, c)]

    def trial(c: int, dropped: frozenset[int] = frozenset()) -> Allocation:
        codes: list[int | None] = []
        for i, t in enumerate(tiles):
            codes.append(None if t.skip or i in dropped else (lowest if t.lowest else c))
        payloads = {i: payload(i, k) for i, k in enumerate(codes) if k is not None}
        return Allocation(codes, payloads, container_size(header_bytes, tiles, codes, payloads, cols), sorted(dropped))

    if budget is None:
        return trial(code)
    best = trial(lowest)
    if best.size > budget:
        best = _drop_until_fits(tiles, trial, lowest, budget)
        if best.size > budget:
            raise InputError(
                f"a budget of {budget} bytes does not hold even the scene header and tile table "
                f"({best.size} bytes with every tile skipped)"
            )
        return best
    lo, hi = lowest, highest  # invariant: lo fits
    top = trial(hi)
    if top.size <= budget:
        return top
    while hi - lo > 1:
        mid = (lo + hi) // 2
        attempt = trial(mid)
        if attempt.size <= budget:
            lo, best = mid, attempt
        else:
            hi = mid
    return best


def _drop_until_fits(tiles: Sequence[PlannedTile], trial, lowest: int, budget: int) -> Allocation:
    """Every tile at the lowest quality is still too big: drop tiles, lowest rank first and, at
    equal rank, last in scene order first, until the rest fits (binary search on how many)."""
    order = sorted((i for i, t in enumerate(tiles) if not t.skip), key=lambda i: (tiles[i].rank, -i))
    lo, hi = 0, len(order)  # dropping hi tiles always fits (only the header and table remain)
    best = trial(lowest, frozenset(order))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        attempt = trial(lowest, frozenset(order[:mid]))
        if attempt.size <= budget:
            hi, best = mid, attempt
        else:
            lo = mid
    return best
