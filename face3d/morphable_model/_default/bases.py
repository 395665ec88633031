"""Shape, expression and texture bases and the mean texture of the default model.

Every basis is a set of smooth fields evaluated at the base surface's (x, y), orthogonalised in order
(``_orthogonalise``): hand-designed fields first, then seeded random ones (``_random_fields``). Scales follow the
Basel Face Model as 300W-LP uses it, vertices = shapeMU + shapePC @ Shape_Para + expPC @ Exp_Para with no
eigenvalue multiplication (``shape_basis``, ``expression_basis``, ``texture_basis``).
"""
import numpy as np
from scipy.linalg import solve_triangular

from . import design as d
from .surface import feature_depth, lip_opening, pchip, smoothstep

BFM_ROWS = 159645            # 3 x 53215 vertices of the trimmed Basel model
N_SHAPE, N_EXP, N_TEX = 199, 29, 199
SHAPE_EV = (9.0e5, 1.0)      # (first standard deviation, power-law decay exponent)
TEX_EV = (8.0e3, 0.9)
EXP_EV = (2.0, 0.6)
LOCAL_AFTER = 24            # random global fields before the localised designed ones
ATOM_FREQS = 15             # cosine atoms cos(pi fx u) cos(pi fy v), 0 <= fx, fy < ATOM_FREQS
SLOTS_PER_FIELD = 3         # atom-direction slots combined in each random field


def eigen_scales(first, decay, count):
    """(count, 1) float64 standard deviations first * k^-decay, k = 1..count."""
    return first * np.arange(1, count + 1, dtype=np.float64)[:, None] ** -decay


def _orthogonalise(fields, norms=None):
    """Orthogonalise (3n, k) columns in order and give them ``norms`` (default: unit norms): the first,
    hand-designed fields keep their meaning, the later random ones take what is left, as later principal components.

    Gram-Schmidt done as Cholesky QR, Q = F L^-T with F^T F = L L^T: the k-th column stays in the
    span of the first k fields with a positive projection on the k-th.  Its loss of orthogonality,
    ~cond(F)^2 * 1e-16, is negligible for the well-conditioned fields built here; the column norms
    are then set exactly.  It costs two (3n x k x k) products, less than a Householder QR.
    """
    chol = np.linalg.cholesky(fields.T @ fields)
    q = fields @ solve_triangular(chol, np.eye(chol.shape[0]), lower=True).T
    q /= np.linalg.norm(q, axis=0)
    return q if norms is None else q * norms


def _flat(dx, dy, dz):
    """(n,) x, y, z displacements -> (3n,) interleaved x0, y0, z0, x1, ..."""
    return np.column_stack((dx, dy, dz)).reshape(-1)


def _gauss(x, y, cx, cy, rx, ry):
    return np.exp(-((x - cx) / rx) ** 2 - ((y - cy) / ry) ** 2)


def _random_fields(rng, x, y, count, directions=None, penalty=(0.0, 0.0, 0.0), local=None):
    """``count`` seeded random smooth vector fields (3n, count), spatial frequency rising with k, as later principal
    components. Being functions of the base (x, y), they move the two sides of the mouth seam together (only the
    designed ``lip_opening`` fields open the lips).

    The building blocks ("slots") are a cosine atom cos(pi fx u) cos(pi fy v) over the face's
    normalised coordinates u, v in [0, 1] (0 <= fx, fy < ATOM_FREQS, not both 0: a uniform offset
    is left to the designed fields) times one of the three ``directions`` (rows: displacement axes
    or colour directions; default the x, y, z axes).  Slots are ordered by frequency
    hypot(fx, fy) + the ``penalty`` of their direction + a seeded jitter, and field k is a random
    combination of the k-th group of SLOTS_PER_FIELD slots.  Disjoint groups keep the fields nearly
    orthogonal (condition number ~10-40 with the designed fields), so orthogonalising them is
    accurate and insensitive to last-bit differences of the arithmetic (BLAS threads, CPUs).
    ``local`` (n,) optionally multiplies every field.
    """
    u = (x - x.min()) / (x.max() - x.min())
    v = (y - y.min()) / (y.max() - y.min())
    freqs = np.array([(fx, fy) for fx in range(ATOM_FREQS) for fy in range(ATOM_FREQS)
                      if fx or fy], dtype=np.float64)
    n_slots = 3 * freqs.shape[0]
    if count * SLOTS_PER_FIELD > n_slots:
        raise ValueError(f"design: {count} random fields need more than {n_slots} slots")
    level = (np.hypot(freqs[:, 0], freqs[:, 1])[:, None] + np.asarray(penalty)[None, :]).ravel()
    order = np.argsort(level + rng.uniform(0.0, 0.6, n_slots), kind="stable")
    groups = order[:count * SLOTS_PER_FIELD].reshape(count, SLOTS_PER_FIELD)
    coef = rng.standard_normal((count, SLOTS_PER_FIELD))
    directions = np.eye(3) if directions is None else np.asarray(directions, dtype=np.float64)
    steps = np.arange(ATOM_FREQS, dtype=np.float64)
    cos_u = np.cos(np.pi * np.outer(u, steps))                           # (n, ATOM_FREQS)
    cos_v = np.cos(np.pi * np.outer(v, steps))
    fx, fy = freqs[:, 0].astype(np.int64), freqs[:, 1].astype(np.int64)
    out = np.empty((count, x.size, 3))
    for k in range(count):
        atom, axis = np.divmod(groups[k], 3)
        waves = cos_u[:, fx[atom]] * cos_v[:, fy[atom]]                  # (n, SLOTS_PER_FIELD)
        out[k] = (waves * coef[k]) @ directions[axis]
    if local is not None:
        out *= local[None, :, None]
    return out.reshape(count, 3 * x.size).T


