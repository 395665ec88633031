"""Ground-truth generator for PRNet training from 300W-LP style samples.

``uv_layout``: the model's UV-space masks and indices in PRNet's uv-data formats.
``posmap``: the UV layout rasterized once, position maps by interpolation, the keypoints a map encodes.
``crop``: PRNet's keypoint crop and the affine maps between image, rotated image and crop.
``sample_io``: reading a sample. ``sample``: a sample to (crop, position map) pairs, rotated copies included.
``preview``: the preview image of a pair.
``dataset``: the resumable, sharded, multi-process runner over a 300W-LP tree (``face3d generate``), with
``discovery`` (samples, shards, seeds), ``outputs`` (atomic writes, the journal) and ``worker_pool`` (processes).
``pack``: a label file packed into one HDF5 file, and its reader. ``synthetic``: the rendered default sample set.
``landmark_files``: 68-landmark files (iBUG ``.pts``, ``.txt``, ``.npy``, ``.mat``) for ``face3d fit`` and the demo.

The names below are imported on first use (PEP 562), so importing a light submodule (the command line's
argument parsing) does not load OpenCV and SciPy.
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
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'face3d.trainset' has no attribute {name!r}")
    return getattr(importlib.import_module(f"face3d.trainset.{module}"), name)


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
