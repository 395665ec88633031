"""Mean face surface of the default model: rows of vertices, triangulation, mouth seam, UV unwrap.

Swept along y: row ``j`` sits at ``y_j = MOUTH_Y + ROW_STEP * (j - ROWS_BELOW_MOUTH)``
a superellipse arc in the x-z plane from the mask's left side edge (x = -a(y), z = edge(y)) over
the face front (x = 0, z = front(y)) to the right edge, sampled uniformly in arc length with
an odd number of vertices (one on the midline).  Because each row's vertices sit at arc-length
fractions k/m (exact rationals), the stitching of neighbouring rows into triangles depends only on
integer vertex counts, which keeps the topology identical on every machine.  Facial features (nose,
eye sockets, brows, cheekbones, lips, chin) are smooth displacements of this base surface, added as
functions of each vertex's base (x, y).

The mouth is a seam: the interior vertices of the mouth row are duplicated; triangles above the
seam use the originals (upper lip), triangles below use the copies (lower lip), and ``tri_mouth``
spans the slit between them.  ``side`` (+1 upper, -1 lower) lets deformation fields open the lips.
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
            the seam copies (lower lip side).
        row: (n,) int32 row of each vertex (seam copies carry the mouth row).
        arc: (n,) float64 signed arc length (mm) from the midline along the base row.
        tri: (ntri, 3) int32 triangles, counter-clockwise seen from +z.
        tri_mouth: (m, 3) int32 triangles closing the mouth slit, same orientation.
        mirror: (n,) int32 index of each vertex's mirror image (x -> -x).
        seam_upper, seam_lower: (k,) int32 upper / lower inner-lip polylines from the left corner
            to the right corner (corners shared).
    """
    base: np.ndarray
    vertices: np.ndarray
    side: np.ndarray
    row: np.ndarray
    arc: np.ndarray
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
    """(nrows,) float64 row heights, the mouth row exactly at MOUTH_Y."""
    k = np.arange(-d.ROWS_BELOW_MOUTH, d.ROWS_ABOVE_MOUTH + 1, dtype=np.float64)
    return d.MOUTH_Y + d.ROW_STEP * k


def _row(y):
    """Base points of one row, left to right: (x, z) arrays, signed arc length, and m (n = 2m+1)."""
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
    """Triangles between two rows of vertex indices (left to right), counter-clockwise from +z.

    Vertices of a row with n = 2m+1 points sit at arc fractions (k - m)/m; the rows are merged by
    those fractions compared exactly as integers (k_lo - m_lo) * m_up vs (k_up - m_up) * m_lo.
    """
    tris = []
    i, k = 0, 0
    n_lo, n_up = len(lower), len(upper)
    while i < n_lo - 1 or k < n_up - 1:
        advance_lower = k == n_up - 1 or (
            i < n_lo - 1 and (i + 1 - m_lo) * m_up <= (k + 1 - m_up) * m_lo)
        if advance_lower:
            tris.append((lower[i], lower[i + 1], upper[k]))
            i += 1
        else:
            tris.append((lower[i], upper[k + 1], upper[k]))
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
    """z displacement (mm) of the facial features at base positions (x, y)."""
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
    """Build the mean face mesh (see :class:`Surface`); millimetres, float64, deterministic."""
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
            mouth.append((lower[i], lower[i + 1], upper[i]))
        if i < upper.size - 2:
            mouth.append((lower[i + 1], upper[i + 1], upper[i]))
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
    vertices = base.copy()
    vertices[:, 2] += feature_depth(x_all, y_all)
    vertices[:, 1] += 0.5 * d.MOUTH_GAP * lip_opening(x_all, y_all, side)
    return Surface(base=base, vertices=vertices, side=side, row=row_all, arc=arc_all, tri=tri,
                   tri_mouth=tri_mouth, mirror=mirror, seam_upper=upper, seam_lower=lower)


def uv_unwrap(surface, margin=0.02):
    """Cylindrical-style UV coordinates of the surface, (n, 2) float64 in [margin, 1 - margin].

    u is the signed base arc length from the midline (uniform scale for all rows, so the chin's
    shorter rows map narrower, as in a face-shaped unwrap), v the height; both scaled to fill the
    square.  The mouth slit is opened by 1.5 UV pixels at 256 so that upper and lower inner-lip
    vertices never share a UV position.
    """
    arc = surface.arc
    y = surface.base[:, 1]
    half = np.abs(arc).max()
    y_lo, y_hi = y.min(), y.max()
    span = 1.0 - 2.0 * margin
    u = 0.5 + 0.5 * span * arc / half
    v = margin + span * (y - y_lo) / (y_hi - y_lo)
    v += 0.5 * (1.5 / 256.0) * lip_opening(surface.base[:, 0], y, surface.side)
    return np.column_stack((u, v))
