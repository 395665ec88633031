"""3D face reconstruction error: dense vertices after rigid ICP alignment (PRNet, ECCV 2018, "3D Face Reconstruction").

The predicted points are aligned to the ground truth by a rigid motion, rotation and translation without scale
(``icp_align``), so pose errors are removed and shape errors remain. The error is the symmetric mean nearest-point
(Chamfer) distance divided by a normaliser, PRNet's outer interocular distance in 3D (``reconstruction_nme``).
Pure numpy and scipy.
"""
import numpy as np
from scipy.spatial import cKDTree

__all__ = ["rigid_motion", "icp_align", "chamfer_distance", "reconstruction_nme", "outer_interocular_distance",
           "OUTER_EYE_CORNERS"]

# 0-based iBUG 68 indices of the outer eye corners (the subject's right eye's, then the left eye's).
OUTER_EYE_CORNERS = (36, 45)


def outer_interocular_distance(landmarks):
    """3D distance between the outer eye corners of 68 iBUG landmarks: ``|g_36 - g_45|`` (0-based).

    Args:
        landmarks: (N, 68, 3) or (68, 3).
    Returns:
        (N,) float64 (a scalar for one face).
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape[-2:] != (68, 3):
        raise ValueError(f"landmarks must be (N, 68, 3) or (68, 3), got {landmarks.shape}")
    right, left = OUTER_EYE_CORNERS
    return np.linalg.norm(landmarks[..., right, :] - landmarks[..., left, :], axis=-1)


def rigid_motion(source, target):
    """Least-squares rotation and translation taking ``source`` onto ``target`` (Kabsch / Umeyama, no scale).

    ``R, t = argmin sum_i |R s_i + t - t_i|^2``: with centred points, ``H = S_c^T T_c = U S V^T``,
    ``R = V diag(1, 1, det(V U^T)) U^T`` (a proper rotation), ``t = mean(T) - R mean(S)``.

    Args:
        source, target: (n, 3) corresponding points, n >= 3.
    Returns:
        R (3, 3) float64, t (3,) float64.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 3 or len(source) < 3:
        raise ValueError(f"source and target must both be (n, 3) with n >= 3, got {source.shape} and {target.shape}")
    ms, mt = source.mean(axis=0), target.mean(axis=0)
    U, _, Vt = np.linalg.svd((source - ms).T @ (target - mt))
    d = np.sign(np.linalg.det(Vt.T @ U.T))
    R = Vt.T @ np.diag([1.0, 1.0, d]) @ U.T
    return R, mt - R @ ms


def icp_align(pred, gt, max_iter=30, tol=1e-9):
    """Rigidly align ``pred`` to ``gt``: Kabsch on the correspondences, then point-to-point ICP.

    Each ICP step matches every aligned point to its nearest ground-truth point (a k-d tree) and solves the
    least-squares motion of those pairs (``rigid_motion``), until the mean distance stops decreasing.

    Args:
        pred: (n, 3) predicted points. gt: (m, 3) ground-truth points; when m == n, row i of both is taken as a
            correspondence for the initial motion (the UV-pixel pairing of position maps), else the centroids.
        max_iter: ICP iterations at most. tol: stop when the mean nearest distance improves by less than
            ``tol`` times its value.
    Returns:
        (aligned (n, 3) float64, distances (n,) float64 from each aligned point to its nearest ground-truth point).
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.ndim != 2 or gt.ndim != 2 or pred.shape[1] != 3 or gt.shape[1] != 3 or min(len(pred), len(gt)) < 3:
        raise ValueError(f"pred and gt must be (n, 3) point sets of at least 3 points, got {pred.shape} and "
                         f"{gt.shape}")
    if len(pred) == len(gt):
        R, t = rigid_motion(pred, gt)
    else:
        R, t = np.eye(3), gt.mean(axis=0) - pred.mean(axis=0)
    aligned = pred @ R.T + t
    tree = cKDTree(gt)
    distances, nearest = tree.query(aligned)
    for _ in range(int(max_iter)):
        R, t = rigid_motion(aligned, gt[nearest])
        moved = aligned @ R.T + t
        new_distances, new_nearest = tree.query(moved)
        if not new_distances.mean() < distances.mean() * (1.0 - tol):
            break
        aligned, distances, nearest = moved, new_distances, new_nearest
    return aligned, distances


def chamfer_distance(points, other, forward=None):
    """Symmetric mean nearest-point distance: ``(mean_i min_j |a_i - b_j| + mean_j min_i |a_i - b_j|) / 2``.

    Args:
        points: (n, 3) points a. other: (m, 3) points b (same units).
        forward: (n,) ``min_j |a_i - b_j|`` when known already (``icp_align`` returns them for its aligned points),
            else queried here.
    Returns:
        float, in the points' units.
    """
    points, other = np.asarray(points, dtype=np.float64), np.asarray(other, dtype=np.float64)
    if forward is None:
        forward = cKDTree(other).query(points)[0]
    backward = cKDTree(points).query(other)[0]
    return float((forward.mean() + backward.mean()) / 2.0)


def reconstruction_nme(pred, gt, normalizer):
    """Per-sample reconstruction NME: ``chamfer_distance(icp(P), G) / normalizer``.

    ``icp(P)`` is ``icp_align(P, G)``'s aligned prediction; the error is the mean, over the aligned predicted points,
    of the distance to the nearest ground-truth point plus the mean, over the ground-truth points, of the distance
    to the nearest aligned predicted point, halved. Both directions: the first alone scores a face collapsed to a
    point, or shrunk, near 0, and PRNet's paper leaves the direction open. A rigidly moved copy of G scores 0.

    Args:
        pred: (N, n, 3) predicted dense vertices. gt: (N, m, 3) ground truth (same units).
        normalizer: (N,) per-sample normalisers (``outer_interocular_distance`` of the ground-truth landmarks).
    Returns:
        (N,) float64; NaN for a sample whose points are not all finite (no motion fits them, ICP is not run).
    """
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    normalizer = np.asarray(normalizer, dtype=np.float64).reshape(-1)
    if pred.ndim != 3 or gt.ndim != 3 or len(pred) != len(gt) or len(normalizer) != len(pred):
        raise ValueError(f"pred (N, n, 3), gt (N, m, 3) and normalizer (N,) must match, got {pred.shape}, "
                         f"{gt.shape}, {normalizer.shape}")
    finite = np.isfinite(pred).all(axis=(1, 2)) & np.isfinite(gt).all(axis=(1, 2))
    errors = np.full(len(pred), np.nan)
    for i in np.flatnonzero(finite):
        aligned, distances = icp_align(pred[i], gt[i])  # the aligned points' nearest distances: Chamfer's forward
        errors[i] = chamfer_distance(aligned, gt[i], forward=distances)
    return errors / normalizer
