# cython: boundscheck=False, wraparound=False, language_level=3
"""Private Cython bridge to the JPEG region decoder (jpeg_region.h); use face3d.utils.jpeg_region."""

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
