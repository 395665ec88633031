"""Mean face surface of the default model: rows of vertices, triangulation, mouth seam, margin band, UV unwrap.

Millimetres, float64, the BFM's axes (x right, y up, z towards the viewer). The base surface is swept along y in
rows of superellipse arcs (``row_ys``, ``_row``), stitched by exact integer comparisons (``_stitch``); facial
features are smooth displacements of it (``feature_depth``); the mouth is a seam and a margin band lies beyond the
outline (``build_surface``). Triangles are clockwise seen from outside, as in the BFM (``Surface``).
"""
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import PchipInterpolator

from . import design as d

# Fine sampling of each row's base arc (quarter turn) used to place vertices by arc length.
_ARC_SAMPLES = 2001


@dataclass(frozen=True)
class Surface:
    """Mean face mesh in millimetres (float64), before conversion to the BFM layout.

    Attributes:
        base: (n, 3) base surface points (no features); duplicates of seam vertices repeat them.
        vertices: (n, 3) mean face (base + features + the mean lip gap).
        side: (n,) float64, +1 on and above the mouth seam (upper lip side), -1 below it and for
            the seam copies (lower lip side); margin vertices take their outline vertex's side.
        row: (n,) int32 row of each vertex (seam copies carry the mouth row); -1 on the margin band.
        unwrap: (n, 2) float64 (signed arc length from the midline along the base row, base y) in
            mm: the plane the UV unwrap scales; margin vertices are offset outwards in it.
        tri: (ntri, 3) int32 triangles, clockwise seen from outside (from +z for a frontal face), as in the BFM /
            face3d: the right-hand normal cross(v1 - v0, v2 - v0) points into the head (towards -z for a frontal
            face), which face3d's lighting (``face3d.mesh.light`` with ``clockwise=True``) expects.
        tri_mouth: (m, 3) int32 triangles closing the mouth slit, same orientation.
        mirror: (n,) int32 index of each vertex's mirror image (x -> -x).
        seam_upper, seam_lower: (k,) int32 upper / lower inner-lip polylines from the left corner
            to the right corner (corners shared).
    """
    base: np.ndarray
    vertices: np.ndarray
    side: np.ndarray
    row: np.ndarray
    unwrap: np.ndarray
    tri: np.ndarray
    tri_mouth: np.ndarray
    mirror: np.ndarray
    seam_upper: np.ndarray
    seam_lower: np.ndarray


def pchip(table):
    """Monotone cubic interpolant of a ((y, value), ...) knot table, clamped outside its range."""
    knots = np.asarray(table, dtype=np.float64)
    spline = PchipInterpolator(knots[:, 0], knots[:, 1], extrapolate=False)
    lo, hi = knots[0, 0], knots[-1, 0]
    return lambda y: spline(np.clip(y, lo, hi))


def half_width(y):
    """Mask half-width a(y) in mm: jaw ellipse below the tragus level, tapering temples above."""
    y = np.asarray(y, dtype=np.float64)
    amp, y0, rad = d.JAW_ELLIPSE
    below = amp * np.sqrt(np.clip(1.0 - ((y - y0) / rad) ** 2, 0.0, None))
    return np.where(y < y0, below, pchip(d.UPPER_HALF_WIDTH)(y))


def row_ys():
    """(nrows,) float64 row heights ``y_j = MOUTH_Y + ROW_STEP * (j - ROWS_BELOW_MOUTH)``, the mouth row exactly at
    MOUTH_Y."""
    k = np.arange(-d.ROWS_BELOW_MOUTH, d.ROWS_ABOVE_MOUTH + 1, dtype=np.float64)
    return d.MOUTH_Y + d.ROW_STEP * k


