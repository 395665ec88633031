"""Mesh operations backed by C++ kernels: transform (numpy), render, light, linear (basis combinations), affine
(3x4 maps of points), float16 (the rounding of maps written as float16), io, vis.

face3d.mesh_numpy offers the same functions in plain numpy (the reference the tests hold the kernels to).
vis imports matplotlib only when one of its functions is called.
"""
import importlib.util
from pathlib import Path

if importlib.util.find_spec("face3d.mesh._mesh_core") is None:  # a source checkout whose extension was never built
    _CHECKOUT = Path(__file__).resolve().parents[2]
    raise ImportError(f"face3d's C++ extension (_mesh_core) is not built in {_CHECKOUT / 'face3d' / 'mesh'}: run "
                      f"`pip install -e .` or `python setup.py build_ext -i` in {_CHECKOUT}")

from face3d.mesh import affine, float16, io, light, linear, render, transform, vis  # noqa: E402  (after the extension's check)

__all__ = ["affine", "float16", "io", "light", "linear", "render", "transform", "vis"]
