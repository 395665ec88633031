"""Image sizes read from file headers (PNG, JPEG, BMP, WebP) without decoding, so callers can refuse a
decompression bomb (a small file declaring a huge image) before any pixel memory is taken; a JPEG's EXIF
orientation; which file names folder listings take as images."""
import logging
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ImageHeader", "UnsupportedImageFormat", "read_image_header", "is_listed_image", "is_unread_image",
           "warn_unread_images", "IMAGE_FORMATS", "IMAGE_SUFFIXES", "UNREAD_IMAGE_SUFFIXES"]

logger = logging.getLogger(__name__)

IMAGE_FORMATS = ("png", "jpeg", "bmp", "webp")
# file names listed as images in folders: the formats ``trainset.sample_io.read_image`` decodes
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# image files that listings leave out (``read_image`` decodes none of them), counted in a warning so that they are
# not missed without a word
UNREAD_IMAGE_SUFFIXES = (".webp", ".tif", ".tiff", ".gif", ".heic", ".heif", ".avif", ".jp2", ".jxl", ".ppm",
                         ".pgm", ".pnm", ".dng", ".jfif", ".jpe")  # the last two: JPEGs under a rarer name
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (they carry the image size): C0-CF except DHT (C4), JPG (C8) and DAC (CC)
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset([0x01, 0xD8, *range(0xD0, 0xD8)])  # markers without a length field
_JPEG_APP1 = 0xE1  # the segment of the Exif data
_EXIF_ORIENTATION_TAG = 0x0112


def _visible_with_suffix(path, suffixes):
    """Whether the file ``path`` has one of ``suffixes`` (any case) and is not hidden (a name starting with ".",
    such as macOS's ``._photo.jpg`` companions, which hold no image)."""
    path = Path(path)
    return path.suffix.lower() in suffixes and not path.name.startswith(".")


def is_listed_image(path):
    """Whether a folder listing takes the file ``path`` as an image: an ``IMAGE_SUFFIXES`` suffix, not hidden."""
    return _visible_with_suffix(path, IMAGE_SUFFIXES)


def is_unread_image(path):
    """Whether ``path`` names an image that folder listings leave out: an ``UNREAD_IMAGE_SUFFIXES`` suffix, not
    hidden."""
    return _visible_with_suffix(path, UNREAD_IMAGE_SUFFIXES)


def warn_unread_images(paths, where):
    """Log one warning naming how many of ``paths`` (the files a listing of ``where`` left out) are images of a
    format not read (``is_unread_image``), by suffix, and the suffixes read; nothing when there is none."""
    suffixes = Counter(Path(p).suffix.lower() for p in paths if is_unread_image(p))
    if suffixes:
        count = sum(suffixes.values())
        logger.warning("%s: %d image file%s left out (%s): the images read are %s files", where, count,
                       "s" * (count != 1), ", ".join(f"{n} {suffix}" for suffix, n in sorted(suffixes.items())),
                       "/".join(IMAGE_SUFFIXES))


class UnsupportedImageFormat(ValueError):
    """The bytes are not one of IMAGE_FORMATS."""


@dataclass(frozen=True)
class ImageHeader:
    """Format ('png', 'jpeg', 'bmp' or 'webp') and size (pixels) declared by an image file's header, and a JPEG's
    EXIF orientation: 1 upright as stored, 2-8 shown mirrored and/or turned by viewers (6: turned 90 degrees
    clockwise, 8: counter-clockwise), None without the tag."""
    format: str
    width: int
    height: int
    orientation: int | None = None


def _jpeg_segments(data):
    """(marker, i, length) of a JPEG's marker segments up to the start of scan, ``data[i]`` the marker byte, then
    the segment's 2-byte ``length`` (counting itself) and its content. As libjpeg's next_marker, the walk skips
    stray bytes up to the next 0xFF (libjpeg warns "extraneous bytes before marker" and decodes the image), fill
    bytes (0xFF) and stuffed zeros (0xFF 0x00)."""
    i = 2
    while (i := data.find(b"\xff", i)) >= 0:
        while i < len(data) and data[i] == 0xFF:
            i += 1
        if i + 3 > len(data):  # i: the marker byte, followed by a 2-byte segment length
            return
        marker = data[i]
        if marker == 0x00 or marker in _JPEG_STANDALONE:
            i += 1
            continue
        if marker == 0xDA:  # start of scan: the image data follows
            return
        length = struct.unpack(">H", data[i + 1:i + 3])[0]
        yield marker, i, length
        i += 1 + length


