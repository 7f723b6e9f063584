import numpy as np
import pytest
from fool.ground.decode import fill_unsent
from fool.shared.geometry import ALIGN, TileGrid, coded_latents


@pytest.mark.parametrize("w,h,t", [(200, 150, 64), (934, 723, 512), (512, 512, 512), (1, 1, 64), (513, 65, 128)])
def test_tiles_partition_the_scene_exactly(w, h, t):
    grid = TileGrid(w, h, t)
    covered = [[0] * w for _ in range(h)]
    for tile in grid:
        assert 0 < tile.width <= t and 0 < tile.height <= t
        ph, pw = tile.padded_shape
        assert ph % ALIGN == 0 and pw % ALIGN == 0 and ph - tile.height < ALIGN and pw - tile.width < ALIGN
        for y in range(tile.y, tile.y + tile.height):
            for x in range(tile.x, tile.x + tile.width):
                covered[y][x] += 1
    assert all(c == 1 for row in covered for c in row)
    assert len(grid) == grid.rows * grid.cols == len(list(grid))


@pytest.mark.parametrize("w,h,t", [(0, 10, 64), (10, 0, 64), (10, 10, 100), (10, 10, 0)])
def test_invalid_grids_are_refused(w, h, t):
    with pytest.raises(ValueError):
        TileGrid(w, h, t)


def test_tile_lookup_outside_grid():
    with pytest.raises(IndexError):
        TileGrid(100, 100, 64).tile(2, 0)


def test_coded_latents_cover_exactly_the_valid_pixels():
    # the last tile of a 900-px scene in 512-px tiles: 388 real rows and columns, padded to 448
    coded = coded_latents((448, 448), (388, 388), None)
    assert coded.shape == (28, 28) and coded[:25, :25].all() and not coded[25:].any() and not coded[:, 25:].any()
    valid = np.ones((388, 388), bool)
    valid[:40, :40] = False  # nodata: the 2x2 latents wholly inside it are not sent, the third is
    coded = coded_latents((448, 448), (388, 388), valid)
    assert not coded[:2, :2].any() and coded[2, 2] and coded[:25, :25].sum() == 625 - 4


def test_unsent_latents_continue_their_sent_neighbours():
    y = np.zeros((2, 4, 4), np.float32)
    y[:, :2, :3] = np.arange(6, dtype=np.float32).reshape(2, 3)
    coded = np.zeros((4, 4), bool)
    coded[:2, :3] = True
    filled = fill_unsent(y, coded)
    assert np.array_equal(filled[:, :2, :3], y[:, :2, :3])  # sent latents are untouched
    assert np.array_equal(filled[:, 2:, :3], np.broadcast_to(y[:, 1:2, :3], (2, 2, 3)))  # rows repeat the last
    assert np.array_equal(filled[:, :2, 3], y[:, :2, 2])  # columns too
    assert fill_unsent(y, None) is y and fill_unsent(y, np.ones((4, 4), bool)) is y
