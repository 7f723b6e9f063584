"""The downlink packer: `.fool` containers -> one file of CCSDS packets per contact window.

Scenes are sent in priority order (the order given, or ascending ``priorities``; ties keep the
order given), each as a stream of packets (:mod:`fool.shared.packets`)::

    HEADER, TABLE copy, tiles of the first half (by bytes), HEADER, TABLE copy, the other tiles, HEADER

so a scene that fits one window carries its header three times (first, middle, last) and its table
twice. Windows are filled greedily, in order, to their ``capacity_bytes`` and never over it:

* A scene that does not fit the rest of a window is split across windows **by tiles**; every window
  that carries a scene's tiles starts that scene with a HEADER and a full TABLE copy, so each window
  can be unpacked alone. Re-coding a scene at a lower quality to fit is a different tool
  (``fool compress --budget``); the packer never changes a payload, so what reaches the ground is
  bit-identical to what was coded.
* To fill a window to the last ~100 bytes, its last packet may be a fragment of a tile whose other
  fragments go into the next window (fragments carry their byte offset, so any split reassembles).
* In the last window a tile is sent only if all its remaining bytes fit (a tile that cannot be
  completed is worth nothing), and later, smaller tiles may take its place (first fit).
  Tiles that fit no window are listed in the manifest under ``not_sent``.

Packing is planned first (which bytes go into which window) and emitted second, so every fragment
knows its index and count. Output: ``window_000.bin``... (raw concatenated packets, as on the link)
and ``manifest.json``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from fool.shared.errors import InputError, OutputError
from fool.shared.format import MODE_SKIPPED, Container, TileEntry
from fool.shared.packets import (
    CRC_SIZE,
    DEFAULT_DATA_FIELD,
    HEADER_OVERHEAD,
    KIND_HEADER,
    KIND_TABLE,
    KIND_TILE,
    MAX_DATA_FIELD,
    MIN_DATA_FIELD,
    SECONDARY,
    TABLE_HEAD,
    TABLE_OVERHEAD,
    TABLE_ROW,
    TILE_HEAD,
    TILE_OVERHEAD,
    HeaderBody,
    TableBody,
    TableRow,
    TileBody,
    apid_for,
    build_packet,
    name_bytes,
    scene_id_for,
)
from fool.shared.windows import ContactWindow

#: A window fragment is cut only if at least this many payload bytes fit; less is left empty.
MIN_FRAGMENT = 16


@dataclass
class SceneSource:
    """One scene to send: what the packets need from its container."""

    index: int
    name: str
    path: Path
    header: bytes
    rows: list[TableRow]
    tiles: list[TileEntry]  # the entries with a payload, raster order, with current-version checks
    stored: list[TileEntry]  # the same entries as the file holds them, to read payloads by
    cols: int
    grid_size: int
    apid: int
    scene_id: int
    priority: float

    def span(self, start: int, stop: int) -> tuple[int, int]:
        """The raster span a table fragment of rows ``start:stop`` covers: from the first grid position
        after the previous row (0 for the first fragment) to the position of row ``stop`` (the grid's end
        after the last row), so the fragments of a copy tile the whole grid."""
        return (
            0 if start == 0 else self._linear(start),
            self._linear(stop) if stop < len(self.rows) else self.grid_size,
        )

    def _linear(self, row_index: int) -> int:
        r = self.rows[row_index]
        return r.row * self.cols + r.col


@dataclass(frozen=True)
class Step:
    """One item of a scene's stream: a header copy, a table copy, or a tile (index into ``tiles``)."""

    scene: int
    kind: int
    tile: int = -1


@dataclass(frozen=True)
class Piece:
    """One planned packet: bytes ``start:stop`` of a tile payload, rows ``start:stop`` of a table copy."""

    scene: int
    kind: int
    tile: int = -1
    start: int = 0
    stop: int = 0
    copy: int = 0


@dataclass
class WindowPlan:
    window: ContactWindow
    pieces: list[Piece] = field(default_factory=list)
    used: int = 0

    @property
    def room(self) -> int:
        return self.window.capacity_bytes - self.used


@dataclass
class PackReport:
    """What :func:`pack` wrote; ``manifest`` is the dict also saved as ``manifest.json``."""

    files: list[Path]
    manifest_path: Path
    manifest: dict

    @property
    def fills(self) -> list[float]:
        return [w["fill"] for w in self.manifest["windows"]]


