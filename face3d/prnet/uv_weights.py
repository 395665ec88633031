"""Training views of PRNet's UV data: loss weights, and the UV data of maps resampled to a smaller network input.
Pure numpy.

The UV data itself (PRNet's uv-data folder: ``uv_kpt_ind.txt``, ``face_ind.txt``, ``triangles.txt`` and the three
mask PNGs) is read and held by ``face3d.trainset.uv_layout`` (``load_uv_data`` -> ``UVData``); the functions here
work on that ``UVData``.
"""
import numpy as np

from face3d.trainset.uv_layout import UVData, grid_triangles

__all__ = ["loss_weights", "uv_data_from_masks", "resample_indices", "resize_uv_data"]


def loss_weights(uv):
    """Per-pixel loss weights of a UVData: ``weight_mask / weight_mask.max()`` as (R, R) float32.

    PRNet's 255 : 64 : 48 : 0 (keypoints : eyes, nose, mouth : rest of the face : outside) becomes
    1 : 0.251 : 0.188 : 0, the paper's 16 : 4 : 3 : 0 up to a constant factor.
    """
    weight = np.asarray(uv.weight_mask)
    if weight.max() <= 0:
        raise ValueError("uv.weight_mask is all zero: no pixel would count in the loss")
    return weight.astype(np.float32) / np.float32(weight.max())


def uv_data_from_masks(uv_kpt_ind, face_mask, weight_mask, face_eyes):
    """A UVData from its keypoints and masks, with ``face_ind`` and ``triangles`` derived from the face mask as the
    generator derives them (row-major face pixels; two triangles per 2 x 2 block of face pixels).

    Args:
        uv_kpt_ind: (2, 68) ints, row 0 x (column), row 1 y (row).
        face_mask, weight_mask, face_eyes: (R, R) uint8 masks (see ``face3d.trainset.uv_layout``).
    Returns:
        UVData at resolution R.
    """
    face_mask = np.asarray(face_mask, dtype=np.uint8)
    face_ind = np.flatnonzero(face_mask).astype(np.int64)
    return UVData(uv_kpt_ind=np.asarray(uv_kpt_ind, dtype=np.int32), face_ind=face_ind,
                  triangles=grid_triangles(face_mask, face_ind), face_mask=face_mask,
                  weight_mask=np.asarray(weight_mask, dtype=np.uint8), face_eyes=np.asarray(face_eyes, np.uint8))


def resample_indices(resolution, size):
    """Source pixel of each of ``size`` output pixels when resampling R -> S nearest-neighbour:
    floor((q + 0.5) * R / S), pixel centres at integers. Returns (size,) int64."""
    if resolution < 1 or size < 1:
        raise ValueError(f"resolution and size must be positive, got {resolution} and {size}")
    return np.floor((np.arange(size) + 0.5) * resolution / size).astype(np.int64)


def resize_uv_data(uv, size):
    """UV data for maps resampled nearest-neighbour from R x R to size x size (training at a reduced input size).

    Masks are sampled at ``resample_indices(R, size)``, as the pipeline samples the maps; keypoint i moves to
    round((i + 0.5) * size / R - 0.5) (clipped to the map) and keeps its own weight there (255 in PRNet's mask).

    Args:
        uv: UVData at resolution R.
        size: new side in pixels.
    Returns:
        UVData at resolution ``size`` (``uv`` itself when size == R).
    """
    size = int(size)
    if size == uv.resolution:
        return uv
    index = np.ix_(resample_indices(uv.resolution, size), resample_indices(uv.resolution, size))
    kpt_src = np.asarray(uv.uv_kpt_ind, dtype=np.int64)
    kpt = np.clip(np.rint((kpt_src + 0.5) * size / uv.resolution - 0.5), 0, size - 1).astype(np.int64)
    weight = np.asarray(uv.weight_mask)[index]
    weight[kpt[1], kpt[0]] = np.maximum(weight[kpt[1], kpt[0]], np.asarray(uv.weight_mask)[kpt_src[1], kpt_src[0]])
    return uv_data_from_masks(kpt, np.asarray(uv.face_mask)[index], weight, np.asarray(uv.face_eyes)[index])
