"""Compress a scene into a ``.fool`` container: tile, analyse, entropy-code, stream out."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from onboard.scene import SceneReader, TileData
from shared import zoo
from shared.errors import InputError
from shared.format import FLAG_MASK, write_container
from shared.latent_codec import LatentCodec, quality_code
from shared.scene import pack_tile

DEFAULT_TILE = 512


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

    @property
    def bpp(self) -> float:
        """Bits per pixel position, all bands together."""
        return 8 * self.bytes / max(self.pixels, 1)

    @property
    def megapixels_per_second(self) -> float:
        return self.pixels / 1e6 / max(self.seconds, 1e-9)


def group_inputs(data: TileData, reader: SceneReader) -> list[np.ndarray]:
    """Raw tile values -> one (3, H, W) unit-range array per band group, padded for the codec."""
    tile = data.tile
    ph, pw = tile.padded_shape
    unit = np.empty((len(reader.bands), tile.height, tile.width), np.float32)
    for i, rng in enumerate(reader.ranges):
        band = rng.to_unit(data.values[i])
        if data.valid is not None:
            # invalid pixels cost bits for nothing: replace them by the mean of the valid ones
            band[~data.valid] = band[data.valid].mean() if data.valid.any() else 0.0
        unit[i] = np.nan_to_num(band, nan=0.0)
    unit = np.pad(unit, ((0, 0), (0, ph - tile.height), (0, pw - tile.width)), mode="edge")
    return [unit[[b - 1 for b in g]] if len(g) == 3 else np.repeat(unit[[g[0] - 1]], 3, axis=0) for g in reader.groups]


def load_runtime(runtime: str, model: str, flight_dir: Path | None, threads: int | None):
    """-> (analysis callable, LatentCodec, model name)."""
    if runtime == "onnx":
        from onboard.analysis import OnnxAnalysis

        if flight_dir is None:
            flight_dir = zoo.find(model).onnx_dir
        analysis = OnnxAnalysis(flight_dir, threads)
        codec = LatentCodec.load(Path(flight_dir) / analysis.manifest["tables"])
        return analysis, codec
    if runtime == "torch":
        from onboard.analysis import TorchAnalysis

        files = zoo.find(model)
        return TorchAnalysis(files, threads), LatentCodec.load(files.tables)
    raise InputError(f"unknown runtime {runtime!r}; use 'torch' or 'onnx'")


def compress_scene(
    src: Path,
    dst: Path,
    model: str = zoo.DEFAULT_MODEL,
    quality: float = zoo.DEFAULT_QUALITY,
    tile_size: int = DEFAULT_TILE,
    bands: list[int] | None = None,
    band_groups: str | None = None,
    runtime: str = "torch",
    flight_dir: Path | None = None,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    engine=None,
) -> CompressReport:
    """Compress ``src`` into ``dst``; ``dst`` appears only when the whole scene is written.

    ``engine`` is a preloaded ``load_runtime(...)`` result, for callers that code many scenes.
    """
    start = time.perf_counter()
    if Path(dst).exists() and Path(dst).resolve() == Path(src).resolve():
        raise InputError(f"output {dst} is the input scene; choose another -o")
    with SceneReader(src, tile_size, bands, band_groups) as reader:
        analysis, codec = engine or load_runtime(runtime, model, flight_dir, threads)
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
        header["scene"] |= {"model_name": codec.name, "model_sha256": codec.weights_sha256}
        coded = skipped = 0
        t_an = t_ec = 0.0
        total = len(reader.grid)
        with write_container(Path(dst), header) as out:
            for i, data in enumerate(reader.tiles()):
                if data.valid is not None and not data.valid.any():
                    skipped += 1
                else:
                    t0 = time.perf_counter()
                    x = np.stack(group_inputs(data, reader))
                    y, z = analysis(x)
                    t1 = time.perf_counter()
                    parts = [codec.encode(y[g], z[g], code) for g in range(len(reader.groups))]
                    payload = pack_tile(parts, data.valid)
                    t_ec += time.perf_counter() - t1
                    t_an += t1 - t0
                    out.add_tile(
                        data.tile.row, data.tile.col, payload, code, FLAG_MASK if data.valid is not None else 0
                    )
                    coded += 1
                if progress:
                    progress(i + 1, total)
        size = Path(dst).stat().st_size
        payload_bytes = sum(e.length for e in out.entries)
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
        {"analysis_s": t_an, "entropy_s": t_ec},
        payload_bytes,
    )
