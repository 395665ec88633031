"""The reconstructed face as a Wavefront OBJ, with per-vertex colours or a UV texture (``face3d.mesh.io``)."""
import numpy as np

from face3d.mesh import io as mesh_io
from face3d.utils.unit_floats import refuse_above_one

__all__ = ["write_obj", "encode_obj"]


def _y_up(vertices, h):
    """(n, 3) float64 copy of image-coordinate vertices with y pointing up, ``h - 1 - y`` (as PRNet saves them)."""
    v = np.array(vertices, dtype=np.float64)
    v[:, 1] = h - 1 - v[:, 1]
    return v


def _unit_colors(colors):
    """(n, 3) float64 colours in [0, 1] of per-vertex ``colors``: uint8 divided by 255, floats as float64,
    refused above 1 (``refuse_above_one``: colours in 0-255 would be written 255 times too bright); other integer
    types refused by their dtype."""
    colors = np.asarray(colors)
    if colors.dtype == np.uint8:
        return colors / 255.0
    if not np.issubdtype(colors.dtype, np.floating):
        raise ValueError(f"colors must be uint8 (0..255) or float (0..1), got dtype {colors.dtype}")
    colors = np.asarray(colors, dtype=np.float64)
    refuse_above_one(colors, "colors")
    return colors


def encode_obj(vertices, triangles, h, colors) -> bytes:
    """The OBJ file ``write_obj`` writes for per-vertex ``colors``, as bytes (arguments as there)."""
    return mesh_io.encode_obj_with_colors(_y_up(vertices, h), triangles, _unit_colors(colors))


def write_obj(path, vertices, triangles, h, colors=None, texture=None, uv_data=None):
    """Write the face as an OBJ with per-vertex colours or with a texture map (``face3d.mesh.io``).

    Vertices are stored with y flipped to point up (``h - 1 - y``, as PRNet saves them), so viewers show the face
    upright and the UV data's triangles (BFM winding, clockwise seen from outside with y up) face outwards.

    Args:
        path: the ``.obj`` path. vertices: (n, 3) image coordinates. triangles: (t, 3) indices.
        h: image height (pixels). colors: (n, 3) per-vertex colours, floats in [0, 1] or uint8 (divided by 255).
        texture: (R, R, 3) RGB UV texture, uint8 (``texture_from_map``) or floats in [0, 1]; then ``uv_data``
            gives each vertex's texture coordinate (u = x / (R - 1), v = 1 - y / (R - 1) of its ``face_ind``
            pixel) and the files ``<name>.mtl`` and ``<name>_texture.png`` are written too.
    Returns:
        Path of the OBJ.
    Raises:
        ValueError: float colours or texture above 1 (in 0-255: pass uint8 or divide by 255), or arrays
            ``face3d.mesh.io`` refuses; no file is written.
    """
    if texture is None:
        if colors is None:
            raise ValueError("write_obj needs colors (per-vertex) or texture (with uv_data)")
        return mesh_io.write_obj_with_colors(path, _y_up(vertices, h), triangles, _unit_colors(colors))
    if uv_data is None:
        raise ValueError("write_obj with a texture needs uv_data (the texture coordinates come from face_ind)")
    r = uv_data.resolution
    face_ind = np.asarray(uv_data.face_ind)
    uv = np.column_stack([(face_ind % r) / (r - 1.0), 1.0 - (face_ind // r) / (r - 1.0)])
    return mesh_io.write_obj_with_texture(path, _y_up(vertices, h), triangles, texture, uv,
                                          colors=None if colors is None else _unit_colors(colors))
