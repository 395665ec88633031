"""Morphable face models: BFM loading (``load``), the embedded default model (``default_model``),
generation and fitting (``MorphableModel``, ``fit``, its cameras in ``camera``).

``MorphabelModel`` is face3d's original (misspelt) class name, kept with face3d's constructor arguments.
"""
from face3d.morphable_model import load
from face3d.morphable_model.camera import fit_from_pose_para, flip_y, pose_para_from_fit
from face3d.morphable_model.fit import FitResult, LandmarkFitter
from face3d.morphable_model.morphable_model import MorphabelModel, MorphableModel, model_identity

__all__ = ["load", "MorphableModel", "MorphabelModel", "FitResult", "LandmarkFitter",
           "flip_y", "pose_para_from_fit", "fit_from_pose_para", "model_identity"]
