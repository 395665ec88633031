"""Mesh operations backed by C++ kernels: transform (numpy), render, light, linear (basis combinations), io, vis.

face3d.mesh_numpy offers the same functions in plain numpy (the reference the tests hold the kernels to).
vis imports matplotlib only when one of its functions is called.
"""
from face3d.mesh import io, light, linear, render, transform, vis

__all__ = ["io", "light", "linear", "render", "transform", "vis"]
