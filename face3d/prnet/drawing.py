"""Pictures of a reconstruction: the 68 landmarks along the iBUG contours, and the mesh shaded over the image."""
import cv2
import numpy as np

from face3d.mesh import light, render
from face3d.prnet.depth import mesh_window
from face3d.prnet.face_crop import as_rgb_uint8

__all__ = ["draw_landmarks", "mesh_overlay"]

# iBUG 68 contours drawn by draw_landmarks (PRNet's plot_kpt end_list): jaw, brows, nose bridge, nostrils,
# eyes (closed), outer lips (closed), inner lips (closed)
_CONTOURS = ((0, 17, False), (17, 22, False), (22, 27, False), (27, 31, False), (31, 36, False), (36, 42, True),
             (42, 48, True), (48, 60, True), (60, 68, True))

# mesh_overlay blends about this many pixels (whole rows) at a time: 12 MB per float temporary, whatever the size
# of the photo
_BAND_PIXELS = 1 << 20


def draw_landmarks(image, landmarks, color=(0, 255, 0), radius=2):
    """The image with the 68 landmarks drawn as dots joined along the iBUG contours.

    Args:
        image: (h, w, 3) uint8 RGB. landmarks: (68, >=2) image pixels. color: RGB.
    Returns:
        (h, w, 3) uint8 RGB copy.
    """
    out = as_rgb_uint8(image).copy()
    pts = np.asarray(landmarks, dtype=np.float64)[:, :2]
    if pts.shape[0] != 68 or not np.all(np.isfinite(pts)):
        raise ValueError(f"landmarks must be 68 finite points, got shape {np.shape(landmarks)}")
    ipts = np.rint(pts).astype(np.int32)
    lines = tuple(int(c) // 2 + 64 for c in color)
    for start, stop, closed in _CONTOURS:
        cv2.polylines(out, [ipts[start:stop].reshape(-1, 1, 2)], closed, lines, 1, cv2.LINE_AA)
    for x, y in ipts:
        cv2.circle(out, (int(x), int(y)), int(radius), tuple(int(c) for c in color), -1, cv2.LINE_AA)
    return out


def mesh_overlay(image, vertices, triangles, alpha=0.6):
    """The image with the mesh rendered over it, shaded by |normal z| (a headlight, independent of the winding).

    Only the mesh's pixel window (``depth.mesh_window``) is rendered and blended, in bands of rows, so a large
    photo costs little more than its copy: the bytes are those of rendering and blending the whole image.

    Args:
        image: (h, w, 3) uint8 RGB. vertices: (n, 3) image coordinates. triangles: (t, 3). alpha: mesh opacity.
    Returns:
        (h, w, 3) uint8 RGB.
    """
    base = as_rgb_uint8(image)
    h, w = base.shape[:2]
    v = np.ascontiguousarray(vertices, dtype=np.float32)
    tri = np.ascontiguousarray(triangles, dtype=np.int32)
    normals = np.asarray(light.vertex_normals(v, tri), dtype=np.float64)
    shade = 0.25 + 0.75 * np.abs(normals[:, 2:3])
    colors = np.repeat(shade, 3, axis=1) * np.array([0.75, 0.85, 1.0])
    out = base.copy()
    (x0, y0, x1, y1), moved = mesh_window(v, h, w)
    if x1 <= x0 or y1 <= y0:
        return out
    # NaN marks the pixels no triangle covers
    rendered = render.render_colors(moved, tri, colors.astype(np.float32), y1 - y0, x1 - x0, c=3, BG=np.nan)
    rows = max(1, _BAND_PIXELS // (x1 - x0))
    for top in range(0, y1 - y0, rows):
        band = rendered[top:top + rows]
        covered = np.isfinite(band[..., :1])
        pixels = out[y0 + top:y0 + top + len(band), x0:x1]
        blend = pixels.astype(np.float32) / 255.0
        blend = np.where(covered, (1 - alpha) * blend + alpha * band, blend)
        pixels[...] = np.round(np.clip(blend, 0.0, 1.0) * 255.0).astype(np.uint8)
    return out
