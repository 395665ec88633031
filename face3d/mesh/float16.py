"""float32 to float16, rounded to nearest even, with the C++ kernel of face3d.mesh._mesh_core.

The one conversion of float32 maps to the float16 files the generator writes: faster than OpenCV's and numpy's
(the README gives the figures), and the same bits on every processor (F16C where it has it, else plain C++ that
rounds as F16C does). face3d.mesh_numpy.float16 is the numpy twin.
"""
import numpy as np

from face3d.mesh import _mesh_core

__all__ = ["to_float16"]


def to_float16(array) -> np.ndarray:
    """``array + 0.0`` (so -0.0 becomes +0.0) rounded to the nearest float16, ties to even: past 65504 it becomes
    infinity (from 65520 on), below 2**-14 a subnormal, a NaN stays a NaN (quiet, its payload's top bits kept).

    Args:
        array: float32 values, any shape.
    Returns:
        float16 array of the same shape, C order.
    """
    values = np.asarray(array)
    if values.dtype != np.float32:
        raise ValueError(f"to_float16 takes float32 values, got {values.dtype}")
    values = np.require(values, requirements=["C", "A"])  # the kernel reads aligned values in C order
    out = np.empty(values.shape, dtype=np.float16)
    status = _mesh_core.float32_to_float16(values.reshape(-1), out.reshape(-1).view(np.uint16))
    if status != 0:
        raise RuntimeError(f"float32_to_float16 kernel failed with status {status}")
    return out
