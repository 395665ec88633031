"""Normals and lighting of meshes in plain numpy; the reference twin of face3d.mesh.light.

Normals. The raw normal of triangle (v0, v1, v2) is cross(v1 - v0, v2 - v0) (right-hand rule, computed in float64);
a vertex normal is the normalised sum of the raw normals of the triangles at the vertex (so larger triangles weigh
more); zero-length results are returned as (0, 0, 0). Outputs are float32 unit vectors.

Winding. The Basel Face Model (and face3d) order each triangle clockwise when seen from outside the face, so the
right-hand normals above point into the head. The lighting functions therefore take ``clockwise=True`` (BFM/face3d)
and use the outward normal -n; pass ``clockwise=False`` for counter-clockwise (OBJ/PLY-style) meshes. Lighting is
computed in the frame the vertices are given in (world coordinates: x right, y up, z towards the viewer).
"""
import numpy as np

from face3d.mesh import _checks

__all__ = ["triangle_normals", "vertex_normals", "get_normal", "add_light", "sh_basis", "add_light_sh",
           "estimate_light"]


def _raw_triangle_normals(v, t):
    """cross(v1 - v0, v2 - v0) per triangle, float64 (ntri, 3), evaluated as the C++ kernel does."""
    p = v[t].astype(np.float64)
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    return np.stack([e1[:, 1] * e2[:, 2] - e1[:, 2] * e2[:, 1],
                     e1[:, 2] * e2[:, 0] - e1[:, 0] * e2[:, 2],
                     e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]], axis=1)


def _normalize(n):
    """Rows of n (float64) divided by their length, as float32; zero rows stay zero."""
    length = np.sqrt(n[:, 0] * n[:, 0] + n[:, 1] * n[:, 1] + n[:, 2] * n[:, 2])
    out = np.zeros(n.shape, dtype=np.float32)
    nz = length > 0
    out[nz] = (n[nz] / length[nz, None]).astype(np.float32)
    return out


def triangle_normals(vertices, triangles):
    """Unit normals of the triangles.

    Args:
        vertices: (nver, 3) float array; triangles: (ntri, 3) int array of 0-based vertex indices.
    Returns:
        (ntri, 3) float32, cross(v1 - v0, v2 - v0) / |.| (right-hand rule), (0, 0, 0) for degenerate triangles.
    Raises:
        ValueError: naming vertices or triangles (shape, non-finite vertex, index outside [0, nver)).
    """
    v = _checks.as_vertices(vertices)
    t = _checks.as_indices(triangles, v.shape[0])
    return _normalize(_raw_triangle_normals(v, t))


def vertex_normals(vertices, triangles):
    """Unit normals of the vertices: the normalised sum of cross(v1 - v0, v2 - v0) over the triangles at each vertex
    (area-weighted, summed in float64 in triangle order), (0, 0, 0) for vertices without a non-degenerate triangle.

    Args:
        vertices: (nver, 3) float array; triangles: (ntri, 3) int array of 0-based vertex indices.
    Returns:
        (nver, 3) float32 (right-hand rule: into the head for BFM's clockwise triangles, see the module docstring).
    Raises:
        ValueError: naming vertices or triangles (shape, non-finite vertex, index outside [0, nver)).
    """
    v = _checks.as_vertices(vertices)
    t = _checks.as_indices(triangles, v.shape[0])
    raw = _raw_triangle_normals(v, t)
    corners = t.ravel()  # triangle-major, so bincount accumulates in the kernel's order
    acc = np.stack([np.bincount(corners, weights=np.repeat(raw[:, k], 3), minlength=v.shape[0])
                    for k in range(3)], axis=1)
    return _normalize(acc)


get_normal = vertex_normals  # face3d's name


