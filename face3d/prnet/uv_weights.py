"""Training views of PRNet's UV data: loss weights, and the UV data and the maps resampled to a smaller network
input. Pure numpy.

The UV data itself (PRNet's uv-data folder: ``uv_kpt_ind.txt``, ``face_ind.txt``, ``triangles.txt`` and the three
mask PNGs) is read and held by ``face3d.trainset.uv_layout`` (``load_uv_data`` -> ``UVData``); the functions here
work on that ``UVData``.
"""
import numpy as np

from face3d.trainset.uv_layout import UVData, grid_triangles

__all__ = ["loss_weights", "uv_data_from_masks", "resample_indices", "reduced_indices", "resize_uv_data",
           "resample_map"]


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


def reduced_indices(indices, resolution, size):
    """The pixel of an S x S map that stands for pixels ``indices`` of the R x R map: round((i + 0.5) * S / R - 0.5),
    clipped to [0, S - 1], pixel centres at integers. A keypoint's pixel in a reduced map (``resize_uv_data``,
    ``resample_map``), and the S pixel each R pixel takes when an S map is expanded back
    (``face3d.prnet.face_crop.restore_map``). Returns int64 of the shape of ``indices``."""
    indices = np.asarray(indices, dtype=np.int64)
    return np.clip(np.rint((indices + 0.5) * size / resolution - 0.5), 0, size - 1).astype(np.int64)


def resize_uv_data(uv, size):
    """UV data for maps resampled from R x R to size x size (training at a reduced input size, ``resample_map``).

    Masks are sampled at ``resample_indices(R, size)``, as the maps are; keypoint i moves to
    round((i + 0.5) * size / R - 0.5) (``reduced_indices``) and keeps its own weight there (255 in PRNet's mask).

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
    kpt = reduced_indices(kpt_src, uv.resolution, size)
    weight = np.asarray(uv.weight_mask)[index]
    weight[kpt[1], kpt[0]] = np.maximum(weight[kpt[1], kpt[0]], np.asarray(uv.weight_mask)[kpt_src[1], kpt_src[0]])
    return uv_data_from_masks(kpt, np.asarray(uv.face_mask)[index], weight, np.asarray(uv.face_eyes)[index])


def resample_map(posmap, uv_kpt_ind, size):
    """An R x R map brought to S x S for a network of input size S: nearest-neighbour at ``resample_indices(R, S)``,
    then each keypoint's own value written at its pixel of the S map (``reduced_indices``, the keypoints of
    ``resize_uv_data``), where inference reads it (``face3d.prnet.face_crop.restore_map``). Nearest-neighbour alone
    puts there a neighbouring UV pixel's value (R pixel 2m + 1 at S pixel m when S = R / 2).

    Keypoints that share an S pixel (PRNet's mouth corners 48 and 60, and 54 and 64, at S = 64) get their mean
    there: the pixel holds one value, and the mean is the one nearest to all of them in squared error.

    Args:
        posmap: (R, R, C) map.
        uv_kpt_ind: (2, K) ints, the keypoints' pixels in the R map, row 0 x (column), row 1 y (row).
        size: S.
    Returns:
        (S, S, C) map of ``posmap``'s dtype (``posmap`` itself when S == R).
    """
    resolution, size = posmap.shape[0], int(size)
    if size == resolution:
        return posmap
    index = resample_indices(resolution, size)
    # rows, then columns: the same pixels as posmap[np.ix_(index, index)], 3.5 times as fast at S = R / 2
    resampled = np.take(np.take(posmap, index, axis=0), index, axis=1)
    kpt_x, kpt_y = np.asarray(uv_kpt_ind, dtype=np.int64)
    moved = reduced_indices(kpt_y, resolution, size) * size + reduced_indices(kpt_x, resolution, size)
    pixels, group = np.unique(moved, return_inverse=True)
    sums = np.zeros((len(pixels), posmap.shape[-1]))
    np.add.at(sums, group, posmap[kpt_y, kpt_x])
    resampled.reshape(-1, posmap.shape[-1])[pixels] = sums / np.bincount(group)[:, None]
    return resampled
