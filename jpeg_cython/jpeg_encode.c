// JPEG encoding (see jpeg_encode.h).
#include "jpeg_encode.h"

#include <string.h>

#include "jpeg_errors.h"

size_t jpeg_encode_bound(int width, int height) {
    return (size_t)((width + 15) / 16 * 16) * (size_t)((height + 15) / 16 * 16) * 3 + 2048;
}

// A destination that fills the caller's buffer and fails when it is full (jpeg_mem_dest would reallocate it).
static void start_destination(j_compress_ptr cinfo) {
    (void)cinfo;
}

static boolean destination_full(j_compress_ptr cinfo) {
    (*cinfo->err->error_exit)((j_common_ptr)cinfo);  // fail(): does not return
    return FALSE;
}

static void end_destination(j_compress_ptr cinfo) {
    (void)cinfo;
}

int jpeg_encode_rgb(const unsigned char *pixels, int width, int height, size_t stride, int pixel_bytes, int quality,
                    unsigned char *out, size_t capacity, size_t *size) {
    struct jpeg_compress_struct cinfo;
    struct jpeg_destination_mgr destination;
    error_state errors;
    memset(&cinfo, 0, sizeof cinfo);  // destroying it is then safe even if its creation fails
    cinfo.err = quiet_errors(&errors);
    if (setjmp(errors.failed)) {
        jpeg_destroy_compress(&cinfo);
        return 1;
    }
    jpeg_create_compress(&cinfo);
    destination.next_output_byte = out;
    destination.free_in_buffer = capacity;
    destination.init_destination = start_destination;
    destination.empty_output_buffer = destination_full;
    destination.term_destination = end_destination;
    cinfo.dest = &destination;
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = pixel_bytes;
    cinfo.in_color_space = pixel_bytes == 4 ? JCS_EXT_RGBX : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    JSAMPROW rows[16];  // several rows a call, as the decoder reads them
    while (cinfo.next_scanline < cinfo.image_height) {
        const JDIMENSION first = cinfo.next_scanline;
        const int count = height - (int)first < 16 ? height - (int)first : 16;
        for (int i = 0; i < count; ++i) rows[i] = (JSAMPROW)(pixels + ((size_t)first + (size_t)i) * stride);
        jpeg_write_scanlines(&cinfo, rows, (JDIMENSION)count);
    }
    jpeg_finish_compress(&cinfo);
    *size = capacity - destination.free_in_buffer;
    jpeg_destroy_compress(&cinfo);
    return 0;
}
