"""Input validation shared by face3d.mesh (C++ kernels) and face3d.mesh_numpy (their numpy twins).

Both twins convert their inputs through these functions, so they see identical float32 / int32 arrays and raise
identical ``ValueError`` messages, each naming the offending argument, in the same order (the numpy twins make the
C++ kernels' own checks with ``kernel_checks``, where the C++ twins call the kernel).
"""
import operator

import numpy as np

# The coverage rule computes pixel bounds in float32, which represents every integer up to 2**24 exactly.
MAX_IMAGE_SIDE = 1 << 24
FLOAT32_MAX = float(np.finfo(np.float32).max)


def nonfinite_message(name):
    """Message of the error raised for NaN or infinite values of the argument `name` (vertex coordinates, ...)."""
    return f"{name} must be finite, found NaN or inf"


def index_range_message(name, n, what="vertices"):
    """Message of the error raised for an index outside [0, n)."""
    return f"{name} must hold indices into {what} in [0, {n}), found one outside"


def as_size(value, name):
    """Returns value as a positive Python int (an image side in pixels), else raises ValueError naming it."""
    try:
        if isinstance(value, (bool, np.bool_)):
            raise TypeError
        size = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if not 0 < size <= MAX_IMAGE_SIDE:
        raise ValueError(f"{name} must be a positive integer at most {MAX_IMAGE_SIDE}, got {size}")
    return size


def as_real(array, name):
    """Returns array as a numpy array (dtype kept) of real numbers: an integer or floating dtype (bool is not a
    number here); ValueError naming it otherwise."""
    a = np.asarray(array)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}")
    return a


def require_finite(array, name):
    """ValueError naming the argument (nonfinite_message) when array holds a NaN or an infinity."""
    if not np.isfinite(array).all():
        raise ValueError(nonfinite_message(name))


def finite_reals(array, name):
    """Returns array as a numpy array (dtype kept) of finite real numbers (as_real, require_finite)."""
    a = as_real(array, name)
    require_finite(a, name)
    return a


def as_float32(array, name):
    """Returns a real array (as_real) as an aligned, C-contiguous float32 array, as the C++ kernels take it (copying
    only when needed); ValueError naming it for a finite value beyond the float32 range, which the cast would turn
    into an infinity."""
    if np.issubdtype(array.dtype, np.floating) and array.dtype.itemsize > 4:
        beyond = np.abs(array) > FLOAT32_MAX
        if beyond.any():
            beyond &= np.isfinite(array)
            if beyond.any():
                raise ValueError(f"{name} must lie within the float32 range (magnitude at most {FLOAT32_MAX:.8g}), "
                                 f"found {float(array[beyond][0]):g}")
    return np.require(array, np.float32, ["C", "A"])


def as_float_rows(array, name, ncols=None):
    """Returns array as an aligned, C-contiguous 2-D float32 array (as_float32: copying only when needed).

    Args:
        array: array-like of real numbers, shape (n, ncols) (any ncols when ncols is None).
        name: argument name used in error messages.
    """
    a = np.asarray(array)
    if a.ndim != 2 or (ncols is not None and a.shape[1] != ncols):
        want = f"(n, {ncols})" if ncols is not None else "(n, k)"
        raise ValueError(f"{name} must have shape {want}, got {a.shape}")
    return as_float32(as_real(a, name), name)


def as_vertices(vertices, name="vertices", check_finite=True):
    """Returns vertices as an aligned, C-contiguous (n, 3) float32 array; raises ValueError for other shapes or, when
    check_finite, for NaN/inf coordinates (the C++ kernels check finiteness themselves, without the GIL)."""
    v = as_float_rows(vertices, name, 3)
    if check_finite:
        require_finite(v, name)
    return v


def as_indices(triangles, n, name="triangles", what="vertices", check_range=True):
    """Returns triangles as an aligned, C-contiguous (ntri, 3) int32 array of indices into n items.

    Integer dtypes are accepted, and floating dtypes holding whole numbers (MATLAB files store indices as
    doubles). The range [0, n) is always checked when a conversion is needed (so that a wide integer can never
    wrap into range) and otherwise only when check_range (the C++ kernels check int32 input themselves).
    """
    t = np.asarray(triangles)
    if t.ndim != 2 or t.shape[1] != 3:
        raise ValueError(f"{name} must have shape (ntri, 3), got {t.shape}")
    if np.issubdtype(t.dtype, np.floating):
        if not (np.isfinite(t).all() and np.array_equal(t, np.floor(t))):
            raise ValueError(f"{name} must hold whole-number indices, got non-integral values")
    elif not np.issubdtype(t.dtype, np.integer) or t.dtype == np.bool_:
        raise ValueError(f"{name} must have an integer dtype, got {t.dtype}")
    converted = t.dtype != np.int32
    if (check_range or converted) and _outside(t, n):
        raise ValueError(index_range_message(name, n, what))
    return np.require(t, np.int32, ["C", "A"])


def _outside(indices, n):
    """Whether an index lies outside [0, n)."""
    return indices.size > 0 and (indices.min() < 0 or indices.max() >= n)


def as_mesh(vertices, triangles):
    """(n, 3) float32 vertices and (ntri, 3) int32 triangles as the C++ render kernels take them: shapes and dtypes
    checked, and the index range where a conversion is needed (as_indices); the rest is kernel_checks'."""
    v = as_vertices(vertices, check_finite=False)
    return v, as_indices(triangles, v.shape[0], check_range=False)