def _row(y):
    """Base points of one row, left to right: (x, z) arrays, signed arc length, and m (n = 2m+1).

    The row is a superellipse arc in the x-z plane from the mask's left side edge (x = -a(y), z = edge(y)) over the
    face front (x = 0, z = front(y)) to the right edge, sampled uniformly in arc length with an odd number of
    vertices (one on the midline).
    """
    a = float(half_width(y))
    edge = float(pchip(d.EDGE_Z)(y))
    front = float(pchip(d.FRONT_Z)(y))
    power = float(pchip(d.SECTION_POWER)(y))
    theta = np.linspace(0.0, np.pi / 2, _ARC_SAMPLES)
    ex = 2.0 / power
    xs = a * np.sin(theta) ** ex
    zs = edge + (front - edge) * np.cos(theta) ** ex
    cum = np.concatenate(([0.0], np.cumsum(np.hypot(np.diff(xs), np.diff(zs)))))
    m = max(1, int(round(cum[-1] / d.ROW_STEP)))
    s = cum[-1] * np.arange(m + 1, dtype=np.float64) / m
    x_half = np.interp(s, cum, xs)
    z_half = np.interp(s, cum, zs)
    # Mirror the right half so the row is exactly symmetric.
    x = np.concatenate((-x_half[:0:-1], x_half))
    z = np.concatenate((z_half[:0:-1], z_half))
    arc = np.concatenate((-s[:0:-1], s))
    return x, z, arc, m


def _stitch(lower, upper, m_lo, m_up):
    """Triangles between two rows of vertex indices (left to right), clockwise seen from +z.

    Vertices of a row with n = 2m+1 points sit at arc fractions (k - m)/m; the rows are merged by
    those fractions compared exactly as integers (k_lo - m_lo) * m_up vs (k_up - m_up) * m_lo, so the stitching
    depends only on integer vertex counts and the topology is identical on every machine.
    """
    tris = []
    i, k = 0, 0
    n_lo, n_up = len(lower), len(upper)
    while i < n_lo - 1 or k < n_up - 1:
        advance_lower = k == n_up - 1 or (
            i < n_lo - 1 and (i + 1 - m_lo) * m_up <= (k + 1 - m_up) * m_lo)
        if advance_lower:
            tris.append((lower[i], upper[k], lower[i + 1]))
            i += 1
        else:
            tris.append((lower[i], upper[k], upper[k + 1]))
            k += 1
    return tris


def _gauss(x, y, spec, mirrored):
    cx, cy, amp, rx, ry = spec
    out = amp * np.exp(-((x - cx) / rx) ** 2 - ((y - cy) / ry) ** 2)
    if mirrored:
        out = out + amp * np.exp(-((x + cx) / rx) ** 2 - ((y - cy) / ry) ** 2)
    return out


def _bump(x, y, spec):
    """Mirrored compact bump amp * (1 - r^2)^2 inside the ellipse of radii (rx, ry)."""
    cx, cy, amp, rx, ry = spec
    out = np.zeros_like(x)
    for sx in (cx, -cx):
        r2 = ((x - sx) / rx) ** 2 + ((y - cy) / ry) ** 2
        out += amp * np.clip(1.0 - r2, 0.0, None) ** 2
    return out


