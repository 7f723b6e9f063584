"""The downlink unpacker: packet files (any order, duplicated, gapped, damaged) -> `.fool` containers.

Each file is scanned as a raw byte stream (:func:`fool.shared.packets.scan_packets`): a packet is
used only if its CRC-16 checks and its fields parse, and the scan resynchronises on the next intact
packet after any damage. Packets are grouped by the scene id they carry (never by APID, which is
reused). Per scene:

* the header record is the one most header copies agree on and that parses (its own CRC-32 checks);
  a scene none of whose header copies arrived is reported as lost (no container is written);
* the table is the union of the table fragments received; each fragment covers a span of grid
  positions, so a position inside a received span without an entry was nodata and is left out;
* a tile is written with its payload only if fragments covering all its bytes arrived intact and the
  reassembled payload matches its CRC-32 (from the table, else from its own packets); a tile the table
  lists but that did not arrive so is written as ``MODE_LOST``; a tile the table marks skipped stays
  ``MODE_SKIPPED``; a position no received table fragment covers and no tile packet names is written
  as ``MODE_LOST`` and reported as ``unknown`` (it was lost or nodata, the ground cannot tell).

Output: ``<scene>.fool`` per scene with a header, ``unpack_report.json`` and ``unpack_summary.txt``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fool.shared.errors import ContainerError, InputError, OutputError
from fool.shared.format import (
    MODE_CODEC,
    MODE_LOST,
    MODE_SKIPPED,
    PAYLOAD_MODES,
    parse_header_record,
    tile_check,
    write_container,
)
from fool.shared.packets import HeaderBody, Packet, ScanStats, TableBody, TableRow, TileBody, scan_packets
from fool.shared.scene import SceneHeader

REPORT_NAME = "unpack_report.json"
SUMMARY_NAME = "unpack_summary.txt"


@dataclass
class TileAssembly:
    """The fragments received of one tile version (row, col, length, check)."""

    row: int
    col: int
    length: int
    check: int
    quality: int
    flags: int
    chunks: dict[int, bytes] = field(default_factory=dict)
    mode: int = MODE_CODEC  # learned or intra, as the tile packets say

    def add(self, body: TileBody) -> None:
        self.chunks.setdefault(body.offset, body.data)

    def payload(self) -> bytes | None:
        """The payload if the fragments cover every byte and its check (CRC-16) holds, else None."""
        out, pos = bytearray(), 0
        for offset in sorted(self.chunks):
            data = self.chunks[offset]
            if offset > pos:
                return None
            out += data[pos - offset :]
            pos = max(pos, offset + len(data))
        if pos != self.length or not self.chunks:
            return None
        return bytes(out) if tile_check(out) == self.check else None


@dataclass
class SceneAssembly:
    """Everything received of one scene id."""

    scene_id: int
    packets: int = 0
    headers: Counter[bytes] = field(default_factory=Counter)
    names: Counter[str] = field(default_factory=Counter)
    table: dict[tuple[int, int], TableRow] = field(default_factory=dict)
    spans: list[tuple[int, int]] = field(default_factory=list)
    tiles: dict[tuple[int, int, int, int], TileAssembly] = field(default_factory=dict)
    at: dict[tuple[int, int], list[TileAssembly]] = field(default_factory=dict)  # tile versions by position

    def add(self, packet: Packet) -> None:
        self.packets += 1
        body = packet.body
        if isinstance(body, HeaderBody):
            self.headers[body.record] += 1
            self.names[body.name] += 1
        elif isinstance(body, TableBody):
            self.spans.append((body.span_start, body.span_end))
            for r in body.rows:
                self.table.setdefault((r.row, r.col), r)
        else:
            key = (body.row, body.col, body.length, body.check)
            if key not in self.tiles:
                mode = body.mode if body.mode in PAYLOAD_MODES else MODE_CODEC
                self.tiles[key] = TileAssembly(*key, body.quality, body.flags, mode=mode)
                self.at.setdefault(key[:2], []).append(self.tiles[key])
            self.tiles[key].add(body)

    def header(self) -> tuple[SceneHeader, bytes] | None:
        """The most agreed-on header record that parses, with the scene it describes."""
        for record, _ in self.headers.most_common():
            try:
                scene, used = parse_header_record(record, f"scene {self.scene_id:08x}")
            except ContainerError:
                continue
            return scene, record[:used]
        return None

    def covered(self, size: int) -> list[bool]:
        """Per raster index: does a received table fragment cover it?"""
        cover = [False] * size
        for start, end in set(self.spans):
            for i in range(start, min(end, size)):
                cover[i] = True
        return cover


@dataclass
class SceneResult:
    """What the ground got of one scene; tile lists are [row, col]."""

    scene_id: str
    name: str
    status: str  # "complete", "partial" or "lost"
    output: str | None = None
    packets: int = 0
    header_copies: int = 0
    table_complete: bool = False
    tiles_recovered: int = 0
    tiles_skipped: int = 0
    missing: list[list[int]] = field(default_factory=list)
    damaged: list[list[int]] = field(default_factory=list)
    unknown: list[list[int]] = field(default_factory=list)


@dataclass
class UnpackReport:
    """The result of :func:`unpack`: per-scene results and what the scan of the files found."""

    scenes: list[SceneResult]
    stats: ScanStats
    duplicates: int
    files: list[str]

    @property
    def complete(self) -> bool:
        """Every scene written and no tile missing, damaged or unknown."""
        return all(s.status == "complete" for s in self.scenes)

    def to_json(self) -> dict:
        return {
            "complete": self.complete,
            "files": self.files,
            "packets": self.stats.packets,
            "duplicates": self.duplicates,
            "resyncs": self.stats.resyncs,
            "skipped_bytes": self.stats.skipped_bytes,
            "malformed": self.stats.malformed,
            "scenes": [asdict(s) for s in self.scenes],
        }

    def summary(self) -> str:
        lines = [
            f"{len(self.files)} files: {self.stats.packets} intact packets ({self.duplicates} duplicates), "
            f"{self.stats.resyncs} damaged stretches ({self.stats.skipped_bytes} bytes) skipped"
        ]
        for s in self.scenes:
            lines.append(_scene_line(s))
        return "\n".join(lines)


def _scene_line(s: SceneResult) -> str:
    if s.status == "lost":
        return f"{s.name} [{s.scene_id}]: LOST (no header copy arrived; {s.packets} packets)"
    tail = "".join(
        f", {len(v)} {k} {_tiles_text(v)}"
        for k, v in (("missing", s.missing), ("damaged", s.damaged), ("unknown", s.unknown))
        if v
    )
    return (
        f"{s.name} [{s.scene_id}]: {s.status}, {s.tiles_recovered} tiles recovered, {s.tiles_skipped} skipped{tail}"
        f" -> {s.output}"
    )


def _tiles_text(tiles: list[list[int]], limit: int = 8) -> str:
    text = " ".join(f"({r},{c})" for r, c in tiles[:limit])
    return f"[{text}{' ...' if len(tiles) > limit else ''}]"


def read_packets(files: Sequence[str | os.PathLike]) -> tuple[dict[int, SceneAssembly], ScanStats, int]:
    """Scan every file; -> (scenes by id, scan statistics, duplicate packets)."""
    scenes: dict[int, SceneAssembly] = {}
    stats, seen, duplicates = ScanStats(), set(), 0
    for path in files:
        for frame in scan_packets(_read(Path(path)), stats):
            digest = hashlib.blake2b(frame.raw, digest_size=16).digest()
            if digest in seen:
                duplicates += 1
                continue
            seen.add(digest)
            sid = frame.packet.scene_id
            scenes.setdefault(sid, SceneAssembly(sid)).add(frame.packet)
    return scenes, stats, duplicates


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read packet file {path}: {exc.strerror or exc}") from None


def unpack(packet_files: Sequence[str | os.PathLike], out_dir: str | os.PathLike) -> UnpackReport:
    """Reassemble every scene found in ``packet_files`` into ``out_dir`` (see the module docstring)."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out_dir}: {exc.strerror or exc}") from None
    scenes, stats, duplicates = read_packets(packet_files)
    names: set[str] = set()
    results = [write_scene(asm, out_dir, names) for asm in sorted(scenes.values(), key=_scene_order)]
    report = UnpackReport(results, stats, duplicates, [str(p) for p in packet_files])
    _write_text(out_dir / REPORT_NAME, json.dumps(report.to_json(), indent=1) + "\n")
    _write_text(out_dir / SUMMARY_NAME, report.summary() + "\n")
    return report


