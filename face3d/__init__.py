"""face3d: 3D-face ground truth from the Basel Face Model and PRNet training.

Subpackages: ``mesh`` (C++-backed kernels), ``mesh_numpy`` (their plain-numpy twins),
``morphable_model`` (BFM loading, generation, fitting). Importing ``face3d`` never imports TensorFlow.
"""
__version__ = "0.1.0"
