"""3x4 affine maps of 3D points, with the C++ kernel of face3d.mesh._mesh_core.

Each coordinate is ``fma(x, M[r, 0], fma(y, M[r, 1], fma(z, M[r, 2], M[r, 3])))`` in float32, one rounding per
fma: the arithmetic of OpenCV's ``cv2.transform`` on processors with AVX2 (except its last few points), the same bits
on every processor. A float16 result is that float32 value rounded by ``face3d.mesh.float16.to_float16``, in the
same pass (the generator's maps: one read of the points, one write of half the bytes).
face3d.mesh_numpy.affine is the numpy twin.
"""
import numpy as np

from face3d.mesh import _checks, _mesh_core

__all__ = ["affine_points"]


def affine_points(points, matrix, mask=None, dtype=np.float32) -> np.ndarray:
    """``matrix @ [p, 1]`` for every point p (module docstring for the rounding), times 1.0 where ``mask`` holds and
    0.0 where it does not (so 0, with the value's sign; NaN stays NaN).

    Args:
        points: (..., 3) float32 points. matrix: (3, 4) affine map (converted to float32).
        mask: None, or bool of shape ``points.shape[:-1]``.
        dtype: float32 or float16, the result's.
    Returns:
        (..., 3) array of ``dtype`` in C order, the shape of ``points``.
    """
    values, m, mask, dtype = _checks.affine_arguments(points, matrix, mask, dtype)
    flat = np.require(values, requirements=["C", "A"]).reshape(-1, 3)
    if mask is not None:
        mask = np.require(mask, requirements=["C", "A"]).reshape(-1).view(np.uint8)
    out = np.empty(flat.shape, dtype=dtype)
    status = _mesh_core.affine_points(flat, np.require(m, requirements=["C", "A"]), mask,
                                      out if dtype == np.float32 else out.view(np.uint16))
    if status != 0:
        raise RuntimeError(f"affine_points kernel failed with status {status}")
    return out.reshape(values.shape)