def _scene_order(asm: SceneAssembly) -> tuple[str, int]:
    return (asm.names.most_common(1)[0][0] if asm.names else "", asm.scene_id)


def write_scene(asm: SceneAssembly, out_dir: Path, taken: set[str]) -> SceneResult:
    """Write one scene's container (if its header arrived) and say what is in it."""
    name = _file_name(asm, taken)
    result = SceneResult(f"{asm.scene_id:08x}", name, "lost", packets=asm.packets)
    result.header_copies = sum(asm.headers.values())
    found = asm.header()
    if found is None:
        return result
    scene, record = found
    grid = scene.grid
    size = grid.rows * grid.cols
    cover = asm.covered(size)
    result.table_complete = all(cover)
    path = out_dir / f"{name}.fool"
    with write_container(path, record) as w:
        for index in range(size):
            row, col = divmod(index, grid.cols)
            placed = _place(asm, row, col, cover[index], result)
            if placed is not None:
                w.add_tile(row, col, *placed)
    result.output = str(path)
    result.status = "partial" if result.missing or result.damaged or result.unknown else "complete"
    return result


def _place(asm: SceneAssembly, row: int, col: int, covered: bool, result: SceneResult) -> tuple | None:
    """-> add_tile arguments (payload, quality, flags, mode) for one grid position, or None if absent."""
    entry = asm.table.get((row, col))
    if entry is not None:
        return _from_table(asm, entry, result)
    candidates = asm.at.get((row, col), [])
    if covered and not candidates:
        return None  # nodata: the table says it was never coded
    for tile in candidates:
        payload = tile.payload()
        if payload is not None:
            result.tiles_recovered += 1
            return payload, tile.quality, tile.flags, tile.mode
    (result.damaged if candidates else result.unknown).append([row, col])
    quality, flags = (candidates[0].quality, candidates[0].flags) if candidates else (0, 0)
    return b"", quality, flags, MODE_LOST


def _from_table(asm: SceneAssembly, e: TableRow, result: SceneResult) -> tuple:
    if e.mode == MODE_SKIPPED:
        result.tiles_skipped += 1
        return b"", e.quality, e.flags, MODE_SKIPPED
    tile = asm.tiles.get((e.row, e.col, e.length, e.check)) if e.mode in PAYLOAD_MODES else None
    payload = tile.payload() if tile is not None else None
    if payload is not None:
        result.tiles_recovered += 1
        return payload, e.quality, e.flags, e.mode
    (result.damaged if tile is not None else result.missing).append([e.row, e.col])
    return b"", e.quality, e.flags, MODE_LOST


def _file_name(asm: SceneAssembly, taken: set[str]) -> str:
    """A safe file stem from the scene's name as sent (hostile bytes: only [A-Za-z0-9._-] survive)."""
    sent = asm.names.most_common(1)[0][0] if asm.names else ""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", sent)[:64].strip("._") or f"scene_{asm.scene_id:08x}"
    if stem in taken:
        stem = f"{stem}_{asm.scene_id:08x}"
    taken.add(stem)
    return stem


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
