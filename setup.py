"""Build of the C++ mesh kernels and the JPEG region decoder (Cython); all metadata lives in pyproject.toml."""
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
# Optional: it needs libjpeg-turbo 2.0 or newer and its headers (Debian: libjpeg62-turbo-dev); without them the
# generator decodes whole images and encodes its crops through OpenCV, to the same bytes.
jpeg_region = Extension(
    "face3d.utils._jpeg_region",
    sources=["jpeg_cython/jpeg_region_cython.pyx", "jpeg_cython/jpeg_region.c", "jpeg_cython/jpeg_encode.c"],
    include_dirs=["jpeg_cython"],
    libraries=["jpeg"],
    extra_compile_args=["-O2"],
)
# setuptools leaves out an optional extension its compiler or linker fails on, with a warning. The flag is set on
# what cythonize() returns: its new Extension objects drop it.
extensions = cythonize([mesh_core, jpeg_region], compiler_directives={"language_level": "3"})
for extension in extensions:
    extension.optional = extension.name == jpeg_region.name
setup(ext_modules=extensions)
