"""Ablation of FOOL's two additions over a plain per-tile codec: inter-tile context and embedded context.

    python bench/ablation.py [--data ../shared/data] [--limit 42] [-o bench/results/ablation.json]

Configurations, all with the same shipped model per suite (neither addition has parameters):

- ``plain``: every tile analysed and synthesised alone; >8-bit bands scaled by their bit depth.
- ``inter-tile``: ``--halo 64`` — the analysis sees 64 px of each neighbour and the ground
  synthesises each tile on a canvas with its neighbours' latents.
- ``context``: ``--value-range scene`` — >8-bit bands stretched by the scene's min/max
  (band statistics carried in the header; no bits per tile). No-op on 8-bit data.
- ``both``.

Suites, all at the default 128-px tiles and with the model `fool compress` picks: UC Merced
``dev`` (fool-m; 4 tiles an image, so inter-tile borders exist), the held-out NAIP scene and
Landsat scenes (fool-m), and the uint16 scenes (fool-m16).
Reports BD-rate (PSNR) of each configuration against ``plain``, encode/decode time and
parameter count, as JSON and as the markdown table the model card includes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "plain": {"halo": 0, "value_range": "bitdepth"},
    "inter-tile": {"halo": 64, "value_range": "bitdepth"},
    "context": {"halo": 0, "value_range": "scene"},
    "both": {"halo": 64, "value_range": "scene"},
}
SUITES = {
    "ucmerced_dev": {
        "title": "UC Merced dev, 128-px tiles",
        "paths": ["ucmerced/dev"],
        "tile": 128,
        "model": "fool-m",
        "configs": ["plain", "inter-tile"],
    },
    "scenes_8bit": {
        "title": "NAIP 20200831 + Landsat-7 + Landsat 2020, 128-px tiles",
        "paths": [
            "scenes/naip/m_4709963_se_14_1_20200831.tif",
            "scenes/landsat7/RGB.byte.tif",
            "scenes/landsat_composites/2020.tif",
        ],
        "tile": 128,
        "model": "fool-m",
        "configs": ["plain", "inter-tile"],
    },
    "scenes_uint16": {
        "title": "WV3 pan_0p5m + S2 B11, B12 (uint16), 128-px tiles, fool-m16",
        "paths": [
            "scenes/worldview3/pan_0p5m.tif",
            "scenes/sentinel2_l1c_20m/B11.jp2",
            "scenes/sentinel2_l1c_20m/B12.jp2",
        ],
        "tile": 128,
        "model": "fool-m16",
        "configs": ["plain", "inter-tile", "context", "both"],
    },
}


def run_suite(key: str, data: Path, limit: int | None, log=print) -> dict:
    from fool.ground.synthesis import TorchSynthesis
    from fool.onboard.compress import load_runtime

    from fool.evaluate import bd_rate, eval_ours, find_inputs, mean_curve, read_image

    suite = SUITES[key]
    model = suite["model"]
    engine = load_runtime("torch", model, None, None)
    synthesis = TorchSynthesis(model, engine[1].weights_sha256)
    files = find_inputs([data / p for p in suite["paths"]], limit)
    points = []
    for i, f in enumerate(files):
        img, bits = read_image(f)
        for name in suite["configs"]:
            opts = CONFIGS[name]
            points += eval_ours(model, f, img, bits, range(1, 9), engine, synthesis, suite["tile"], name, **opts)
        if (i + 1) % 10 == 0 or i + 1 == len(files):
            log(f"  {key}: {i + 1}/{len(files)}")
    curves = {n: mean_curve(points, n) for n in suite["configs"]}
    base = curves["plain"]
    rows = {}
    for name in suite["configs"]:
        pts = [p for p in points if p.codec == name]
        bpp, psnr, _ = curves[name]
        rows[name] = {
            "bd_rate_vs_plain": None if name == "plain" else bd_rate(base[0], base[1], bpp, psnr),
            "encode_s": sum(p.encode_s for p in pts),
            "decode_s": sum(p.decode_s for p in pts),
            "bpp": bpp.tolist(),
            "psnr": psnr.tolist(),
        }
    for name in rows:
        rows[name]["encode_overhead"] = rows[name]["encode_s"] / rows["plain"]["encode_s"] - 1
    params = sum(p.numel() for p in synthesis.model.parameters())
    return {
        "title": suite["title"],
        "tile": suite["tile"],
        "model": engine[1].model_id,
        "parameters": params,
        "images": len(files),
        "configs": rows,
    }


def markdown(result: dict) -> str:
    lines = [
        "| suite (images) | model | configuration | BD-rate vs plain (PSNR) | encode time | decode time "
        "| extra parameters |",
        "|---|---|---|---|---|---|---|",
    ]
    for suite in result["suites"].values():
        for name, r in suite["configs"].items():
            bd = "—" if r["bd_rate_vs_plain"] is None else f"{r['bd_rate_vs_plain']:+.1f} %"
            enc = f"{r['encode_s']:.1f} s ({r['encode_overhead']:+.0%})"
            lines.append(
                f"| {suite['title']} ({suite['images']}) | {suite['model']} | {name} | {bd} | {enc} "
                f"| {r['decode_s']:.1f} s | 0 |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("FOOL_DATA", ROOT.parent / "shared" / "data")))
    ap.add_argument("--limit", type=int, default=42, help="UC Merced dev images (evenly spread over classes)")
    ap.add_argument("--suite", action="append", choices=list(SUITES), help="Run only these suites.")
    ap.add_argument("-o", "--out", type=Path, default=ROOT / "bench" / "results" / "ablation.json")
    args = ap.parse_args()

    start = time.time()
    suites = {k: run_suite(k, args.data, args.limit if k == "ucmerced_dev" else None) for k in (args.suite or SUITES)}
    models = sorted({s["model"] for s in suites.values()})
    result = {"models": models, "seconds": time.time() - start, "suites": suites}
    result["markdown"] = markdown(result)
    args.out.write_text(json.dumps(result, indent=1))
    print(result["markdown"])
    print(f"models {', '.join(models)}; same parameters in every configuration; wrote {args.out}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
