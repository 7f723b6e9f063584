"""Write models/README.md (the model card) from eval results and the training log.

    python bench/model_card.py --model fool-m --model fool-m16

Reads bench/results/rd_*.json written by `fool eval` and models/<name>.train_log.csv, so
every number in the card is traceable to a rerunnable command. It writes the whole file, and the
card has hand-written sections this does not know (the fast synthesis, fool-m-lean48's cost, what
flies by default): take its Rate–distortion sections from the diff and keep the rest.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
S2 = "../shared/data/scenes/sentinel2_l1c_20m"
SETS = {
    "ucmerced_dev": (
        "UC Merced `dev` (RGB 256×256, uint8)",
        "fool eval ../shared/data/ucmerced/dev -o bench/results/rd_ucmerced_dev.json",
    ),
    "naip": (
        "NAIP `m_4709963_se_14_1_20200831.tif` (934×723, 4-band uint8)",
        "fool eval ../shared/data/scenes/naip/m_4709963_se_14_1_20200831.tif -o bench/results/rd_naip.json",
    ),
    "uint16": (
        "WorldView-3 `pan_0p5m.tif` + Sentinel-2 B05, B06, B07, B8A, B11, B12 (1 band uint16 each)",
        "fool eval ../shared/data/scenes/worldview3/pan_0p5m.tif "
        + " ".join(f"{S2}/{b}.jp2" for b in ("B05", "B06", "B07", "B8A", "B11", "B12"))
        + " --model fool-m16 -o bench/results/rd_uint16.json",
    ),
}


def _defaults(s: dict) -> str:
    """The default quality of each curve: one number (older summaries), or per model."""
    d = s.get("default_quality", 4)
    if not isinstance(d, dict):
        return f"{d:g}"
    values = set(d.values())
    return f"{values.pop():g}" if len(values) == 1 else ", ".join(f"{v:g} ({k})" for k, v in d.items())


def fmt(x, spec="+.1f", unit="%"):
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:{spec}}{unit}"


def _points(s: dict) -> int:
    return max(len(c["bpp"]) for c in s["curves"].values())


def section(key: str, title: str, cmd: str, models: list[str]) -> list[str]:
    path = ROOT / "bench" / "results" / f"rd_{key}.json"
    if not path.exists():
        return [f"### {title}", "", f"Not measured yet: `{cmd}`", ""]
    s = json.loads(path.read_text())
    out = [
        f"### {title}",
        "",
        f"`{cmd}` ({s['images']} images/scenes)",
        "",
        "| codec | " + " | ".join(f"pt {i + 1}" for i in range(_points(s))) + " |",
        "|---|" + "---|" * _points(s),
    ]
    for name, c in s["curves"].items():
        cells = [f"{b:.3f} / {p:.2f}" for b, p in zip(c["bpp"], c["psnr"], strict=True)]
        out.append(f"| {name} (bpp / dB) | " + " | ".join(cells) + " |")
    for k, v in s.get("lossless", {}).items():
        out += ["", f"Lossless reference, {k.upper()} (libaec): {v['bpp']:.3f} bpp (all bands together)."]
    out += [
        "",
        "| comparison | BD-rate, mean curves (whole files) | per image: mean / median / worst | ahead on | "
        "mean curves, tile payloads only | "
        f"at default quality {_defaults(s)}: our bpp, dB, ΔPSNR vs the codec at our rate |",
        "|---|---|---|---|---|---|",
    ]
    for k, v in s["bd_rate"].items():
        d = s["at_default_quality"].get(k, {})
        at = (
            f"{d['bpp']:.3f} bpp, {d['psnr']:.2f} dB, {d['delta_psnr_db']:+.2f} dB ({d['images']} images)"
            if d.get("delta_psnr_db") is not None
            else "outside the codec's measured range"
        )
        pi = s.get("per_image", {}).get(k, {})
        if pi.get("measured"):
            dist = f"{fmt(pi['mean'])} / {fmt(pi['median'])} / {fmt(pi['worst'])}"
            wins = f"{pi['wins']} of {pi['measured']}"
        else:
            dist, wins = "n/a", "n/a"
        out.append(f"| {k} | {fmt(v['psnr'])} | {dist} | {wins} | {fmt(v.get('psnr_payload_only'))} | {at} |")
    out += worst_images(s)
    matched = s.get("matched", {})
    if matched:
        qs = sorted({q for v in matched.values() for q in v}, key=float)
        out += [
            "",
            "ΔPSNR at matched rate, per image then averaged (our PSNR minus the codec's, interpolated in "
            "log-rate on that image's curve), by our quality:",
            "",
            "| comparison | " + " | ".join(f"q{float(q):g}" for q in qs) + " |",
            "|---|" + "---|" * len(qs),
        ]
        for k, v in matched.items():
            cells = [
                "—" if q not in v else fmt(v[q]["delta_psnr_db"], "+.2f", " dB") if v[q]["images"] else "out of range"
                for q in qs
            ]
            out.append(f"| {k} | " + " | ".join(cells) + " |")
    for name, sp in s["speed"].items():
        if name in models:
            out += [
                "",
                f"Speed of {name} in this benchmark (whole pipeline incl. GeoTIFF I/O; the cores shared with the "
                "other evaluations and training runs of the session, so a lower bound; `bench/throughput.py` "
                "measures speed): encode "
                f"{sp['encode_mp_s']:.2f} MP/s, decode {sp['decode_mp_s']:.2f} MP/s.",
            ]
    return out + [""]


def worst_images(s: dict, n: int = 8) -> list[str]:
    """The images where we lose most against JPEG 2000: what an operator should look at first."""
    key = next((k for k in s.get("per_image", {}) if k.endswith(" vs jpeg2000")), None)
    if key is None:
        return []
    rows = [r for r in s["per_image"][key]["per_image"] if r["bd_rate"] is not None][:n]
    if not rows:
        return []
    out = ["", f"Worst images, {key} (per-image BD-rate, whole files; positive = more bytes than JPEG 2000):", ""]
    out += ["| image | BD-rate |", "|---|---|"]
    out += [f"| {Path(r['image']).name} | {fmt(r['bd_rate'])} |" for r in rows]
    return out


def ablation_section() -> list[str]:
    path = ROOT / "bench" / "results" / "ablation.json"
    head = ["## Ablation: inter-tile context and embedded context", ""]
    if not path.exists():
        return head + ["Not measured yet: `python bench/ablation.py`", ""]
    a = json.loads(path.read_text())
    return head + [
        f"`python bench/ablation.py` (models {', '.join(f'`{m}`' for m in a.get('models', [a.get('model')]))}; "
        "each suite's "
        "configurations share one model's parameters: neither addition has weights). *inter-tile* = `--halo 64`: "
        "each tile is analysed with "
        "64 px of its neighbours (its hyper-latent from its own latents) and synthesised on a canvas with its "
        "neighbours' latents; a lost neighbour only drops that border back to lone-tile synthesis "
        "(tests/test_inter_tile.py). *context* = `--value-range scene`: >8-bit bands are stretched by the "
        "scene's min/max (band statistics, 16 bytes per band in the header, no bits per tile); it does not apply "
        "to 8-bit data. Times are totals over all images and qualities 1–8 (whole pipeline, cores shared with "
        "the session's other work). These figures were measured before rates counted whole files (tile "
        "payloads only), with earlier weights; the decision they support (halo off) is in docs/experiments.md.",
        "",
        a["markdown"],
        "",
    ]


def training(meta: dict) -> str:
    """Total steps and hours, with the runs that led here (each `fool train --init` starts a new run)."""
    runs = meta.get("lineage", []) + [{"run": "last run", "steps": meta.get("step") or 0}]
    runs[-1]["train_seconds"] = meta.get("train_seconds") or 0.0
    steps = sum(r["steps"] for r in runs)
    hours = sum(r["train_seconds"] for r in runs) / 3600
    parts = ", ".join(f"{r['run']} {r['steps']:,} steps / {r['train_seconds'] / 3600:.2f} h" for r in runs)
    return f"{steps:,} steps, {hours:.2f} h in total ({parts})"


SERVES = {
    "fool-m": "RGB colour triples (8-bit, e.g. NAIP bands 1–3, Landsat) and single bands coded as grey triples "
    "(NAIP NIR, float multispectral; also 11–16-bit bands when fool-m16 is not shipped or `--model fool-m` "
    "is given). 8-bit bands map 0..255; deeper integer and float bands map their scanned min..max.",
    "fool-m2": "the default for 8-bit imagery: what fool-m serves (it is fool-m grown by three quality levels "
    "below its lowest, so its quality 4..11 are fool-m's 1..8 and its default is 6). fool-m stays shipped "
    "for containers coded with it.",
    "fool-m16": "the default for integer scenes deeper than 8 bits (WorldView-3 pan, Sentinel-2 12-bit bands), "
    "band by band as grey triples, each band mapped from its scanned min..max. fool-m (as of its run 8, "
    "M=192) fine-tuned on such bands only (`--deep-prob 1`); float scenes stay with fool-m. Not for colour: "
    "it has forgotten RGB (28.1 dB at quality 8 on UC Merced `dev`, `bench/transform_floor.py`).",
}


def header(model: str) -> list[str]:
    tables = np.load(ROOT / "models" / f"{model}.npz")
    meta = json.loads(bytes(tables["meta"]).decode())
    log = ROOT / "models" / f"{model}.train_log.csv"
    last = list(csv.DictReader(open(log)))[-1] if log.exists() else {}
    c = meta["config"]
    return [
        f"## {model}",
        "",
        f"- **id**: `{model}@{meta['weights_sha256'][:16]}` (SHA-256 of `{model}.pt`: `{meta['weights_sha256']}`)",
        f"- **architecture**: mean-scale hyperprior, analysis N={c['n_enc']} M={c['m']} (GDN, 4× stride-2 5×5), "
        f"hyper-latent {c['nz']} ch, synthesis N={c['n_dec']}"
        + (f" with {c['dec_blocks']} residual bottleneck blocks per stage" if c.get("dec_blocks") else "")
        + "; integer hyper-synthesis (12-bit weights, 8 fractional bits)"
        + ("; checkerboard context (one integer 3×3 conv, two-pass)" if c.get("context") else "")
        + f"; {len(c['lambdas'])} gain-vector rate levels; convolution weights stored in float16",
        f"- **parameters**: onboard (analysis + hyper-analysis) {meta['parameters']['onboard']:,}; "
        f"total {meta['parameters']['total']:,}",
        f"- **λ levels** (MSE on 8-bit scale, quality 1…{len(c['lambdas'])}): "
        + ", ".join(f"{v:.3g}" for v in c["lambdas"]),
        f"- **training**: {training(meta)} on 2 CPU cores "
        f"(bf16 autocast on transforms), batch 8 × 128² crops; data and commands in `datasets.md`; curves in "
        f"`{model}.train_log.csv` (`fool plot-log`). Last logged step: bpp {float(last.get('bpp', 'nan')):.3f}, "
        f"PSNR {float(last.get('psnr', 'nan')):.2f} dB (mean over levels).",
        f"- **serves**: {SERVES.get(model, 'see README')}",
        "- **rate**: every byte of the `.fool` file counts (container version 5: a 40–100-byte binary header, "
        "tile payloads, about 4 B of table per tile, an 8-byte footer), against whole raw J2K codestreams and "
        "whole JPEG XL/WebP/JPEG files; default 128-px tiles.",
        "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", help="shipped model(s), main one first [default: fool-m]")
    args = ap.parse_args()
    models = args.model or ["fool-m"]
    lines = [f"# Model card{'s' if len(models) > 1 else ''}: {', '.join(models)}", ""]
    lines += [
        "The downstream-task models (Task A classifier, feature mode) have their own card: `ucm-classifier.md`.",
        "",
    ]
    for model in models:
        lines += header(model)
    lines += [
        "## Rate–distortion",
        "",
        "PSNR uses the peak of the bit depth that holds the data (255; 2**bits − 1 for deeper data); "
        "points are means over images per setting "
        "(ours: every learned level, quality 1…L; `jpeg2000`: OpenJPEG PSNR targets 22…50 dB; `jpeg2000-rate`: "
        "the same coder at "
        "whole-codestream rates 0.1…4 bpp per image; JPEG XL: distance 8…0.3; WebP/JPEG: quality 10…97). "
        "BD-rate is Bjøntegaard (log-rate interpolated piecewise-cubically, PCHIP) over the overlapping PSNR "
        "range; negative = fewer bytes than the reference. The mean-curve figure depends on how each codec's "
        "settings line up across images; the per-image figures do not.",
        "",
    ]
    for key, (title, cmd) in SETS.items():
        lines += section(key, title, cmd, models)
    lines += ablation_section()
    (ROOT / "models" / "README.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
