"""Reading and writing meshes: OBJ (per-vertex colours, or texture map + MTL), PLY (ascii or binary), .mat, .asc.

Round trips are exact: floats are written with ``repr`` (shortest text that reads back to the same float64; float32
values are converted to float64 first, which is exact), and readers return float64 arrays, so
``read(write(x)) == x`` for float32 and float64 input alike.

Winding: in memory, triangles follow the Basel Face Model / face3d order (clockwise seen from outside, see
face3d.mesh.light); OBJ and PLY files expect counter-clockwise faces, so the writers store each triangle as
(t2, t1, t0), as face3d does, and the readers reverse them back. Indices are 0-based in memory, 1-based in OBJ,
0-based in PLY and in the .mat files written here (face3d's example .mat layout).
"""
import os
from pathlib import Path

import numpy as np

from face3d.mesh import _checks

__all__ = ["write_obj_with_colors", "write_obj_with_texture", "write_obj_with_colors_texture", "read_obj",
           "write_ply", "read_ply", "save_mesh_mat", "load_mesh_mat", "write_asc"]


def _mesh_arrays(vertices, triangles, colors=None):
    v = np.asarray(vertices)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must have shape (nver, 3), got {v.shape}")
    if not np.issubdtype(v.dtype, np.number):
        raise ValueError(f"vertices must hold real numbers, got dtype {v.dtype}")
    t = _checks.as_indices(triangles, v.shape[0])
    if colors is not None:
        colors = np.asarray(colors)
        if colors.shape != (v.shape[0], 3):
            raise ValueError(f"colors must have shape ({v.shape[0]}, 3), got {colors.shape}")
    return v, t, colors


def _rows(prefix, *columns):
    """Lines 'prefix a b c ...' with every number written by repr (exact round trip)."""
    table = np.concatenate([np.asarray(c).reshape(len(c), -1) for c in columns], axis=1).tolist()
    return "".join(f"{prefix} {' '.join(map(repr, row))}\n" for row in table)


def _obj_path(obj_name):
    path = Path(obj_name)
    return path if path.suffix == ".obj" else path.with_name(path.name + ".obj")


def write_obj_with_colors(obj_name, vertices, triangles, colors):
    """Writes an OBJ with per-vertex colours ('v x y z r g b', as MeshLab reads them).

    Args:
        obj_name: path; '.obj' is appended when missing.
        vertices: (nver, 3) floats; triangles: (ntri, 3) 0-based ints (written reversed, 1-based);
        colors: (nver, 3) floats (written as given, usually in [0, 1]).
    Returns:
        The Path written.
    """
    v, t, col = _mesh_arrays(vertices, triangles, colors)
    path = _obj_path(obj_name)
    with open(path, "w") as f:
        f.write(_rows("v", v, col))
        f.write(_rows("f", t[:, ::-1] + 1))
    return path


