"""The C++ rasteriser/renderers (face3d.mesh.render) against their numpy twins, hand-checked geometry and errors."""
import inspect
import sys
import threading
import time

import numpy as np
import pytest

from face3d.mesh import _checks, _mesh_core
from face3d.mesh import render as cpp
from face3d.mesh_numpy import render as ref

TWINS = [pytest.param(cpp, id="cpp"), pytest.param(ref, id="numpy")]
H, W = 23, 31


def random_mesh(seed, nver=40, ntri=60):
    """Random mesh stressing the rules: coordinates snapped to a coarse grid (vertices on pixel centres, edges
    through pixel centres, equal depths), triangles overlapping, partly and fully outside the image, and
    degenerate ones (repeated vertex, collinear vertices)."""
    rng = np.random.default_rng(seed)
    v = np.empty((nver, 3), dtype=np.float32)
    v[:, 0] = rng.uniform(-8, W + 8, nver)
    v[:, 1] = rng.uniform(-8, H + 8, nver)
    v[:, 2] = rng.uniform(-5, 5, nver)
    if seed % 2:
        v = (np.round(v * 2) / 2).astype(np.float32)
    v[-3:] = [[-40, -40, 0], [-30, -45, 0], [-35, -30, 0]]  # a triangle fully outside
    t = rng.integers(0, nver - 3, (ntri, 3))
    t[:5, 1] = t[:5, 0]  # repeated vertex: zero area
    v[nver - 6:nver - 3] = [[2, 2, 1], [6, 6, 1], [10, 10, 1]]  # collinear
    t[5] = [nver - 6, nver - 5, nver - 4]
    t[6] = [nver - 3, nver - 2, nver - 1]
    t[7:10] = t[10:13]  # duplicated triangles: equal depths everywhere
    return v, t.astype(np.int64)


@pytest.mark.parametrize("seed", range(8))
def test_rasterize_matches_numpy_twin(seed):
    v, t = random_mesh(seed)
    got, want = cpp.rasterize_triangles(v, t, H, W), ref.rasterize_triangles(v, t, H, W)
    for g, w_, dtype in zip(got, want, (np.float32, np.int32, np.float32)):
        assert g.dtype == dtype and w_.dtype == dtype
        assert np.array_equal(g, w_)
    assert (got[1] >= 0).sum() > 50  # the case is not vacuous


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("c", [1, 3, 5])
def test_render_colors_matches_numpy_twin(seed, c):
    v, t = random_mesh(seed)
    colors = np.random.default_rng(seed).uniform(-1, 2, (len(v), c))
    got = cpp.render_colors(v, t, colors, H, W, c=c, BG=0.25)
    want = ref.render_colors(v, t, colors, H, W, c=c, BG=0.25)
    assert got.shape == (H, W, c) and got.dtype == np.float32
    assert np.max(np.abs(got - want)) < 1e-4
    assert np.array_equal(got, want)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mapping_type", ["nearest", "bilinear"])
def test_render_texture_matches_numpy_twin(seed, mapping_type):
    v, t = random_mesh(seed)
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (9, 13, 3)).astype(np.uint8)
    tex_coords = rng.uniform(-3, 16, (50, 2))  # partly outside the texture: clamped
    tex_triangles = rng.integers(0, 50, t.shape)
    args = (v, t, texture, tex_coords, tex_triangles, H, W)
    got = cpp.render_texture(*args, mapping_type=mapping_type)
    want = ref.render_texture(*args, mapping_type=mapping_type)
    assert np.array_equal(got, want)
    assert np.any(got != 0)


def test_non_contiguous_and_float64_input_give_the_same_result():
    v, t = random_mesh(1)
    colors = np.random.default_rng(0).uniform(0, 1, (len(v), 3))
    base = cpp.render_colors(v, t, colors.astype(np.float32), H, W)
    wide = np.zeros((len(v), 6))
    wide[:, ::2] = v  # float64, non-contiguous
    t_f = np.asfortranarray(t.astype(np.int32))
    col_nc = np.asfortranarray(colors)
    for twin in (cpp, ref):
        assert np.array_equal(twin.render_colors(wide[:, ::2], t_f, col_nc, H, W), base)
        assert np.array_equal(twin.rasterize_triangles(wide[:, ::2], t_f[::-1][::-1], H, W)[1],
                              cpp.rasterize_triangles(v, t, H, W)[1])


