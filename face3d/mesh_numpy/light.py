"""Normals and lighting of meshes in plain numpy: the reference twin of face3d.mesh.light.

Same functions, conventions (normals, winding, frame: see face3d.mesh.light) and results; the normals are
reimplemented here (bit for bit the C++ kernels'), the shading formulas are the shared face3d.mesh._shading.
"""
import numpy as np

from face3d.mesh import _checks, _shading
from face3d.mesh._shading import sh_basis

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
    """Numpy twin of face3d.mesh.light.triangle_normals (same arguments, bit-identical result)."""
    v = _checks.as_vertices(vertices)
    t = _checks.as_indices(triangles, v.shape[0])
    return _normalize(_raw_triangle_normals(v, t))


def vertex_normals(vertices, triangles):
    """Numpy twin of face3d.mesh.light.vertex_normals (same arguments, bit-identical result)."""
    v = _checks.as_vertices(vertices)
    t = _checks.as_indices(triangles, v.shape[0])
    raw = _raw_triangle_normals(v, t)
    corners = t.ravel()  # triangle-major, so bincount accumulates in the kernel's order
    acc = np.stack([np.bincount(corners, weights=np.repeat(raw[:, k], 3), minlength=v.shape[0])
                    for k in range(3)], axis=1)
    return _normalize(acc)


get_normal = vertex_normals  # face3d's name


def _outward(vertices, triangles, clockwise):
    n = vertex_normals(vertices, triangles)
    return -n if clockwise else n


def add_light(vertices, triangles, colors, light_positions, light_intensities, ambient=0.0, specular=0.0,
              shininess=20.0, eye=None, clockwise=True):
    """Numpy twin of face3d.mesh.light.add_light (same arguments and result)."""
    n = _outward(vertices, triangles, clockwise)
    return _shading.shade_phong(n, vertices, colors, light_positions, light_intensities, ambient, specular, shininess,
                                eye)


def add_light_sh(vertices, triangles, colors, sh_coeff, clockwise=True):
    """Numpy twin of face3d.mesh.light.add_light_sh (same arguments and result)."""
    return _shading.shade_sh(_outward(vertices, triangles, clockwise), colors, sh_coeff)


def estimate_light(vertices, triangles, albedo, observed, vertex_ind=None, lamb=0.0, clockwise=True):
    """Numpy twin of face3d.mesh.light.estimate_light (same arguments and result)."""
    return _shading.fit_sh(_outward(vertices, triangles, clockwise), albedo, observed, vertex_ind, lamb)