def _light_array(values, name):
    a = np.asarray(values, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != 3 or not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite with shape (nlight, 3) or (3,), got shape {np.shape(values)}")
    return a


def _unit_rows(d):
    """d / |d| along the last axis (float64), zero where |d| == 0."""
    length = np.sqrt(np.sum(d * d, axis=-1, keepdims=True))
    return np.divide(d, length, out=np.zeros_like(d), where=length > 0)


def shade_phong(normals, vertices, colors, light_positions, light_intensities, ambient=0.0, specular=0.0,
                shininess=20.0, eye=None):
    """Blinn-Phong shading of vertices with given outward unit normals (the formula behind add_light).

    lit = colors * (ambient + sum_l I_l * max(0, n.L_l)) + specular * sum_l I_l * [n.L_l > 0] * max(0, n.H_l)^shininess,
    clipped to [0, 1]; L_l = unit vector from the vertex to light l, H_l = unit(L_l + V), V = unit vector from the
    vertex to `eye` (None: the viewer at infinity along +z, V = (0, 0, 1)). No distance attenuation.

    Args:
        normals: (nver, 3) outward unit normals; vertices: (nver, 3); colors: (nver, 3) albedo in [0, 1].
        light_positions: (nlight, 3) or (3,); light_intensities: (nlight, 3) or (3,) RGB intensities.
        ambient: scalar or (3,) ambient intensity; specular: scalar weight k_s; shininess: Phong exponent p.
        eye: None or (3,) viewer position.
    Returns:
        (nver, 3) float32 lit colours.
    """
    n = np.asarray(normals, dtype=np.float64)
    v = np.asarray(vertices, dtype=np.float64)
    col = _checks.as_float_rows(colors, "colors", 3).astype(np.float64)
    if col.shape[0] != v.shape[0]:
        raise ValueError(f"colors must have one row per vertex ({v.shape[0]}), got {col.shape[0]}")
    pos = _light_array(light_positions, "light_positions")
    inten = _light_array(light_intensities, "light_intensities")
    if inten.shape[0] != pos.shape[0]:
        raise ValueError(f"light_intensities must have one row per light ({pos.shape[0]}), got {inten.shape[0]}")
    amb = np.broadcast_to(np.asarray(ambient, dtype=np.float64), (3,))
    to_light = _unit_rows(pos[None, :, :] - v[:, None, :])  # (nver, nlight, 3)
    n_dot_l = np.einsum("vk,vlk->vl", n, to_light)
    lit = col * (amb + np.maximum(n_dot_l, 0.0) @ inten)
    if specular:
        if eye is None:
            to_eye = np.broadcast_to(np.array([0.0, 0.0, 1.0]), v.shape)
        else:
            to_eye = _unit_rows(np.asarray(eye, dtype=np.float64).reshape(1, 3) - v)
        half = _unit_rows(to_light + to_eye[:, None, :])
        n_dot_h = np.maximum(np.einsum("vk,vlk->vl", n, half), 0.0) ** shininess * (n_dot_l > 0)
        lit = lit + specular * (n_dot_h @ inten)
    return np.clip(lit, 0.0, 1.0).astype(np.float32)


def _outward(normals, clockwise):
    return -normals if clockwise else normals


def add_light(vertices, triangles, colors, light_positions, light_intensities, ambient=0.0, specular=0.0,
              shininess=20.0, eye=None, clockwise=True):
    """Gouraud (per-vertex) Blinn-Phong lighting with point lights; face3d's add_light plus ambient and specular.

    lit = colors * (ambient + sum_l I_l * max(0, n.L_l)) + specular * sum_l I_l * [n.L_l > 0] * max(0, n.H_l)^shininess,
    clipped to [0, 1]; n = outward vertex normal, L_l = unit vector from the vertex to light l, H_l = unit(L_l + V),
    V = unit vector to `eye` (None: viewer at infinity along +z). No distance attenuation (as face3d). With one light,
    ambient = specular = 0 and BFM triangles this equals face3d's add_light.

    Args:
        vertices: (nver, 3) float array (world frame, z towards the viewer); triangles: (ntri, 3) int array.
        colors: (nver, 3) albedo in [0, 1].
        light_positions: (nlight, 3) or (3,) positions in the vertices' frame.
        light_intensities: (nlight, 3) or (3,) RGB intensities.
        ambient: scalar or (3,); specular: k_s (0 disables); shininess: exponent p; eye: None or (3,).
        clockwise: True when triangles are clockwise seen from outside (BFM/face3d), False for counter-clockwise.
    Returns:
        (nver, 3) float32 lit colours in [0, 1].
    Raises:
        ValueError: naming the argument for wrong shapes, bad indices or non-finite values.
    """
    n = _outward(vertex_normals(vertices, triangles), clockwise)
    return shade_phong(n, vertices, colors, light_positions, light_intensities, ambient, specular, shininess, eye)


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
    s = np.asarray(sh_coeff, dtype=np.float64)
    if s.ndim == 1:
        s = s[:, None]
    if s.shape[0] != 9 or s.ndim != 2 or s.shape[1] not in (1, c):
        raise ValueError(f"sh_coeff must have shape (9,), (9, 1) or (9, {c}), got {np.shape(sh_coeff)}")
    return s


def shade_sh(normals, colors, sh_coeff):
    """colors * (sh_basis(normals) @ sh_coeff) as float32 (the formula behind add_light_sh; not clipped)."""
    col = _checks.as_float_rows(colors, "colors").astype(np.float64)
    if col.shape[0] != len(normals):
        raise ValueError(f"colors must have one row per vertex ({len(normals)}), got {col.shape[0]}")
    return (col * (sh_basis(normals) @ _sh_coeff(sh_coeff, col.shape[1]))).astype(np.float32)


def add_light_sh(vertices, triangles, colors, sh_coeff, clockwise=True):
    """Spherical-harmonics lighting of a Lambertian surface: lit = colors * (sh_basis(n) @ sh_coeff), not clipped.

    Args:
        vertices: (nver, 3); triangles: (ntri, 3) int; colors: (nver, c) albedo.
        sh_coeff: (9,) shared by the channels or (9, c), in the order of sh_basis.
        clockwise: winding of the triangles (see the module docstring); n is the outward vertex normal.
    Returns:
        (nver, c) float32.
    """
    n = _outward(vertex_normals(vertices, triangles), clockwise)
    return shade_sh(n, colors, sh_coeff)


def fit_sh(normals, albedo, observed, vertex_ind=None, lamb=0.0):
    """Least-squares SH coefficients from outward unit normals (the solver behind estimate_light)."""
    alb = _checks.as_float_rows(albedo, "albedo").astype(np.float64)
    obs = _checks.as_float_rows(observed, "observed").astype(np.float64)
    if alb.shape != obs.shape or alb.shape[0] != len(normals):
        raise ValueError(f"albedo and observed must both have shape ({len(normals)}, c), got {alb.shape}, {obs.shape}")
    basis = sh_basis(normals)
    if vertex_ind is not None:
        idx = np.asarray(vertex_ind)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer) or (
                idx.size and (idx.min() < 0 or idx.max() >= len(normals))):
            raise ValueError(f"vertex_ind must be 1-D integer indices in [0, {len(normals)})")
        basis, alb, obs = basis[idx], alb[idx], obs[idx]
    coeff = np.empty((9, alb.shape[1]))
    for k in range(alb.shape[1]):
        a = alb[:, k:k + 1] * basis
        coeff[:, k] = np.linalg.solve(a.T @ a + lamb * np.eye(9), a.T @ obs[:, k])
    return coeff


def estimate_light(vertices, triangles, albedo, observed, vertex_ind=None, lamb=0.0, clockwise=True):
    """Estimates the SH lighting that turns albedo into observed colours (inverse of add_light_sh).

    Solves, per channel k, min_L sum_i (albedo_ik * sh_basis(n_i) . L - observed_ik)^2 + lamb * |L|^2.

    Args:
        vertices: (nver, 3); triangles: (ntri, 3) int; albedo, observed: (nver, c).
        vertex_ind: optional 1-D indices of the vertices to use (e.g. the visible ones).
        lamb: ridge weight (0 = plain least squares; needs at least 9 well-spread normals).
        clockwise: winding of the triangles (see the module docstring).
    Returns:
        (9, c) float64 coefficients in the order of sh_basis.
    """
    n = _outward(vertex_normals(vertices, triangles), clockwise)
    return fit_sh(n, albedo, observed, vertex_ind, lamb)
