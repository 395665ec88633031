"""Numpy twin of face3d.mesh.float16: the same bits."""
import numpy as np

__all__ = ["to_float16"]


def to_float16(array) -> np.ndarray:
    """``array + 0.0`` rounded to the nearest float16, ties to even (face3d.mesh.float16)."""
    values = np.asarray(array)
    if values.dtype != np.float32:
        raise ValueError(f"to_float16 takes float32 values, got {values.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):  # 65520 on become infinity, a NaN stays one, as in the kernel
        return np.asarray(values + np.float32(0.0)).astype(np.float16, order="C")
