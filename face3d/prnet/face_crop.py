"""Face crops for the network and the network's maps back in the image (no TensorFlow).

Two crop rules (``face3d.contract``), PRNet's for a detector's box (``box_crop``) and the generator's training crop
for 68 landmarks (``landmark_crop``), both give a ``face3d.trainset.crop.CropBox``; ``face_crop_box`` takes either.
``crop_face`` warps an image to the network's S x S input and ``restore_map`` brings the map back. Points are image
pixels (x right, y down); a map holds crop-pixel x, y, z as ``output * 1.1 * R`` with R the UV-data resolution.
"""
from dataclasses import dataclass

import cv2
import numpy as np

from face3d.contract import BOX_SCALE, BOX_SHIFT, LANDMARK_SCALE, map_scale
from face3d.prnet.uv_weights import reduced_indices
from face3d.trainset.crop import CropBox, compose, crop_matrix, crop_scales, keypoint_box
from face3d.trainset.landmark_files import landmarks_from_array
from face3d.utils.unit_floats import refuse_above_one

__all__ = ["FaceCrop", "as_rgb_uint8", "box_crop", "refuse_box_outside", "landmark_crop", "face_crop_box",
           "crop_face", "restore_map"]


@dataclass(frozen=True)
class FaceCrop:
    """A face crop ready for the network.

    Attributes:
        image: (S, S, 3) float32 RGB in [0, 1], the network input.
        matrix: (2, 3) float64 affine map from original image pixels to map pixels (the R x R crop the map's
            values refer to).
        box: the CropBox in the original image.
        resolution: R, the side of the crop the map's values refer to (the UV-data resolution).
    """
    image: np.ndarray
    matrix: np.ndarray
    box: CropBox
    resolution: int


