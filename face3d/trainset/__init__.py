"""Ground-truth generator for PRNet training from 300W-LP style samples.

Submodules: ``uv_layout`` and ``posmap`` (the model's UV space); ``crop``, ``sample_io``, ``sample`` and ``preview``
(one sample to crops and position maps); ``dataset`` with ``discovery``, ``outputs`` and ``worker_pool`` (the runner
of ``face3d generate``); ``pack``, ``synthetic`` and ``landmark_files``. Each says what it holds in its docstring.
The names below are imported on first use (``__getattr__``).
"""
import importlib

_EXPORTS = {
    "CropBox": "crop", "apply_affine": "crop", "compose": "crop", "crop_matrix": "crop",
    "keypoint_box": "crop", "rotation_matrix": "crop",
    "UVRasterization": "posmap", "keypoints_from_map": "posmap", "rasterize_uv": "posmap",
    "uv_keypoint_pixels": "posmap", "uv_to_pixels": "posmap",
    "GeneratedSample": "sample", "GenerationConfig": "sample",
    "TrainsetGenerator": "sample", "angle_name": "sample", "draw_preview": "preview",
    "read_300wlp_sample": "sample_io",
    "UVData": "uv_layout", "build_uv_data": "uv_layout", "load_uv_data": "uv_layout", "write_uv_data": "uv_layout",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    """Import a name of ``_EXPORTS`` from its submodule on first use (PEP 562), so that importing a light submodule
    (the command line's argument parsing) does not load OpenCV and SciPy."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'face3d.trainset' has no attribute {name!r}")
    return getattr(importlib.import_module(f"face3d.trainset.{module}"), name)


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
