"""How much can the ground gain by synthesising a tile with its neighbours' latents?

    python bench/tile_edges.py [--model fool-m2] [--images 42] [--quality 2 --quality 6 --quality 10]

Every 256-px UC Merced ``dev`` image is coded in four 128-px tiles through the codec's
bitstream path (``FoolCodec.compress`` / ``decompress``: the torch analysis, then the real
integer hyper-synthesis and rANS streams, as a container tile holds them),
and the squared error of the reassembled image is binned by each pixel's distance to the
nearest *inner* tile border (the image's own border is a border for any codec). Ground-side
inter-tile context changes no byte, so all it can win is the error excess of the pixels near
inner borders: the "bound" line is the PSNR the images would have if every pixel within
``--band`` px of an inner border had the error of the pixels farther away. PSNRs are of the
squared error pooled over all images (not means of per-image PSNRs).

Results: a table on stdout and JSON in bench/results/tile_edges.json.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FOOL_DATA", ROOT.parent / "shared" / "data"))
BINS = ((0, 2), (2, 4), (4, 8), (8, 16), (16, 32), (32, 128))
TILE = 128


def border_distance(size: int = 2 * TILE) -> np.ndarray:
    """(size, size) distance of each pixel centre to the nearest inner tile border, in pixels."""
    centres = np.arange(size) + 0.5
    inner = np.arange(TILE, size, TILE, dtype=float)
    d = np.abs(centres[:, None] - inner[None, :]).min(axis=1)
    return np.minimum(d[:, None], d[None, :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fool-m2")
    parser.add_argument("--images", type=int, default=42, help="dev images, every 5th in name order")
    parser.add_argument("--quality", type=float, action="append")
    parser.add_argument("--band", type=float, default=4.0, help="px from an inner border counted as 'near'")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("-o", "--out", type=Path, default=ROOT / "bench" / "results" / "tile_edges.json")
    args = parser.parse_args()

    import torch
    from fool.shared import zoo
    from fool.shared.nn.codec import FoolCodec
    from PIL import Image

    torch.set_num_threads(os.cpu_count() or 1)
    model = FoolCodec.load(zoo.find(args.model).weights)
    files = sorted((args.data / "ucmerced" / "dev").glob("*/*"))
    files = [f for f in files if _size(f) == (2 * TILE, 2 * TILE)][::5][: args.images]
    distance = border_distance()
    near = distance < args.band
    rows = []
    for quality in args.quality or [2.0, 6.0, 10.0]:
        sq = np.zeros(distance.shape)
        for path in files:
            rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
            x = torch.from_numpy(rgb.transpose(2, 0, 1).copy())
            tiles = torch.stack([x[:, i : i + TILE, j : j + TILE] for i in (0, TILE) for j in (0, TILE)])
            coded = model.compress(tiles, quality)
            out = model.decompress(coded["strings"], coded["shape"], quality)["x_hat"]
            out = torch.round(out * 255) / 255
            recon = torch.zeros_like(x)
            for k, (i, j) in enumerate((i, j) for i in (0, TILE) for j in (0, TILE)):
                recon[:, i : i + TILE, j : j + TILE] = out[k]
            sq += ((recon - x) ** 2).mean(0).numpy()
        sq /= len(files)
        bins = []
        for lo, hi in BINS:
            mask = (distance >= lo) & (distance < hi)
            bins.append({"from_px": lo, "to_px": hi, "share": float(mask.mean()), "psnr": _psnr(sq[mask].mean())})
        bounded = sq.copy()
        bounded[near] = sq[~near].mean()
        rows.append(
            {
                "quality": quality,
                "psnr": _psnr(sq.mean()),
                "bound_psnr": _psnr(bounded.mean()),
                "bound_gain_db": _psnr(bounded.mean()) - _psnr(sq.mean()),
                "bins": bins,
            }
        )
        print(
            f"q{quality:g}: {rows[-1]['psnr']:.2f} dB, bound {rows[-1]['bound_psnr']:.2f} dB "
            f"(+{rows[-1]['bound_gain_db']:.3f}); by distance to an inner border: "
            + ", ".join(f"{b['from_px']}-{b['to_px']} px {b['psnr']:.2f}" for b in bins)
        )
    result = {"model": args.model, "images": len(files), "band_px": args.band, "qualities": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


def _size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def _psnr(mse: float) -> float:
    return float(10 * np.log10(1.0 / mse))


if __name__ == "__main__":
    main()
