"""3x4 affine maps of points (face3d.mesh.affine): the kernel's paths, its numpy twin and OpenCV, bit for bit.

Budget: < 2 s.
"""
import cv2
import numpy as np
import pytest

from face3d.mesh import _mesh_core
from face3d.mesh.affine import affine_points
from face3d.mesh.float16 import to_float16
from face3d.mesh_numpy.affine import affine_points as affine_points_numpy

CPU_AVX2, CPU_FMA3 = 11, 12  # OpenCV's cv::CPU_AVX2 and cv::CPU_FMA3, which cv2 does not name


def _kernel(points, matrix, mask, max_path, dtype):
    out = np.empty(points.shape, dtype)
    mask = None if mask is None else mask.view(np.uint8)
    assert _mesh_core.affine_points(points, matrix, mask, out.view(np.uint16) if dtype == np.float16 else out,
                                    max_path) == 0
    return out


def _random_case(seed, n=20_001):
    rng = np.random.default_rng(seed)
    points = (rng.normal(0, 1, (n, 3)) * rng.choice([1e-3, 1.0, 300.0, 1e5], (n, 1))).astype(np.float32)
    matrix = rng.normal(0, 2, (3, 4)).astype(np.float32)
    return points, matrix, rng.random(n) > 0.3


def _double_rounding_trap():
    """A point whose fma a naive float64 sum gets wrong: x * m + t = 2**30 + 192 - 2**-40 exactly, which float64
    rounds to 2**30 + 192, halfway between two float32 (ties to even then gives 2**30 + 256; the fma 2**30 + 128)."""
    points = np.array([[1 + 2**-23, 0, 0]], np.float32)
    matrix = np.zeros((3, 4), np.float32)
    matrix[:, 0], matrix[:, 3] = 64 * (1 - 2**-23), 2**30 + 128
    return points, matrix


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("max_path", _mesh_core.AFFINE_PATHS)
def test_every_path_gives_the_twins_bits(max_path, dtype):
    """Each path the processor has (a capped path falls back to the next one it has); float16 results are the
    float32 ones rounded by to_float16. 20,001 points: the float16 blocks of 64 leave a remainder."""
    bits = np.uint16 if dtype == np.float16 else np.uint32
    for seed in range(3):
        points, matrix, mask = _random_case(seed)
        for m in (mask, None):
            got = _kernel(points, matrix, m, max_path, dtype)
            np.testing.assert_array_equal(got.view(bits), affine_points_numpy(points, matrix, m, dtype).view(bits))
            if dtype == np.float16:
                np.testing.assert_array_equal(got.view(bits), to_float16(_kernel(points, matrix, m, max_path,
                                                                                  np.float32)).view(bits))
    points, matrix = _double_rounding_trap()
    assert _kernel(points, matrix, None, max_path, np.float32)[0, 0] == np.float32(2**30 + 128)


def test_the_twin_rounds_each_fma_once():
    points, matrix = _double_rounding_trap()
    assert affine_points_numpy(points, matrix)[0].tolist() == [2**30 + 128] * 3
    assert np.float32(np.float64(points[0, 0]) * matrix[0, 0] + matrix[0, 3]) == np.float32(2**30 + 256)


def test_special_values_and_the_mask():
    points = np.array([[np.inf, 0, 0], [np.nan, 1, 1], [1e38, 1e38, 1e38], [-1, -2, -3], [0, 0, 0]], np.float32)
    matrix = np.array([[1, 0, 0, 0], [0, 1, 0, -5], [10, 10, 10, 0]], np.float32)
    mask = np.array([True, False, True, False, False])
    for module in (affine_points, affine_points_numpy):
        got = module(points, matrix, mask)
        assert got[0, 0] == np.inf and np.isnan(got[0, 1]) and got[0, 2] == np.inf  # inf * 0 is NaN
        assert np.isnan(got[1]).all()  # NaN * 0 stays NaN
        assert got[2, 2] == np.inf
        # masked out: a negative value becomes -0.0, a positive one +0.0, as cv2.multiply by a 0/1 mask gives
        np.testing.assert_array_equal(np.signbit(got[3]), [True, True, True])
        np.testing.assert_array_equal(np.signbit(got[4]), [False, True, False])
        half = module(points, matrix, mask, np.float16)
        assert not np.signbit(half[3:]).any()  # float16 stores -0.0 as +0.0 (to_float16)
        assert half[2, 0] == np.inf  # 1e38 overflows float16


