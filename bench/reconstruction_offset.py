"""Does the ground gain from reconstructing latents at their bin centroids instead of the
integer lattice? Rate is untouched (the symbols are the same), so only PSNR can move.

With a Gaussian prior of scale s the mean of a residual that fell in bin k != 0 lies closer to
zero than k; many learned codecs decode there ("reconstruction offset"). Our synthesis was
trained on exactly rounded latents, so the question is empirical.

    python bench/reconstruction_offset.py models/fool-m.pt --images 42
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from fool.shared.nn.codec import FoolCodec
from rd_probe import gained_latents, load_images  # sibling script: bench/ is the script's own folder


def bin_centroid(k: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """E[r | round(r) = k] for r ~ N(0, s^2), signed, 0 for k = 0; stable far in the tail."""
    k64, s64 = k.double(), s.double()
    a, b = (k64.abs() - 0.5) / s64, (k64.abs() + 0.5) / s64
    log_tail_a, log_tail_b = torch.special.log_ndtr(-a), torch.special.log_ndtr(-b)
    log_mass = log_tail_a + torch.log1p(-torch.exp(log_tail_b - log_tail_a).clamp(max=1 - 1e-15))
    log_pdf_a = -0.5 * a * a - 0.5 * math.log(2 * math.pi)
    ratio = torch.exp(log_pdf_a - log_mass) * -torch.expm1(-(b * b - a * a) / 2)
    c = (s64 * ratio).clamp(k64.abs() - 0.5, k64.abs() + 0.5)
    return torch.where(k == 0, torch.zeros_like(c), torch.sign(k64) * c).float()


def offset_gains(model: FoolCodec, images: list[torch.Tensor], quality: float, alphas: list[float]) -> list[float]:
    """PSNR change (dB) of decoding at ``k + alpha * (centroid - k)`` for each alpha."""
    se = np.zeros(len(alphas))
    with torch.no_grad():
        for x in images:
            yg, mg, sg, inv = gained_latents(model, x, quality)
            sg = sg.clamp_min(float(model.scale_table[0]))
            k = torch.round(yg - mg)
            shift = bin_centroid(k, sg) - k
            for i, alpha in enumerate(alphas):
                x_hat = model.synthesise((mg + k + alpha * shift) * inv).clamp(0, 1)
                se[i] += float(((x_hat - x) ** 2).mean())
    psnr = [10 * math.log10(len(images) / s) for s in se]
    return [p - psnr[0] for p in psnr]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/ucmerced/dev"))
    ap.add_argument("--images", type=int, default=42)
    ap.add_argument("--alphas", default="0.25,0.5,1.0", help="fractions of the centroid shift")
    ap.add_argument("-o", "--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    images = load_images(args.data, args.images)
    alphas = [0.0] + [float(a) for a in args.alphas.split(",")]
    model = FoolCodec.load(args.model)
    rows = {}
    for q in range(1, 9):
        gains = offset_gains(model, images, q, alphas)
        rows[q] = dict(zip(map(str, alphas[1:]), gains[1:], strict=True))
        print(f"q{q}: " + "  ".join(f"alpha {a:g}: {g:+.3f} dB" for a, g in zip(alphas[1:], gains[1:], strict=True)))
    if args.out:
        result = {"model": str(args.model), "images": len(images), "delta_psnr_db": rows}
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
