"""Preview image of a training pair: the crop with map points and keypoints drawn on it, next to the map."""
from __future__ import annotations

import cv2
import numpy as np

from face3d.trainset.posmap import keypoints_from_map

__all__ = ["draw_preview"]


def draw_preview(image, posmap, uv_kpt_ind, step: int = 6) -> np.ndarray:
    """Preview of a training pair: the crop with a sparse grid of map points (cyan) and the 68 keypoints read
    from the map (green, red outline), next to the map's x, y, z as an RGB image.

    Args:
        image: (r, r, 3) uint8 RGB crop. posmap: (r, r, 3) crop-space map. uv_kpt_ind: (2, 68) UV pixels.
        step: UV pixel spacing of the drawn map points.
    Returns:
        (r, 2r, 3) uint8 RGB.
    """
    r = image.shape[0]
    left = np.ascontiguousarray(image, dtype=np.uint8).copy()
    grid = posmap[::step, ::step].reshape(-1, 3)
    grid = grid[np.any(grid != 0, axis=1)]
    xy = np.round(grid[:, :2]).astype(np.int64)
    ok = (xy[:, 0] >= 0) & (xy[:, 0] < r) & (xy[:, 1] >= 0) & (xy[:, 1] < r)
    left[xy[ok, 1], xy[ok, 0]] = (0, 255, 255)
    centres = [(int(round(float(x))), int(round(float(y)))) for x, y, _ in keypoints_from_map(posmap, uv_kpt_ind)]
    # outlines first, so that no outline covers the centre of a neighbouring keypoint
    for centre in centres:
        cv2.circle(left, centre, 3, (255, 0, 0), 1, lineType=cv2.LINE_8)
    for centre in centres:
        cv2.circle(left, centre, 1, (0, 255, 0), -1, lineType=cv2.LINE_8)
    right = np.clip(np.asarray(posmap, dtype=np.float32) * (255.0 / max(r - 1, 1)), 0, 255).astype(np.uint8)
    return np.hstack([left, right])
