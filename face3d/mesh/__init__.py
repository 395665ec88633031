"""Mesh operations backed by C++ kernels: transform (numpy), render, light, io, vis.

face3d.mesh_numpy offers the same functions in plain numpy (the reference the tests hold the kernels to).
vis imports matplotlib only when one of its functions is called.
"""
from face3d.mesh import io, light, render, transform, vis

__all__ = ["io", "light", "render", "transform", "vis"]
