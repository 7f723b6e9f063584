"""Feature output: the decoded latents of every tile, for models that work on features, not pixels.

Layout of ``<stem>.features/`` (written whole under a temporary name, then renamed):

- ``tiles.json``: ``format`` (``fool-features/2``), ``scene`` (width, height, count, dtype,
  crs_wkt, transform as 6 GDAL-order affine coefficients a, b, c, d, e, f, tile_size,
  grid rows/cols, band groups, model name and hash, latent stride 16), ``tiles`` (one entry
  per tile that decoded: row, col, pixel window, bounds in the scene CRS as
  [left, bottom, right, top], file, shape, dtype, and its validity: ``valid``,
  ``valid_pixels``, ``valid_fraction``), ``absent`` (every other tile of the grid: row, col,
  window, bounds and ``reason``), and, as in version 1, ``missing`` (tiles without a payload:
  lost, skipped or all nodata) and ``damaged`` (row, col).
- one ``r{row:04d}_c{col:04d}.npy`` per tile: float32 ``(groups, M, h, w)``, the dequantised
  latents ``y_hat`` of the tile *as coded*, i.e. padded to a multiple of 64 px; latent pixel
  (i, j) covers pixels [16 i, 16 i + 16) x [16 j, 16 j + 16) from the window's top-left corner,
  so latents past the window's size describe padding.
- ``r{row:04d}_c{col:04d}.valid.npy`` for a tile with invalid pixels (nodata, a mask, NaN):
  bool ``(height, width)`` over the tile's window, the container's lossless validity mask.

Validity comes in two resolutions because a detector needs both. On the latent grid
(``valid``, shape ``(h, w)`` like the latents' last two axes, rows of ``0``/``1`` in the index)
a cell is valid when its 16x16 block holds at least one valid pixel of the scene: exactly the
latents the satellite coded from data. The others (nodata collars, padding past the scene's
edge) were never sent; the ground filled them from their neighbours for the synthesis, so they
carry no information and a detector should ignore them. A cell on the edge of a collar is
valid yet partly nodata, so the pixel mask (``valid_pixels``) says exactly which pixels were
valid, e.g. to clip a detection. ``valid`` is ``null`` when every latent cell is valid,
``valid_pixels`` when every pixel of the window is.

Tiles without latents are not in ``tiles`` (iterating gives only tiles with an array) but in
``absent``, with why: ``lost`` (on the link), ``skipped`` (the satellite did not send it:
priority, budget), ``damaged`` (failed its CRC or decoding), ``nodata`` (every pixel was nodata,
so it was never coded: nothing to detect there), ``intra`` (coded with a classical codec: its
pixels are in the image output, but it has no latents). The first three are areas whose content
is unknown; ``FeatureSet.absent`` lists them so a detector does not read "no detections" there.

One file per tile keeps a tile readable alone (memory-mapped) and matches the container:
what arrived is what is there. :func:`open_features` reads it back; it refuses version 1
folders, which carry no validity (decode the container again).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
from fool.shared.errors import FoolError, InputError

FORMAT = "fool-features/2"
INDEX = "tiles.json"
LATENT_STRIDE = 16
#: Why a tile of the grid has no latents (``absent`` in the index).
ABSENT_REASONS = ("lost", "skipped", "damaged", "nodata", "intra")


def tile_file(row: int, col: int) -> str:
    return f"r{row:04d}_c{col:04d}.npy"


def valid_file(row: int, col: int) -> str:
    return f"r{row:04d}_c{col:04d}.valid.npy"


def backbone_file(row: int, col: int) -> str:
    return f"r{row:04d}_c{col:04d}.backbone.npy"


@lru_cache(maxsize=2)
def load_feature_model(path: Path):
    """A feature-mode decoder (``fool train-feature-mode``) for :func:`write_features`; kept
    per worker process, as the synthesis is, across the scenes of a batch."""
    from fool.tasks.feature_mode import FeatureModeModel

    return FeatureModeModel.load(Path(path))


def write_features(src: Path, dst: Path, synthesis, strict: bool = False, feature_model=None) -> list[tuple[int, int]]:
    """Entropy-decode every tile of ``src`` into ``dst`` (a folder, replaced atomically).

    A tile that fails its CRC or decoding is left out, listed as absent (``damaged``) and
    returned, or raises with ``strict``. ``synthesis`` is a loaded TorchSynthesis of the
    container's model: its codec holds the tables. With a ``feature_model`` (FOOL's feature
    mode) each tile also gets the classifier backbone's features restored from its first band
    group's latents, tile by tile (``tile.backbone``), so a detector head runs with no pixels.
    """
    from fool.ground.decode import decode_latents, read_header
    from fool.shared.format import MODE_CODEC, MODE_LOST, MODE_SKIPPED, Container

    tmp = dst.with_name(f".{dst.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with Container.open(src) as container:
            scene = read_header(container)
            if feature_model is not None and not scene.model_matches(feature_model.codec_id.split("@")[-1]):
                raise InputError(
                    f"{src} was coded with {scene.model_name}@{scene.model_sha256[:16]}; the feature model reads "
                    f"latents of {feature_model.codec_id}"
                )
            tiles, damaged, reasons = [], [], {}
            for entry in container.coded_tiles:
                rc = (entry.row, entry.col)
                if entry.mode != MODE_CODEC:  # a classical (intra) payload: pixels, no latents
                    reasons[rc] = "intra"
                    continue
                try:
                    latents = decode_latents(entry, container.payload(entry), scene, synthesis.codec)
                except FoolError:
                    if strict:
                        raise
                    damaged.append(rc)
                    reasons[rc] = "damaged"
                    continue
                if latents.y_hat is None:
                    reasons[rc] = "intra"
                    continue
                tiles.append(_save_tile(tmp, scene, entry.row, entry.col, latents.y_hat, latents.valid))
                if feature_model is not None:
                    backbone = np.ascontiguousarray(feature_model.features(latents.y_hat[0]), dtype=np.float32)
                    np.save(tmp / backbone_file(entry.row, entry.col), backbone)
                    tiles[-1]["backbone"] = backbone_file(entry.row, entry.col)
            received = {(e.row, e.col) for e in container.coded_tiles}
            for e in container.tiles:
                if e.mode in (MODE_LOST, MODE_SKIPPED):
                    reasons[(e.row, e.col)] = "lost" if e.mode == MODE_LOST else "skipped"
        absent = [
            _place(scene, t.row, t.col) | {"reason": reasons.get((t.row, t.col), "nodata")}
            for t in scene.grid
            if (t.row, t.col) in reasons or (t.row, t.col) not in received
        ]
        missing = sorted({(t.row, t.col) for t in scene.grid} - received)
        index = {
            "format": FORMAT,
            "scene": _scene_dict(scene),
            "tiles": tiles,
            "absent": absent,
            "missing": missing,
            "damaged": damaged,
        }
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


def _place(scene, row: int, col: int) -> dict:
    """Row, col, pixel window and bounds of a grid tile, as the index lists them."""
    from affine import Affine
    from rasterio.windows import bounds

    tile = scene.grid.tile(row, col)
    window = {"col_off": tile.x, "row_off": tile.y, "width": tile.width, "height": tile.height}
    return {"row": row, "col": col, "window": window, "bounds": list(bounds(tile.window(), Affine(*scene.transform)))}


def latent_validity(padded_shape: tuple[int, int], shape: tuple[int, int], valid: np.ndarray | None) -> np.ndarray:
    """Valid latent cells of a tile: those whose 16x16 block holds a valid pixel of the scene.

    The same rule as the cells the satellite codes (:func:`fool.shared.geometry.coded_latents`),
    so "valid" means "coded from data", never "filled in by the ground"."""
    from fool.shared.geometry import coded_latents

    return coded_latents(padded_shape, shape, valid)


def _save_tile(folder: Path, scene, row: int, col: int, y_hat: np.ndarray, valid: np.ndarray | None) -> dict:
    tile = scene.grid.tile(row, col)
    array = np.ascontiguousarray(y_hat, dtype=np.float32)
    np.save(folder / tile_file(row, col), array)
    if valid is not None and valid.all():
        valid = None
    pixels = None
    if valid is not None:
        pixels = valid_file(row, col)
        np.save(folder / pixels, np.ascontiguousarray(valid, dtype=bool))
    cells = latent_validity(tile.padded_shape, (tile.height, tile.width), valid)
    if cells.shape != array.shape[-2:]:
        raise FoolError(f"tile ({row}, {col}): latents {array.shape} do not match its {cells.shape} latent grid")
    return _place(scene, row, col) | {
        "file": tile_file(row, col),
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "valid": None if cells.all() else ["".join("1" if v else "0" for v in line) for line in cells],
        "valid_pixels": pixels,
        "valid_fraction": 1.0 if valid is None else round(float(valid.mean()), 6),
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
    """One tile's latents and where they lie; ``array`` is read (memory-mapped) on first use.

    ``valid`` is the tile's validity on the latent grid, ``valid_pixels`` on its window's
    pixels; each is None when all of it is valid (see the module docstring)."""

    row: int
    col: int
    window: object  # rasterio.windows.Window, pixels of the scene
    bounds: tuple[float, float, float, float]  # left, bottom, right, top in the scene CRS
    crs: object  # rasterio CRS, None for a scene without one
    path: Path
    shape: tuple[int, ...]
    dtype: str
    valid_rows: tuple[str, ...] | None = None  # the index's latent validity, rows of "0"/"1"
    valid_pixels_path: Path | None = None
    valid_fraction: float = 1.0  # share of the window's pixels that are valid
    backbone_path: Path | None = None  # feature mode: restored backbone features

    @property
    def array(self) -> np.ndarray:
        return np.load(self.path, mmap_mode="r")

    @property
    def backbone(self) -> np.ndarray | None:
        """Float32 ``(128, h, w)``: the classifier backbone's features restored from the latents
        (written with ``fool decode --feature-model``); None otherwise."""
        return None if self.backbone_path is None else np.load(self.backbone_path, mmap_mode="r")

    @property
    def valid(self) -> np.ndarray | None:
        """Bool ``(h, w)`` on the latent grid (the array's last two axes): True where the latent
        was coded from valid pixels; None when every latent is."""
        if self.valid_rows is None:
            return None
        return np.array([[c == "1" for c in line] for line in self.valid_rows], dtype=bool)

    @property
    def valid_pixels(self) -> np.ndarray | None:
        """Bool ``(height, width)`` over the window: the lossless validity mask; None when every pixel is valid."""
        return None if self.valid_pixels_path is None else np.load(self.valid_pixels_path)


@dataclass(frozen=True)
class AbsentTile:
    """A tile of the grid without latents, and why (one of :data:`ABSENT_REASONS`)."""

    row: int
    col: int
    window: object  # rasterio.windows.Window
    bounds: tuple[float, float, float, float]
    reason: str

    @property
    def unknown(self) -> bool:
        """True when the area's content never reached the ground intact (lost, skipped, damaged).

        False for an all-nodata tile (nothing there) and for an intra tile (its pixels are in
        the image output; only latents are lacking)."""
        return self.reason in ("lost", "skipped", "damaged")


class FeatureSet:
    """A ``<stem>.features`` folder: iterate it for its tiles in raster order."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        try:
            self.index = json.loads((folder / INDEX).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{folder}: not a FOOL features folder ({exc})") from None
        found = self.index.get("format")
        if found == "fool-features/1":
            raise InputError(f"{folder}: written by an older FOOL without validity masks; decode the container again")
        if found != FORMAT:
            raise InputError(f"{folder}: unknown features format {found!r}, expected {FORMAT}")

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
        """Tiles without a payload in the container: lost, skipped or all nodata (see :attr:`absent`)."""
        return [tuple(rc) for rc in self.index.get("missing", [])]

    @property
    def damaged(self) -> list[tuple[int, int]]:
        return [tuple(rc) for rc in self.index.get("damaged", [])]

    @property
    def absent(self) -> list[AbsentTile]:
        """Every tile of the grid that is not among the tiles, with its window, bounds and reason."""
        from rasterio.windows import Window

        return [
            AbsentTile(t["row"], t["col"], Window(**t["window"]), tuple(t["bounds"]), t["reason"])
            for t in self.index["absent"]
        ]

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
                valid_rows=None if t["valid"] is None else tuple(t["valid"]),
                valid_pixels_path=None if t["valid_pixels"] is None else self.folder / t["valid_pixels"],
                valid_fraction=t["valid_fraction"],
                backbone_path=self.folder / t["backbone"] if t.get("backbone") else None,
            )


def open_features(path: str | Path) -> FeatureSet:
    """Open a features folder (or its ``tiles.json``): ``for tile in open_features(p): tile.array, tile.valid ...``."""
    path = Path(path)
    return FeatureSet(path.parent if path.name == INDEX else path)