def shape_basis(surface, rng):
    """(3n, 199) shape basis and (199, 1) standard deviations.

    The columns are orthogonal with the per-entry RMS of a unit-norm column of the 159645-row Basel basis,
    1 / sqrt(159645) (``BFM_ROWS``), so that 300W-LP's Shape_Para (~1e5..1e6) move vertices by millimetres; the
    standard deviations decay as a power law from 9e5 (``SHAPE_EV``, ``eigen_scales``).
    """
    x, y = surface.base[:, 0], surface.base[:, 1]
    z = surface.vertices[:, 2]
    zero = np.zeros_like(x)
    lower = smoothstep((-20.0 - y) / 50.0)
    nose_w = pchip(d.NOSE_HALF_WIDTH)(y)
    nose = pchip(d.NOSE_HEIGHT)(y) * np.exp(-(x / nose_w) ** 2)
    nose_region = np.exp(-(x / (nose_w + 4.0)) ** 2) * _gauss(0, y, 0, -2.0, 1, 22.0)
    eyes = _gauss(np.abs(x), y, d.EYE_CENTRE[0], d.EYE_CENTRE[1], 16.0, 11.0)
    brows = _gauss(np.abs(x), y, 36.0, 42.0, 20.0, 8.0)
    lips = _gauss(x, y, 0.0, d.MOUTH_Y, 30.0, 9.0)
    chin = _gauss(x, y, 0.0, -72.0, 25.0, 14.0)
    cheeks = _gauss(np.abs(x), y, 45.0, -10.0, 20.0, 20.0)
    forehead = smoothstep((y - 40.0) / 50.0)
    # Global shape changes lead, as in a PCA of faces; localised ones (larger peak per unit norm)
    # come after LOCAL_AFTER random global fields, where 300W-LP coefficients are ~10x smaller.
    global_fields = [
        _flat(x, y - 5.0, z - 60.0),                       # overall size
        _flat(x, zero, zero),                              # face width
        _flat(zero, y - 5.0, zero),                        # face length
        _flat(zero, zero, (z - 60.0) * lower),             # lower-face depth
        _flat(x * lower, zero, zero),                      # jaw width
        _flat(zero, zero, forehead * (y - 40.0)),          # forehead slope
        _flat(np.sign(x) * 0.3 * cheeks, zero, cheeks),    # cheek fullness
    ]
    local_fields = [
        _flat(zero, zero, nose),                           # nose protrusion
        _flat(x * nose_region, zero, zero),                # nose width
        _flat(zero, (y - 2.0) * nose_region, zero),        # nose length
        _flat(np.sign(x) * eyes, zero, zero),              # eye spacing
        _flat(zero, brows, 0.3 * brows),                   # brow height
        _flat(zero, zero, lips),                           # lip fullness
        _flat(x * lips, zero, zero),                       # mouth width
        _flat(zero, -chin, 0.5 * chin),                    # chin length / protrusion
        _flat(zero, zero, -feature_depth(x, y)),           # flatter / sharper features
    ]
    random = _random_fields(rng, x, y, N_SHAPE - len(global_fields) - len(local_fields))
    fields = np.column_stack(global_fields + [random[:, :LOCAL_AFTER]] + local_fields
                             + [random[:, LOCAL_AFTER:]])
    basis = _orthogonalise(fields, np.sqrt(fields.shape[0] / BFM_ROWS))
    return basis, eigen_scales(*SHAPE_EV, N_SHAPE)


