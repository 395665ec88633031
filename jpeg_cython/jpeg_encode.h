// JPEG encoding with libjpeg-turbo (compiled into face3d.utils._jpeg_region through jpeg_region_cython.pyx, with the
// region decoder; the build leaves that module out where libjpeg-turbo 2.0 or newer is missing).
#pragma once

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// The largest JPEG jpeg_encode_rgb writes for a width x height picture: libjpeg-turbo's own bound for 4:2:0
// (tjBufSize), 3 bytes per pixel of the picture padded to whole 16 x 16 blocks, plus 2048 for the headers.
size_t jpeg_encode_bound(int width, int height);

// Encodes height rows of width pixels, rows stride bytes apart, each pixel 3 bytes (R, G, B) or 4 (R, G, B and
// one ignored), as a baseline JPEG of the given quality (1-100) with libjpeg's defaults: 4:2:0 chroma, accurate
// integer DCT, standard Huffman tables, JFIF header, quality-scaled tables limited to baseline values: what OpenCV's
// imencode writes through its own libjpeg-turbo. The bytes go to out, which holds capacity bytes
// (jpeg_encode_bound), and *size receives their count.
// Returns 0 when encoded; 1 when libjpeg-turbo failed or out was too small (out is then unspecified).
int jpeg_encode_rgb(const unsigned char *pixels, int width, int height, size_t stride, int pixel_bytes, int quality,
                    unsigned char *out, size_t capacity, size_t *size);

#ifdef __cplusplus
}
#endif
