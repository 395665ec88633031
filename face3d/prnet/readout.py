"""Reading a position map in image coordinates: dense vertices, their colours and the UV texture (no TensorFlow).

The 68 landmarks are read by ``face3d.trainset.posmap.keypoints_from_map``.
"""
import cv2
import numpy as np

from face3d.mesh import _checks
from face3d.prnet.face_crop import as_rgb_uint8

__all__ = ["REMAP_MAX_SIDE", "RemapLimitError", "map_at_resolution", "vertices_from_map", "sample_colors",
           "texture_from_map"]

REMAP_MAX_SIDE = 32766  # cv2.remap asserts each side of its source and output < SHRT_MAX (32767)
# pixels kept around the map's x, y bounding box: remap rounds x to 1/32 pixel (x just below an integer becomes
# it) and reads that pixel and the next, so from floor(x) to floor(x) + 2
REMAP_MARGIN = 2


def map_at_resolution(pos, resolution):
    """``pos`` as an array, checked to be an (R, R, 3) position map at R = ``resolution`` (the uv-data's): the UV
    indices that read a map (``face_ind``, ``uv_kpt_ind``) point at the pixels of that size only.

    Raises:
        ValueError: naming R and the map's shape, for any other shape.
    """
    pos = np.asarray(pos)
    if pos.shape != (resolution, resolution, 3):
        raise ValueError(f"pos must be a ({resolution}, {resolution}, 3) position map (the uv-data's resolution is "
                         f"{resolution}), got shape {pos.shape}")
    return pos


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
        image: (h, w, 3) uint8 RGB (or float in [0, 1]). vertices: (n, 3) image pixels, finite (read as float32,
            as ``depth.vertex_visibility`` reads them, so both round a vertex to the same pixel).
    Returns:
        (n, 3) float32 RGB in [0, 1].
    Raises:
        ValueError: vertices not (n, 3) finite real numbers (``face3d.mesh._checks.as_vertices``), or an image
            ``as_rgb_uint8`` refuses.
    """
    vertices = _checks.as_vertices(vertices)
    image = as_rgb_uint8(image)
    h, w = image.shape[:2]
    xy = np.rint(vertices[:, :2].astype(np.float64))
    x = np.clip(xy[:, 0], 0, w - 1).astype(np.int64)
    y = np.clip(xy[:, 1], 0, h - 1).astype(np.int64)
    return image[y, x].astype(np.float32) * np.float32(1.0 / 255.0)


class RemapLimitError(ValueError):
    """A face covering more of the image than ``cv2.remap`` takes (``REMAP_MAX_SIDE`` pixels a side): a limit of
    the input, where the other ValueErrors of ``texture_from_map`` are a caller's mistake."""


def texture_from_map(image, pos):
    """The face's UV texture: the image sampled at each map pixel's (x, y) (bilinear, black outside the image;
    PRNet's ``cv2.remap`` of the position map).

    ``cv2.remap`` refuses a source with a side of ``REMAP_MAX_SIDE`` + 1 = 32767 (SHRT_MAX) pixels or more, so it
    reads the sub-image covering the map's finite x, y (bounding box, ``REMAP_MARGIN`` pixels wider on each side
    for the bilinear taps, clipped to the image) with the map shifted by the box's corner: the same texture as
    remapping the whole image, since x - x0 is exact for the integer x0.

    Args:
        image: (h, w, 3) uint8 RGB (or float in [0, 1]). pos: (R, R, 3) position map in image coordinates.
    Returns:
        (R, R, 3) uint8 RGB texture, row 0 = v 1 (the top of the UV layout).
    Raises:
        RemapLimitError (a ValueError): the sub-image the face covers has a side over ``REMAP_MAX_SIDE`` pixels.
        ValueError: ``pos`` is not an (R, R, 3) map, or ``image`` not an image ``as_rgb_uint8`` takes.
    """
    image = as_rgb_uint8(image)
    pos = np.asarray(pos, dtype=np.float32)
    if pos.ndim != 3 or pos.shape[2] != 3:
        raise ValueError(f"pos must be an (R, R, 3) position map, got {pos.shape}")
    x, y = pos[..., 0].astype(np.float64), pos[..., 1].astype(np.float64)  # float32 values, shifted exactly
    finite = np.isfinite(x) & np.isfinite(y)
    h, w = image.shape[:2]
    texture = np.zeros((*pos.shape[:2], 3), dtype=np.uint8)
    if not finite.any():
        return texture
    x0, x1 = _covered_range(x[finite], w)
    y0, y1 = _covered_range(y[finite], h)
    if x1 <= x0 or y1 <= y0:  # every tap outside the image: all black
        return texture
    if max(x1 - x0, y1 - y0) > REMAP_MAX_SIDE:
        raise RemapLimitError(f"the face covers {x1 - x0} x {y1 - y0} pixels of the image; the texture read-out "
                         f"(OpenCV's remap) takes at most {REMAP_MAX_SIDE} pixels a side")
    return cv2.remap(image[y0:y1, x0:x1], (x - x0).astype(np.float32), (y - y0).astype(np.float32),
                     interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def _covered_range(values, size):
    """[start, stop) of the pixels ``cv2.remap``'s bilinear taps at ``values`` may read, clipped to [0, size):
    floor(min) - REMAP_MARGIN to floor(max) + REMAP_MARGIN inclusive."""
    start = int(np.clip(np.floor(values.min()) - REMAP_MARGIN, 0, size))
    stop = int(np.clip(np.floor(values.max()) + REMAP_MARGIN + 1, 0, size))
    return start, stop
