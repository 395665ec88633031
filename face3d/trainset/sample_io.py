"""Reading a 300W-LP sample: the image (size checked from its header before decoding) and the ``.mat``
parameters (keys, shapes, finite values, positive scale), each refused with a one-line error naming the file.
The generator reads only the parameters it uses (``read_params``); ``read_300wlp_sample`` adds ``pt2d``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from face3d.utils.errors import InputFileError
from face3d.utils.image_header import UnsupportedImageFormat, read_image_header
from face3d.utils.jpeg_region import decode_jpeg_region
from face3d.utils.matfile import matlab_kind, read_mat

__all__ = ["read_image", "open_image", "StoredImage", "decode_stored_pixels", "image_size", "generation_params",
           "require_rgb_image", "read_params", "read_300wlp_sample", "require_image_file", "DEFAULT_MAX_PIXELS"]

logger = logging.getLogger(__name__)

_REQUIRED_KEYS = ("Pose_Para", "Shape_Para", "Exp_Para")
_DECODED_FORMATS = ("png", "jpeg", "bmp")  # read_image_header's formats that OpenCV decodes here
# Largest image a reader decodes: 100 megapixels take 300 MB as RGB (a few times that while decoding).
DEFAULT_MAX_PIXELS = 100_000_000
# Whether this process has warned of an image's EXIF orientation: the advice is the same for every image (a folder
# of phone photos has hundreds), so later ones are named at DEBUG level; each worker process warns once of its own.
_orientation_warned = False


def _require_file(path, kind: str) -> None:
    """InputFileError naming ``path`` unless it is a file: "<kind> not found", or for a folder "is a folder; give
    the <kind> in it"."""
    if not os.path.isfile(path):
        problem = f"is a folder; give the {kind} in it" if os.path.isdir(path) else f"{kind} not found"
        raise InputFileError(path, problem)


def require_image_file(image_path) -> None:
    """InputFileError naming ``image_path`` unless it is a file (missing: "image file not found", or a folder)."""
    _require_file(image_path, "image file")


