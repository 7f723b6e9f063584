"""Feature output: the decoded latents of every tile, for models that work on features, not pixels.

Layout of ``<stem>.features/`` (written whole under a temporary name, then renamed):

- ``tiles.json``: ``format`` (``fool-features/1``), ``scene`` (width, height, count, dtype,
  crs_wkt, transform as 6 GDAL-order affine coefficients a, b, c, d, e, f, tile_size,
  grid rows/cols, band groups, model name and hash, latent stride 16), ``tiles`` (one entry
  per tile that decoded: row, col, pixel window, bounds in the scene CRS as
  [left, bottom, right, top], file, shape, dtype), ``missing`` and ``damaged`` (row, col).
- one ``r{row:04d}_c{col:04d}.npy`` per tile: float32 ``(groups, M, h, w)``, the dequantised
  latents ``y_hat`` of the tile *as coded*, i.e. padded to a multiple of 64 px; latent pixel
  (i, j) covers pixels [16 i, 16 i + 16) x [16 j, 16 j + 16) from the window's top-left corner,
  so latents past the window's size describe padding.

One file per tile keeps a tile readable alone (memory-mapped) and matches the container:
what arrived is what is there. :func:`open_features` reads it back.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from fool.shared.errors import FoolError, InputError

FORMAT = "fool-features/1"
INDEX = "tiles.json"
LATENT_STRIDE = 16


def tile_file(row: int, col: int) -> str:
    return f"r{row:04d}_c{col:04d}.npy"


def write_features(src: Path, dst: Path, synthesis, strict: bool = False) -> list[tuple[int, int]]:
    """Entropy-decode every tile of ``src`` into ``dst`` (a folder, replaced atomically).

    A tile that fails its CRC or decoding is left out and returned (or raises with ``strict``).
    ``synthesis`` is a loaded TorchSynthesis of the container's model: its codec holds the tables.
    """
    from fool.ground.decode import decode_latents, read_header
    from fool.shared.format import Container

    tmp = dst.with_name(f".{dst.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with Container.open(src) as container:
            scene = read_header(container)
            tiles, damaged = [], []
            for entry in [e for e in container.tiles if e.length]:  # an entry without payload was not sent
                try:
                    latents = decode_latents(entry, container.payload(entry), scene, synthesis.codec)
                except FoolError:
                    if strict:
                        raise
                    damaged.append((entry.row, entry.col))
                    continue
                tiles.append(_save_tile(tmp, scene, entry.row, entry.col, latents.y_hat))
        received = {(e.row, e.col) for e in container.tiles if e.length}
        missing = sorted({(t.row, t.col) for t in scene.grid} - received)
        index = {"format": FORMAT, "scene": _scene_dict(scene), "tiles": tiles, "missing": missing, "damaged": damaged}
        (tmp / INDEX).write_text(json.dumps(index, indent=1))
        _replace_folder(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return damaged


def _scene_dict(scene) -> dict:
    return {
        "width": scene.width,
        "height": scene.height,
        "count": scene.count,
        "dtype": scene.dtype,
        "crs_wkt": scene.crs_wkt,
        "transform": list(scene.transform),
        "tile_size": scene.tile_size,
        "grid": {"rows": scene.grid.rows, "cols": scene.grid.cols},
        "groups": scene.groups,
        "model_name": scene.model_name,
        "model_sha256": scene.model_sha256,
        "latent_stride": LATENT_STRIDE,
    }


def _save_tile(folder: Path, scene, row: int, col: int, y_hat: np.ndarray) -> dict:
    from affine import Affine
    from rasterio.windows import bounds

    tile = scene.grid.tile(row, col)
    array = np.ascontiguousarray(y_hat, dtype=np.float32)
    np.save(folder / tile_file(row, col), array)
    window = {"col_off": tile.x, "row_off": tile.y, "width": tile.width, "height": tile.height}
    return {
        "row": row,
        "col": col,
        "window": window,
        "bounds": list(bounds(tile.window(), Affine(*scene.transform))),
        "file": tile_file(row, col),
        "shape": list(array.shape),
        "dtype": str(array.dtype),
    }


def _replace_folder(tmp: Path, dst: Path) -> None:
    """os.replace cannot replace a non-empty folder: move the old one aside first."""
    old = dst.with_name(f".{dst.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        os.replace(dst, old)
    os.replace(tmp, dst)
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class FeatureTile:
    """One tile's latents and where they lie; ``array`` is read (memory-mapped) on first use."""

    row: int
    col: int
    window: object  # rasterio.windows.Window, pixels of the scene
    bounds: tuple[float, float, float, float]  # left, bottom, right, top in the scene CRS
    crs: object  # rasterio CRS, None for a scene without one
    path: Path
    shape: tuple[int, ...]
    dtype: str

    @property
    def array(self) -> np.ndarray:
        return np.load(self.path, mmap_mode="r")


class FeatureSet:
    """A ``<stem>.features`` folder: iterate it for its tiles in raster order."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        try:
            self.index = json.loads((folder / INDEX).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{folder}: not a FOOL features folder ({exc})") from None
        if self.index.get("format") != FORMAT:
            raise InputError(f"{folder}: unknown features format {self.index.get('format')!r}, expected {FORMAT}")

    @property
    def scene(self) -> dict:
        return self.index["scene"]

    @cached_property
    def crs(self):
        from rasterio.crs import CRS

        wkt = self.scene.get("crs_wkt")
        return CRS.from_wkt(wkt) if wkt else None

    @property
    def missing(self) -> list[tuple[int, int]]:
        return [tuple(rc) for rc in self.index.get("missing", [])]

    @property
    def damaged(self) -> list[tuple[int, int]]:
        return [tuple(rc) for rc in self.index.get("damaged", [])]

    def __len__(self) -> int:
        return len(self.index["tiles"])

    def __iter__(self) -> Iterator[FeatureTile]:
        from rasterio.windows import Window

        for t in self.index["tiles"]:
            w = t["window"]
            yield FeatureTile(
                row=t["row"],
                col=t["col"],
                window=Window(w["col_off"], w["row_off"], w["width"], w["height"]),
                bounds=tuple(t["bounds"]),
                crs=self.crs,
                path=self.folder / t["file"],
                shape=tuple(t["shape"]),
                dtype=t["dtype"],
            )


def open_features(path: str | Path) -> FeatureSet:
    """Open a features folder (or its ``tiles.json``): ``for tile in open_features(p): tile.array ...``."""
    path = Path(path)
    return FeatureSet(path.parent if path.name == INDEX else path)
