"""face3d.mesh.transform re-exported: it has no C++ kernel, so there is one implementation."""
from face3d.mesh.transform import *  # noqa: F401,F403
from face3d.mesh.transform import __all__  # noqa: F401
