"""Compress a scene into a ``.fool`` container: tile, analyse, entropy-code, stream out."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fool.onboard.scene import SceneReader, TileData
from fool.shared import zoo
from fool.shared.errors import InputError, ModelError
from fool.shared.format import FLAG_MASK, VERSION, write_container
from fool.shared.geometry import ALIGN, DEFAULT_TILE, coded_latents
from fool.shared.latent_codec import LatentCodec, quality_code
from fool.shared.scene import MAX_HALO, pack_tile


@dataclass
class CompressReport:
    path: Path
    bytes: int
    pixels: int
    bands: int
    tiles_coded: int
    tiles_skipped: int
    seconds: float
    timings: dict = field(default_factory=dict)
    payload_bytes: int = 0  # tile payloads only: the codestream, without header and tile table
    table_bytes: int = 0  # the tile table

    @property
    def codestream_bytes(self) -> int:
        """What grows with the tiles: their payloads and the tile table. The scene header
        (georeferencing, band ranges, model id) and the 20-byte footer are fixed metadata,
        like a GeoTIFF's tags."""
        return self.payload_bytes + self.table_bytes

    @property
    def bpp(self) -> float:
        """Bits per pixel position, all bands together."""
        return 8 * self.bytes / max(self.pixels, 1)

    @property
    def megapixels_per_second(self) -> float:
        return self.pixels / 1e6 / max(self.seconds, 1e-9)


def _ceil_align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def group_inputs(data: TileData, reader: SceneReader) -> list[np.ndarray]:
    """Raw tile values -> one (3, H, W) unit-range array per band group, padded for the codec.

    With a halo the array is the tile plus its neighbours' pixels; the halo's near sides are
    multiples of ALIGN, so the tile's latents are an exact crop of the halo's (see analyse_tile).
    """
    tile = data.tile
    ph, pw = tile.padded_shape
    ring = data.halo
    values, valid = (ring.values, ring.valid) if ring else (data.values, data.valid)
    unit = np.empty(values.shape, np.float32)
    for i, rng in enumerate(reader.ranges):
        band = rng.to_unit(values[i])
        if valid is not None:
            # invalid pixels cost bits for nothing: replace them by the mean of the valid ones
            band[~valid] = band[valid].mean() if valid.any() else 0.0
        unit[i] = np.nan_to_num(band, nan=0.0)
    top, left, bottom, right = (ring.top, ring.left, ring.bottom, ring.right) if ring else (0, 0, 0, 0)
    rows, cols = top + ph + _ceil_align(bottom), left + pw + _ceil_align(right)
    unit = np.pad(unit, ((0, 0), (0, rows - unit.shape[1]), (0, cols - unit.shape[2])), mode="edge")
    return [unit[[b - 1 for b in g]] if len(g) == 3 else np.repeat(unit[[g[0] - 1]], 3, axis=0) for g in reader.groups]


