"""Rate-distortion of training checkpoints, without releasing them: a progress check for runs.

Bits come from the entropy models' likelihoods (what the rANS coder spends, within about 1 %
plus the container's framing), PSNR from the quantised forward pass, on the same fixed dev
images for every model. Cheap enough to run beside training; `fool eval` on released weights
stays the number of record.

    python bench/rd_probe.py models/fool-m.pt runs/fool-m8/checkpoint.pt --images 42
    python bench/rd_probe.py runs/fool-m8/checkpoint.pt --channels-from 128   # are grown latents alive?
    python bench/rd_probe.py models/fool-m2.pt runs/mix256/checkpoint.pt --tile 256   # as 256-px tiles code

``--tile N`` codes every image as separate N-px tiles (as a container's tiles are: no context
across them), bits summed and squared error pooled per image, so the size the model was trained
on can be told from the size it codes at.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import rasterio
import torch
from fool.shared.nn.codec import FoolCodec

from fool.evaluate import bd_rate
from fool.train import find_images


def load_images(folder: Path, count: int, size: int | None = None) -> list[torch.Tensor]:
    """``count`` images spread evenly over the sorted folder, cropped to multiples of 64 (and to
    the top-left ``size`` x ``size`` when given, so large scenes stay cheap)."""
    files = find_images([folder])
    files = [files[i] for i in np.linspace(0, len(files) - 1, min(count, len(files))).astype(int)]
    images = []
    for f in files:
        with rasterio.open(f) as ds:
            a = ds.read()[:3].astype(np.float32) / 255
        if a.shape[0] == 1:
            a = np.repeat(a, 3, axis=0)
        h, w = a.shape[1] // 64 * 64, a.shape[2] // 64 * 64
        if size is not None:
            h, w = min(h, size), min(w, size)
        images.append(torch.from_numpy(np.ascontiguousarray(a[:, :h, :w]))[None])
    return images


def _tiles(x: torch.Tensor, tile: int | None) -> list[torch.Tensor]:
    if tile is None:
        return [x]
    h, w = x.shape[2], x.shape[3]
    return [x[:, :, r : r + tile, c : c + tile] for r in range(0, h, tile) for c in range(0, w, tile)]


def rd_point(
    model: FoolCodec, images: list[torch.Tensor], quality: float, tile: int | None = None
) -> tuple[float, float]:
    """Mean bpp (likelihoods) and mean PSNR (dB, 8-bit peak) over the images, each coded whole
    or as separate ``tile``-px tiles."""
    bpp, psnr = [], []
    with torch.no_grad():
        for x in images:
            bits = se = 0.0
            for t in _tiles(x, tile):
                out = model(t, torch.tensor([quality]))
                bits += sum(float(lk.log2().neg().sum()) for lk in out["likelihoods"].values())
                se += float(((out["x_hat"].clamp(0, 1) - t) ** 2).sum())
            n = x.shape[2] * x.shape[3]
            bpp.append(bits / n)
            psnr.append(10 * math.log10(n * x.shape[1] / se))
    return float(np.mean(bpp)), float(np.mean(psnr))


def gained_latents(model: FoolCodec, x: torch.Tensor, quality: float):
    """-> (y, means, scales) in the gained domain and the inverse gain, with z quantised as the
    coder does: what a probe needs to quantise y itself."""
    y, z = model.analyse(x)
    med = model.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)
    scales, means = model.hyper_params(torch.round(z - med) + med)
    gain, inv = model.gains(torch.tensor([quality]))
    return y * gain, means * gain, scales.abs() * gain, inv


def channel_use(model: FoolCodec, images: list[torch.Tensor], quality: float, first: int) -> tuple[float, float]:
    """Share of the latent bits spent on channels ``first..M`` and the PSNR lost (dB) when they
    are replaced by their predicted means: whether channels grown by ``--latent`` carry anything."""
    new_bits = all_bits = se_all = se_cut = 0.0
    with torch.no_grad():
        for x in images:
            yg, mg, sg, inv = gained_latents(model, x, quality)
            _, lik = model.gaussian_conditional(yg, sg, means=mg)
            bits = lik.log2().neg()
            new_bits += float(bits[:, first:].sum())
            all_bits += float(bits.sum())
            y_hat = (torch.round(yg - mg) + mg) * inv
            cut = torch.cat([y_hat[:, :first], (mg * inv)[:, first:]], 1)
            se_all += float(((model.synthesise(y_hat).clamp(0, 1) - x) ** 2).mean())
            se_cut += float(((model.synthesise(cut).clamp(0, 1) - x) ** 2).mean())
    return new_bits / all_bits, 10 * math.log10(se_cut / se_all)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path, help="weights or checkpoints; the first is the reference")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/ucmerced/dev"))
    ap.add_argument("--images", type=int, default=42)
    ap.add_argument("--qualities", default="1,2,3,4,5,6,7,8")
    ap.add_argument("--tile", type=int, default=None, help="code each image as separate tiles of this size (px)")
    ap.add_argument("--size", type=int, default=None, help="use only each image's top-left SIZE x SIZE")
    ap.add_argument("--channels-from", type=int, default=None, help="report the use of latent channels from here on")
    ap.add_argument("-o", "--out", type=Path, default=None, help="write the curves as JSON")
    args = ap.parse_args()
    images = load_images(args.data, args.images, args.size)
    qualities = [float(q) for q in args.qualities.split(",")]
    curves = {}
    for path in args.models:
        model = FoolCodec.load(path)
        points = [rd_point(model, images, q, args.tile) for q in qualities]
        curves[str(path)] = {"m": model.config.m, "step": model.trained.get("step"), "points": points}
        ref = curves[str(args.models[0])]["points"]
        bd = bd_rate(*map(np.array, zip(*ref, strict=True)), *map(np.array, zip(*points, strict=True)))
        cells = "  ".join(f"q{q:g} {b:.3f}/{p:.2f}" for q, (b, p) in zip(qualities, points, strict=True))
        vs = f"BD vs first {bd:+.1f} %" if bd is not None else "BD n/a"
        print(f"{path} (M={model.config.m}): {vs}\n  {cells}", flush=True)
        if args.channels_from is not None and args.channels_from < model.config.m:
            for q in (qualities[0], qualities[-1]):
                share, loss = channel_use(model, images, q, args.channels_from)
                print(f"  q{q:g}: channels {args.channels_from}+ carry {share:.1%} of y bits, worth {loss:.2f} dB")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({"data": str(args.data), "images": len(images), "tile": args.tile, "curves": curves}, indent=1)
        )


if __name__ == "__main__":
    main()
