"""The transform floor: PSNR when the latents are not quantised at all.

A codec cannot beat the analysis/synthesis pair it is built on. If the PSNR with *unquantised*
latents is barely above the PSNR at the best quality level, high rates are limited by the
transforms' capacity, not by the entropy model or the rate levels, and more rate cannot help:
the curve flattens. Comparing models (e.g. before and after growing the decoder) shows which
half of the transform holds the floor down. Also prints the PSNR at finer-than-trained
quantisation steps, which interpolates between the two.

``--pca-dims`` adds a linear yardstick: a Karhunen-Loeve (PCA) basis of 16x16 RGB blocks, fitted
on ``--pca-data``, keeping K coefficients per block, as M latents per 16x16 pixels do. If a
linear transform gains much from K = M to K = 1.5 M, the latent width (not the depth of the
networks around it) is what holds the floor.

    python bench/transform_floor.py models/fool-m.pt runs/fool-m7/checkpoint.pt --images 42
    python bench/transform_floor.py models/fool-m.pt --pca-dims 64 128 192 256
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from fool.shared.nn.codec import FoolCodec
from rd_probe import load_images  # sibling script: bench/ is the script's own folder


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


def _blocks(x: torch.Tensor, size: int = 16) -> torch.Tensor:
    """(1, C, H, W) -> (blocks, C * size * size), one row per non-overlapping block."""
    return torch.nn.functional.unfold(x.double(), size, stride=size)[0].T


def pca_floor(train: list[torch.Tensor], images: list[torch.Tensor], dims: list[int]) -> dict[str, float]:
    """Mean PSNR (8-bit peak) of the best linear K-coefficient block code, for each K in ``dims``."""
    rows = torch.cat([_blocks(x) for x in train])
    mean = rows.mean(0)
    _, basis = torch.linalg.eigh(torch.cov((rows - mean).T))
    basis = basis.flip(1)  # eigh sorts ascending; keep the largest-variance directions first
    out = {}
    for k in dims:
        psnr = []
        for x in images:
            b = _blocks(x) - mean
            err = b - (b @ basis[:, :k]) @ basis[:, :k].T
            psnr.append(10 * math.log10(1 / float((err**2).mean())))
        out[f"pca {k}"] = float(np.mean(psnr))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path, help="weights or checkpoints")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/ucmerced/dev"))
    ap.add_argument("--images", type=int, default=42)
    ap.add_argument("--quality", type=float, default=8.0)
    ap.add_argument("--pca-dims", type=int, nargs="*", default=[], help="coefficients per 16x16 block")
    ap.add_argument("--pca-data", type=Path, default=Path("../shared/data/ucmerced/train"))
    ap.add_argument("--pca-images", type=int, default=630, help="training images for the PCA basis")
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
    if args.pca_dims:
        linear = pca_floor(load_images(args.pca_data, args.pca_images), images, args.pca_dims)
        results["linear block PCA"] = {"psnr": linear}
        print("linear 16x16 block PCA, unquantised: " + "  ".join(f"{k} {v:.2f}" for k, v in linear.items()) + " dB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {"data": str(args.data), "images": len(images), "quality": args.quality, "models": results}
    args.out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
