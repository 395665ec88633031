"""3x4 affine maps of points (face3d.mesh.affine): the kernel's two paths, its numpy twin and OpenCV, bit for bit.

Budget: < 2 s.
"""
import cv2
import numpy as np
import pytest

from face3d.mesh import _mesh_core
from face3d.mesh.affine import affine_points
from face3d.mesh_numpy.affine import affine_points as affine_points_numpy

CPU_AVX2, CPU_FMA3 = 11, 12  # OpenCV's cv::CPU_AVX2 and cv::CPU_FMA3, which cv2 does not name


def _kernel(points, matrix, weights, max_path):
    out = np.empty_like(points)
    assert _mesh_core.affine_points(points, matrix, weights, out, max_path) == 0
    return out


def _random_case(seed, n=20_001):
    rng = np.random.default_rng(seed)
    points = (rng.normal(0, 1, (n, 3)) * rng.choice([1e-3, 1.0, 300.0, 1e5], (n, 1))).astype(np.float32)
    matrix = rng.normal(0, 2, (3, 4)).astype(np.float32)
    weights = (rng.random(n) > 0.3).astype(np.float32)
    return points, matrix, weights


def _double_rounding_trap():
    """A point whose fma a naive float64 sum gets wrong: x * m + t = 2**30 + 192 - 2**-40 exactly, which float64
    rounds to 2**30 + 192, halfway between two float32 (ties to even then gives 2**30 + 256; the fma 2**30 + 128)."""
    points = np.array([[1 + 2**-23, 0, 0]], np.float32)
    matrix = np.zeros((3, 4), np.float32)
    matrix[:, 0], matrix[:, 3] = 64 * (1 - 2**-23), 2**30 + 128
    return points, matrix


@pytest.mark.parametrize("max_path", _mesh_core.AFFINE_PATHS)
def test_every_path_gives_the_twins_bits(max_path):
    """Each path the processor has (a capped path falls back to the next one it has)."""
    for seed in range(3):
        points, matrix, weights = _random_case(seed)
        for w in (weights, None):
            np.testing.assert_array_equal(_kernel(points, matrix, w, max_path).view(np.uint32),
                                          affine_points_numpy(points, matrix, w).view(np.uint32))
    points, matrix = _double_rounding_trap()
    assert _kernel(points, matrix, None, max_path)[0, 0] == np.float32(2**30 + 128)


def test_the_twin_rounds_each_fma_once():
    points, matrix = _double_rounding_trap()
    assert affine_points_numpy(points, matrix)[0].tolist() == [2**30 + 128] * 3
    assert np.float32(np.float64(points[0, 0]) * matrix[0, 0] + matrix[0, 3]) == np.float32(2**30 + 256)


def test_special_values_and_weights():
    points = np.array([[np.inf, 0, 0], [np.nan, 1, 1], [1e38, 1e38, 1e38], [-1, -2, -3], [0, 0, 0]], np.float32)
    matrix = np.array([[1, 0, 0, 0], [0, 1, 0, -5], [10, 10, 10, 0]], np.float32)
    weights = np.array([1, 0, 1, 0, 0], np.float32)
    for module in (affine_points, affine_points_numpy):
        got = module(points, matrix, weights)
        assert got[0, 0] == np.inf and np.isnan(got[0, 1]) and got[0, 2] == np.inf  # inf * 0 is NaN
        assert np.isnan(got[1]).all()  # NaN * 0 stays NaN
        assert got[2, 2] == np.inf
        # a masked negative value is -0.0, a masked positive +0.0, as cv2.multiply gives
        np.testing.assert_array_equal(np.signbit(got[3]), [True, True, True])
        np.testing.assert_array_equal(np.signbit(got[4]), [False, True, False])


def test_opencv_transform_gives_the_same_bits_but_for_its_last_points():
    """cv2.transform + cv2.multiply, which placed the generator's maps before, on an AVX2 or AVX-512 processor:
    the same bits, except on the last few points, which OpenCV's vector loop leaves to a differently rounded tail."""
    if not (cv2.checkHardwareSupport(CPU_AVX2) and cv2.checkHardwareSupport(CPU_FMA3)):
        pytest.skip("OpenCV uses fma only on processors with AVX2 and FMA")
    points, matrix, weights = _random_case(7, n=4096)
    opencv = cv2.multiply(cv2.transform(points.reshape(-1, 1, 3), matrix).reshape(-1, 3),
                          np.repeat(weights[:, None], 3, axis=1))
    ours = affine_points(points, matrix, weights)
    differing = np.flatnonzero((ours.view(np.uint32) != opencv.view(np.uint32)).any(axis=1))
    assert differing.size == 0 or differing.min() >= points.shape[0] - 4, differing


def test_shapes_and_refusals():
    points, matrix, weights = _random_case(3, n=12)
    grid = points.reshape(2, 6, 3)
    for module in (affine_points, affine_points_numpy):
        got = module(grid[:, ::-1], matrix, weights.reshape(2, 6)[:, ::-1])
        assert got.shape == (2, 6, 3) and got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, affine_points_numpy(grid[:, ::-1].copy(), matrix,
                                                               weights.reshape(2, 6)[:, ::-1].copy()))
        assert module(np.zeros((0, 3), np.float32), matrix).shape == (0, 3)
        with pytest.raises(ValueError, match=r"takes \(\.\.\., 3\) float32 points, got \(12, 3\) float64"):
            module(points.astype(np.float64), matrix)
        with pytest.raises(ValueError, match=r"takes a \(3, 4\) matrix, got shape \(2, 3\)"):
            module(points, matrix[:2, :3])
        with pytest.raises(ValueError, match=r"one weight per point, \(12,\), got shape \(11,\)"):
            module(points, matrix, weights[:11])


def test_the_bridge_refuses_arrays_it_cannot_take_naming_them():
    points, matrix, weights = _random_case(4, n=8)
    with pytest.raises(ValueError, match="out"):
        _mesh_core.affine_points(points, matrix, weights, np.zeros((7, 3), np.float32))
    with pytest.raises(ValueError, match="weights"):
        _mesh_core.affine_points(points, matrix, weights[:7], np.zeros((8, 3), np.float32))
    with pytest.raises(ValueError, match="matrix"):
        _mesh_core.affine_points(points, matrix.astype(np.float64), None, np.zeros((8, 3), np.float32))
    with pytest.raises(ValueError, match="max_path must be one of"):
        _mesh_core.affine_points(points, matrix, None, np.zeros((8, 3), np.float32), "sse")
