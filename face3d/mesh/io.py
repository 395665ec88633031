"""Reading and writing meshes: OBJ (per-vertex colours, or texture map + MTL), PLY (``ply``), .mat, .asc.

Round trips are exact: floats are written with ``repr`` (shortest text that reads back to the same float64; float32
values are converted to float64 first, which is exact), and readers return float64 arrays, so ``read(write(x)) == x``
for float32 and float64 input alike. Winding: in memory, triangles follow the Basel Face Model / face3d order
(clockwise seen from outside, see face3d.mesh.light); OBJ and PLY files expect counter-clockwise faces, so the
writers store each triangle as (t2, t1, t0), as face3d does, and the readers reverse them back. Indices are 0-based
in memory, 1-based in OBJ, 0-based in PLY and in the .mat files written here (face3d's example .mat layout).
"""
import re
from pathlib import Path

import numpy as np

from face3d.mesh import _checks
from face3d.mesh.ply import encode_ply, read_ply, write_ply
from face3d.utils.atomic import atomic_file, atomic_write_bytes, atomic_write_files
from face3d.utils.errors import InputFileError
from face3d.utils.unit_floats import refuse_above_one

__all__ = ["encode_obj_with_colors", "write_obj_with_colors", "write_obj_with_texture",
           "write_obj_with_colors_texture", "read_obj", "encode_ply", "write_ply", "read_ply", "save_mesh_mat",
           "load_mesh_mat", "write_asc"]


def _rows(prefix, *columns):
    """Lines 'prefix a b c ...' with every number written by repr (exact round trip); None columns are left out."""
    table = np.concatenate([np.asarray(c).reshape(len(c), int(np.prod(np.shape(c)[1:]))) for c in columns
                            if c is not None], axis=1).tolist()
    return "".join(f"{prefix} {' '.join(map(repr, row))}\n" for row in table)


def _obj_path(obj_name):
    path = Path(obj_name)
    return path if path.suffix == ".obj" else path.with_name(path.name + ".obj")


def encode_obj_with_colors(vertices, triangles, colors) -> bytes:
    """An OBJ with per-vertex colours ('v x y z r g b', as MeshLab reads them) as file bytes.

    Args:
        vertices: (nver, 3) finite reals; triangles: (ntri, 3) 0-based ints (written reversed, 1-based);
        colors: (nver, 3) finite reals (written as given, usually in [0, 1]), or None for plain 'v x y z' lines.
    Raises:
        ValueError: naming the argument (shape, dtype, NaN or inf, index outside [0, nver)).
    """
    v, t, col = _checks.mesh_arrays(vertices, triangles, colors)
    return (_rows("v", v, col) + _rows("f", t[:, ::-1] + 1)).encode("ascii")


def write_obj_with_colors(obj_name, vertices, triangles, colors):
    """Writes ``encode_obj_with_colors(vertices, triangles, colors)`` to ``obj_name`` ('.obj' appended when
    missing) through a temporary twin (``face3d.utils.atomic``): a failed write leaves no file and raises an
    OSError naming ``obj_name``. Returns the Path written."""
    path = _obj_path(obj_name)
    atomic_write_bytes(path, encode_obj_with_colors(vertices, triangles, colors))
    return path


