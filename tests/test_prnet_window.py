"""The demo's mesh drawing, vertex visibility and depth image on the mesh's pixel window: the same bytes as
rasterising the whole image, in memory for the window rather than the photo.

Budget: about 5 s on 2 cores.
"""
import tracemalloc

import numpy as np
import pytest

from face3d.mesh import light, render
from face3d.prnet import drawing
from face3d.prnet.depth import depth_image, mesh_window, vertex_visibility
from face3d.prnet.drawing import mesh_overlay

H, W = 90, 120
MB = 2 ** 20


def grid(x0, y0, x1, y1, n):
    """(n*n, 2) points of a regular grid over [x0, x1] x [y0, y1], row by row, their positions in it (u, v in [0, 1]),
    and the grid's (2 (n-1)^2, 3) triangles."""
    v, u = np.mgrid[0:n, 0:n] / (n - 1)
    points = np.stack([x0 + u * (x1 - x0), y0 + v * (y1 - y0)], -1).reshape(-1, 2)
    index = np.arange(n * n).reshape(n, n)
    a, b, c, d = index[:-1, :-1], index[:-1, 1:], index[1:, :-1], index[1:, 1:]
    triangles = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([b, d, c], -1).reshape(-1, 3)])
    return points, u.ravel(), v.ravel(), triangles


def face_like_mesh(x0, y0, x1, y1, jitter=0.0, n=24, seed=0):
    """A face-like mesh over the box [x0, x1] x [y0, y1]: a dense n x n grid bulging towards the viewer (z up to
    half the box's width) in front of a coarse flat plate over the box's middle (hidden), every vertex moved by up
    to ``jitter`` pixels in x and y. Returns (nver, 3) float32 vertices and (ntri, 3) int32 triangles."""
    front, u, v, front_triangles = grid(x0, y0, x1, y1, n)
    z = (x1 - x0) / 2 * np.sqrt(np.maximum(0.5 - (u - 0.5) ** 2 - (v - 0.5) ** 2, 0.0))
    qx, qy = (x1 - x0) / 4, (y1 - y0) / 4
    back, _, _, back_triangles = grid(x0 + qx, y0 + qy, x1 - qx, y1 - qy, 6)
    vertices = np.vstack([np.column_stack([front, z]), np.column_stack([back, np.full(len(back), -(x1 - x0) - 2)])])
    vertices[:, :2] += np.random.default_rng(seed).uniform(-jitter, jitter, (len(vertices), 2))
    triangles = np.vstack([front_triangles, back_triangles + len(front)])
    return vertices.astype(np.float32), triangles.astype(np.int32)


def overlay_of_whole_image(image, vertices, triangles, alpha=0.6):
    """mesh_overlay's formula on buffers of the whole image."""
    v = np.asarray(vertices, np.float32)
    normals = np.asarray(light.vertex_normals(v, triangles), dtype=np.float64)
    colors = np.repeat(0.25 + 0.75 * np.abs(normals[:, 2:3]), 3, axis=1) * np.array([0.75, 0.85, 1.0])
    rendered = render.render_colors(v, triangles, colors.astype(np.float32), *image.shape[:2], c=3)
    covered = np.isfinite(render.rasterize_triangles(v, triangles, *image.shape[:2])[0])[..., None]
    out = image.astype(np.float32) / 255.0
    out = np.where(covered, (1 - alpha) * out + alpha * rendered, out)
    return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)


def depth_of_whole_image(vertices, triangles, h, w):
    """depth_image's formula rendered on the whole image."""
    z = vertices[:, 2:3].astype(np.float64)
    z = z - z.min()
    z = z / z.max() if z.max() > 0 else np.zeros_like(z)
    return np.asarray(render.render_colors(vertices, triangles, z.astype(np.float32), h, w, c=1)).reshape(h, w)


