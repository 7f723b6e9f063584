"""The downlink: pack into windows, damage on the link, unpack on the ground, decode.

Most tests use synthetic containers (a real scene header, random payloads of chosen sizes) so the
packer sees scenes of any size without running the codec; the end-to-end test codes a real raster.
A bit-identical payload decodes bit-identically, so payload bytes are what the loss tests compare.
"""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from fool.ground.unpack import unpack
from fool.onboard.packer import pack
from fool.shared.format import (
    MODE_CODEC,
    MODE_LOST,
    MODE_SKIPPED,
    Container,
    header_record,
    write_container,
)
from fool.shared.packets import APID_BASE, TileBody, build_packet, scan_packets
from fool.shared.windows import ContactWindow, save_windows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fool.cli import main
from fool.linksim import LinkModel, link_sim
from tests import data

TEMPLATE = Path(__file__).parent / "golden" / "v4_rgb_uint8.fool"  # a real scene header for synthetic scenes
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def windows(*capacities: int) -> list[ContactWindow]:
    return [
        ContactWindow(T0 + timedelta(hours=i), T0 + timedelta(hours=i, minutes=8), c, "Svalbard")
        for i, c in enumerate(capacities)
    ]


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Path:
    """A small scene coded by the real codec (12 tiles of 64 px)."""
    from fool.onboard.compress import compress_scene

    folder = tmp_path_factory.mktemp("real")
    src = data.write(folder / "real.tif", dtype="uint8", bands=3, height=150, width=200, nodata=0)
    compress_scene(src, folder / "real.fool", quality=1.0, tile_size=64)
    return folder / "real.fool"


