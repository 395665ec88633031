"""Cameras of the landmark fit: the Gold Standard affine camera, its nearest scaled rotation, rotation updates,
and the conversions between a fitted pose and 300W-LP's ``Pose_Para``.

Frames: the fit works in face3d's projected frame (x right, y up, pixels); ``flip_y`` maps image rows to it.
"""
import numpy as np

from face3d.mesh.transform import angle2matrix_3ddfa, matrix2angle, matrix2angle_3ddfa

__all__ = ["affine_camera_batch", "scaled_rotation_from_affine", "rodrigues", "orthonormalise", "flip_y",
           "pose_para_from_fit", "fit_from_pose_para"]


def affine_camera_batch(X, x):
    """Affine cameras of N faces by the Gold Standard algorithm, vectorised.

    Hartley & Zisserman Algorithm 7.2 solves ``x = A X + t`` by linear least squares after an
    isotropic normalisation of both point sets; that normalisation is a change of units that
    leaves the least-squares solution unchanged, so the centred closed form is used directly:
    ``A = xc^T Xc (Xc^T Xc)^-1``, ``t = mean(x) - A mean(X)``.  Equals
    ``face3d.mesh.transform.estimate_affine_matrix_3d22d`` face by face.

    Args:
        X: (N, n, 3) model points, n >= 4 and not coplanar. x: (N, n, 2) image points.
    Returns:
        A: (N, 2, 3) float64; t: (N, 2) float64.
    """
    X = np.asarray(X, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    Xm = X.mean(axis=1, keepdims=True)
    xm = x.mean(axis=1, keepdims=True)
    Xc = X - Xm
    xc = x - xm
    XtX = np.einsum("bnc,bnd->bcd", Xc, Xc)
    xtX = np.einsum("bna,bnd->bad", xc, Xc)
    # A = xtX XtX^-1  <=>  XtX A^T = xtX^T (XtX symmetric)
    A = np.swapaxes(np.linalg.solve(XtX, np.swapaxes(xtX, 1, 2)), 1, 2)
    t = xm[:, 0] - np.einsum("bac,bc->ba", A, Xm[:, 0])
    return A, t


def scaled_rotation_from_affine(A):
    """Nearest scaled rotation to the 2x3 part of affine cameras.

    ``A = U S V^T`` (thin SVD); the rows of ``U V^T`` are the orthonormal pair nearest to A in
    Frobenius norm, the third row is their cross product (a proper rotation), and
    ``s = mean(S)``.

    Args:
        A: (N, 2, 3).
    Returns:
        s: (N,) float64; R: (N, 3, 3) float64 rotations.
    """
    U, S, Vt = np.linalg.svd(np.asarray(A, dtype=np.float64), full_matrices=False)
    R2 = U @ Vt
    R = np.concatenate([R2, np.cross(R2[:, 0], R2[:, 1])[:, None]], axis=1)
    return S.mean(axis=1), R


def rodrigues(w):
    """(N, 3) rotation vectors -> (N, 3, 3) rotation matrices (Rodrigues' formula)."""
    theta = np.linalg.norm(w, axis=1)
    safe = np.where(theta > 1e-12, theta, 1.0)
    k = w / safe[:, None]
    Kx = np.zeros((len(w), 3, 3))
    Kx[:, 0, 1], Kx[:, 0, 2] = -k[:, 2], k[:, 1]
    Kx[:, 1, 0], Kx[:, 1, 2] = k[:, 2], -k[:, 0]
    Kx[:, 2, 0], Kx[:, 2, 1] = -k[:, 1], k[:, 0]
    sin = np.where(theta > 1e-12, np.sin(theta), 0.0)[:, None, None]
    cos1 = np.where(theta > 1e-12, 1.0 - np.cos(theta), 0.0)[:, None, None]
    return np.eye(3) + sin * Kx + cos1 * (Kx @ Kx)


def orthonormalise(R):
    """Nearest proper rotations (SVD) to remove drift from repeated updates; (N,3,3) -> (N,3,3)."""
    U, _, Vt = np.linalg.svd(R)
    d = np.sign(np.linalg.det(U @ Vt))
    U[:, :, 2] *= d[:, None]
    return U @ Vt


def flip_y(points, h):
    """Flip image rows: ``y -> h - 1 - y`` (image coordinates, y down <-> projected frame, y up).

    This is the 300W-LP convention: ``pt2d`` rows are ``h - 1 - projected_y``.  The map is its own
    inverse.

    Args:
        points: (..., 2) or (..., 3) float array (x, y[, z]). h: image height in pixels.
    Returns:
        float64 copy with the y column flipped.
    """
    p = np.array(points, dtype=np.float64)
    if p.ndim < 1 or p.shape[-1] not in (2, 3):
        raise ValueError(f"points must have shape (..., 2) or (..., 3), got {p.shape}")
    p[..., 1] = float(h) - 1.0 - p[..., 1]
    return p


def pose_para_from_fit(s, R, t, tz=0.0):
    """300W-LP ``Pose_Para`` rows from fitted poses.

    A fit in the projected frame (y up; ``x = s R2 X + t``) of landmarks given as
    ``flip_y(pt2d, h)`` is exactly a 300W-LP placement: ``projected = s X R^T + t3d`` and image row
    ``h - 1 - projected_y``.  The angles are 3DDFA's (``matrix2angle_3ddfa``).

    Args:
        s: (N,) or scalar scale. R: (N, 3, 3) or (3, 3) rotations. t: (N, 2|3) or (2|3,)
            translation (pixels). tz: depth translation to store (not observable from 2D).
    Returns:
        (N, 7) float64 [pitch, yaw, roll (radians), tx, ty, tz, scale] (N = 1 for unbatched input;
        N = 0 for no faces).
    """
    s = np.atleast_1d(np.asarray(s, dtype=np.float64))
    R = np.asarray(R, dtype=np.float64).reshape(-1, 3, 3)
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    t = t.reshape(len(R), t.shape[-1])
    if len(s) != len(R) or t.shape[1] not in (2, 3):
        raise ValueError(f"s, R, t must describe the same number of faces with t of 2 or 3 "
                         f"values, got s {s.shape}, R {R.shape}, t {t.shape}")
    out = np.empty((len(R), 7))
    out[:, 0:3] = np.reshape([matrix2angle_3ddfa(r) for r in R], (len(R), 3))
    out[:, 3:5] = t[:, :2]
    out[:, 5] = tz
    out[:, 6] = s
    return out


def fit_from_pose_para(pose_para):
    """Inverse of :func:`pose_para_from_fit`: ``Pose_Para`` -> face3d pose.

    Args:
        pose_para: (7,) or (1, 7) 300W-LP row [pitch, yaw, roll (rad), tx, ty, tz, scale].
    Returns:
        s (float), angles (3,) float64 face3d degrees [pitch, yaw, roll] such that
        ``angle2matrix(angles) == angle2matrix_3ddfa(pose_para[:3])``,
        t (3,) float64 = [tx, ty, tz].
    """
    p = np.asarray(pose_para, dtype=np.float64).reshape(-1)
    if p.shape != (7,):
        raise ValueError(f"pose_para must hold 7 values (pitch, yaw, roll, tx, ty, tz, scale), "
                         f"got shape {np.shape(pose_para)}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"pose_para must be finite, got {p.tolist()}")
    R = angle2matrix_3ddfa(p[:3])
    return float(p[6]), np.array(matrix2angle(R)), p[3:6].copy()