def misaligned(array):
    """A copy of array at an odd address (numpy's flags.aligned is False), as a buffer read at a byte offset is."""
    array = np.ascontiguousarray(array)
    out = np.ndarray(array.shape, array.dtype, buffer=np.zeros(array.nbytes + 1, np.uint8), offset=1)
    out[...] = array
    assert not out.flags.aligned
    return out


@pytest.mark.parametrize("twin", TWINS)
def test_misaligned_input_renders_as_aligned_input_does(twin):
    v, t = random_mesh(2)
    t = t.astype(np.int32)
    rng = np.random.default_rng(2)
    colors = rng.uniform(0, 1, (len(v), 3)).astype(np.float32)
    texture = rng.uniform(0, 1, (9, 13, 3)).astype(np.float32)
    tex_coords = rng.uniform(0, 12, (len(v), 2)).astype(np.float32)
    for got, want in zip(twin.rasterize_triangles(misaligned(v), misaligned(t), H, W),
                         twin.rasterize_triangles(v, t, H, W)):
        assert np.array_equal(got, want)
    assert np.array_equal(twin.render_colors(misaligned(v), misaligned(t), misaligned(colors), H, W),
                          twin.render_colors(v, t, colors, H, W))
    assert np.array_equal(twin.render_texture(misaligned(v), t, misaligned(texture), misaligned(tex_coords),
                                              misaligned(t), H, W),
                          twin.render_texture(v, t, texture, tex_coords, t, H, W))


def test_dense_self_occluding_mesh_matches_numpy_twin():
    """A face-like dense mesh (sub-pixel triangles, turned 50 degrees so that the far side is hidden behind the
    near side) gives the same buffers in both twins."""
    s, t_ = np.meshgrid(np.linspace(-1.2, 1.2, 45), np.linspace(-1, 1, 45))
    x, y, z = np.sin(s) * np.cos(t_), np.sin(t_), np.cos(s) * np.cos(t_)
    yaw = np.deg2rad(50)
    xr, zr = x * np.cos(yaw) + z * np.sin(yaw), -x * np.sin(yaw) + z * np.cos(yaw)
    v = np.stack([xr.ravel() * 20 + 24, 24 - y.ravel() * 20, zr.ravel() * 20], 1)
    idx = np.arange(45 * 45).reshape(45, 45)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    t = np.concatenate([np.stack([a, b, c], 1), np.stack([b, d, c], 1)])
    got, want = cpp.rasterize_triangles(v, t, 48, 48), ref.rasterize_triangles(v, t, 48, 48)
    for g, w_ in zip(got, want):
        assert np.array_equal(g, w_)
    visible = np.unique(got[1][got[1] >= 0])
    hidden_side = np.flatnonzero(v[t].mean(1)[:, 2] < -5)  # triangles on the far side of the turned cap
    assert visible.size > 500 and not np.isin(hidden_side, visible).any()


def test_numpy_twin_holds_a_large_triangle_in_bounded_memory():
    import tracemalloc

    size = 2048  # two triangles, each with a bounding box of 2048 x 2048 pixels
    v = np.array([[0, 0, 0], [size, 0, 1], [0, size, 2], [size, size, 3]], np.float32)
    t = np.array([[0, 1, 2], [1, 3, 2]])
    tracemalloc.start()
    try:
        buffers = ref.rasterize_triangles(v, t, size, size)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The three buffers returned take 80 MB; one chunk of candidate pairs about 50 MB (a whole box: 650 MB).
    assert peak < 150 * 2 ** 20, peak / 2 ** 20
    for got, want in zip(buffers, cpp.rasterize_triangles(v, t, size, size)):
        assert np.array_equal(got, want)
    colors = np.arange(12, dtype=np.float32).reshape(4, 3)
    del buffers
    tracemalloc.start()
    try:
        image = ref.render_colors(v, t, colors, size, size)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The image, 48 MB, and the rasterisation's 130 MB (interpolating every pixel at once peaked at 400 MB).
    assert peak < 220 * 2 ** 20, peak / 2 ** 20
    assert np.array_equal(image, cpp.render_colors(v, t, colors, size, size))


@pytest.mark.parametrize("seed", range(4))
def test_numpy_twin_splitting_boxes_into_small_spans_changes_nothing(monkeypatch, seed):
    v, t = random_mesh(seed)
    monkeypatch.setattr(ref, "_CHUNK_PAIRS", 7)  # spans end mid-row, chunks hold parts of overlapping triangles
    for got, want in zip(ref.rasterize_triangles(v, t, H, W), cpp.rasterize_triangles(v, t, H, W)):
        assert np.array_equal(got, want)


