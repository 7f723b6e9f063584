"""The integer hyper-synthesis on the 8-bit GEMM kernel against the float64 BLAS reference.

    python bench/hyper_kernel.py [--size 4096] [--repeat 3]

Both kernels give the same integers (tests/test_codec.py), and the encoder picks the 8-bit one
where the CPU has 8-bit dot products (VNNI, AMX); this measures what it saves. On the NAIP
mosaic bench/throughput.py builds (4 bands, two band groups), one process:

* the hyper-synthesis alone, on 16 random hyper-latents of a 128-px tile's shape (the batch
  the encoder makes of 8 tiles x 2 band groups), one thread;
* the whole ``compress_scene`` (ONNX Runtime flight path, default settings), once with each
  kernel, rounds interleaved, the container bytes compared.

Results: a table on stdout and JSON in bench/results/hyper_kernel.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _throughput():
    spec = importlib.util.spec_from_file_location("fool_bench_throughput", ROOT / "bench" / "throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("-o", "--out", type=Path, default=ROOT / "bench" / "results" / "hyper_kernel.json")
    args = parser.parse_args()

    from fool.onboard.compress import CompressOptions, compress_scene
    from fool.shared import intnet, zoo

    dispatch = intnet._conv3x3
    kernels = {"int8": intnet._conv3x3_digits, "float64": intnet._conv3x3_blas}
    work = Path(tempfile.mkdtemp(prefix="fool-hyper-"))
    scene = _throughput().build_scene(work / "scene.tif", args.size, 4)
    flight = work / "flight"
    _export(flight)
    codec_tables = zoo.find(zoo.model_for("uint8")).tables

    from fool.shared.latent_codec import LatentCodec
    from fool.shared.runtime import single_blas_thread

    codec = LatentCodec.load(codec_tables)
    rng = np.random.default_rng(0)
    nz = codec.z_medians.shape[0]
    z = (np.rint(rng.laplace(0, 2, (16, nz, 2, 2))) + codec.z_medians[:, None, None]).astype(np.float32)
    try:
        alone: dict[str, list[float]] = {k: [] for k in kernels}
        whole: dict[str, list[float]] = {k: [] for k in kernels}
        sizes: dict[str, int] = {}
        with single_blas_thread():
            for _ in range(args.repeat):
                for name, kernel in kernels.items():
                    intnet._conv3x3 = kernel
                    intnet.hyper_params(z, codec.hyper)
                    t0 = time.perf_counter()
                    for _ in range(20):
                        intnet.hyper_params(z, codec.hyper)
                    alone[name].append((time.perf_counter() - t0) / 20)
        for _ in range(args.repeat):
            for name, kernel in kernels.items():
                intnet._conv3x3 = kernel
                out = work / f"{name}.fool"
                t0 = time.perf_counter()
                compress_scene(scene, out, CompressOptions(runtime="onnx", flight_dir=flight))
                whole[name].append(time.perf_counter() - t0)
                sizes[name] = out.stat().st_size
                if name != "int8" and out.read_bytes() != (work / "int8.fool").read_bytes():
                    raise SystemExit("the kernels wrote different containers")
    finally:
        intnet._conv3x3 = dispatch
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "scene": f"{args.size}x{args.size} 4-band NAIP mosaic",
        "repeat": args.repeat,
        "hyper_ms_per_16_latents": {k: 1e3 * statistics.median(v) for k, v in alone.items()},
        "compress_s": {k: statistics.median(v) for k, v in whole.items()},
        "container_bytes": sizes,
        "cpu_int8_dot": intnet._cpu_has_int8_dot(),
    }
    result["hyper_speedup"] = result["hyper_ms_per_16_latents"]["float64"] / result["hyper_ms_per_16_latents"]["int8"]
    result["compress_speedup"] = result["compress_s"]["float64"] / result["compress_s"]["int8"]
    for key in ("hyper_ms_per_16_latents", "compress_s"):
        print(key, {k: round(v, 3) for k, v in result[key].items()})
    speedups = f"hyper-synthesis {result['hyper_speedup']:.2f}x, whole compress {result['compress_speedup']:.2f}x"
    print(speedups + ", same bytes")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


def _export(flight: Path) -> None:
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "fool.cli", "export-onnx", "-o", str(flight)]
    subprocess.run(cmd, check=True, capture_output=True)


if __name__ == "__main__":
    main()
