# cython: boundscheck=False, wraparound=False, language_level=3
"""Private Cython bridge to the JPEG region decoder (jpeg_region.h) and encoder (jpeg_encode.h); use
face3d.utils.jpeg_region and face3d.utils.jpeg_encode."""
import numpy as np

cdef extern from "jpeg_region.h" nogil:
    int c_jpeg_region_rgba "jpeg_region_rgba"(
        const unsigned char *data, unsigned long size, int width, int height,
        int x0, int x1, int y0, int y1, unsigned char *out)


def jpeg_region_rgba(const unsigned char[::1] data, unsigned char[:, :, ::1] out, int x0, int x1, int y0, int y1):
    """Decode rows [y0, y1), columns at least [x0, x1), of the JPEG bytes ``data`` into ``out`` ((h, w, 4) uint8,
    h and w the file's size): True when decoded, False when the file needs the whole-image decoder (see the
    header). ValueError for a box outside ``out`` or an empty one."""
    if out.shape[2] != 4:
        raise ValueError(f"out must be an (h, w, 4) RGBA image, got {out.shape[2]} channels")
    if not (0 <= x0 < x1 <= out.shape[1] and 0 <= y0 < y1 <= out.shape[0]):
        raise ValueError(f"box x {x0}..{x1}, y {y0}..{y1} is empty or outside the "
                         f"{out.shape[1]}x{out.shape[0]} RGBA image")
    if data.shape[0] == 0:
        return False
    cdef int status
    with nogil:
        status = c_jpeg_region_rgba(&data[0], data.shape[0], <int>out.shape[1], <int>out.shape[0],
                                    x0, x1, y0, y1, &out[0, 0, 0])
    return status == 0


cdef extern from "jpeg_encode.h" nogil:
    size_t c_jpeg_encode_bound "jpeg_encode_bound"(int width, int height)
    int c_jpeg_encode_rgb "jpeg_encode_rgb"(
        const unsigned char *pixels, int width, int height, size_t stride, int pixel_bytes, int quality,
        unsigned char *out, size_t capacity, size_t *size)


def jpeg_encode_rgb(const unsigned char[:, ::1] rows, int width, int quality):
    """The JPEG (a uint8 array) of ``rows``, (h, w * 3) RGB or (h, w * 4) RGBX bytes of a picture ``width`` pixels
    wide, at ``quality`` (see the header); None when libjpeg-turbo failed. ValueError for an empty picture or rows
    that are not whole pixels."""
    cdef int height = <int>rows.shape[0]
    if height < 1 or width < 1 or rows.shape[1] not in (3 * width, 4 * width):
        raise ValueError(f"rows must be (h, {width} * 3) or (h, {width} * 4) bytes, h >= 1; got "
                         f"({rows.shape[0]}, {rows.shape[1]})")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    cdef int pixel_bytes = <int>(rows.shape[1] // width)
    out = np.empty(c_jpeg_encode_bound(width, height), dtype=np.uint8)
    cdef unsigned char[::1] buffer = out
    cdef size_t size = 0
    cdef int status
    with nogil:
        status = c_jpeg_encode_rgb(&rows[0, 0], width, height, <size_t>rows.shape[1], pixel_bytes, quality,
                                   &buffer[0], <size_t>buffer.shape[0], &size)
    return out[:size] if status == 0 else None