def visibility_on_whole_image(vertices, triangles, h, w, tolerance=1.0, dilate=2):
    """vertex_visibility's rule on the depth buffer of the whole image."""
    depth = render.rasterize_triangles(vertices, triangles, h, w)[0]
    xy = np.rint(vertices[:, :2].astype(np.float64))
    inside = (xy[:, 0] >= 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= h - 1)
    visible = np.zeros(len(vertices), dtype=bool)
    ix = xy[inside].astype(np.int64)
    visible[inside] = vertices[inside, 2] >= depth[ix[:, 1], ix[:, 0]] - tolerance
    for _ in range(dilate):
        visible[triangles[visible[triangles].any(axis=1)].reshape(-1)] = True
    return visible


BOXES = {
    "centred": (30, 20, 90, 70),
    "past the left": (-25, 10, 35, 60),
    "past the right": (85, 15, 150, 75),
    "past the top": (40, -30, 100, 30),
    "past the bottom": (10, 60, 70, 120),
    "over the whole image": (-20, -20, 140, 110),
    "tiny": (50.5, 40.25, 53.75, 43.5),
    "fractional": (20.3, 11.7, 83.9, 66.1),
    "on pixel centres": (12, 12, 35, 35),  # 23 / 23: vertices at whole pixels, edges through pixel centres
    "outside, left": (-70, 10, -5, 60),
    "outside, below": (10, 95, 70, 150),
}


@pytest.mark.parametrize("jitter", [0.0, 0.3])
@pytest.mark.parametrize("box", BOXES.values(), ids=BOXES.keys())
def test_drawing_and_visibility_on_the_window_match_the_whole_image(box, jitter, monkeypatch):
    image = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)  # every byte value
    vertices, triangles = face_like_mesh(*box, jitter=jitter)
    want = overlay_of_whole_image(image, vertices, triangles)
    assert np.array_equal(mesh_overlay(image, vertices, triangles), want)
    monkeypatch.setattr(drawing, "_BAND_PIXELS", 500)  # bands of a few rows, the last one shorter
    assert np.array_equal(mesh_overlay(image, vertices, triangles), want)
    visible = visibility_on_whole_image(vertices, triangles, H, W)
    assert np.array_equal(vertex_visibility(vertices, triangles, H, W), visible)
    assert np.array_equal(depth_image(vertices, triangles, H, W), depth_of_whole_image(vertices, triangles, H, W))
    if box[0] > -50 and box[1] < 90:  # the cases with a face in the image draw it
        assert (want != image).any() and visible.any() and not visible.all()


@pytest.mark.parametrize("alpha, blended", [(0.6, (155, 171, 195)), (0.25, (123, 131, 142))])
def test_a_covered_pixel_is_the_nearest_byte_of_the_alpha_blend(alpha, blended):
    """A flat mesh facing the viewer (|normal z| = 1) is drawn in (0.75, 0.85, 1.0) x 255: a covered pixel becomes
    round((1 - alpha) x pixel + alpha x 255 x colour), here on (100, 102, 104): at alpha 0.6 154.75, 170.85 and
    194.6, at 0.25 122.8125, 130.6875 and 141.75, each rounded up where truncation would round down; a pixel the
    mesh misses keeps its bytes."""
    image = np.tile(np.array([100, 102, 104], np.uint8), (10, 10, 1))
    vertices = np.array([[0, 0, 0], [12, 0, 0], [0, 12, 0]], np.float32)
    drawn = mesh_overlay(image, vertices, np.array([[0, 1, 2]]), alpha=alpha)
    assert tuple(drawn[2, 2]) == blended
    assert tuple(drawn[9, 9]) == (100, 102, 104)


