"""Face crop boxes and the 2D affine maps between image, rotated image and crop.

All affine maps are (2, 3) float64 matrices ``M`` acting on image pixel coordinates (x right, y down, pixel
centres at integers) as ``M @ [x, y, 1]``, the convention of ``cv2.warpAffine``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from face3d.contract import LANDMARK_SCALE

__all__ = ["CropBox", "keypoint_box", "crop_matrix", "rotation_matrix", "compose", "apply_affine"]


@dataclass(frozen=True)
class CropBox:
    """A square crop: centre (cx, cy) and side ``size`` in image pixels."""

    cx: float
    cy: float
    size: float


def keypoint_box(keypoints_xy, crop_scale: float = LANDMARK_SCALE, rng: np.random.Generator | None = None,
                 max_shift: float = 0.1, scale_range: tuple[float, float] = (0.9, 1.1)) -> CropBox:
    """PRNet's crop around keypoints, optionally perturbed.

    The box of the keypoints has centre c and mean side ``old = ((right - left) + (bottom - top)) / 2``;
    the crop is centred at c with side ``crop_scale * old``.  With ``rng`` the centre moves by
    ``uniform(-max_shift, max_shift) * old`` in x then y and the side is multiplied by ``uniform(*scale_range)``
    (three draws, in that order).  Unlike PRNet the box is not rounded to integers.

    Args:
        keypoints_xy: (k, 2) image pixel coordinates.
    Returns:
        CropBox.
    """
    kpt = np.asarray(keypoints_xy, dtype=np.float64)
    left, top = kpt.min(axis=0)
    right, bottom = kpt.max(axis=0)
    old = ((right - left) + (bottom - top)) / 2.0
    cx, cy = (left + right) / 2.0, (top + bottom) / 2.0
    size = crop_scale * old
    if rng is not None:
        cx += rng.uniform(-max_shift, max_shift) * old
        cy += rng.uniform(-max_shift, max_shift) * old
        size *= rng.uniform(scale_range[0], scale_range[1])
    return CropBox(float(cx), float(cy), float(size))


def crop_matrix(box: CropBox, resolution: int) -> np.ndarray:
    """Affine map from image pixels to crop pixels: the box's corners go to 0 and ``resolution - 1``
    (PRNet's ``DST_PTS``), i.e. scale ``k = (resolution - 1) / size`` and ``x' = k * (x - (cx - size / 2))``.

    Returns:
        (2, 3) float64.
    """
    k = (resolution - 1) / box.size
    return np.array([[k, 0.0, -k * (box.cx - box.size / 2.0)],
                     [0.0, k, -k * (box.cy - box.size / 2.0)]])


def rotation_matrix(centre, angle_deg: float) -> np.ndarray:
    """In-plane rotation of image pixels about ``centre`` by ``angle_deg`` degrees, counter-clockwise as seen on
    screen (the sense of ``cv2.getRotationMatrix2D``): ``p' = c + [[cos, sin], [-sin, cos]] (p - c)``.

    Returns:
        (2, 3) float64.
    """
    a = np.deg2rad(angle_deg)
    cos, sin = np.cos(a), np.sin(a)
    cx, cy = float(centre[0]), float(centre[1])
    return np.array([[cos, sin, (1.0 - cos) * cx - sin * cy],
                     [-sin, cos, sin * cx + (1.0 - cos) * cy]])


def compose(outer, inner) -> np.ndarray:
    """``outer`` after ``inner`` for (2, 3) affine maps: returns (2, 3) ``M`` with ``M p = outer(inner(p))``."""
    outer = np.asarray(outer, dtype=np.float64)
    inner = np.asarray(inner, dtype=np.float64)
    return np.hstack([outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]])


def apply_affine(matrix, points_xy) -> np.ndarray:
    """Apply a (2, 3) affine map to (k, 2) points; returns (k, 2) float64."""
    m = np.asarray(matrix, dtype=np.float64)
    return np.asarray(points_xy, dtype=np.float64) @ m[:, :2].T + m[:, 2]
