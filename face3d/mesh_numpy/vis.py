"""face3d.mesh.vis re-exported: it has no C++ kernel, so there is one implementation."""
from face3d.mesh.vis import *  # noqa: F401,F403
from face3d.mesh.vis import __all__  # noqa: F401
