"""Does int8 pay for the onboard analysis? ONNX Runtime static quantisation of the flight graph.

    python bench/int8_analysis.py [--tiles 64] [--threads 1]

Exports the flight graph of fool-m (``fool export-onnx``), quantises its convolutions with
``onnxruntime.quantization.quantize_static`` (QDQ, per-channel int8 weights, uint8
activations, MinMax calibration on 96 128-px tiles of UC Merced ``train``), once with every
convolution and once leaving GDN's 1x1 convolutions (the ones fed by x²) in float, and times
the float and int8 graphs alternately on the same held-out tiles in one process. Accuracy is
the latents' relative RMS error and the share of rounded latents that stay equal (a changed
symbol changes rate and pixels). Results go to bench/results/int8_analysis.json.
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


def tiles(paths: list[Path]) -> np.ndarray:
    from PIL import Image

    out = []
    for p in paths:
        a = np.asarray(Image.open(p).convert("RGB").resize((256, 256)), np.float32) / 255
        out += [a[:128, :128].transpose(2, 0, 1), a[128:, 128:].transpose(2, 0, 1)]
    return np.ascontiguousarray(np.stack(out))


def session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def quantise(src: Path, dst: Path, calibration: np.ndarray, keep_gdn_float: bool) -> None:
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"x": calibration[i : i + 8]} for i in range(0, len(calibration), 8)])

        def get_next(self):
            return next(self.batches, None)

    graph = onnx.load(src).graph
    squares = {o for n in graph.node if n.op_type == "Mul" for o in n.output}
    exclude = [n.name for n in graph.node if n.op_type == "Conv" and n.input[0] in squares] if keep_gdn_float else []
    pre = dst.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(pre))
    names = {n.name for n in onnx.load(pre).graph.node}
    assert set(exclude) <= names, "pre-processing renamed the GDN convolutions"
    quantize_static(
        str(pre),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["Conv"],
        nodes_to_exclude=exclude,
        calibrate_method=CalibrationMethod.MinMax,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=64, help="held-out 128-px tiles timed per run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    files = sorted((DATA / "ucmerced" / "train").glob("*/*"))
    rng = np.random.default_rng(0)
    pick = rng.choice(len(files), 48 + (args.tiles + 1) // 2, replace=False)
    calibration = tiles([files[i] for i in pick[:48]])
    test = tiles([files[i] for i in pick[48:]])[: args.tiles]
    with tempfile.TemporaryDirectory(prefix="fool-int8-") as tmp:
        folder = Path(tmp)
        fool = Path(sys.executable).with_name("fool")
        subprocess.run([str(fool), "export-onnx", "-o", str(folder)], check=True, capture_output=True)
        fp32 = folder / "analysis.onnx"
        variants = {"fp32": fp32}
        for name, keep in (("int8-all-convs", False), ("int8-gdn-float", True)):
            variants[name] = folder / f"{name}.onnx"
            quantise(fp32, variants[name], calibration, keep)
        sessions = {k: session(p, args.threads) for k, p in variants.items()}
        y_ref = sessions["fp32"].run(["y"], {"x": test})[0]
        seconds: dict[str, list[float]] = {k: [] for k in sessions}
        for _ in range(args.repeats):  # alternate, so load changes hit every variant alike
            for k, s in sessions.items():
                t = time.perf_counter()
                for i in range(0, len(test), 16):
                    s.run(["y", "z"], {"x": test[i : i + 16]})
                seconds[k].append(time.perf_counter() - t)
        rows = []
        for k, s in sessions.items():
            y = s.run(["y"], {"x": test})[0]
            best = min(seconds[k])
            rows.append(
                {
                    "variant": k,
                    "seconds_best": round(best, 3),
                    "speedup_vs_fp32": round(min(seconds["fp32"]) / best, 3),
                    "mp_per_s": round(len(test) * 128 * 128 / 1e6 / best, 3),
                    "latent_rel_rms_error": float(np.sqrt(((y - y_ref) ** 2).mean() / (y_ref**2).mean())),
                    "rounded_latents_equal": float((np.round(y) == np.round(y_ref)).mean()),
                }
            )
    print(f"{'variant':16} {'best s':>7} {'speed-up':>8} {'MP/s':>6} {'rel err':>8} {'same symbols':>12}")
    for r in rows:
        print(
            f"{r['variant']:16} {r['seconds_best']:7.3f} {r['speedup_vs_fp32']:8.3f} {r['mp_per_s']:6.3f}"
            f" {r['latent_rel_rms_error']:8.4f} {r['rounded_latents_equal']:12.4f}"
        )
    out = ROOT / "bench" / "results" / "int8_analysis.json"
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    flags = next((line for line in lines if line.startswith("flags")), "")
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f" {f}" in flags]
    result = {"threads": args.threads, "tiles": len(test), "cpu_flags": isa, "load_average_1min": os.getloadavg()[0]}
    out.write_text(json.dumps(result | {"runs": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