def smoothstep(t):
    """C1 ramp: 0 for t <= 0, 1 for t >= 1, 3t^2 - 2t^3 between."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def lip_opening(x, y, side):
    """Signed lip-separating field (dimensionless): +K on the upper lip side, -K on the lower.

    K = sqrt(1 - (x / c)^2) * exp(-((y - MOUTH_Y) / LIP_FALLOFF)^2) for |x| < c (the mouth
    half-width), 0 outside, so the field is continuous everywhere except across the mouth slit.
    """
    c = d.MOUTH_HALF_WIDTH
    across = np.sqrt(np.clip(1.0 - (x / c) ** 2, 0.0, None))
    return side * across * np.exp(-((y - d.MOUTH_Y) / d.LIP_FALLOFF) ** 2)


def feature_depth(x, y):
    """z displacement (mm) of the facial features (nose, eye sockets, brows, cheekbones, lips, chin) at base
    positions (x, y): smooth functions of each vertex's base (x, y), added to the base surface."""
    nose_w = pchip(d.NOSE_HALF_WIDTH)(y)
    dz = pchip(d.NOSE_HEIGHT)(y) * np.exp(-(x / nose_w) ** 2)
    dz += _gauss(x, y, d.NOSE_ALA, True)
    dz += _gauss(x, y, d.EYE_SOCKET, True)
    dz += _bump(x, y, d.EYE_BULGE)
    by, bamp, bry, binner, bouter = d.BROW_RIDGE
    ax = np.abs(x)
    dz += (bamp * np.exp(-((y - by) / bry) ** 2)
           * smoothstep((ax - binner) / 10.0) * smoothstep((bouter - ax) / 10.0))
    dz += _gauss(x, y, d.CHEEKBONE, True)
    dz += _gauss(x, y, d.TEMPLE, True)
    dz += _gauss(x, y, d.UPPER_LIP, False)
    dz += _gauss(x, y, d.LOWER_LIP, False)
    dz += _gauss(x, y, d.MOUTH_CORNER, True)
    dz += _gauss(x, y, d.LABIOMENTAL, False)
    dz += _gauss(x, y, d.CHIN, False)
    return dz


def build_surface():
    """Build the mean face mesh (see :class:`Surface`); millimetres, float64, deterministic.

    The mouth is a seam: the interior vertices of the mouth row are duplicated; triangles above the seam use the
    originals (upper lip), triangles below use the copies (lower lip), and ``tri_mouth`` spans the slit between
    them; ``side`` (+1 upper, -1 lower) lets deformation fields open the lips. Beyond the mask's side edges and
    below its chin row lies the margin band (``_margin_band``).
    """
    ys = row_ys()
    j_mouth = d.ROWS_BELOW_MOUTH
    xs, zs, arcs, ms, starts = [], [], [], [], []
    start = 0
    for y in ys:
        x, z, arc, m = _row(y)
        xs.append(x), zs.append(z), arcs.append(arc), ms.append(m), starts.append(start)
        start += x.size
    n_rows = len(ys)
    rows = [np.arange(starts[j], starts[j] + xs[j].size, dtype=np.int64) for j in range(n_rows)]
    n_main = start

    # Mouth seam: interior vertices of the mouth row (|x| < c) get copies for the lower lip.
    x_mouth = xs[j_mouth]
    interior = np.flatnonzero(np.abs(x_mouth) < d.MOUTH_HALF_WIDTH)
    if interior.size == 0 or interior[0] == 0 or interior[-1] == x_mouth.size - 1:
        raise ValueError("design: the mouth slit must lie strictly inside the mouth row")
    seam_orig = rows[j_mouth][interior]
    seam_copy = n_main + np.arange(interior.size, dtype=np.int64)
    copy_of = dict(zip(seam_orig.tolist(), seam_copy.tolist()))

    tris = []
    for j in range(n_rows - 1):
        strip = _stitch(rows[j], rows[j + 1], ms[j], ms[j + 1])
        if j + 1 == j_mouth:  # strip just below the seam: the lower lip uses the copies
            strip = [tuple(copy_of.get(v, v) for v in t) for t in strip]
        tris.extend(strip)
    tri = np.asarray(tris, dtype=np.int32)

    corner_l = rows[j_mouth][interior[0] - 1]
    corner_r = rows[j_mouth][interior[-1] + 1]
    upper = np.concatenate(([corner_l], seam_orig, [corner_r])).astype(np.int32)
    lower = np.concatenate(([corner_l], seam_copy, [corner_r])).astype(np.int32)
    mouth = []
    for i in range(upper.size - 1):
        if i > 0:
            mouth.append((lower[i], upper[i], lower[i + 1]))
        if i < upper.size - 2:
            mouth.append((lower[i + 1], upper[i], upper[i + 1]))
    tri_mouth = np.asarray(mouth, dtype=np.int32)

    row_of = np.concatenate([np.full(xs[j].size, j, dtype=np.int32) for j in range(n_rows)])
    x_all = np.concatenate(xs + [xs[j_mouth][interior]])
    z_all = np.concatenate(zs + [zs[j_mouth][interior]])
    arc_all = np.concatenate(arcs + [arcs[j_mouth][interior]])
    row_all = np.concatenate((row_of, np.full(interior.size, j_mouth, dtype=np.int32)))
    y_all = ys[row_all]
    side = np.where(row_all >= j_mouth, 1.0, -1.0)
    side[n_main:] = -1.0

    # Mirror partner: position k in a row of n points <-> n-1-k; copies mirror among themselves.
    local = np.arange(n_main) - np.asarray(starts)[row_of]
    sizes = np.asarray([x.size for x in xs])[row_of]
    mirror_main = np.asarray(starts)[row_of] + sizes - 1 - local
    mirror_copy = seam_copy[::-1]
    mirror = np.concatenate((mirror_main, mirror_copy)).astype(np.int32)

    base = np.column_stack((x_all, y_all, z_all))
    unwrap = np.column_stack((arc_all, y_all))
    outline = np.concatenate([[rows[j][0] for j in range(n_rows - 1, 0, -1)], rows[0],
                              [rows[j][-1] for j in range(1, n_rows)]])
    band = _margin_band(base, unwrap, outline, base.shape[0])
    base = np.concatenate((base, band["base"]))
    unwrap = np.concatenate((unwrap, band["unwrap"]))
    side = np.concatenate((side, np.tile(side[outline], d.MARGIN_RINGS)))
    row_all = np.concatenate((row_all, np.full(band["base"].shape[0], -1, dtype=np.int32)))
    mirror = np.concatenate((mirror, band["mirror"])).astype(np.int32)
    tri = np.concatenate((tri, band["tri"]))

    x_all, y_all = base[:, 0], base[:, 1]
    vertices = base.copy()
    vertices[:, 2] += feature_depth(x_all, y_all)
    vertices[:, 1] += 0.5 * d.MOUTH_GAP * lip_opening(x_all, y_all, side)
    return Surface(base=base, vertices=vertices, side=side, row=row_all, unwrap=unwrap, tri=tri,
                   tri_mouth=tri_mouth, mirror=mirror, seam_upper=upper, seam_lower=lower)


