"""3x4 affine maps of 3D points, with the C++ kernel of face3d.mesh._mesh_core.

Each coordinate is ``fma(x, M[r, 0], fma(y, M[r, 1], fma(z, M[r, 2], M[r, 3])))`` in float32, one rounding per
fma: the arithmetic of OpenCV's ``cv2.transform`` on processors with AVX2 (except its last few points), the same bits
on every processor. face3d.mesh_numpy.affine is the numpy twin.
"""
import numpy as np

from face3d.mesh import _mesh_core

__all__ = ["affine_points"]


def affine_points(points, matrix, weights=None) -> np.ndarray:
    """``(matrix @ [p, 1]) * weight`` for every point p (module docstring for the rounding).

    Args:
        points: (..., 3) float32 points. matrix: (3, 4) affine map (converted to float32).
        weights: None, or one float32 factor per point (shape ``points.shape[:-1]``; 0 and 1 for a mask).
    Returns:
        (..., 3) float32 in C order, the shape of ``points``.
    """
    values = np.asarray(points)
    if values.dtype != np.float32 or values.ndim < 1 or values.shape[-1] != 3:
        raise ValueError(f"affine_points takes (..., 3) float32 points, got {values.shape} {values.dtype}")
    flat = np.require(values, requirements=["C", "A"]).reshape(-1, 3)
    m = np.require(matrix, np.float32, ["C", "A"])
    if m.shape != (3, 4):
        raise ValueError(f"affine_points takes a (3, 4) matrix, got shape {m.shape}")
    w = None
    if weights is not None:
        w = np.require(weights, np.float32, ["C", "A"])
        if w.shape != values.shape[:-1]:
            raise ValueError(f"affine_points takes one weight per point, {values.shape[:-1]}, got shape {w.shape}")
        w = w.reshape(-1)
    out = np.empty(flat.shape, dtype=np.float32)
    status = _mesh_core.affine_points(flat, m, w, out)
    if status != 0:
        raise RuntimeError(f"affine_points kernel failed with status {status}")
    return out.reshape(values.shape)
