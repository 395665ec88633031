"""Numpy twin of face3d.mesh.affine: the same bits."""
import numpy as np

from face3d.mesh import _checks
from face3d.mesh_numpy.float16 import to_float16

__all__ = ["affine_points"]


def _fma32(a, b, c) -> np.ndarray:
    """float32 ``a * b + c`` rounded once. ``a * b`` is exact in float64; the sum's float64 rounding is made
    round-to-odd (an inexact result gets the odd neighbour), after which rounding to float32 is the single rounding
    of the exact value (float64 keeps more than 24 + 1 bits)."""
    c64 = np.asarray(c, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # inf * 0 and inf - inf give NaN, as the fma does; NaN has no error term
        product = a.astype(np.float64) * b
        total = product + c64
        error = (product - (total - c64)) + (c64 - (total - (total - c64)))  # TwoSum: total + error is exact
    bits = total.view(np.int64)
    inexact = (error != 0) & np.isfinite(total) & ((bits & 1) == 0)
    odd = np.where(inexact, np.nextafter(total, np.where(error > 0, np.inf, -np.inf)), total)
    with np.errstate(over="ignore"):
        return odd.astype(np.float32)


def affine_points(points, matrix, mask=None, dtype=np.float32) -> np.ndarray:
    """``matrix @ [p, 1]`` for every point p, each fma rounded once, times the mask as 1.0 / 0.0
    (face3d.mesh.affine)."""
    values, m, mask, dtype = _checks.affine_arguments(points, matrix, mask, dtype)
    x, y, z = values[..., 0], values[..., 1], values[..., 2]
    out = np.stack([_fma32(x, m[r, 0], _fma32(y, m[r, 1], _fma32(z, m[r, 2], m[r, 3]))) for r in range(3)], axis=-1)
    if mask is not None:
        with np.errstate(invalid="ignore"):
            out = out * mask[..., None].astype(np.float32)
    out = np.ascontiguousarray(out, dtype=np.float32)
    return to_float16(out) if dtype == np.float16 else out