def as_rgb_uint8(image):
    """An image as (h, w, 3) uint8 RGB: greyscale is repeated, alpha dropped, floats in [0, 1] scaled by 255
    (``round(255 x)``, below 0 clipped to 0).

    Args:
        image: (h, w), (h, w, 1), (h, w, 3) or (h, w, 4) uint8, or float in [0, 1].
    Returns:
        (h, w, 3) uint8 C-contiguous.
    Raises:
        ValueError: another shape or dtype, a float image holding NaN or inf (which would turn black), or one
        above 1 (``unit_floats.refuse_above_one``) such as one in 0-255 (PRNet's ``api.process`` took those), which
        would be clipped to white.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or min(image.shape[:2]) < 1:
        raise ValueError(f"image must have shape (h, w), (h, w, 3) or (h, w, 4), got {image.shape}")
    if image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.floating):
            raise ValueError(f"image must be uint8 or float in [0, 1], got dtype {image.dtype}")
        if not np.isfinite(image).all():
            raise ValueError("float images must be finite, found NaN or inf")
        refuse_above_one(image, "images")
        image = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def _box_corners(box):
    """(x0, y0, x1, y1) floats of a face box; ValueError ``box must be 4 numbers (x0, y0, x1, y1), got N`` for
    another count (a detector's (x0, y0, x1, y1, score) included)."""
    values = np.asarray(box, dtype=np.float64).reshape(-1)
    if values.size != 4:
        raise ValueError(f"box must be 4 numbers (x0, y0, x1, y1), got {values.size}")
    return tuple(float(v) for v in values)


def box_crop(box):
    """PRNet's crop for a face detector's box (PRNet's rule for dlib boxes, ``int(old_size * 1.58)``).

    Args:
        box: (x0, y0, x1, y1) image pixels, x1 > x0, y1 > y0 (4 numbers: a detector's score is not one of them).
    Returns:
        CropBox: centre ``((x0 + x1) / 2, (y0 + y1) / 2 + 0.14 m)``, side ``max(1, int(1.58 m))``, m the mean
        side (PRNet truncates the side, not the centre).
    """
    x0, y0, x1, y1 = _box_corners(box)
    if not (x1 > x0 and y1 > y0) or not np.all(np.isfinite([x0, y0, x1, y1])):
        raise ValueError(f"box must be finite (x0, y0, x1, y1) with x1 > x0 and y1 > y0, got {box}")
    mean_side = ((x1 - x0) + (y1 - y0)) / 2.0
    return CropBox((x0 + x1) / 2.0, (y0 + y1) / 2.0 + BOX_SHIFT * mean_side,
                   float(max(1, int(BOX_SCALE * mean_side))))


def refuse_box_outside(box, width, height, name="box"):
    """ValueError ``<name>: x0 y0 x1 y1 lies outside the W x H image`` when the face box (x0, y0, x1, y1), in image
    pixels, overlaps none of the pixel centres 0..W-1, 0..H-1: its crop would be all black (a box meant for
    another image, or in other units)."""
    x0, y0, x1, y1 = _box_corners(box)
    if x1 < 0 or y1 < 0 or x0 > width - 1 or y0 > height - 1:
        raise ValueError(f"{name}: {x0:g} {y0:g} {x1:g} {y1:g} lies outside the {width} x {height} image")


def _landmark_points(landmarks):
    """(68, 2) float64 x, y of 68 landmarks (``landmark_files.landmarks_from_array``), telling to crop from a box
    when there are not 68."""
    return landmarks_from_array(landmarks, remedy="for fewer points (a detector's 5, AFLW's 21) crop from the "
                                                  "face's box (x0, y0, x1, y1) instead")


def landmark_crop(landmarks):
    """The generator's crop around 68 landmarks (``crop.keypoint_box`` with scale 1.5, unperturbed): centre of the
    landmarks' box, side 1.5 x its mean side (PRNet's demo uses 1.6 with its own training crop), so a network sees
    faces framed as in training. Exactly 68, in iBUG order: the box of fewer points (a detector's 5, AFLW's 21) is
    smaller than the 68's, and its crop would frame the face tighter than training did.

    Args:
        landmarks: the 68 iBUG landmarks, (68, 2|3) or (2|3, 68) image pixels (x, y); only x and y are used.
    Returns:
        CropBox.
    Raises:
        ValueError: not 68 points (the message says to crop from a box instead), NaN or inf, or no area.
    """
    return _crop_around(_landmark_points(landmarks))


def _crop_around(points):
    """``landmark_crop`` of (68, 2) x, y points already read by ``_landmark_points``."""
    box = keypoint_box(points, crop_scale=LANDMARK_SCALE)
    if not box.size > 0:
        raise ValueError("landmarks span no area: cannot crop around them")
    return box


def face_crop_box(width, height, box=None, landmarks=None):
    """The crop of the face in a ``width`` x ``height`` image from a detector ``box`` (``box_crop``) or from 68
    ``landmarks`` (``landmark_crop``): exactly one of them. ``PRN.crop``, ``face3d demo``, ``face3d serve`` and
    ``face3d offline --boxes`` crop through it (ground-truth landmarks of AFLW2000-3D samples are cropped by
    ``landmark_crop`` alone).

    Raises:
        ValueError: both or neither given, either refused by its crop rule, or the face outside the image
        (``refuse_box_outside``: ``box: ...`` or ``landmarks' box: ... lies outside the W x H image``).
    """
    if (box is None) == (landmarks is None):
        raise ValueError("give exactly one of box (x0, y0, x1, y1) and landmarks (68 points)")
    if box is not None:
        crop_box = box_crop(box)
        refuse_box_outside(box, width, height)
        return crop_box
    points = _landmark_points(landmarks)
    crop_box = _crop_around(points)
    refuse_box_outside((*points.min(axis=0), *points.max(axis=0)), width, height, name="landmarks' box")
    return crop_box


def crop_face(image, box, input_size, resolution):
    """Warp the face in ``box`` to the network's input.

    The box's corners go to pixels 0 and R - 1 of the R x R crop (``crop.crop_matrix``). When S < R (a network
    trained at a reduced input size) the crop is taken straight at S: pixel q of the S crop lies at
    ``(R / S) q + (R / S - 1) / 2`` of the R crop, as the training pipeline resamples.

    Args:
        image: (h, w, 3) uint8 RGB (anything ``as_rgb_uint8`` accepts).
        box: CropBox.
        input_size: S, the network's input side.
        resolution: R, the map resolution (the UV data's); S <= R.
    Returns:
        FaceCrop (bilinear warp, black outside the image).
    """
    s, r = int(input_size), int(resolution)
    if not 1 <= s <= r:
        raise ValueError(f"input_size must be in [1, resolution={r}], got {s}")
    to_map = crop_matrix(box, r)
    to_input = to_map
    if s != r:
        k = r / s
        offset = (0.5 * k - 0.5) / k
        to_input = compose(np.array([[1.0 / k, 0.0, -offset], [0.0, 1.0 / k, -offset]]), to_map)
    warped = cv2.warpAffine(as_rgb_uint8(image), to_input, (s, s), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return FaceCrop(warped.astype(np.float32) * np.float32(1.0 / 255.0), to_map, box, r)


def restore_map(output, matrix, resolution):
    """A network output back in original image coordinates.

    The map in crop pixels is ``output * 1.1 * R`` (``contract.map_scale``). An S map (S < R) is first expanded to
    R x R nearest-neighbour (``uv_weights.reduced_indices``), so the keypoints are read exactly where training put
    them (``uv_weights.resize_uv_data``, ``uv_weights.resample_map``). Restoring inverts the crop affine
    ``p' = A p + t``: ``p = A^-1 (p' - t)`` for x, y and ``z = z' / k`` with k the crop's scale ``sqrt(|det A|)``
    (PRNet's ``z / tform.params[0, 0]``).

    Args:
        output: (S, S, 3) normalised map in [0, 1].
        matrix: (2, 3) image -> map-pixel affine of the crop (``FaceCrop.matrix``).
        resolution: R.
    Returns:
        (R, R, 3) float32 position map: image x, y (pixels) and z (pixels, arbitrary origin).
    """
    output = np.asarray(output, dtype=np.float32)
    r = int(resolution)
    s = output.shape[0]
    if output.ndim != 3 or output.shape != (s, s, 3) or s > r:
        raise ValueError(f"output must be an (S, S, 3) map with S <= {r}, got {output.shape}")
    if s != r:
        index = reduced_indices(np.arange(r), r, s)
        output = output[np.ix_(index, index)]
    m = np.asarray(matrix, dtype=np.float64)
    inverse = np.linalg.inv(m[:, :2])
    k = crop_scales(m[None])[0]
    scale = map_scale(r)  # normalised map -> crop pixels, folded into the one affine map below
    affine = np.zeros((3, 4))
    affine[:2, :2] = inverse * scale
    affine[2, 2] = scale / k
    affine[:2, 3] = -inverse @ m[:, 2]
    # cv2.transform applies a 3x4 map per pixel (in double, SIMD), far faster than a numpy (R*R, 3) x (3, 3) product
    return cv2.transform(np.ascontiguousarray(output), affine)