def synthetic(path: Path, template: Path, size: int, seed: int, mean: int = 1500) -> Path:
    """A container on a ``size`` x ``size`` px grid of 64-px tiles with random payloads; some tiles
    skipped on board, some absent (nodata, never coded)."""
    with Container.open(template) as c:
        scene = dataclasses.replace(c.scene, width=size, height=size, tile_size=64)
    rng = random.Random(seed)
    with write_container(path, header_record(scene)) as w:
        for t in scene.grid:
            kind = rng.random()
            if kind < 0.08:
                continue  # absent: nodata
            if kind < 0.14:
                w.add_tile(t.row, t.col, b"", 256, 0, MODE_SKIPPED)
                continue
            payload = rng.randbytes(rng.randint(mean // 10, 2 * mean))
            w.add_tile(t.row, t.col, payload, rng.choice([256, 300]), rng.random() < 0.3, MODE_CODEC)
    return path


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("synthetic")
    return [synthetic(folder / f"scene{i}.fool", TEMPLATE, s, i) for i, s in enumerate((640, 384, 512))]


def tiles_of(path: Path) -> dict[tuple[int, int], tuple[int, bytes | None]]:
    """(row, col) -> (mode, payload or None) of every table entry."""
    with Container.open(path) as c:
        return {(e.row, e.col): (e.mode, c.payload(e) if e.mode == MODE_CODEC else None) for e in c.tiles}


def packed_bytes(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths)


def test_windows_fill_to_99_percent_never_over(scenes, tmp_path):
    total = packed_bytes(scenes)
    caps = [total // 7, total // 5, 9000, total // 4]
    report = pack(scenes, windows(*caps), tmp_path)
    for w, cap, f in zip(report.manifest["windows"], caps, report.files, strict=True):
        assert f.stat().st_size == w["packed_bytes"] <= cap
        assert 0.99 <= w["packed_bytes"] / cap <= 1.0
    assert report.manifest["not_sent"]  # there was more than enough to send


def test_last_window_holds_the_rest_and_nothing_is_lost(scenes, tmp_path):
    report = pack(scenes, windows(20000, 10**7), tmp_path, max_packet=1024)
    assert report.fills[0] >= 0.99 and report.fills[1] < 0.1
    assert not report.manifest["not_sent"]
    result = unpack(report.files[::-1] + report.files[:1], tmp_path / "ground")  # any order, duplicated
    assert result.complete and result.duplicates > 0
    for src in scenes:
        assert tiles_of(tmp_path / "ground" / src.name) == tiles_of(src)
        with Container.open(src) as a, Container.open(tmp_path / "ground" / src.name) as b:
            assert a.header_bytes == b.header_bytes


def test_a_version_4_container_goes_down_as_version_5(tmp_path):
    """The packer sends current-version tile checks for an older file; the ground rebuilds the
    scene as a current container with the same payloads and the same scene header (its bytes may
    differ: version 5 writes the default band groups as a zero count)."""
    src = tmp_path / "old.fool"
    src.write_bytes(TEMPLATE.read_bytes())
    report = pack([src], windows(10**6), tmp_path)
    result = unpack(report.files, tmp_path / "ground")
    assert result.complete
    with Container.open(src) as a, Container.open(tmp_path / "ground" / src.name) as b:
        assert (a.version, b.version) == (4, 5)
        assert [a.payload(e) for e in a.tiles] == [b.payload(e) for e in b.tiles]
        assert a.scene == b.scene


def test_scene_larger_than_a_window_is_split_across_two(scenes, tmp_path):
    big = scenes[0]
    cap = big.stat().st_size * 6 // 10
    report = pack([big], windows(cap, cap), tmp_path)
    first, second = report.manifest["windows"]
    assert [s["scene"] for s in first["scenes"]] == [s["scene"] for s in second["scenes"]] == [big.stem]
    assert second["scenes"][0]["header_copies"] >= 1 and second["scenes"][0]["table_packets"] >= 1
    assert not report.manifest["not_sent"]
    # every window starts with the scene's header and carries a whole table: each unpacks alone
    whole = tiles_of(big)
    for i, f in enumerate(report.files):
        alone = unpack([f], tmp_path / f"alone{i}")
        got = tiles_of(tmp_path / f"alone{i}" / big.name)
        assert got.keys() == whole.keys()
        recovered = {k for k, v in got.items() if v[0] == MODE_CODEC}
        assert recovered and all(got[k] == whole[k] for k in recovered)
        assert not alone.scenes[0].unknown
    both = unpack(report.files, tmp_path / "both")
    assert both.complete and tiles_of(tmp_path / "both" / big.name) == whole


def test_tiles_that_fit_no_window_are_listed_and_reported_lost(scenes, tmp_path):
    report = pack(scenes[:2], windows(30000), tmp_path)
    not_sent = {(s["scene"], r, c) for s in report.manifest["not_sent"] for r, c, _, _ in s["tiles"]}
    sent = {
        (s["scene"], t[0], t[1]) for w in report.manifest["windows"] for s in w["scenes"] for t in s.get("tiles", [])
    }
    coded = {(p.stem, r, c) for p in scenes[:2] for (r, c), (m, _) in tiles_of(p).items() if m == MODE_CODEC}
    assert not_sent and sent | not_sent == coded and not sent & not_sent
    result = unpack(report.files, tmp_path / "ground")
    found = {s.name for s in result.scenes}
    lost = {(s.name, r, c) for s in result.scenes for r, c in s.missing}
    assert lost == {t for t in not_sent if t[0] in found} and not result.complete
    assert {t for t in coded if t[0] not in found} <= not_sent  # a scene not received at all was not sent


def test_scene_without_any_table_copy_is_rebuilt_from_tile_packets(scenes, tmp_path):
    report = pack(scenes[1:2], windows(10**6), tmp_path)
    frames = list(scan_packets(report.files[0].read_bytes()))
    no_table = b"".join(f.raw for f in frames if f.packet.kind != 2)
    (tmp_path / "no_table.bin").write_bytes(no_table)
    result = unpack([tmp_path / "no_table.bin"], tmp_path / "ground")
    (scene,) = result.scenes
    got, whole = tiles_of(tmp_path / "ground" / scenes[1].name), tiles_of(scenes[1])
    coded = {k for k, v in whole.items() if v[0] == MODE_CODEC}
    assert {k for k, v in got.items() if v[0] == MODE_CODEC} == coded
    assert all(got[k] == whole[k] for k in coded)
    unknown = {tuple(t) for t in scene.unknown}
    assert unknown == set(got) - coded and all(got[k][0] == MODE_LOST for k in unknown)


def test_hostile_packets_with_valid_crc_change_nothing(scenes, tmp_path):
    report = pack(scenes[1:2], windows(10**6), tmp_path)
    frames = list(scan_packets(report.files[0].read_bytes()))
    sid = frames[0].packet.scene_id
    bogus = [
        TileBody(0, 0, 0, 1, 0, 2**32 - 1, 0, 256, 0, MODE_CODEC, b"x" * 100),  # huge length, never complete
        TileBody(999, 999, 0, 1, 0, 3, 0, 256, 0, MODE_CODEC, b"abc"),  # outside the grid
    ]
    hostile = b"".join(build_packet(APID_BASE, 0, sid, b) for b in bogus) + b"\x08\x00" * 50
    (tmp_path / "w.bin").write_bytes(hostile + report.files[0].read_bytes() + hostile)
    result = unpack([tmp_path / "w.bin"], tmp_path / "ground")
    assert result.complete and tiles_of(tmp_path / "ground" / scenes[1].name) == tiles_of(scenes[1])


def packet_index(files: list[Path]) -> dict[str, list]:
    """Per file: the parsed packets, in the order the link simulator numbers them."""
    return {f.name: [fr.packet for fr in scan_packets(f.read_bytes())] for f in files}


LOSS = st.sampled_from([0.0, 0.01, 0.05, 0.10, 0.20])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drop=LOSS, burst=st.sampled_from([1, 10]), flip=st.sampled_from([0.0, 0.02]), seed=st.integers(0, 10**6))
def test_loss_targets(scenes, tmp_path_factory, drop, burst, flip, seed):
    """Every tile whose packets all arrived intact is recovered bit-identically, no other tile is, and
    a scene is recovered exactly when one of its header copies arrived."""
    tmp = tmp_path_factory.mktemp("loss")
    report = pack(scenes, windows(60000, 90000, 10**6), tmp / "sent", max_packet=1024)
    model = LinkModel(drop=drop, burst=burst, flip=flip, duplicate=0.02, reorder=0.1, truncate=flip / 2, seed=seed)
    log = link_sim(report.files, tmp / "recv", model)
    intact_tiles, damaged_tiles, headers = set(), set(), set()
    index = packet_index(report.files)
    for entry in log["files"]:
        for packet, fate in zip(index[entry["file"]], entry["fates"], strict=True):
            body = packet.body
            if packet.kind == 1 and fate == "ok":
                headers.add(packet.scene_id)
            if packet.kind == 3:
                (intact_tiles if fate == "ok" else damaged_tiles).add((packet.scene_id, body.row, body.col))
    arrived = intact_tiles - damaged_tiles
    result = unpack(sorted((tmp / "recv").glob("*.bin"), reverse=True), tmp / "ground")
    by_id = {int(s.scene_id, 16): s for s in result.scenes}
    ids = {s["scene"]: int(s["scene_id"], 16) for s in report.manifest["scenes"]}
    for src in scenes:
        sid = ids[src.stem]
        assert (sid in headers) == (sid in by_id and by_id[sid].status != "lost")
        if sid not in headers:
            continue
        got, whole = tiles_of(Path(by_id[sid].output)), tiles_of(src)
        recovered = {k for k, v in got.items() if v[0] == MODE_CODEC}
        assert recovered == {(r, c) for s, r, c in arrived if s == sid}
        assert all(got[k] == whole[k] for k in recovered)
        assert all(got[k][0] in (MODE_SKIPPED, MODE_LOST) for k in got.keys() - recovered)


def _decode(path: Path, out: Path) -> np.ndarray:
    runner = CliRunner()
    r = runner.invoke(main, ["decode", str(path), "-o", str(out), "--skip-damaged"])
    assert r.exit_code in (0, 3), r.output
    with rasterio.open(out) as ds:
        return ds.read(masked=True)


def test_end_to_end_through_the_cli(real, tmp_path):
    runner = CliRunner()
    save_windows(windows(real.stat().st_size // 2 + 400, 10**6), tmp_path / "windows.json")
    r = runner.invoke(
        main, ["pack", str(real), "--windows", str(tmp_path / "windows.json"), "-o", str(tmp_path / "sent")]
    )
    assert r.exit_code == 0, r.output
    sent = sorted(str(p) for p in (tmp_path / "sent").glob("window_*.bin"))
    assert len(sent) == 2 and json.loads((tmp_path / "sent" / "manifest.json").read_text())["not_sent"] == []
    r = runner.invoke(main, ["unpack", *sent, "-o", str(tmp_path / "clean")])
    assert r.exit_code == 0, r.output
    assert tiles_of(tmp_path / "clean" / real.name) == tiles_of(real)  # same payloads: the same decode

    args = ["--drop", "0.3", "--burst", "2", "--flip", "0.1", "--duplicate", "0.1", "--reorder", "0.2", "--seed", "4"]
    r = runner.invoke(main, ["link-sim", *sent, "-o", str(tmp_path / "recv"), *args])
    assert r.exit_code == 0, r.output
    recv = sorted(str(p) for p in (tmp_path / "recv").glob("window_*.bin"))
    r = runner.invoke(main, ["unpack", *recv, "-o", str(tmp_path / "ground")])
    report = json.loads((tmp_path / "ground" / "unpack_report.json").read_text())
    assert r.exit_code == (0 if report["complete"] else 3) == 3, r.output
    (scene,) = report["scenes"]
    assert scene["status"] == "partial" and scene["missing"] + scene["damaged"]
    lossy = _decode(Path(scene["output"]), tmp_path / "lossy.tif")
    reference = _decode(real, tmp_path / "reference.tif")
    tile = 64
    for r_, c_ in scene["missing"] + scene["damaged"]:
        assert lossy.mask[:, r_ * tile : (r_ + 1) * tile, c_ * tile : (c_ + 1) * tile].all()
    with Container.open(Path(scene["output"])) as c:
        for e in c.coded_tiles:
            if e.mode == MODE_CODEC:
                block = np.s_[:, e.row * tile : (e.row + 1) * tile, e.col * tile : (e.col + 1) * tile]
                assert np.array_equal(lossy[block], reference[block])


def test_cli_errors_are_one_line(tmp_path):
    r = CliRunner().invoke(main, ["pack", str(tmp_path / "x.fool"), "--windows", str(tmp_path / "w.json"), "-o", "o"])
    assert r.exit_code == 1 and r.output.strip().startswith("Error:") and len(r.output.strip().splitlines()) == 1
