"""Depth of the face mesh in the image: which vertices the camera sees, and a depth image (PRNet's
``get_visibility`` and ``get_depth_image``, on ``face3d.mesh.render``'s depth buffer).

Vertices are in image coordinates (x right, y down, pixels) with z towards the viewer (larger is nearer).
"""
import numpy as np

from face3d.mesh import _checks, render

__all__ = ["mesh_window", "vertex_visibility", "depth_image"]


def mesh_window(vertices, h, w, margin=0):
    """The pixel window of a mesh in an (h, w) image, and the vertices moved to its corner, to rasterise only the
    pixels the mesh can cover rather than the whole image.

    The window holds columns x0 <= x < x1 and rows y0 <= y < y1 with x0 = floor(min x) and
    x1 = floor(max x) + 1 + margin, both clipped to [0, w], likewise y (over the vertices' x and y): every pixel
    centre a triangle covers (see ``face3d.mesh.render``), and with ``margin=1`` every vertex's rounded pixel inside
    the image. It is empty (x1 <= x0 or y1 <= y0) when the mesh lies outside the image or has no vertex.

    Rendering the moved vertices into a (y1 - y0, x1 - x0) image gives bit for bit the window of the whole image's
    rendering: x0 is 0 or a whole pixel at most every x it is subtracted from (likewise y0), so float32 subtracts it
    exactly for coordinates below 2**24, and the kernels' bounding boxes and float64 edge functions then see the
    same coordinate differences and the same pixel centres, moved by (x0, y0). A mesh with a coordinate beyond
    that gets the whole image as its window, its vertices unmoved.

    Args:
        vertices: (n, 3) float32 image coordinates, finite. h, w: image size (pixels). margin: extra pixels (int)
            past the mesh's last column and row.
    Returns:
        (x0, y0, x1, y1) ints, and the (n, 3) float32 vertices less (x0, y0, 0).
    """
    v = np.asarray(vertices, dtype=np.float32)
    if len(v) == 0:
        return (0, 0, 0, 0), v
    if np.abs(v[:, :2]).max() >= 2 ** 24:  # float32 would round the move
        return (0, 0, int(w), int(h)), v.copy()
    size = np.array([w, h], dtype=np.float64)
    first = np.clip(np.floor(v[:, :2].min(axis=0)).astype(np.float64), 0.0, size)
    stop = np.clip(np.floor(v[:, :2].max(axis=0)).astype(np.float64) + 1 + margin, 0.0, size)
    (x0, y0), (x1, y1) = first.astype(np.int64).tolist(), stop.astype(np.int64).tolist()
    moved = v.copy()
    moved[:, :2] -= np.array([x0, y0], dtype=np.float32)
    return (x0, y0, x1, y1), moved


def _checked_mesh(vertices, triangles, h, w):
    """(h, w, vertices (n, 3) float32, triangles (t, 3) int32) checked as the render kernels check them, before a
    window is taken (and whether or not one is rendered): a ValueError naming the bad argument."""
    h, w = _checks.as_size(int(h), "h"), _checks.as_size(int(w), "w")
    v, tri = _checks.as_mesh(np.asarray(vertices, dtype=np.float32), np.asarray(triangles, dtype=np.int32))
    _checks.kernel_checks(v, tri)
    return h, w, v, tri


def vertex_visibility(vertices, triangles, h, w, tolerance=1.0, dilate=2):
    """Which vertices the camera sees (PRNet's ``get_visibility``, on ``face3d.mesh.render``'s depth buffer).

    A vertex is visible when it projects inside the image and its z is at least the depth buffer's value at its
    rounded pixel minus ``tolerance`` (pixels; larger z is nearer). Then, ``dilate`` times, every vertex of a
    triangle with a visible vertex becomes visible (PRNet's two passes: they close the one-pixel gaps the
    rounding leaves along silhouettes). The depth buffer covers the mesh's window only (``mesh_window``).

    Args:
        vertices: (n, 3) image coordinates. triangles: (t, 3) int indices. h, w: image size.
    Returns:
        (n,) bool.
    """
    h, w, v, tri = _checked_mesh(vertices, triangles, h, w)
    xy = np.rint(v[:, :2].astype(np.float64))
    inside = (xy[:, 0] >= 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= h - 1)
    visible = np.zeros(len(v), dtype=bool)
    if inside.any():  # then the window (one pixel wider, for the rounding) is not empty
        (x0, y0, x1, y1), moved = mesh_window(v, h, w, margin=1)
        depth, _, _ = render.rasterize_triangles(moved, tri, y1 - y0, x1 - x0)
        ix = xy[inside].astype(np.int64)
        visible[inside] = v[inside, 2] >= depth[ix[:, 1] - y0, ix[:, 0] - x0] - tolerance
    for _ in range(int(dilate)):
        seen = visible[tri].any(axis=1)
        visible[tri[seen].reshape(-1)] = True
    return visible


def depth_image(vertices, triangles, h, w):
    """Depth of the face as an image (PRNet's ``get_depth_image``): z shifted to start at 0 and divided by its
    range, rendered with ``face3d.mesh.render.render_colors`` on the mesh's window only (``mesh_window``: the same
    values as rendering the whole image), the rest 0.

    Returns:
        (h, w) float32 in [0, 1]: 1 at the nearest vertex, 0 at the farthest and on the background.
    """
    h, w, v, tri = _checked_mesh(vertices, triangles, h, w)
    z = v[:, 2:3].astype(np.float64)
    z = z - z.min()
    span = z.max()
    z = z / span if span > 0 else np.zeros_like(z)
    out = np.zeros((h, w), dtype=np.float32)
    (x0, y0, x1, y1), moved = mesh_window(v, h, w)
    if x1 > x0 and y1 > y0:
        window = render.render_colors(moved, tri, z.astype(np.float32), y1 - y0, x1 - x0, c=1)
        out[y0:y1, x0:x1] = np.asarray(window, dtype=np.float32).reshape(y1 - y0, x1 - x0)
    return out
