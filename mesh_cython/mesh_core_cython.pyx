# distutils: language = c++
# cython: boundscheck=False, wraparound=False, language_level=3
"""Private Cython bridge to the C++ mesh kernels (mesh_core.h); use face3d.mesh.render / .light / .linear.

Every function checks each argument before the kernel runs: a numpy array of the kernel's dtype (native byte order,
aligned, C order) with a shape consistent with the other arguments, outputs writeable, sizes within a C int; anything
else (None, a list, a 0-d array, ...) raises ValueError naming the argument. The kernels run without the GIL, so
another thread may change the caller's arrays meanwhile; the kernels themselves make that harmless (mesh_core.h):
they read each triangle index once and check that copy before using it, read the vertices once into a private
copy that sizes their scratch buffers, and clamp texture lookups, so a change mid-call gives wrong values or an
error status, never an access outside a buffer.

Each function returns the kernel's status code: 0 ok, 1 a triangle index outside [0, nver), 2 a non-finite vertex,
3 a tex_triangles index outside [0, ntex), 4 out of memory. Outputs are unspecified unless 0.
"""
import operator

import numpy as np

cimport numpy as cnp
from libc.limits cimport INT_MAX
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t
from libcpp cimport bool as cbool

cnp.import_array()

cdef extern from "mesh_core.h" namespace "face3d" nogil:
    int c_rasterize_triangles "face3d::rasterize_triangles"(
        const float* vertices, int64_t nver, const int32_t* triangles, int64_t ntri,
        int h, int w, float* depth, int32_t* tri_buf, float* bary)
    int c_render_colors "face3d::render_colors"(
        const float* vertices, int64_t nver, const int32_t* triangles, int64_t ntri,
        const float* colors, int c, int h, int w, float* image)
    int c_render_texture "face3d::render_texture"(
        const float* vertices, int64_t nver, const int32_t* triangles, int64_t ntri,
        const float* tex_coords, int64_t ntex, int tex_stride, const int32_t* tex_triangles,
        const float* texture, int th, int tw, int c, cbool bilinear, int h, int w, float* image)
    int c_triangle_normals "face3d::triangle_normals"(
        const float* vertices, int64_t nver, const int32_t* triangles, int64_t ntri, float* normals)
    int c_vertex_normals "face3d::vertex_normals"(
        const float* vertices, int64_t nver, const int32_t* triangles, int64_t ntri, float* normals)
    int c_combine_basis "face3d::combine_basis"(
        const float* mean, const float* tiles, int64_t ntiles, int64_t nk, const float* coef, int64_t batch,
        float* out)
    int c_float32_to_float16 "face3d::float32_to_float16"(const float* src, int64_t n, uint16_t* dst, cbool portable)
    int c_affine_points "face3d::affine_points"(
        const float* points, int64_t n, const float* matrix, const uint8_t* mask, float* out32, uint16_t* out16,
        int max_path)

cdef object FLOAT32 = np.dtype(np.float32)
cdef object INT32 = np.dtype(np.int32)
cdef object UINT16 = np.dtype(np.uint16)
cdef object UINT8 = np.dtype(np.uint8)
ANY = -1  # a shape entry that accepts any length


cdef int _size(object value, str name) except -1:
    """value (a Python or numpy integer) as a C int in [0, INT_MAX], else ValueError naming it."""
    try:
        size = operator.index(value)
    except TypeError:
        raise ValueError(f"_mesh_core: {name} must be an integer, got {value!r}") from None
    if not 0 <= size <= INT_MAX:
        raise ValueError(f"_mesh_core: {name} must be in [0, {INT_MAX}], got {size}")
    return size


