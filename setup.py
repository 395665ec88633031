"""Build of the C++ mesh kernels (Cython); all metadata lives in pyproject.toml."""
import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

mesh_core = Extension(
    "face3d.mesh._mesh_core",
    sources=["mesh_cython/mesh_core_cython.pyx", "mesh_cython/mesh_core.cpp"],
    include_dirs=[np.get_include(), "mesh_cython"],
    language="c++",
    extra_compile_args=["-O3", "-std=c++17", "-ffp-contract=off"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
)

setup(ext_modules=cythonize([mesh_core], compiler_directives={"language_level": "3"}))
