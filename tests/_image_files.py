"""Shared test helpers for image files: a JPEG with an Exif orientation tag built by hand."""
import struct


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """``jpeg`` with an APP1 Exif segment right after SOI: a little-endian TIFF header and one IFD entry, tag 0x0112
    (Orientation), type SHORT, count 1, value ``orientation`` (6: the stored pixels are to be turned 90 degrees
    clockwise for display)."""
    ifd = struct.pack("<HHHIHH", 1, 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    exif = b"Exif\0\0" + b"II" + struct.pack("<HI", 42, 8) + ifd
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + jpeg[2:]
