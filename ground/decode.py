"""Decode a ``.fool`` container into a GeoTIFF with the source's georeferencing."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fool.shared import intra
from fool.shared.errors import ContainerError, FoolError, OutputError
from fool.shared.format import FLAG_MASK, MODE_INTRA, MODE_LOST, MODE_SKIPPED, Container, TileEntry
from fool.shared.geometry import Tile, coded_latents
from fool.shared.latent_codec import LatentCodec, dequantise, fill_unsent
from fool.shared.runtime import SynthesisRuntime, single_blas_thread
from fool.shared.scene import GDAL_CACHE_MB, SceneHeader, keep_off_nodata, unpack_tile

#: tiles rendered together: with a synthesis that runs tiles in parallel
#: (``synthesis.parallel`` > 1, ONNX Runtime) they share out the cores; it bounds their pixels in memory
RENDER_BATCH = 16


@dataclass
class DecodeReport:
    path: Path
    tiles: int
    seconds: float
    failed: list[tuple[int, int]]
    skipped: list[tuple[int, int]] = field(default_factory=list)  # not sent by the onboard side (priority, budget)
    lost: list[tuple[int, int]] = field(default_factory=list)  # known to the reassembly, not received intact

    @property
    def partial(self) -> bool:
        """Some tiles are missing from the image: damaged, or lost on the link."""
        return bool(self.failed or self.lost)


def read_header(container: Container) -> SceneHeader:
    """The container's validated scene header (kept for callers; it is ``container.scene``)."""
    return container.scene


@dataclass
class TileLatents:
    """A decoded tile before rendering: latents of a learned tile, or the raw values of an intra one."""

    y_hat: np.ndarray | None  # (groups, M, h, w) dequantised latents, h and w at 1/16 of the padded tile
    valid: np.ndarray | None
    values: np.ndarray | None = None  # (bands, h, w) raw values of an intra tile (no synthesis)


def decode_latents(entry: TileEntry, payload: bytes, scene: SceneHeader, codec) -> TileLatents:
    """The bit-exact half of decoding a tile: payload -> latents (no neighbour is needed).

    Only latents over valid pixels were sent; the rest are symbol 0 (their predicted means)
    in the bit-exact part, then :func:`fill_unsent`. All band groups share one stream. An intra
    tile has no latents (ContainerError)."""
    request, valid = _latent_request(entry, payload, scene)
    return _tile_latents(codec.decode_tile_symbols(*request), request[4], valid)


def decode_latents_many(
    tiles: list[tuple[TileEntry, bytes]], scene: SceneHeader, codec
) -> list[TileLatents | FoolError]:
    """:func:`decode_latents` of many tiles at once (the integer hyper-synthesis then runs in
    batches across them: :meth:`LatentCodec.decode_tiles_symbols`), with the same values. A
    tile that fails gets its error in its place; the others decode."""
    out: list = [None] * len(tiles)
    requests, where = [], []
    for i, (entry, payload) in enumerate(tiles):
        try:
            requests.append(_latent_request(entry, payload, scene))
            where.append(i)
        except FoolError as exc:
            out[i] = exc
    decoded = codec.decode_tiles_symbols([request for request, _ in requests])
    for i, (request, valid), symbols in zip(where, requests, decoded, strict=True):
        out[i] = symbols if isinstance(symbols, FoolError) else _tile_latents(symbols, request[4], valid)
    return out