def kernel_checks(v, t, tex_triangles=None, ntex=0):
    """The checks the C++ render kernels make themselves, in their order: tex_triangles in [0, ntex) (for
    render_texture), vertices finite, triangles in [0, nver). The numpy twins call it where the C++ twins call the
    kernel, so that several faults at once give the same error."""
    if tex_triangles is not None and _outside(tex_triangles, ntex):
        raise ValueError(index_range_message("tex_triangles", ntex, "tex_coords"))
    require_finite(v, "vertices")
    if _outside(t, v.shape[0]):
        raise ValueError(index_range_message("triangles", v.shape[0]))


def as_attributes(values, nrows, c, name="colors"):
    """Returns per-vertex attributes as an aligned, C-contiguous (nrows, c) float32 array; a 1-D array counts as one
    channel.

    Raises ValueError naming `name` when the row count is not nrows, and naming `c` when the channel count differs.
    """
    a = np.asarray(values)
    if a.ndim == 1:
        a = a[:, None]
    a = as_float_rows(a, name)
    if a.shape[0] != nrows:
        raise ValueError(f"{name} must have one row per vertex ({nrows}), got {a.shape[0]}")
    if a.shape[1] != c:
        raise ValueError(f"c must equal the number of channels of {name} ({a.shape[1]}), got {c}")
    return a


def as_channels(c):
    """Returns the channel count c as a positive int."""
    return as_size(c, "c")


def background(BG, h, w, c):
    """Returns a new (h, w, c) float32 image holding the background: zeros for None, else BG broadcast (a scalar,
    a (c,) colour or an (h, w, c) image; never modified)."""
    if BG is None:
        return np.zeros((h, w, c), dtype=np.float32)
    bg = as_float32(as_real(BG, "BG"), "BG")
    try:
        shape = np.broadcast_shapes(bg.shape, (h, w, c))
    except ValueError:
        shape = None
    if shape != (h, w, c):
        raise ValueError(f"BG must broadcast to (h, w, c) = {(h, w, c)}, got shape {bg.shape}")
    image = np.empty((h, w, c), dtype=np.float32)
    image[...] = bg
    return image


def mapping(mapping_type):
    """Returns True for 'bilinear', False for 'nearest', else raises ValueError naming mapping_type."""
    if mapping_type not in ("nearest", "bilinear"):
        raise ValueError(f"mapping_type must be 'nearest' or 'bilinear', got {mapping_type!r}")
    return mapping_type == "bilinear"


def as_texture(texture, c):
    """Returns texture as an aligned, C-contiguous (th, tw, c) float32 array (a 2-D texture counts as one channel)."""
    t = np.asarray(texture)
    if t.ndim == 2:
        t = t[:, :, None]
    if t.ndim != 3 or t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError(f"texture must have shape (tex_h, tex_w, c) with tex_h, tex_w >= 1, got {np.shape(texture)}")
    as_real(t, "texture")
    if t.shape[2] != c:
        raise ValueError(f"c must equal the number of channels of texture ({t.shape[2]}), got {c}")
    return as_float32(t, "texture")


def as_tex_coords(tex_coords):
    """Returns tex_coords as an aligned, C-contiguous (ntex, k >= 2) float32 array; columns 0, 1 are x, y in texels."""
    uv = as_float_rows(tex_coords, "tex_coords")
    if uv.shape[1] < 2:
        raise ValueError(f"tex_coords must have shape (ntex, 2) or (ntex, 3), got {uv.shape}")
    require_finite(uv[:, :2], "tex_coords")
    return uv


def mesh_vertices(vertices):
    """Vertices to write: (nver, 3) finite real numbers (finite_reals), dtype kept; ValueError naming vertices
    otherwise."""
    v = np.asarray(vertices)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must have shape (nver, 3), got {v.shape}")
    return finite_reals(v, "vertices")


def mesh_arrays(vertices, triangles, colors=None):
    """A mesh to write: (nver, 3) finite real vertices (mesh_vertices), (ntri, 3) valid int32 triangles
    (as_indices), optional (nver, 3) finite real colours (dtypes kept); ValueError naming the argument otherwise."""
    v = mesh_vertices(vertices)
    t = as_indices(triangles, v.shape[0])
    if colors is not None:
        colors = np.asarray(colors)
        if colors.shape != (v.shape[0], 3):
            raise ValueError(f"colors must have shape ({v.shape[0]}, 3), got {colors.shape}")
        colors = finite_reals(colors, "colors")
    return v, t, colors


def affine_arguments(points, matrix, mask, dtype):
    """(points, (3, 4) float32 matrix, bool mask or None, float32 / float16 dtype) of ``affine_points``, else a
    ValueError naming the argument: (..., 3) float32 points (not converted: a float64 point would be rounded
    silently), a matrix of shape (3, 4), a bool mask of the points' shape, float32 or float16."""
    values = np.asarray(points)
    if values.dtype != np.float32 or values.ndim < 1 or values.shape[-1] != 3:
        raise ValueError(f"affine_points takes (..., 3) float32 points, got {values.shape} {values.dtype}")
    m = np.asarray(matrix, dtype=np.float32)
    if m.shape != (3, 4):
        raise ValueError(f"affine_points takes a (3, 4) matrix, got shape {m.shape}")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype != np.bool_ or mask.shape != values.shape[:-1]:
            raise ValueError(f"affine_points takes a bool mask of shape {values.shape[:-1]}, got {mask.shape} "
                             f"{mask.dtype}")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float16):
        raise ValueError(f"affine_points gives float32 or float16, not {dtype}")
    return values, m, mask, dtype
