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


def test_each_element_is_summed_term_by_term_in_float32_then_added_to_the_mean():
    """Every element is acc = 0, acc = acc + basis[i, k] * c[k] for k = 0, 1, ... in float32, then mean[i] + acc
    (face3d.mesh.linear): both twins give exactly the bits of that loop, here written out scalar by scalar, for a
    pair of samples and a lone one, across a whole and a partial tile."""
    rng = np.random.default_rng(11)
    m, k = 40, 5
    # Terms of very different sizes around a large mean: another order of the additions rounds differently.
    mean = rng.normal(0, 1e4, m).astype(np.float32)
    pc = (rng.normal(0, 1, (m, k)) * [1e3, 1, 1e2, 1e-1, 1e1]).astype(np.float32)
    coef = rng.normal(0, 1, (3, k)).astype(np.float32)
    expected = np.empty((3, m), np.float32)
    mean_first = np.empty((3, m), np.float32)
    last_term_first = np.empty((3, m), np.float32)
    for j in range(3):
        for i in range(m):
            terms = [pc[i, kk] * coef[j, kk] for kk in range(k)]  # float32 products
            acc, early, backwards = np.float32(0), mean[i], np.float32(0)
            for term in terms:
                acc, early = acc + term, early + term
            for term in terms[::-1]:
                backwards = backwards + term
            expected[j, i], mean_first[j, i], last_term_first[j, i] = mean[i] + acc, early, mean[i] + backwards
    assert np.any(mean_first != expected) and np.any(last_term_first != expected)  # the order shows
    mean_p, tiles = linear.tile_basis(mean, pc)
    for twin in (linear, linear_numpy):
        np.testing.assert_array_equal(twin.combine_basis(mean_p, tiles, coef)[:, :m], expected)


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
