"""What travels over HTTP: images in, face boxes and landmarks in, meshes and textures out.

Inputs are checked here and every problem becomes an ``ApiError`` naming the field. Meshes are encoded in memory
by the encoders behind the file writers (OBJ with vertex colours, binary PLY) or, for ``mat``, with the field names of
PRNet-keras's ``/extract`` service so its clients read our files unchanged. Mesh vertices are stored as
``write_obj`` stores them: image x, ``h - 1 - y`` (y up) and z, in pixels.
"""
import base64
import binascii
import io
import re

import cv2
import numpy as np

from face3d.serve.errors import ApiError
from face3d.serve.limits import check_image
from face3d.trainset.landmark_files import landmarks_from_array
from face3d.trainset.sample_io import decode_stored_pixels

__all__ = ["MESH_FORMATS", "MESH_MEDIA_TYPES", "REACH", "MIN_SIDE", "decode_base64", "decode_image", "parse_box",
           "parse_landmarks", "encode_png", "encode_mesh", "mat_fields", "keypoint_vertices"]

MESH_FORMATS = ("obj", "ply", "mat")
MESH_MEDIA_TYPES = {"obj": "model/obj", "ply": "application/x-ply", "mat": "application/x-matlab-data"}
# A face may reach beyond the image (a crop is black outside it), but not farther than this many times the image's
# larger side; and its mean side must be at least MIN_SIDE pixels: beyond either the crop's affine overflows
REACH = 100
MIN_SIDE = 1.0
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan)", re.IGNORECASE)


def decode_base64(text, field):
    """Bytes of a base64 string (standard alphabet; a ``data:...;base64,`` prefix is allowed, and line breaks, as
    the ``base64`` command and ``base64.encodebytes`` write them, are ignored)."""
    if not isinstance(text, str) or not text:
        raise ApiError(400, "bad_request", f"{field}: expected a base64 string")
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "bad_request", f"{field}: not valid base64") from None


def decode_image(data, limits):
    """An uploaded image file as (h, w, 3) uint8 RGB, its header checked against ``limits`` before decoding; pixels
    as stored (a JPEG's Exif orientation is ignored).

    Raises:
        ApiError: 400 ``bad_image`` (empty, truncated, corrupt), 413 ``too_many_pixels``, 415 ``unsupported_image``.
    """
    if not data:
        raise ApiError(400, "bad_image", "image: the file is empty")
    header = check_image(data, limits)
    # as face3d reads every image: a box or landmarks made by face3d (``face3d demo``'s _kpt.txt) are in that frame
    image = decode_stored_pixels(data)
    if image is None:
        raise ApiError(400, "bad_image", f"image: the {header.format.upper()} file could not be decoded "
                                         "(truncated or corrupt)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _numbers(value, field):
    """Floats from text (numbers separated by spaces or commas, a row per line) or a (nested) JSON list.

    Returns:
        float64 array: text as (lines, numbers per line), a list as its own shape.
    """
    if isinstance(value, str):
        rows = [row for row in (line.replace(",", " ").split() for line in value.splitlines()) if row]
        if not all(_NUMBER.fullmatch(t) for row in rows for t in row):
            raise ApiError(422, f"invalid_{field}", f"{field}: expected numbers separated by spaces or commas, "
                                                    f"got {value[:60]!r}")
        if len({len(row) for row in rows}) > 1:
            raise ApiError(422, f"invalid_{field}", f"{field}: every line must hold as many numbers, got lines of "
                                                    f"{sorted({len(row) for row in rows})} numbers")
        return np.array(rows, dtype=np.float64)
    try:
        return np.asarray(value, dtype=np.float64)
    except OverflowError:  # a JSON integer beyond float64
        raise ApiError(422, f"invalid_{field}", f"{field}: a number is too large for a float64") from None
    except (TypeError, ValueError):
        raise ApiError(422, f"invalid_{field}", f"{field}: expected a list of numbers") from None


def _check_extent(x0, y0, x1, y1, width, height, field):
    """Refuse a face whose box (x0, y0, x1, y1) reaches farther than ``REACH`` x max(w, h) pixels from the
    ``width`` x ``height`` image or whose mean side ((x1 - x0) + (y1 - y0)) / 2, which sets the crop's size, is
    under ``MIN_SIDE`` pixels: their crop matrices overflow or are singular (422 ``invalid_<field>``)."""
    reach = REACH * max(width, height)
    if min(x0, y0) < -reach or x1 > width - 1 + reach or y1 > height - 1 + reach:
        raise ApiError(422, f"invalid_{field}", f"{field}: {x0:g} {y0:g} {x1:g} {y1:g} reaches farther than "
                                                f"{REACH} x {max(width, height)} pixels from the {width} x {height} "
                                                "image")
    mean_side = ((x1 - x0) + (y1 - y0)) / 2.0
    if mean_side < MIN_SIDE:
        raise ApiError(422, f"invalid_{field}", f"{field}: the face's mean side is {mean_side:g} pixels, under "
                                                f"{MIN_SIDE:g}: no area to crop")


def parse_box(value, width, height):
    """A face box ``(x0, y0, x1, y1)`` in image pixels.

    Args:
        value: 'x0 y0 x1 y1' (spaces or commas) or a list of 4 numbers.
        width, height: the image size; the box must reach no farther than ``REACH`` x max(w, h) pixels from the
            image and have a mean side of at least ``MIN_SIDE`` pixels (one that misses the image is refused by
            the crop, ``Reconstructor.prepare``).
    Returns:
        tuple of 4 floats.
    Raises:
        ApiError: 422 ``invalid_box`` naming the problem.
    """
    box = _numbers(value, "box").reshape(-1)
    if box.size != 4 or not np.all(np.isfinite(box)):
        raise ApiError(422, "invalid_box", f"box: expected 4 finite numbers x0 y0 x1 y1, got {box.size} values")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 > x0 and y1 > y0):
        raise ApiError(422, "invalid_box", f"box: needs x1 > x0 and y1 > y0, got {x0:g} {y0:g} {x1:g} {y1:g}")
    _check_extent(x0, y0, x1, y1, width, height, "box")
    return x0, y0, x1, y1


