"""PRNet's UV-space files (``Data/uv-data``): keypoint indices, weight mask, face mask. Pure numpy + OpenCV.

Formats (as PRNet ships them and ``face3d.trainset`` writes them):

* ``uv_kpt_ind.txt``: a 2x68 text matrix; row 0 holds x (column), row 1 holds y (row) of the 68 iBUG
  keypoints in the UV map, read as ``map[y, x]``.
* ``uv_weight_mask.png``: 8-bit grey, PRNet's 255 : 64 : 48 : 0 (68 keypoints : eyes, nose, mouth : rest of
  the face : outside), i.e. the paper's 16 : 4 : 3 : 0 scaled by 16.
* ``uv_face_mask.png`` (optional): 8-bit grey, nonzero inside the face.
"""
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = ["UVData", "load_uv_data", "read_uv_kpt_ind", "read_mask_png", "resample_indices", "resize_uv_data"]

KPT_FILE = "uv_kpt_ind.txt"
WEIGHT_FILE = "uv_weight_mask.png"
FACE_FILE = "uv_face_mask.png"


@dataclass(frozen=True)
class UVData:
    """UV-space data of one model at one resolution.

    Attributes:
        kpt_ind: (2, 68) int64, row 0 = x (column), row 1 = y (row) of each keypoint in the map.
        weight_mask: (R, R) float32 loss weights scaled so the largest is 1 (PRNet's 255 : 64 : 48 : 0 becomes
            1 : 0.251 : 0.188 : 0, the paper's 16 : 4 : 3 : 0 up to a constant factor).
        face_mask: (R, R) bool, True inside the face (``weight_mask > 0`` when no face mask file exists).
    """
    kpt_ind: np.ndarray
    weight_mask: np.ndarray
    face_mask: np.ndarray

    @property
    def resolution(self):
        """Side R of the square UV map, in pixels."""
        return int(self.weight_mask.shape[0])


def read_uv_kpt_ind(path, resolution=None):
    """Read ``uv_kpt_ind.txt``.

    Args:
        path: the text file (2 rows of 68 numbers; PRNet writes them as floats).
        resolution: if given, every index must lie in [0, resolution).
    Returns:
        (2, 68) int64 (row 0 = x, row 1 = y), rounded to the nearest integer.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"uv_kpt_ind file not found: {path}")
    values = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if values.shape != (2, 68):
        raise ValueError(f"{path}: expected a 2x68 matrix (row 0 x, row 1 y), got shape {values.shape}")
    kpt = np.rint(values).astype(np.int64)
    if resolution is not None and (kpt.min() < 0 or kpt.max() >= resolution):
        raise ValueError(f"{path}: keypoint indices must lie in [0, {resolution}), got [{kpt.min()}, {kpt.max()}]")
    return kpt


def read_mask_png(path):
    """Read an 8-bit single-channel mask PNG as (H, W) uint8 (a colour PNG is reduced to its first channel)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask file not found: {path}")
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise ValueError(f"{path}: not a readable image")
    if mask.ndim == 3:
        mask = mask[..., 0]
    if mask.dtype != np.uint8 or mask.shape[0] != mask.shape[1]:
        raise ValueError(f"{path}: expected a square 8-bit mask, got {mask.shape} {mask.dtype}")
    return mask


def load_uv_data(directory):
    """Load a ``uv-data`` folder (see the module docstring for the files).

    Args:
        directory: folder holding ``uv_kpt_ind.txt`` and ``uv_weight_mask.png`` (``uv_face_mask.png`` optional).
    Returns:
        UVData at the weight mask's resolution.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"uv-data folder not found: {directory}")
    weight = read_mask_png(directory / WEIGHT_FILE)
    if weight.max() == 0:
        raise ValueError(f"{directory / WEIGHT_FILE}: the weight mask is all zero")
    resolution = weight.shape[0]
    kpt = read_uv_kpt_ind(directory / KPT_FILE, resolution)
    face_path = directory / FACE_FILE
    if face_path.is_file():
        face = read_mask_png(face_path)
        if face.shape != weight.shape:
            raise ValueError(f"{face_path}: shape {face.shape} differs from the weight mask's {weight.shape}")
        face_mask = face > 0
    else:
        face_mask = weight > 0
    return UVData(kpt, (weight.astype(np.float32) / np.float32(weight.max())), face_mask)


def resample_indices(resolution, size):
    """Source pixel of each of ``size`` output pixels when resampling R -> S nearest-neighbour:
    floor((q + 0.5) * R / S), pixel centres at integers. Returns (size,) int64."""
    if resolution < 1 or size < 1:
        raise ValueError(f"resolution and size must be positive, got {resolution} and {size}")
    return np.floor((np.arange(size) + 0.5) * resolution / size).astype(np.int64)


def resize_uv_data(uv, size):
    """UV data for maps resampled nearest-neighbour from R x R to size x size (training at a reduced size).

    Masks are sampled at ``resample_indices(R, size)`` (as the pipeline samples the maps); keypoint i moves to
    round((i + 0.5) * size / R - 0.5) and keeps its own weight there.

    Args:
        uv: UVData at resolution R.
        size: new side in pixels.
    Returns:
        UVData at resolution ``size`` (``uv`` itself when size == R).
    """
    size = int(size)
    if size == uv.resolution:
        return uv
    index = resample_indices(uv.resolution, size)
    kpt = np.clip(np.rint((uv.kpt_ind + 0.5) * size / uv.resolution - 0.5), 0, size - 1).astype(np.int64)
    weight = uv.weight_mask[np.ix_(index, index)].copy()
    weight[kpt[1], kpt[0]] = np.maximum(weight[kpt[1], kpt[0]], uv.weight_mask[uv.kpt_ind[1], uv.kpt_ind[0]])
    return UVData(kpt, weight, uv.face_mask[np.ix_(index, index)].copy())
