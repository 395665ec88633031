"""Shading formulas shared by face3d.mesh.light and its numpy twin face3d.mesh_numpy.light (plain numpy either way).

Everything here takes outward unit vertex normals; the twins differ only in how they compute the normals.
"""
import numpy as np

from face3d.mesh import _checks


def _light_array(values, name):
    a = _checks.as_real(values, name).astype(np.float64)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != 3 or not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite with shape (nlight, 3) or (3,), got shape {np.shape(values)}")
    return a


def _finite_parameter(value, name, shapes, what, minimum=None):
    """value as a float64 array of one of the shapes; ValueError naming it for a non-numeric dtype (_checks.as_real),
    and '<name> must be <what>' for another shape, a NaN / inf or (when minimum is given) a value below minimum."""
    a = _checks.as_real(value, name)
    if a.shape not in shapes or not np.isfinite(a).all() or (minimum is not None and (a < minimum).any()):
        shown = a.tolist() if a.size <= 3 else f"an array of shape {a.shape}"
        raise ValueError(f"{name} must be {what}, got {shown}")
    return a.astype(np.float64)


def _finite_rows(values, name, ncols=None):
    """values as a 2-D float64 array of finite reals (ncols columns unless None); ValueError naming it otherwise."""
    a = _checks.as_float_rows(values, name, ncols).astype(np.float64)
    _checks.require_finite(a, name)
    return a


def _unit_rows(d):
    """d / |d| along the last axis (float64), zero where |d| == 0."""
    length = np.sqrt(np.sum(d * d, axis=-1, keepdims=True))
    return np.divide(d, length, out=np.zeros_like(d), where=length > 0)


def shade_phong(normals, vertices, colors, light_positions, light_intensities, ambient=0.0, specular=0.0,
                shininess=20.0, eye=None):
    """Blinn-Phong shading of face3d.mesh.light.add_light (formula there) given (nver, 3) outward unit normals;
    the other arguments are add_light's. Returns (nver, 3) float32 lit colours in [0, 1]. ValueError naming the
    argument: colors not (nver, 3) finite reals; light_positions, light_intensities not finite (nlight, 3) or (3,);
    ambient not a finite scalar or (3,); specular not a finite scalar; shininess not a finite scalar >= 0 (a negative
    exponent turns n.H = 0 into inf); eye neither None nor a finite (3,)."""
    n = np.asarray(normals, dtype=np.float64)
    v = np.asarray(vertices, dtype=np.float64)
    col = _finite_rows(colors, "colors", 3)
    if col.shape[0] != v.shape[0]:
        raise ValueError(f"colors must have one row per vertex ({v.shape[0]}), got {col.shape[0]}")
    pos = _light_array(light_positions, "light_positions")
    inten = _light_array(light_intensities, "light_intensities")
    if inten.shape[0] != pos.shape[0]:
        raise ValueError(f"light_intensities must have one row per light ({pos.shape[0]}), got {inten.shape[0]}")
    amb = np.broadcast_to(_finite_parameter(ambient, "ambient", ((), (3,)), "a finite scalar or (3,) RGB"), (3,))
    specular = _finite_parameter(specular, "specular", ((),), "a finite scalar")
    shininess = _finite_parameter(shininess, "shininess", ((),), "a finite scalar >= 0", minimum=0)
    if eye is not None:
        eye = _finite_parameter(eye, "eye", ((3,),), "None or a finite (3,) point")
    to_light = _unit_rows(pos[None, :, :] - v[:, None, :])  # (nver, nlight, 3)
    n_dot_l = np.einsum("vk,vlk->vl", n, to_light)
    lit = col * (amb + np.maximum(n_dot_l, 0.0) @ inten)
    if specular:
        if eye is None:
            to_eye = np.broadcast_to(np.array([0.0, 0.0, 1.0]), v.shape)
        else:
            to_eye = _unit_rows(eye[None, :] - v)
        half = _unit_rows(to_light + to_eye[:, None, :])
        n_dot_h = np.maximum(np.einsum("vk,vlk->vl", n, half), 0.0) ** shininess * (n_dot_l > 0)
        lit = lit + specular * (n_dot_h @ inten)
    return np.clip(lit, 0.0, 1.0).astype(np.float32)


