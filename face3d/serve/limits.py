"""Request limits of the HTTP service and the image-header check that enforces them before decoding.

``Limits`` holds the bounds a request must respect (body bytes, image pixels, seconds, requests in flight).
``image_header`` reads the width and height from the first bytes of a PNG, JPEG, BMP or WebP file without
decoding it, so ``check_image`` refuses a decompression bomb (a small file declaring a huge image) before any
pixel memory is allocated.
"""
import math
from dataclasses import dataclass

from face3d.serve.errors import ApiError
from face3d.utils.image_header import UnsupportedImageFormat, read_image_header

__all__ = ["Limits", "image_header", "check_image"]


@dataclass(frozen=True)
class Limits:
    """Bounds on one request.

    Attributes:
        max_bytes: largest request body (bytes); larger ones get 413 before they are read in full.
        max_pixels: largest image (width x height) accepted; checked on the file header, before decoding.
        timeout_s: seconds a request may take from its first body byte to its answer (408 while the body is
            still arriving, 504 after).
        max_in_flight: reconstruction requests handled at once; one more gets 503 at once.
    """
    max_bytes: int = 16 * 2 ** 20
    max_pixels: int = 25_000_000
    timeout_s: float = 30.0
    max_in_flight: int = 64

    def __post_init__(self):
        if self.max_bytes < 1 or self.max_pixels < 1 or not 0 < self.timeout_s < math.inf or self.max_in_flight < 1:
            raise ValueError(f"limits must be positive (timeout_s finite), got {self}")


def image_header(data):
    """The format and size an image file declares (``face3d.utils.image_header.read_image_header``).

    Raises:
        ApiError: 415 ``unsupported_image`` for another format, 400 ``bad_image`` for a truncated or corrupt
            header.
    """
    try:
        return read_image_header(data)
    except UnsupportedImageFormat as exc:
        raise ApiError(415, "unsupported_image", f"image: {exc}") from None
    except ValueError as exc:
        raise ApiError(400, "bad_image", f"image: {exc}") from None


def check_image(data, limits):
    """The header of an image file, after checking it against ``limits.max_pixels``.

    Returns:
        ImageHeader.
    Raises:
        ApiError: as ``image_header``; 413 ``too_many_pixels`` when width x height exceeds the limit.
    """
    header = image_header(data)
    pixels = header.width * header.height
    if pixels > limits.max_pixels:
        raise ApiError(413, "too_many_pixels", f"image: {header.width} x {header.height} = {pixels} pixels, the "
                                               f"limit is {limits.max_pixels} (--max-pixels)")
    return header