def expression_basis(surface, rng):
    """(3n, 29) expression basis in micrometres per unit Exp_Para (300W-LP's Exp_Para are O(1)) and (29, 1) std
    devs, decaying as a power law from 2.0 (``EXP_EV``)."""
    x, y = surface.base[:, 0], surface.base[:, 1]
    z = surface.vertices[:, 2]
    side = surface.side
    zero = np.zeros_like(x)
    ax = np.abs(x)
    lips = lip_opening(x, y, side)                          # +K upper lip, -K lower lip

    # Jaw opening: rotation of the lower face about the hinge, weight 1 on the lower lip and chin.
    below = smoothstep((d.MOUTH_Y + 2.0 - y) / 14.0)
    seam = np.abs(lips)
    jaw_w = np.where(side < 0, below + (1.0 - below) * seam, below * (1.0 - seam))
    jaw_w = jaw_w * smoothstep((80.0 - ax) / 30.0 + 0.5)
    hy, hz = d.JAW_HINGE
    rot = 0.05                                              # radians per unit
    jaw = _flat(zero, -rot * (z - hz) * jaw_w, rot * (y - hy) * jaw_w)

    corners = _gauss(ax, y, d.MOUTH_HALF_WIDTH, d.MOUTH_Y, 14.0, 10.0)
    cheek_up = _gauss(ax, y, 40.0, -15.0, 18.0, 15.0)
    smile = _flat(np.sign(x) * 2.0 * corners, 3.0 * corners + 1.5 * cheek_up,
                  -1.5 * corners + 1.0 * cheek_up)
    brow = _gauss(ax, y, 32.0, 45.0, 30.0, 16.0)
    brow_raise = _flat(zero, 3.0 * brow, 0.5 * brow)
    mouth_region = _gauss(x, y, 0.0, d.MOUTH_Y, 26.0, 10.0)
    pucker = _flat(-0.08 * x * mouth_region, zero, 4.0 * mouth_region)
    lids = (_gauss(ax, y, d.EYE_CENTRE[0], d.EYE_CENTRE[1] + 3.0, 12.0, 4.0)
            * smoothstep((y - d.EYE_CENTRE[1] + 1.0) / 3.0))
    eyes_close = _flat(zero, -4.0 * lids, 0.8 * lids)
    inner_brow = _gauss(ax, y, 20.0, 40.0, 12.0, 9.0)
    frown = _flat(-np.sign(x) * 1.5 * inner_brow, -2.5 * inner_brow, 0.5 * inner_brow)
    stretch = _flat(0.1 * x * _gauss(x, y, 0.0, d.MOUTH_Y, 32.0, 8.0), zero, zero)
    lower_lip = _flat(zero, 2.5 * np.clip(-lips, 0, None), -0.5 * np.clip(-lips, 0, None))
    upper_lip = _flat(zero, 2.5 * np.clip(lips, 0, None), 0.5 * np.clip(lips, 0, None))
    puff = _gauss(ax, y, 42.0, -30.0, 16.0, 16.0)
    cheek_puff = _flat(np.sign(x) * 2.0 * puff, zero, 2.0 * puff)
    nose_wrinkle = _gauss(x, y, 0.0, 12.0, 14.0, 10.0)
    wrinkle = _flat(zero, 1.5 * nose_wrinkle, -0.5 * nose_wrinkle)
    half_smile = _flat(zero, (x > 0) * 3.0 * corners, zero)
    designed = [jaw, smile, brow_raise, pucker, eyes_close, frown, stretch, lower_lip, upper_lip,
                cheek_puff, wrinkle, half_smile]
    # Remaining components: local random motions of the mouth, eye and brow regions (1-2 mm).
    local = (_gauss(x, y, 0.0, d.MOUTH_Y, 35.0, 18.0)
             + _gauss(ax, y, d.EYE_CENTRE[0], 32.0, 22.0, 16.0))
    random = _random_fields(rng, x, y, N_EXP - len(designed), local=local)
    fields = np.column_stack(designed + [random])
    norms = np.linalg.norm(fields, axis=0)
    peak = np.abs(fields).max(axis=0)
    # Designed fields are in mm per unit; random ones get a 1.5 mm peak.  Convert to micrometres.
    target_peak = np.where(np.arange(N_EXP) < len(designed), peak, 1.5)
    basis = _orthogonalise(fields, norms * target_peak / peak) * 1000.0
    return basis, eigen_scales(*EXP_EV, N_EXP)


