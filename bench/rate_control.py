"""Rate control on the team scenes: for byte budgets between the fixed qualities' sizes, does
`fool compress --budget` fill the budget and beat the best fixed quality that fits?

    python bench/rate_control.py [--data ../shared/data] [-o bench/results/rate_control.json]

For each scene it codes qualities 1..8, then budgets half-way between consecutive fixed sizes,
and reports fill (bytes / budget) and PSNR against the best fixed quality whose file fits.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from fool.ground.decode import decode_container
from fool.ground.synthesis import TorchSynthesis
from fool.onboard.compress import compress_scene, load_runtime
from fool.shared.zoo import model_for

from fool.evaluate import psnr, read_image

SCENES = ("scenes/naip/m_4709963_se_14_1_20200831.tif", "scenes/worldview3/pan_0p5m.tif")


def decoded_psnr(src: Path, fool: Path, out: Path, synthesis, bits: int) -> float:
    decode_container(fool, out, synthesis=synthesis)
    img, _ = read_image(src)
    with rasterio.open(out) as ds:
        return psnr(img, ds.read(), float(2**bits - 1))


def scene_rows(src: Path, tmp: Path) -> list[dict]:
    with rasterio.open(src) as ds:
        model = model_for(ds.dtypes[0])
    engine = load_runtime("torch", model, None, None)
    synthesis = TorchSynthesis(model, engine[1].weights_sha256)
    _, bits = read_image(src)
    fixed = {}
    for q in range(1, 9):
        r = compress_scene(src, tmp / f"q{q}.fool", quality=q, engine=engine)
        fixed[q] = (r.bytes, decoded_psnr(src, tmp / f"q{q}.fool", tmp / "d.tif", synthesis, bits))
    rows = []
    for q in range(1, 8):
        budget = (fixed[q][0] + fixed[q + 1][0]) // 2
        t0 = time.perf_counter()
        r = compress_scene(src, tmp / "b.fool", budget=budget, engine=engine)
        seconds = time.perf_counter() - t0
        got = decoded_psnr(src, tmp / "b.fool", tmp / "d.tif", synthesis, bits)
        rows.append(
            {
                "scene": src.name,
                "budget": budget,
                "bytes": r.bytes,
                "fill": r.bytes / budget,
                "psnr": got,
                "best_fixed_quality": q,
                "best_fixed_psnr": fixed[q][1],
                "gain_db": got - fixed[q][1],
                "seconds": seconds,
            }
        )
        print(f"{src.name} budget {budget}: fill {r.bytes / budget:.4f}, {got:.2f} dB vs q{q} {fixed[q][1]:.2f} dB")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("-o", "--out", type=Path, default=Path("bench/results/rate_control.json"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for rel in SCENES:
            rows += scene_rows(args.data / rel, Path(tmp))
    summary = {
        "rows": rows,
        "fill_min": min(r["fill"] for r in rows),
        "fill_max": max(r["fill"] for r in rows),
        "gain_db_min": min(r["gain_db"] for r in rows),
        "gain_db_mean": float(np.mean([r["gain_db"] for r in rows])),
    }
    args.out.write_text(json.dumps(summary, indent=1))
    print(
        f"fill {summary['fill_min']:.4f}..{summary['fill_max']:.4f}; PSNR vs the best fixed quality that fits: "
        f"{summary['gain_db_min']:+.2f} dB at worst, {summary['gain_db_mean']:+.2f} dB on average"
    )


if __name__ == "__main__":
    main()
