"""Contact windows of a satellite over ground stations, from its TLE (skyfield + SGP4), fully offline.

Only the builtin timescale (`load.timescale(builtin=True)`) is used, and no planetary ephemeris:
station visibility needs none, and the ground segment may plan without network.

A window is the time the satellite is at or above the station's minimum elevation, clipped to the
planning range (a pass in progress at `start` begins at `start`, one still going at `end` ends there).
Window edges are rounded inward to whole seconds, so the link is up for the whole stored window, and

    capacity_bytes = floor(duration_s * link_rate_bps / 8 * efficiency)

where `efficiency` (default 1.0) is the fraction of the raw link rate that carries payload bytes
(framing, coding overhead, acquisition time at the start of a pass are the operator's to fold in).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fool.shared.errors import InputError
from fool.shared.windows import ContactWindow

#: Minimum elevation when a station does not give one: a common mask for X-band stations.
DEFAULT_MIN_ELEVATION_DEG = 5.0
#: Fraction of the link rate that carries payload when the user gives no --efficiency.
DEFAULT_EFFICIENCY = 1.0


@dataclass(frozen=True)
class GroundStation:
    """A station: geodetic WGS84 position and the elevation above which it holds the link."""

    name: str
    lat_deg: float
    lon_deg: float
    alt_m: float = 0.0
    min_elevation_deg: float = DEFAULT_MIN_ELEVATION_DEG

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InputError(f"station name must be a non-empty string, got {self.name!r}")
        for key, lo, hi in (
            ("lat_deg", -90, 90),
            ("lon_deg", -180, 360),
            ("alt_m", -500, 9000),
            ("min_elevation_deg", -5, 89),
        ):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
                raise InputError(f"station {self.name!r}: {key} must be a number in {lo}..{hi}, got {value!r}")
            object.__setattr__(self, key, float(value))


@dataclass(frozen=True)
class Tle:
    """One satellite's two-line element set (checksums verified), with the name it was given."""

    name: str
    line1: str
    line2: str

    @property
    def epoch(self) -> datetime:
        """The element set's epoch (UTC): SGP4 positions are good to ~1 km within a few days of it."""
        from sgp4.api import Satrec

        sat = Satrec.twoline2rv(self.line1, self.line2)
        jd = sat.jdsatepoch + sat.jdsatepochF
        return datetime(2000, 1, 1, 12, tzinfo=UTC) + timedelta(days=jd - 2451545.0)

    @property
    def period_s(self) -> float:
        """Orbital period from the TLE's mean motion (revolutions per day)."""
        return 86400.0 / float(self.line2[52:63])


def parse_station(text: str) -> GroundStation:
    """`NAME,LAT,LON[,ALT_M[,MIN_ELEV]]` (degrees, metres) -> GroundStation; the CLI's --station."""
    parts = [p.strip() for p in text.split(",")]
    if not 3 <= len(parts) <= 5:
        raise InputError(f"station {text!r}: use NAME,LAT,LON[,ALT_M[,MIN_ELEV]], e.g. Svalbard,78.23,15.39,500,5")
    try:
        numbers = [float(p) for p in parts[1:]]
    except ValueError:
        raise InputError(f"station {text!r}: LAT, LON, ALT_M and MIN_ELEV must be numbers") from None
    return GroundStation(parts[0], *numbers)


