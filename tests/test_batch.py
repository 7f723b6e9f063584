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


# ---------------------------------------------------------------- resume keys on every option that changes bytes


def test_signature_holds_every_option_that_changes_outputs():
    base = BatchOptions(output="both", workers=1)
    changed = [
        BatchOptions(output="image", workers=1),
        BatchOptions(output="both", workers=1, cog=True),
        BatchOptions(output="both", workers=1, quicklook=True),
        BatchOptions(output="both", workers=1, stac=True),
        BatchOptions(output="both", workers=1, strict=True),
        BatchOptions(output="both", workers=1, threads=2),  # float synthesis may differ in the last bit
        BatchOptions(output="both", workers=1, runtime="torch"),  # another float path: within 1 grey level
    ]
    assert all(o.signature() != base.signature() for o in changed)
    # where to run, and how, changes no byte; latents are bit-exact whatever the thread count
    same = [BatchOptions(output="both", workers=2), BatchOptions(output="both", retries=0, progress=False)]
    assert all(o.signature() == base.signature() for o in same)
    assert BatchOptions(output="features", threads=2).signature() == BatchOptions(output="features").signature()
    assert BatchOptions(output="features", runtime="torch").signature() == BatchOptions(output="features").signature()


def test_rerun_with_other_strict_redecodes_and_same_strict_skips(damaged_pass, tmp_path):
    """bravo has a damaged tile: non-strict leaves it as nodata (partial), strict fails the scene."""
    scenes = [damaged_pass / "alpha.fool", damaged_pass / "bravo.fool"]
    out = tmp_path / "out"

    def batch(strict: bool) -> dict[str, tuple[str, bool]]:
        summary = run_batch(scenes, out, BatchOptions(workers=1, strict=strict))
        return {r.stem: (r.status, r.resumed) for r in summary.results}

    assert batch(False) == {"alpha": ("decoded", False), "bravo": ("partial", False)}
    assert batch(False) == {"alpha": ("decoded", True), "bravo": ("partial", True)}
    assert batch(True) == {"alpha": ("decoded", False), "bravo": ("failed", False)}  # not the non-strict outputs
    # strict refuses the damaged tile: the non-strict image (nodata there) and its record are gone
    assert not (out / "bravo.tif").exists() and not (out / "bravo.done.json").exists()
    assert batch(True) == {"alpha": ("decoded", True), "bravo": ("failed", False)}
    assert batch(False) == {"alpha": ("decoded", False), "bravo": ("partial", False)}
    record = json.loads((out / "alpha.done.json").read_text())
    assert record["options"]["strict"] is False and record["options"]["threads"] == 1


# ---------------------------------------------------------------- feature validity


