"""JPEG encoding with libjpeg-turbo, to the bytes OpenCV's ``imencode`` writes, without its colour conversions.

The encoder (``face3d.utils._jpeg_region``, built with the region decoder where libjpeg-turbo 2.0 or newer is
installed; see setup.py) reads RGB pixels, or the RGB of RGBA ones, where it finds them. Where it is missing, or
encodes test pictures to other bytes than OpenCV does, every call returns None and the caller encodes with OpenCV.
"""
from __future__ import annotations

import functools
import logging

import cv2
import numpy as np

try:
    from face3d.utils._jpeg_region import jpeg_encode_rgb
except ImportError:  # built without libjpeg-turbo
    jpeg_encode_rgb = None

__all__ = ["encode_jpeg", "jpeg_encoder_available", "rgba_viewed"]

logger = logging.getLogger(__name__)


def _test_pictures() -> list[np.ndarray]:
    """(h, w, 3) uint8 RGB pictures: steps and textures in every channel, and noise, in sizes that are not a whole
    number of blocks."""
    y, x = np.mgrid[0:45, 0:70]
    steps = np.stack([(3 * x + 5 * y) % 256, (x * y) % 251, 255 * ((x // 7 + y // 5) % 2)], axis=2)
    noise = np.random.default_rng(0).integers(0, 256, (19, 33, 3))
    return [steps.astype(np.uint8), noise.astype(np.uint8)]


@functools.cache
def jpeg_encoder_available() -> bool:
    """Whether the encoder is built and writes OpenCV's bytes for test pictures, from RGB and from RGBA pixels, at
    three qualities. Decided once per process."""
    if jpeg_encode_rgb is None:
        return False
    for picture in _test_pictures():
        rgba = cv2.cvtColor(picture, cv2.COLOR_RGB2RGBA)
        for quality in (50, 90, 95):
            expected = cv2.imencode(".jpg", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR),
                                    [cv2.IMWRITE_JPEG_QUALITY, quality])[1].reshape(-1)
            for pixels in (picture, rgba[..., :3]):
                got = encode_jpeg(pixels, quality, check=False)
                if got is None or not np.array_equal(got, expected):
                    logger.debug("libjpeg-turbo's encoding differs from OpenCV's here: JPEG files are encoded by "
                                 "OpenCV")
                    return False
    return True


def rgba_viewed(image: np.ndarray) -> np.ndarray | None:
    """The C-order (h, w, 4) uint8 array whose ``[..., :3]`` view ``image`` is (the generator's warped crops), or
    None."""
    base = image.base
    if (isinstance(base, np.ndarray) and base.dtype == np.uint8 and base.shape == image.shape[:2] + (4,)
            and base.flags.c_contiguous and image.strides == base.strides
            and image.__array_interface__["data"][0] == base.__array_interface__["data"][0]):
        return base
    return None


def _pixel_rows(image: np.ndarray) -> np.ndarray:
    """(h, w * 4) RGBX bytes of the RGBA array ``image`` views (``rgba_viewed``: no copy), else (h, w * 3) RGB
    bytes (a copy unless C-order already)."""
    rgba = rgba_viewed(image)
    return (rgba if rgba is not None else np.ascontiguousarray(image)).reshape(image.shape[0], -1)


def encode_jpeg(image, quality: int, check: bool = True) -> np.ndarray | None:
    """The JPEG file of an RGB picture at ``quality``: the bytes of ``cv2.imencode(".jpg", BGR pixels,
    [IMWRITE_JPEG_QUALITY, quality])``.

    Args:
        image: (h, w, 3) uint8 RGB, h, w >= 1; an ``rgba[..., :3]`` view is read in place.
        quality: 1-100.
        check: whether to ask ``jpeg_encoder_available`` first (its own test calls do not).
    Returns:
        (n,) uint8, or None when the encoder is not available or libjpeg-turbo failed: encode with OpenCV then.
    """
    if check and not jpeg_encoder_available():
        return None
    pixels = np.asarray(image)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3 or 0 in pixels.shape:
        raise ValueError(f"encode_jpeg takes (h, w, 3) uint8 RGB pixels, got {pixels.shape} {pixels.dtype}")
    return jpeg_encode_rgb(_pixel_rows(pixels), pixels.shape[1], int(quality))
