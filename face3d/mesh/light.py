"""Normals and lighting of meshes: normals from the C++ kernels, shading formulas from face3d.mesh._shading (plain
numpy, shared with the numpy twin face3d.mesh_numpy.light, whose normals are equal bit for bit).

Winding. The Basel Face Model (and face3d) order each triangle clockwise when seen from outside the face, so the
right-hand normals cross(v1 - v0, v2 - v0) point into the head. The lighting functions therefore take
``clockwise=True`` (BFM/face3d) and use the outward normal -n; pass ``clockwise=False`` for counter-clockwise
(OBJ/PLY-style) meshes. Lighting is computed in the frame the vertices are given in (world coordinates: x right,
y up, z towards the viewer).
"""
import numpy as np

from face3d.mesh import _checks, _mesh_core, _shading
from face3d.mesh._shading import sh_basis

__all__ = ["triangle_normals", "vertex_normals", "get_normal", "add_light", "sh_basis", "add_light_sh",
           "estimate_light"]


def _normals(kernel, vertices, triangles, rows_of):
    v = _checks.as_vertices(vertices)
    t = _checks.as_indices(triangles, v.shape[0], check_range=False)
    out = np.empty((v.shape[0] if rows_of == "vertices" else t.shape[0], 3), dtype=np.float32)
    code = kernel(v, t, out)
    if code == 4:
        raise MemoryError("normal kernel could not allocate its accumulator")
    if code != 0:
        raise ValueError(_checks.index_range_message("triangles", v.shape[0]))
    return out


def triangle_normals(vertices, triangles):
    """Unit normals of the triangles (C++ kernel).

    Args:
        vertices: (nver, 3) float array; triangles: (ntri, 3) int array of 0-based vertex indices.
    Returns:
        (ntri, 3) float32, cross(v1 - v0, v2 - v0) / |.| (right-hand rule, computed in float64), (0, 0, 0) for
        degenerate triangles.
    Raises:
        ValueError: naming vertices or triangles (shape, non-finite vertex, index outside [0, nver)).
    """
    return _normals(_mesh_core.triangle_normals, vertices, triangles, "triangles")


def vertex_normals(vertices, triangles):
    """Unit normals of the vertices (C++ kernel): the normalised sum of cross(v1 - v0, v2 - v0) over the triangles
    at each vertex (area-weighted, summed in float64 in triangle order), (0, 0, 0) for vertices without a
    non-degenerate triangle.

    Args:
        vertices: (nver, 3) float array; triangles: (ntri, 3) int array of 0-based vertex indices.
    Returns:
        (nver, 3) float32 (right-hand rule: into the head for BFM's clockwise triangles, see the module docstring).
    Raises:
        ValueError: naming vertices or triangles (shape, non-finite vertex, index outside [0, nver)).
    """
    return _normals(_mesh_core.vertex_normals, vertices, triangles, "vertices")


get_normal = vertex_normals  # face3d's name


def _outward(vertices, triangles, clockwise):
    n = vertex_normals(vertices, triangles)
    return -n if clockwise else n


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
        ambient: scalar or (3,); specular: k_s (0 disables); shininess: exponent p (scalars); eye: None or (3,)
            (every value finite).
        clockwise: True when triangles are clockwise seen from outside (BFM/face3d), False for counter-clockwise.
    Returns:
        (nver, 3) float32 lit colours in [0, 1].
    Raises:
        ValueError: naming the argument for wrong shapes, bad indices or non-finite values.
    """
    n = _outward(vertices, triangles, clockwise)
    return _shading.shade_phong(n, vertices, colors, light_positions, light_intensities, ambient, specular, shininess,
                                eye)


def add_light_sh(vertices, triangles, colors, sh_coeff, clockwise=True):
    """Spherical-harmonics lighting of a Lambertian surface: lit = colors * (sh_basis(n) @ sh_coeff), not clipped.

    Args:
        vertices: (nver, 3); triangles: (ntri, 3) int; colors: (nver, c) albedo.
        sh_coeff: (9,) shared by the channels or (9, c), in the order of sh_basis.
        clockwise: winding of the triangles (see the module docstring); n is the outward vertex normal.
    Returns:
        (nver, c) float32.
    """
    return _shading.shade_sh(_outward(vertices, triangles, clockwise), colors, sh_coeff)


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
    return _shading.fit_sh(_outward(vertices, triangles, clockwise), albedo, observed, vertex_ind, lamb)
