"""The transform floor: PSNR when the latents are not quantised at all.

A codec cannot beat the analysis/synthesis pair it is built on. If the PSNR with *unquantised*
latents is barely above the PSNR at the best quality level, high rates are limited by the
transforms' capacity, not by the entropy model or the rate levels, and more rate cannot help:
the curve flattens. Comparing models (e.g. before and after growing the decoder) shows which
half of the transform holds the floor down. Also prints the PSNR at finer-than-trained
quantisation steps, which interpolates between the two.

    python bench/transform_floor.py models/fool-m.pt runs/fool-m7/checkpoint.pt --images 42
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from rd_probe import load_images  # sibling script: bench/ is the script's own folder

from shared.nn.codec import FoolCodec


def floor_psnr(model: FoolCodec, x: torch.Tensor, quality: float) -> dict[str, float]:
    """PSNR (dB, 8-bit peak) at ``quality`` with the trained step, half and quarter steps, and none."""
    with torch.no_grad():
        y, z = model.analyse(x)
        _, means = model.hyper_params(torch.round(z))
        gain, inv = model.gains(torch.tensor([quality]))
        r, mg = (y - means) * gain, means * gain
        out = {}
        for name, step in (("step 1", 1.0), ("step 1/2", 0.5), ("step 1/4", 0.25), ("unquantised", 0.0)):
            q = torch.round(r / step) * step if step else r
            x_hat = model.synthesise((q + mg) * inv).clamp(0, 1)
            out[name] = 10 * math.log10(1 / float(((x_hat - x) ** 2).mean()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path, help="weights or checkpoints")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/ucmerced/dev"))
    ap.add_argument("--images", type=int, default=42)
    ap.add_argument("--quality", type=float, default=8.0)
    ap.add_argument("-o", "--out", type=Path, default=Path("bench/results/transform_floor.json"))
    args = ap.parse_args()
    images = load_images(args.data, args.images)
    results = {}
    for path in args.models:
        model = FoolCodec.load(path)
        rows = [floor_psnr(model, x, args.quality) for x in images]
        mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        results[str(path)] = {"dec_blocks": model.config.dec_blocks, "psnr": mean}
        cells = "  ".join(f"{k} {v:.2f}" for k, v in mean.items())
        print(f"{path} (decoder blocks {model.config.dec_blocks}), q{args.quality:g}: {cells} dB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {"data": str(args.data), "images": len(images), "quality": args.quality, "models": results}
    args.out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