def mean_texture(surface):
    """(n, 3) float64 mean albedo, colours 0..255: skin, lips, brows, eyes (sclera, iris, pupil)."""
    x, y = surface.base[:, 0], surface.base[:, 1]
    ax = np.abs(x)
    skin = np.array([200.0, 148.0, 122.0])
    rgb = np.tile(skin, (x.size, 1))
    flush = _gauss(ax, y, 42.0, -5.0, 18.0, 16.0) + 0.6 * _gauss(x, y, 0.0, -8.0, 10.0, 10.0)
    rgb += flush[:, None] * np.array([12.0, -6.0, -4.0])
    edge = smoothstep((ax - 50.0) / 25.0)
    rgb += edge[:, None] * np.array([-18.0, -16.0, -14.0])

    upper = y >= d.MOUTH_Y
    lip_r = np.where(upper, 6.5, 8.5)
    lip_cy = np.where(upper, d.MOUTH_Y + 1.0, d.MOUTH_Y - 1.0)
    lip_d = (x / 31.0) ** 2 + ((y - lip_cy) / lip_r) ** 2
    lips = smoothstep((1.15 - lip_d) / 0.3)
    rgb = rgb * (1 - lips[:, None]) + lips[:, None] * np.array([172.0, 92.0, 92.0])

    brow_y = pchip(sorted((-bx, by) for bx, by in d.BROW_XY))(ax)
    brow = (np.exp(-((y - brow_y - 0.5) / 3.0) ** 4)
            * smoothstep((ax - 14.0) / 4.0) * smoothstep((60.0 - ax) / 5.0))
    rgb = rgb * (1 - brow[:, None]) + brow[:, None] * np.array([92.0, 66.0, 54.0])

    ex, ey = d.EYE_CENTRE
    eye_d = ((ax - ex) / 12.5) ** 2 + ((y - ey) / 3.8) ** 2
    sclera = smoothstep((1.1 - eye_d) / 0.2)
    rgb = rgb * (1 - sclera[:, None]) + sclera[:, None] * np.array([226.0, 216.0, 206.0])
    r_iris = np.hypot(ax - ex, y - ey)
    iris = sclera * smoothstep((d.EYE_RADIUS + 0.5 - r_iris) / 1.0)
    rgb = rgb * (1 - iris[:, None]) + iris[:, None] * np.array([84.0, 62.0, 46.0])
    pupil = sclera * smoothstep((2.5 - r_iris) / 1.0)
    rgb = rgb * (1 - pupil[:, None]) + pupil[:, None] * np.array([22.0, 16.0, 16.0])
    return np.clip(rgb, 0.0, 255.0)


def texture_basis(surface, rng):
    """(3n, 199) texture basis (colour levels per unit Tex_Para) and (199, 1) std devs.

    As for the shape, the columns have the RMS 1 / sqrt(159645), so that 300W-LP's Tex_Para (~1e3..1e4) move
    colours by a few tens of levels; the std devs decay as a power law from 8e3 (``TEX_EV``).

    Skin albedo varies mostly in lightness with a little hue, so the random components are built
    from lightness patterns (R, G, B in the ratio of the mean skin colour) first, the two hue
    directions orthogonal to it entering only at higher indices.
    """
    x, y = surface.base[:, 0], surface.base[:, 1]
    one = np.ones_like(x)
    lips = _gauss(x, y, 0.0, d.MOUTH_Y, 30.0, 8.0)
    brows = _gauss(np.abs(x), y, 36.0, 42.0, 22.0, 5.0)
    cheeks = _gauss(np.abs(x), y, 42.0, -5.0, 20.0, 18.0)
    global_fields = [
        _flat(one, 0.75 * one, 0.62 * one),                # lightness
        _flat(one, 0.5 * one, 0.4 * one),                  # ruddiness
        _flat(one, one, 0.6 * one),                        # yellowness
    ]
    local_fields = [
        _flat(lips, 0.3 * lips, 0.3 * lips),               # lip colour
        _flat(brows, 0.8 * brows, 0.7 * brows),            # brow darkness
        _flat(cheeks, 0.4 * cheeks, 0.35 * cheeks),        # cheek flush
    ]
    count = N_TEX - len(global_fields) - len(local_fields)
    skin = np.array([1.0, 0.75, 0.62]) / np.linalg.norm([1.0, 0.75, 0.62])
    hue_a = np.cross(skin, [0.0, 0.0, 1.0])
    hue_a /= np.linalg.norm(hue_a)
    colours = np.stack((skin, hue_a, np.cross(skin, hue_a)))
    # Hue slots count as 3 frequency levels higher: lightness patterns dominate the early fields.
    random = _random_fields(rng, x, y, count, colours, (0.0, 3.0, 3.0))
    fields = np.column_stack(global_fields + [random[:, :LOCAL_AFTER]] + local_fields
                             + [random[:, LOCAL_AFTER:]])
    basis = _orthogonalise(fields, np.sqrt(fields.shape[0] / BFM_ROWS))
    return basis, eigen_scales(*TEX_EV, N_TEX)
