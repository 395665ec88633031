"""Build of the C++ mesh kernels and the JPEG region decoder (Cython); all metadata lives in pyproject.toml."""
import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

mesh_core = Extension(
    "face3d.mesh._mesh_core",
    sources=["mesh_cython/mesh_core_cython.pyx", "mesh_cython/mesh_core.cpp"],
    include_dirs=[np.get_include(), "mesh_cython"],
    language="c++",
    extra_compile_args=["-O3", "-std=c++17", "-ffp-contract=off"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
)
# Optional: it needs libjpeg-turbo 2.0 or newer and its headers (Debian: libjpeg62-turbo-dev); without them the
# generator decodes whole images through OpenCV, to the same bytes.
jpeg_region = Extension(
    "face3d.utils._jpeg_region",
    sources=["jpeg_cython/jpeg_region_cython.pyx", "jpeg_cython/jpeg_region.c"],
    include_dirs=["jpeg_cython"],
    libraries=["jpeg"],
    extra_compile_args=["-O2"],
)
OPTIONAL = {jpeg_region.name}  # set after cythonize(), whose new Extension objects drop ``optional``


class BuildOptionalExtensions(build_ext):
    """build_ext that leaves out an ``OPTIONAL`` extension whose compiler or linker fails, with a warning."""

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as error:  # whatever this setuptools' compiler classes raise (LinkError is no CCompilerError)
            if ext.name not in OPTIONAL:
                raise
            self.warn(f"{ext.name} left out ({error}): libjpeg-turbo 2.0 or newer with its headers was not found, "
                      f"so JPEG images are decoded whole")


extensions = cythonize([mesh_core, jpeg_region], compiler_directives={"language_level": "3"})
for extension in extensions:  # an in-place or editable build then copies only what was built
    extension.optional = extension.name in OPTIONAL
setup(ext_modules=extensions, cmdclass={"build_ext": BuildOptionalExtensions})