def _outward_normals(points):
    """(L, 2) unit normals pointing to the right of a polyline (L, 2) (outwards for an outline
    run with the surface on its left), from central differences (one-sided at the ends)."""
    tangent = np.empty_like(points)
    tangent[1:-1] = points[2:] - points[:-2]
    tangent[0] = points[1] - points[0]
    tangent[-1] = points[-1] - points[-2]
    normal = np.column_stack((tangent[:, 1], -tangent[:, 0]))
    return normal / np.linalg.norm(normal, axis=1, keepdims=True)


def _margin_band(base, unwrap, outline, first):
    """Margin band beyond the U-shaped outline (mask side edges and chin row), see design.MARGIN_*: rings of
    vertices offset from that outline, so that, as in the BFM, the jaw line is inside the surface and the UV layout
    has an under-chin / neck strip below it.

    Args:
        base: (n, 3) base points; unwrap: (n, 2) unwrap parameters (arc, height), mm.
        outline: (L,) vertex indices from the top-left corner down the left edge, along the chin
            row and up the right edge (L odd, mirror-symmetric: i <-> L-1-i).
        first: index of the first band vertex.
    Returns:
        dict with "base" (K*L, 3), "unwrap" (K*L, 2), "mirror" (K*L,) and "tri" (2*K*(L-1), 3)
        clockwise from outside; ring k = 1..K holds vertices first + (k-1)*L + i.
    """
    rings = d.MARGIN_RINGS
    length = outline.size
    pts = base[outline]
    y = pts[:, 1]
    blend = smoothstep((d.MARGIN_BLEND_Y[0] - y) / (d.MARGIN_BLEND_Y[0] - d.MARGIN_BLEND_Y[1]))
    out_xy = _outward_normals(pts[:, :2])
    step = np.column_stack((d.MARGIN_SPREAD * out_xy, -np.ones(length)))
    step *= ((d.MARGIN_WIDTH[0] + (d.MARGIN_WIDTH[1] - d.MARGIN_WIDTH[0]) * blend)
             / np.linalg.norm(step, axis=1))[:, None]
    uv_step = _outward_normals(unwrap[outline]) * (
        d.MARGIN_UV_WIDTH[0] + (d.MARGIN_UV_WIDTH[1] - d.MARGIN_UV_WIDTH[0]) * blend)[:, None]
    # Exact mirror symmetry: the right half copies the left half's steps with x negated.
    mid = length // 2
    step[mid + 1:] = step[mid - 1::-1] * np.array([-1.0, 1.0, 1.0])
    step[mid, 0] = 0.0
    uv_step[mid + 1:] = uv_step[mid - 1::-1] * np.array([-1.0, 1.0])
    uv_step[mid, 0] = 0.0

    frac = np.arange(1, rings + 1, dtype=np.float64)[:, None, None] / rings
    band_base = (pts[None] + frac * step[None]).reshape(-1, 3)
    band_unwrap = (unwrap[outline][None] + frac * uv_step[None]).reshape(-1, 2)
    mirror = (first + np.arange(rings)[:, None] * length
              + np.arange(length)[None, ::-1]).reshape(-1)

    # Quads between ring k-1 (inner; ring 0 is the outline) and ring k, split along mirrored
    # diagonals on the two halves.
    ring_ids = first + np.arange(rings * length).reshape(rings, length)
    index = np.concatenate((outline[None], ring_ids))
    tris = []
    for k in range(1, rings + 1):
        for i in range(length - 1):
            a, b = index[k - 1, i], index[k - 1, i + 1]
            c, e = index[k, i], index[k, i + 1]
            tris += [(a, b, e), (a, e, c)] if i < mid else [(a, b, c), (b, e, c)]
    return {"base": band_base, "unwrap": band_unwrap, "mirror": mirror,
            "tri": np.asarray(tris, dtype=np.int32)}