def _decoded_header(data):
    """The ``ImageHeader`` of a JPEG, PNG or BMP file's bytes (the formats decoded here); None for another format
    or a truncated or corrupt header."""
    try:
        header = read_image_header(data)
    except ValueError:
        return None
    return header if header.format in _DECODED_FORMATS else None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a JPEG, PNG or BMP file's bytes (the formats decoded here), without
    decoding (``face3d.utils.image_header``); None for another format or a truncated or corrupt header."""
    header = _decoded_header(data)
    return None if header is None else (header.width, header.height)


def decode_stored_pixels(data) -> np.ndarray | None:
    """An image file's bytes (uint8 array or bytes) decoded by OpenCV to (h, w, 3) uint8 BGR with the pixels as
    stored: a JPEG's EXIF Orientation tag is ignored, since a 300W-LP ``.mat`` (fitted in MATLAB, read by PRNet
    through skimage), a landmark file and the header's size all describe the stored pixels. None when OpenCV cannot
    decode them."""
    return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)


def _undecodable(data) -> str:
    """Why an image file's bytes did not decode: corrupt, or another format than the ones read (named where the
    header tells it: WebP)."""
    if len(data) == 0:
        return "cannot decode the image: the file is empty"
    try:
        kind = read_image_header(data).format
    except UnsupportedImageFormat:
        kind = None
    except ValueError:  # a truncated or corrupt header
        return "cannot decode the image (corrupt or truncated)"
    if kind in _DECODED_FORMATS:
        return "cannot decode the image (corrupt or truncated)"
    named = "a WebP image, " if kind == "webp" else ""
    return f"cannot decode the image: {named}not a JPEG, PNG or BMP file, the formats read (convert it to one)"


class StoredImage:
    """An image file read but not yet decoded (``open_image``): its path, bytes and header, which gives its size.

    ``rgb()`` decodes it; ``rgba(box)`` too, with alpha, and of a colour JPEG only the pixels in ``box`` where the
    region decoder is available (``face3d.utils.jpeg_region``): the generator asks for the pixels its crops read.
    Both warn once per process of a JPEG whose EXIF orientation is not 1 (``read_image``).
    """

    def __init__(self, path: str, data: np.ndarray, header):
        self.path, self.data, self.header = path, data, header
        self.width, self.height = header.width, header.height

    def _whole(self) -> np.ndarray:
        """(h, w, 3) uint8 BGR, the whole file decoded by OpenCV (``decode_stored_pixels``).
        Raises: InputFileError naming the file, when it cannot be decoded (corrupt, truncated)."""
        decoded = decode_stored_pixels(self.data)
        if decoded is None:
            raise InputFileError(self.path, _undecodable(self.data))
        self._note_orientation()
        return decoded

    def _note_orientation(self) -> None:
        if self.header.orientation not in (None, 1):
            _log_orientation(self.path, self.header.orientation)

    def rgb(self) -> np.ndarray:
        """(h, w, 3) uint8 RGB. Raises: see ``_whole``."""
        return cv2.cvtColor(self._whole(), cv2.COLOR_BGR2RGB)

    def rgba(self, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """(h, w, 4) uint8 RGBA, alpha 255: the pixels in ``box`` = (x0, x1, y0, y1) as ``rgb()`` gives them, the
        others unspecified; all of them when ``box`` is None. Raises: see ``_whole``."""
        image = None
        if box is not None and self.header.format == "jpeg":
            image = decode_jpeg_region(self.data, self.width, self.height, box)
        if image is None:
            return cv2.cvtColor(self._whole(), cv2.COLOR_BGR2RGBA)
        self._note_orientation()
        return image


def open_image(image_path, max_pixels: int = DEFAULT_MAX_PIXELS, limit_flag: str | None = None) -> StoredImage:
    """Read an image file's bytes and header, refusing it before any pixel memory is taken when it is above
    ``max_pixels`` (width * height) or of a format whose header gives no size.

    ``limit_flag``: the caller's option that sets ``max_pixels`` ("--max-pixels"), named in that message; None:
    the caller has none.
    Raises:
        InputFileError: naming the file, when it is missing, too large or of another format.
    """
    image_path = os.fspath(image_path)  # plain strings: this runs for every sample
    require_image_file(image_path)
    data = np.fromfile(image_path, dtype=np.uint8)
    header = _decoded_header(data)
    if header is None:
        raise InputFileError(image_path, _undecodable(data))
    size = header.width * header.height
    if size > max_pixels:
        flag = "" if limit_flag is None else f" ({limit_flag})"
        raise InputFileError(image_path, f"the image is {header.width}x{header.height} = {size} pixels, above the "
                                         f"limit of {max_pixels}{flag}")
    return StoredImage(image_path, data, header)


def read_image(image_path, max_pixels: int = DEFAULT_MAX_PIXELS, limit_flag: str | None = None) -> np.ndarray:
    """Decode an image file to (h, w, 3) uint8 RGB (``open_image(...).rgba()`` gives RGBA, as the generator reads).

    The size is read from the header first (``open_image``: ``max_pixels`` and ``limit_flag`` are its). The pixels
    come as stored (``decode_stored_pixels``: a JPEG's EXIF orientation is ignored), with a warning naming the
    first file of the process whose orientation is not 1 (viewers show it turned or mirrored), since landmarks made
    on the photo as shown would not fit them; later such files are named at DEBUG level.
    Raises:
        InputFileError: naming the file, when it is missing, too large, of another format or undecodable.
    """
    return open_image(image_path, max_pixels, limit_flag).rgb()


def _log_orientation(image_path, orientation: int) -> None:
    """Warn that ``image_path`` has EXIF ``orientation`` (not 1) and is read as stored, with the advice, for the
    process's first such image; log the later ones at DEBUG level."""
    global _orientation_warned
    if _orientation_warned:
        logger.debug("%s: EXIF orientation %d: its pixels are read as stored, not rotated", image_path, orientation)
        return
    _orientation_warned = True
    logger.warning("%s: EXIF orientation %d (viewers show the photo turned or mirrored): its pixels are read as "
                   "stored, not rotated; landmarks, boxes and .mat files must describe the stored pixels (further "
                   "such images are named at debug level only)", image_path, orientation)


def _read_mat(mat_path, keys) -> dict:
    _require_file(mat_path, "parameter file (.mat)")
    return read_mat(mat_path, variable_names=keys)


def require_rgb_image(image, where) -> None:
    """InputFileError naming ``where`` unless ``image`` is what ``read_image`` returns: an (h, w, 3) uint8 RGB
    array with h, w >= 1 (a float or 16-bit image is refused, not rescaled: its range is the caller's to know)."""
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            and image.size > 0):
        got = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise InputFileError(where, f"the image must be an (h, w, 3) uint8 RGB array (0-255), got a {got}")


