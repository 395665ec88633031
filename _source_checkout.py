"""Which face3d the scripts of this source checkout import (examples/*.py, demo.py, train.py, evaluate.py, export.py).

The checkout's own while its C++ extension is built in place (``pip install -e .`` or ``python setup.py build_ext
-i``); else an installed face3d (``pip install .``), which a checkout without the extension would otherwise hide;
else the checkout's, whose import then says how to build the extension. Not part of the installed package.
"""
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent


def prefer_built_checkout():
    """Put CHECKOUT first on ``sys.path`` when ``face3d/mesh/_mesh_core`` is built there for this Python, else last
    (after site-packages); its other entries (Python puts a root script's folder first) are removed."""
    mesh = CHECKOUT / "face3d" / "mesh"
    built = any((mesh / f"_mesh_core{suffix}").is_file() for suffix in EXTENSION_SUFFIXES)
    others = [entry for entry in sys.path if Path(entry or ".").resolve() != CHECKOUT]
    sys.path[:] = [str(CHECKOUT), *others] if built else [*others, str(CHECKOUT)]