def sh_basis(normals):
    """Real orthonormal spherical harmonics of bands 0..2 at unit normals (x, y, z), order (l, m) with m = -l..l:

    [0.282095, 0.488603 y, 0.488603 z, 0.488603 x, 1.092548 xy, 1.092548 yz, 0.315392 (3z^2 - 1), 1.092548 xz,
    0.546274 (x^2 - y^2)], i.e. 1/(2 sqrt(pi)), sqrt(3/(4 pi)), sqrt(15/(4 pi)), sqrt(5/(16 pi)), sqrt(15/(16 pi)).

    Args:
        normals: (n, 3) unit normals.
    Returns:
        (n, 9) float64.
    """
    n = np.asarray(normals, dtype=np.float64)
    x, y, z = n[:, 0], n[:, 1], n[:, 2]
    c0, c1 = 0.5 / np.sqrt(np.pi), np.sqrt(3 / (4 * np.pi))
    c2, c3, c4 = np.sqrt(15 / (4 * np.pi)), np.sqrt(5 / (16 * np.pi)), np.sqrt(15 / (16 * np.pi))
    return np.stack([np.full_like(x, c0), c1 * y, c1 * z, c1 * x, c2 * x * y, c2 * y * z,
                     c3 * (3 * z * z - 1), c2 * x * z, c4 * (x * x - y * y)], axis=1)


def _sh_coeff(sh_coeff, c):
    s = _checks.as_real(sh_coeff, "sh_coeff").astype(np.float64)
    if s.ndim == 1:
        s = s[:, None]
    if s.shape[0] != 9 or s.ndim != 2 or s.shape[1] not in (1, c):
        raise ValueError(f"sh_coeff must have shape (9,), (9, 1) or (9, {c}), got {np.shape(sh_coeff)}")
    _checks.require_finite(s, "sh_coeff")
    return s


def shade_sh(normals, colors, sh_coeff):
    """colors * (sh_basis(normals) @ sh_coeff) as float32 (the formula behind add_light_sh; not clipped).
    ValueError naming colors or sh_coeff for a wrong shape, a non-numeric dtype or a NaN / inf."""
    col = _finite_rows(colors, "colors")
    if col.shape[0] != len(normals):
        raise ValueError(f"colors must have one row per vertex ({len(normals)}), got {col.shape[0]}")
    return (col * (sh_basis(normals) @ _sh_coeff(sh_coeff, col.shape[1]))).astype(np.float32)


def fit_sh(normals, albedo, observed, vertex_ind=None, lamb=0.0):
    """Least-squares SH coefficients from outward unit normals (the solver behind estimate_light). ValueError
    naming the argument: albedo, observed not finite (nver, c); vertex_ind not 1-D indices; lamb not a finite
    scalar >= 0; fewer than 9 vertices with lamb == 0 (9 unknowns per channel); a singular system (normals too
    alike, or a zero albedo channel)."""
    alb = _finite_rows(albedo, "albedo")
    obs = _finite_rows(observed, "observed")
    if alb.shape != obs.shape or alb.shape[0] != len(normals):
        raise ValueError(f"albedo and observed must both have shape ({len(normals)}, c), got {alb.shape}, {obs.shape}")
    lamb = _finite_parameter(lamb, "lamb", ((),), "a finite scalar >= 0", minimum=0)
    basis = sh_basis(normals)
    if vertex_ind is not None:
        idx = np.asarray(vertex_ind)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer) or (
                idx.size and (idx.min() < 0 or idx.max() >= len(normals))):
            raise ValueError(f"vertex_ind must be 1-D integer indices in [0, {len(normals)})")
        basis, alb, obs = basis[idx], alb[idx], obs[idx]
    chosen = "the vertices" if vertex_ind is None else "the vertices of vertex_ind"
    if lamb == 0 and len(basis) < 9:
        what = "the mesh must have" if vertex_ind is None else "vertex_ind must select"
        raise ValueError(f"{what} at least 9 vertices when lamb is 0 (9 coefficients per channel), got "
                         f"{len(basis)}; {'select' if vertex_ind is not None else 'use'} more or pass lamb > 0")
    coeff = np.empty((9, alb.shape[1]))
    for k in range(alb.shape[1]):
        a = alb[:, k:k + 1] * basis
        try:
            coeff[:, k] = np.linalg.solve(a.T @ a + lamb * np.eye(9), a.T @ obs[:, k])
        except np.linalg.LinAlgError:
            raise ValueError(f"the normals and albedo (channel {k}) at {chosen} do not determine the 9 coefficients "
                             "(a singular system): select vertices with more varied normals and non-zero albedo, or "
                             "pass a larger lamb") from None
    return coeff
