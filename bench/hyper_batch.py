"""How many hyper-latents one call of the integer hyper-synthesis should take.

    python bench/hyper_batch.py [--repeat 5]

``LatentCodec.hyper_params_many`` splits its hyper-latents into calls of at most
``HYPER_BATCH`` latent positions. The ground hands it a whole row of tiles at once (64
hyper-latents on a 4096-px-wide scene with two band groups), the encoder 8 tiles' worth. This
times 64 random hyper-latents of a 128-px tile's shape (2x2) and of a 256-px tile's (4x4) for
several caps, on each exact kernel (the 8-bit digit kernel where the CPU has VNNI or AMX, the
float64 BLAS one everywhere), one thread, best of ``--repeat``. The values do not depend on the
cap (tests/test_codec.py), only the time does.

Results: a table on stdout and JSON in bench/results/hyper_batch.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CAPS = (4096, 2048, 1024, 512, 256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("-o", "--out", type=Path, default=ROOT / "bench" / "results" / "hyper_batch.json")
    args = parser.parse_args()

    from fool.shared import intnet, zoo
    from fool.shared.latent_codec import LatentCodec

    codec = LatentCodec.load(zoo.find("fool-m2").tables)
    rng = np.random.default_rng(0)
    channels = codec.z_medians.shape[0]
    kernels = {"blas": intnet._conv3x3_blas}
    if intnet._cpu_has_int8_dot():
        kernels["digits"] = intnet._conv3x3_digits
    saved_kernel, saved_cap = list(intnet._KERNEL), codec.HYPER_BATCH
    rows = []
    try:
        for name, kernel in kernels.items():
            intnet._KERNEL[:] = [kernel]
            for shape in ((2, 2), (4, 4)):
                z_hats = [np.rint(rng.normal(0, 2, (channels, *shape))) for _ in range(64)]
                for cap in CAPS:
                    codec.HYPER_BATCH = cap
                    codec.hyper_params_many(z_hats)
                    best = float("inf")
                    for _ in range(args.repeat):
                        t = time.perf_counter()
                        codec.hyper_params_many(z_hats)
                        best = min(best, time.perf_counter() - t)
                    per_call = max(1, cap // (16 * shape[0] * shape[1]))
                    rows.append(
                        {
                            "kernel": name,
                            "z_shape": list(shape),
                            "cap": cap,
                            "per_call": per_call,
                            "ms_per_hyper_latent": best * 1e3 / len(z_hats),
                        }
                    )
                    print(
                        f"{name:6s} z {shape[0]}x{shape[1]}  cap {cap:5d} ({per_call:2d} a call): "
                        f"{best * 1e3 / len(z_hats):.3f} ms per hyper-latent"
                    )
    finally:
        intnet._KERNEL[:] = saved_kernel
        codec.HYPER_BATCH = saved_cap
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"cpu": platform.processor() or platform.machine(), "shipped_cap": saved_cap, "rows": rows}
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
