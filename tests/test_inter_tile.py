"""Inter-tile context (halo) and scene value ranges: round trips, lost neighbours, hostile headers."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from fool.ground.decode import decode_container, latent_canvas
from fool.onboard.compress import compress_scene
from fool.shared.errors import ContainerError, InputError
from fool.shared.format import Container, write_container
from fool.shared.scene import SceneHeader

from fool.cli import main
from tests import data


def _psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    return float(10 * np.log10(peak**2 / np.mean((a.astype(float) - b.astype(float)) ** 2)))


def _drop_tiles(src: Path, dst: Path, lost: set[tuple[int, int]]) -> None:
    """A copy of a container without some tiles: what the ground holds after packets were lost."""
    with Container.open(src) as c, write_container(dst, c.header_bytes) as out:
        for e in c.tiles:
            if (e.row, e.col) not in lost:
                out.add_tile(e.row, e.col, c.payload(e), e.quality, e.flags)


@pytest.fixture(scope="module")
def grid_scene(tmp_path_factory) -> Path:
    # 3 x 3 tiles of 64 px, the last row and column partial
    return data.write(tmp_path_factory.mktemp("halo") / "g.tif", bands=3, height=170, width=180, seed=3)


def test_halo_round_trip_and_lost_neighbours(grid_scene, tmp_path):
    with rasterio.open(grid_scene) as ds:
        ref = ds.read()
    fool = tmp_path / "h.fool"
    compress_scene(grid_scene, fool, tile_size=64, halo=64)
    decode_container(fool, tmp_path / "full.tif")
    with rasterio.open(tmp_path / "full.tif") as ds:
        full = ds.read()
    whole = _psnr(ref, full)
    assert whole > 25, whole

    # the centre tile and its top neighbour are lost: every other tile still decodes, and the
    # tiles that lost a neighbour lose at most a little quality at that border
    _drop_tiles(fool, tmp_path / "lost.fool", {(1, 1), (0, 1)})
    decode_container(tmp_path / "lost.fool", tmp_path / "lost.tif")
    with rasterio.open(tmp_path / "lost.tif") as ds:
        lost = ds.read()
    assert not lost[:, 64:128, 64:128].any() and not lost[:, 0:64, 64:128].any()  # filled, not invented
    for r, c in [(1, 0), (1, 2), (2, 1), (0, 0), (2, 2)]:
        win = (slice(None), slice(64 * r, 64 * r + 64), slice(64 * c, 64 * c + 64))
        kept, alone = _psnr(ref[win], lost[win]), _psnr(ref[win], full[win])
        assert kept > alone - 1.5, f"tile {(r, c)}: {kept:.2f} dB without neighbours vs {alone:.2f} dB"


def test_halo_option_is_checked(grid_scene, tmp_path):
    with pytest.raises(InputError, match="halo"):
        compress_scene(grid_scene, tmp_path / "x.fool", halo=32)
    r = CliRunner().invoke(main, ["compress", str(grid_scene), "-o", str(tmp_path / "y.fool"), "--halo", "100"])
    assert r.exit_code == 1 and "halo" in r.output and not (tmp_path / "y.fool").exists()


def test_canvas_takes_only_the_adjacent_latents():
    own = np.zeros((1, 2, 4, 4), np.float32)
    steps = (-1, 0, 1)
    # every neighbour has its own value, none equal to the canvas' zero fill or to the tile's own zeros
    n = {(dr, dc): np.full((1, 2, 4, 4), 10 * (dr + 1) + (dc + 1) + 1, np.float32) for dr in steps for dc in steps}
    n[(0, 1)] = None  # lost: that side is not widened
    canvas, top, left = latent_canvas(own, n, 2)
    assert (top, left) == (2, 2) and canvas.shape == (1, 2, 8, 6)
    assert (canvas[..., :2, :2] == 1).all()  # top-left diagonal
    assert (canvas[..., :2, 2:6] == 2).all() and (canvas[..., 6:, 2:6] == 22).all()
    assert (canvas[..., 2:6, :2] == 11).all() and (canvas[..., 2:6, 2:6] == 0).all()
    assert (canvas[..., 6:, :2] == 21).all()
    assert not np.isin(canvas, [3, 13, 23]).any()  # nothing from the lost side's column


@pytest.mark.parametrize("halo", [65, -64, 512, "64"])
def test_hostile_halo_in_header_is_refused(grid_scene, tmp_path, halo):
    fool = tmp_path / "x.fool"
    compress_scene(grid_scene, fool, tile_size=64)
    with Container.open(fool) as c:
        scene = c.scene.to_dict()
    SceneHeader.from_dict({k: v for k, v in scene.items() if k != "halo"})  # pre-halo containers still read
    with pytest.raises(ContainerError):
        SceneHeader.from_dict(scene | {"halo": halo})
    with pytest.raises(ContainerError):
        SceneHeader.from_dict(scene | {"ranges": [[0, float("nan")]] * 3})


def test_deep_bands_use_their_scene_range(tmp_path):
    src = data.write(tmp_path / "p.tif", dtype="uint16", bands=1, bits=11, height=130, width=140, seed=5)
    with rasterio.open(src) as ds:
        ref = ds.read()
    for mode, expected in [("scene", [float(ref.min()), float(ref.max())]), ("bitdepth", [0.0, 2047.0])]:
        fool, out = tmp_path / f"{mode}.fool", tmp_path / f"{mode}.tif"
        compress_scene(src, fool, value_range=mode)
        with Container.open(fool) as c:
            assert c.scene.ranges == [expected] and c.scene.bits == [11]
        decode_container(fool, out)
        with rasterio.open(out) as ds:
            rec = ds.read()
        assert expected[0] <= rec.min() and rec.max() <= expected[1]
        assert _psnr(ref, rec, 2047.0) > 24  # the synthetic texture is 5 % noise
