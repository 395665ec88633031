"""Rasterisation and rendering of triangle meshes with the C++ kernels of face3d.mesh._mesh_core.

face3d.mesh_numpy.render has the same functions in plain numpy and produces the same buffers bit for bit (the tests
hold both to that); the kernels run without the GIL, so several threads can render at once.
Vertices are (nver, 3) in image coordinates: x to the right, y down, the centre of pixel (x, y) at integer
coordinates (x, y), a larger z nearer the viewer. Triangles are (ntri, 3) 0-based vertex indices; either winding is
drawn (no back-face culling). The pixel rule is in ``rasterize_triangles``; README: "Mesh core".
"""
import numpy as np

from face3d.mesh import _checks, _mesh_core

__all__ = ["rasterize_triangles", "render_colors", "render_texture"]


def _raise_for(code, nver, ntex=0):
    """Turns a kernel status code into the ValueError the numpy twin raises for the same input."""
    if code == 1:
        raise ValueError(_checks.index_range_message("triangles", nver))
    if code == 2:
        raise ValueError(_checks.nonfinite_message("vertices"))
    if code == 3:
        raise ValueError(_checks.index_range_message("tex_triangles", ntex, "tex_coords"))
    if code == 4:
        raise MemoryError("mesh kernel could not allocate its scratch buffers")
    if code != 0:
        raise RuntimeError(f"mesh kernel failed with status {code}")


def rasterize_triangles(vertices, triangles, h, w):
    """Rasterises a mesh: which triangle is visible at each pixel centre, at what depth and barycentric weights.

    Pixel rule. With X_i, Y_i the triangle's vertex coordinates (float32 converted to float64),
    area = (X1-X0)*(Y2-Y0) - (Y1-Y0)*(X2-X0); triangles with area == 0 are skipped; s = sign(area). For edge i, from
    vertex j = i+1 to vertex k = i+2 (mod 3): dx = s*(Xk-Xj), dy = s*(Yk-Yj), E_i(x, y) = dx*(y-Yj) - dy*(x-Xj), all
    in float64 in exactly this order. A pixel centre (x, y) is covered iff it lies in the triangle's bounding box
    [ceil(min X), floor(max X)] x [ceil(min Y), floor(max Y)] clipped to the image and, for every edge, E_i > 0, or
    E_i == 0 and the edge is a top-left edge (dy < 0, or dy == 0 and dx > 0): a pixel centre on an edge shared by two
    triangles belongs to exactly one of them (whenever the float64 edge functions are exact, e.g. for coordinates on
    a 1/256-pixel grid; otherwise up to float64 rounding). The barycentric weights are w_i = E_i / |area|
    (float64), the depth is z = float32((w0*Z0 + w1*Z1) + w2*Z2), and a pixel takes the triangle iff z > the depth
    it holds (initially -inf): the nearest triangle wins, and among equal depths the one with the lowest index.
    Either winding is drawn (no back-face culling).

    Args:
        vertices: (nver, 3) float array in image coordinates (x right, y down, pixel centres at integers);
            larger z is nearer.
        triangles: (ntri, 3) int array of 0-based vertex indices.
        h, w: image height and width in pixels (positive ints).
    Returns:
        depth_buffer: (h, w) float32, z of the visible surface, -inf where no triangle covers the pixel.
        triangle_buffer: (h, w) int32, index of the visible triangle, -1 where empty.
        barycentric_weight: (h, w, 3) float32, weights of the visible triangle's vertices (0 where empty).
    Raises:
        ValueError: naming vertices / triangles / h / w for a wrong shape or dtype, an index outside [0, nver),
        a non-finite vertex or a non-positive size.
    """
    h, w = _checks.as_size(h, "h"), _checks.as_size(w, "w")
    v, t = _checks.as_mesh(vertices, triangles)
    depth = np.empty((h, w), dtype=np.float32)
    tri_buf = np.empty((h, w), dtype=np.int32)
    bary = np.empty((h, w, 3), dtype=np.float32)
    _raise_for(_mesh_core.rasterize_triangles(v, t, h, w, depth, tri_buf, bary), v.shape[0])
    return depth, tri_buf, bary