cdef cnp.ndarray _array(object value, object dtype, tuple shape, str name, bint output=False):
    """value after checking that it is an aligned, C-contiguous ndarray of dtype (native byte order) and of shape
    (ANY entries accept any length; lengths must fit a C int), writeable when output; else ValueError naming it."""
    if not isinstance(value, cnp.ndarray):
        raise ValueError(f"_mesh_core: {name} must be a numpy array, got {type(value).__name__}")
    cdef cnp.ndarray a = <cnp.ndarray> value
    got = value.shape
    if (value.dtype != dtype or not cnp.PyArray_ISALIGNED(a) or not cnp.PyArray_IS_C_CONTIGUOUS(a)
            or len(got) != len(shape) or any(s != ANY and s != g for s, g in zip(shape, got))
            or any(g > INT_MAX for g in got[1:])):
        want = "(" + ", ".join("k" if s == ANY else str(s) for s in shape) + ")"
        raise ValueError(f"_mesh_core: {name} must be an aligned, C-contiguous {dtype} array of shape {want} "
                         f"(native byte order), got shape {got}, dtype {value.dtype!r}")
    if output and not cnp.PyArray_ISWRITEABLE(a):
        raise ValueError(f"_mesh_core: {name} must be writeable")
    return a


cdef inline int64_t _rows(cnp.ndarray a):
    return cnp.PyArray_DIM(a, 0)


def rasterize_triangles(vertices, triangles, h, w, depth, tri_buf, bary):
    """Fills depth (h, w) float32, tri_buf (h, w) int32, bary (h, w, 3) float32 from vertices (nver, 3) float32
    and triangles (ntri, 3) int32; returns the status code."""
    cdef int ih = _size(h, "h"), iw = _size(w, "w")
    cdef cnp.ndarray v = _array(vertices, FLOAT32, (ANY, 3), "vertices")
    cdef cnp.ndarray t = _array(triangles, INT32, (ANY, 3), "triangles")
    cdef cnp.ndarray d = _array(depth, FLOAT32, (ih, iw), "depth", True)
    cdef cnp.ndarray b = _array(tri_buf, INT32, (ih, iw), "tri_buf", True)
    cdef cnp.ndarray wts = _array(bary, FLOAT32, (ih, iw, 3), "bary", True)
    cdef const float* pv = <const float*> cnp.PyArray_DATA(v)
    cdef const int32_t* pt = <const int32_t*> cnp.PyArray_DATA(t)
    cdef float* pd = <float*> cnp.PyArray_DATA(d)
    cdef int32_t* pb = <int32_t*> cnp.PyArray_DATA(b)
    cdef float* pw = <float*> cnp.PyArray_DATA(wts)
    cdef int64_t nver = _rows(v), ntri = _rows(t)
    cdef int err
    with nogil:
        err = c_rasterize_triangles(pv, nver, pt, ntri, ih, iw, pd, pb, pw)
    return err


cdef tuple _render_arguments(vertices, triangles, h, w, image):
    """Checks what every renderer takes, in this order: h, w, image (h, w, c) float32 writeable, vertices (nver, 3)
    float32, triangles (ntri, 3) int32; returns (h, w, image, vertices, triangles)."""
    cdef int ih = _size(h, "h"), iw = _size(w, "w")
    return (ih, iw, _array(image, FLOAT32, (ih, iw, ANY), "image", True),
            _array(vertices, FLOAT32, (ANY, 3), "vertices"), _array(triangles, INT32, (ANY, 3), "triangles"))


def render_colors(vertices, triangles, colors, h, w, image):
    """Draws into image (h, w, c) float32, which holds the background, the colors (nver, c) float32 of the mesh
    vertices (nver, 3) float32, triangles (ntri, 3) int32; returns the status code."""
    cdef int ih, iw
    cdef cnp.ndarray im, v, t
    ih, iw, im, v, t = _render_arguments(vertices, triangles, h, w, image)
    cdef int c = cnp.PyArray_DIM(im, 2)
    cdef int64_t nver = _rows(v), ntri = _rows(t)
    cdef cnp.ndarray col = _array(colors, FLOAT32, (nver, c), "colors")
    cdef const float* pv = <const float*> cnp.PyArray_DATA(v)
    cdef const int32_t* pt = <const int32_t*> cnp.PyArray_DATA(t)
    cdef const float* pc = <const float*> cnp.PyArray_DATA(col)
    cdef float* pi = <float*> cnp.PyArray_DATA(im)
    cdef int err
    with nogil:
        err = c_render_colors(pv, nver, pt, ntri, pc, c, ih, iw, pi)
    return err


