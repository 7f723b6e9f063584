"""Which tiles matter: a rank and a quality cap per tile, decided on board before coding.

A satellite cannot send everything, so what it sends first and at what quality should follow
what the scene is worth: tiles inside a user's region of interest before the rest, and
near-constant or cloudy tiles (sea, desert, cloud tops) at the lowest quality or not at all.
Rules are small classes with one method (:class:`TileRule`); :func:`rank_tiles` applies them.

What the default does: no rule, so every tile has the same value and the scene goes in raster
order at the quality asked for; only tiles with no valid pixel are left out (they are never
coded; the decoder writes them as nodata). ``fool compress --roi``, ``--flat`` and
``--cloudy`` turn the rules on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from fool.onboard.scene import SceneReader, TileData
from fool.shared.errors import InputError

#: What a low-value tile gets: the lowest quality, or nothing (a skipped entry in the table).
LOW_VALUE_ACTIONS = ("lowest", "skip")


@dataclass(frozen=True)
class TileValue:
    """``rank``: higher goes first and is dropped last under a budget. ``lowest``: code this
    tile at the lowest quality whatever the scene's quality. ``skip``: do not send it."""

    rank: float = 0.0
    lowest: bool = False
    skip: bool = False

    def merge(self, other: TileValue) -> TileValue:
        return TileValue(self.rank + other.rank, self.lowest or other.lowest, self.skip or other.skip)


class TileRule(Protocol):
    """One criterion of a tile's value, from its raw values and validity mask."""

    def __call__(self, data: TileData, reader: SceneReader) -> TileValue: ...


class RegionOfInterest:
    """Tiles that touch the region rank first; the others get the lowest quality, or are
    skipped with ``outside="skip"``. The GeoJSON is in lon/lat (RFC 7946) or, with
    ``crs="scene"``, in the scene's own CRS."""

    def __init__(self, geojson: Path, reader: SceneReader, crs: str = "lonlat", outside: str = "lowest") -> None:
        from rasterio.features import rasterize
        from rasterio.transform import Affine
        from rasterio.warp import transform_geom

        if outside not in LOW_VALUE_ACTIONS:
            raise InputError(f"--roi-outside must be one of {', '.join(LOW_VALUE_ACTIONS)}")
        try:
            doc = json.loads(Path(geojson).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read the region of interest {geojson}: {exc}") from None
        geoms = _geometries(doc, geojson)
        if crs == "lonlat":
            if not reader.ds.crs:
                raise InputError(f"{reader.path} has no CRS: give the region in its pixel CRS with --roi-crs scene")
            geoms = [transform_geom("EPSG:4326", reader.ds.crs, g) for g in geoms]
        elif crs != "scene":
            raise InputError(f"--roi-crs must be 'lonlat' or 'scene', got {crs!r}")
        grid = reader.grid
        size = grid.tile_size
        per_tile = reader.ds.transform * Affine.scale(size, size)
        self.inside = rasterize(geoms, out_shape=(grid.rows, grid.cols), transform=per_tile, all_touched=True) > 0
        if not self.inside.any():
            raise InputError(f"the region of interest {geojson} does not touch the scene {reader.path}")
        self.outside = outside

    def __call__(self, data: TileData, reader: SceneReader) -> TileValue:
        if self.inside[data.tile.row, data.tile.col]:
            return TileValue(rank=1.0)
        return TileValue(lowest=self.outside == "lowest", skip=self.outside == "skip")


def _geometries(doc: dict, name: Path) -> list[dict]:
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind == "FeatureCollection":
        geoms = [f.get("geometry") for f in doc.get("features", []) if isinstance(f, dict)]
    elif kind == "Feature":
        geoms = [doc.get("geometry")]
    elif kind in ("Polygon", "MultiPolygon"):
        geoms = [doc]
    else:
        geoms = []
    polygons = [g for g in geoms if isinstance(g, dict) and g.get("type") in ("Polygon", "MultiPolygon")]
    if not polygons:
        raise InputError(f"{name} holds no Polygon or MultiPolygon (GeoJSON)")
    return polygons


class FlatTiles:
    """Near-constant tiles (calm water, uniform desert, saturated cloud): their standard
    deviation in the codec's unit range is below ``threshold`` (default: a fifth of one 8-bit
    level) in every band. They cost few bits and show little, so they rank last."""

    def __init__(self, action: str = "lowest", threshold: float = 0.2 / 255) -> None:
        if action not in LOW_VALUE_ACTIONS:
            raise InputError(f"--flat must be one of {', '.join(LOW_VALUE_ACTIONS)}")
        self.action, self.threshold = action, threshold

    def __call__(self, data: TileData, reader: SceneReader) -> TileValue:
        unit = _unit_values(data, reader)
        if unit is None or unit.std(axis=1).max() >= self.threshold:
            return TileValue()
        return TileValue(rank=-1.0, lowest=self.action == "lowest", skip=self.action == "skip")


class CloudyTiles:
    """A cheap onboard cloud test: a tile is cloudy when at least ``share`` of its valid pixels
    are bright in every band (above ``brightness`` of the band's value range). Snow, salt
    flats and white roofs pass it too, which is why it is off unless asked for."""

    def __init__(self, action: str = "lowest", brightness: float = 0.75, share: float = 0.9) -> None:
        if action not in LOW_VALUE_ACTIONS:
            raise InputError(f"--cloudy must be one of {', '.join(LOW_VALUE_ACTIONS)}")
        self.action, self.brightness, self.share = action, brightness, share

    def __call__(self, data: TileData, reader: SceneReader) -> TileValue:
        unit = _unit_values(data, reader)
        if unit is None or (unit.min(axis=0) >= self.brightness).mean() < self.share:
            return TileValue()
        return TileValue(rank=-2.0, lowest=self.action == "lowest", skip=self.action == "skip")


def _unit_values(data: TileData, reader: SceneReader) -> np.ndarray | None:
    """(bands, valid pixels) in the codec's [0, 1] range, or None when no pixel is valid."""
    values = data.values.reshape(data.values.shape[0], -1)
    if data.valid is not None:
        values = values[:, data.valid.ravel()]
    if not values.shape[1]:
        return None
    return np.stack([rng.to_unit(v) for rng, v in zip(reader.ranges, values, strict=True)])


def rank_tiles(data: TileData, reader: SceneReader, rules: list[TileRule]) -> TileValue:
    value = TileValue()
    for rule in rules:
        value = value.merge(rule(data, reader))
    return value
