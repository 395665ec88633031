"""Plain-numpy twins of face3d.mesh with the same signatures and results: render, light, linear and float16 are
reimplemented in numpy (the reference for the C++ kernels); transform, io and vis have no kernel and re-export
face3d.mesh's."""
from face3d.mesh_numpy import float16, io, light, linear, render, transform, vis

__all__ = ["float16", "io", "light", "linear", "render", "transform", "vis"]
