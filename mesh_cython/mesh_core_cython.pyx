# distutils: language = c++
# cython: boundscheck=False, wraparound=False, language_level=3
"""Private Cython bridge to the C++ mesh kernels (mesh_core.h); use face3d.mesh.render / face3d.mesh.light.

Every function checks dtypes, C order and shapes of the buffers it receives (so no call can read or write outside
them), runs its kernel without the GIL and returns the kernel's status code: 0 ok, 1 a triangle index outside
[0, nver), 2 a non-finite vertex, 3 a tex_triangles index outside [0, ntex), 4 out of memory. Outputs are
unspecified unless 0.
"""
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t
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


cdef void _require(cnp.ndarray a, int typenum, tuple shape, str name) except *:
    if cnp.PyArray_TYPE(a) != typenum or not cnp.PyArray_IS_C_CONTIGUOUS(a) or tuple((<object> a).shape) != shape:
        raise ValueError(f"_mesh_core: {name} must be a C-contiguous array of shape {shape} and type number "
                         f"{typenum}, got shape {(<object> a).shape}, dtype {a.dtype}")


def rasterize_triangles(cnp.ndarray vertices, cnp.ndarray triangles, int h, int w,
                        cnp.ndarray depth, cnp.ndarray tri_buf, cnp.ndarray bary):
    """Fills depth (h, w) float32, tri_buf (h, w) int32, bary (h, w, 3) float32; returns the status code."""
    cdef int64_t nver = vertices.shape[0], ntri = triangles.shape[0]
    _require(vertices, cnp.NPY_FLOAT32, (nver, 3), "vertices")
    _require(triangles, cnp.NPY_INT32, (ntri, 3), "triangles")
    _require(depth, cnp.NPY_FLOAT32, (h, w), "depth")
    _require(tri_buf, cnp.NPY_INT32, (h, w), "tri_buf")
    _require(bary, cnp.NPY_FLOAT32, (h, w, 3), "bary")
    cdef const float* pv = <const float*> cnp.PyArray_DATA(vertices)
    cdef const int32_t* pt = <const int32_t*> cnp.PyArray_DATA(triangles)
    cdef float* pd = <float*> cnp.PyArray_DATA(depth)
    cdef int32_t* pb = <int32_t*> cnp.PyArray_DATA(tri_buf)
    cdef float* pw = <float*> cnp.PyArray_DATA(bary)
    cdef int err
    with nogil:
        err = c_rasterize_triangles(pv, nver, pt, ntri, h, w, pd, pb, pw)
    return err


def render_colors(cnp.ndarray vertices, cnp.ndarray triangles, cnp.ndarray colors, int h, int w,
                  cnp.ndarray image):
    """Draws into image (h, w, c) float32, which holds the background; returns the status code."""
    cdef int64_t nver = vertices.shape[0], ntri = triangles.shape[0]
    cdef int c = image.shape[2] if image.ndim == 3 else 0
    _require(vertices, cnp.NPY_FLOAT32, (nver, 3), "vertices")
    _require(triangles, cnp.NPY_INT32, (ntri, 3), "triangles")
    _require(colors, cnp.NPY_FLOAT32, (nver, c), "colors")
    _require(image, cnp.NPY_FLOAT32, (h, w, c), "image")
    cdef const float* pv = <const float*> cnp.PyArray_DATA(vertices)
    cdef const int32_t* pt = <const int32_t*> cnp.PyArray_DATA(triangles)
    cdef const float* pc = <const float*> cnp.PyArray_DATA(colors)
    cdef float* pi = <float*> cnp.PyArray_DATA(image)
    cdef int err
    with nogil:
        err = c_render_colors(pv, nver, pt, ntri, pc, c, h, w, pi)
    return err


