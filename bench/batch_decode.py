"""Ground batch decode throughput: MP/s and scenes/s on a local pool (1 and 2 workers) and a Dask
LocalCluster (2 worker processes, 1 thread each, loopback), all decoding the same batch.

    python bench/batch_decode.py [--batch team|naip] [--copies 4] [--quality 3]

``--batch team`` (default) is every integer scene in the team folder's ``scenes/`` (NAIP dates,
Landsat, WorldView-3 pan, misc), each compressed once with ``fool compress`` (float scenes are
left out: the container takes integer samples). ``--batch naip`` is ``--copies`` copies of one
NAIP scene (934x723, 4-band uint8). Each configuration decodes it into a fresh folder with
``fool.ground.batch.run_batch`` (image output, 1 torch thread per scene); wall time includes
starting worker processes and loading the model in each, as an operator's run does; the ONNX
export of each model's synthesis (once per machine, cached) is made before the clocks start. The Dask
cluster is started before the clock starts (it is infrastructure), its workers load the
model in their first task. Every run's pixels are checked equal to the first run's.
Results go to bench/results/batch_decode.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FOOL_DATA", ROOT.parent / "shared" / "data"))
SCENE = DATA / "scenes" / "naip" / "m_4709963_se_14_1_20200831.tif"


def team_scenes() -> list[Path]:
    """Every integer-valued GeoTIFF under the team folder's scenes/."""
    found = []
    for tif in sorted((DATA / "scenes").rglob("*.tif")):
        with rasterio.open(tif) as ds:
            if np.issubdtype(np.dtype(ds.dtypes[0]), np.integer):
                found.append(tif)
    return found


def make_batch(folder: Path, batch: str, copies: int, quality: float) -> list[Path]:
    fool = Path(sys.executable).with_name("fool")

    def compress(src: Path, dst: Path) -> None:
        cmd = [str(fool), "compress", str(src), "-o", str(dst), "-q", str(quality)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)

    if batch == "team":
        for src in team_scenes():
            compress(src, folder / f"{src.parent.name}_{src.stem}.fool")
    else:
        first = folder / "naip_00.fool"
        compress(SCENE, first)
        for i in range(1, copies):
            shutil.copy(first, folder / f"naip_{i:02d}.fool")
    return sorted(folder.glob("*.fool"))


def export_syntheses(containers: list[Path]) -> None:
    """Fill the ONNX synthesis cache for every model in the batch before any clock starts: the
    export happens once per model and machine, not once per batch."""
    from fool.ground.decode import read_header
    from fool.ground.synthesis import synthesis_export
    from fool.shared.format import Container

    models = set()
    for path in containers:
        with Container.open(path) as container:
            scene = read_header(container)
            models.add((scene.model_name, scene.model_sha256))
    for name, sha in sorted(models):
        synthesis_export(name, sha)


def pixels(outdir: Path) -> dict[str, np.ndarray]:
    out = {}
    for tif in sorted(outdir.glob("*.tif")):
        with rasterio.open(tif) as ds:
            out[tif.name] = ds.read()
    return out


def timed(name: str, inputs: Path, outdir: Path, options) -> dict:
    from fool.ground.batch import run_batch

    start = time.perf_counter()
    summary = run_batch([inputs], outdir, options)
    seconds = time.perf_counter() - start
    d = summary.to_dict()
    assert summary.exit_code == 0, d["failures"]
    return {
        "config": name,
        "scenes": d["scenes"],
        "megapixels": d["megapixels"],
        "seconds": round(seconds, 2),
        "mp_per_s": round(d["megapixels"] / seconds, 3),
        "scenes_per_s": round(d["scenes"] / seconds, 3),
    }


def run_dask(inputs: Path, outdir: Path, options_cls) -> dict:
    from dask.distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        return timed("dask LocalCluster, 2 workers", inputs, outdir, options_cls(scheduler=cluster.scheduler_address))


def main() -> None:
    from fool.ground.batch import BatchOptions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", choices=("team", "naip"), default="team")
    parser.add_argument("--copies", type=int, default=4, help="NAIP copies for --batch naip")
    parser.add_argument("--quality", type=float, default=3.0)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="fool-batch-bench-") as tmp:
        tmp = Path(tmp)
        inputs = tmp / "in"
        inputs.mkdir()
        containers = make_batch(inputs, args.batch, args.copies, args.quality)
        names = [p.stem for p in containers]
        export_syntheses(containers)
        rows = [
            timed("local, 1 worker", inputs, tmp / "w1", BatchOptions(workers=1, progress=False)),
            timed("local, 2 workers", inputs, tmp / "w2", BatchOptions(workers=2, progress=False)),
            run_dask(inputs, tmp / "dask", lambda **kw: BatchOptions(progress=False, **kw)),
        ]
        reference = pixels(tmp / "w1")
        for folder in ("w2", "dask"):
            other = pixels(tmp / folder)
            assert other.keys() == reference.keys() and all(np.array_equal(other[k], reference[k]) for k in other)
    print(f"{'config':32} {'scenes':>6} {'MP':>7} {'s':>7} {'MP/s':>7} {'scenes/s':>9}")
    for r in rows:
        print(
            f"{r['config']:32} {r['scenes']:6d} {r['megapixels']:7.2f} {r['seconds']:7.2f}"
            f" {r['mp_per_s']:7.3f} {r['scenes_per_s']:9.3f}"
        )
    result = {
        "batch": args.batch,
        "scenes": names,
        "copies": args.copies if args.batch == "naip" else None,
        "quality": args.quality,
        "cpus": os.cpu_count(),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # before, after: shared machine
        "identical_pixels": True,
        "runs": rows,
    }
    out = ROOT / "bench" / "results" / ("batch_decode.json" if args.batch == "team" else "batch_decode_naip.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"load average (1 min) before/after: {result['load_average_1min']}; wrote {out}")


if __name__ == "__main__":
    main()
