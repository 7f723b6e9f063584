import pytest

from shared.geometry import ALIGN, TileGrid


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