def uv_unwrap(surface, margin=0.02):
    """Cylindrical-style UV coordinates of the surface, (n, 2) float64 in [margin, 1 - margin].

    u is the signed base arc length from the midline (uniform scale for all rows, so the chin's
    shorter rows map narrower, as in a face-shaped unwrap), v the height; both scaled to fill the
    square.  The mouth slit is opened by 1.5 UV pixels at 256 so that upper and lower inner-lip
    vertices never share a UV position.

    Margin vertices take their offset (arc, height) parameters, so the under-chin strip lies below
    the jaw line in UV and the side margin beyond the jaw contour.
    """
    arc, height = surface.unwrap[:, 0], surface.unwrap[:, 1]
    half = np.abs(arc).max()
    h_lo, h_hi = height.min(), height.max()
    span = 1.0 - 2.0 * margin
    u = 0.5 + 0.5 * span * arc / half
    v = margin + span * (height - h_lo) / (h_hi - h_lo)
    v += 0.5 * (1.5 / 256.0) * lip_opening(surface.base[:, 0], surface.base[:, 1], surface.side)
    return np.column_stack((u, v))


def snap_to_pixel_centres(uv, indices, resolution):
    """Copy of ``uv`` (n, 2) float64 with the rows ``indices`` moved to the nearest UV pixel centre.

    PRNet reads a position map at ``(round(u*(r-1)), round((r-1) - v*(r-1)))``; with u*(r-1) and
    v*(r-1) integers that pixel's centre is the vertex itself, so the map holds the vertex's
    position exactly instead of an interpolation up to half a pixel away.  Each move is at most
    half a pixel per axis.
    """
    out = np.array(uv, dtype=np.float64)
    r1 = float(resolution - 1)
    out[indices] = np.round(out[indices] * r1) / r1
    return out
