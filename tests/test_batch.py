"""Ground batch decode: local pool, in-process and Dask give the same pixels; a killed worker's
scene is rerun; resume skips finished scenes and redoes changed ones; damaged, strict and
non-container inputs give the documented exit codes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from distributed.diagnostics.plugin import WorkerPlugin
from fool.ground.batch import BatchOptions, run_batch

from fool.cli import main
from tests import data

SCENES = {  # all uint8: one model, loaded once per worker
    "alpha": {},
    "bravo": {"nodata": 0, "nodata_corner": True, "seed": 1},
    "charlie": {"bands": 4, "height": 70, "width": 530, "seed": 2},
}


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def compress_all(folder: Path, scenes: dict[str, dict], tile_size: int = 128) -> dict[str, Path]:
    """Write and compress each synthetic scene into ``folder`` with one loaded model."""
    from fool.onboard.compress import compress_scene, load_runtime
    from fool.shared import zoo

    folder.mkdir(parents=True, exist_ok=True)
    engine = load_runtime("torch", zoo.model_for("uint8"), None, 1)[:2]
    out = {}
    for name, kw in scenes.items():
        tif = data.write(folder / f"{name}.src.tif", **kw)
        out[name] = folder / f"{name}.fool"
        compress_scene(tif, out[name], quality=1.0, tile_size=tile_size, engine=engine)
        tif.unlink()
    return out


def damage_tile(container: Path, row: int, col: int) -> None:
    """Flip one byte in the payload of tile (row, col): its CRC no longer matches."""
    from fool.shared.format import Container

    with Container.open(container) as c:
        entry = next(e for e in c.tiles if (e.row, e.col) == (row, col))
        payload = c.payload(entry)
    raw = bytearray(container.read_bytes())
    at = raw.index(payload) + len(payload) // 2
    raw[at] ^= 0x40
    container.write_bytes(bytes(raw))


def read_all(outdir: Path, names) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for name in names:
        with rasterio.open(outdir / f"{name}.tif") as ds:
            out[name] = (ds.read(), ds.dataset_mask())
    return out


def assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name][0], b[name][0]), name
        assert np.array_equal(a[name][1], b[name][1]), name


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pass") / "in"
    compress_all(folder, SCENES)
    return folder


@pytest.fixture(scope="module")
def in_process(inputs, tmp_path_factory) -> Path:
    """The reference: one worker, in this process."""
    out = tmp_path_factory.mktemp("ref")
    summary = run_batch([inputs], out, BatchOptions(workers=1))
    assert summary.exit_code == 0, summary.to_dict()
    return out


@pytest.fixture(scope="module")
def cluster():
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as c:
        yield c


def test_local_pool_matches_in_process(inputs, in_process, tmp_path):
    summary = run_batch([inputs], tmp_path, BatchOptions(workers=2))
    assert summary.exit_code == 0 and summary.runner == "local 2 worker(s)"
    assert [r.status for r in summary.results] == ["decoded"] * 3
    assert_identical(read_all(tmp_path, SCENES), read_all(in_process, SCENES))


def test_dask_cluster_matches_local(inputs, in_process, cluster, tmp_path):
    summary = run_batch([inputs], tmp_path, BatchOptions(scheduler=cluster.scheduler_address))
    assert summary.exit_code == 0 and summary.runner.startswith("dask tcp://127.0.0.1")
    assert_identical(read_all(tmp_path, SCENES), read_all(in_process, SCENES))
    done = json.loads((tmp_path / "summary.json").read_text())
    assert done["scenes"] == 3 and done["failed"] == 0 and done["tiles"] == 4 + 4 + 5


class KillOnce(WorkerPlugin):
    """Worker plugin: the first task to start executing anywhere kills its worker process.

    The marker file makes it once per batch, so the rerun on a (restarted) worker completes."""

    name = "kill-once"

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish == "executing" and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(1)


def test_dask_batch_survives_a_killed_worker(inputs, in_process, cluster, tmp_path):
    from dask.distributed import Client

    marker = tmp_path / "killed.pid"
    with Client(cluster.scheduler_address) as client:
        before = set(client.run(os.getpid).values())
        client.register_plugin(KillOnce(str(marker)))
        try:
            summary = run_batch([inputs], tmp_path / "out", BatchOptions(scheduler=cluster.scheduler_address))
        finally:
            client.unregister_worker_plugin("kill-once")
    assert marker.exists() and int(marker.read_text()) in before  # a worker really died mid-batch
    assert summary.exit_code == 0, summary.to_dict()["failures"]
    assert_identical(read_all(tmp_path / "out", SCENES), read_all(in_process, SCENES))
    assert not [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_rerun_skips_done_scenes_and_redoes_changed_input(inputs, tmp_path):
    src = tmp_path / "in"
    shutil.copytree(inputs, src)
    out = tmp_path / "out"
    first = run_batch([src], out, BatchOptions(workers=1))
    assert first.exit_code == 0 and not any(r.resumed for r in first.results)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tif")}
    second = run_batch([src], out, BatchOptions(workers=1))
    assert [r.resumed for r in second.results] == [True, True, True]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.tif")} == stamps  # nothing rewritten
    shutil.copy(src / "alpha.fool", src / "bravo.fool")  # bravo's container changed
    third = run_batch([src], out, BatchOptions(workers=1))
    assert {r.stem: r.resumed for r in third.results} == {"alpha": True, "bravo": False, "charlie": True}
    with rasterio.open(out / "alpha.tif") as a, rasterio.open(out / "bravo.tif") as b:
        assert np.array_equal(a.read(), b.read())  # bravo.tif now holds the new input's pixels
    (out / "charlie.tif").unlink()  # an output gone: the scene is not complete any more
    fourth = run_batch([src], out, BatchOptions(workers=1))
    assert {r.stem: r.resumed for r in fourth.results} == {"alpha": True, "bravo": True, "charlie": False}


@pytest.fixture
def damaged_pass(inputs, tmp_path) -> Path:
    src = tmp_path / "in"
    shutil.copytree(inputs, src)
    damage_tile(src / "bravo.fool", 0, 1)
    return src


def test_damaged_tile_is_nodata_and_reported_exit_3(damaged_pass, in_process, tmp_path):
    out = tmp_path / "out"
    r = run("decode", damaged_pass, "-o", out, "--workers", 1)
    assert r.exit_code == 3, r.output
    assert "1 damaged" in r.output and "bravo: 0 missing, 1 damaged" in r.output
    summary = json.loads((out / "summary.json").read_text())
    bravo = next(s for s in summary["results"] if s["stem"] == "bravo")
    assert bravo["status"] == "partial" and bravo["damaged"] == [[0, 1]]
    assert summary["damaged_tiles"] == 1 and summary["partial"] == 1 and summary["decoded"] == 2
    with rasterio.open(out / "bravo.tif") as ds, rasterio.open(in_process / "bravo.tif") as ref:
        win = rasterio.windows.Window(128, 0, 72, 128)
        assert not ds.read_masks(1, window=win).any()  # the damaged tile reads as nodata
        assert (ds.read(window=win) == 0).all()
        left = rasterio.windows.Window(0, 0, 128, 128)
        assert np.array_equal(ds.read(window=left), ref.read(window=left))  # the rest as without damage
    assert_identical(read_all(out, ["alpha", "charlie"]), read_all(in_process, ["alpha", "charlie"]))


def test_strict_fails_the_damaged_scene_exit_2(damaged_pass, tmp_path):
    out = tmp_path / "out"
    r = run("decode", damaged_pass, "-o", out, "--workers", 1, "--strict")
    assert r.exit_code == 2, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert [f["source"].endswith("bravo.fool") for f in summary["failures"]] == [True]
    assert "CRC" in summary["failures"][0]["error"] and "\n" not in summary["failures"][0]["error"]
    assert not (out / "bravo.tif").exists() and (out / "alpha.tif").exists() and (out / "charlie.tif").exists()


def test_non_container_input_fails_alone_exit_2(inputs, tmp_path):
    junk = tmp_path / "notes.fool"
    junk.write_text("not a container\n")
    out = tmp_path / "out"
    r = run("decode", inputs / "alpha.fool", junk, "-o", out, "--workers", 1)
    assert r.exit_code == 2, r.output
    assert "notes.fool" in r.output and "not a .fool" in r.output and "Traceback" not in r.output
    assert (out / "alpha.tif").exists() and not (out / "notes.tif").exists()
    only_junk = run("decode", junk, tmp_path / "*.nothing", "-o", out)
    assert only_junk.exit_code == 1 and "no such file" in only_junk.output
    r = run("decode", junk, "-o", tmp_path / "out2")
    assert r.exit_code == 1, r.output  # every scene failed


def test_inputs_expand_folders_and_globs(inputs, tmp_path):
    from fool.ground.batch import expand_inputs
    from fool.shared.errors import InputError

    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    shutil.copy(inputs / "alpha.fool", nested / "delta.fool")
    found = expand_inputs([tmp_path / "a", str(inputs / "b*.fool"), inputs / "alpha.fool"])
    assert [p.name for p in found] == ["delta.fool", "bravo.fool", "alpha.fool"]
    shutil.copy(inputs / "alpha.fool", nested / "alpha.fool")
    with pytest.raises(InputError, match="would both write alpha"):
        expand_inputs([inputs, tmp_path / "a"])


def test_single_scene_form_is_unchanged(damaged_pass, tmp_path):
    out = tmp_path / "one.tif"
    assert run("decode", damaged_pass / "alpha.fool", "-o", out).exit_code == 0 and out.exists()
    r = run("decode", damaged_pass / "bravo.fool", "-o", tmp_path / "b.tif")
    assert r.exit_code == 1 and "CRC" in r.output and not (tmp_path / "b.tif").exists()
    r = run("decode", damaged_pass / "bravo.fool", "-o", tmp_path / "b.tif", "--skip-damaged")
    assert r.exit_code == 3 and (tmp_path / "b.tif").exists()
    assert run("decode", damaged_pass / "alpha.fool", "--output", tmp_path / "old.tif").exit_code == 0  # old spelling
    assert (tmp_path / "old.tif").exists()
    r = run("decode", damaged_pass / "alpha.fool", "-o", tmp_path / "c.tif", "--cog")
    assert r.exit_code == 1 and "need a batch" in r.output
    assert run("decode", damaged_pass, "-o", tmp_path / "x", "--bogus").exit_code == 1  # bad usage is 1, not 2
