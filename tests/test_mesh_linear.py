"""Basis combinations (face3d.mesh.linear): the C++ kernel against its numpy twin, bit for bit, and a float64 sum."""
import numpy as np
import pytest
from test_mesh_render import misaligned

from face3d.mesh import linear
from face3d.mesh_numpy import linear as linear_numpy


@pytest.fixture(scope="module")
def basis():
    rng = np.random.default_rng(4)
    m = 3 * 37  # not a multiple of the tile: the last tile is partial
    mean = rng.normal(0, 1e4, m).astype(np.float32)
    shape_pc = rng.normal(0, 1e3, (m, 9)).astype(np.float32)
    exp_pc = rng.normal(0, 1e2, (m, 4)).astype(np.float32)
    coef = rng.normal(0, 1, (7, 13)).astype(np.float32)
    return mean, shape_pc, exp_pc, coef


def test_layout_holds_the_basis_row_by_row(basis):
    mean, shape_pc, exp_pc, _ = basis
    mean_p, tiles = linear.tile_basis(mean, shape_pc, exp_pc)
    assert mean_p.shape == (128,) and tiles.shape == (4, 13, linear.TILE)
    rows = tiles.transpose(0, 2, 1).reshape(128, 13)
    np.testing.assert_array_equal(rows[:111], np.hstack([shape_pc, exp_pc]))
    assert not rows[111:].any() and not mean_p[111:].any()


def test_a_basis_of_whole_tiles_has_no_partial_tile():
    m = 3 * linear.TILE
    mean = np.arange(m, dtype=np.float32)
    pc = np.arange(2 * m, dtype=np.float32).reshape(m, 2)
    mean_p, tiles = linear.tile_basis(mean, pc)
    assert mean_p.shape == (m,) and tiles.shape == (3, 2, linear.TILE)
    np.testing.assert_array_equal(tiles.transpose(0, 2, 1).reshape(m, 2), pc)
    np.testing.assert_array_equal(linear.combine_basis(mean_p, tiles, [[1.0, -2.0]])[0], mean + pc[:, 0] - 2 * pc[:, 1])


def test_a_basis_smaller_than_one_tile():
    m = 9  # a tiny model: only the partial tile
    mean = np.arange(m, dtype=np.float32)
    pc = np.arange(2 * m, dtype=np.float32).reshape(m, 2)
    mean_p, tiles = linear.tile_basis(mean, pc)
    assert mean_p.shape == (linear.TILE,) and tiles.shape == (1, 2, linear.TILE)
    np.testing.assert_array_equal(linear.combine_basis(mean_p, tiles, [[1.0, -2.0]])[0, :m],
                                  mean + pc[:, 0] - 2 * pc[:, 1])


def test_kernel_equals_numpy_twin_and_float64_sum(basis):
    mean, shape_pc, exp_pc, coef = basis
    mean_p, tiles = linear.tile_basis(mean, shape_pc, exp_pc)
    got = linear.combine_basis(mean_p, tiles, coef)
    np.testing.assert_array_equal(got, linear_numpy.combine_basis(mean_p, tiles, coef))
    exact = mean.astype(np.float64) + coef.astype(np.float64) @ np.hstack([shape_pc, exp_pc]).T.astype(np.float64)
    np.testing.assert_allclose(got[:, :111], exact, rtol=0, atol=0.05)  # float32 rounding of sums near 1e4


def test_a_basis_without_columns_gives_the_mean_in_both_twins(basis):
    mean = basis[0]
    mean_p, tiles = linear.tile_basis(mean, np.zeros((mean.size, 0), np.float32))
    assert tiles.shape == (4, 0, linear.TILE)
    got = linear.combine_basis(mean_p, tiles, np.zeros((2, 0)))
    np.testing.assert_array_equal(got, np.stack([mean_p, mean_p]))
    np.testing.assert_array_equal(linear_numpy.combine_basis(mean_p, tiles, np.zeros((2, 0))), got)


def test_misaligned_coefficients_give_the_combination_of_aligned_ones(basis):
    mean, shape_pc, exp_pc, coef = basis
    mean_p, tiles = linear.tile_basis(mean, shape_pc, exp_pc)
    np.testing.assert_array_equal(linear.combine_basis(mean_p, tiles, misaligned(coef)),
                                  linear.combine_basis(mean_p, tiles, coef))


def test_combination_does_not_depend_on_the_batch(basis):
    mean, shape_pc, exp_pc, coef = basis
    mean_p, tiles = linear.tile_basis(mean, shape_pc, exp_pc)
    batch = linear.combine_basis(mean_p, tiles, coef)
    for j in range(coef.shape[0]):  # alone, and at another place in a batch of another size
        np.testing.assert_array_equal(linear.combine_basis(mean_p, tiles, coef[j:j + 1])[0], batch[j])
        np.testing.assert_array_equal(linear.combine_basis(mean_p, tiles, coef[j::-1])[0], batch[j])


def test_wrong_coefficient_count_is_refused(basis):
    mean, shape_pc, exp_pc, coef = basis
    mean_p, tiles = linear.tile_basis(mean, shape_pc, exp_pc)
    with pytest.raises(ValueError, match=r"coefficients must have shape \(batch, 13\)"):
        linear.combine_basis(mean_p, tiles, coef[:, :12])
