"""What a codec buys an operator: scenes a day that reach the ground, and what is left on board.

It spans both sides of the link (onboard imaging and storage, ground contact planning), hence lives in
`fool/`, not in `ground/` or `onboard/`.

The model, kept simple on purpose so the figure is easy to audit:

- Imaging: `scenes_per_orbit` scenes per orbit, evenly spaced in time from the start of the range
  (the orbit period comes from the TLE's mean motion); every scene has the same size.
- Storage: the satellite starts the range with an empty store and keeps every scene (no overflow).
- Downlink: one transmitter per satellite. Windows of different stations that overlap in time are merged
  into one contact whose capacity is, at each instant, the best single window's rate. A scene can go
  down in a contact only if it was acquired before the contact begins; scenes are sent first in, first
  out, and one may be split across contacts; it counts as delivered when its last byte is down.
- Stations: each station is assumed free for every satellite (no antenna contention between satellites).
- Rates: a codec's bits per pixel (all bands) at a target PSNR, interpolated in log(bpp) between the
  measured points of its rate-distortion curve in a `bench/results/rd_*.json` file, and scaled from the
  benchmark scenes' band count to the simulated scene's (so cross-band redundancy is not extrapolated).
  Raw is `bands x bits_per_sample`.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fool.shared.errors import InputError
from fool.shared.windows import ContactWindow

#: The uncompressed reference, always simulated.
RAW = "raw"
#: The reference codec read from a results file when the user names none.
REFERENCE_CODEC = "jpeg2000"


@dataclass(frozen=True)
class Imaging:
    """What the satellite images: how often and how big a scene is."""

    scenes_per_orbit: float
    width: int
    height: int
    bands: int
    bits_per_sample: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scenes_per_orbit) and self.scenes_per_orbit > 0):
            raise InputError(f"scenes per orbit must be > 0, got {self.scenes_per_orbit}")
        for key in ("width", "height", "bands", "bits_per_sample"):
            if getattr(self, key) < 1:
                raise InputError(f"{key.replace('_', ' ')} must be >= 1, got {getattr(self, key)}")

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def raw_bpp(self) -> float:
        """Bits per pixel (all bands) of an uncompressed scene."""
        return float(self.bands * self.bits_per_sample)


@dataclass(frozen=True)
class CodecRate:
    """A codec's bits per pixel over all bands of the simulated scene, and where the number came from."""

    codec: str
    bpp: float
    source: str


@dataclass(frozen=True)
class QueueOutcome:
    """One codec on one satellite: what went down, what is still on board at the end of the range."""

    acquired: int
    delivered: int
    delivered_bytes: int
    backlog_scenes: int
    backlog_bytes: int
    unused_capacity_bytes: int


@dataclass(frozen=True)
class CodecResult:
    codec: str
    bpp: float
    scene_bytes: int
    source: str
    acquired: int
    delivered: int
    delivered_bytes: int
    backlog_scenes: int
    backlog_bytes: int
    unused_capacity_bytes: int


@dataclass
class Simulation:
    """The simulation's result: per-codec totals over all satellites, per-satellite detail, and inputs."""

    start: datetime
    end: datetime
    inputs: dict[str, Any]
    contacts: dict[str, Any]
    codecs: list[CodecResult]
    satellites: dict[str, list[CodecResult]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "start": _iso(self.start),
            "end": _iso(self.end),
            "inputs": self.inputs,
            "contacts": self.contacts,
            "codecs": [asdict(c) for c in self.codecs],
            "satellites": {name: [asdict(c) for c in rows] for name, rows in self.satellites.items()},
            "assumptions": ASSUMPTIONS,
        }


#: What the figures depend on beyond the numeric inputs; printed and saved with every simulation.
ASSUMPTIONS = [
    "scenes evenly spaced in time at the given scenes per orbit; every scene the same size",
    "the store starts empty and never overflows",
    "one transmitter per satellite: overlapping windows are merged, no station contention between satellites",
    "a scene goes down only in a contact that begins after it was acquired; scenes sent first in, first out",
    "codec rates at equal PSNR from the benchmark's mean curves, scaled linearly with the band count",
]


def scene_bytes(pixels: int, bpp: float) -> int:
    """Bytes of one coded scene: pixels x bits per pixel (all bands) / 8, rounded up."""
    return math.ceil(pixels * bpp / 8)


def acquisition_times(start: datetime, end: datetime, period_s: float, scenes_per_orbit: float) -> list[datetime]:
    """Scene times in [start, end): one every period / scenes_per_orbit, the first half an interval in."""
    step = period_s / scenes_per_orbit
    span = (end - start).total_seconds()
    n = math.ceil(span / step - 0.5) if span > 0 else 0
    return [start + timedelta(seconds=(k + 0.5) * step) for k in range(max(n, 0))]


