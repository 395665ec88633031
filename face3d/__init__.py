"""face3d: 3D-face ground truth from the Basel Face Model and PRNet training.

Subpackages: ``mesh`` (C++-backed kernels), ``mesh_numpy`` (their plain-numpy twins), ``morphable_model``
(BFM loading, the embedded default model, generation, fitting), ``trainset`` (PRNet ground-truth generation),
``prnet`` (network, training, inference, evaluation, export; TensorFlow is imported only where a Keras/TF model
is used), ``serve`` (reconstruction over HTTP). Importing ``face3d``, ``mesh``, ``morphable_model`` or ``trainset``
never imports TensorFlow.
"""
__version__ = "0.1.0"
