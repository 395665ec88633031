"""Depth of the face mesh in the image: which vertices the camera sees, and a depth image (PRNet's
``get_visibility`` and ``get_depth_image``, on ``face3d.mesh.render``'s depth buffer).

Vertices are in image coordinates (x right, y down, pixels) with z towards the viewer (larger is nearer).
"""
import numpy as np

from face3d.mesh import render

__all__ = ["vertex_visibility", "depth_image"]


def vertex_visibility(vertices, triangles, h, w, tolerance=1.0, dilate=2):
    """Which vertices the camera sees (PRNet's ``get_visibility``, on ``face3d.mesh.render``'s depth buffer).

    A vertex is visible when it projects inside the image and its z is at least the depth buffer's value at its
    rounded pixel minus ``tolerance`` (pixels; larger z is nearer). Then, ``dilate`` times, every vertex of a
    triangle with a visible vertex becomes visible (PRNet's two passes: they close the one-pixel gaps the
    rounding leaves along silhouettes).

    Args:
        vertices: (n, 3) image coordinates. triangles: (t, 3) int indices. h, w: image size.
    Returns:
        (n,) bool.
    """
    v = np.ascontiguousarray(vertices, dtype=np.float32)
    tri = np.ascontiguousarray(triangles, dtype=np.int32)
    depth, _, _ = render.rasterize_triangles(v, tri, int(h), int(w))
    xy = np.rint(v[:, :2].astype(np.float64))
    inside = (xy[:, 0] >= 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= h - 1)
    visible = np.zeros(len(v), dtype=bool)
    ix = xy[inside].astype(np.int64)
    visible[inside] = v[inside, 2] >= depth[ix[:, 1], ix[:, 0]] - tolerance
    for _ in range(int(dilate)):
        seen = visible[tri].any(axis=1)
        visible[tri[seen].reshape(-1)] = True
    return visible


def depth_image(vertices, triangles, h, w):
    """Depth of the face as an image (PRNet's ``get_depth_image``): z shifted to start at 0 and divided by its
    range, rendered with ``face3d.mesh.render.render_colors``.

    Returns:
        (h, w) float32 in [0, 1]: 1 at the nearest vertex, 0 at the farthest and on the background.
    """
    v = np.ascontiguousarray(vertices, dtype=np.float32)
    z = v[:, 2:3].astype(np.float64)
    z = z - z.min()
    span = z.max()
    z = z / span if span > 0 else np.zeros_like(z)
    out = render.render_colors(v, np.ascontiguousarray(triangles, dtype=np.int32), z.astype(np.float32),
                               int(h), int(w), c=1)
    return np.asarray(out, dtype=np.float32).reshape(int(h), int(w))
