"""Numpy twin of face3d.mesh.affine: the same bits."""
import numpy as np

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


def affine_points(points, matrix, weights=None) -> np.ndarray:
    """``(matrix @ [p, 1]) * weight`` for every point p, each fma rounded once (face3d.mesh.affine)."""
    values = np.asarray(points)
    if values.dtype != np.float32 or values.ndim < 1 or values.shape[-1] != 3:
        raise ValueError(f"affine_points takes (..., 3) float32 points, got {values.shape} {values.dtype}")
    m = np.asarray(matrix, dtype=np.float32)
    if m.shape != (3, 4):
        raise ValueError(f"affine_points takes a (3, 4) matrix, got shape {m.shape}")
    x, y, z = values[..., 0], values[..., 1], values[..., 2]
    out = np.stack([_fma32(x, m[r, 0], _fma32(y, m[r, 1], _fma32(z, m[r, 2], m[r, 3]))) for r in range(3)], axis=-1)
    if weights is not None:
        w = np.asarray(weights, dtype=np.float32)
        if w.shape != values.shape[:-1]:
            raise ValueError(f"affine_points takes one weight per point, {values.shape[:-1]}, got shape {w.shape}")
        with np.errstate(over="ignore", invalid="ignore"):
            out = out * w[..., None]
    return np.ascontiguousarray(out, dtype=np.float32)