def load_scene(c: Container, index: int, path: Path, priority: float) -> SceneSource:
    """The packer's view of an open container."""
    entries = c.current_tiles()
    rows = [TableRow(e.row, e.col, e.quality, e.flags, e.mode, e.length, e.check) for e in entries]
    grid = c.scene.grid
    return SceneSource(
        index=index,
        name=path.stem,
        path=path,
        header=c.header_bytes,
        rows=rows,
        tiles=[e for e in entries if e.mode != MODE_SKIPPED],
        stored=[e for e in c.tiles if e.mode != MODE_SKIPPED],
        cols=grid.cols,
        grid_size=grid.rows * grid.cols,
        apid=apid_for(index),
        scene_id=scene_id_for(c.header_bytes, rows),
        priority=priority,
    )


def scene_steps(scene: int, tiles: list[TileEntry]) -> list[Step]:
    """HEADER, TABLE, first half of the tiles (by bytes), HEADER, TABLE, the rest, HEADER."""
    total, run, half = sum(t.length for t in tiles), 0, len(tiles)
    for i, t in enumerate(tiles):
        run += t.length
        if 2 * run >= total:
            half = i + 1
            break
    intro = [Step(scene, KIND_HEADER), Step(scene, KIND_TABLE)]
    body = [Step(scene, KIND_TILE, i) for i in range(len(tiles))]
    return intro + body[:half] + intro + body[half:] + [Step(scene, KIND_HEADER)]