def merge_contacts(windows: Iterable[ContactWindow]) -> list[tuple[datetime, datetime, int]]:
    """(start, end, capacity_bytes) of contacts one transmitter can use, sorted by start.

    A window that overlaps no other keeps its capacity exactly; overlapping windows become one contact
    whose capacity integrates the best single window's rate (bytes/s) over each stretch of time.
    """
    windows = sorted(windows, key=lambda w: w.start)
    clusters: list[list[ContactWindow]] = []
    for w in windows:
        if clusters and w.start < max(x.end for x in clusters[-1]):
            clusters[-1].append(w)
        else:
            clusters.append([w])
    contacts = []
    for cluster in clusters:
        begin, finish = cluster[0].start, max(w.end for w in cluster)
        if len(cluster) == 1:
            contacts.append((begin, finish, cluster[0].capacity_bytes))
            continue
        edges = sorted({t for w in cluster for t in (w.start, w.end)})
        total = 0.0
        for a, b in zip(edges, edges[1:], strict=False):
            rates = [w.capacity_bytes / w.duration_s for w in cluster if w.start <= a and b <= w.end]
            total += max(rates, default=0.0) * (b - a).total_seconds()
        contacts.append((begin, finish, math.floor(total)))
    return contacts


def downlink_queue(
    contacts: Sequence[tuple[datetime, datetime, int]], acquisitions: Sequence[datetime], size_bytes: int
) -> QueueOutcome:
    """First-in first-out store drained by each contact: see the module docstring for the rules."""
    queue: deque[int] = deque()  # bytes still to send of each stored scene, oldest first
    pending = deque(sorted(acquisitions))
    delivered = delivered_bytes = unused = 0
    for begin, _, capacity in sorted(contacts):
        while pending and pending[0] <= begin:
            pending.popleft()
            queue.append(size_bytes)
        budget = capacity
        while queue and budget > 0:
            sent = min(queue[0], budget)
            budget -= sent
            delivered_bytes += sent
            if sent == queue[0]:
                queue.popleft()
                delivered += 1
            else:
                queue[0] -= sent
        unused += budget
    backlog = list(queue) + [size_bytes] * len(pending)
    return QueueOutcome(len(acquisitions), delivered, delivered_bytes, len(backlog), sum(backlog), unused)


def rate_at_psnr(bpp: Sequence[float], psnr: Sequence[float], target_db: float, codec: str = "codec") -> float:
    """Bits per pixel at `target_db`, linear in log(bpp) between the two measured points around it.

    Raises InputError when the target lies outside the measured PSNR range (no extrapolation) or the
    curve does not rise with the rate.
    """
    import numpy as np

    points = sorted((float(b), float(p)) for b, p in zip(bpp, psnr, strict=True) if b > 0 and math.isfinite(p))
    if len(points) < 2:
        raise InputError(f"{codec}: fewer than two rate-distortion points to interpolate")
    rates, quality = zip(*points, strict=True)
    if any(q2 <= q1 for q1, q2 in zip(quality, quality[1:], strict=False)):
        raise InputError(f"{codec}: PSNR does not rise with the rate; cannot read a rate at {target_db} dB")
    if not quality[0] <= target_db <= quality[-1]:
        raise InputError(
            f"{codec}: {target_db} dB is outside its measured range {quality[0]:.2f}..{quality[-1]:.2f} dB; "
            f"pick a PSNR inside it or give --rate {codec}=BPP"
        )
    return float(np.exp(np.interp(target_db, quality, np.log(rates))))