def test_a_mesh_reaching_beyond_float32s_exact_integers_is_drawn_on_the_whole_image():
    """A vertex beyond 2**24 pixels: moving the mesh by its window's corner would round it and tilt its triangles'
    edges, so the whole image is its window (pixel centres on such an edge then fall as they did)."""
    image = np.zeros((20, 20, 3), np.uint8)
    triangles = np.array([[0, 1, 2]])
    cases = 0
    for far in (2 ** 25 + 4, 2 ** 26 + 8, 2 ** 24 + 2, 3 * 2 ** 24 + 6):
        for x0 in range(1, 8):
            for third in ((x0, 10), (x0 + 8, 0), (x0, -10), (x0 + 8, 12)):
                vertices = np.array([[x0, 1, 0], [far, far - x0 + 1, 0], [third[0], third[1] + 1, 0]], np.float32)
                assert np.array_equal(mesh_overlay(image, vertices, triangles),
                                      overlay_of_whole_image(image, vertices, triangles))
                assert np.array_equal(vertex_visibility(vertices, triangles, 20, 20),
                                      visibility_on_whole_image(vertices, triangles, 20, 20))
                assert np.array_equal(depth_image(vertices, triangles, 20, 20),
                                      depth_of_whole_image(vertices, triangles, 20, 20))
                cases += 1
    assert cases == 112
    assert mesh_window(np.array([[3, 4, 0], [2 ** 24, 5, 0]], np.float32), 20, 30)[0] == (0, 0, 30, 20)


def test_mesh_window_is_the_box_of_pixel_centres_the_vertices_span():
    vertices = np.array([[10.5, -3.0, 1.0], [20.0, 5.9, 2.0], [14.2, 2.0, -1.0]], np.float32)
    (x0, y0, x1, y1), moved = mesh_window(vertices, 15, 30)
    assert (x0, y0, x1, y1) == (10, 0, 21, 6)
    np.testing.assert_array_equal(moved, vertices - np.float32([10, 0, 0]))
    assert mesh_window(vertices, 15, 30, margin=1)[0] == (10, 0, 22, 7)
    assert mesh_window(vertices, 4, 20, margin=1)[0] == (10, 0, 20, 4)  # clipped to the image
    assert mesh_window(vertices + [40, 0, 0], 15, 30)[0] == (30, 0, 30, 6)  # right of the image: no column
    assert mesh_window(np.zeros((0, 3), np.float32), 15, 30)[0] == (0, 0, 0, 0)


def test_visibility_rejects_bad_input_even_for_a_mesh_outside_the_image():
    vertices, triangles = face_like_mesh(-70, 10, -5, 60)
    nan = vertices.copy()
    nan[0, 2] = np.nan
    with pytest.raises(ValueError, match=r"^vertices must be finite, found NaN or inf$"):
        vertex_visibility(nan, triangles, H, W)
    out_of_range = r"^triangles must hold indices into vertices in \[0, 612\), found one outside$"
    with pytest.raises(ValueError, match=out_of_range):
        vertex_visibility(vertices, triangles - 1, H, W)
    with pytest.raises(ValueError, match=r"^h must be a positive integer at most 16777216, got 0$"):
        vertex_visibility(vertices, triangles, 0, W)


def test_a_small_face_on_a_large_photo_costs_memory_for_its_window():
    h, w = 2000, 3000
    image = np.zeros((h, w, 3), np.uint8)
    vertices, triangles = face_like_mesh(1400, 900, 1600, 1100, jitter=0.3, n=64)
    tracemalloc.start()
    try:
        drawn = mesh_overlay(image, vertices, triangles)
        overlay_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        visible = vertex_visibility(vertices, triangles, h, w)
        visibility_peak = tracemalloc.get_traced_memory()[1] - drawn.nbytes
    finally:
        tracemalloc.stop()
    # The copy drawn on is 17 MB; buffers of the whole image took 355 MB more (drawing) and 114 MB (visibility).
    assert overlay_peak < drawn.nbytes + 4 * MB, overlay_peak / MB
    assert visibility_peak < 2 * MB, visibility_peak / MB
    assert (drawn[1000, 1500] != 0).all() and not drawn[:, :1390].any() and visible.any()