def analyse_tile(analysis, data: TileData, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> the tile's latents (y, z). With a halo, y is cropped out of the widened analysis and z
    is recomputed from that crop: a hyper-latent that also summarised the neighbours would
    describe the tile's scales worse (uint16 scenes, previous weights: +3.5 % BD-rate against
    plain tiles, +1.8 % with z from the crop)."""
    y, z = analysis(inputs)
    if data.halo is None:
        return y, z
    ph, pw = data.tile.padded_shape
    t, lf = data.halo.top // 16, data.halo.left // 16
    y = np.ascontiguousarray(y[..., t : t + ph // 16, lf : lf + pw // 16])
    return y, analysis.hyper(y)


def load_runtime(runtime: str, model: str, flight_dir: Path | None, threads: int | None):
    """-> (analysis callable, LatentCodec, model name)."""
    if runtime == "onnx":
        from fool.onboard.analysis import OnnxAnalysis

        if flight_dir is None:
            flight_dir = zoo.find(model).onnx_dir
            if not (flight_dir / "manifest.json").exists():
                raise ModelError(
                    f"the ONNX runtime needs a flight export of {model}: run "
                    f"`fool export-onnx --model {model} -o DIR` and pass --flight DIR"
                )
        analysis = OnnxAnalysis(flight_dir, threads)
        codec = LatentCodec.load(Path(flight_dir) / analysis.manifest["tables"])
        return analysis, codec
    if runtime == "torch":
        from fool.onboard.analysis import TorchAnalysis

        files = zoo.find(model)
        return TorchAnalysis(files, threads), LatentCodec.load(files.tables)
    raise InputError(f"unknown runtime {runtime!r}; use 'torch' or 'onnx'")


def compress_scene(
    src: Path,
    dst: Path,
    model: str | None = None,
    quality: float = zoo.DEFAULT_QUALITY,
    tile_size: int = DEFAULT_TILE,
    bands: list[int] | None = None,
    band_groups: str | None = None,
    runtime: str = "torch",
    flight_dir: Path | None = None,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    engine=None,
    halo: int = 0,
    value_range: str = "scene",
    container_version: int = VERSION,
) -> CompressReport:
    """Compress ``src`` into ``dst``; ``dst`` appears only when the whole scene is written.

    ``model`` None picks the shipped model for the scene's dtype (:func:`shared.zoo.model_for`).
    ``engine`` is a preloaded ``load_runtime(...)`` result, for callers that code many scenes.
    ``halo`` (pixels, a multiple of 64) turns on inter-tile context: each tile is analysed
    with that much of its neighbours and the ground synthesises it with its neighbours'
    latents. Every tile still decodes alone (see ground.decode). ``container_version`` writes an
    older layout that ground stations not yet upgraded can read (docs/format.md).
    """
    start = time.perf_counter()
    if Path(dst).exists() and Path(dst).resolve() == Path(src).resolve():
        raise InputError(f"output {dst} is the input scene; choose another -o")
    if halo < 0 or halo % ALIGN or halo > MAX_HALO:
        raise InputError(f"halo must be 0 or a multiple of {ALIGN} up to {MAX_HALO} pixels, got {halo}")
    with SceneReader(src, tile_size, bands, band_groups, value_range) as reader:
        analysis, codec = engine or load_runtime(runtime, model or zoo.model_for(reader.dtype), flight_dir, threads)
        try:
            code = quality_code(quality, codec.levels)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        header = {
            "format": "fool",
            "scene": reader.profile_header(),
            "model": {"name": codec.name, "sha256": codec.weights_sha256, "id": codec.model_id},
            "quality": quality,
            "runtime": analysis.name,
        }
        header["scene"] |= {"model_name": codec.name, "model_sha256": codec.weights_sha256, "halo": halo}
        coded = skipped = 0
        timings = {"analysis_s": 0.0, "entropy_s": 0.0}
        total = len(reader.grid)

        def analyse(data: TileData):
            """Worker thread: the runtime releases the GIL, so the next tile's analysis
            overlaps this tile's (partly single-threaded) entropy coding and container writing."""
            if data.valid is not None and not data.valid.any():
                return data, None
            t0 = time.perf_counter()
            latents = analyse_tile(analysis, data, np.stack(group_inputs(data, reader)))
            timings["analysis_s"] += time.perf_counter() - t0
            return data, latents

        with write_container(Path(dst), header, container_version) as out, ThreadPoolExecutor(1) as pool:
            pending: deque = deque()
            done = 0

            def finish(data: TileData, latents) -> None:
                nonlocal coded, skipped, done
                if latents is None:
                    skipped += 1
                else:
                    t1 = time.perf_counter()
                    y, z = latents
                    tile = data.tile
                    groups = range(len(reader.groups))
                    sent = None  # version 1 sent every latent of the padded tile
                    if container_version >= 2:
                        sent = coded_latents(tile.padded_shape, (tile.height, tile.width), data.valid)
                    if container_version >= 3:
                        streams = [codec.encode_tile([(y[g], z[g]) for g in groups], code, sent)]
                    else:
                        streams = [codec.encode(y[g], z[g], code, sent) for g in groups]
                    payload = pack_tile(streams, data.valid, container_version)
                    timings["entropy_s"] += time.perf_counter() - t1
                    flags = FLAG_MASK if data.valid is not None else 0
                    out.add_tile(data.tile.row, data.tile.col, payload, code, flags)
                    coded += 1
                done += 1
                if progress:
                    progress(done, total)

            for data in reader.tiles(halo):
                pending.append(pool.submit(analyse, data))
                if len(pending) > 1:  # at most two tiles in flight: memory stays flat
                    finish(*pending.popleft().result())
            while pending:
                finish(*pending.popleft().result())
        size = Path(dst).stat().st_size
        payload_bytes = sum(e.length for e in out.entries)
        table_bytes = out.table_bytes
        pixels = reader.ds.width * reader.ds.height
        nbands = len(reader.bands)
    return CompressReport(
        Path(dst),
        size,
        pixels,
        nbands,
        coded,
        skipped,
        time.perf_counter() - start,
        timings,
        payload_bytes,
        table_bytes,
    )