def _save_texture(path, texture):
    import cv2

    tex = np.asarray(texture)
    if tex.ndim == 2:
        tex = tex[:, :, None]
    if tex.ndim != 3 or tex.shape[2] not in (1, 3, 4):
        raise ValueError(f"texture must have shape (h, w), (h, w, 3) or (h, w, 4), got {np.shape(texture)}")
    if tex.dtype != np.uint8:
        tex = np.round(np.clip(tex.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
    if tex.shape[2] >= 3:
        tex = tex[:, :, [2, 1, 0, 3][: tex.shape[2]]]  # cv2 writes BGR(A)
    if not cv2.imwrite(str(path), tex):
        raise OSError(f"could not write texture image {path}")


def write_obj_with_texture(obj_name, vertices, triangles, texture, uv_coords, colors=None):
    """Writes an OBJ with a texture map: <name>.obj, <name>.mtl (material FaceTexture, map_Kd) and
    <name>_texture.png.

    Args:
        obj_name: path; '.obj' is appended when missing.
        vertices: (nver, 3) floats; triangles: (ntri, 3) 0-based ints.
        texture: (h, w, 3) uint8 (0..255) or float (0..1) RGB image; row 0 is the top (v = 1).
        uv_coords: (nver, 2) (or (nver, 3), the rest ignored) OBJ texture coordinates of each vertex: u right,
            v up, in [0, 1] (BFM_UV.mat's convention); written as given.
        colors: optional (nver, 3) per-vertex colours, written after the positions.
    Returns:
        The Path of the OBJ written.
    """
    v, t, col = _mesh_arrays(vertices, triangles, colors)
    uv = np.asarray(uv_coords)
    if uv.ndim != 2 or uv.shape[0] != v.shape[0] or uv.shape[1] < 2:
        raise ValueError(f"uv_coords must have shape ({v.shape[0]}, 2), got {uv.shape}")
    path = _obj_path(obj_name)
    mtl_path = path.with_suffix(".mtl")
    tex_path = path.with_name(path.stem + "_texture.png")
    with open(path, "w") as f:
        f.write(f"mtllib {mtl_path.name}\n")
        f.write(_rows("v", v) if col is None else _rows("v", v, col))
        f.write(_rows("vt", uv[:, :2]))
        f.write("usemtl FaceTexture\n")
        r = t[:, ::-1] + 1
        f.write("".join(f"f {a}/{a} {b}/{b} {c}/{c}\n" for a, b, c in r.tolist()))
    with open(mtl_path, "w") as f:
        f.write(f"newmtl FaceTexture\nmap_Kd {tex_path.name}\n")
    _save_texture(tex_path, texture)
    return path


def write_obj_with_colors_texture(obj_name, vertices, triangles, colors, texture, uv_coords):
    """face3d's name: write_obj_with_texture with per-vertex colours as well."""
    return write_obj_with_texture(obj_name, vertices, triangles, texture, uv_coords, colors=colors)


def _obj_index(token, n):
    i = int(token)
    return i - 1 if i > 0 else n + i  # OBJ: 1-based, negative = relative to the end


def read_obj(path):
    """Reads an OBJ (the subset written here and by common tools): v (with optional r g b), vt, f (triangles, or
    polygons split into fans; 'v', 'v/vt', 'v//vn', 'v/vt/vn'), mtllib + map_Kd.

    Args:
        path: .obj file.
    Returns:
        dict with 'vertices' (nver, 3) float64, 'colors' (nver, 3) float64 or None, 'triangles' (ntri, 3) int32
        (0-based, winding reversed back, see the module docstring), 'uv_coords' (nvt, 2) float64 or None,
        'uv_triangles' (ntri, 3) int32 or None (indices into uv_coords), 'texture_path' (Path of map_Kd) or None.
    Raises:
        FileNotFoundError: path does not exist; ValueError: malformed content (naming the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"OBJ file not found: {path}")
    verts, uvs, faces, uv_faces, mtllibs = [], [], [], [], []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            try:
                if parts[0] == "v":
                    verts.append([float(x) for x in parts[1:]])
                elif parts[0] == "vt":
                    uvs.append([float(x) for x in parts[1:3]])
                elif parts[0] == "f":
                    corners = [p.split("/") for p in parts[1:]]
                    vi = [_obj_index(c[0], len(verts)) for c in corners]
                    ti = [_obj_index(c[1], len(uvs)) if len(c) > 1 and c[1] else -1 for c in corners]
                    for k in range(1, len(vi) - 1):
                        faces.append([vi[0], vi[k], vi[k + 1]])
                        uv_faces.append([ti[0], ti[k], ti[k + 1]])
                elif parts[0] == "mtllib":
                    mtllibs.append(line.strip()[len("mtllib"):].strip())
            except (ValueError, IndexError):
                raise ValueError(f"{path}:{lineno}: malformed OBJ line {line.strip()!r}") from None
    lengths = {len(v) for v in verts}
    if not lengths <= {3, 6} or len(lengths) > 1:
        raise ValueError(f"{path}: every 'v' line must hold 3 (x y z) or 6 (x y z r g b) numbers, the same in all")
    table = np.array(verts, dtype=np.float64).reshape(len(verts), -1)
    tris = np.array(faces, dtype=np.int64).reshape(-1, 3)[:, ::-1]
    if tris.size and (tris.min() < 0 or tris.max() >= len(verts)):
        raise ValueError(f"{path}: a face refers to a vertex that does not exist")
    uv_tris = np.array(uv_faces, dtype=np.int64).reshape(-1, 3)[:, ::-1]
    has_uv = bool(uvs) and uv_tris.size > 0 and uv_tris.min() >= 0
    return {
        "vertices": np.ascontiguousarray(table[:, :3]),
        "colors": np.ascontiguousarray(table[:, 3:6]) if table.shape[1] == 6 else None,
        "triangles": np.ascontiguousarray(tris, dtype=np.int32),
        "uv_coords": np.array(uvs, dtype=np.float64).reshape(-1, 2) if uvs else None,
        "uv_triangles": np.ascontiguousarray(uv_tris, dtype=np.int32) if has_uv else None,
        "texture_path": _texture_path(path.parent, mtllibs),
    }


def _texture_path(folder, mtllibs):
    for name in mtllibs:
        mtl = folder / name
        if not mtl.is_file():
            continue
        for line in mtl.read_text().splitlines():
            if line.split()[:1] == ["map_Kd"]:
                return folder / line.strip()[len("map_Kd"):].strip()
    return None


_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def write_ply(path, vertices, triangles, colors=None, binary=False):
    """Writes a PLY mesh: vertex x y z (float for float32 input, else double), optional red green blue (uchar for
    uint8 colours, else float/double as given), faces as 'vertex_indices' lists of 3 ints (reversed, see the module
    docstring).

    Args:
        path: output file; vertices: (nver, 3); triangles: (ntri, 3) 0-based ints; colors: optional (nver, 3).
        binary: False for 'ascii 1.0', True for 'binary_little_endian 1.0'.
    Returns:
        The Path written.
    """
    v, t, col = _mesh_arrays(vertices, triangles, colors)
    vtype = "f4" if v.dtype == np.float32 else "f8"
    fields = [(name, vtype) for name in "xyz"]
    if col is not None:
        ctype = "u1" if col.dtype == np.uint8 else ("f4" if col.dtype == np.float32 else "f8")
        fields += [(name, ctype) for name in ("red", "green", "blue")]
    names = {"f4": "float", "f8": "double", "u1": "uchar"}
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0", f"element vertex {len(v)}"]
    header += [f"property {names[ty]} {name}" for name, ty in fields]
    header += [f"element face {len(t)}", "property list uchar int vertex_indices", "end_header"]
    faces = t[:, ::-1]
    path = Path(path)
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        if binary:
            rec = np.empty(len(v), dtype=[(name, "<" + ty) for name, ty in fields])
            for k, name in enumerate("xyz"):
                rec[name] = v[:, k]
            if col is not None:
                for k, name in enumerate(("red", "green", "blue")):
                    rec[name] = col[:, k]
            f.write(rec.tobytes())
            frec = np.empty(len(t), dtype=[("n", "u1"), ("i", "<i4", (3,))])
            frec["n"], frec["i"] = 3, faces
            f.write(frec.tobytes())
        else:
            rows = v.astype(np.float64).tolist()
            if col is not None:
                # uint8 colours become ints (repr '255'), others float64: repr is exact either way.
                extra = col.tolist() if col.dtype == np.uint8 else col.astype(np.float64).tolist()
                rows = [p + c for p, c in zip(rows, extra)]
            f.write("".join(" ".join(map(repr, row)) + "\n" for row in rows).encode("ascii"))
            f.write("".join(f"3 {a} {b} {c}\n" for a, b, c in faces.tolist()).encode("ascii"))
    return path


def _ply_header(f, path):
    if f.readline().strip() != b"ply":
        raise ValueError(f"{path}: not a PLY file (first line must be 'ply')")
    fmt, elements = None, []
    for raw in iter(f.readline, b""):
        parts = raw.decode("ascii", "replace").split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        if parts[0] == "end_header":
            return fmt, elements
        if parts[0] == "format":
            fmt = parts[1]
        elif parts[0] == "element":
            elements.append((parts[1], int(parts[2]), []))
        elif parts[0] == "property" and elements:
            if parts[1] == "list":
                elements[-1][2].append((parts[4], "list", _PLY_TYPES[parts[2]], _PLY_TYPES[parts[3]]))
            else:
                elements[-1][2].append((parts[2], _PLY_TYPES[parts[1]]))
    raise ValueError(f"{path}: PLY header has no end_header")


def read_ply(path):
    """Reads a PLY mesh (ascii, binary_little_endian or binary_big_endian) with a 'vertex' element (x, y, z and
    optional red, green, blue) and an optional 'face' element whose list property holds triangles (ascii polygons
    are split into fans).

    Args:
        path: .ply file.
    Returns:
        dict with 'vertices' (nver, 3) float64, 'colors' (nver, 3) (float64, or uint8 when stored as uchar) or None,
        'triangles' (ntri, 3) int32 (0-based, winding reversed back).
    Raises:
        FileNotFoundError: path does not exist; ValueError: unsupported or malformed content (naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PLY file not found: {path}")
    with open(path, "rb") as f:
        try:
            fmt, elements = _ply_header(f, path)
        except (KeyError, IndexError):
            raise ValueError(f"{path}: malformed PLY header") from None
        body = f.read()
    data = {}
    if fmt == "ascii":
        lines = body.decode("ascii").splitlines()
        pos = 0
        for name, count, props in elements:
            rows = lines[pos:pos + count]
            pos += count
            if any(p[1] == "list" for p in props):
                data[name] = [[int(x) for x in r.split()[1:]] for r in rows]
            else:
                table = np.array(" ".join(rows).split(), dtype=np.float64).reshape(count, len(props))
                data[name] = {p[0]: table[:, k] for k, p in enumerate(props)}
    elif fmt in ("binary_little_endian", "binary_big_endian"):
        order = "<" if fmt == "binary_little_endian" else ">"
        offset = 0
        for name, count, props in elements:
            if any(p[1] == "list" for p in props):
                if len(props) != 1:
                    raise ValueError(f"{path}: binary element {name!r} mixes lists with other properties")
                _, _, ctype, itype = props[0]
                dt = np.dtype([("n", order + ctype), ("i", order + itype, (3,))])
                rec = np.frombuffer(body, dtype=dt, count=count, offset=offset)
                if count and not np.all(rec["n"] == 3):
                    raise ValueError(f"{path}: binary PLY faces must all be triangles")
                data[name] = rec["i"].tolist() if name == "face" else None
            else:
                dt = np.dtype([(p[0], order + p[1]) for p in props])
                rec = np.frombuffer(body, dtype=dt, count=count, offset=offset)
                data[name] = {p[0]: rec[p[0]] for p in props}
            offset += dt.itemsize * count
    else:
        raise ValueError(f"{path}: unsupported PLY format {fmt!r}")
    if "vertex" not in data:
        raise ValueError(f"{path}: PLY file has no 'vertex' element")
    vert = data["vertex"]
    vertices = np.stack([np.asarray(vert[k], dtype=np.float64) for k in "xyz"], axis=1)
    colors = None
    if all(k in vert for k in ("red", "green", "blue")):
        types = {p[1] for name, _, props in elements if name == "vertex" for p in props if p[0] == "red"}
        ctype = np.uint8 if types == {"u1"} else np.float64
        colors = np.stack([np.asarray(vert[k]).astype(ctype) for k in ("red", "green", "blue")], axis=1)
    tris = []
    for poly in data.get("face", []):
        tris.extend([poly[0], poly[k], poly[k + 1]] for k in range(1, len(poly) - 1))
    t = np.array(tris, dtype=np.int64).reshape(-1, 3)[:, ::-1]
    if t.size and (t.min() < 0 or t.max() >= len(vertices)):
        raise ValueError(f"{path}: a face refers to a vertex that does not exist")
    return {"vertices": vertices, "colors": colors, "triangles": np.ascontiguousarray(t, dtype=np.int32)}


def save_mesh_mat(path, vertices, triangles, colors=None, **arrays):
    """Saves a mesh as a MATLAB .mat file with keys 'vertices' (nver, 3), 'triangles' (ntri, 3) 0-based int32 (the
    layout of face3d's example .mat files), 'colors' (nver, 3) if given, plus any extra named arrays."""
    from scipy.io import savemat

    v, t, col = _mesh_arrays(vertices, triangles, colors)
    content = {"vertices": v, "triangles": t, **arrays}
    if col is not None:
        content["colors"] = col
    savemat(os.fspath(path), content, do_compression=True)


def load_mesh_mat(path):
    """Loads a .mat mesh written by save_mesh_mat (or face3d's examples): a dict with 'vertices', 'triangles'
    (int32, 0-based as stored), 'colors' when present and every other non-private key, as numpy arrays."""
    from face3d.utils.matfile import read_mat  # imports SciPy, which the rest of this module does not need

    content = {k: v for k, v in read_mat(path).items() if not k.startswith("__")}
    for key in ("vertices", "triangles"):
        if key not in content:
            raise ValueError(f"{path}: no '{key}' array in the .mat file")
    content["triangles"] = _checks.as_indices(content["triangles"], content["vertices"].shape[0], "triangles")
    return content


def write_asc(path, vertices):
    """Writes vertices (nver, 3) as an ASCII point cloud 'x y z' per line (repr precision); '.asc' is appended
    when missing. Returns the Path written."""
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must have shape (nver, 3), got {v.shape}")
    path = Path(path)
    if path.suffix != ".asc":
        path = path.with_name(path.name + ".asc")
    path.write_text("".join(" ".join(map(repr, row)) + "\n" for row in v.tolist()))
    return path
