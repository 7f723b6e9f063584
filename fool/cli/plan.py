"""`fool plan`: contact windows from TLEs and ground stations (the ground side), or with --simulate
what each codec gets down in them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import click

from fool.shared.errors import InputError

#: Epoch distance beyond which SGP4 positions (and so pass times) drift noticeably.
STALE_TLE_DAYS = 7


@click.command("plan")
@click.option("--tle", "tle_path", required=True, type=click.Path(path_type=Path), help="TLE file (2- or 3-line sets).")
@click.option(
    "--station",
    "station_specs",
    multiple=True,
    help="NAME,LAT,LON[,ALT_M[,MIN_ELEV]] in degrees and metres; repeat for several. [default MIN_ELEV: 5]",
)
@click.option("--stations", "stations_path", type=click.Path(path_type=Path), help="JSON list of stations.")
@click.option("--start", required=True, help="Start of the range, ISO 8601 with a timezone, e.g. 2026-12-01T00:00:00Z.")
@click.option("--hours", default=24.0, show_default=True, help="Length of the range.")
@click.option(
    "--rate",
    "rate_specs",
    multiple=True,
    help="Downlink rate in bit/s, e.g. 160e6. With --simulate, also CODEC=BPP (bits per pixel, all bands of "
    "the simulated scene) to give a codec's rate instead of reading it from --rd.",
)
@click.option(
    "--efficiency",
    default=1.0,
    show_default=True,
    help="Fraction of the link rate that carries payload: capacity = floor(duration x rate / 8 x efficiency).",
)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write the contact windows JSON here.")
@click.option("--simulate", is_flag=True, help="Print scenes delivered per codec and the backlog instead of windows.")
@click.option("--scenes-per-orbit", type=float, help="[--simulate] Scenes imaged per orbit.")
@click.option("--scene-size", help="[--simulate] Scene size WIDTHxHEIGHT in pixels, e.g. 10000x10000.")
@click.option("--bands", type=int, help="[--simulate] Bands per scene.")
@click.option("--bits-per-sample", type=int, help="[--simulate] Bits per sample of the raw scene, e.g. 12.")
@click.option("--rd", "rd_path", type=click.Path(path_type=Path), help="[--simulate] bench/results/rd_*.json.")
@click.option("--psnr", type=float, help="[--simulate] PSNR (dB) at which codecs are compared.")
@click.option(
    "--codec", "codecs", multiple=True, help="[--simulate] Codec curve to read from --rd. [default: jpeg2000, fool-*]"
)
@click.option("--bench-bands", type=int, help="[--simulate] Bands of the --rd benchmark scenes [default: read them].")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="[--simulate] Save the simulation here.")
def plan(
    tle_path,
    station_specs,
    stations_path,
    start,
    hours,
    rate_specs,
    efficiency,
    output,
    simulate,
    scenes_per_orbit,
    scene_size,
    bands,
    bits_per_sample,
    rd_path,
    psnr,
    codecs,
    bench_bands,
    json_path,
) -> None:
    """Plan contact windows of satellites over ground stations (offline SGP4), or simulate a day of downlink."""
    from fool.ground.contacts import load_stations, parse_station, plan_windows, read_tle
    from fool.shared.windows import parse_time, save_windows

    t0 = parse_time(start, "--start")
    if not hours > 0:
        raise InputError(f"--hours must be > 0, got {hours:g}")
    t1 = t0 + timedelta(hours=hours)
    link_rate, codec_rates = _parse_rates(rate_specs)
    stations = (load_stations(stations_path) if stations_path else []) + [parse_station(s) for s in station_specs]
    if not stations:
        raise InputError("no ground station: give --station NAME,LAT,LON[,ALT_M[,MIN_ELEV]] or --stations FILE")
    tles = read_tle(tle_path)
    for tle in tles:
        age = abs((t0 - tle.epoch).total_seconds()) / 86400
        if age > STALE_TLE_DAYS:
            click.echo(f"Warning: {tle.name}'s TLE epoch is {age:.0f} days from --start; pass times drift.", err=True)
    plans = {tle.name: (tle.period_s, plan_windows(tle, stations, t0, t1, link_rate, efficiency)) for tle in tles}
    windows = sorted((w for _, ws in plans.values() for w in ws), key=lambda w: (w.start, w.station))
    if output:
        save_windows(windows, output)
    if simulate:
        _simulate(
            plans,
            t0,
            t1,
            tle_path,
            stations,
            link_rate,
            efficiency,
            codec_rates,
            (scenes_per_orbit, scene_size, bands, bits_per_sample),
            rd_path,
            psnr,
            codecs,
            bench_bands,
            json_path,
        )
        return
    if codec_rates:
        raise InputError("--rate CODEC=BPP is for --simulate; give the downlink rate as a number")
    _print_windows(windows, link_rate, efficiency, t0, t1, output)


def _parse_rates(specs: tuple[str, ...]) -> tuple[float, dict[str, float]]:
    """--rate values: exactly one bare number (the link's bit/s) and any CODEC=BPP."""
    link, codecs = [], {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        try:
            number = float(value if sep else name)
        except ValueError:
            raise InputError(f"--rate {spec!r}: use a number of bit/s (160e6) or CODEC=BPP (fool-m=0.8)") from None
        if not number > 0 or number == float("inf"):
            raise InputError(f"--rate {spec!r}: the rate must be a positive number")
        if sep:
            codecs[name.strip()] = number
        else:
            link.append(number)
    if len(link) != 1:
        raise InputError("give the downlink rate once as --rate BITS_PER_S, e.g. --rate 160e6")
    return link[0], codecs


def _print_windows(windows, link_rate: float, efficiency: float, t0: datetime, t1: datetime, output) -> None:
    many = len({w.satellite for w in windows}) > 1
    click.echo(f"{'start (UTC)':<20} {'end':<9} {'min':>6} {'max el':>6} {'GB':>7}  station" + ("  satellite" * many))
    for w in windows:
        click.echo(
            f"{w.start:%Y-%m-%d %H:%M:%S} {w.end:%H:%M:%S} {w.duration_s / 60:>6.2f} "
            f"{w.extra.get('max_elevation_deg', float('nan')):>6.1f} {w.capacity_bytes / 1e9:>7.2f}  {w.station}"
            + (f"  {w.satellite}" if many else "")
        )
    minutes = sum(w.duration_s for w in windows) / 60
    total = sum(w.capacity_bytes for w in windows)
    click.echo(
        f"{len(windows)} passes, {minutes:.1f} min, {total / 1e9:.1f} GB at {link_rate / 1e6:g} Mbit/s "
        f"x efficiency {efficiency:g}, {t0:%Y-%m-%dT%H:%M:%SZ} + {(t1 - t0).total_seconds() / 3600:g} h"
        + (f" -> {output}" if output else "")
    )


def _simulate(
    plans,
    t0,
    t1,
    tle_path,
    stations,
    link_rate,
    efficiency,
    codec_rates,
    imaging_args,
    rd_path,
    psnr,
    codecs,
    bench_bands,
    json_path,
) -> None:
    from fool.simulate import CodecRate, Imaging, format_simulation, rates_from_results, simulate

    scenes_per_orbit, scene_size, bands, bits_per_sample = imaging_args
    missing = [
        name
        for name, value in (
            ("--scenes-per-orbit", scenes_per_orbit),
            ("--scene-size", scene_size),
            ("--bands", bands),
            ("--bits-per-sample", bits_per_sample),
        )
        if value is None
    ]
    if missing:
        raise InputError(f"--simulate needs {', '.join(missing)}")
    try:
        width, height = (int(v) for v in scene_size.lower().split("x"))
    except ValueError:
        raise InputError(f"--scene-size {scene_size!r}: use WIDTHxHEIGHT, e.g. 10000x10000") from None
    imaging = Imaging(scenes_per_orbit, width, height, bands, bits_per_sample)
    rates = [CodecRate(c, bpp, "--rate") for c, bpp in codec_rates.items()]
    if rd_path is not None:
        if psnr is None:
            raise InputError("--rd needs --psnr: the PSNR (dB) at which codecs are compared")
        wanted = [c for c in codecs if c not in codec_rates] if codecs else None  # None: jpeg2000 and FOOL
        if wanted != []:
            rates += [
                r for r in rates_from_results(rd_path, psnr, bands, wanted, bench_bands) if r.codec not in codec_rates
            ]
    elif not rates:
        raise InputError("--simulate needs codec rates: --rd bench/results/rd_*.json --psnr DB, or --rate CODEC=BPP")
    inputs = {
        "tle": f"{tle_path} ({', '.join(f'{n}, {86400 / p:.2f} orbits/day' for n, (p, _) in plans.items())})",
        "stations": ", ".join(
            f"{s.name} ({s.lat_deg:g}, {s.lon_deg:g}, min elevation {s.min_elevation_deg:g})" for s in stations
        ),
        "link": f"{link_rate / 1e6:g} Mbit/s x efficiency {efficiency:g}",
        "rates": f"equal PSNR {psnr:g} dB from {rd_path}" if rd_path is not None else "given with --rate",
    }
    sim = simulate(plans, t0, t1, imaging, rates, inputs)
    click.echo(format_simulation(sim))
    if json_path:
        text = json.dumps(sim.to_json(), indent=1, default=str) + "\n"
        Path(json_path).write_text(text, encoding="utf-8")
        click.echo(f"-> {json_path}")
