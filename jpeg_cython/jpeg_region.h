// Region decoding of JPEG files with libjpeg-turbo (compiled into face3d.utils._jpeg_region through
// jpeg_region_cython.pyx; the build leaves that module out where libjpeg-turbo 2.0 or newer is missing).
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

// Decodes the rows [y0, y1) of a JPEG file's bytes, and of them at least the columns [x0, x1) (libjpeg-turbo
// widens the range to whole blocks), into out: height rows of width RGBA pixels (alpha 255), row-major; the other
// pixels of out are left as they are. The pixels are libjpeg-turbo's default decoding (accurate integer IDCT,
// fancy upsampling), as a whole-image decoding gives them. The rows below y1 are entropy-decoded without their
// IDCT (the image's last row in full), then the file must end in its EOI marker. Requires 0 <= x0 < x1 <= width
// and 0 <= y0 < y1 <= height.
// Returns 0 when decoded; 1 when the file is not a colour (YCbCr, 8 bits, Huffman-coded) JPEG of width x height
// pixels, is a progressive file short of its last scans (its blocks are smoothed with their neighbours), or when
// libjpeg-turbo failed or warned (corrupt or truncated data): out is then unspecified, and the caller decodes the
// whole file with its other decoder, which reports what is wrong.
int jpeg_region_rgba(const unsigned char *data, unsigned long size, int width, int height,
                     int x0, int x1, int y0, int y1, unsigned char *out);

#ifdef __cplusplus
}
#endif
