"""Downlink loss: how many tiles the ground recovers through a lossy link, against how many could be.

    python bench/link_loss.py                      # NAIP at 64- and 128-px tiles, 20 seeds per condition
    python bench/link_loss.py --seeds 5 --tiles 64 # quicker

The team's NAIP scene is compressed at each tile size, packed (``fool.onboard.packer``) into three
windows whose capacities are 35 %, 40 % and 50 % of the container bytes (the first two fill, the
last holds the rest), sent through the seeded link simulator at 1/5/10/20 % packet loss, uniform and
in bursts of 10 packets (each with 1 % bit flips, 1 % duplicates, 10 % reordering), and unpacked.

Per run: ``arrived`` = coded tiles all of whose packets reached the ground intact (from the
simulator's per-packet fates), ``recovered`` = tiles the unpacker wrote with a payload, ``identical``
= recovered tiles whose payload equals the original (a bit-identical payload decodes bit-identically),
``false`` = recovered tiles not in ``arrived`` (must be 0). Results: bench/results/link_loss.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fool.ground.unpack import unpack
from fool.onboard.packer import pack
from fool.shared.format import MODE_CODEC, Container
from fool.shared.packets import KIND_HEADER, KIND_TILE, scan_packets
from fool.shared.windows import ContactWindow, save_windows

from fool.linksim import LinkModel, link_sim

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FOOL_DATA", ROOT.parent / "shared" / "data"))
SCENE = DATA / "scenes" / "naip" / "m_4709963_se_14_1_20200831.tif"
LOSSES = (0.01, 0.05, 0.10, 0.20)
BURSTS = (1, 10)
WINDOW_SHARES = (0.35, 0.40, 0.50)


def compress(tile: int, work: Path, quality: float | None) -> Path:
    from fool.onboard.compress import compress_scene

    out = work / f"naip_t{tile}.fool"
    fields = {"tile_size": tile} | ({"quality": quality} if quality is not None else {})
    compress_scene(SCENE, out, **fields)
    return out


def make_windows(total: int, path: Path) -> list[ContactWindow]:
    t0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    windows = [
        ContactWindow(t0 + timedelta(hours=3 * i), t0 + timedelta(hours=3 * i, minutes=9), int(share * total), "bench")
        for i, share in enumerate(WINDOW_SHARES)
    ]
    save_windows(windows, path)
    return windows


def payloads(path: Path) -> dict[tuple[int, int], bytes]:
    with Container.open(path) as c:
        return {(e.row, e.col): c.payload(e) for e in c.tiles if e.mode == MODE_CODEC}


def arrived_tiles(sent: list[Path], log: dict) -> tuple[set, bool]:
    """(tiles all of whose packets arrived intact, whether any header copy arrived) for one scene."""
    ok, bad, header = set(), set(), False
    for path, entry in zip(sent, log["files"], strict=True):
        for frame, fate in zip(scan_packets(path.read_bytes()), entry["fates"], strict=True):
            p = frame.packet
            header |= p.kind == KIND_HEADER and fate == "ok"
            if p.kind == KIND_TILE:
                (ok if fate == "ok" else bad).add((p.body.row, p.body.col))
    return ok - bad, header


def run_once(sent: list[Path], original: dict, model: LinkModel, work: Path) -> dict:
    log = link_sim(sent, work / "recv", model)
    arrived, header = arrived_tiles(sent, log)
    report = unpack(sorted((work / "recv").glob("*.bin"), reverse=True), work / "ground")
    scene = report.scenes[0] if report.scenes else None
    got = payloads(Path(scene.output)) if scene is not None and scene.output else {}
    packets = sum(len(f["fates"]) for f in log["files"])
    lost = sum(f["dropped"] for f in log["files"])
    return {
        "packet_loss": lost / packets,
        "arrived": len(arrived),
        "recovered": len(got),
        "identical": sum(original.get(k) == v for k, v in got.items()),
        "false": len(set(got) - arrived),
        "header_arrived": header,
        "scene_recovered": scene is not None and scene.status != "lost",
    }


def condition(sent: list[Path], original: dict, loss: float, burst: int, seeds: int, work: Path) -> dict:
    runs = []
    for seed in range(seeds):
        model = LinkModel(drop=loss, burst=burst, flip=0.01, duplicate=0.01, reorder=0.1, seed=seed)
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            runs.append(run_once(sent, original, model, Path(tmp)))
    arrived, recovered = sum(r["arrived"] for r in runs), sum(r["recovered"] for r in runs)
    return {
        "loss": loss,
        "burst": burst,
        "seeds": seeds,
        "tiles": len(original),
        "packet_loss": statistics.mean(r["packet_loss"] for r in runs),
        "arrived_frac": arrived / (len(original) * seeds),
        "recovered_frac": recovered / (len(original) * seeds),
        "recovered_of_arrived": recovered / arrived if arrived else 1.0,
        "identical": sum(r["identical"] for r in runs) == recovered,
        "false_recoveries": sum(r["false"] for r in runs),
        "scenes_header_arrived": sum(r["header_arrived"] for r in runs),
        "scenes_recovered": sum(r["scene_recovered"] for r in runs),
    }


def bench_tile(tile: int, args: argparse.Namespace, work: Path) -> dict:
    fool = compress(tile, work, args.quality)
    original = payloads(fool)
    windows = make_windows(fool.stat().st_size, work / f"windows_t{tile}.json")
    packed = pack([fool], windows, work / f"sent_t{tile}", max_packet=args.max_packet)
    sent = packed.files
    rows = [condition(sent, original, loss, burst, args.seeds, work) for burst in BURSTS for loss in LOSSES]
    return {
        "tile": tile,
        "container_bytes": fool.stat().st_size,
        "windows": [{"capacity_bytes": w.capacity_bytes} for w in windows],
        "fills": packed.fills,
        "not_sent": sum(len(s["tiles"]) for s in packed.manifest["not_sent"]),
        "conditions": rows,
    }


def print_table(results: list[dict]) -> None:
    print(
        f"{'tile':>4} {'loss':>5} {'burst':>5} {'pkt lost':>8} {'arrived':>8} {'recovered':>9} "
        f"{'rec/arr':>7} {'identical':>9} {'false':>5} {'scenes':>7}"
    )
    for res in results:
        fills = " ".join(f"{100 * f:.2f}%" for f in res["fills"])
        print(f"# {res['tile']} px: {res['container_bytes']} bytes, window fill {fills}, {res['not_sent']} not sent")
        for c in res["conditions"]:
            print(
                f"{res['tile']:>4} {100 * c['loss']:>4.0f}% {c['burst']:>5} {100 * c['packet_loss']:>7.2f}% "
                f"{100 * c['arrived_frac']:>7.2f}% {100 * c['recovered_frac']:>8.2f}% "
                f"{100 * c['recovered_of_arrived']:>6.1f}% {str(c['identical']):>9} {c['false_recoveries']:>5} "
                f"{c['scenes_recovered']:>3}/{c['scenes_header_arrived']:<3}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--quality", type=float, default=None)
    ap.add_argument("--max-packet", type=int, default=1024)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "link_loss.json")
    args = ap.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        results = [bench_tile(t, args, Path(tmp)) for t in args.tiles]
    print_table(results)
    record = {
        "scene": str(SCENE.relative_to(DATA)) if SCENE.is_relative_to(DATA) else str(SCENE),
        "max_packet": args.max_packet,
        "window_shares": WINDOW_SHARES,
        "link": {"flip": 0.01, "duplicate": 0.01, "reorder": 0.1},
        "results": results,
        "seconds": round(time.perf_counter() - start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out} ({record['seconds']} s)")


if __name__ == "__main__":
    main()
