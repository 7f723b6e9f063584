"""A seeded lossy-link simulator over packet files: what the ground receives from a noisy downlink.

Each input file is split into its packets and every packet meets, independently:

* loss in bursts: a burst of ``burst`` consecutive packets starts with probability ``drop / burst``
  (``burst=1`` is uniform loss), so about a fraction ``drop`` of the packets is lost;
* a bit flip (one random bit) with probability ``flip``, else truncation at a random length with
  probability ``truncate``;
* duplication with probability ``duplicate`` (the copy carries the same damage);
* reordering with probability ``reorder``: the packet moves up to ``REORDER_SPAN`` places later.

The same seed gives the same damage. The fate of every input packet ("ok", "dropped", "flipped",
"truncated") is kept in ``link_sim.json`` so tests and benchmarks know which packets arrived intact.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fool.shared.errors import InputError, OutputError
from fool.shared.packets import scan_packets

REORDER_SPAN = 8
LOG_NAME = "link_sim.json"
FATES = ("ok", "dropped", "flipped", "truncated")


@dataclass(frozen=True)
class LinkModel:
    """Rates (per packet) of the damage the link does; ``burst`` is the length of a loss burst."""

    drop: float = 0.0
    burst: int = 1
    flip: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    truncate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("drop", "flip", "duplicate", "reorder", "truncate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InputError(f"--{name} must be a rate in 0..1, got {value}")
        if self.burst < 1:
            raise InputError(f"--burst must be >= 1 packet, got {self.burst}")


@dataclass
class StreamResult:
    """One file through the link: the bytes the ground gets and the fate of each packet sent."""

    name: str
    data: bytes = field(repr=False)
    fates: list[str]
    duplicated: int = 0
    reordered: int = 0

    def counts(self) -> dict[str, int]:
        c = Counter(self.fates)
        return {k: c[k] for k in FATES} | {"duplicated": self.duplicated, "reordered": self.reordered}


class Link:
    """The per-packet random process of a :class:`LinkModel` for one stream."""

    def __init__(self, model: LinkModel, stream_seed: str) -> None:
        self.model = model
        self.rng = random.Random(f"{model.seed}:{stream_seed}")
        self.burst_left = 0

    def lost(self) -> bool:
        if self.burst_left == 0 and self.model.drop and self.rng.random() < self.model.drop / self.model.burst:
            self.burst_left = self.model.burst
        if self.burst_left:
            self.burst_left -= 1
            return True
        return False

    def damage(self, raw: bytes) -> tuple[bytes, str]:
        if self.model.flip and self.rng.random() < self.model.flip:
            bit = self.rng.randrange(len(raw) * 8)
            out = bytearray(raw)
            out[bit // 8] ^= 1 << bit % 8
            return bytes(out), "flipped"
        if self.model.truncate and self.rng.random() < self.model.truncate and len(raw) > 1:
            return raw[: self.rng.randrange(1, len(raw))], "truncated"
        return raw, "ok"

    def transmit(self, name: str, packets: list[bytes]) -> StreamResult:
        result = StreamResult(name, b"", [])
        sent: list[tuple[float, int, bytes]] = []  # (arrival time, send order, packet)
        for i, raw in enumerate(packets):
            if self.lost():
                result.fates.append("dropped")
                continue
            raw, fate = self.damage(raw)
            result.fates.append(fate)
            copies = 2 if self.model.duplicate and self.rng.random() < self.model.duplicate else 1
            result.duplicated += copies - 1
            for _ in range(copies):
                moved = self.model.reorder and self.rng.random() < self.model.reorder
                result.reordered += bool(moved)
                sent.append((i + (self.rng.uniform(0, REORDER_SPAN) if moved else 0.0), len(sent), raw))
        result.data = b"".join(raw for _, _, raw in sorted(sent))
        return result


def split_packets(data: bytes) -> list[bytes]:
    """The intact packets of a packet file, in order."""
    return [frame.raw for frame in scan_packets(data)]


def link_sim(packet_files: Sequence[str | os.PathLike], out_dir: str | os.PathLike, model: LinkModel) -> dict:
    """Send every file through the link; write the damaged files (same names) and ``link_sim.json``.

    -> the log written: the model, per-file counts and per-packet fates."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out_dir}: {exc.strerror or exc}") from None
    files: list[dict] = []
    log = {"model": asdict(model), "files": files}
    for path in map(Path, packet_files):
        if (out_dir / path.name).resolve() == path.resolve():
            raise InputError(f"{path}: the output folder would overwrite the input")
        result = Link(model, path.name).transmit(path.name, split_packets(_read(path)))
        _write(out_dir / path.name, result.data)
        files.append({"file": path.name, **result.counts(), "fates": result.fates})
    _write(out_dir / LOG_NAME, (json.dumps(log) + "\n").encode())
    return log


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read packet file {path}: {exc.strerror or exc}") from None


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
