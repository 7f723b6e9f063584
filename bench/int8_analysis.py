"""Does int8 pay for the onboard analysis? Speed, latent error and rate-distortion cost.

    python bench/int8_analysis.py [--tiles 64] [--threads 1] [--rd 24] [--model fool-m]

Exports fool-m's flight graph three ways: float32 (``fool export-onnx``), the shipped int8
variant (``fool export-onnx --int8 ucmerced/train``: the two middle convolutions, see
shared/nn/quantise.py) and, for reference, every convolution in int8 with the same
calibration. It times the three analysis graphs alternately on the same held-out 128-px tiles
of UC Merced ``train`` in one process (ONNX Runtime, ``--threads``), and compares their
latents with the float graph's (relative RMS error; share of rounded latents that stay equal).
With ``--rd N`` it codes N images of ``dev`` at qualities 1..8 through the real path
(container, ground decoder with its ONNX synthesis) with each flight export and reports the
per-image BD-rate against the float export. int8 needs VNNI (AVX512-VNNI or AVX-VNNI) to
pay; the CPU's flags go into the JSON. Results: bench/results/int8_analysis.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FOOL_DATA", ROOT.parent / "shared" / "data"))


def cpu_flags() -> list[str]:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    flags = next((line for line in lines if line.startswith("flags")), "")
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
    return [f for f in wanted if f" {f}" in flags]


def timings(variants: dict[str, Path], test: np.ndarray, threads: int, repeats: int) -> dict[str, float]:
    from fool.shared.runtime import ort_session

    sessions = {k: ort_session(str(p / "analysis.onnx"), threads) for k, p in variants.items()}
    best = dict.fromkeys(sessions, float("inf"))
    for _ in range(repeats):  # alternate, so load changes hit every variant alike
        for k, s in sessions.items():
            t = time.perf_counter()
            for i in range(0, len(test), 2):
                s.run(["y", "z"], {"x": test[i : i + 2]})
            best[k] = min(best[k], time.perf_counter() - t)
    return best


def latent_error(variants: dict[str, Path], test: np.ndarray) -> dict[str, dict]:
    from fool.shared.runtime import ort_session

    ys = {k: ort_session(str(p / "analysis.onnx"), 1).run(["y"], {"x": test})[0] for k, p in variants.items()}
    ref = ys["float32"]
    return {
        k: {
            "latent_rel_rms_error": float(np.sqrt(((y - ref) ** 2).mean() / (ref**2).mean())),
            "rounded_latents_equal": float((np.round(y) == np.round(ref)).mean()),
        }
        for k, y in ys.items()
    }


def rate_distortion(variants: dict[str, Path], images: int, model: str = "fool-m") -> dict[str, dict]:
    from fool.ground.synthesis import OnnxSynthesis
    from fool.onboard.compress import load_runtime

    from fool import evaluate as ev

    dev = sorted((DATA / "ucmerced" / "dev").glob("*/*"))
    pick = [dev[i] for i in np.linspace(0, len(dev) - 1, images).astype(int)]
    points, synthesis = [], None
    for name, flight in variants.items():
        engine = load_runtime("onnx", model, flight, 1)
        synthesis = synthesis or OnnxSynthesis(model, engine[1].weights_sha256)
        for f in pick:
            img, bits = ev.read_image(f)
            points += ev.eval_ours(model, f, img, bits, range(1, 9), engine, synthesis, label=name)
        print(f"  {name}: {len(pick)} images coded", flush=True)
    out = {}
    for name in variants:
        mine = [p for p in points if p.codec == name]
        row = {"mean_bpp": float(np.mean([p.bpp for p in mine])), "mean_psnr": float(np.mean([p.psnr for p in mine]))}
        if name != "float32":
            bd = ev.per_image_bd(points, "float32", name)
            row |= {k: bd[k] for k in ("images", "mean", "median", "worst", "worst_image") if k in bd}
        out[name] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=64, help="held-out 128-px tiles timed per run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rd", type=int, default=0, metavar="N", help="also code N dev images per variant")
    parser.add_argument("--model", default="fool-m", help="shipped model whose analysis is quantised")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "int8_analysis.json")
    args = parser.parse_args()
    from fool.shared.nn.quantise import calibration_tiles, quantise_analysis

    train = DATA / "ucmerced" / "train"
    test = calibration_tiles(train, args.tiles, seed=1)
    fool = str(Path(sys.executable).with_name("fool"))
    with tempfile.TemporaryDirectory(prefix="fool-int8-") as tmp:
        folder = Path(tmp)
        variants = {"float32": folder / "float32", "int8-middle": folder / "int8", "int8-every-conv": folder / "all"}
        model = ["--model", args.model]
        for name, extra in (("float32", []), ("int8-middle", ["--int8", str(train)]), ("int8-every-conv", [])):
            cmd = [fool, "export-onnx", *model, *extra, "-o", str(variants[name])]
            subprocess.run(cmd, check=True, capture_output=True)
        import onnx

        graph = variants["float32"] / "analysis.onnx"
        every = tuple(n.name for n in onnx.load(str(graph)).graph.node if n.op_type == "Conv")
        quantise_analysis(graph, variants["int8-every-conv"] / "analysis.onnx", calibration_tiles(train), every)
        best = timings(variants, test, args.threads, args.repeats)
        errors = latent_error(variants, test)
        rd = rate_distortion(variants, args.rd, args.model) if args.rd else {}
    rows = []
    for k in variants:
        mp = len(test) * 128 * 128 / 1e6
        rows.append(
            {"variant": k, "seconds_best": round(best[k], 3), "speedup_vs_float32": round(best["float32"] / best[k], 3)}
            | {"mp_per_s": round(mp / best[k], 3)}
            | errors[k]
            | ({"rd_vs_float32": rd[k]} if rd else {})
        )
    print(f"{'variant':16} {'speed-up':>8} {'MP/s':>6} {'rel err':>8} {'same sym':>8} {'BD-rate':>8}")
    for r in rows:
        bd = r.get("rd_vs_float32", {}).get("mean")
        print(
            f"{r['variant']:16} {r['speedup_vs_float32']:8.3f} {r['mp_per_s']:6.2f} {r['latent_rel_rms_error']:8.4f}"
            f" {r['rounded_latents_equal']:8.4f} {'' if bd is None else f'{bd:+7.2f}%':>8}"
        )
    out = args.out
    meta = {"model": args.model, "threads": args.threads, "tiles": len(test), "rd_images": args.rd}
    meta["cpu_flags"] = cpu_flags()
    out.write_text(json.dumps(meta | {"load_average_1min": os.getloadavg()[0], "runs": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
