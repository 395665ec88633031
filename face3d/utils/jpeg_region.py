"""Decoding only the part of a JPEG that crops read, to the bytes OpenCV's decoding of the whole file gives.

The decoder is libjpeg-turbo's (``face3d.utils._jpeg_region``, built where libjpeg-turbo 2.0 or newer is installed;
see setup.py). Where it is missing, or decodes a test image otherwise than OpenCV does, every call returns None and
the caller decodes the whole file.
"""
from __future__ import annotations

import functools
import logging

import cv2
import numpy as np

try:
    from face3d.utils._jpeg_region import jpeg_region_rgba
except ImportError:  # built without libjpeg-turbo
    jpeg_region_rgba = None

__all__ = ["decode_jpeg_region", "region_decoder_available"]

logger = logging.getLogger(__name__)


def _test_picture() -> np.ndarray:
    """A (45, 70, 3) uint8 BGR picture with steps and a texture in every channel, not a multiple of a block in size."""
    y, x = np.mgrid[0:45, 0:70]
    return np.stack([(3 * x + 5 * y) % 256, (x * y) % 251, 255 * ((x // 7 + y // 5) % 2)], axis=2).astype(np.uint8)


@functools.cache
def region_decoder_available() -> bool:
    """Whether the region decoder is built and gives OpenCV's pixels for a test picture in each chroma subsampling
    OpenCV writes (4:4:4, 4:2:2, 4:2:0, 4:4:0, 4:1:1), baseline and progressive, over boxes that cut blocks. Decided
    once per process."""
    if jpeg_region_rgba is None:
        return False
    picture = _test_picture()
    for sampling in (cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
                     cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_440,
                     cv2.IMWRITE_JPEG_SAMPLING_FACTOR_411):
        for progressive in (0, 1):
            data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                                                  sampling, cv2.IMWRITE_JPEG_PROGRESSIVE, progressive])[1]
            expected = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGBA)
            for x0, x1, y0, y1 in ((0, 70, 0, 45), (17, 38, 9, 30), (33, 70, 21, 45)):
                out = np.zeros_like(expected)
                if not (jpeg_region_rgba(data.reshape(-1), out, x0, x1, y0, y1)
                        and np.array_equal(out[y0:y1, x0:x1], expected[y0:y1, x0:x1])):
                    logger.debug("libjpeg-turbo's region decoding differs from OpenCV's decoding here: whole JPEG "
                                 "files are decoded")
                    return False
    return True


def decode_jpeg_region(data: np.ndarray, width: int, height: int, box: tuple[int, int, int, int]) -> np.ndarray | None:
    """The pixels in ``box`` of a JPEG file, decoded alone.

    Args:
        data: the file's bytes, (n,) uint8. width, height: its size, as its header gives it.
        box: (x0, x1, y0, y1), the columns [x0, x1) and rows [y0, y1), non-empty, inside the image.
    Returns:
        (height, width, 4) uint8 RGBA (alpha 255) whose pixels in ``box`` are those of
        ``cvtColor(imdecode(data, IMREAD_COLOR), COLOR_BGR2RGBA)``; the other pixels are unspecified. None when
        the region decoder is not available (``region_decoder_available``), or the file is not a YCbCr colour JPEG
        of that size, or a progressive one short of its last scans, or libjpeg-turbo warned or failed anywhere in
        it (corrupt or truncated data, checked down to its last row): decode the whole file then, which reports
        what is wrong.
    """
    if not region_decoder_available():
        return None
    out = np.empty((height, width, 4), dtype=np.uint8)
    return out if jpeg_region_rgba(data, out, *box) else None