def load_stations(path: str | os.PathLike) -> list[GroundStation]:
    """A JSON list of {name, lat_deg, lon_deg[, alt_m][, min_elevation_deg]} -> stations."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read stations {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, list) or not data:
        raise InputError(f"{path}: expected a non-empty JSON list of stations")
    known = {"name", "lat_deg", "lon_deg", "alt_m", "min_elevation_deg"}
    stations = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise InputError(f"{path}: entry {i}: expected an object")
        missing = [k for k in ("name", "lat_deg", "lon_deg") if k not in entry]
        unknown = sorted(set(entry) - known)
        if missing or unknown:
            what = f"missing field '{missing[0]}'" if missing else f"unknown field '{unknown[0]}'"
            raise InputError(f"{path}: entry {i}: {what} (fields: {', '.join(sorted(known))})")
        try:
            stations.append(GroundStation(**entry))
        except InputError as exc:
            raise InputError(f"{path}: entry {i}: {exc}") from None
    return stations


def read_tle(path: str | os.PathLike) -> list[Tle]:
    """Every satellite in a TLE file: 2-line sets, or 3-line sets with a name line (`0 NAME` too).

    Raises InputError naming the line when a set is malformed (length, line numbers, catalog numbers,
    checksum, or SGP4 refuses the elements). Satellites without a name line are called `NORAD <catnr>`.
    """
    path = Path(path)
    try:
        lines = [ln.rstrip() for ln in path.read_text(encoding="ascii", errors="replace").splitlines()]
    except OSError as exc:
        raise InputError(f"cannot read TLE {path}: {exc.strerror or exc}") from None
    numbered = [(n + 1, ln) for n, ln in enumerate(lines) if ln.strip()]
    tles, i = [], 0
    while i < len(numbered):
        lineno, text = numbered[i]
        name = None
        if not text.startswith("1 "):
            name = text[2:].strip() if text.startswith("0 ") else text.strip()
            i += 1
            if i >= len(numbered):
                raise InputError(f"{path}:{lineno}: name line {name!r} is not followed by a TLE line 1")
            lineno, text = numbered[i]
        if i + 1 >= len(numbered):
            raise InputError(f"{path}:{lineno}: TLE line 1 is not followed by line 2")
        line1, (lineno2, line2) = text, numbered[i + 1]
        _check_tle_line(path, lineno, line1, "1")
        _check_tle_line(path, lineno2, line2, "2")
        if line1[2:7] != line2[2:7]:
            raise InputError(f"{path}:{lineno2}: catalog number {line2[2:7]!r} differs from line 1's {line1[2:7]!r}")
        tle = Tle(name or f"NORAD {line1[2:7].strip()}", line1[:69], line2[:69])
        _check_sgp4(path, lineno, tle)
        tles.append(tle)
        i += 2
    if not tles:
        raise InputError(f"{path}: no TLE found (expected lines starting '1 ' and '2 ')")
    return tles


def plan_windows(
    tle: Tle,
    stations: Iterable[GroundStation],
    start: datetime,
    end: datetime,
    link_rate_bps: float,
    efficiency: float = DEFAULT_EFFICIENCY,
) -> list[ContactWindow]:
    """Contact windows of one satellite over the stations between `start` and `end`, sorted by start.

    Each window carries `station`, and in `extra` the `satellite` name and `max_elevation_deg`.
    See the module docstring for the capacity formula and how edges are rounded and clipped.
    """
    from skyfield.api import EarthSatellite, load, wgs84

    start, end = _aware(start, "start"), _aware(end, "end")
    if end <= start:
        raise InputError(f"end ({end.isoformat()}) must be after start ({start.isoformat()})")
    if not (isinstance(link_rate_bps, int | float) and math.isfinite(link_rate_bps) and link_rate_bps > 0):
        raise InputError(f"link rate must be a positive number of bits per second, got {link_rate_bps!r}")
    if not (isinstance(efficiency, int | float) and 0 < efficiency <= 1):
        raise InputError(f"efficiency must be in (0, 1], got {efficiency!r}")
    ts = load.timescale(builtin=True)
    sat = EarthSatellite(tle.line1, tle.line2, tle.name, ts)
    t0, t1 = ts.from_datetime(start), ts.from_datetime(end)
    windows = []
    for station in stations:
        topos = wgs84.latlon(station.lat_deg, station.lon_deg, elevation_m=station.alt_m)
        for rise, fall, max_elev in _passes(sat - topos, sat, topos, t0, t1, station.min_elevation_deg):
            w_start = _ceil_second(max(rise, start))
            w_end = _floor_second(min(fall, end))
            if w_end <= w_start:
                continue  # a graze shorter than a whole second
            duration = (w_end - w_start).total_seconds()
            capacity = math.floor(duration * link_rate_bps / 8 * efficiency)
            extra = {"satellite": tle.name, "max_elevation_deg": round(max_elev, 2)}
            windows.append(ContactWindow(w_start, w_end, capacity, station.name, extra))
    return sorted(windows, key=lambda w: (w.start, w.station))


def _passes(
    difference: Any, sat: Any, topos: Any, t0: Any, t1: Any, min_elev: float
) -> Iterator[tuple[datetime, datetime, float]]:
    """(rise, set, max elevation) of each pass; a pass under way at t0 rises at t0, one at t1 sets at t1."""

    def elevation(t: Any) -> float:
        return float(difference.at(t).altaz()[0].degrees)

    times, events = sat.find_events(topos, t0, t1, altitude_degrees=min_elev)
    rise = t0 if elevation(t0) >= min_elev else None
    peaks = [t0] if rise is not None else []
    for t, event in zip(times, events, strict=True):
        if event == 0:  # rise
            if rise is None:
                rise, peaks = t, [t]
        else:
            if rise is None:  # above at t0 by less than the root finder's tolerance
                rise, peaks = t0, [t0]
            peaks.append(t)
            if event == 2:  # set
                yield rise.utc_datetime(), t.utc_datetime(), max(elevation(p) for p in peaks)
                rise, peaks = None, []
    if rise is not None:
        peaks.append(t1)
        yield rise.utc_datetime(), t1.utc_datetime(), max(elevation(p) for p in peaks)


def _check_tle_line(path: Path, lineno: int, line: str, number: str) -> None:
    where = f"{path}:{lineno}"
    if not line.startswith(number + " "):
        raise InputError(f"{where}: expected TLE line {number} (starting '{number} '), got {line[:20]!r}")
    if len(line) < 69:
        raise InputError(f"{where}: TLE line {number} has {len(line)} characters, expected 69")
    if not line[68].isdigit() or int(line[68]) != tle_checksum(line):
        raise InputError(f"{where}: TLE line {number} checksum is {line[68]!r}, expected {tle_checksum(line)}")


def tle_checksum(line: str) -> int:
    """The TLE mod-10 checksum of a line's first 68 characters (digits count their value, '-' counts 1)."""
    return sum(int(c) if c.isdigit() else c == "-" for c in line[:68]) % 10


def _check_sgp4(path: Path, lineno: int, tle: Tle) -> None:
    from sgp4.api import Satrec

    try:
        sat = Satrec.twoline2rv(tle.line1, tle.line2)
        error, _, _ = sat.sgp4(sat.jdsatepoch, sat.jdsatepochF)
    except (ValueError, IndexError) as exc:
        raise InputError(f"{path}:{lineno}: SGP4 cannot read this TLE ({exc})") from None
    if sat.error or error or not sat.no_kozai > 0:
        raise InputError(f"{path}:{lineno}: SGP4 refuses the elements of {tle.name!r} (error {sat.error or error})")


def _aware(t: datetime, what: str) -> datetime:
    if not isinstance(t, datetime) or t.tzinfo is None or t.utcoffset() is None:
        raise InputError(f"{what} must be a timezone-aware datetime, got {t!r}")
    return t.astimezone(UTC)


def _ceil_second(t: datetime) -> datetime:
    floor = t.replace(microsecond=0)
    return floor if floor == t else floor + timedelta(seconds=1)


def _floor_second(t: datetime) -> datetime:
    return t.replace(microsecond=0)