def rates_from_results(
    path: str | os.PathLike,
    target_db: float,
    scene_bands: int,
    codecs: Sequence[str] | None = None,
    bench_bands: int | None = None,
) -> list[CodecRate]:
    """Codec rates at `target_db` from a `fool eval` results file (`curves.<codec>.bpp/psnr`).

    `codecs` defaults to jpeg2000 and the first FOOL model in the file. The benchmark's bits per pixel
    cover its scenes' bands; they are scaled to `scene_bands`. `bench_bands` overrides the band count
    read from the benchmark scenes (needed when they are not on this machine).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read results {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    curves = data.get("curves") if isinstance(data, dict) else None
    if not isinstance(curves, dict) or not curves:
        raise InputError(f"{path}: no 'curves' with bpp and psnr per codec; give rates with --rate CODEC=BPP")
    if not codecs:
        fool = [c for c in curves if c.startswith("fool")]
        codecs = [c for c in (REFERENCE_CODEC, *fool[:1]) if c in curves]
    unknown = [c for c in codecs if c not in curves]
    if unknown:
        raise InputError(f"{path}: no curve for {unknown[0]!r} (has {', '.join(curves)}); give --rate {unknown[0]}=BPP")
    bands = bench_bands or _bench_bands(path, data)
    rates = []
    for codec in codecs:
        curve = curves[codec]
        if not isinstance(curve, dict) or "bpp" not in curve or "psnr" not in curve:
            raise InputError(f"{path}: curve {codec!r} lacks bpp and psnr lists; give --rate {codec}=BPP")
        bpp = rate_at_psnr(curve["bpp"], curve["psnr"], target_db, codec)
        scaled = bpp * scene_bands / bands
        source = f"{path.name} at {target_db:g} dB: {bpp:.4f} bpp on {bands}-band scenes"
        rates.append(
            CodecRate(codec, scaled, source + (f", x {scene_bands}/{bands} bands" if bands != scene_bands else ""))
        )
    return rates


def simulate(
    plans: Mapping[str, tuple[float, list[ContactWindow]]],
    start: datetime,
    end: datetime,
    imaging: Imaging,
    rates: Sequence[CodecRate],
    inputs: Mapping[str, Any] | None = None,
) -> Simulation:
    """Scenes delivered and backlog per codec, given each satellite's (orbit period s, windows).

    Raw is always simulated first; `rates` adds the codecs. `inputs` is recorded with the result so the
    figure says what it depends on.
    """
    if end <= start:
        raise InputError("the simulated range must end after it starts")
    all_rates = [CodecRate(RAW, imaging.raw_bpp, f"{imaging.bands} bands x {imaging.bits_per_sample} bit")]
    all_rates += [r for r in rates if r.codec != RAW]
    per_sat: dict[str, list[CodecResult]] = {}
    merged_total = capacity_total = 0
    for name, (period_s, windows) in plans.items():
        contacts = merge_contacts(windows)
        merged_total += len(contacts)
        capacity_total += sum(c[2] for c in contacts)
        times = acquisition_times(start, end, period_s, imaging.scenes_per_orbit)
        rows = []
        for rate in all_rates:
            size = scene_bytes(imaging.pixels, rate.bpp)
            q = downlink_queue(contacts, times, size)
            rows.append(CodecResult(rate.codec, rate.bpp, size, rate.source, **asdict(q)))
        per_sat[name] = rows
    totals = []
    for k, rate in enumerate(all_rates):
        rows = [per_sat[name][k] for name in per_sat]
        summed = {key: sum(getattr(r, key) for r in rows) for key in asdict(QueueOutcome(0, 0, 0, 0, 0, 0))}
        totals.append(CodecResult(rate.codec, rate.bpp, scene_bytes(imaging.pixels, rate.bpp), rate.source, **summed))
    windows_all = [w for _, ws in plans.values() for w in ws]
    contacts_info = {
        "windows": len(windows_all),
        "contacts_after_merging": merged_total,
        "minutes": round(sum(w.duration_s for w in windows_all) / 60, 2),
        "capacity_bytes": capacity_total,
    }
    recorded = {"imaging": asdict(imaging), **(inputs or {})}
    return Simulation(start, end, recorded, contacts_info, totals, per_sat)


def format_simulation(sim: Simulation) -> str:
    """The report an operator reads: one line per codec, then what the figures depend on."""
    hours = (sim.end - sim.start).total_seconds() / 3600
    im = sim.inputs["imaging"]
    c = sim.contacts
    raw = sim.codecs[0]
    lines = [
        f"Downlink simulation {_iso(sim.start)} + {hours:g} h, {len(sim.satellites)} satellite(s)",
        f"  contacts: {c['windows']} windows ({c['contacts_after_merging']} after merging overlaps), "
        f"{c['minutes']:.1f} min, {c['capacity_bytes'] / 1e9:.1f} GB usable",
        f"  imaging: {raw.acquired} scenes of {im['width']}x{im['height']} px x {im['bands']} bands "
        f"x {im['bits_per_sample']} bit ({raw.scene_bytes / 1e6:.1f} MB raw), {im['scenes_per_orbit']:g} per orbit",
        "",
        f"{'codec':<10} {'bpp':>8} {'MB/scene':>9} {'imaged':>7} {'delivered':>10} {'backlog':>8} {'backlog GB':>11}",
    ]
    for r in sim.codecs:
        lines.append(
            f"{r.codec:<10} {r.bpp:>8.3f} {r.scene_bytes / 1e6:>9.1f} {r.acquired:>7} {r.delivered:>10} "
            f"{r.backlog_scenes:>8} {r.backlog_bytes / 1e9:>11.2f}"
        )
    lines += ["", "Rates:"] + [f"  {r.codec}: {r.bpp:.4f} bpp ({r.source})" for r in sim.codecs]
    lines += ["These figures depend on:"]
    lines += [f"  {k}: {v}" for k, v in sim.inputs.items() if k != "imaging"]
    lines += [f"  {a}" for a in ASSUMPTIONS]
    return "\n".join(lines)


def _bench_bands(path: Path, data: dict) -> int:
    """Band count of the benchmark scenes, read from their headers (they must all agree)."""
    if isinstance(data.get("bands"), int):
        return data["bands"]
    images = sorted({p["image"] for p in data.get("points", []) if isinstance(p, dict) and "image" in p})
    counts: set[int] = set()
    try:
        import rasterio
    except ImportError:  # pragma: no cover - rasterio is a dependency
        rasterio = None
    for image in images:
        roots = [Path(".")] + ([path.resolve().parents[2]] if len(path.resolve().parents) > 2 else [])
        found = next((r / image for r in roots if (r / image).is_file()), None)
        if found is None or rasterio is None:
            counts = set()
            break
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(found) as ds:
                counts.add(ds.count)
    if len(counts) != 1:
        raise InputError(
            f"{path}: cannot tell how many bands the benchmark scenes have "
            f"({'they differ' if counts else 'scenes not found here'}); give --bench-bands N"
        )
    return counts.pop()


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")
