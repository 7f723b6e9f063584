"""The contact-window file: the ground planner writes it, the onboard packer reads it.

A file is a JSON list of objects, one per contact window::

    [{"start": "2026-12-01T10:15:00Z", "end": "2026-12-01T10:24:41Z", "duration_s": 581.0,
      "capacity_bytes": 11620000000, "station": "Svalbard", "max_elevation_deg": 41.2}]

`start` and `end` are ISO 8601 with a timezone (UTC is written, any offset is read); `capacity_bytes`
is what the link can carry in the window (int >= 0); `station` is optional. Any other key is kept in
`ContactWindow.extra` and written back unchanged; the known ones (`duration_s`, `max_elevation_deg`,
`satellite`) are checked too. The file crosses the link, so every field is validated before it is used,
and an error names the entry index and field in one line.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fool.shared.errors import InputError, OutputError

#: Keys a window always has in the file; everything else is an extra.
CORE_KEYS = ("start", "end", "duration_s", "capacity_bytes", "station")
#: How far a stored `duration_s` may differ from `end - start` (it is written rounded to milliseconds).
DURATION_TOLERANCE_S = 0.01


@dataclass(frozen=True)
class ContactWindow:
    """One contact: the link is up from `start` to `end` and carries at most `capacity_bytes`.

    `start` and `end` are timezone-aware (stored in UTC). `extra` holds what the planner adds beyond
    the core fields (e.g. `max_elevation_deg`, `satellite`); it does not take part in equality.
    """

    start: datetime
    end: datetime
    capacity_bytes: int
    station: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
                raise InputError(f"'{name}' must be a timezone-aware datetime, got {value!r}")
            object.__setattr__(self, name, value.astimezone(UTC))
        if self.end <= self.start:
            raise InputError(f"'end' ({_iso(self.end)}) must be after 'start' ({_iso(self.start)})")
        if isinstance(self.capacity_bytes, bool) or not isinstance(self.capacity_bytes, int):
            raise InputError(f"'capacity_bytes' must be an integer, got {self.capacity_bytes!r}")
        if self.capacity_bytes < 0:
            raise InputError(f"'capacity_bytes' must be >= 0, got {self.capacity_bytes}")
        if self.station is not None and not isinstance(self.station, str):
            raise InputError(f"'station' must be a string, got {self.station!r}")
        object.__setattr__(self, "extra", dict(self.extra))
        for key, value in self.extra.items():
            if key in CORE_KEYS:
                raise InputError(f"extra field '{key}' clashes with a core field")
            _check_extra(key, value)

    @property
    def duration_s(self) -> float:
        """Seconds the link is up."""
        return (self.end - self.start).total_seconds()

    @property
    def satellite(self) -> str | None:
        """The satellite this window is for, when the planner recorded it (files can hold several)."""
        return self.extra.get("satellite")

    def to_json(self) -> dict[str, Any]:
        """The window as one entry of the file."""
        entry: dict[str, Any] = {
            "start": _iso(self.start),
            "end": _iso(self.end),
            "duration_s": round(self.duration_s, 3),
            "capacity_bytes": self.capacity_bytes,
        }
        if self.station is not None:
            entry["station"] = self.station
        entry.update(self.extra)
        return entry


def load_windows(path: str | os.PathLike) -> list[ContactWindow]:
    """Read and validate a contact-window file; windows come back sorted by start.

    Raises InputError (one line, naming the entry index and field) when the file is not JSON, an entry
    lacks a field or has a wrong one, or two windows of the same station (and satellite) overlap.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read contact windows {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of windows, got {type(data).__name__}")
    windows = [_parse_entry(path, i, entry) for i, entry in enumerate(data)]
    order = sorted(range(len(windows)), key=lambda i: windows[i].start)
    _check_overlaps([windows[i] for i in order], order, path)
    return [windows[i] for i in order]


def save_windows(windows: Iterable[ContactWindow], path: str | os.PathLike) -> None:
    """Write windows sorted by start, atomically (a temp file in the same folder, then os.replace).

    A reader never sees a half-written file, and a failed write leaves any previous file intact.
    Overlapping windows of one station are refused here too, so the planner cannot write a file
    the packer would reject.
    """
    path = Path(path)
    windows = sorted(windows, key=lambda w: w.start)
    _check_overlaps(windows, list(range(len(windows))), path)
    text = json.dumps([w.to_json() for w in windows], indent=1, allow_nan=False) + "\n"
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OutputError(f"cannot write contact windows to {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write contact windows to {path}: {exc.strerror or exc}") from None


def parse_time(value: Any, what: str = "time") -> datetime:
    """An ISO 8601 timestamp with a timezone ('Z' or an offset) -> aware UTC datetime, else InputError."""
    if not isinstance(value, str):
        raise InputError(f"{what} must be an ISO 8601 string like 2026-12-01T10:15:00Z, got {value!r}")
    try:
        t = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InputError(f"{what} {value!r} is not an ISO 8601 timestamp like 2026-12-01T10:15:00Z") from None
    if t.tzinfo is None or t.utcoffset() is None:
        raise InputError(f"{what} {value!r} has no timezone: end it with Z for UTC")
    return t.astimezone(UTC)


def _parse_entry(path: Path, i: int, entry: Any) -> ContactWindow:
    where = f"{path}: entry {i}"
    if not isinstance(entry, dict):
        raise InputError(f"{where}: expected an object with start, end and capacity_bytes, got {type(entry).__name__}")
    for key in ("start", "end", "capacity_bytes"):
        if key not in entry:
            raise InputError(f"{where}: missing field '{key}'")
    try:
        start = parse_time(entry["start"], "'start'")
        end = parse_time(entry["end"], "'end'")
        extra = {k: v for k, v in entry.items() if k not in CORE_KEYS}
        window = ContactWindow(start, end, entry["capacity_bytes"], entry.get("station"), extra)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    if "duration_s" in entry:
        d = entry["duration_s"]
        if not _is_number(d) or abs(d - window.duration_s) > DURATION_TOLERANCE_S:
            raise InputError(f"{where}: field 'duration_s' is {d!r} but end - start is {window.duration_s:.3f} s")
    return window


def _check_extra(key: str, value: Any) -> None:
    if key == "max_elevation_deg" and not (_is_number(value) and -90 <= value <= 90):
        raise InputError(f"field 'max_elevation_deg' must be a number in -90..90, got {value!r}")
    if key == "satellite" and not isinstance(value, str):
        raise InputError(f"field 'satellite' must be a string, got {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_overlaps(windows: list[ContactWindow], indexes: list[int], path: Path) -> None:
    """`windows` sorted by start; `indexes` their entry numbers for the message."""
    last: dict[tuple[str | None, str | None], tuple[int, ContactWindow]] = {}
    for i, w in zip(indexes, windows, strict=True):
        key = (w.satellite, w.station)
        if key in last and w.start < last[key][1].end:
            j, prev = last[key]
            who = f"station {w.station!r}" if w.station is not None else "windows without a station"
            raise InputError(
                f"{path}: entry {i}: field 'start' ({_iso(w.start)}) overlaps entry {j} of {who} "
                f"(ends {_iso(prev.end)})"
            )
        if key not in last or w.end > last[key][1].end:
            last[key] = (i, w)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")
