"""Shared test helpers for image files built by hand: a JPEG with an Exif orientation tag, a PNG header."""
import struct
import zlib


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """``jpeg`` with an APP1 Exif segment right after SOI: a little-endian TIFF header and one IFD entry, tag 0x0112
    (Orientation), type SHORT, count 1, value ``orientation`` (6: the stored pixels are to be turned 90 degrees
    clockwise for display)."""
    ifd = struct.pack("<HHHIHH", 1, 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    exif = b"Exif\0\0" + b"II" + struct.pack("<HI", 42, 8) + ifd
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + jpeg[2:]


def png_header(width, height):
    """The first 33 bytes of a PNG declaring width x height (no pixel data follows): an image of any size, as its
    header tells it, for the checks made before decoding."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
