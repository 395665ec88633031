"""Face crop boxes and the 2D affine maps between image, rotated image and crop.

All affine maps are (2, 3) float64 matrices ``M`` acting on image pixel coordinates (x right, y down, pixel
centres at integers) as ``M @ [x, y, 1]``, the convention of ``cv2.warpAffine``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from face3d.contract import LANDMARK_SCALE

__all__ = ["CropBox", "keypoint_box", "keypoint_boxes", "crop_matrix", "crop_matrices", "rotation_matrix", "compose",
           "apply_affine", "crop_scales", "source_box"]


@dataclass(frozen=True)
class CropBox:
    """A square crop: centre (cx, cy) and side ``size`` in image pixels."""

    cx: float
    cy: float
    size: float


def keypoint_box(keypoints_xy, crop_scale: float = LANDMARK_SCALE, rng: np.random.Generator | None = None,
                 max_shift: float = 0.1, scale_range: tuple[float, float] = (0.9, 1.1)) -> CropBox:
    """PRNet's crop around keypoints, optionally perturbed: ``keypoint_boxes`` of one set of (k, 2) image pixel
    coordinates, as a CropBox."""
    cx, cy, size = keypoint_boxes(np.asarray(keypoints_xy)[None], crop_scale, rng, max_shift, scale_range)[0]
    return CropBox(float(cx), float(cy), float(size))


def keypoint_boxes(keypoints_xy, crop_scale: float = LANDMARK_SCALE, rng: np.random.Generator | None = None,
                   max_shift: float = 0.1, scale_range: tuple[float, float] = (0.9, 1.1)) -> np.ndarray:
    """PRNet's crops around several sets of keypoints, optionally perturbed.

    The box of a set has centre c and mean side ``old = ((right - left) + (bottom - top)) / 2``; its crop is
    centred at c with side ``crop_scale * old``.  With ``rng`` the centre moves by
    ``uniform(-max_shift, max_shift) * old`` in x then y and the side is multiplied by ``uniform(*scale_range)``
    (three draws per set, in that order, set after set: the draws of single calls in turn).  Unlike PRNet the box is
    not rounded to integers.

    Args:
        keypoints_xy: (m, k, 2) image pixel coordinates, m sets.
    Returns:
        (m, 3) float64: each crop's (cx, cy, size), as ``CropBox`` holds them.
    """
    kpt = np.asarray(keypoints_xy, dtype=np.float64)
    low, high = kpt.min(axis=1), kpt.max(axis=1)
    old = ((high[:, 0] - low[:, 0]) + (high[:, 1] - low[:, 1])) / 2.0
    boxes = np.stack([(low[:, 0] + high[:, 0]) / 2.0, (low[:, 1] + high[:, 1]) / 2.0, crop_scale * old], axis=1)
    if rng is not None:
        draws = rng.uniform([-max_shift, -max_shift, scale_range[0]], [max_shift, max_shift, scale_range[1]],
                            size=(len(kpt), 3))
        boxes[:, :2] += draws[:, :2] * old[:, None]
        boxes[:, 2] *= draws[:, 2]
    return boxes


def crop_matrix(box: CropBox, resolution: int) -> np.ndarray:
    """Affine map from image pixels to crop pixels: the box's corners go to 0 and ``resolution - 1``
    (PRNet's ``DST_PTS``), i.e. scale ``k = (resolution - 1) / size`` and ``x' = k * (x - (cx - size / 2))``.

    Returns:
        (2, 3) float64.
    Raises:
        ValueError: a side that is not positive and finite.
    """
    return crop_matrices(np.array([[box.cx, box.cy, box.size]]), resolution)[0]


def crop_matrices(boxes, resolution: int) -> np.ndarray:
    """``crop_matrix`` of each (cx, cy, size) row of ``boxes`` (m, 3) (``keypoint_boxes``); returns (m, 2, 3).
    ValueError for a side that is not positive and finite (keypoints that span no area)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    cx, cy, size = boxes[:, 0], boxes[:, 1], boxes[:, 2]
    if not np.all(np.isfinite(size) & (size > 0)):
        raise ValueError(f"crop sides must be positive and finite, got {size.tolist()}")
    k = (resolution - 1) / size
    out = np.zeros((len(boxes), 2, 3))
    out[:, 0, 0] = out[:, 1, 1] = k
    out[:, 0, 2] = -k * (cx - size / 2.0)
    out[:, 1, 2] = -k * (cy - size / 2.0)
    return out


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
    """``outer`` after ``inner`` for (2, 3) affine maps, or stacks of them (..., 2, 3): ``M p = outer(inner(p))``."""
    outer = np.asarray(outer, dtype=np.float64)
    inner = np.asarray(inner, dtype=np.float64)
    out = np.empty(np.broadcast_shapes(outer.shape, inner.shape))
    out[..., :2] = outer[..., :2] @ inner[..., :2]
    out[..., 2] = (outer[..., :2] @ inner[..., 2:])[..., 0] + outer[..., 2]
    return out


def apply_affine(matrix, points_xy) -> np.ndarray:
    """Apply a (2, 3) affine map to (k, 2) points (or one (2,) point), or a stack of maps (m, 2, 3) to (m, k, 2) or
    (k, 2) points; returns (..., k, 2) float64 ((..., 2) for one point)."""
    m = np.asarray(matrix, dtype=np.float64)
    points = np.asarray(points_xy, dtype=np.float64)
    translation = m[..., 2] if points.ndim == 1 else m[..., None, :, 2]  # one point: (..., 2) as given
    return points @ np.swapaxes(m[..., :2], -1, -2) + translation


def crop_scales(matrices) -> np.ndarray:
    """The scale ``k = sqrt(|det M[:, :2]|)`` of each (2, 3) image-to-crop map of ``matrices`` (m, 2, 3): the factor
    depths take with the crop. One determinant call for all (LAPACK, matrix by matrix, as for one alone)."""
    return np.sqrt(np.abs(np.linalg.det(np.asarray(matrices, dtype=np.float64)[:, :, :2])))


def source_box(matrices, resolution: int, shape, margin: int = 2) -> tuple[int, int, int, int] | None:
    """The image pixels that ``cv2.warpAffine(image, M, (resolution, resolution))`` reads for each ``M`` of
    ``matrices``, within ``margin`` pixels: a bilinear sample at (sx, sy) reads the pixels floor(sx) and
    floor(sx) + 1 (likewise in y), and the crop's samples ``M^-1 (x, y)`` for x, y in [0, resolution - 1] lie in
    the box of the four corners' samples. ``margin`` absorbs the rounding of the sample positions (OpenCV's,
    and this inverse's).

    Args:
        matrices: (2, 3) image-to-crop maps. shape: the image's (h, w).
    Returns:
        (x0, x1, y0, y1): the columns [x0, x1) and rows [y0, y1), clipped to the image; None when no crop reads
        a pixel of it.
    """
    h, w = shape
    m = np.asarray(matrices, dtype=np.float64).reshape(-1, 2, 3)
    a, b, c, d = m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1]
    det = a * d - b * c
    end = resolution - 1.0
    corners = np.array([[0.0, 0.0, end, end], [0.0, end, 0.0, end]])  # (x, y) of the crop's four corner pixels
    u, v = corners[0] - m[:, 0, 2:], corners[1] - m[:, 1, 2:]  # (k, 4) each
    xs, ys = (d[:, None] * u - b[:, None] * v) / det[:, None], (a[:, None] * v - c[:, None] * u) / det[:, None]
    x0, x1 = int(max(np.floor(xs.min()) - margin, 0)), int(min(np.floor(xs.max()) + 2 + margin, w))
    y0, y1 = int(max(np.floor(ys.min()) - margin, 0)), int(min(np.floor(ys.max()) + 2 + margin, h))
    return (x0, x1, y0, y1) if x0 < x1 and y0 < y1 else None
