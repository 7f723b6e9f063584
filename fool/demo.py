"""`fool demo`: the whole pipeline on one scene, with the numbers an operator asks first."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fool.shared.zoo import DEFAULT_MODEL

DEFAULT_SCENE = Path("scenes/naip/m_4709963_se_14_1_20200831.tif")


def data_dir() -> Path:
    """Team data: $FOOL_DATA, else ../shared/data beside the checkout."""
    env = os.environ.get("FOOL_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def synthetic_scene(path: Path, size: int = 768, bands: int = 4, seed: int = 0) -> Path:
    """A georeferenced uint8 scene with fields, roads and texture, for machines without team data."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.zeros((bands, size, size))
    for _ in range(12):  # fields: smooth patches of different reflectance
        cx, cy, r = rng.random(3)
        patch = (xx - cx) ** 2 + (yy - cy) ** 2 < (0.1 + 0.2 * r) ** 2
        base[:, patch] = rng.uniform(40, 200, (bands, 1))
    base[:, (np.abs(xx - 0.5) < 0.005) | (np.abs(yy - 0.3) < 0.004)] = 230  # roads
    base += 8 * np.sin(40 * xx + 3 * rng.random())[None] + rng.normal(0, 6, base.shape)
    data = np.clip(base, 0, 255).astype(np.uint8)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": bands,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": from_origin(500000, 5000000, 1.0, 1.0),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


@dataclass
class DemoResult:
    scene: Path
    synthetic: bool
    bpp: float
    bpp_per_band: float
    psnr: float
    psnr_per_band: list[float]
    ratio: float
    compress_s: float
    decode_s: float
    tiles: int
    container_bytes: int


def run_demo(
    scene: Path | None = None,
    quality: float | None = None,
    model: str = DEFAULT_MODEL,
    workdir: Path | None = None,
    runtime: str = "torch",
) -> DemoResult:
    import rasterio

    from fool.ground.decode import decode_container, read_header
    from fool.onboard.compress import compress_scene
    from fool.shared.format import Container
    from fool.shared.metrics import compare, peaks_of

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        synthetic = False
        if scene is None:
            scene = data_dir() / DEFAULT_SCENE
            if not scene.exists():
                scene, synthetic = synthetic_scene(work / "synthetic.tif"), True
        container, decoded = work / "scene.fool", work / "scene.decoded.tif"
        t0 = time.perf_counter()
        report = compress_scene(scene, container, model=model, quality=quality, runtime=runtime)
        t1 = time.perf_counter()
        decode_container(container, decoded)
        t2 = time.perf_counter()
        with Container.open(container) as c:
            header = read_header(c)
        q = compare(scene, decoded, header.source_bands, peaks_of(header))
        with rasterio.open(scene) as ds:
            raw_bits = ds.width * ds.height * sum(np.dtype(ds.dtypes[b - 1]).itemsize * 8 for b in header.source_bands)
        return DemoResult(
            scene,
            synthetic,
            report.bpp,
            report.bpp / report.bands,
            q.psnr,
            q.psnr_per_band,
            raw_bits / (8 * report.bytes),
            t1 - t0,
            t2 - t1,
            report.tiles_coded,
            report.bytes,
        )
