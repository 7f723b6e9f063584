"""Append training runs' CSV logs to a model's combined log, on one step/time axis.

A model trained over several runs (each started with ``fool train --init``) has one log per
run, each counting from step 0. The checkpoint's lineage says how many steps and seconds came
before, so rows are shifted by that much; rows logged after the checkpoint (lost when a run
was stopped) are dropped, a step logged twice (before a stop and again after the resume) keeps
its later row, and rows already in the combined log are not added twice.

    python bench/append_log.py runs/fool-m4 runs/fool-m5 --into models/fool-m.train_log.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch


def append_run(run: Path, into: Path) -> int:
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    lineage = state.get("lineage", [])
    step0 = sum(r["steps"] for r in lineage)
    sec0 = sum(r.get("train_seconds", 0.0) for r in lineage)
    rows = list(csv.DictReader(open(into))) if into.exists() else []
    last = int(rows[-1]["step"]) if rows else 0
    with open(run / "train_log.csv") as src:
        reader = csv.DictReader(src)
        fields = reader.fieldnames
        by_step = {int(r["step"]): r for r in reader}  # a resumed run's rows replace the lost ones
    new = [(s, r) for s, r in sorted(by_step.items()) if s <= state["step"] and step0 + s > last]
    with open(into, "a", newline="") as dst:
        writer = csv.DictWriter(dst, fieldnames=fields)
        if not rows:
            writer.writeheader()
        for step, row in new:
            row["step"] = str(step0 + step)
            row["seconds"] = f"{sec0 + float(row['seconds']):.1f}"
            writer.writerow(row)
    return len(new)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders, oldest first")
    ap.add_argument("--into", type=Path, required=True)
    args = ap.parse_args()
    for run in args.runs:
        print(f"{run}: {append_run(run, args.into)} rows appended to {args.into}")


if __name__ == "__main__":
    main()
