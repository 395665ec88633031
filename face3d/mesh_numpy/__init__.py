"""Plain-numpy twins of face3d.mesh with the same signatures and results: render, light, linear, affine and float16
are reimplemented in numpy (the reference for the C++ kernels); transform, io and vis have no kernel and re-export
face3d.mesh's."""
from face3d.mesh_numpy import affine, float16, io, light, linear, render, transform, vis

__all__ = ["affine", "float16", "io", "light", "linear", "render", "transform", "vis"]