def _latent_request(entry: TileEntry, payload: bytes, scene: SceneHeader):
    """-> ((stream, groups, latent shape, quality code, coded latents), valid pixels) of a learned tile."""
    if entry.mode == MODE_INTRA:
        raise ContainerError(f"tile ({entry.row}, {entry.col}) is coded with a classical intra mode: it has no latents")
    tile: Tile = scene.grid.tile(entry.row, entry.col)
    ph, pw = tile.padded_shape
    shape = (tile.height, tile.width)
    stream, valid = unpack_tile(payload, bool(entry.flags & FLAG_MASK), shape)
    coded = coded_latents((ph, pw), shape, valid)
    return (stream, len(scene.groups), (ph // 16, pw // 16), entry.quality, coded), valid


def _tile_latents(symbols, coded: np.ndarray | None, valid: np.ndarray | None) -> TileLatents:
    return TileLatents(np.stack([fill_unsent(dequantise(*s), coded) for s in symbols]), valid)


def decode_intra(entry: TileEntry, payload: bytes, scene: SceneHeader) -> TileLatents:
    """An intra tile -> its raw values (:mod:`fool.shared.intra`; exact on every machine for
    5/3 and JPEG-LS, within one grey level across OpenJPEG builds for 9/7), lossy JPEG 2000
    samples moved off nodata as learned ones are."""
    tile: Tile = scene.grid.tile(entry.row, entry.col)
    shape = (tile.height, tile.width)
    stream, valid = unpack_tile(payload, bool(entry.flags & FLAG_MASK), shape)
    values = intra.decode(stream, scene.groups, shape, scene.dtype)
    if scene.mask == "nodata" and scene.nodata is not None:
        if intra.codec_of(stream) != "jpegls":
            # lossy JPEG 2000: as render_tile, on every tile of the scene; JPEG-LS tiles are kept
            # off nodata by the encoder (lossless where NEAR would land on it), so a max-error
            # guarantee holds unbumped
            keep_off_nodata(values, valid, scene.nodata)
        if valid is not None:
            values[:, ~valid] = scene.nodata
    return TileLatents(None, valid, values)


def latent_canvas(own: np.ndarray, neighbours: dict[tuple[int, int], np.ndarray | None], k: int):
    """A tile's latents widened by ``k`` latent pixels of each neighbour that arrived.

    Sides whose neighbour is missing (scene edge, lost or damaged packet) are not widened,
    so the synthesis falls back to what it does for a lone tile there: a lost neighbour
    costs quality at one border, never the tile. -> (canvas, top, left) in latent pixels.
    """

    def n(dr: int, dc: int) -> np.ndarray | None:
        return neighbours.get((dr, dc))

    h, w = own.shape[-2:]
    up, down, west, east = n(-1, 0), n(1, 0), n(0, -1), n(0, 1)
    top = min(k, up.shape[-2]) if up is not None else 0
    bottom = min(k, down.shape[-2]) if down is not None else 0
    left = min(k, west.shape[-1]) if west is not None else 0
    right = min(k, east.shape[-1]) if east is not None else 0
    canvas = np.zeros((*own.shape[:-2], top + h + bottom, left + w + right), np.float32)
    canvas[..., top : top + h, left : left + w] = own
    rows = {-1: slice(0, top), 0: slice(top, top + h), 1: slice(top + h, top + h + bottom)}
    cols = {-1: slice(0, left), 0: slice(left, left + w), 1: slice(left + w, left + w + right)}
    take_r = {-1: slice(-top, None) if top else slice(0, 0), 0: slice(None), 1: slice(0, bottom)}
    take_c = {-1: slice(-left, None) if left else slice(0, 0), 0: slice(None), 1: slice(0, right)}
    for (dr, dc), lat in neighbours.items():
        if lat is None or (dr, dc) == (0, 0):
            continue
        target = canvas[..., rows[dr], cols[dc]]
        if target.size:
            target[...] = lat[..., take_r[dr], take_c[dc]]
    return canvas, top, left


def render_tile(
    tile: Tile, latents: TileLatents, scene: SceneHeader, synthesis: SynthesisRuntime, neighbours: dict | None = None
) -> np.ndarray:
    """Latents (plus neighbours' when the container was coded with a halo) -> raw values (k, h, w);
    an intra tile's values as they decoded."""
    if latents.values is not None:
        return latents.values
    assert latents.y_hat is not None
    k = scene.halo // 16
    if k and neighbours:
        canvas, top, left = latent_canvas(latents.y_hat, neighbours, k)
    else:
        canvas, top, left = latents.y_hat, 0, 0
    y0, x0 = top * 16, left * 16
    x_hat = synthesis(canvas)[:, :, y0 : y0 + tile.height, x0 : x0 + tile.width]
    out = np.empty((scene.count, tile.height, tile.width), dtype=scene.dtype)
    for g, group in enumerate(scene.groups):
        unit = x_hat[g] if len(group) == 3 else x_hat[g].mean(axis=0, keepdims=True)
        for j, band in enumerate(group):
            out[band - 1] = scene.band_range(band).from_unit(unit[j], scene.dtype)
    if scene.mask in ("nodata", "nan"):
        valid = latents.valid
        apply_mask(out, valid if valid is not None else np.ones(out.shape[1:], bool), scene)
    return out


def apply_mask(out: np.ndarray, valid: np.ndarray, scene: SceneHeader) -> None:
    if scene.mask == "nodata" and scene.nodata is not None:
        keep_off_nodata(out, valid, scene.nodata)
        out[:, ~valid] = scene.nodata
    elif scene.mask == "nan":
        out[:, ~valid] = np.nan


def output_profile(scene: SceneHeader) -> dict:
    from affine import Affine
    from rasterio.crs import CRS

    profile = {
        "driver": "GTiff",
        "width": scene.width,
        "height": scene.height,
        "count": scene.count,
        "dtype": scene.dtype,
        "crs": CRS.from_user_input(scene.crs) if scene.crs else None,
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


class TileSource:
    """Latents of a container's tiles, each entropy-decoded once (also when it serves as a
    neighbour of a halo container), keeping only the rows a halo can reach."""

    def __init__(self, container: Container, codec: LatentCodec, skip_damaged: bool) -> None:
        self.container, self.codec, self.skip_damaged = container, codec, skip_damaged
        self.entries = {(e.row, e.col): e for e in container.coded_tiles}
        self._rows: dict[int, list[TileEntry]] = {}  # tiles not decoded yet, by row
        for rc, entry in sorted(self.entries.items()):
            self._rows.setdefault(rc[0], []).append(entry)
        self.failed: list[tuple[int, int]] = []
        self._cache: dict[tuple[int, int], TileLatents | None] = {}

    def at(self, rc: tuple[int, int]) -> TileLatents | None:
        if rc not in self._cache:
            self._decode_row(rc[0])
        return self._cache.get(rc)

    def _decode_row(self, row: int) -> None:
        """Every tile of ``row`` not decoded yet: learned ones together (:func:`decode_latents_many`)."""
        learned: list[tuple[TileEntry, bytes]] = []
        for entry in self._rows.pop(row, []):
            rc = (entry.row, entry.col)
            self._cache[rc] = None
            try:
                payload = self.container.payload(entry)
                if entry.mode == MODE_INTRA:
                    self._cache[rc] = decode_intra(entry, payload, self.container.scene)
                else:
                    learned.append((entry, payload))
            except FoolError:
                if not self.skip_damaged:
                    raise
                self.failed.append(rc)
        decoded = decode_latents_many(learned, self.container.scene, self.codec)
        for (entry, _), result in zip(learned, decoded, strict=True):
            if isinstance(result, FoolError):
                if not self.skip_damaged:
                    raise result
                self.failed.append((entry.row, entry.col))
            else:
                self._cache[(entry.row, entry.col)] = result

    def forget_above(self, row: int) -> None:
        for old in [rc for rc in self._cache if rc[0] < row - 1]:
            del self._cache[old]

    def neighbours(self, row: int, col: int) -> dict[tuple[int, int], np.ndarray | None]:
        """The 8 neighbours' latents (None where lost, damaged or intra) for a halo container."""
        scene = self.container.scene
        out: dict[tuple[int, int], np.ndarray | None] = {}
        if not scene.halo:
            return out
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                r, c = row + dr, col + dc
                if (dr or dc) and 0 <= r < scene.grid.rows and 0 <= c < scene.grid.cols:
                    lat = self.at((r, c))
                    out[(dr, dc)] = None if lat is None else lat.y_hat
        return out


def _open_output(tmp: Path, scene: SceneHeader):
    """The output GeoTIFF with the source's profile, colour interpretation and band descriptions."""
    import rasterio
    from rasterio.enums import ColorInterp

    out = rasterio.open(tmp, "w", **output_profile(scene))
    interp = [ColorInterp[c] if c in ColorInterp.__members__ else ColorInterp.undefined for c in scene.colorinterp]
    try:
        out.colorinterp = interp
    except (ValueError, rasterio.errors.RasterioError):
        pass
    for i, d in enumerate(scene.descriptions, start=1):
        if d:
            out.set_band_description(i, d)
    return out


def _write_tile(out, scene: SceneHeader, tile: Tile, values: np.ndarray, valid: np.ndarray | None) -> None:
    window = tile.window()
    out.write(values, window=window)
    if scene.mask == "internal":
        # an array, never True: rasterio's write_mask(True) marks the whole band valid,
        # window or not, and wiped the masks of earlier tiles
        out.write_mask(valid if valid is not None else np.ones(values.shape[1:], bool), window=window)


def decode_container(
    src: Path,
    dst: Path,
    threads: int | None = None,
    skip_damaged: bool = False,
    progress: Callable[[int, int], None] | None = None,
    synthesis: SynthesisRuntime | None = None,
    runtime: str = "torch",
    variant: str | None = None,
) -> DecodeReport:
    """Decode every tile of ``src`` into the GeoTIFF ``dst`` (written atomically).

    Missing tiles (all-nodata, skipped on board, lost on the link) are written as
    nodata/masked. With ``skip_damaged`` a tile that fails its CRC is left empty and reported
    instead of aborting the scene. Containers coded with a halo are synthesised tile by tile on
    a canvas of the tile's latents and its neighbours', so tile borders look as if the scene was
    coded whole. Without a ``synthesis`` of the container's model, one of ``runtime`` ("torch"
    or "onnx", :mod:`ground.synthesis`) is loaded: the model's own synthesis, or its shipped
    ``variant`` (e.g. "fast").
    """
    import rasterio
    from fool.ground.synthesis import load_synthesis

    start = time.perf_counter()
    dst = Path(dst)
    if dst.exists() and dst.resolve() == Path(src).resolve():
        raise OutputError(f"output {dst} is the input container; choose another -o")
    with Container.open(src) as container:
        scene = container.scene
        if synthesis is None or not scene.model_matches(synthesis.codec.weights_sha256):
            synthesis = load_synthesis(runtime, scene.model_name, scene.model_sha256, threads, variant)
        source = TileSource(container, synthesis.codec, skip_damaged)
        tmp = dst.with_name(f".{dst.name}.partial.tif")
        try:
            env = rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True, GDAL_CACHEMAX=GDAL_CACHE_MB)
            workers = getattr(synthesis, "parallel", 1)
            pool = ThreadPoolExecutor(workers) if workers > 1 else None
            submit = pool.submit if pool is not None else _run_now
            with env, single_blas_thread(), _open_output(tmp, scene) as out:
                order = sorted(source.entries)
                for first in range(0, len(order), RENDER_BATCH):
                    jobs = []
                    for row, col in order[first : first + RENDER_BATCH]:
                        source.forget_above(row)
                        latents = source.at((row, col))
                        if latents is not None:
                            tile = scene.grid.tile(row, col)
                            job = (tile, latents, scene, synthesis, source.neighbours(row, col))
                            jobs.append((tile, latents, submit(render_tile, *job)))
                    for tile, latents, values in jobs:  # written in order, as they were before
                        _write_tile(out, scene, tile, values.result(), latents.valid)
                    if progress:
                        progress(min(first + RENDER_BATCH, len(order)), len(order))
                _fill_missing(out, scene, set(source.entries) - set(source.failed))
            if pool is not None:
                pool.shutdown()
            os.replace(tmp, dst)
        except rasterio.errors.RasterioIOError as exc:
            raise OutputError(f"cannot write {dst}: {exc}") from None
        finally:
            tmp.unlink(missing_ok=True)
    skipped = [(e.row, e.col) for e in container.tiles if e.mode == MODE_SKIPPED]
    lost = [(e.row, e.col) for e in container.tiles if e.mode == MODE_LOST]
    return DecodeReport(dst, len(source.entries), time.perf_counter() - start, source.failed, skipped, lost)


def _run_now(fn: Callable[..., np.ndarray], *args) -> Future:
    """``fn(*args)`` run here, as the future a thread pool's submit would return."""
    done: Future = Future()
    done.set_result(fn(*args))
    return done


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
