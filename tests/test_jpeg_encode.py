"""JPEG encoding with libjpeg-turbo (face3d.utils.jpeg_encode): OpenCV's bytes, from RGB and from RGBA in place.

Budget: < 2 s.
"""
import cv2
import numpy as np
import pytest

from face3d.trainset.outputs import JPEG_QUALITY, encode_image
from face3d.utils import jpeg_encode
from face3d.utils.jpeg_encode import encode_jpeg, jpeg_encoder_available

needs_encoder = pytest.mark.skipif(not jpeg_encoder_available(), reason="built without libjpeg-turbo")


def _opencv(rgb, quality):
    return cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, quality])[1].reshape(-1)


def _pictures():
    """Warped crops of a textured picture (the generator's kind), noise, flat and tiny pictures; odd sizes."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:300, 0:300]
    texture = np.stack([(x * 0.7 + 40 * np.sin(y / 9.0)) % 256, (y * 0.9) % 256, 128 + 90 * np.sin(x / 13.0)], 2)
    texture = (texture + rng.normal(0, 6, texture.shape)).clip(0, 255).astype(np.uint8)
    pictures = []
    for angle, size in ((0, 256), (25, 256), (-40, 97), (60, 31)):
        matrix = cv2.getRotationMatrix2D((150, 150), angle, size / 220)
        matrix[:, 2] += size / 2 - 150
        pictures.append(cv2.warpAffine(texture, matrix, (size, size)))
    pictures += [rng.integers(0, 256, (37, 53, 3), dtype=np.uint8), np.full((16, 16, 3), 200, np.uint8),
                 rng.integers(0, 256, (1, 1, 3), dtype=np.uint8)]
    return pictures


@needs_encoder
@pytest.mark.parametrize("quality", [1, 50, JPEG_QUALITY, 100])
def test_the_bytes_are_opencvs_from_rgb_rgba_and_strided_pixels(quality):
    for rgb in _pictures():
        expected = _opencv(rgb, quality)
        rgba = cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)
        rgba[..., 3] = 7  # the fourth byte is not read
        wide = np.zeros((rgb.shape[0], rgb.shape[1] + 5, 3), np.uint8)
        wide[:, 2:-3] = rgb
        for pixels in (rgb, rgba[..., :3], wide[:, 2:-3], rgb[::-1][::-1]):
            np.testing.assert_array_equal(encode_jpeg(pixels, quality), expected)


@needs_encoder
def test_an_rgba_view_is_read_in_place_and_anything_else_copied_once():
    rgba = np.zeros((8, 9, 4), np.uint8)
    assert np.shares_memory(jpeg_encode._pixel_rows(rgba[..., :3]), rgba)
    assert jpeg_encode._pixel_rows(rgba[..., :3]).shape == (8, 36)
    assert jpeg_encode._pixel_rows(rgba[..., 1:]).shape == (8, 27)  # not the RGB of the RGBA: its own copy
    assert jpeg_encode._pixel_rows(rgba[:4, :, :3]).shape == (4, 27)


@needs_encoder
def test_encode_image_writes_jpegs_through_it_and_the_rest_through_opencv(monkeypatch):
    rgb = _pictures()[1]
    calls, original = [], jpeg_encode.jpeg_encode_rgb
    monkeypatch.setattr(jpeg_encode, "jpeg_encode_rgb", lambda *a: calls.append(a) or original(*a))
    encoded = encode_image(".jpg", rgb)
    np.testing.assert_array_equal(encoded, _opencv(rgb, JPEG_QUALITY))
    assert len(calls) == 1
    np.testing.assert_array_equal(encode_image(".png", rgb), cv2.imencode(".png", rgb[..., ::-1])[1])
    assert len(calls) == 1


def test_without_the_encoder_opencv_encodes(monkeypatch):
    """Built without libjpeg-turbo, or writing other bytes than OpenCV: None, and encode_image's bytes unchanged."""
    rgb = _pictures()[4]
    monkeypatch.setattr(jpeg_encode, "jpeg_encode_rgb", None)
    jpeg_encode.jpeg_encoder_available.cache_clear()
    try:
        assert not jpeg_encoder_available() and encode_jpeg(rgb, 90) is None
        np.testing.assert_array_equal(encode_image(".jpg", rgb), _opencv(rgb, JPEG_QUALITY))
        rgba = cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)  # a warped crop: converted once, from the RGBA
        np.testing.assert_array_equal(encode_image(".jpg", rgba[..., :3]), _opencv(rgb, JPEG_QUALITY))
    finally:
        jpeg_encode.jpeg_encoder_available.cache_clear()


@needs_encoder
def test_it_refuses_what_it_cannot_encode_naming_the_problem():
    with pytest.raises(ValueError, match=r"takes \(h, w, 3\) uint8 RGB pixels, got \(4, 4\) uint8"):
        encode_jpeg(np.zeros((4, 4), np.uint8), 90)
    with pytest.raises(ValueError, match=r"got \(0, 4, 3\) uint8"):
        encode_jpeg(np.zeros((0, 4, 3), np.uint8), 90)
    with pytest.raises(ValueError, match=r"got \(4, 4, 3\) float32"):
        encode_jpeg(np.zeros((4, 4, 3), np.float32), 90)
    with pytest.raises(ValueError, match="quality must be in 1..100, got 0"):
        encode_jpeg(np.zeros((4, 4, 3), np.uint8), 0)
    with pytest.raises(ValueError, match=r"rows must be \(h, 5 \* 3\) or \(h, 5 \* 4\) bytes"):
        jpeg_encode.jpeg_encode_rgb(np.zeros((4, 14), np.uint8), 5, 90)
