// Region decoding of JPEG files (see jpeg_region.h).
#include "jpeg_region.h"

#include <string.h>

#include "jpeg_errors.h"

// 2.0 added the fancy upsampling of 4:4:0 files that OpenCV's bundled libjpeg-turbo has; skipping and cropping
// scanlines are older (1.5).
#if !defined(LIBJPEG_TURBO_VERSION_NUMBER) || LIBJPEG_TURBO_VERSION_NUMBER < 2000000
#error "libjpeg-turbo 2.0 or newer is required"
#endif

int jpeg_region_rgba(const unsigned char *data, unsigned long size, int width, int height,
                     int x0, int x1, int y0, int y1, unsigned char *out) {
    struct jpeg_decompress_struct cinfo;
    error_state errors;
    memset(&cinfo, 0, sizeof cinfo);  // destroying it is then safe even if its creation fails
    cinfo.err = quiet_errors(&errors);
    if (setjmp(errors.failed)) {
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, size);
    // Arithmetic coding is left to OpenCV's own libjpeg-turbo: its support is a build option of each copy.
    if (jpeg_read_header(&cinfo, TRUE) != JPEG_HEADER_OK || cinfo.jpeg_color_space != JCS_YCbCr ||
        cinfo.arith_code || cinfo.data_precision != 8 || (int)cinfo.image_width != width ||
        (int)cinfo.image_height != height || cinfo.err->num_warnings != 0) {
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    cinfo.out_color_space = JCS_EXT_RGBA;
    jpeg_start_decompress(&cinfo);  // reads every scan of a progressive file
    if (cinfo.progressive_mode) {
        // A coefficient short of its last refinement (a file cut after some scans) makes libjpeg smooth blocks
        // with their neighbours, beyond the widened columns and otherwise in each libjpeg-turbo version.
        for (int c = 0; c < cinfo.num_components; ++c) {
            for (int k = 0; k < DCTSIZE2; ++k) {
                if (cinfo.coef_bits[c][k] != 0) {
                    jpeg_destroy_decompress(&cinfo);
                    return 1;
                }
            }
        }
    }
    // Fancy upsampling treats the decoded columns' last one as the image's edge: one more iMCU each side keeps
    // the edge outside [x0, x1).
    const int imcu_width = cinfo.max_h_samp_factor * DCTSIZE;
    const int first = x0 > imcu_width ? x0 - imcu_width : 0;
    const int end = x1 + imcu_width < width ? x1 + imcu_width : width;
    JDIMENSION first_column = (JDIMENSION)first, columns = (JDIMENSION)(end - first);
    jpeg_crop_scanline(&cinfo, &first_column, &columns);
    if (y0 > 0) jpeg_skip_scanlines(&cinfo, (JDIMENSION)y0);
    const size_t stride = (size_t)width * 4;
    JSAMPROW rows[16];  // several rows a call: libjpeg-turbo then converts a block row's colours at once
    for (int y = y0; y < y1;) {
        int count = y1 - y < 16 ? y1 - y : 16;
        for (int i = 0; i < count; ++i) rows[i] = out + (size_t)(y + i) * stride + (size_t)first_column * 4;
        JDIMENSION read = jpeg_read_scanlines(&cinfo, rows, (JDIMENSION)count);
        if (read == 0) {  // cannot happen with an in-memory source; kept from looping forever all the same
            jpeg_destroy_decompress(&cinfo);
            return 1;
        }
        y += (int)read;
    }
    // The rows below are entropy-decoded without their IDCT (a skip to the very end would decode nothing), so that
    // damaged or missing data there warns as in a whole-image decoding; the image's last row is decoded in full,
    // into a scratch row.
    if (y1 < height) {
        if (y1 < height - 1) jpeg_skip_scanlines(&cinfo, (JDIMENSION)(height - 1 - y1));
        JSAMPROW last = (JSAMPROW)(*cinfo.mem->alloc_small)((j_common_ptr)&cinfo, JPOOL_IMAGE, (size_t)columns * 4);
        jpeg_read_scanlines(&cinfo, &last, 1);
    }
    jpeg_finish_decompress(&cinfo);
    int status = cinfo.err->num_warnings == 0 ? 0 : 1;
    jpeg_destroy_decompress(&cinfo);
    return status;
}