def render_colors(vertices, triangles, colors, h, w, c=3, BG=None):
    """Renders a mesh with per-vertex attributes (colours, depth, positions, ...) interpolated over each triangle.

    Each covered pixel gets (w0*C0 + w1*C1) + w2*C2 in float32, with the visible triangle's barycentric weights
    w_i (float32, see rasterize_triangles and its pixel rule) and its vertices' attributes C_i.

    Args:
        vertices: (nver, 3) float array in image coordinates (as in rasterize_triangles).
        triangles: (ntri, 3) int array of 0-based vertex indices.
        colors: (nver, c) float array of per-vertex attributes, any number of channels ((nver,) means c = 1).
        h, w: image height and width in pixels.
        c: number of channels; must equal colors.shape[1].
        BG: background: None (zeros), a scalar, a (c,) colour or an (h, w, c) image (not modified).
    Returns:
        image: (h, w, c) float32.
    Raises:
        ValueError: naming the argument, as in rasterize_triangles, or colors / c / BG when they do not match.
    """
    h, w, c = _checks.as_size(h, "h"), _checks.as_size(w, "w"), _checks.as_channels(c)
    v, t = _checks.as_mesh(vertices, triangles)
    col = _checks.as_attributes(colors, v.shape[0], c)
    image = _checks.background(BG, h, w, c)
    _raise_for(_mesh_core.render_colors(v, t, col, h, w, image), v.shape[0])
    return image


def render_texture(vertices, triangles, texture, tex_coords, tex_triangles, h, w, c=3, mapping_type="nearest",
                   BG=None):
    """Renders a mesh with a texture map.

    Each covered pixel interpolates the texture coordinates of the visible triangle's corners,
    u = (w0*U0 + w1*U1) + w2*U2 (float32, likewise v), clamps them to [0, tex_w-1] x [0, tex_h-1] and samples
    the texture: 'nearest' takes texel (row floor(v + 0.5), column floor(u + 0.5)), at most (tex_h-1, tex_w-1)
    (float32 rounding past 2**23 texels a side); 'bilinear' blends the four texels around (u, v), clamped to the
    edge: (T00*(1-a) + T01*a)*(1-b) + (T10*(1-a) + T11*a)*b with a = u - floor(u), b = v - floor(v).

    Args:
        vertices: (nver, 3) float array in image coordinates (as in rasterize_triangles).
        triangles: (ntri, 3) int array of vertex indices.
        texture: (tex_h, tex_w, c) array (any real dtype; uint8 stays in 0..255).
        tex_coords: (ntex, 2) or (ntex, 3) float array, texture pixel coordinates: column 0 = x (texel column),
            column 1 = y (texel row, down), texel centres at integers; other columns are ignored.
        tex_triangles: (ntri, 3) int array of indices into tex_coords, one row per triangle.
        h, w: image height and width in pixels.
        c: number of channels; must equal texture.shape[2].
        mapping_type: 'nearest' or 'bilinear'.
        BG: background, as in render_colors.
    Returns:
        image: (h, w, c) float32.
    Raises:
        ValueError: naming the argument for wrong shapes, out-of-range indices or non-finite coordinates.
    """
    h, w, c = _checks.as_size(h, "h"), _checks.as_size(w, "w"), _checks.as_channels(c)
    bilinear = _checks.mapping(mapping_type)
    v, t = _checks.as_mesh(vertices, triangles)
    tex = _checks.as_texture(texture, c)
    uv = _checks.as_tex_coords(tex_coords)
    tt = _checks.as_indices(tex_triangles, uv.shape[0], "tex_triangles", "tex_coords", check_range=False)
    if tt.shape[0] != t.shape[0]:
        raise ValueError(f"tex_triangles must have one row per triangle ({t.shape[0]}), got {tt.shape[0]}")
    image = _checks.background(BG, h, w, c)
    code = _mesh_core.render_texture(v, t, tex, uv, tt, h, w, bilinear, image)
    _raise_for(code, v.shape[0], uv.shape[0])
    return image