def _exif_orientation(app1):
    """The Orientation (tag 0x0112 of IFD0, a SHORT) of an APP1 segment's content (after its length), or None:
    not Exif, no such tag, or a malformed TIFF structure. Both TIFF byte orders ("II" little, "MM" big endian)."""
    order = {b"Exif\0\0II": "<", b"Exif\0\0MM": ">"}.get(app1[:8])
    tiff = app1[6:]  # the offsets count from the TIFF header
    if order is None or len(tiff) < 8 or struct.unpack(order + "H", tiff[2:4])[0] != 42:
        return None
    ifd0 = struct.unpack(order + "I", tiff[4:8])[0]
    if ifd0 + 2 > len(tiff):
        return None
    entries = struct.unpack(order + "H", tiff[ifd0:ifd0 + 2])[0]
    for entry in range(ifd0 + 2, min(ifd0 + 2 + 12 * entries, len(tiff) - 11), 12):  # 12-byte entries
        tag, kind = struct.unpack(order + "HH", tiff[entry:entry + 4])
        if tag == _EXIF_ORIENTATION_TAG:  # type SHORT (3), count 1: the value's first 2 bytes hold it
            return struct.unpack(order + "H", tiff[entry + 8:entry + 10])[0] if kind == 3 else None
    return None


def _jpeg_header(data):
    """(width, height, EXIF orientation or None) of a JPEG: the size from the first start-of-frame segment, the
    orientation from the first APP1 Exif segment before it."""
    orientation = None
    for marker, i, length in _jpeg_segments(data):
        if marker == _JPEG_APP1 and orientation is None:
            orientation = _exif_orientation(data[i + 3:i + 1 + length])
        elif marker in _JPEG_FRAMES:
            if i + 8 > len(data):
                break
            height, width = struct.unpack(">HH", data[i + 4:i + 8])
            return width, height, orientation
    raise ValueError("JPEG has no frame header (truncated?)")


def _webp_size(data):
    """(width, height) of a lossy (VP8), lossless (VP8L) or extended (VP8X) WebP."""
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        bits = struct.unpack("<I", data[21:25])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    raise ValueError("WebP header is truncated or of an unknown kind")


def read_image_header(data) -> ImageHeader:
    """The format and size an image file declares, read from its first bytes (nothing is decoded).

    Args:
        data: the file's bytes (only the header is read: PNG IHDR, JPEG start-of-frame and Exif (APP1), BMP
            info header, WebP VP8/VP8L/VP8X chunk).
    Returns:
        ImageHeader.
    Raises:
        UnsupportedImageFormat (a ValueError): another format. ValueError: a truncated or corrupt header.
    """
    data = bytes(data)  # a JPEG's frame header follows its EXIF, ICC and XMP segments, which the walk skips over
    try:
        if data.startswith(_PNG_SIGNATURE):
            if len(data) < 24 or data[12:16] != b"IHDR":
                raise ValueError("PNG has no IHDR chunk")
            width, height = struct.unpack(">II", data[16:24])
            return _checked(ImageHeader("png", width, height))
        if data.startswith(b"\xff\xd8"):
            return _checked(ImageHeader("jpeg", *_jpeg_header(data)))
        if data.startswith(b"BM") and len(data) >= 26:
            if struct.unpack("<I", data[14:18])[0] == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
                width, height = struct.unpack("<HH", data[18:22])
            else:
                width, height = struct.unpack("<ii", data[18:26])
            return _checked(ImageHeader("bmp", abs(width), abs(height)))  # negative height: top-down rows
        if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
            return _checked(ImageHeader("webp", *_webp_size(data)))
    except struct.error as exc:
        raise ValueError(f"truncated header ({exc})") from None
    raise UnsupportedImageFormat(f"not a {', '.join(IMAGE_FORMATS).upper()} file (first bytes {data[:8]!r})")


def _checked(header):
    if header.width < 1 or header.height < 1:
        raise ValueError(f"{header.format.upper()} header declares an empty image ({header.width} x "
                         f"{header.height})")
    return header
