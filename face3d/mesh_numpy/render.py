"""Rasterisation and rendering of triangle meshes in plain numpy: the reference twin of face3d.mesh.render.

Same signatures, conventions, pixel rule, validation and results (bit for bit) as the C++ kernels (documented
there); vectorised over (triangle, pixel) candidate pairs, processed in chunks of bounded memory (a large
triangle's bounding box is split across chunks), then over the covered pixels, in chunks too.
"""
import numpy as np

from face3d.mesh import _checks

__all__ = ["rasterize_triangles", "render_colors", "render_texture"]

# Upper bound on the (triangle, pixel) candidate pairs held at once (each costs about 200 bytes of temporaries), and
# on the pixels interpolated at once.
_CHUNK_PAIRS = 1 << 18


def _clip_span(lo, hi, size):
    """First and last pixel centres of [lo, hi] inside [0, size-1] (float32 arithmetic, as the C++ kernel)."""
    first = np.maximum(np.ceil(lo), np.float32(0))
    last = np.minimum(np.floor(hi), np.float32(size - 1))
    return first, last


class _Setup:
    """Per-triangle quantities of the pixel rule (float64), for the triangles that can cover a pixel: non-empty
    clipped bounding box and non-zero area, in triangle order."""

    def __init__(self, v, t, h, w):
        p = v[t]  # (ntri, 3 corners, 3 coords) float32
        x0, x1 = _clip_span(p[:, :, 0].min(1), p[:, :, 0].max(1), w)
        y0, y1 = _clip_span(p[:, :, 1].min(1), p[:, :, 1].max(1), h)
        X, Y = p[:, :, 0].astype(np.float64), p[:, :, 1].astype(np.float64)
        area = (X[:, 1] - X[:, 0]) * (Y[:, 2] - Y[:, 0]) - (Y[:, 1] - Y[:, 0]) * (X[:, 2] - X[:, 0])
        keep = np.flatnonzero((x0 <= x1) & (y0 <= y1) & (area != 0))
        self.tid = keep
        self.x0, self.y0 = x0[keep].astype(np.int64), y0[keep].astype(np.int64)
        self.bw = x1[keep].astype(np.int64) - self.x0 + 1
        self.count = self.bw * (y1[keep].astype(np.int64) - self.y0 + 1)
        X, Y, area = X[keep], Y[keep], area[keep]
        self.Z = p[keep, :, 2].astype(np.float64)
        s = np.where(area > 0, 1.0, -1.0)
        self.A = s * area
        self.edges = []
        for i in range(3):
            j, k = (i + 1) % 3, (i + 2) % 3
            dx, dy = s * (X[:, k] - X[:, j]), s * (Y[:, k] - Y[:, j])
            top_left = (dy < 0) | ((dy == 0) & (dx > 0))
            self.edges.append((dx, dy, X[:, j], Y[:, j], top_left))