def expected_cells(tile, pixels: np.ndarray) -> np.ndarray:
    """Latent cells (16x16 blocks of the padded tile) holding at least one valid pixel, computed here."""
    ph, pw = tile.padded_shape
    block = np.zeros((ph, pw), bool)
    block[: tile.height, : tile.width] = pixels
    return block.reshape(ph // 16, 16, pw // 16, 16).any(axis=(1, 3))


def check_validity(features, scene, source_valid: np.ndarray) -> int:
    """Every tile's pixel and latent validity against the source's own nodata; -> tiles with invalid cells."""
    with_holes = 0
    for t in features:
        tile = scene.grid.tile(t.row, t.col)
        pixels = source_valid[tile.y : tile.y + tile.height, tile.x : tile.x + tile.width]
        if pixels.all():
            assert t.valid_pixels is None and t.valid_fraction == 1.0
        else:
            assert t.valid_pixels is not None and np.array_equal(t.valid_pixels, pixels), (t.row, t.col)
            assert t.valid_fraction == pytest.approx(pixels.mean(), abs=1e-6)
        cells = expected_cells(tile, pixels)
        assert cells.shape == t.array.shape[-2:]
        if cells.all():
            assert t.valid is None
        else:
            assert t.valid is not None and np.array_equal(t.valid, cells), (t.row, t.col)
            with_holes += 1
    return with_holes


@pytest.fixture(scope="module")
def holey(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A 300x300 scene in 64-px tiles (5x5) with a 100x100 nodata corner: tile (0, 0) is all nodata
    (never coded), (0, 1) has whole latent cells of nodata, (1, 1) a few nodata pixels; then
    (2, 2) marked lost (as fool unpack writes it), (3, 0) skipped on board, (2, 0) damaged."""
    from fool.onboard.compress import compress_scene
    from fool.shared.format import MODE_LOST, MODE_SKIPPED, Container, write_container

    folder = tmp_path_factory.mktemp("holey")
    tif = data.write(folder / "holey.src.tif", height=300, width=300, nodata=0, nodata_corner=True, seed=5)
    with rasterio.open(tif) as ds:
        source_valid = ~(ds.read() == 0).all(axis=0)
    compress_scene(tif, folder / "whole.fool", quality=1.0, tile_size=64)
    modes = {(2, 2): MODE_LOST, (3, 0): MODE_SKIPPED}
    dst = folder / "in" / "holey.fool"
    dst.parent.mkdir()
    with Container.open(folder / "whole.fool") as c, write_container(dst, c.header_bytes) as w:
        assert (0, 0) not in {(e.row, e.col) for e in c.tiles}  # all nodata: not in the table
        for e in c.tiles:
            mode = modes.get((e.row, e.col), e.mode)
            w.add_tile(e.row, e.col, c.payload(e) if mode == e.mode else b"", e.quality, e.flags, mode)
    damage_tile(dst, 2, 0)
    return dst, source_valid


def test_features_validity_and_absent_tiles(holey, tmp_path):
    from fool.shared.format import Container

    import fool

    src, source_valid = holey
    summary = run_batch([src], tmp_path, BatchOptions(output="features", workers=1))
    assert summary.exit_code == 3 and summary.results[0].damaged == [[2, 0]]
    features = fool.open_features(tmp_path / "holey.features")
    with Container.open(src) as c:
        scene = c.scene
    absent = {(a.row, a.col): a for a in features.absent}
    assert {rc: a.reason for rc, a in absent.items()} == {
        (0, 0): "nodata",
        (2, 0): "damaged",
        (2, 2): "lost",
        (3, 0): "skipped",
    }
    assert absent[(0, 0)].unknown is False and all(absent[rc].unknown for rc in [(2, 0), (2, 2), (3, 0)])
    assert absent[(2, 2)].window == scene.grid.tile(2, 2).window()
    assert features.missing == [(0, 0), (2, 2), (3, 0)] and features.damaged == [(2, 0)]  # as in version 1
    assert {(t.row, t.col) for t in features} | absent.keys() == {(t.row, t.col) for t in scene.grid}
    assert len(features) == 25 - 4

    tiles = {(t.row, t.col): t for t in features}
    assert check_validity(features, scene, source_valid) > 0
    top = tiles[(0, 1)]  # cols 64..128 of rows 0..64; the corner's nodata ends at col 100
    assert top.valid is not None and not top.valid[:, :2].any() and top.valid[:, 2:].all()
    assert not top.valid_pixels[:, 32:36].any() and top.valid_pixels[:, 36:].all()  # cell 2 is valid but partly not
    assert top.valid_fraction == pytest.approx(28 / 64)
    corner = np.ones((4, 4), bool)
    corner[:2, :2] = False  # rows and cols 64..96 of the scene: all nodata
    assert np.array_equal(tiles[(1, 1)].valid, corner)
    interior = tiles[(1, 2)]
    assert interior.valid is None and interior.valid_pixels is None and interior.valid_fraction == 1.0
    edge = tiles[(1, 4)]  # 44 px wide, coded as 64: the fourth latent column is padding
    assert edge.valid_pixels is None and edge.valid.shape == (4, 4)
    assert edge.valid[:, :3].all() and not edge.valid[:, 3].any()

    index = json.loads((tmp_path / "holey.features" / "tiles.json").read_text())
    assert index["format"] == "fool-features/2"
    entry = next(t for t in index["tiles"] if (t["row"], t["col"]) == (0, 1))
    assert entry["valid"] == ["0011"] * 4 and entry["valid_pixels"] == "r0000_c0001.valid.npy"
    assert {a["reason"] for a in index["absent"]} == {"nodata", "damaged", "lost", "skipped"}


def test_features_folder_of_version_1_is_refused(holey, tmp_path):
    from fool.shared.errors import InputError

    import fool

    run_batch([holey[0]], tmp_path, BatchOptions(output="features", workers=1))
    index_path = tmp_path / "holey.features" / "tiles.json"
    index = json.loads(index_path.read_text())
    index_path.write_text(json.dumps(index | {"format": "fool-features/1"}))
    with pytest.raises(InputError, match="without validity"):
        fool.open_features(index_path)


def test_features_validity_on_a_landsat_collar(team_data, tmp_path):
    """Landsat 7 RGB.byte.tif: a rotated scene in a nodata collar (a third of the pixels)."""
    from fool.onboard.compress import compress_scene
    from fool.shared.format import Container

    import fool

    tif = team_data / "scenes" / "landsat7" / "RGB.byte.tif"
    if not tif.exists():
        pytest.skip(f"{tif} not in the team data")
    with rasterio.open(tif) as ds:
        source_valid = ~(ds.read() == ds.nodata).all(axis=0)
    src = tmp_path / "in" / "rgb.fool"
    src.parent.mkdir()
    compress_scene(tif, src, quality=1.0, tile_size=128)
    summary = run_batch([src], tmp_path / "out", BatchOptions(output="features", workers=1))
    assert summary.exit_code == 0, summary.to_dict()
    features = fool.open_features(tmp_path / "out" / "rgb.features")
    with Container.open(src) as c:
        scene = c.scene
    assert check_validity(features, scene, source_valid) >= 10  # the collar crosses many tiles
    assert all(a.reason == "nodata" for a in features.absent)  # corner tiles wholly in the collar
    valid_pixels = sum(t.valid_fraction * t.window.width * t.window.height for t in features)
    assert valid_pixels == pytest.approx(source_valid.sum(), abs=len(features))


def test_features_list_an_intra_tile_as_absent_not_damaged(holey, tmp_path):
    """A tile coded with a classical intra mode has pixels but no latents: absent, reason intra."""
    import fool.shared.format as fmt

    import fool

    intra = getattr(fmt, "MODE_INTRA", None)
    if intra is None:
        pytest.skip("this container format has no intra tiles")
    src = tmp_path / "in" / "intra.fool"
    src.parent.mkdir()
    whole = holey[0].parent.parent / "whole.fool"  # before tiles were lost, skipped and damaged
    with fmt.Container.open(whole) as c, fmt.write_container(src, c.header_bytes) as w:
        for e in c.tiles:
            if (e.row, e.col) == (1, 2):
                w.add_tile(e.row, e.col, b"classical payload, not read for features", e.quality, 0, intra)
            else:
                w.add_tile(e.row, e.col, c.payload(e), e.quality, e.flags, e.mode)
    summary = run_batch([src], tmp_path / "out", BatchOptions(output="features", workers=1, strict=True))
    assert summary.exit_code == 0, summary.to_dict()["failures"]  # strict: an intra tile is not damage
    features = fool.open_features(tmp_path / "out" / "intra.features")
    absent = {(a.row, a.col): a for a in features.absent}
    assert absent[(1, 2)].reason == "intra" and not absent[(1, 2)].unknown
    assert (1, 2) not in features.damaged and (1, 2) not in features.missing
    assert {a.reason for a in absent.values()} == {"nodata", "intra"} and len(features) == 25 - 2
