"""Onboard throughput and peak memory of `fool compress` on a large scene built from real tiles.

    python bench/throughput.py --size 4096 --bands 4 --runtime onnx        # issue 5: MP/s, RSS
    python bench/throughput.py --size 20000 --bands 1 --runtime torch      # issue 2: memory bound

The scene is a mosaic of the team's NAIP scene (4-band uint8) or WorldView-3 pan
(1-band 11-bit uint16), mirrored to fill the size, written as a tiled GeoTIFF by windows.
`fool compress` runs in a child process; wall time includes start-up and model loading,
peak RSS is the child's maximum resident set and CPU time its user + system time
(getrusage). Results go to bench/results/; bench/speed.py compares with JPEG 2000 and JPEG XL.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FOOL_DATA", ROOT.parent / "shared" / "data"))


def build_scene(path: Path, size: int, bands: int) -> Path:
    src = DATA / "scenes" / ("naip/m_4709963_se_14_1_20200831.tif" if bands == 4 else "worldview3/road_scene_pan.tif")
    with rasterio.open(src) as ds:
        patch = ds.read(list(range(1, bands + 1)))
        dtype = ds.dtypes[0]
    tile = np.concatenate([patch, patch[:, :, ::-1]], axis=2)
    tile = np.concatenate([tile, tile[:, ::-1]], axis=1)  # mirrored: seamless, real texture
    th, tw = tile.shape[1:]
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": bands,
        "dtype": dtype,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "crs": "EPSG:32614",
        "BIGTIFF": "YES",
        "transform": from_origin(500000, 5000000, 1.0, 1.0),
    }
    with rasterio.open(path, "w", **profile) as dst:
        for y in range(0, size, 512):
            for x in range(0, size, 512):
                h, w = min(512, size - y), min(512, size - x)
                yy = (np.arange(y, y + h) % th)[:, None]
                xx = (np.arange(x, x + w) % tw)[None, :]
                dst.write(tile[:, yy, xx], window=Window(x, y, w, h))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--bands", type=int, choices=(1, 4), default=4)
    ap.add_argument("--runtime", choices=("onnx", "torch"), default="onnx")
    ap.add_argument("--quality", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--halo", type=int, default=0, help="inter-tile context (pixels) to time its overhead")
    ap.add_argument("--tile-size", type=int, default=None, help="[default: fool compress's]")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        scene = build_scene(tmp / "scene.tif", args.size, args.bands)
        cmd = [
            sys.executable,
            "-m",
            "fool.cli",
            "compress",
            str(scene),
            "-o",
            str(tmp / "scene.fool"),
            "-q",
            str(args.quality),
            "--runtime",
            args.runtime,
            "--threads",
            str(args.threads),
            "--halo",
            str(args.halo),
        ]
        if args.tile_size:
            cmd += ["--tile-size", str(args.tile_size)]
        if args.runtime == "onnx":
            subprocess.run([sys.executable, "-m", "fool.cli", "export-onnx", "-o", str(tmp / "flight")], check=True)
            cmd += ["--flight", str(tmp / "flight")]
        t0 = time.perf_counter()
        with open(tmp / "stdout", "w") as so, open(tmp / "stderr", "w") as se:
            proc = subprocess.Popen(cmd, stdout=so, stderr=se)
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS, not the export's
        wall = time.perf_counter() - t0
        stdout = (tmp / "stdout").read_text()
        if os.waitstatus_to_exitcode(status):
            raise SystemExit(f"fool compress failed: {(tmp / 'stderr').read_text()}")
        rss_mb = usage.ru_maxrss / 1024
        size = (tmp / "scene.fool").stat().st_size
    mp = args.size**2 / 1e6
    result = {
        "size": args.size,
        "bands": args.bands,
        "runtime": args.runtime,
        "threads": args.threads,
        "quality": args.quality,
        "halo": args.halo,
        "tile_size": args.tile_size or "default",
        "megapixels": mp,
        "wall_s": round(wall, 2),
        "mp_per_s": round(mp / wall, 3),
        "peak_rss_mb": round(rss_mb, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),  # the child's user + system time
        "sys_s": round(usage.ru_stime, 2),
        "bpp": round(8 * size / args.size**2, 4),
        "fool_output": stdout.strip(),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    halo = f"_halo{args.halo}" if args.halo else ""
    tile = f"_tile{args.tile_size}" if args.tile_size else ""
    name = f"onboard_{args.runtime}_{args.bands}b_{args.size}{halo}{tile}.json"
    (results / name).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