def test_opencv_transform_gives_the_same_bits_but_for_its_last_points():
    """cv2.transform + cv2.multiply, which placed the generator's maps before, on an AVX2 or AVX-512 processor:
    the same bits, except on the last few points, which OpenCV's vector loop leaves to a differently rounded tail."""
    if not (cv2.checkHardwareSupport(CPU_AVX2) and cv2.checkHardwareSupport(CPU_FMA3)):
        pytest.skip("OpenCV uses fma only on processors with AVX2 and FMA")
    points, matrix, mask = _random_case(7, n=4096)
    opencv = cv2.multiply(cv2.transform(points.reshape(-1, 1, 3), matrix).reshape(-1, 3),
                          np.repeat(mask.astype(np.float32)[:, None], 3, axis=1))
    ours = affine_points(points, matrix, mask)
    differing = np.flatnonzero((ours.view(np.uint32) != opencv.view(np.uint32)).any(axis=1))
    assert differing.size == 0 or differing.min() >= points.shape[0] - 4, differing


def test_shapes_and_refusals():
    points, matrix, mask = _random_case(3, n=12)
    grid, grid_mask = points.reshape(2, 6, 3)[:, ::-1], mask.reshape(2, 6)[:, ::-1]
    for module in (affine_points, affine_points_numpy):
        for dtype in (np.float32, np.float16):
            got = module(grid, matrix, grid_mask, dtype)
            assert got.shape == (2, 6, 3) and got.dtype == dtype and got.flags.c_contiguous
            np.testing.assert_array_equal(got, affine_points_numpy(grid.copy(), matrix, grid_mask.copy(), dtype))
        assert module(np.zeros((0, 3), np.float32), matrix).shape == (0, 3)
        with pytest.raises(ValueError, match=r"takes \(\.\.\., 3\) float32 points, got \(12, 3\) float64"):
            module(points.astype(np.float64), matrix)
        with pytest.raises(ValueError, match=r"takes a \(3, 4\) matrix, got shape \(2, 3\)"):
            module(points, matrix[:2, :3])
        with pytest.raises(ValueError, match=r"a bool mask of shape \(12,\), got \(11,\) bool"):
            module(points, matrix, mask[:11])
        with pytest.raises(ValueError, match=r"a bool mask of shape \(12,\), got \(12,\) float32"):
            module(points, matrix, mask.astype(np.float32))
        with pytest.raises(ValueError, match="gives float32 or float16, not float64"):
            module(points, matrix, dtype=np.float64)


def test_the_bridge_refuses_arrays_it_cannot_take_naming_them():
    points, matrix, mask = _random_case(4, n=8)
    mask = mask.view(np.uint8)
    with pytest.raises(ValueError, match="out"):
        _mesh_core.affine_points(points, matrix, mask, np.zeros((7, 3), np.float32))
    with pytest.raises(ValueError, match="out"):
        _mesh_core.affine_points(points, matrix, mask, np.zeros((8, 3), np.float64))
    with pytest.raises(ValueError, match="mask"):
        _mesh_core.affine_points(points, matrix, mask[:7], np.zeros((8, 3), np.float32))
    with pytest.raises(ValueError, match="matrix"):
        _mesh_core.affine_points(points, matrix.astype(np.float64), None, np.zeros((8, 3), np.float32))
    with pytest.raises(ValueError, match="max_path must be one of"):
        _mesh_core.affine_points(points, matrix, None, np.zeros((8, 3), np.float32), "sse")