def _encode_texture(texture) -> bytes:
    """PNG bytes of an (h, w), (h, w, 3) or (h, w, 4) RGB(A) texture: uint8 (0..255) as is, or finite floats (0..1)
    scaled to round(255 x), below 0 clipped to 0; ValueError naming texture for another shape, an empty image,
    another dtype (integers other than uint8 included), a NaN / inf, or floats above 1 (``refuse_above_one``: a
    texture in 0-255 given as floats would be all white)."""
    import cv2

    tex = np.asarray(texture)
    if tex.ndim == 2:
        tex = tex[:, :, None]
    if tex.ndim != 3 or tex.shape[2] not in (1, 3, 4) or 0 in tex.shape:
        raise ValueError(f"texture must have shape (h, w), (h, w, 3) or (h, w, 4) with h, w >= 1, got "
                         f"{np.shape(texture)}")
    if tex.dtype != np.uint8:
        if not np.issubdtype(tex.dtype, np.floating):
            raise ValueError(f"texture must be uint8 (0..255) or float (0..1), got dtype {tex.dtype}")
        _checks.require_finite(tex, "texture")
        refuse_above_one(tex, "texture")
        tex = np.round(np.clip(tex.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
    if tex.shape[2] >= 3:
        tex = tex[:, :, [2, 1, 0, 3][: tex.shape[2]]]  # cv2 encodes BGR(A)
    ok, png = cv2.imencode(".png", tex)
    if not ok:
        raise ValueError(f"texture of shape {np.shape(texture)} could not be encoded as PNG")
    return png.tobytes()


def write_obj_with_texture(obj_name, vertices, triangles, texture, uv_coords, colors=None):
    """Writes an OBJ with a texture map: <name>_texture.png, <name>.mtl (material FaceTexture, map_Kd) and
    <name>.obj, once every argument is checked (bad input writes no file). The three appear together or not at all
    (``face3d.utils.atomic.atomic_write_files``): a failed write leaves none of them and raises an OSError naming
    the file that failed.

    Args:
        obj_name: path; '.obj' is appended when missing.
        vertices: (nver, 3) finite reals; triangles: (ntri, 3) 0-based ints.
        texture: (h, w), (h, w, 3) or (h, w, 4) uint8 (0..255) or finite float (0..1; above 1 is refused) grey,
            RGB or RGBA image, h, w >= 1; row 0 is the top (v = 1).
        uv_coords: (nver, 2) (or (nver, 3), the rest ignored) finite OBJ texture coordinates of each vertex: u right,
            v up, in [0, 1] (BFM_UV.mat's convention); written as given.
        colors: optional (nver, 3) finite per-vertex colours, written after the positions.
    Returns:
        The Path of the OBJ written.
    Raises:
        ValueError: naming the argument (shape, dtype, NaN or inf, index outside [0, nver)).
    """
    v, t, col = _checks.mesh_arrays(vertices, triangles, colors)
    uv = np.asarray(uv_coords)
    if uv.ndim != 2 or uv.shape[0] != v.shape[0] or uv.shape[1] < 2:
        raise ValueError(f"uv_coords must have shape ({v.shape[0]}, 2), got {uv.shape}")
    uv = _checks.finite_reals(uv[:, :2], "uv_coords")
    png = _encode_texture(texture)
    path = _obj_path(obj_name)
    mtl_path = path.with_suffix(".mtl")
    tex_path = path.with_name(path.stem + "_texture.png")
    r = t[:, ::-1] + 1
    obj = (f"mtllib {mtl_path.name}\n" + _rows("v", v, col) + _rows("vt", uv) + "usemtl FaceTexture\n"
           + "".join(f"f {a}/{a} {b}/{b} {c}/{c}\n" for a, b, c in r.tolist()))
    atomic_write_files({tex_path: png, mtl_path: f"newmtl FaceTexture\nmap_Kd {tex_path.name}\n".encode(),
                        path: obj.encode()})
    return path


def write_obj_with_colors_texture(obj_name, vertices, triangles, colors, texture, uv_coords):
    """face3d's name: write_obj_with_texture with per-vertex colours as well."""
    return write_obj_with_texture(obj_name, vertices, triangles, texture, uv_coords, colors=colors)


def _text_lines(path):
    """(line number, text) of each line of a UTF-8 text file, a leading byte order mark dropped; InputFileError
    naming the file and line for bytes that are not UTF-8."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InputFileError(path, "not UTF-8 text", lineno) from None
            yield lineno, line.removeprefix("\ufeff") if lineno == 1 else line


def _obj_numbers(parts, counts, what, lineno, path):
    """The numbers of a 'v' / 'vt' line, whose count must be in counts (described by `what`)."""
    row = [float(x) for x in parts[1:]]
    if len(row) not in counts:
        raise InputFileError(path, f"'{parts[0]}' line has {len(row)} numbers, expected {what}", lineno)
    return row


def _obj_indices(tokens, n, what, key, lineno, path):
    """0-based indices of OBJ index tokens into the n '<key>' lines above: 1-based, or negative = counted back from
    the last of them; InputFileError naming the line for any other (0 included)."""
    indices = []
    for token in tokens:
        i = int(token)
        k = i - 1 if i > 0 else n + i
        if not 0 <= k < n:
            raise InputFileError(path, f"face refers to {what} that does not exist ({i}; {n} '{key}' lines)", lineno)
        indices.append(k)
    return indices


def read_obj(path):
    """Reads an OBJ (the subset written here and by common tools): v (with optional r g b), vt, f (triangles, or
    polygons split into fans; 'v', 'v/vt', 'v//vn', 'v/vt/vn'), mtllib + map_Kd (see ``_texture_path``). UTF-8
    text; a byte order mark is dropped.

    Strict: every 'v' line holds 3 numbers (x y z), 4 (x y z w; w ignored) or 6 (x y z r g b), colours in all or
    in none, every 'vt' line 2 or 3, every face at least 3 corners, with a texture coordinate index for all of
    them or for none, and every index refers to a 'v' / 'vt' line above the face (1-based, or negative = counted
    back from the last one).

    Args:
        path: .obj file.
    Returns:
        dict with 'vertices' (nver, 3) float64, 'colors' (nver, 3) float64 or None, 'triangles' (ntri, 3) int32
        (0-based, winding reversed back, see the module docstring), 'uv_coords' (nvt, 2) float64 or None,
        'uv_triangles' (ntri, 3) int32 or None (indices into uv_coords; None unless every face has them),
        'texture_path' (Path of map_Kd) or None.
    Raises:
        FileNotFoundError: path does not exist; InputFileError (a ValueError): malformed content, as
        "<path>:<line>: <problem>".
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"OBJ file not found: {path}")
    verts, uvs, faces, uv_faces, mtllibs = [], [], [], [], []
    all_faces_have_uv, first_v_count = True, None
    for lineno, line in _text_lines(path):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        try:
            if parts[0] == "v":
                row = _obj_numbers(parts, (3, 4, 6), "3 (x y z), 4 (x y z w) or 6 (x y z r g b)", lineno, path)
                first_v_count = first_v_count or len(row)
                if len(row) == 4:
                    row = row[:3]  # w weighs rational curves and surfaces' control points, not mesh vertices
                if verts and len(row) != len(verts[0]):
                    raise InputFileError(path, f"'v' line has {len(parts) - 1} numbers, the first 'v' line "
                                               f"{first_v_count}", lineno)
                verts.append(row)
            elif parts[0] == "vt":
                uvs.append(_obj_numbers(parts, (2, 3), "2 (u v) or 3 (u v w)", lineno, path)[:2])
            elif parts[0] == "f":
                corners = [p.split("/") for p in parts[1:]]
                if len(corners) < 3:
                    raise InputFileError(path, f"face has {len(corners)} vertices, at least 3 needed", lineno)
                has_uv = [len(c) > 1 and c[1] != "" for c in corners]
                if any(has_uv) and not all(has_uv):
                    raise InputFileError(path, "face gives texture coordinates for some corners only", lineno)
                vi = _obj_indices([c[0] for c in corners], len(verts), "a vertex", "v", lineno, path)
                all_faces_have_uv &= has_uv[0]
                for k in range(1, len(vi) - 1):
                    faces.append([vi[0], vi[k], vi[k + 1]])
                if has_uv[0]:
                    ti = _obj_indices([c[1] for c in corners], len(uvs), "a texture coordinate", "vt", lineno,
                                      path)
                    uv_faces.extend([ti[0], ti[k], ti[k + 1]] for k in range(1, len(ti) - 1))
            elif parts[0] == "mtllib":
                mtllibs.append((lineno, line.strip()[len("mtllib"):].strip()))
        except InputFileError:
            raise
        except (ValueError, IndexError):
            raise InputFileError(path, f"malformed OBJ line {line.strip()!r}", lineno) from None
    tris = np.array(faces, dtype=np.int64).reshape(-1, 3)
    uv_tris = np.array(uv_faces, dtype=np.int64).reshape(-1, 3)
    table = np.array(verts, dtype=np.float64).reshape(len(verts), len(verts[0]) if verts else 3)
    has_uv = bool(faces) and all_faces_have_uv
    return {
        "vertices": np.ascontiguousarray(table[:, :3]),
        "colors": np.ascontiguousarray(table[:, 3:6]) if table.shape[1] == 6 else None,
        "triangles": np.ascontiguousarray(tris[:, ::-1], dtype=np.int32),
        "uv_coords": np.array(uvs, dtype=np.float64).reshape(-1, 2) if uvs else None,
        "uv_triangles": np.ascontiguousarray(uv_tris[:, ::-1], dtype=np.int32) if has_uv else None,
        "texture_path": _texture_path(path, mtllibs),
    }


# Arguments of the MTL texture map options: -o, -s and -t take 1 to 3 numbers (u [v [w]]), the others a fixed count.
_MAP_OPTION_ARITY = {"-blendu": 1, "-blendv": 1, "-cc": 1, "-clamp": 1, "-mm": 2, "-texres": 1, "-bm": 1,
                     "-boost": 1, "-imfchan": 1, "-o": 3, "-s": 3, "-t": 3}


def _is_number(token):
    try:
        float(token)
    except ValueError:
        return False
    return True


def _map_file(arguments):
    """The file name of a texture map statement's arguments ('-s 1 1 1 tex image.png' -> 'tex image.png'): the
    options are skipped with their arguments, the rest is the name, spaces kept; '' when nothing is left."""
    tokens = [(m.start(), m.group()) for m in re.finditer(r"\S+", arguments)]
    k = 0
    while k < len(tokens) - 1 and tokens[k][1] in _MAP_OPTION_ARITY:
        option, k = tokens[k][1], k + 1
        if option in ("-o", "-s", "-t"):  # up to 3 numbers, leaving the name
            stop = min(k + 3, len(tokens) - 1)
            while k < stop and _is_number(tokens[k][1]):
                k += 1
        else:
            k += _MAP_OPTION_ARITY[option]
    return arguments[tokens[k][0]:].strip() if k < len(tokens) else ""


def _texture_path(obj_path, mtllibs):
    """The ``map_Kd`` texture (Path, or None) of the first existing library with one, for the OBJ ``obj_path`` and
    its ``mtllib`` statements ((line number, text) each); each statement names one library (a name with spaces, as
    written here) or several separated by spaces. Map options ('-s 1 1 1', '-clamp on', ...) are skipped. A data file
    only names files in the OBJ's folder (or below), so a name leading out of it raises InputFileError (naming the
    OBJ and line, or the MTL and line), as do a library that is not UTF-8 text and a map_Kd without a file name."""
    folder = obj_path.parent
    for obj_line, statement in mtllibs:
        names = statement.split()
        for name in [statement] + (names if len(names) > 1 else []):
            mtl = folder / name
            if not mtl.resolve().is_relative_to(folder.resolve()):
                raise InputFileError(obj_path, f"mtllib {name!r} lies outside the OBJ's folder", obj_line)
            if not mtl.is_file():
                continue
            for lineno, line in _text_lines(mtl):
                if line.split()[:1] != ["map_Kd"]:
                    continue
                texture = _map_file(line.strip()[len("map_Kd"):])
                if not texture:
                    raise InputFileError(mtl, "map_Kd names no file", lineno)
                if not (folder / texture).resolve().is_relative_to(folder.resolve()):
                    raise InputFileError(mtl, f"map_Kd {texture!r} lies outside the OBJ's folder", lineno)
                return folder / texture
    return None


def save_mesh_mat(path, vertices, triangles, colors=None, **arrays):
    """Saves a mesh as a MATLAB .mat file with keys 'vertices' (nver, 3), 'triangles' (ntri, 3) 0-based int32 (the
    layout of face3d's example .mat files), 'colors' (nver, 3) if given, plus any extra named arrays; through a
    temporary twin (a failed write leaves no file and raises an OSError naming path). ValueError naming the argument
    for a bad mesh (shape, dtype, NaN or inf, index outside [0, nver))."""
    from scipy.io import savemat

    v, t, col = _checks.mesh_arrays(vertices, triangles, colors)
    content = {"vertices": v, "triangles": t, **arrays}
    if col is not None:
        content["colors"] = col
    with atomic_file(path) as f:
        savemat(f, content, do_compression=True)


def load_mesh_mat(path):
    """Loads a .mat mesh written by save_mesh_mat (or face3d's examples): a dict with 'vertices' (nver, 3),
    'triangles' (ntri, 3) int32 (0-based as stored, each in [0, nver)), 'colors' (nver, 3) when present and every
    other non-private key, as numpy arrays.

    Raises:
        FileNotFoundError: path does not exist; InputFileError (a ValueError) naming the file: not a readable .mat
        file, or a missing or malformed 'vertices', 'triangles' or 'colors' (shape, dtype, NaN or inf, index
        range: the checks of the writers).
    """
    from face3d.utils.matfile import read_mat  # imports SciPy, which the rest of this module does not need

    content = {k: v for k, v in read_mat(path).items() if not k.startswith("__")}
    for key in ("vertices", "triangles"):
        if key not in content:
            raise InputFileError(path, f"no '{key}' array in the .mat file")
    try:
        _, content["triangles"], _ = _checks.mesh_arrays(content["vertices"], content["triangles"],
                                                          content.get("colors"))
    except ValueError as err:
        raise InputFileError(path, str(err)) from None
    return content


def write_asc(path, vertices):
    """Writes vertices (nver, 3) finite reals as an ASCII point cloud 'x y z' per line (repr precision) through a
    temporary twin (a failed write leaves no file and raises an OSError naming it); '.asc' is appended when missing.
    Returns the Path written. ValueError naming vertices for another shape, dtype or a NaN / inf."""
    v = _checks.mesh_vertices(vertices).astype(np.float64)
    path = Path(path)
    if path.suffix != ".asc":
        path = path.with_name(path.name + ".asc")
    atomic_write_bytes(path, "".join(" ".join(map(repr, row)) + "\n" for row in v.tolist()).encode("ascii"))
    return path
