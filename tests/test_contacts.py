"""Contact planning (skyfield) checked against SGP4 directly, the window file, the CLI, the downlink simulation."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from fool.ground.contacts import GroundStation, parse_station, plan_windows, read_tle, tle_checksum
from fool.shared.errors import InputError, OutputError
from fool.shared.windows import ContactWindow, load_windows, save_windows
from sgp4.api import Satrec, jday

from fool.cli import main
from fool.simulate import (
    CodecRate,
    Imaging,
    acquisition_times,
    downlink_queue,
    merge_contacts,
    rate_at_psnr,
    rates_from_results,
    simulate,
)

DATA = Path(__file__).parent / "data"
TLE = DATA / "example.tle"
START = datetime(2026, 12, 1, tzinfo=UTC)
END = START + timedelta(hours=24)
SVALBARD = GroundStation("Svalbard", 78.23, 15.39, 500, 5)
MATERA = GroundStation("Matera", 40.65, 16.70, 540, 10)


def t(hhmm: str) -> datetime:
    return datetime.fromisoformat(f"2026-12-01T{hhmm}:00+00:00")


# --- an independent elevation: SGP4 (TEME) -> Earth-fixed by a GMST rotation -> topocentric elevation


def _elevation(sat: Satrec, station: GroundStation, when: datetime) -> float:
    jd, fr = jday(when.year, when.month, when.day, when.hour, when.minute, when.second + when.microsecond / 1e6)
    error, r, _ = sat.sgp4(jd, fr)
    assert error == 0
    tu = (jd - 2451545.0 + fr) / 36525  # UT1 ~ UTC: < 1 s of rotation, far below the tolerance below
    gmst_s = 67310.54841 + (876600 * 3600 + 8640184.812866) * tu + 0.093104 * tu**2 - 6.2e-6 * tu**3
    g = math.radians((gmst_s % 86400) / 240)
    x, y, z = math.cos(g) * r[0] + math.sin(g) * r[1], -math.sin(g) * r[0] + math.cos(g) * r[1], r[2]
    a, f = 6378.137, 1 / 298.257223563
    e2 = f * (2 - f)
    lat, lon, h = math.radians(station.lat_deg), math.radians(station.lon_deg), station.alt_m / 1000
    n = a / math.sqrt(1 - e2 * math.sin(lat) ** 2)
    up = (math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat))
    site = ((n + h) * up[0], (n + h) * up[1], (n * (1 - e2) + h) * up[2])
    rho = (x - site[0], y - site[1], z - site[2])
    return math.degrees(math.asin(sum(p * u for p, u in zip(rho, up, strict=True)) / math.dist(rho, (0, 0, 0))))


def _crossing(sat: Satrec, station: GroundStation, edge: datetime, rising: bool) -> datetime:
    """The 1-second step around `edge` where SGP4's elevation crosses the station's minimum."""
    steps = [edge + timedelta(seconds=s) for s in range(-20, 21)]
    above = [_elevation(sat, station, s) >= station.min_elevation_deg for s in steps]
    flips = [steps[i + 1] for i in range(len(steps) - 1) if above[i] != above[i + 1] and above[i + 1] == rising]
    assert len(flips) == 1, f"no single crossing within 20 s of {edge}"
    return flips[0]


@pytest.fixture(scope="module")
def tle():
    return read_tle(TLE)[0]


@pytest.fixture(scope="module")
def day(tle):
    return plan_windows(tle, [SVALBARD, MATERA], START, END, 160e6)


def test_window_edges_agree_with_sgp4(tle, day):
    sat = Satrec.twoline2rv(tle.line1, tle.line2)
    stations = {s.name: s for s in (SVALBARD, MATERA)}
    assert sum(w.station == "Svalbard" for w in day) == 15  # a polar station sees nearly every orbit
    assert 2 <= sum(w.station == "Matera" for w in day) <= 5
    for w in day:
        station = stations[w.station]
        assert abs((_crossing(sat, station, w.start, rising=True) - w.start).total_seconds()) <= 2
        assert abs((_crossing(sat, station, w.end, rising=False) - w.end).total_seconds()) <= 2
        middle = w.start + (w.end - w.start) / 2
        assert _elevation(sat, station, middle) > station.min_elevation_deg
        assert _elevation(sat, station, middle) <= w.extra["max_elevation_deg"] + 0.1


def test_no_pass_is_missed(tle, day):
    """SGP4 sampled every 30 s over the day: above the mask (with margin) means inside a window."""
    sat = Satrec.twoline2rv(tle.line1, tle.line2)
    windows = [w for w in day if w.station == "Svalbard"]
    for k in range(0, 24 * 3600, 30):
        when = START + timedelta(seconds=k)
        inside = any(w.start <= when <= w.end for w in windows)
        elevation = _elevation(sat, SVALBARD, when)
        if elevation > SVALBARD.min_elevation_deg + 0.2:
            assert inside, f"{when}: satellite at {elevation:.2f} deg but no window"
        if elevation < SVALBARD.min_elevation_deg - 0.2:
            assert not inside, f"{when}: window while the satellite is at {elevation:.2f} deg"


def test_passes_in_progress_are_clipped(tle, day):
    """Planning from inside a pass: the window starts at `start` and ends at `end`, not at rise/set."""
    full = next(w for w in day if w.station == "Svalbard" and w.start.hour == 11)  # 11:51 .. 12:03
    start, end = full.start + timedelta(minutes=3), full.end - timedelta(minutes=3)
    (w,) = plan_windows(tle, [SVALBARD], start, end, 160e6)
    assert (w.start, w.end, w.station) == (start, end, "Svalbard")
    # a range that starts inside the pass and ends after it
    (w,) = plan_windows(tle, [SVALBARD], start, full.end + timedelta(minutes=5), 160e6)
    assert (w.start, w.end) == (start, full.end)


def test_capacity_is_duration_times_rate(tle, day):
    for w in day:
        assert w.duration_s == int(w.duration_s)  # edges are whole seconds
        assert w.capacity_bytes == math.floor(w.duration_s * 160e6 / 8)
    odd = plan_windows(tle, [SVALBARD], START, END, 123_456_789, efficiency=0.85)
    assert [w.start for w in odd] == [w.start for w in day if w.station == "Svalbard"]
    for w in odd:
        assert w.capacity_bytes == math.floor(w.duration_s * 123_456_789 / 8 * 0.85)
    full = next(w for w in day if w.station == "Svalbard" and w.start.hour == 11)
    (w,) = plan_windows(tle, [SVALBARD], full.start + timedelta(seconds=60), full.start + timedelta(seconds=360), 160e6)
    assert w.capacity_bytes == 6_000_000_000  # 300 s x 160 Mbit/s / 8


def test_bad_inputs_to_the_planner(tle, tmp_path):
    with pytest.raises(InputError, match="after start"):
        plan_windows(tle, [SVALBARD], END, START, 160e6)
    with pytest.raises(InputError, match="efficiency"):
        plan_windows(tle, [SVALBARD], START, END, 160e6, efficiency=1.5)
    with pytest.raises(InputError, match="lat_deg"):
        parse_station("Nowhere,95,0")
    assert parse_station("Kiruna,67.86,20.96") == GroundStation("Kiruna", 67.86, 20.96, 0.0, 5.0)
    lines = TLE.read_text().splitlines()
    two_line = tmp_path / "two.tle"
    two_line.write_text("\n".join(lines[1:] + lines) + "\n")  # a 2-line set, then a 3-line one
    assert [x.name for x in read_tle(two_line)] == ["NORAD 40697", "SENTINEL-2A"]
    bad = tmp_path / "bad.tle"
    bad.write_text(lines[0] + "\n" + lines[1][:-1] + str((tle_checksum(lines[1]) + 1) % 10) + "\n" + lines[2] + "\n")
    with pytest.raises(InputError, match="bad.tle:2: TLE line 1 checksum"):
        read_tle(bad)


# --- the window file


GOOD = [
    {"start": "2026-12-01T12:00:00Z", "end": "2026-12-01T12:10:00Z", "capacity_bytes": 5, "station": "A"},
    {"start": "2026-12-01T11:00:00+01:00", "end": "2026-12-01T10:05:00Z", "capacity_bytes": 0, "max_elevation_deg": 7},
    {"start": "2026-12-01T12:05:00Z", "end": "2026-12-01T12:15:00Z", "capacity_bytes": 9, "station": "B", "note": "x"},
]


def test_windows_file_loads_sorted_and_round_trips(tmp_path):
    path = tmp_path / "w.json"
    path.write_text(json.dumps(GOOD))
    windows = load_windows(path)
    assert [w.start for w in windows] == [t("10:00"), t("12:00"), t("12:05")]  # +01:00 read as UTC
    assert [w.station for w in windows] == [None, "A", "B"]
    assert windows[0].duration_s == 300 and windows[0].extra == {"max_elevation_deg": 7}
    assert windows[2].extra == {"note": "x"}  # unknown keys are kept
    out = tmp_path / "out.json"
    save_windows(windows, out)
    assert load_windows(out) == windows
    assert json.loads(out.read_text())[1]["start"] == "2026-12-01T12:00:00Z"
    assert {p.name for p in tmp_path.iterdir()} == {"w.json", "out.json"}  # no temp file left behind
    with pytest.raises(OutputError):
        save_windows(windows, tmp_path / "missing" / "w.json")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"capacity_bytes": None}, "entry 1: missing field 'capacity_bytes'"),
        ({"end": "2026-12-01T11:00:00Z"}, "entry 1: 'end' .* must be after 'start'"),
        ({"capacity_bytes": -1}, "entry 1: 'capacity_bytes' must be >= 0"),
        ({"capacity_bytes": 1.5}, "entry 1: 'capacity_bytes' must be an integer"),
        ({"start": "2026-12-01 25:00"}, "entry 1: 'start' '2026-12-01 25:00' is not an ISO 8601"),
        ({"start": "2026-12-01T11:00:00"}, "entry 1: 'start' .* has no timezone"),
        ({"station": 3}, "entry 1: 'station' must be a string"),
        ({"duration_s": 10}, "entry 1: field 'duration_s' is 10"),
        (
            {"station": "A", "start": "2026-12-01T12:09:00Z", "end": "2026-12-01T12:20:00Z"},
            "entry 1: .*overlaps entry 0",
        ),
    ],
)
def test_bad_windows_name_entry_and_field(tmp_path, change, message):
    entries = [dict(GOOD[0]), {"start": "2026-12-01T13:00:00Z", "end": "2026-12-01T13:10:00Z", "capacity_bytes": 1}]
    entries[1].update(change)
    entries[1] = {k: v for k, v in entries[1].items() if v is not None}
    path = tmp_path / "w.json"
    path.write_text(json.dumps(entries))
    with pytest.raises(InputError, match=message) as info:
        load_windows(path)
    assert "\n" not in str(info.value)


def test_windows_file_that_is_not_a_list(tmp_path):
    path = tmp_path / "w.json"
    path.write_text('{"start": 1}')
    with pytest.raises(InputError, match="expected a JSON list"):
        load_windows(path)


# --- the command


def test_cli_writes_windows(tmp_path):
    out = tmp_path / "windows.json"
    args = ["plan", "--tle", TLE, "--station", "Svalbard,78.23,15.39,500,5", "--start", "2026-12-01T00:00:00Z"]
    r = CliRunner().invoke(main, [str(a) for a in args + ["--hours", "24", "--rate", "160e6", "-o", out]])
    assert r.exit_code == 0, r.output
    windows = load_windows(out)
    assert len(windows) == 15 and {w.station for w in windows} == {"Svalbard"}
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 + 15 + 1  # header, one line per window, summary
    minutes = sum(w.duration_s for w in windows) / 60
    gb = sum(w.capacity_bytes for w in windows) / 1e9
    assert lines[-1].startswith(f"15 passes, {minutes:.1f} min, {gb:.1f} GB at 160 Mbit/s")


def test_cli_bad_tle_is_one_line_exit_1(tmp_path):
    bad = tmp_path / "bad.tle"
    bad.write_text("ISS\n1 25544U 98067A   26001.5 garbage\n2 25544  51.6\n")
    args = ["plan", "--tle", bad, "--station", "Svalbard,78.23,15.39", "--start", "2026-12-01T00:00:00Z"]
    r = CliRunner().invoke(main, [str(a) for a in args + ["--rate", "160e6"]])
    assert r.exit_code == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("Error: ") and "bad.tle:2" in r.stderr
    assert "Traceback" not in r.output


def test_cli_simulate(tmp_path):
    out = tmp_path / "sim.json"
    args = ["plan", "--tle", TLE, "--stations", DATA / "stations.json", "--start", "2026-12-01T00:00:00Z"]
    args += ["--rate", "160e6", "--simulate", "--scenes-per-orbit", "20", "--scene-size", "10980x10980"]
    args += ["--bands", "13", "--bits-per-sample", "12", "--rate", "jpeg2000=2.0", "--rate", "fool-m=1.0"]
    r = CliRunner().invoke(main, [str(a) for a in args + ["--json", out]])
    assert r.exit_code == 0, r.output
    sim = json.loads(out.read_text())
    rows = {c["codec"]: c for c in sim["codecs"]}
    assert list(rows) == ["raw", "jpeg2000", "fool-m"]
    assert rows["raw"]["scene_bytes"] == 10980 * 10980 * 13 * 12 // 8
    assert rows["fool-m"]["scene_bytes"] == math.ceil(10980 * 10980 / 8)
    assert rows["raw"]["acquired"] == 286  # 20 a orbit x 14.308 orbits
    assert rows["raw"]["delivered"] < rows["jpeg2000"]["delivered"] <= rows["fool-m"]["delivered"]
    for row in rows.values():
        assert row["delivered_bytes"] + row["backlog_bytes"] == row["acquired"] * row["scene_bytes"]
    assert "These figures depend on:" in r.stdout and "160 Mbit/s" in r.stdout


# --- the simulation


def test_queue_arithmetic():
    contacts = [(t("10:00"), t("10:10"), 1000), (t("12:00"), t("12:10"), 2500)]
    acquired = [t("09:00"), t("09:30"), t("11:00"), t("11:30"), t("12:05")]  # the last comes during a contact
    q = downlink_queue(contacts, acquired, 600)
    # 10:00: 600 + 400 of the second; 12:00: its last 200 and two more; 12:05 waits for the next contact
    assert (q.acquired, q.delivered, q.delivered_bytes) == (5, 4, 2400)
    assert (q.backlog_scenes, q.backlog_bytes, q.unused_capacity_bytes) == (1, 600, 1100)


def test_simulation_counts_by_hand():
    windows = [ContactWindow(t("10:00"), t("10:10"), 1000, "A"), ContactWindow(t("12:00"), t("12:10"), 2500, "A")]
    imaging = Imaging(scenes_per_orbit=2, width=10, height=10, bands=3, bits_per_sample=16)  # raw 600 bytes
    start, end = t("08:00"), t("14:00")
    assert acquisition_times(start, end, 3600, 2)[:2] == [t("08:15"), t("08:45")]
    sim = simulate({"sat": (3600.0, windows)}, start, end, imaging, [CodecRate("half", 24.0, "test")])
    raw, half = sim.codecs
    assert (raw.codec, raw.scene_bytes, half.scene_bytes) == ("raw", 600, 300)
    # raw: 4 scenes before 10:00 -> 1 down + 400 bytes; 4 more by 12:00 -> 200 + 3 x 600 + 500 of the next
    assert (raw.acquired, raw.delivered, raw.delivered_bytes, raw.backlog_scenes, raw.backlog_bytes) == (
        12,
        5,
        3500,
        7,
        3700,
    )
    # half: 1000 bytes = 3 scenes + 100; then 200 + 4 x 300 = 1400 of 2500
    assert (half.delivered, half.backlog_scenes, half.backlog_bytes, half.unused_capacity_bytes) == (8, 4, 1200, 1100)


def test_overlapping_windows_share_one_transmitter():
    a = ContactWindow(t("10:00"), t("10:10"), 6000, "A")  # 10 B/s
    b = ContactWindow(t("10:05"), t("10:15"), 12000, "B")  # 20 B/s
    c = ContactWindow(t("11:00"), t("11:01"), 7, "A")
    assert merge_contacts([c, b, a]) == [(t("10:00"), t("10:15"), 3000 + 6000 + 6000), (t("11:00"), t("11:01"), 7)]


def test_rates_at_equal_psnr(tmp_path):
    assert rate_at_psnr([0.5, 2.0], [30, 34], 32) == pytest.approx(1.0)  # halfway in log(bpp)
    with pytest.raises(InputError, match="outside its measured range"):
        rate_at_psnr([0.5, 2.0], [30, 34], 35, "jpeg2000")
    results = tmp_path / "rd.json"
    curves = {"jpeg2000": {"bpp": [2.0, 0.5], "psnr": [34, 30]}, "fool-m": {"bpp": [0.25, 1.0], "psnr": [30, 34]}}
    results.write_text(json.dumps({"curves": {"jpegxl": curves["jpeg2000"], **curves}}))
    rates = rates_from_results(results, 32, scene_bands=4, bench_bands=1)
    assert [(r.codec, round(r.bpp, 9)) for r in rates] == [("jpeg2000", 4.0), ("fool-m", 2.0)]
    with pytest.raises(InputError, match="--bench-bands"):
        rates_from_results(results, 32, scene_bands=4)  # no scenes to read the band count from
    real = Path(__file__).parents[1] / "bench" / "results" / "rd_naip.json"
    if real.is_file():
        curve = json.loads(real.read_text())["curves"]["jpeg2000"]
        (j2k,) = rates_from_results(real, 32, scene_bands=4, codecs=["jpeg2000"], bench_bands=4)
        below = max(b for b, p in zip(curve["bpp"], curve["psnr"], strict=True) if p <= 32)
        above = min(b for b, p in zip(curve["bpp"], curve["psnr"], strict=True) if p >= 32)
        assert below < j2k.bpp < above
