// libjpeg error handling shared by the decoder and the encoder: an error longjmps back to the caller's setjmp,
// and no message is printed (the caller falls back to OpenCV, which reports what is wrong).
#pragma once

#include <setjmp.h>
#include <stdio.h>

#include <jpeglib.h>

typedef struct {
    struct jpeg_error_mgr manager;  // first member: libjpeg hands its callbacks a pointer to it
    jmp_buf failed;
} error_state;

static void fail(j_common_ptr cinfo) {
    longjmp(((error_state *)cinfo->err)->failed, 1);
}

// Warnings are counted by libjpeg (num_warnings); nothing is printed.
static void say_nothing(j_common_ptr cinfo) {
    (void)cinfo;
}

// A libjpeg error manager over errors that longjmps to errors->failed and prints nothing.
static inline struct jpeg_error_mgr *quiet_errors(error_state *errors) {
    struct jpeg_error_mgr *manager = jpeg_std_error(&errors->manager);
    manager->error_exit = fail;
    manager->output_message = say_nothing;
    return manager;
}