def render_texture(vertices, triangles, texture, tex_coords, tex_triangles, h, w, bint bilinear, image):
    """Draws into image (h, w, c) float32, which holds the background, the mesh vertices (nver, 3) float32,
    triangles (ntri, 3) int32 textured with texture (th >= 1, tw >= 1, c) float32 at tex_coords (ntex, k >= 2)
    float32 (columns x, y) of tex_triangles (ntri, 3) int32; returns the status code."""
    cdef int ih, iw
    cdef cnp.ndarray im, v, t
    ih, iw, im, v, t = _render_arguments(vertices, triangles, h, w, image)
    cdef int c = cnp.PyArray_DIM(im, 2)
    cdef int64_t nver = _rows(v), ntri = _rows(t)
    cdef cnp.ndarray tex = _array(texture, FLOAT32, (ANY, ANY, c), "texture")
    if _rows(tex) > INT_MAX or _rows(tex) < 1 or cnp.PyArray_DIM(tex, 1) < 1:
        raise ValueError(f"_mesh_core: texture must have 1 to {INT_MAX} rows and at least 1 column, "
                         f"got shape {texture.shape}")
    cdef int th = _rows(tex), tw = cnp.PyArray_DIM(tex, 1)
    cdef cnp.ndarray uv = _array(tex_coords, FLOAT32, (ANY, ANY), "tex_coords")
    if cnp.PyArray_DIM(uv, 1) < 2:
        raise ValueError(f"_mesh_core: tex_coords must have at least 2 columns, got shape {tex_coords.shape}")
    cdef int64_t ntex = _rows(uv)
    cdef int stride = cnp.PyArray_DIM(uv, 1)
    cdef cnp.ndarray tt = _array(tex_triangles, INT32, (ntri, 3), "tex_triangles")
    cdef const float* pv = <const float*> cnp.PyArray_DATA(v)
    cdef const int32_t* pt = <const int32_t*> cnp.PyArray_DATA(t)
    cdef const float* ptex = <const float*> cnp.PyArray_DATA(tex)
    cdef const float* puv = <const float*> cnp.PyArray_DATA(uv)
    cdef const int32_t* ptt = <const int32_t*> cnp.PyArray_DATA(tt)
    cdef float* pi = <float*> cnp.PyArray_DATA(im)
    cdef int err
    with nogil:
        err = c_render_texture(pv, nver, pt, ntri, puv, ntex, stride, ptt, ptex, th, tw, c, bilinear, ih, iw, pi)
    return err


ctypedef int (*NormalKernel)(const float*, int64_t, const int32_t*, int64_t, float*) noexcept nogil


cdef int _normals(NormalKernel kernel, vertices, triangles, normals, bint per_vertex) except -1:
    """Checks the arguments of a normal kernel (normals has one row per vertex when per_vertex, else per triangle),
    runs it and returns its status code."""
    cdef cnp.ndarray v = _array(vertices, FLOAT32, (ANY, 3), "vertices")
    cdef cnp.ndarray t = _array(triangles, INT32, (ANY, 3), "triangles")
    cdef cnp.ndarray n = _array(normals, FLOAT32, (_rows(v) if per_vertex else _rows(t), 3), "normals", True)
    cdef const float* pv = <const float*> cnp.PyArray_DATA(v)
    cdef const int32_t* pt = <const int32_t*> cnp.PyArray_DATA(t)
    cdef float* pn = <float*> cnp.PyArray_DATA(n)
    cdef int64_t nver = _rows(v), ntri = _rows(t)
    cdef int err
    with nogil:
        err = kernel(pv, nver, pt, ntri, pn)
    return err


def triangle_normals(vertices, triangles, normals):
    """Fills normals (ntri, 3) float32 of vertices (nver, 3) float32, triangles (ntri, 3) int32; returns the
    status code."""
    return _normals(c_triangle_normals, vertices, triangles, normals, False)


def vertex_normals(vertices, triangles, normals):
    """Fills normals (nver, 3) float32 of vertices (nver, 3) float32, triangles (ntri, 3) int32; returns the
    status code."""
    return _normals(c_vertex_normals, vertices, triangles, normals, True)