class Planner:
    """Decides which bytes go into which window (no packet is built here)."""

    def __init__(self, scenes: list[SceneSource], max_data: int) -> None:
        self.scenes = scenes
        self.tile_chunk = max_data - SECONDARY.size - TILE_HEAD.size - CRC_SIZE
        self.table_rows = (max_data - SECONDARY.size - TABLE_HEAD.size - CRC_SIZE) // TABLE_ROW.size
        self.steps = [s for sc in scenes for s in scene_steps(sc.index, sc.tiles)]
        self.pos, self.offset = 0, 0  # next step, bytes of its tile already planned
        self.copies: Counter[int] = Counter()
        self.not_sent: set[tuple[int, int]] = set()  # (scene, tile index)

    def plan(self, windows: Sequence[ContactWindow]) -> list[WindowPlan]:
        plans = [WindowPlan(w) for w in windows]
        for i, plan in enumerate(plans):
            self._fill(plan, last=i == len(plans) - 1)
        for step in self.steps[self.pos :]:
            if step.kind == KIND_TILE:
                self.not_sent.add((step.scene, step.tile))
        return plans

    def _fill(self, plan: WindowPlan, last: bool) -> None:
        """Plan steps into ``plan`` until it is full; a window that opens mid-scene opens with that
        scene's HEADER and a whole TABLE copy."""
        if self.pos < len(self.steps) and self.steps[self.pos].kind != KIND_HEADER:
            scene = self.steps[self.pos].scene
            if not (self._header(plan, scene) and self._table(plan, scene)):
                return
            if self.steps[self.pos].kind == KIND_TABLE:
                self.pos += 1
        while self.pos < len(self.steps):
            step = self.steps[self.pos]
            if step.kind == KIND_TILE:
                done = self._tile(plan, step, last)
            else:
                done = self._header(plan, step.scene) if step.kind == KIND_HEADER else self._table(plan, step.scene)
            if not done:
                return
            self.pos, self.offset = self.pos + 1, 0

    def _header(self, plan: WindowPlan, scene: int) -> bool:
        sc = self.scenes[scene]
        cost = HEADER_OVERHEAD + len(name_bytes(sc.name)) + len(sc.header)
        if cost > plan.room:
            return False
        plan.pieces.append(Piece(scene, KIND_HEADER))
        plan.used += cost
        return True

    def _table(self, plan: WindowPlan, scene: int) -> bool:
        """One table copy, as much as fits; False if the window filled before its end."""
        self.copies[scene] += 1
        start, rows = 0, len(self.scenes[scene].rows)
        while True:
            fit = min(self.table_rows, (plan.room - TABLE_OVERHEAD) // TABLE_ROW.size, rows - start)
            if fit < 0 or (fit == 0 and start < rows):
                return False
            plan.pieces.append(Piece(scene, KIND_TABLE, start=start, stop=start + fit, copy=self.copies[scene]))
            plan.used += TABLE_OVERHEAD + fit * TABLE_ROW.size
            start += fit
            if start >= rows:
                return True

    def _tile(self, plan: WindowPlan, step: Step, last: bool) -> bool:
        """Plan the rest of a tile; False if the window is full and the tile continues in the next."""
        length = self.scenes[step.scene].tiles[step.tile].length
        if last and self._cost(length - self.offset) > plan.room:
            self.not_sent.add((step.scene, step.tile))
            return True
        while True:
            chunk = min(self.tile_chunk, length - self.offset)
            if TILE_OVERHEAD + chunk > plan.room:
                chunk = plan.room - TILE_OVERHEAD
                if chunk < MIN_FRAGMENT:
                    return False
            plan.pieces.append(Piece(step.scene, KIND_TILE, step.tile, self.offset, self.offset + chunk))
            plan.used += TILE_OVERHEAD + chunk
            self.offset += chunk
            if self.offset >= length:
                return True

    def _cost(self, nbytes: int) -> int:
        packets = max(1, -(-nbytes // self.tile_chunk))
        return nbytes + packets * TILE_OVERHEAD


class Emitter:
    """Builds the planned packets: fragment numbering, per-APID sequence counts, payload bytes."""

    def __init__(self, scenes: list[SceneSource], containers: list[Container], plans: list[WindowPlan]) -> None:
        self.scenes, self.containers = scenes, containers
        self.seq: Counter[int] = Counter()
        self.counts: Counter[tuple] = Counter(_unit(p) for plan in plans for p in plan.pieces)
        self.seen: Counter[tuple] = Counter()
        self.payloads: dict[tuple[int, int], bytes] = {}

    def packet(self, piece: Piece) -> bytes:
        sc = self.scenes[piece.scene]
        unit = _unit(piece)
        index, count = self.seen[unit], self.counts[unit]
        self.seen[unit] += 1
        body = self._body(sc, piece, index, count)
        raw = build_packet(sc.apid, self.seq[sc.apid], sc.scene_id, body)
        self.seq[sc.apid] += 1
        return raw

    def _body(self, sc: SceneSource, piece: Piece, index: int, count: int) -> HeaderBody | TableBody | TileBody:
        if piece.kind == KIND_HEADER:
            return HeaderBody(sc.name, sc.header)
        if piece.kind == KIND_TABLE:
            rows = tuple(sc.rows[piece.start : piece.stop])
            return TableBody(index, count, *sc.span(piece.start, piece.stop), rows)
        t = sc.tiles[piece.tile]
        data = self._payload(piece.scene, piece.tile)[piece.start : piece.stop]
        return TileBody(t.row, t.col, index, count, piece.start, t.length, t.check, t.quality, t.flags, t.mode, data)

    def _payload(self, scene: int, tile: int) -> bytes:
        key = (scene, tile)
        if key not in self.payloads:
            self.payloads.clear()  # a tile's pieces are planned back to back: keep one payload
            self.payloads[key] = self.containers[scene].payload(self.scenes[scene].stored[tile])
        return self.payloads[key]


def _unit(piece: Piece) -> tuple[int, int, int]:
    """What a fragment is a fragment of: a tile, or one table copy (a header is always whole)."""
    return (piece.scene, piece.kind, piece.tile if piece.kind == KIND_TILE else piece.copy)


def pack(
    containers: Sequence[str | os.PathLike],
    windows: Sequence[ContactWindow],
    out_dir: str | os.PathLike,
    max_packet: int = DEFAULT_DATA_FIELD,
    priorities: Sequence[float] | None = None,
) -> PackReport:
    """Pack ``containers`` into ``windows``: ``out_dir/window_NNN.bin`` per window and ``manifest.json``.

    ``max_packet`` is the largest packet data field in bytes (CCSDS allows 1..65536)."""
    if not MIN_DATA_FIELD <= max_packet <= MAX_DATA_FIELD:
        raise InputError(f"--max-packet must be in {MIN_DATA_FIELD}..{MAX_DATA_FIELD} bytes, got {max_packet}")
    if priorities is not None and len(priorities) != len(containers):
        raise InputError(f"{len(priorities)} priorities given for {len(containers)} scenes")
    out_dir = Path(out_dir)
    _make_dir(out_dir)
    paths = [Path(p) for p in containers]
    with ExitStack() as stack:
        opened = [stack.enter_context(Container.open(p)) for p in paths]
        prio = list(priorities) if priorities is not None else list(range(len(paths)))
        order = sorted(range(len(paths)), key=lambda i: prio[i])
        scenes = [load_scene(opened[i], k, paths[i], prio[i]) for k, i in enumerate(order)]
        _unique_names(scenes)
        planner = Planner(scenes, max_packet)
        plans = planner.plan(windows)
        files = _write_windows(out_dir, Emitter(scenes, [opened[i] for i in order], plans), plans)
    manifest = build_manifest(scenes, plans, planner.not_sent, max_packet)
    manifest_path = out_dir / "manifest.json"
    _write_atomic(manifest_path, (json.dumps(manifest, indent=1) + "\n").encode())
    return PackReport(files, manifest_path, manifest)


def _unique_names(scenes: list[SceneSource]) -> None:
    counts = Counter(s.name for s in scenes)
    for s in scenes:
        if counts[s.name] > 1:
            s.name = f"{s.name}-{s.index}"


def _write_windows(out_dir: Path, emitter: Emitter, plans: list[WindowPlan]) -> list[Path]:
    files = []
    for i, plan in enumerate(plans):
        data = b"".join(emitter.packet(p) for p in plan.pieces)
        if len(data) != plan.used or len(data) > plan.window.capacity_bytes:
            raise AssertionError(f"window {i}: planned {plan.used} bytes, built {len(data)}")
        path = out_dir / f"window_{i:03d}.bin"
        _write_atomic(path, data)
        files.append(path)
    return files


def build_manifest(
    scenes: list[SceneSource], plans: list[WindowPlan], not_sent: set[tuple[int, int]], max_packet: int
) -> dict:
    """Which scene, tiles, qualities and bytes went into which window, and what did not fit.

    Tiles are ``[row, col, quality, bytes]`` (``bytes`` in this window; ``"split"`` is appended when
    the tile's other bytes are in another window); ``not_sent`` tiles are ``[row, col, quality, length]``."""
    unsent: dict[int, list[int]] = {}
    for scene, tile in sorted(not_sent):
        unsent.setdefault(scene, []).append(tile)
    return {
        "format": "fool-downlink/1",
        "max_data_field": max_packet,
        "windows": [_window_json(i, plan, scenes) for i, plan in enumerate(plans)],
        "scenes": [_scene_summary(s, len(unsent.get(s.index, []))) for s in scenes],
        "not_sent": [
            {"scene": scenes[k].name, "tiles": [_tile_json(scenes[k].tiles[t]) for t in tiles]}
            for k, tiles in unsent.items()
        ],
    }


def _window_json(i: int, plan: WindowPlan, scenes: list[SceneSource]) -> dict:
    w = plan.window
    return {
        "index": i,
        "file": f"window_{i:03d}.bin",
        "start": w.to_json()["start"],
        "end": w.to_json()["end"],
        "station": w.station,
        "capacity_bytes": w.capacity_bytes,
        "packed_bytes": plan.used,
        "fill": round(plan.used / w.capacity_bytes, 6) if w.capacity_bytes else 0.0,
        "packets": len(plan.pieces),
        "scenes": _window_scenes(scenes, plan),
    }


def _window_scenes(scenes: list[SceneSource], plan: WindowPlan) -> list[dict]:
    out: dict[int, dict] = {}
    tile_bytes: Counter[tuple[int, int]] = Counter()
    for p in plan.pieces:
        sc = scenes[p.scene]
        entry = out.setdefault(p.scene, {"scene": sc.name, "scene_id": f"{sc.scene_id:08x}", "apid": sc.apid})
        entry["header_copies"] = entry.get("header_copies", 0) + (p.kind == KIND_HEADER)
        entry["table_packets"] = entry.get("table_packets", 0) + (p.kind == KIND_TABLE)
        if p.kind == KIND_TILE:
            tile_bytes[(p.scene, p.tile)] += p.stop - p.start
    for (scene, tile), nbytes in tile_bytes.items():
        t = scenes[scene].tiles[tile]
        split = nbytes != t.length
        out[scene].setdefault("tiles", []).append([t.row, t.col, t.quality, nbytes] + (["split"] if split else []))
        out[scene]["tile_bytes"] = out[scene].get("tile_bytes", 0) + nbytes
    return list(out.values())


def _scene_summary(s: SceneSource, missing: int) -> dict:
    return {
        "scene": s.name,
        "path": str(s.path),
        "scene_id": f"{s.scene_id:08x}",
        "apid": s.apid,
        "priority": s.priority,
        "tiles_coded": len(s.tiles),
        "tiles_sent": len(s.tiles) - missing,
        "tiles_not_sent": missing,
        "payload_bytes": sum(t.length for t in s.tiles),
    }


def _tile_json(t: TileEntry) -> list[int]:
    return [t.row, t.col, t.quality, t.length]


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {path}: {exc.strerror or exc}") from None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
