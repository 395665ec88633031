"""What the benchmark scripts share: their ``--help`` text and the loading of an anchor's compiled kernels from a
built checkout.

The scripts run as ``python bench/<script>.py``, which puts this folder first on ``sys.path``.
"""
import importlib.util
from pathlib import Path


def description(doc):
    """A script's ``--help`` description: the first paragraph of its module docstring ``doc``."""
    return doc.strip().split("\n\n")[0]


def load_extension(folder, stem, subfolder):
    """The compiled module ``stem`` (a ``stem*.so`` file) of an anchor, imported by its path (the anchors' package
    names would clash with this project's). ``folder``: the anchor's built checkout, or its ``subfolder`` that holds
    the .so."""
    folder = Path(folder)
    found = sorted(folder.glob(f"{stem}*.so")) or sorted((folder / subfolder).glob(f"{stem}*.so"))
    if not found:
        raise SystemExit(f"{folder}: no {stem}*.so in it or in its {subfolder} (build it there with "
                         "`python setup.py build_ext -i`)")
    spec = importlib.util.spec_from_file_location(stem, found[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_face3d_core(folder):
    """YadiraF/face3d's Cython core ``mesh_core_cython`` from its checkout ``folder`` (or its face3d/mesh/cython)."""
    return load_extension(folder, "mesh_core_cython", Path("face3d", "mesh", "cython"))


def load_sim3dr_core(folder):
    """3DDFA_V2's ``Sim3DR_Cython`` from its checkout ``folder`` (or its Sim3DR folder)."""
    return load_extension(folder, "Sim3DR_Cython", Path("Sim3DR"))
