"""Reading a position map in image coordinates: dense vertices, their colours and the UV texture (no TensorFlow).

The 68 landmarks are read by ``face3d.trainset.posmap.keypoints_from_map``.
"""
import cv2
import numpy as np

from face3d.prnet.face_crop import as_rgb_uint8

__all__ = ["vertices_from_map", "sample_colors", "texture_from_map"]


def vertices_from_map(pos, face_ind):
    """The dense face vertices of a position map: its pixels at ``face_ind`` (row-major y * R + x).

    Returns:
        (n, 3) float32, in the order of ``face_ind`` (the UV data's ``triangles`` index them).
    """
    pos = np.asarray(pos)
    if pos.ndim != 3 or pos.shape[2] != 3:
        raise ValueError(f"pos must be an (R, R, 3) position map, got {pos.shape}")
    return np.asarray(pos, dtype=np.float32).reshape(-1, 3)[np.asarray(face_ind)]


def sample_colors(image, vertices):
    """Per-vertex colours read from the image at each vertex's rounded (x, y), clipped to the image
    (PRNet's ``get_colors``).

    Args:
        image: (h, w, 3) uint8 RGB (or float in [0, 1]). vertices: (n, >=2) image pixels.
    Returns:
        (n, 3) float32 RGB in [0, 1].
    """
    image = as_rgb_uint8(image)
    h, w = image.shape[:2]
    xy = np.rint(np.asarray(vertices, dtype=np.float64)[:, :2])
    x = np.clip(xy[:, 0], 0, w - 1).astype(np.int64)
    y = np.clip(xy[:, 1], 0, h - 1).astype(np.int64)
    return image[y, x].astype(np.float32) * np.float32(1.0 / 255.0)


def texture_from_map(image, pos):
    """The face's UV texture: the image sampled at each map pixel's (x, y) (bilinear, black outside the image;
    PRNet's ``cv2.remap`` of the position map).

    Args:
        image: (h, w, 3) uint8 RGB. pos: (R, R, 3) position map in image coordinates.
    Returns:
        (R, R, 3) uint8 RGB texture, row 0 = v 1 (the top of the UV layout).
    """
    pos = np.asarray(pos, dtype=np.float32)
    return cv2.remap(as_rgb_uint8(image), np.ascontiguousarray(pos[..., 0]), np.ascontiguousarray(pos[..., 1]),
                     interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