@pytest.mark.parametrize("seed", range(4))
def test_numpy_twin_interpolating_in_small_chunks_changes_nothing(monkeypatch, seed):
    """Colours and texture lookups of runs of 7 pixels (a run ends mid-row, some hold no covered pixel) give the
    kernel's images (as the whole image at once does: test_render_*_matches_numpy_twin)."""
    v, t = random_mesh(seed)
    rng = np.random.default_rng(seed)
    colors = rng.uniform(-1, 2, (len(v), 3))
    texture = rng.integers(0, 256, (9, 13, 3)).astype(np.uint8)
    tex_args = (v, t, texture, rng.uniform(-3, 16, (len(v), 2)), t, H, W)
    want = [cpp.render_colors(v, t, colors, H, W), cpp.render_texture(*tex_args, mapping_type="nearest"),
            cpp.render_texture(*tex_args, mapping_type="bilinear")]
    monkeypatch.setattr(ref, "_CHUNK_PAIRS", 7)
    chunked = [ref.render_colors(v, t, colors, H, W), ref.render_texture(*tex_args, mapping_type="nearest"),
               ref.render_texture(*tex_args, mapping_type="bilinear")]
    for got, kernel in zip(chunked, want):
        assert np.array_equal(got, kernel)


@pytest.mark.parametrize("twin", TWINS)
def test_empty_mesh_renders_background(twin):
    v = np.zeros((0, 3))
    t = np.zeros((0, 3), dtype=np.int32)
    depth, tri, bary = twin.rasterize_triangles(v, t, 4, 5)
    assert np.all(depth == -np.inf) and np.all(tri == -1) and np.all(bary == 0)
    image = twin.render_colors(v, t, np.zeros((0, 2)), 4, 5, c=2, BG=[0.5, 2.0])
    assert np.array_equal(image, np.broadcast_to(np.float32([0.5, 2.0]), (4, 5, 2)))
    verts = np.random.default_rng(0).uniform(0, 4, (7, 3))
    assert np.array_equal(twin.render_colors(verts, t, np.ones((7, 3)), 4, 5), np.zeros((4, 5, 3)))


# Hand-checked: the triangle (0,0), (4,0), (0,4) covers the centres with x >= 0, y >= 0, x + y < 4. The edge y = 0 is
# a top edge and x = 0 a left edge (included); the hypotenuse x + y = 4 is a bottom-right edge (excluded).
RIGHT_TRIANGLE_MASK = np.array([
    [1, 1, 1, 1, 0, 0],
    [1, 1, 1, 0, 0, 0],
    [1, 1, 0, 0, 0, 0],
    [1, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0],
], dtype=bool)


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("order", [[0, 1, 2], [0, 2, 1], [2, 1, 0], [1, 2, 0]])
def test_single_triangle_covers_exactly_the_documented_pixels(twin, order):
    v = np.array([[0, 0, 1], [4, 0, 2], [0, 4, 3]], dtype=np.float32)
    depth, tri, bary = twin.rasterize_triangles(v, np.array([order]), 5, 6)
    assert np.array_equal(tri == 0, RIGHT_TRIANGLE_MASK)
    # Depth interpolates the plane z = 1 + x/4 + y/2 exactly at these centres.
    ys, xs = np.nonzero(RIGHT_TRIANGLE_MASK)
    assert np.allclose(depth[ys, xs], 1 + xs / 4 + ys / 2, atol=1e-6)
    assert np.allclose(bary[ys, xs].sum(1), 1, atol=1e-6)
    corner = dict(zip(order, range(3)))[0]  # the slot holding vertex 0 = pixel (0, 0)
    assert bary[0, 0, corner] == 1


