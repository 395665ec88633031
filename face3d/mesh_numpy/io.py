"""face3d.mesh.io re-exported: it has no C++ kernel, so there is one implementation."""
from face3d.mesh.io import *  # noqa: F401,F403
from face3d.mesh.io import __all__  # noqa: F401
