"""Decode a ``.fool`` container into a GeoTIFF with the source's georeferencing."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.errors import ContainerError, FoolError, OutputError
from shared.format import FLAG_MASK, Container, TileEntry
from shared.geometry import Tile
from shared.scene import GDAL_CACHE_MB, SceneHeader, unpack_tile


@dataclass
class DecodeReport:
    path: Path
    tiles: int
    seconds: float
    failed: list[tuple[int, int]]


def read_header(container: Container) -> SceneHeader:
    scene = container.header.get("scene")
    if not isinstance(scene, dict):
        raise ContainerError(f"{container.name}: header has no scene description")
    return SceneHeader.from_dict(scene)


def decode_tile(
    entry: TileEntry, payload: bytes, scene: SceneHeader, synthesis
) -> tuple[np.ndarray, np.ndarray | None]:
    """One tile -> (raw values (k, h, w) in the scene dtype, validity mask or None)."""
    tile: Tile = scene.grid.tile(entry.row, entry.col)
    ph, pw = tile.padded_shape
    parts, valid = unpack_tile(payload, len(scene.groups), bool(entry.flags & FLAG_MASK), (tile.height, tile.width))
    codec = synthesis.codec
    y_hats = np.stack([codec.decode(p, (ph // 16, pw // 16), entry.quality) for p in parts])
    x_hat = synthesis(y_hats)[:, :, : tile.height, : tile.width]
    out = np.empty((scene.count, tile.height, tile.width), dtype=scene.dtype)
    for g, group in enumerate(scene.groups):
        unit = x_hat[g] if len(group) == 3 else x_hat[g].mean(axis=0, keepdims=True)
        for j, band in enumerate(group):
            out[band - 1] = scene.band_range(band).from_unit(unit[j], scene.dtype)
    if scene.mask in ("nodata", "nan"):
        apply_mask(out, valid if valid is not None else np.ones(out.shape[1:], bool), scene)
    return out, valid


def apply_mask(out: np.ndarray, valid: np.ndarray, scene: SceneHeader) -> None:
    if scene.mask == "nodata" and scene.nodata is not None:
        nd = scene.nodata
        if not (isinstance(nd, float) and math.isnan(nd)) and np.issubdtype(out.dtype, np.integer):
            # a valid pixel must not decode to the nodata value, or readers would drop it
            info = np.iinfo(out.dtype)
            bump = 1 if nd < info.max else -1
            clash = (out == nd) & valid[None]
            out[clash] = nd + bump
        out[:, ~valid] = nd
    elif scene.mask == "nan":
        out[:, ~valid] = np.nan


def _check_entries(entries: list[TileEntry], scene: SceneHeader) -> None:
    grid = scene.grid
    seen = set()
    for e in entries:
        if not (0 <= e.row < grid.rows and 0 <= e.col < grid.cols):
            raise ContainerError(f"tile ({e.row}, {e.col}) is outside the {grid.rows}x{grid.cols} grid")
        if (e.row, e.col) in seen:
            raise ContainerError(f"tile ({e.row}, {e.col}) appears twice")
        seen.add((e.row, e.col))


def output_profile(scene: SceneHeader) -> dict:
    from affine import Affine
    from rasterio.crs import CRS

    profile = {
        "driver": "GTiff",
        "width": scene.width,
        "height": scene.height,
        "count": scene.count,
        "dtype": scene.dtype,
        "crs": CRS.from_wkt(scene.crs_wkt) if scene.crs_wkt else None,
        "transform": Affine(*scene.transform),
        "nodata": scene.nodata,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
    }
    if scene.count == 3 and scene.dtype == "uint8":
        profile["photometric"] = "RGB" if scene.colorinterp[:3] == ["red", "green", "blue"] else "MINISBLACK"
    return profile


def decode_container(
    src: Path,
    dst: Path,
    threads: int | None = None,
    skip_damaged: bool = False,
    progress: Callable[[int, int], None] | None = None,
    synthesis=None,
) -> DecodeReport:
    """Decode every tile of ``src`` into the GeoTIFF ``dst`` (written atomically).

    Missing tiles (all-nodata, or lost) are written as nodata/masked. With ``skip_damaged``
    a tile that fails its CRC is left empty and reported instead of aborting the scene.
    """
    import rasterio
    from rasterio.enums import ColorInterp

    from ground.synthesis import TorchSynthesis

    start = time.perf_counter()
    dst = Path(dst)
    if dst.exists() and dst.resolve() == Path(src).resolve():
        raise OutputError(f"output {dst} is the input container; choose another -o")
    with Container.open(src) as container:
        scene = read_header(container)
        _check_entries(container.tiles, scene)
        if synthesis is None or synthesis.codec.weights_sha256 != scene.model_sha256:
            synthesis = TorchSynthesis(scene.model_name, scene.model_sha256, threads)
        tmp = dst.with_name(f".{dst.name}.partial.tif")
        failed: list[tuple[int, int]] = []
        try:
            env = rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True, GDAL_CACHEMAX=GDAL_CACHE_MB)
            with env, rasterio.open(tmp, "w", **output_profile(scene)) as out:
                interp = [
                    ColorInterp[c] if c in ColorInterp.__members__ else ColorInterp.undefined for c in scene.colorinterp
                ]
                try:
                    out.colorinterp = interp
                except (ValueError, rasterio.errors.RasterioError):
                    pass
                for i, d in enumerate(scene.descriptions, start=1):
                    if d:
                        out.set_band_description(i, d)
                for i, entry in enumerate(container.tiles):
                    try:
                        values, valid = decode_tile(entry, container.payload(entry), scene, synthesis)
                    except FoolError:
                        if not skip_damaged:
                            raise
                        failed.append((entry.row, entry.col))
                        continue
                    window = scene.grid.tile(entry.row, entry.col).window()
                    out.write(values, window=window)
                    if scene.mask == "internal":
                        out.write_mask(valid if valid is not None else True, window=window)
                    if progress:
                        progress(i + 1, len(container.tiles))
                _fill_missing(out, scene, {(e.row, e.col) for e in container.tiles} - set(failed))
            os.replace(tmp, dst)
        except rasterio.errors.RasterioIOError as exc:
            raise OutputError(f"cannot write {dst}: {exc}") from None
        finally:
            tmp.unlink(missing_ok=True)
    return DecodeReport(dst, len(container.tiles), time.perf_counter() - start, failed)


def _fill_missing(out, scene: SceneHeader, present: set[tuple[int, int]]) -> None:
    """Tiles not in the container (all nodata, lost or damaged) read back as nodata/masked."""
    fill = scene.nodata if scene.nodata is not None else (np.nan if scene.mask == "nan" else 0)
    for tile in scene.grid:
        if (tile.row, tile.col) in present:
            continue
        window = tile.window()
        out.write(np.full((scene.count, tile.height, tile.width), fill, dtype=scene.dtype), window=window)
        if scene.mask == "internal":
            out.write_mask(np.zeros((tile.height, tile.width), bool), window=window)