def render_texture(cnp.ndarray vertices, cnp.ndarray triangles, cnp.ndarray texture, cnp.ndarray tex_coords,
                   cnp.ndarray tex_triangles, int h, int w, bint bilinear, cnp.ndarray image):
    """Draws into image (h, w, c) float32, which holds the background; returns the status code."""
    cdef int64_t nver = vertices.shape[0], ntri = triangles.shape[0], ntex = tex_coords.shape[0]
    cdef int c = image.shape[2] if image.ndim == 3 else 0
    cdef int th = texture.shape[0], tw = texture.shape[1] if texture.ndim == 3 else 0
    cdef int stride = tex_coords.shape[1] if tex_coords.ndim == 2 else 0
    _require(vertices, cnp.NPY_FLOAT32, (nver, 3), "vertices")
    _require(triangles, cnp.NPY_INT32, (ntri, 3), "triangles")
    _require(texture, cnp.NPY_FLOAT32, (th, tw, c), "texture")
    _require(tex_coords, cnp.NPY_FLOAT32, (ntex, stride), "tex_coords")
    _require(tex_triangles, cnp.NPY_INT32, (ntri, 3), "tex_triangles")
    _require(image, cnp.NPY_FLOAT32, (h, w, c), "image")
    if th < 1 or tw < 1 or stride < 2:
        raise ValueError("_mesh_core: texture must be non-empty and tex_coords must have at least 2 columns")
    cdef const float* pv = <const float*> cnp.PyArray_DATA(vertices)
    cdef const int32_t* pt = <const int32_t*> cnp.PyArray_DATA(triangles)
    cdef const float* ptex = <const float*> cnp.PyArray_DATA(texture)
    cdef const float* puv = <const float*> cnp.PyArray_DATA(tex_coords)
    cdef const int32_t* ptt = <const int32_t*> cnp.PyArray_DATA(tex_triangles)
    cdef float* pi = <float*> cnp.PyArray_DATA(image)
    cdef int err
    with nogil:
        err = c_render_texture(pv, nver, pt, ntri, puv, ntex, stride, ptt, ptex, th, tw, c, bilinear, h, w, pi)
    return err


def triangle_normals(cnp.ndarray vertices, cnp.ndarray triangles, cnp.ndarray normals):
    """Fills normals (ntri, 3) float32; returns the status code."""
    cdef int64_t nver = vertices.shape[0], ntri = triangles.shape[0]
    _require(vertices, cnp.NPY_FLOAT32, (nver, 3), "vertices")
    _require(triangles, cnp.NPY_INT32, (ntri, 3), "triangles")
    _require(normals, cnp.NPY_FLOAT32, (ntri, 3), "normals")
    cdef const float* pv = <const float*> cnp.PyArray_DATA(vertices)
    cdef const int32_t* pt = <const int32_t*> cnp.PyArray_DATA(triangles)
    cdef float* pn = <float*> cnp.PyArray_DATA(normals)
    cdef int err
    with nogil:
        err = c_triangle_normals(pv, nver, pt, ntri, pn)
    return err


def vertex_normals(cnp.ndarray vertices, cnp.ndarray triangles, cnp.ndarray normals):
    """Fills normals (nver, 3) float32; returns the status code."""
    cdef int64_t nver = vertices.shape[0], ntri = triangles.shape[0]
    _require(vertices, cnp.NPY_FLOAT32, (nver, 3), "vertices")
    _require(triangles, cnp.NPY_INT32, (ntri, 3), "triangles")
    _require(normals, cnp.NPY_FLOAT32, (nver, 3), "normals")
    cdef const float* pv = <const float*> cnp.PyArray_DATA(vertices)
    cdef const int32_t* pt = <const int32_t*> cnp.PyArray_DATA(triangles)
    cdef float* pn = <float*> cnp.PyArray_DATA(normals)
    cdef int err
    with nogil:
        err = c_vertex_normals(pv, nver, pt, ntri, pn)
    return err


def combine_basis(cnp.ndarray mean, cnp.ndarray tiles, cnp.ndarray coef, cnp.ndarray out):
    """Fills out (batch, m) float32 with mean + coef @ basis, the basis in tiles (ntiles, nk, 32), element by element
    in a fixed order; returns the status code."""
    cdef int64_t ntiles = tiles.shape[0], nk = tiles.shape[1], batch = coef.shape[0], m = ntiles * 32
    _require(mean, cnp.NPY_FLOAT32, (m,), "mean")
    _require(tiles, cnp.NPY_FLOAT32, (ntiles, nk, 32), "tiles")
    _require(coef, cnp.NPY_FLOAT32, (batch, nk), "coef")
    _require(out, cnp.NPY_FLOAT32, (batch, m), "out")
    cdef int status
    with nogil:
        status = c_combine_basis(<const float*> cnp.PyArray_DATA(mean), <const float*> cnp.PyArray_DATA(tiles),
                                 ntiles, nk, <const float*> cnp.PyArray_DATA(coef), batch,
                                 <float*> cnp.PyArray_DATA(out))
    return status