def _spans(count):
    """Splits each triangle's bounding box (count pixels, numbered row by row) into spans of at most _CHUNK_PAIRS
    consecutive pixels (bands of whole rows when the box is at most _CHUNK_PAIRS wide), so that no triangle, however
    large, is held at once. Returns the setup index of each span's triangle, its first pixel and its pixel count,
    in triangle order."""
    n = -(-count // _CHUNK_PAIRS)
    owner = np.repeat(np.arange(count.size), n)
    first = (np.arange(owner.size) - np.repeat(np.cumsum(n) - n, n)) * _CHUNK_PAIRS
    return owner, first, np.minimum(count[owner] - first, _CHUNK_PAIRS)


def _rasterize_pairs(su, owner, first, size, w):
    """Covered (pixel, triangle) pairs of the spans (setup index, first pixel, pixel count) of _spans: flat pixel
    index, triangle, z (float32), weights."""
    rep = np.repeat(owner, size)  # setup index of each candidate pair
    local = np.arange(size.sum()) - np.repeat(np.cumsum(size) - size - first, size)  # pixel number in the box
    bw = su.bw[rep]
    px = (su.x0[rep] + local % bw).astype(np.float64)
    py = (su.y0[rep] + local // bw).astype(np.float64)
    inside = np.ones(px.shape, dtype=bool)
    E = []
    for dx, dy, xj, yj, top_left in su.edges:
        e = dx[rep] * (py - yj[rep]) - dy[rep] * (px - xj[rep])
        inside &= (e > 0) | (top_left[rep] & (e == 0))
        E.append(e)
    covered = rep[inside]
    wts = [e[inside] / su.A[covered] for e in E]
    Z = su.Z[covered]
    z = (wts[0] * Z[:, 0] + wts[1] * Z[:, 1] + wts[2] * Z[:, 2]).astype(np.float32)
    pix = (py[inside] * w + px[inside]).astype(np.int64)
    return pix, su.tid[covered], z, np.stack(wts, axis=1).astype(np.float32)


def _rasterize(v, t, h, w):
    depth = np.full(h * w, -np.inf, dtype=np.float32)
    tri_buf = np.full(h * w, -1, dtype=np.int32)
    bary = np.zeros((h * w, 3), dtype=np.float32)
    if t.shape[0] == 0:
        return depth, tri_buf, bary
    su = _Setup(v, t, h, w)
    owner, first, size = _spans(su.count)
    ends = np.cumsum(size)
    start = 0
    while start < size.size:
        # Chunks hold whole spans in triangle order, and the spans of one triangle cover different pixels, so
        # "strictly nearer than what earlier chunks left" is the sequential strict z-test. A span holds at most
        # _CHUNK_PAIRS pixels, so every chunk holds at least one.
        done = ends[start - 1] if start else 0
        stop = int(np.searchsorted(ends, done + _CHUNK_PAIRS, side="right"))
        chunk = slice(start, stop)
        pix, tri, z, wts = _rasterize_pairs(su, owner[chunk], first[chunk], size[chunk], w)
        order = np.lexsort((tri, -z, pix))  # per pixel: nearest first, then lowest triangle index
        pix, tri, z, wts = pix[order], tri[order], z[order], wts[order]
        first_of_pixel = np.ones(pix.size, dtype=bool)
        first_of_pixel[1:] = pix[1:] != pix[:-1]
        pix, tri, z, wts = pix[first_of_pixel], tri[first_of_pixel], z[first_of_pixel], wts[first_of_pixel]
        win = z > depth[pix]
        depth[pix[win]], tri_buf[pix[win]], bary[pix[win]] = z[win], tri[win], wts[win]
        start = stop
    return depth, tri_buf, bary


def rasterize_triangles(vertices, triangles, h, w):
    """Numpy twin of face3d.mesh.render.rasterize_triangles (same arguments, bit-identical result)."""
    h, w = _checks.as_size(h, "h"), _checks.as_size(w, "w")
    v, t = _checks.as_mesh(vertices, triangles)
    _checks.kernel_checks(v, t)
    depth, tri_buf, bary = _rasterize(v, t, h, w)
    return depth.reshape(h, w), tri_buf.reshape(h, w), bary.reshape(h, w, 3)


def _covered_chunks(tri_buf):
    """Flat indices (int64) of the covered pixels (tri_buf >= 0) of successive runs of _CHUNK_PAIRS pixels, so that
    the interpolation's per-pixel temporaries are bounded (about 65 bytes per pixel: 270 MB at 2048 x 2048 at once)."""
    for start in range(0, tri_buf.size, _CHUNK_PAIRS):
        yield start + np.flatnonzero(tri_buf[start:start + _CHUNK_PAIRS] >= 0)


def _interpolate(values, corners, bary):
    """(w0*V0 + w1*V1) + w2*V2 in float32 for (npix, 3) corner indices and (npix, 3) weights."""
    return (bary[:, 0:1] * values[corners[:, 0]] + bary[:, 1:2] * values[corners[:, 1]]
            + bary[:, 2:3] * values[corners[:, 2]])


def render_colors(vertices, triangles, colors, h, w, c=3, BG=None):
    """Numpy twin of face3d.mesh.render.render_colors (same arguments, bit-identical result)."""
    h, w, c = _checks.as_size(h, "h"), _checks.as_size(w, "w"), _checks.as_channels(c)
    v, t = _checks.as_mesh(vertices, triangles)
    col = _checks.as_attributes(colors, v.shape[0], c)
    image = _checks.background(BG, h, w, c).reshape(h * w, c)
    _checks.kernel_checks(v, t)
    tri_buf, bary = _rasterize(v, t, h, w)[1:]
    for pix in _covered_chunks(tri_buf):
        image[pix] = _interpolate(col, t[tri_buf[pix]], bary[pix])
    return image.reshape(h, w, c)


# face3d's name (its examples/5_render.py calls it): face3d's numpy render_colors_ras(vertices, triangles, colors,
# h, w, c=3) rasterises first and then interpolates, zeros where no triangle is, which render_colors does.
render_colors_ras = render_colors


def render_texture(vertices, triangles, texture, tex_coords, tex_triangles, h, w, c=3, mapping_type="nearest",
                   BG=None):
    """Numpy twin of face3d.mesh.render.render_texture (same arguments, bit-identical result)."""
    h, w, c = _checks.as_size(h, "h"), _checks.as_size(w, "w"), _checks.as_channels(c)
    bilinear = _checks.mapping(mapping_type)
    v, t = _checks.as_mesh(vertices, triangles)
    tex = _checks.as_texture(texture, c)
    uv = _checks.as_tex_coords(tex_coords)
    tt = _checks.as_indices(tex_triangles, uv.shape[0], "tex_triangles", "tex_coords", check_range=False)
    if tt.shape[0] != t.shape[0]:
        raise ValueError(f"tex_triangles must have one row per triangle ({t.shape[0]}), got {tt.shape[0]}")
    image = _checks.background(BG, h, w, c).reshape(h * w, c)
    _checks.kernel_checks(v, t, tt, uv.shape[0])
    tri_buf, bary = _rasterize(v, t, h, w)[1:]
    for pix in _covered_chunks(tri_buf):
        image[pix] = _sample(tex, _interpolate(uv[:, :2], tt[tri_buf[pix]], bary[pix]), bilinear)
    return image.reshape(h, w, c)


def _sample(tex, coords, bilinear):
    """Texels of the (th, tw, c) float32 texture at (npix, 2) float32 (u, v) coordinates, clamped to the texture,
    nearest or bilinear (float32, the kernel's formula): (npix, c) float32."""
    th, tw = tex.shape[:2]
    u, vv = coords[:, 0], coords[:, 1]
    # Written like the kernel so that NaN clamps to 0.
    u = np.where(u >= 0, u, np.float32(0))
    u = np.where(u <= np.float32(tw - 1), u, np.float32(tw - 1))
    vv = np.where(vv >= 0, vv, np.float32(0))
    vv = np.where(vv <= np.float32(th - 1), vv, np.float32(th - 1))
    # Past 2**23 texels a float32 side rounds (u + 0.5, past 2**24 tw - 1 itself): integer indices clamped again.
    if not bilinear:
        ix = np.minimum(np.floor(u + np.float32(0.5)).astype(np.int64), tw - 1)
        iy = np.minimum(np.floor(vv + np.float32(0.5)).astype(np.int64), th - 1)
        return tex[iy, ix]
    fu, fv = np.floor(u), np.floor(vv)
    x0, y0 = np.minimum(fu.astype(np.int64), tw - 1), np.minimum(fv.astype(np.int64), th - 1)
    x1, y1 = np.minimum(x0 + 1, tw - 1), np.minimum(y0 + 1, th - 1)
    a, b = (u - fu)[:, None], (vv - fv)[:, None]
    ia, ib = np.float32(1) - a, np.float32(1) - b
    return (tex[y0, x0] * ia + tex[y0, x1] * a) * ib + (tex[y1, x0] * ia + tex[y1, x1] * a) * b
