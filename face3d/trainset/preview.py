"""Preview image of a training pair: the crop with map points and keypoints drawn on it, next to the map."""
from __future__ import annotations

import cv2
import numpy as np

from face3d.trainset.posmap import keypoints_from_map

__all__ = ["draw_preview", "keypoints_drawn", "NON_FINITE_COLOUR"]

NON_FINITE_COLOUR = (255, 0, 255)  # magenta (RGB): map pixels with a NaN or inf, in the map half
_OUTLINE_RADIUS = 3  # a keypoint's red circle; its green centre has radius 1


def draw_preview(image, posmap, uv_kpt_ind, step: int = 6) -> np.ndarray:
    """Preview of a training pair: the crop with a sparse grid of map points (cyan) and the 68 keypoints read
    from the map (green, red outline), next to the map's x, y, z as an RGB image (x, y, z * 255 / (r - 1),
    clipped to 0..255).

    A broken map is drawn as far as it goes: a map pixel whose x, y or z is NaN or inf is left out of the grid
    and the keypoints, and painted ``NON_FINITE_COLOUR`` in the map half; a keypoint whose circle would lie
    wholly outside the crop is left out (``keypoints_drawn`` counts the others).

    Args:
        image: (r, r, 3) uint8 RGB crop. posmap: (r, r, 3) crop-space map. uv_kpt_ind: (2, 68) UV pixels.
        step: UV pixel spacing of the drawn map points.
    Returns:
        (r, 2r, 3) uint8 RGB.
    """
    r = image.shape[0]
    posmap = np.asarray(posmap)
    finite = np.isfinite(posmap).all(axis=-1)  # (r, r)
    left = np.ascontiguousarray(image, dtype=np.uint8).copy()
    grid = posmap[::step, ::step][finite[::step, ::step]]
    grid = np.round(grid[np.any(grid != 0, axis=1), :2])
    grid = grid[np.all((grid >= 0) & (grid < r), axis=1)].astype(np.int64)  # bounds first: no huge value cast
    left[grid[:, 1], grid[:, 0]] = (0, 255, 255)
    centres = keypoints_drawn(posmap, uv_kpt_ind, r)
    # outlines first, so that no outline covers the centre of a neighbouring keypoint
    for centre in centres:
        cv2.circle(left, centre, _OUTLINE_RADIUS, (255, 0, 0), 1, lineType=cv2.LINE_8)
    for centre in centres:
        cv2.circle(left, centre, 1, (0, 255, 0), -1, lineType=cv2.LINE_8)
    values = np.where(finite[..., None], posmap, 0).astype(np.float32)
    right = np.clip(values * (255.0 / max(r - 1, 1)), 0, 255).astype(np.uint8)
    right[~finite] = NON_FINITE_COLOUR
    return np.hstack([left, right])


def keypoints_drawn(posmap, uv_kpt_ind, r: int) -> list[tuple[int, int]]:
    """The crop pixels (x, y) of the keypoints ``draw_preview`` draws: those read from the map
    (``keypoints_from_map``) with finite x, y, z whose rounded centre lies within the outline radius of the
    r x r crop (a circle further out draws nothing)."""
    keypoints = keypoints_from_map(posmap, uv_kpt_ind)  # (K, 3) float64
    centres = np.round(keypoints[:, :2])
    inside = (centres >= -_OUTLINE_RADIUS) & (centres < r + _OUTLINE_RADIUS)
    kept = np.isfinite(keypoints).all(axis=1) & inside.all(axis=1)
    return [(int(x), int(y)) for x, y in centres[kept]]