def combine_basis(mean, tiles, coef, out):
    """Fills out (batch, m) float32 with mean (m,) float32 + coef (batch, nk) float32 times the basis held in tiles
    (m / 32, nk, 32) float32, element by element in one fixed order (mesh_core.h); returns the status code."""
    cdef cnp.ndarray tl = _array(tiles, FLOAT32, (ANY, ANY, 32), "tiles")
    cdef int64_t ntiles = _rows(tl), nk = cnp.PyArray_DIM(tl, 1)
    cdef cnp.ndarray mn = _array(mean, FLOAT32, (ntiles * 32,), "mean")
    cdef cnp.ndarray cf = _array(coef, FLOAT32, (ANY, nk), "coef")
    cdef int64_t batch = _rows(cf)
    cdef cnp.ndarray o = _array(out, FLOAT32, (batch, ntiles * 32), "out", True)
    cdef const float* pm = <const float*> cnp.PyArray_DATA(mn)
    cdef const float* pt = <const float*> cnp.PyArray_DATA(tl)
    cdef const float* pc = <const float*> cnp.PyArray_DATA(cf)
    cdef float* po = <float*> cnp.PyArray_DATA(o)
    cdef int status
    with nogil:
        status = c_combine_basis(pm, pt, ntiles, nk, pc, batch, po)
    return status


def float32_to_float16(src, out, bint portable=False):
    """Fills out (n,) uint16 with the float16 bits of src (n,) float32 + 0.0, rounded to nearest even (mesh_core.h);
    ``portable`` takes the plain C++ path even where the processor has F16C. Returns the status code."""
    cdef cnp.ndarray s = _array(src, FLOAT32, (ANY,), "src")
    cdef int64_t n = cnp.PyArray_DIM(s, 0)
    cdef cnp.ndarray o = _array(out, UINT16, (n,), "out", True)
    cdef const float* ps = <const float*> cnp.PyArray_DATA(s)
    cdef uint16_t* po = <uint16_t*> cnp.PyArray_DATA(o)
    cdef int status
    with nogil:
        status = c_float32_to_float16(ps, n, po, portable)
    return status


AFFINE_PATHS = ("avx512", "avx2", "portable")  # mesh_core.h's AffinePath, in order


def affine_points(points, matrix, mask, out, str max_path="avx512"):
    """Fills out, (n, 3) float32 or (n, 3) uint16 (float16 bits), with the 3x4 matrix (3, 4) float32 applied to points
    (n, 3) float32, each row multiplied by mask (n,) uint8 (0 or 1, as float) or not (None), one fma after another
    (mesh_core.h); ``max_path`` (``AFFINE_PATHS``) caps the instruction set the kernel may take. Returns the status
    code."""
    if max_path not in AFFINE_PATHS:
        raise ValueError(f"_mesh_core: max_path must be one of {AFFINE_PATHS}, got {max_path!r}")
    cdef int path = AFFINE_PATHS.index(max_path)
    cdef cnp.ndarray p = _array(points, FLOAT32, (ANY, 3), "points")
    cdef int64_t n = cnp.PyArray_DIM(p, 0)
    cdef cnp.ndarray m = _array(matrix, FLOAT32, (3, 4), "matrix")
    cdef cnp.ndarray k
    cdef const uint8_t* pk = NULL
    if mask is not None:
        k = _array(mask, UINT8, (n,), "mask")
        pk = <const uint8_t*> cnp.PyArray_DATA(k)
    cdef bint half = isinstance(out, cnp.ndarray) and out.dtype == UINT16
    cdef cnp.ndarray o = _array(out, UINT16 if half else FLOAT32, (n, 3), "out", True)
    cdef const float* pp = <const float*> cnp.PyArray_DATA(p)
    cdef const float* pm = <const float*> cnp.PyArray_DATA(m)
    cdef float* o32 = NULL
    cdef uint16_t* o16 = NULL
    if half:
        o16 = <uint16_t*> cnp.PyArray_DATA(o)
    else:
        o32 = <float*> cnp.PyArray_DATA(o)
    cdef int status
    with nogil:
        status = c_affine_points(pp, n, pm, pk, o32, o16, path)
    return status
