"""How much a checkerboard context saves: bits of the second latent half vs the anchors.

A ratio of 1.0 means the context predicts nothing the hyperprior did not already know.
Estimated from the model's likelihoods (eval mode, rounding), on crops of held-out images.

    python bench/context_probe.py runs/fool-m5/checkpoint.pt --data ../shared/data/ucmerced/dev
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import rasterio
import torch
from fool.shared.nn.codec import FoolCodec
from fool.shared.nn.layers import anchor_mask

from fool.train import find_images


def half_bits(model: FoolCodec, x: torch.Tensor, quality: float) -> tuple[float, float]:
    with torch.no_grad():
        out = model(x, torch.full((x.shape[0],), quality))
    bits = -out["likelihoods"]["y"].log2()
    mask = anchor_mask(*bits.shape[2:])
    return float((bits * mask).sum()), float((bits * (1 - mask)).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="weights or checkpoint")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/ucmerced/dev"))
    ap.add_argument("--images", type=int, default=42)
    args = ap.parse_args()
    model = FoolCodec.load(args.model).eval()
    files = find_images([args.data])
    files = [files[i] for i in np.linspace(0, len(files) - 1, min(args.images, len(files))).astype(int)]
    crops = []
    for f in files:
        with rasterio.open(f) as src:
            a = src.read(indexes=[1, 2, 3] if src.count >= 3 else [1, 1, 1], window=((0, 256), (0, 256)))
        if a.shape[1:] == (256, 256):
            crops.append(a.astype(np.float32) / 255.0)
    x = torch.from_numpy(np.stack(crops))
    print(f"{args.model}: context {'on' if model.context is not None else 'off'}, {len(crops)} crops of 256²")
    for q in (1.0, 3.0, 5.0, 7.0):
        anchors, rest = half_bits(model, x, q)
        ratio = rest / anchors
        print(f"quality {q:.0f}: anchors {anchors / 1e3:.1f} kbit, rest {rest / 1e3:.1f} kbit, ratio {ratio:.3f}")


if __name__ == "__main__":
    main()
