"""Landmark error of predicted position maps: pure numpy (no TensorFlow), shared by training and evaluation.

The 68 iBUG keypoints are read from a position map at PRNet's ``uv_kpt_ind`` (row 0 = x, row 1 = y, read as
``map[y, x]``; ``face3d.trainset.posmap.keypoints_from_map``). ``nme`` is PRNet's AFLW2000-3D normalised mean error,
``mean_k ||p_k - g_k|| / sqrt(w * h)``.
"""
import numpy as np

from face3d.trainset.posmap import keypoints_from_map

__all__ = ["bbox_size", "nme", "weighted_mse", "ced"]


def bbox_size(keypoints):
    """sqrt(w * h) of the x, y bounding box of keypoints (K, >=2) or (N, K, >=2); returns a float64 scalar or (N,)."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    extent = keypoints[..., :2].max(axis=-2) - keypoints[..., :2].min(axis=-2)
    return np.sqrt(extent[..., 0] * extent[..., 1])


def nme(pred_map, gt_map, uv_kpt_ind, dims=2):
    """Normalised mean error of the keypoints read from predicted vs ground-truth maps.

    ``NME = mean_k ||p_k - g_k|| / sqrt(w * h)`` with p_k, g_k the predicted and ground-truth keypoints (x, y, or
    x, y, z with ``dims=3``) and w, h the width and height of the ground-truth keypoints' x, y box (``bbox_size``).

    Args:
        pred_map, gt_map: (H, W, 3) or (N, H, W, 3) position maps in the same pixel units.
        uv_kpt_ind: (2, K) keypoint UV indices (row 0 x, row 1 y).
        dims: 2 (x, y; PRNet's 2D protocol) or 3 (x, y, z).
    Returns:
        float64 scalar for single maps, (N,) for batches. A degenerate ground-truth box (zero area) gives inf.
    """
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims}")
    pred_map, gt_map = np.asarray(pred_map), np.asarray(gt_map)
    if pred_map.shape != gt_map.shape:
        raise ValueError(f"pred_map and gt_map shapes differ: {pred_map.shape} vs {gt_map.shape}")
    pred = keypoints_from_map(pred_map, uv_kpt_ind)
    gt = keypoints_from_map(gt_map, uv_kpt_ind)
    distances = np.linalg.norm(pred[..., :dims] - gt[..., :dims], axis=-1)
    # summed in keypoint order, as numpy's mean sums a batch of two or more maps (the indexing leaves their keypoints
    # keypoint-major); it sums a lone map's pairwise, which would make a map's NME depend on its batch in the last bits
    dist = distances.cumsum(axis=-1)[..., -1] / distances.shape[-1]
    with np.errstate(divide="ignore"):
        return dist / bbox_size(gt)


def weighted_mse(pred, target, weight):
    """PRNet's training loss in numpy: mean over pixels of weight * mean over channels of (pred - target)^2.

    Args:
        pred, target: (N, H, W, C) arrays in the same (normalised) units.
        weight: (H, W) or (N, H, W) per-pixel weights.
    Returns:
        float64 scalar.
    """
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(f"pred and target must both be (N, H, W, C), got {pred.shape} and {target.shape}")
    weight = np.broadcast_to(np.asarray(weight, dtype=np.float64), pred.shape[:3])
    return float(np.mean(weight * np.mean((pred - target) ** 2, axis=-1)))


def ced(errors, thresholds):
    """Cumulative error distribution: the fraction of errors <= each threshold (a NaN error is never counted, as
    an infinite one: it is a failure).

    Returns:
        (T,) float64.
    """
    errors = np.sort(np.asarray(errors, dtype=np.float64))
    return np.searchsorted(errors, np.asarray(thresholds, dtype=np.float64), side="right") / max(errors.size, 1)