@pytest.mark.parametrize("twin", TWINS)
def test_shared_edges_cover_every_pixel_exactly_once(twin):
    # A 6 x 4 rectangle [1, 7] x [1, 5] split along both diagonals into 4 triangles around its centre.
    v = np.array([[1, 1, 0], [7, 1, 0], [7, 5, 0], [1, 5, 0], [4, 3, 0]], dtype=np.float32)
    t = np.array([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    counts = np.zeros((8, 9), dtype=int)
    for k in range(4):
        counts += twin.rasterize_triangles(v, t[k:k + 1], 8, 9)[1] == 0
    expected = np.zeros((8, 9), dtype=int)
    expected[1:5, 1:7] = 1  # top and left edges in, bottom and right edges out
    assert np.array_equal(counts, expected)


@pytest.mark.parametrize("twin", TWINS)
def test_z_test_nearest_wins_and_ties_go_to_the_lower_index(twin):
    near = [[0, 0, 5], [8, 0, 5], [0, 8, 5]]
    far = [[0, 0, 1], [8, 0, 1], [0, 8, 1]]
    for first, second, winner in [(near, far, 0), (far, near, 1), (far, far, 0)]:
        v = np.array(first + second, dtype=np.float32)
        tri = twin.rasterize_triangles(v, [[0, 1, 2], [3, 4, 5]], 4, 4)[1]
        assert tri[1, 1] == winner
    v = np.array(near + far, dtype=np.float32)
    image = twin.render_colors(v, [[3, 4, 5], [0, 1, 2]], np.repeat([[1.0], [2.0]], 3, axis=0), 4, 4, c=1)
    assert image[1, 1, 0] == 1.0


def checkerboard_quad(mapping_type, twin):
    """A 40 x 40 px square textured with a 4 x 4 checkerboard whose texel centres fall on pixels 5, 15, 25, 35."""
    checks = (np.indices((4, 4)).sum(0) % 2).astype(np.float32)
    texture = np.stack([checks, 1 - checks, 0.5 * checks], axis=2)
    v = np.array([[0, 0, 0], [40, 0, 0], [40, 40, 0], [0, 40, 0]], dtype=np.float32)
    t = np.array([[0, 1, 2], [0, 2, 3]])
    uv = np.array([[-0.5, -0.5], [3.5, -0.5], [3.5, 3.5], [-0.5, 3.5]])
    return twin.render_texture(v, t, texture, uv, t, 42, 42, mapping_type=mapping_type, BG=-1)


@pytest.mark.parametrize("twin", TWINS)
def test_checkerboard_nearest(twin):
    image = checkerboard_quad("nearest", twin)
    # Pixel x samples u = x / 10 - 0.5 (v likewise from y): at x = 11, u = 0.6 rounds up to texel column 1, where
    # truncating would read column 0.
    for (y, x), expected in {(5, 5): [0, 1, 0], (5, 15): [1, 0, 0.5], (15, 5): [1, 0, 0.5], (25, 35): [1, 0, 0.5],
                             (35, 35): [0, 1, 0], (2, 38): [1, 0, 0.5], (41, 41): [-1, -1, -1],
                             (5, 11): [1, 0, 0.5], (11, 5): [1, 0, 0.5], (15, 11): [0, 1, 0]}.items():
        assert np.array_equal(image[y, x], expected), (y, x)


@pytest.mark.parametrize("twin", TWINS)
def test_checkerboard_bilinear(twin):
    image = checkerboard_quad("bilinear", twin)
    # Texel centres reproduce the texel; half-way between two checks gives their mean; the border clamps.
    for (y, x), expected in {(5, 5): [0, 1, 0], (5, 15): [1, 0, 0.5], (5, 10): [0.5, 0.5, 0.25],
                             (10, 10): [0.5, 0.5, 0.25], (5, 0): [0, 1, 0], (7, 5): [0.2, 0.8, 0.1],
                             (40, 40): [-1, -1, -1]}.items():
        assert np.allclose(image[y, x], expected, atol=1e-5), (y, x, image[y, x])


def sample_at_a_corner(twin, texture, u, v, mapping_type):
    """The texture as render_texture samples it at exactly (u, v): pixel (0, 0) is corner 0 of the triangle, where
    the weights are exactly (1, 0, 0), so the interpolated coordinates are corner 0's own."""
    vertices = np.array([[0, 0, 0], [4, 0, 0], [0, 4, 0]], np.float32)
    triangles = np.array([[0, 1, 2]])
    tex_coords = np.array([[u, v], [0, 0], [0, 0]], np.float32)
    image = twin.render_texture(vertices, triangles, texture, tex_coords, triangles, 1, 1, c=texture.shape[2],
                                mapping_type=mapping_type)
    return image[0, 0]


@pytest.mark.parametrize("twin", TWINS)
def test_nearest_rounds_half_texel_coordinates_up(twin):
    """'nearest' reads texel floor(u + 0.5): a coordinate exactly half-way between two texel centres takes the
    upper one, whether that texel's index is odd or even (rounding half to even would take 0 and 2 for 0.5, 2.5)."""
    rows, cols = np.indices((5, 5))
    texture = (10 * rows + cols).astype(np.float32)[:, :, None]  # texel value = 10 * row + column
    for u, v in [(0.5, 2.5), (2.5, 0.5), (1.5, 3.5), (3.5, 1.5), (0.5, 0.5), (2.5, 2.5)]:
        expected = 10 * np.floor(v + 0.5) + np.floor(u + 0.5)
        assert sample_at_a_corner(twin, texture, u, v, "nearest")[0] == expected, (u, v)


@pytest.mark.parametrize("twin", TWINS)
def test_bilinear_blends_within_each_row_first_in_float32(twin):
    """'bilinear' is (T00*(1-a) + T01*a)*(1-b) + (T10*(1-a) + T11*a)*b in float32, in this order (each row's two
    texels first, then the two rows): with texel values and fractions that binary fractions cannot hold, another
    order gives other bits."""
    texture = np.array([[[0.5, 0.2], [0.1, 0.3], [0.7, 0.6]],
                        [[0.5, 0.9], [0.3, 0.4], [0.9, 0.8]]], np.float32)
    u, v = np.float32(1.3), np.float32(0.8)  # between columns 1, 2 and rows 0, 1
    a, b = u - np.floor(u), v - np.floor(v)
    ia, ib = np.float32(1) - a, np.float32(1) - b
    t00, t01, t10, t11 = texture[0, 1], texture[0, 2], texture[1, 1], texture[1, 2]
    expected = (t00 * ia + t01 * a) * ib + (t10 * ia + t11 * a) * b
    within_each_column_first = (t00 * ib + t10 * b) * ia + (t01 * ib + t11 * b) * a
    # The order shows in every channel.
    assert expected.dtype == np.float32 and np.all(expected != within_each_column_first)
    assert np.array_equal(sample_at_a_corner(twin, texture, u, v, "bilinear"), expected)


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("mapping_type", ["nearest", "bilinear"])
def test_a_third_texture_coordinate_column_is_ignored(twin, mapping_type):
    """(ntex, 3) texture coordinates render exactly as their first two columns do (the third, here inside the
    texture's range too, is never read; one coordinate's row is three values from the next, not two)."""
    v, t = random_mesh(0)
    rng = np.random.default_rng(0)
    texture = rng.uniform(0, 1, (9, 13, 3)).astype(np.float32)
    uvw = rng.uniform(0, 8, (50, 3)).astype(np.float32)
    tex_triangles = rng.integers(0, 50, t.shape)
    args = (v, t, texture)
    got = twin.render_texture(*args, uvw, tex_triangles, H, W, mapping_type=mapping_type)
    want = twin.render_texture(*args, np.ascontiguousarray(uvw[:, :2]), tex_triangles, H, W,
                               mapping_type=mapping_type)
    assert np.array_equal(got, want)
    assert np.count_nonzero(got.any(axis=2)) > 50  # the case is not vacuous


def test_threads_rendering_at_once_agree():
    v, t = random_mesh(3, nver=300, ntri=3000)
    colors = np.random.default_rng(1).uniform(0, 1, (len(v), 3))
    want = cpp.render_colors(v, t, colors, H, W)
    results = [None] * 4

    def work(i):
        results[i] = cpp.render_colors(v, t, colors, H, W)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert all(np.array_equal(r, want) for r in results)


def test_render_kernel_releases_the_gil():
    """A Python thread counts while another runs the C++ kernel. The switch interval is made huge, so a thread
    running Python code is never preempted: the counter can only move during the kernel call if the kernel
    releases the GIL (holding it, the counter stays exactly where it was, on every attempt)."""
    h = w = 200
    v, t = random_mesh(5, nver=300, ntri=3000)
    v[:, :2] *= w / W
    v, t = _checks.as_mesh(v, t)  # the kernel's dtypes
    colors = _checks.as_attributes(np.random.default_rng(1).uniform(0, 1, (len(v), 3)), len(v), 3)
    counter = [0]
    moved = []

    def render():
        image = np.zeros((h, w, 3), dtype=np.float32)
        before = counter[0]
        code = _mesh_core.render_colors(v, t, colors, h, w, image)
        moved.append(counter[0] - before)
        assert code == 0

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        for _ in range(5):  # a loaded machine may not schedule the counter during one call; never during five
            worker = threading.Thread(target=render)
            worker.start()
            while worker.is_alive():
                counter[0] += 1
                time.sleep(0)  # releases the GIL, so the worker can take it back
            worker.join()
            if moved[-1] > 0:
                break
    finally:
        sys.setswitchinterval(interval)
    assert moved[-1] > 0, moved


def test_twins_expose_the_same_functions():
    assert cpp.__all__ == ref.__all__
    for name in cpp.__all__:
        assert inspect.signature(getattr(cpp, name)) == inspect.signature(getattr(ref, name)), name


# Every mesh.* / mesh_numpy.* name that face3d's examples 1-8 (YadiraF/face3d, examples/*.py) call.
FACE3D_EXAMPLE_NAMES = [
    "mesh.io.write_obj_with_colors_texture", "mesh.light.add_light", "mesh.render.render_colors",
    "mesh.render.render_texture", "mesh.transform.angle2matrix", "mesh.transform.lookat_camera",
    "mesh.transform.orthographic_project", "mesh.transform.perspective_project", "mesh.transform.similarity_transform",
    "mesh.transform.to_image", "mesh.vis.plot_mesh", "mesh_numpy.io.write_obj_with_colors_texture",
    "mesh_numpy.render.render_colors", "mesh_numpy.render.render_colors_ras", "mesh_numpy.render.render_texture",
]


@pytest.mark.parametrize("name", FACE3D_EXAMPLE_NAMES)
def test_names_that_face3d_examples_call_exist(name):
    import importlib

    package, module, function = name.split(".")
    assert callable(getattr(importlib.import_module(f"face3d.{package}.{module}"), function))


def test_render_colors_ras_is_render_colors():
    # face3d's render_colors_ras(vertices, triangles, colors, h, w, c=3) rasterises, then interpolates the colours
    # with the barycentric weights, zeros where no triangle is: render_colors with BG=None.
    assert ref.render_colors_ras is ref.render_colors


GOOD_V = np.array([[0, 0, 0], [4, 0, 0], [0, 4, 0]], dtype=np.float32)
GOOD_T = np.array([[0, 1, 2]])


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("kwargs, match", [
    (dict(vertices=np.zeros((3, 2))), r"^vertices must have shape \(n, 3\)"),
    (dict(vertices=np.array([[0, 0, 0], [np.nan, 0, 0], [0, 4, 0]])), r"^vertices must be finite"),
    (dict(vertices=np.array([[0, 0, 0], [np.inf, 0, 0], [0, 4, 0]])), r"^vertices must be finite"),
    (dict(vertices=np.array([[0, 0, 0], [0, np.nan, 0], [0, 4, 0]])), r"^vertices must be finite"),
    # depth too: a NaN or infinite z would otherwise lose or win every depth test unseen
    (dict(vertices=np.array([[0, 0, 0], [4, 0, np.nan], [0, 4, 0]])), r"^vertices must be finite"),
    (dict(vertices=np.array([[0, 0, 0], [4, 0, 0], [0, 4, -np.inf]])), r"^vertices must be finite"),
    (dict(triangles=np.array([[0, 1]])), r"^triangles must have shape \(ntri, 3\)"),
    (dict(triangles=np.array([[0, 1, 3]])), r"^triangles must hold indices into vertices in \[0, 3\)"),
    (dict(triangles=np.array([[0, -1, 2]], dtype=np.int32)), r"^triangles must hold indices"),
    (dict(triangles=np.array([[0, 1, 2 + 2 ** 32]])), r"^triangles must hold indices"),
    (dict(triangles=np.array([[0, 1, 1.5]])), r"^triangles must hold whole-number"),
    # a mesh wholly outside the image draws nothing, and its indices are still checked (int32: as the kernel
    # takes them, so that no conversion checks them first)
    (dict(vertices=GOOD_V - 100, triangles=np.array([[0, 1, 5]], dtype=np.int32)),
     r"^triangles must hold indices into vertices"),
    (dict(vertices=np.zeros((0, 3), np.float32), triangles=np.array([[0, 0, 0]], dtype=np.int32)),
     r"^triangles must hold indices into"),
    # a finite float64 that float32 cannot hold: named as such, not as the infinity the cast would make
    (dict(vertices=np.array([[0, 0, 0], [1e39, 0, 0], [0, 4, 0]])),
     r"^vertices must lie within the float32 range \(magnitude at most 3\.4028235e\+38\), found 1e\+39$"),
    (dict(h=0), r"^h must be a positive integer"),
    (dict(w=2.5), r"^w must be a positive integer"),
])
@pytest.mark.filterwarnings("error")  # and without a numpy warning on the way
def test_bad_input_raises_value_error_naming_the_argument(twin, kwargs, match):
    args = dict(vertices=GOOD_V, triangles=GOOD_T, h=5, w=5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        twin.rasterize_triangles(**args)
    colors = np.zeros((len(args["vertices"]), 3))
    with pytest.raises(ValueError, match=match):
        twin.render_colors(args["vertices"], args["triangles"], colors, args["h"], args["w"])
    if "h" not in kwargs and "w" not in kwargs:
        with pytest.raises(ValueError, match=match):
            twin.render_texture(args["vertices"], args["triangles"], np.zeros((4, 4, 3)), np.zeros((3, 2)),
                                GOOD_T, args["h"], args["w"])


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("mapping_type, width", [("nearest", 2**23 + 2), ("bilinear", 2**24 + 4)])
def test_a_lookup_clamped_to_the_last_column_of_a_very_wide_texture_reads_it(twin, mapping_type, width):
    """Past 2**23 texels float32 rounds u + 0.5 (past 2**24 even the last column's u) up to the width: the texel
    read must still be the row's last one, not the next row's first (or memory past the texture)."""
    texture = np.ones((2, width, 1), np.float32)
    texture[1, 0, 0] = 99.0  # the texel one past the end of row 0
    vertices = np.array([[0, 0, 0], [4, 0, 0], [0, 4, 0]], np.float32)
    triangles = np.array([[0, 1, 2]])
    tex_coords = np.full((3, 2), [1e9, 0], np.float32)  # u clamps to the last column, v to row 0
    image = twin.render_texture(vertices, triangles, texture, tex_coords, triangles, 5, 5, c=1,
                                mapping_type=mapping_type)
    assert image[0, 0, 0] == 1.0


@pytest.mark.parametrize("twin", TWINS)
def test_bad_colors_texture_and_background(twin):
    with pytest.raises(ValueError, match=r"^colors must have one row per vertex"):
        twin.render_colors(GOOD_V, GOOD_T, np.zeros((2, 3)), 5, 5)
    with pytest.raises(ValueError, match=r"^c must equal the number of channels of colors"):
        twin.render_colors(GOOD_V, GOOD_T, np.zeros((3, 2)), 5, 5, c=3)
    with pytest.raises(ValueError, match=r"^BG must broadcast"):
        twin.render_colors(GOOD_V, GOOD_T, np.zeros((3, 3)), 5, 5, BG=np.zeros((4, 5, 3)))
    with pytest.raises(ValueError, match=r"^BG must hold real numbers, got dtype <U5$"):
        twin.render_colors(GOOD_V, GOOD_T, np.zeros((3, 3)), 5, 5, BG="white")
    with pytest.raises(ValueError, match=r"^BG must lie within the float32 range \(magnitude at most 3.4028235e\+38\), "
                                         r"found 1e\+39$"):
        twin.render_colors(GOOD_V, GOOD_T, np.zeros((3, 3)), 5, 5, BG=1e39)
    tex = np.zeros((4, 4, 3))
    uv = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"^tex_triangles must hold indices into tex_coords in \[0, 3\)"):
        twin.render_texture(GOOD_V, GOOD_T, tex, uv, [[0, 1, 3]], 5, 5)
    with pytest.raises(ValueError, match=r"^tex_triangles must have one row per triangle"):
        twin.render_texture(GOOD_V, GOOD_T, tex, uv, [[0, 1, 2], [0, 1, 2]], 5, 5)
    with pytest.raises(ValueError, match=r"^tex_coords must be finite"):
        twin.render_texture(GOOD_V, GOOD_T, tex, [[0, 0], [np.nan, 0], [0, 0]], GOOD_T, 5, 5)
    with pytest.raises(ValueError, match=r"^mapping_type must be"):
        twin.render_texture(GOOD_V, GOOD_T, tex, uv, GOOD_T, 5, 5, mapping_type="cubic")
    with pytest.raises(ValueError, match=r"^c must equal the number of channels of texture"):
        twin.render_texture(GOOD_V, GOOD_T, tex, uv, GOOD_T, 5, 5, c=1)


# One fault per entry, each in one argument: several at once must give the same error in both twins.
FAULTS = {
    "NaN vertex": dict(vertices=np.array([[0, 0, 0], [4, 0, 0], [0, 4, 0], [np.nan, 0, 0]], np.float32)),
    "int64 index": dict(triangles=np.array([[0, 1, 9]])),
    "int32 index": dict(triangles=np.array([[0, 1, 9]], np.int32)),
    "whole-number index": dict(triangles=np.array([[0, 1, 2.5]])),
    "colors": dict(colors=np.zeros((2, 3))),
    "BG": dict(BG=np.zeros(7)),
    "texture": dict(texture=np.zeros((0, 4, 3))),
    "tex_coords": dict(tex_coords=np.array([[0, 0], [np.nan, 0], [0, 0]])),
    "int64 tex index": dict(tex_triangles=np.array([[0, 1, 5]])),
    "int32 tex index": dict(tex_triangles=np.array([[0, 1, 5]], np.int32)),
    "h": dict(h=0),
}


@pytest.mark.parametrize("faults", [(a, b) for i, a in enumerate(FAULTS) for b in list(FAULTS)[i + 1:]
                                    if FAULTS[a].keys() != FAULTS[b].keys()], ids=" + ".join)
def test_twins_raise_the_same_error_for_several_faults(faults):
    args = dict(vertices=np.array([[0, 0, 0], [4, 0, 0], [0, 4, 0], [4, 4, 0]], np.float32), triangles=GOOD_T,
                colors=np.zeros((4, 3)), BG=None, texture=np.zeros((4, 4, 3)), tex_coords=np.zeros((3, 2)),
                tex_triangles=GOOD_T, h=5, w=5)
    for fault in faults:
        args.update(FAULTS[fault])
    calls = {
        "rasterize_triangles": lambda twin: twin.rasterize_triangles(args["vertices"], args["triangles"], args["h"],
                                                                     args["w"]),
        "render_colors": lambda twin: twin.render_colors(args["vertices"], args["triangles"], args["colors"],
                                                         args["h"], args["w"], BG=args["BG"]),
        "render_texture": lambda twin: twin.render_texture(args["vertices"], args["triangles"], args["texture"],
                                                           args["tex_coords"], args["tex_triangles"], args["h"],
                                                           args["w"], BG=args["BG"]),
    }
    for name, call in calls.items():
        messages = []
        for twin in (cpp, ref):
            try:
                call(twin)
                messages.append(None)
            except ValueError as err:
                messages.append(str(err))
        assert messages[0] == messages[1], (name, messages)


def test_a_triangle_index_that_needs_converting_is_checked_before_the_vertices_are():
    v = np.array([[0, 0, 0], [4, 0, 0], [0, 4, 0], [np.nan, 0, 0]], np.float32)
    for twin in (cpp, ref):
        with pytest.raises(ValueError, match=r"^triangles must hold indices into vertices in \[0, 4\)"):
            twin.rasterize_triangles(v, np.array([[0, 1, 9]]), 5, 5)
        with pytest.raises(ValueError, match=r"^vertices must be finite, found NaN or inf$"):
            twin.rasterize_triangles(v, np.array([[0, 1, 9]], np.int32), 5, 5)


def test_background_is_not_modified():
    bg = np.full((5, 5, 3), 7.0)
    image = cpp.render_colors(GOOD_V, GOOD_T, np.ones((3, 3)), 5, 5, BG=bg)
    assert np.all(bg == 7.0) and image[0, 0, 0] == 1 and image[4, 4, 0] == 7


def test_private_kernel_checks_its_buffers():
    with pytest.raises(ValueError, match="depth"):
        _mesh_core.rasterize_triangles(GOOD_V, GOOD_T.astype(np.int32), 5, 5, np.zeros((5, 4), np.float32),
                                       np.zeros((5, 5), np.int32), np.zeros((5, 5, 3), np.float32))
    assert _mesh_core.rasterize_triangles(GOOD_V, np.array([[0, 1, 7]], np.int32), 5, 5,
                                          np.zeros((5, 5), np.float32), np.zeros((5, 5), np.int32),
                                          np.zeros((5, 5, 3), np.float32)) == 1
