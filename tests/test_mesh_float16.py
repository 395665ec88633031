"""float32 -> float16 (face3d.mesh.float16): the kernel's two paths, its numpy twin and OpenCV 5, bit for bit.

The edge cases of float16 and a million random bit patterns (every float32 value would take minutes).
Budget: < 2 s.
"""
import cv2
import numpy as np
import pytest

from face3d.mesh import _mesh_core
from face3d.mesh.float16 import to_float16
from face3d.mesh_numpy.float16 import to_float16 as to_float16_numpy


def _edge_values():
    """float32 values at float16's edges: its largest, the ties and roundings around it and infinity, NaNs with
    payloads, the subnormal range and its ties, the smallest normal, ties to even, signed zeros."""
    special = np.array([65504.0, 65519.0, 65520.0, 65535.0, 7e4, np.inf, -65520.0, 2.0**-14, 2.0**-14 * (1 - 2**-11),
                        2.0**-24, 2.0**-25, 2.0**-25 * (1 + 2**-20), 3 * 2.0**-25, 2.0**-26, 1e-8, 6e-8, -2.5e-5,
                        2049.0, 2051.0, 1.00048828125, -1.00048828125, 1.0 + 2**-11 + 2**-20, 0.0, -0.0],
                       dtype=np.float32)
    nans = np.array([0x7FC00000, 0xFFC00000, 0x7FC12345, 0x7F800001, 0xFF812345, 0x7FFFFFFF], np.uint32)
    return np.concatenate([special, -special, nans.view(np.float32)])


def _kernel(values, portable):
    out = np.empty(values.size, np.uint16)
    assert _mesh_core.float32_to_float16(values, out, portable) == 0
    return out


@pytest.mark.parametrize("portable", [False, True], ids=["processor", "portable"])
def test_both_paths_give_the_twins_bits(portable):
    bits = np.random.default_rng(0).integers(0, 2**32, 1_000_003, dtype=np.uint64).astype(np.uint32)
    for values in (_edge_values(), bits.view(np.float32)):  # an odd length: the vector path leaves a remainder
        np.testing.assert_array_equal(_kernel(values, portable), to_float16_numpy(values).view(np.uint16))


def test_the_bits_are_opencv_5s():
    """OpenCV 5's ``cv2.add(x, 0.0, dtype=CV_16F)``, which wrote the generator's maps before, gives the same bits."""
    values = np.concatenate([_edge_values(), np.random.default_rng(1).normal(0, 300, 3 * 4097).astype(np.float32)])
    values = values[:values.size // 3 * 3].reshape(-1, 1, 3)
    try:
        opencv = cv2.add(values, 0.0, dtype=cv2.CV_16F)
    except cv2.error:
        pytest.skip(f"OpenCV {cv2.__version__} does not write float16")
    np.testing.assert_array_equal(to_float16(values).view(np.uint16), opencv.view(np.uint16))


def test_to_float16_keeps_the_shape_and_takes_strided_float32_only():
    values = np.random.default_rng(2).normal(0, 100, (5, 7, 3)).astype(np.float32)
    got = to_float16(values[:, ::-1])
    assert got.dtype == np.float16 and got.shape == (5, 7, 3) and got.flags.c_contiguous
    np.testing.assert_array_equal(got, to_float16_numpy(values[:, ::-1]))
    assert to_float16(np.zeros((0, 3), np.float32)).shape == (0, 3)
    raw = np.zeros(4 * 6 + 1, np.uint8)
    raw[1:] = values[0, :2].reshape(-1).view(np.uint8)
    misaligned = raw[1:].view(np.float32).reshape(2, 3)
    assert not misaligned.flags.aligned
    for module in (to_float16, to_float16_numpy):
        assert module(np.float32(2.5)).shape == ()
        np.testing.assert_array_equal(module(misaligned).view(np.uint16), to_float16_numpy(misaligned.copy()).view(
            np.uint16))
    for module in (to_float16, to_float16_numpy):
        with pytest.raises(ValueError, match="takes float32 values, got float64"):
            module(values.astype(np.float64))


def test_the_bridge_refuses_arrays_it_cannot_take_naming_them():
    values = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match="out"):
        _mesh_core.float32_to_float16(values, np.zeros(7, np.uint16))
    with pytest.raises(ValueError, match="src"):
        _mesh_core.float32_to_float16(values.astype(np.float64), np.zeros(8, np.uint16))
