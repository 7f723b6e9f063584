"""Does int8 pay for the ground synthesis? Speed and PSNR cost of QDQ variants.

    python bench/int8_synthesis.py [--model fool-m] [--tiles 48] [--threads 2] [--repeats 3]

The encoder is untouched, so the container bytes are the same whichever synthesis decodes them:
an int8 synthesis's whole rate-distortion cost is its PSNR change at equal rates. The script
exports the model's float synthesis (as the ground's cache does), quantises it with ONNX
Runtime's static QDQ quantiser (per channel, activation ranges calibrated on latents of UC
Merced ``train`` tiles at every quality), and for each variant reports the time per 128-px
tile (alternating the sessions on the same latents, so machine load hits all alike) and the
mean PSNR of held-out ``dev`` tiles at qualities 1, 3, 5 and the highest against the float
graph's. int8 convolutions need VNNI (AVX512-VNNI or AVX-VNNI) to pay; the CPU's flags go into
the JSON. Results: bench/results/int8_synthesis.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FOOL_DATA", ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(ROOT / "bench"))

from int8_analysis import cpu_flags  # noqa: E402


def latents(model, tiles: np.ndarray, qualities: list[float]):
    """(y_hat, tile) pairs: the latents the ground decodes for each tile at each quality."""
    import torch

    out = []
    with torch.no_grad():
        x = torch.from_numpy(tiles)
        y, z = model.analyse(x)
        z_hat, _ = model.entropy_bottleneck(z)
        scales, means = model.hyper_params(z_hat)
        for q in qualities:
            gain, inv = model.gains(torch.full((len(tiles),), float(q)))
            y_hat = (torch.round(y * gain - means * gain) + means * gain) * inv
            out.append((q, y_hat.numpy().astype(np.float32)))
    return out


def quantise(src: Path, dst: Path, calibration: np.ndarray, include, method: str) -> list[str]:
    from fool.shared.nn.quantise import quantise_nodes

    feeds = [{"y": calibration[i : i + 8]} for i in range(0, len(calibration), 8)]
    return quantise_nodes(src, dst, feeds, include, ("Conv", "ConvTranspose"), method)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1) * 255 - b * 255) ** 2))
    return 10 * np.log10(255**2 / max(mse, 1e-12))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="fool-m")
    p.add_argument("--tiles", type=int, default=48)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("-o", type=Path, default=ROOT / "bench/results/int8_synthesis.json")
    args = p.parse_args()

    from fool.shared import zoo
    from fool.shared.nn.codec import FoolCodec
    from fool.shared.nn.export import export_synthesis
    from fool.shared.nn.quantise import calibration_tiles
    from fool.shared.runtime import ort_session

    files = zoo.find(args.model)
    model = FoolCodec.load(files.weights).eval()
    levels = model.levels
    calib = calibration_tiles(DATA / "ucmerced/train", args.tiles)
    test = calibration_tiles(DATA / "ucmerced/dev", args.tiles, seed=1)
    calibration = np.concatenate([y for _, y in latents(model, calib, list(range(1, levels + 1)))])
    calibration = calibration[np.random.default_rng(0).permutation(len(calibration))[: 4 * args.tiles]]
    qualities = sorted({1, 3, 5, levels})
    held_out = latents(model, test, qualities)

    def blocks(*parts: str):
        return lambda name: any(f"body.{k}/" in name for k in parts)

    variants = {  # label: (nodes in int8, calibration method)
        "every conv": (lambda name: True, "Percentile"),
        "residual blocks": (blocks("0", "2", "4"), "Percentile"),
        "residual blocks, MinMax": (blocks("0", "2", "4"), "MinMax"),
        "blocks' first two convs": (blocks("0", "2"), "Percentile"),
        "blocks' 3x3 convs": (blocks("2"), "Percentile"),
        "blocks' 3x3 convs, MinMax": (blocks("2"), "MinMax"),
    }
    tmp = Path(tempfile.mkdtemp(prefix="int8-synthesis-"))
    export_synthesis(files, tmp / "float")
    paths = {"float32": tmp / "float/synthesis.onnx"}
    chosen = {}
    for i, (label, (include, method)) in enumerate(variants.items()):
        paths[label] = tmp / f"int8-{i}.onnx"
        chosen[label] = quantise(paths["float32"], paths[label], calibration, include, method)
    sessions = {k: ort_session(str(v), args.threads) for k, v in paths.items()}

    bench = held_out[1][1][:16]
    best = dict.fromkeys(sessions, float("inf"))
    for _ in range(args.repeats):
        for k, s in sessions.items():
            t = time.perf_counter()
            for i in range(len(bench)):
                s.run(["x_hat"], {"y": bench[i : i + 1]})
            best[k] = min(best[k], (time.perf_counter() - t) / len(bench))
    quality = {}
    for k, s in sessions.items():
        quality[k] = {}
        for q, y in held_out:
            x_hat = np.concatenate([s.run(["x_hat"], {"y": y[i : i + 8]})[0] for i in range(0, len(y), 8)])
            quality[k][str(q)] = float(np.mean([psnr(x_hat[i], test[i]) for i in range(len(test))]))
    result = {
        "model": args.model,
        "cpu_flags": cpu_flags(),
        "threads": args.threads,
        "seconds_per_tile": best,
        "speedup": {k: best["float32"] / v for k, v in best.items()},
        "psnr": quality,
        "psnr_change": {k: {q: v - quality["float32"][q] for q, v in d.items()} for k, d in quality.items()},
        "int8_nodes": chosen,
    }
    args.o.parent.mkdir(parents=True, exist_ok=True)
    args.o.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("speedup", "psnr_change")}, indent=2))


if __name__ == "__main__":
    main()
