"""Face crop boxes and the 2D affine maps between image, rotated image and crop.

All affine maps are (2, 3) float64 matrices ``M`` acting on image pixel coordinates (x right, y down, pixel
centres at integers) as ``M @ [x, y, 1]``, the convention of ``cv2.warpAffine``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from face3d.contract import LANDMARK_SCALE

__all__ = ["CropBox", "keypoint_box", "crop_matrix", "rotation_matrix", "compose", "apply_affine", "source_box"]


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


def source_box(matrices, resolution: int, shape, margin: int = 2) -> tuple[int, int, int, int] | None:
    """The image pixels that ``cv2.warpAffine(image, M, (resolution, resolution))`` reads for each ``M`` of
    ``matrices``, within ``margin`` pixels: a bilinear sample at (sx, sy) reads the pixels floor(sx) and
    floor(sx) + 1 (likewise in y), and the crop's samples ``M^-1 (x, y)`` for x, y in [0, resolution - 1] lie in
    the box of the four corners' samples. ``margin`` absorbs OpenCV's rounding of the sample positions (1/32 pixel).

    Args:
        matrices: (2, 3) image-to-crop maps. shape: the image's (h, w).
    Returns:
        (x0, x1, y0, y1): the columns [x0, x1) and rows [y0, y1), clipped to the image; None when no crop reads
        a pixel of it.
    """
    h, w = shape
    end = resolution - 1.0
    corners = np.array([[0.0, 0.0, end, end], [0.0, end, 0.0, end], [1.0, 1.0, 1.0, 1.0]])
    samples = np.hstack([np.linalg.inv(np.vstack([m, [0.0, 0.0, 1.0]]))[:2] @ corners for m in matrices])
    low, high = np.floor(samples.min(axis=1)) - margin, np.floor(samples.max(axis=1)) + 2 + margin
    x0, y0 = (int(max(v, 0)) for v in low)
    x1, y1 = int(min(high[0], w)), int(min(high[1], h))
    return (x0, x1, y0, y1) if x0 < x1 and y0 < y1 else None
