"""Per-image BD-rate between two curves of one `fool eval` result (e.g. two models' encoders).

    fool eval ../shared/data/ucmerced/dev --model fool-m,fool-m-lean48 --codec jpeg2000 --limit 60 -o r.json
    python bench/compare_curves.py r.json fool-m fool-m-lean48

`fool eval` compares every curve with the reference codecs; this compares two of its curves
with each other, image by image (whole files, PCHIP over the overlapping PSNR range), with
the same code (`fool.evaluate.per_image_bd`). Negative: the second curve spends fewer bytes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fool.evaluate import Point, bd_rate, mean_curve, per_image_bd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path, help="JSON written by fool eval")
    parser.add_argument("reference", help="curve name, e.g. fool-m")
    parser.add_argument("candidate", help="curve name, e.g. fool-m-lean48")
    args = parser.parse_args()
    points = [Point(**p) for p in json.loads(args.result.read_text())["points"]]
    names = {p.codec for p in points}
    for name in (args.reference, args.candidate):
        if name not in names:
            raise SystemExit(f"no curve {name!r} in {args.result} (curves: {', '.join(sorted(names))})")
    per = per_image_bd(points, args.reference, args.candidate)
    ref, cand = mean_curve(points, args.reference), mean_curve(points, args.candidate)
    curve = bd_rate(ref[0], ref[1], cand[0], cand[1])
    print(f"{args.candidate} vs {args.reference}: mean curves {curve:+.2f} %" if curve is not None else "no overlap")
    if per.get("measured"):
        print(
            f"  per image ({per['measured']} of {per['images']}): mean {per['mean']:+.2f} %, "
            f"median {per['median']:+.2f} %, worst {per['worst']:+.2f} % ({Path(per['worst_image']).name}), "
            f"better on {per['wins']}"
        )
        for row in per["per_image"][:5]:
            if row["bd_rate"] is not None:
                print(f"    {Path(row['image']).name}: {row['bd_rate']:+.2f} %")


if __name__ == "__main__":
    main()