def parse_landmarks(value, width, height):
    """68 landmarks as (68, 2) float64 image pixels (x, y).

    Args:
        value: text of 68 lines 'x y' or 'x y z' (as ``np.savetxt`` writes them), or of 2 or 3 lines of 68
            numbers; or a list shaped (68, 2), (68, 3), (2, 68) or (3, 68) (``landmark_files.landmarks_from_array``).
        width, height: the image size; their box must reach no farther than ``REACH`` x max(w, h) pixels from
            the image and have a mean side of at least ``MIN_SIDE`` pixels.
    Raises:
        ApiError: 422 ``invalid_landmarks``.
    """
    try:
        points = landmarks_from_array(_numbers(value, "landmarks"),
                                      remedy="for fewer points (a detector's 5) send the face's box instead")
    except ValueError as exc:
        raise ApiError(422, "invalid_landmarks", f"landmarks: {exc}") from None
    _check_extent(*points.min(axis=0), *points.max(axis=0), width, height, "landmarks")
    return points


def encode_png(rgb):
    """PNG bytes of an (h, w, 3) uint8 RGB image."""
    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise RuntimeError("OpenCV could not encode the PNG")
    return data.tobytes()


def keypoint_vertices(uv_kpt_ind, face_ind, resolution):
    """Index in the dense vertices (``face_ind`` order) of each of the 68 keypoint pixels: the face pixel nearest to
    the keypoint's UV pixel (the pixel itself whenever it is a face pixel, as in PRNet's uv-data).

    Args:
        uv_kpt_ind: (2, 68) UV x, y. face_ind: (n,) row-major face pixels. resolution: R.
    Returns:
        (68,) int32.
    """
    face_ind = np.asarray(face_ind, dtype=np.int64)
    face_xy = np.column_stack([face_ind % resolution, face_ind // resolution]).astype(np.float64)
    kpt = np.asarray(uv_kpt_ind, dtype=np.float64).T
    return np.array([np.argmin(((face_xy - point) ** 2).sum(axis=1)) for point in kpt], dtype=np.int32)


def mat_fields(vertices, triangles, colors, kpt_vertices):
    """The arrays of a PRNet-keras ``/extract`` mesh (.mat).

    Args:
        vertices: (n, 3) y-up vertices. triangles: (t, 3) indices (BFM winding: clockwise seen from outside).
        colors: (n, 3) RGB in [0, 1]. kpt_vertices: (68,) indices of the landmarks in ``vertices``.
    Returns:
        dict: ``vertices`` (n, 3) float32, ``colors`` (n, 3) float32, ``full_triangles`` (t, 3) int32 (0-based),
        ``vertex_normals`` (n, 3) float32 unit outward normals, ``kptIdxs`` (68,) int32 (0-based),
        ``bounding_box`` (6,) float32 ``(min x, min y, min z, max x, max y, max z)``.
    """
    from face3d.mesh import light

    v = np.asarray(vertices, dtype=np.float32)
    # BFM triangles are clockwise seen from outside, so the right-hand vertex normals point inwards
    outward = -light.vertex_normals(v, triangles)
    return {"vertices": v, "colors": np.asarray(colors, dtype=np.float32),
            "full_triangles": np.asarray(triangles, dtype=np.int32), "vertex_normals": outward.astype(np.float32),
            "kptIdxs": np.asarray(kpt_vertices, dtype=np.int32),
            "bounding_box": np.concatenate([v.min(axis=0), v.max(axis=0)]).astype(np.float32)}


def encode_mesh(fmt, vertices, triangles, height, colors, kpt_vertices):
    """A face mesh as file bytes, made in memory.

    Args:
        fmt: 'obj' (per-vertex colours, ``serialization.encode_obj``), 'ply' (binary, uchar colours,
            ``mesh.io.encode_ply``) or 'mat' (``mat_fields``).
        vertices: (n, 3) image coordinates (x right, y down, z nearer). triangles: (t, 3). height: image height.
        colors: (n, 3) RGB in [0, 1]. kpt_vertices: (68,) landmark vertex indices (used by 'mat').
    Returns:
        bytes; vertices stored y up (``height - 1 - y``) in every format.
    """
    from scipy.io import savemat

    from face3d.mesh import io as mesh_io
    from face3d.prnet.serialization import encode_obj

    if fmt not in MESH_FORMATS:
        raise ValueError(f"mesh format must be one of {MESH_FORMATS}, got {fmt!r}")
    if fmt == "obj":
        return encode_obj(vertices, triangles, height, colors)
    y_up = np.array(vertices, dtype=np.float32)
    y_up[:, 1] = height - 1 - y_up[:, 1]
    if fmt == "ply":
        rgb = np.round(np.clip(colors, 0.0, 1.0) * 255.0).astype(np.uint8)
        return mesh_io.encode_ply(y_up, triangles, rgb, binary=True)
    buffer = io.BytesIO()
    savemat(buffer, mat_fields(y_up, triangles, colors, kpt_vertices))  # uncompressed: zlib costs ~0.5 s per mesh
    return buffer.getvalue()