def generation_params(where, mat: dict) -> dict:
    """The generation parameters of a 300W-LP sample, checked, from its ``.mat`` variables (or a dict in memory):
    ``Pose_Para`` (7,), ``Shape_Para`` (n, 1), ``Exp_Para`` (m, 1) as float64 arrays (other keys are left out).

    Raises:
        InputFileError: naming ``where`` (the file, or a sample's name): a missing key, a parameter that is not a
            numeric array (a MATLAB cell, a list), of the wrong shape, complex or not finite, or a scale
            (``Pose_Para`` entry 7) that is not positive.
    """
    missing = [k for k in _REQUIRED_KEYS if k not in mat]
    if missing:
        raise InputFileError(where, f"missing key(s) {', '.join(missing)} (a 300W-LP .mat needs "
                          f"{', '.join(_REQUIRED_KEYS)})")
    params = {}
    for key, shape in (("Pose_Para", (7,)), ("Shape_Para", (-1, 1)), ("Exp_Para", (-1, 1))):
        kind = matlab_kind(mat[key])
        if kind == "complex array":
            raise InputFileError(where, f"{key} has complex values")
        if kind != "numeric array":  # a cell, struct, text or sparse matrix: its shape would say nothing
            raise InputFileError(where, f"{key} is a {kind} of shape {np.shape(mat[key])}, expected a numeric array")
        try:
            value = np.asarray(mat[key], dtype=np.float64).reshape(shape)
        except ValueError as exc:  # a numeric array always converts; only its shape can be wrong
            raise InputFileError(where, f"{key} has shape {np.shape(mat[key])}, expected "
                              f"{'7 values' if key == 'Pose_Para' else 'a column vector'}") from exc
        if not np.all(np.isfinite(value)):
            raise InputFileError(where, f"{key} contains NaN or infinite values")
        params[key] = value
    if not params["Pose_Para"][6] > 0:
        raise InputFileError(where, f"Pose_Para scale (entry 7) must be positive, got {params['Pose_Para'][6]}")
    return params


def _pt2d(mat_path, value) -> np.ndarray:
    """A .mat's ``pt2d`` as (2, k) float64; InputFileError naming the file, what it holds and its shape otherwise."""
    kind = matlab_kind(value)
    if kind != "numeric array" or value.ndim != 2 or value.shape[0] != 2:
        raise InputFileError(mat_path, f"pt2d is a {kind} of shape {np.shape(value)}, expected a (2, k) numeric "
                                       f"array")
    return value.astype(np.float64)


def read_params(mat_path) -> dict:
    """The generation parameters of a 300W-LP ``.mat``: ``Pose_Para`` (7,), ``Shape_Para`` (n, 1), ``Exp_Para``
    (m, 1), float64. Only these three variables are read (``pt2d``, ``roi`` and the rest are not even parsed), so
    an annotation the generator does not use cannot fail a sample.

    Raises:
        InputFileError: see ``read_300wlp_sample``.
    """
    return generation_params(mat_path, _read_mat(mat_path, _REQUIRED_KEYS))


def read_300wlp_sample(image_path, mat_path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, dict]:
    """Read one 300W-LP sample.

    Args:
        image_path: the image (JPEG, PNG or BMP; greyscale is expanded to 3 channels).
        mat_path: its ``.mat`` with ``Pose_Para`` (1, 7), ``Shape_Para`` (n, 1), ``Exp_Para`` (m, 1) and
            optionally ``pt2d`` (2, k) (k = 68 in 300W-LP, 21 in AFLW2000).
        max_pixels: largest image decoded (see ``read_image``).
    Returns:
        image: (h, w, 3) uint8 RGB.
        params: dict with ``Pose_Para`` (7,) float64 [pitch, yaw, roll (rad), tx, ty, tz, scale],
        ``Shape_Para`` (n, 1) float64, ``Exp_Para`` (m, 1) float64 and ``pt2d`` (2, k) float64 if present.
    Raises:
        InputFileError: missing, undecodable or too large image (see ``read_image``), missing or unreadable
            ``.mat``, a missing key, a wrongly shaped, complex or non-finite parameter, a non-positive scale, a
            ``pt2d`` that is not a (2, k) numeric array (a MATLAB cell, another shape); the message names the file.
    """
    image = read_image(Path(image_path), max_pixels)
    mat_path = Path(mat_path)
    mat = _read_mat(mat_path, _REQUIRED_KEYS + ("pt2d",))
    params = generation_params(mat_path, mat)
    if "pt2d" in mat:
        params["pt2d"] = _pt2d(mat_path, mat["pt2d"])
    return image, params
