"""face3d: 3D-face ground truth from the Basel Face Model and PRNet training.

Subpackages: ``mesh`` (C++-backed kernels), ``mesh_numpy`` (their plain-numpy twins), ``morphable_model``
(BFM loading, the embedded default model, generation, fitting), ``trainset`` (PRNet ground-truth generation),
``fitting`` (your own photos and their landmarks as 300W-LP samples), ``prnet`` (network, training, inference,
evaluation, export; TensorFlow is imported only where a Keras/TF model is used), ``serve`` (reconstruction over
HTTP), ``cli`` (the ``face3d`` command). Importing ``face3d``, ``mesh``, ``morphable_model``, ``trainset``,
``fitting`` or ``cli`` never imports TensorFlow.
"""
from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("face3d")  # the one version, pyproject.toml's, as installed
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
