"""PLY meshes (ascii, binary little- or big-endian): a writer and a strict reader.

The reader checks the header against the data: every declared entry present with its values, nothing after the last
element, faces of at least 3 existing vertices; errors name the file and the line (or the entry, for binary data).
Winding and index conventions are those of ``face3d.mesh.io``.
"""
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np

from face3d.mesh import _checks
from face3d.utils.atomic import atomic_write_bytes
from face3d.utils.errors import InputFileError

__all__ = ["encode_ply", "write_ply", "read_ply"]


_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def encode_ply(vertices, triangles, colors=None, binary=False) -> bytes:
    """A PLY mesh as file bytes: vertex x y z (float for float32 input, else double), optional red green blue
    (uchar for uint8 colours, else float/double as given), faces as 'vertex_indices' lists of 3 ints (reversed,
    see the module docstring).

    Args:
        vertices: (nver, 3) finite reals; triangles: (ntri, 3) 0-based ints; colors: optional (nver, 3) finite reals.
        binary: False for 'ascii 1.0', True for 'binary_little_endian 1.0'.
    Raises:
        ValueError: naming the argument (shape, dtype, NaN or inf, index outside [0, nver)).
    """
    v, t, col = _checks.mesh_arrays(vertices, triangles, colors)
    vtype = "f4" if v.dtype == np.float32 else "f8"
    fields = [(name, vtype) for name in "xyz"]
    if col is not None:
        ctype = "u1" if col.dtype == np.uint8 else ("f4" if col.dtype == np.float32 else "f8")
        fields += [(name, ctype) for name in ("red", "green", "blue")]
    names = {"f4": "float", "f8": "double", "u1": "uchar"}
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0", f"element vertex {len(v)}"]
    header += [f"property {names[ty]} {name}" for name, ty in fields]
    header += [f"element face {len(t)}", "property list uchar int vertex_indices", "end_header"]
    parts = [("\n".join(header) + "\n").encode("ascii")]
    faces = t[:, ::-1]
    if binary:
        rec = np.empty(len(v), dtype=[(name, "<" + ty) for name, ty in fields])
        for k, name in enumerate("xyz"):
            rec[name] = v[:, k]
        if col is not None:
            for k, name in enumerate(("red", "green", "blue")):
                rec[name] = col[:, k]
        frec = np.empty(len(t), dtype=[("n", "u1"), ("i", "<i4", (3,))])
        frec["n"], frec["i"] = 3, faces
        parts += [rec.tobytes(), frec.tobytes()]
    else:
        rows = v.astype(np.float64).tolist()
        if col is not None:
            # uint8 colours become ints (repr '255'), others float64: repr is exact either way.
            extra = col.tolist() if col.dtype == np.uint8 else col.astype(np.float64).tolist()
            rows = [p + c for p, c in zip(rows, extra)]
        parts.append("".join(" ".join(map(repr, row)) + "\n" for row in rows).encode("ascii"))
        parts.append("".join(f"3 {a} {b} {c}\n" for a, b, c in faces.tolist()).encode("ascii"))
    return b"".join(parts)


def write_ply(path, vertices, triangles, colors=None, binary=False):
    """Writes ``encode_ply(vertices, triangles, colors, binary)`` to ``path`` through a temporary twin
    (``face3d.utils.atomic``): a failed write leaves no file and raises an OSError naming ``path``. Returns the Path
    written."""
    path = Path(path)
    atomic_write_bytes(path, encode_ply(vertices, triangles, colors, binary))
    return path


class _PlyProperty(NamedTuple):
    name: str
    type: str  # numpy type code of the value, or of a list's items ('f4', 'u1', ...)
    count_type: str | None  # numpy type code of a list's length; None for a scalar property


class _PlyElement(NamedTuple):
    name: str
    count: int
    properties: list
    line: int  # the header line declaring the element


_PLY_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
_PLY_FACE_LISTS = ("vertex_indices", "vertex_index")


def _ply_type(name, path, lineno):
    if name not in _PLY_TYPES:
        raise InputFileError(path, f"unknown PLY property type {name!r}", lineno)
    return _PLY_TYPES[name]


def _ply_header(f, path):
    """Parses the header of the PLY file open (binary) as f: (format, [_PlyElement], number of header lines)."""
    if f.readline().strip() != b"ply":
        raise InputFileError(path, "not a PLY file (first line must be 'ply')")
    fmt, elements = None, []
    for lineno, raw in enumerate(iter(f.readline, b""), 2):
        text = raw.decode("ascii", "replace").strip()
        parts = text.split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        if parts[0] == "end_header":
            if fmt is None:
                raise InputFileError(path, "PLY header has no format line")
            return fmt, elements, lineno
        if parts[0] == "format" and len(parts) == 3 and parts[1] in _PLY_FORMATS:
            fmt = parts[1]
        elif parts[0] == "element" and len(parts) == 3 and parts[2].isdigit():
            elements.append(_PlyElement(parts[1], int(parts[2]), [], lineno))
        elif parts[0] == "property" and elements and len(parts) == 3:
            elements[-1].properties.append(_PlyProperty(parts[2], _ply_type(parts[1], path, lineno), None))
        elif parts[0] == "property" and elements and len(parts) == 5 and parts[1] == "list":
            item_type, count_type = _ply_type(parts[3], path, lineno), _ply_type(parts[2], path, lineno)
            if count_type[0] == "f":
                raise InputFileError(path, f"list count type {parts[2]!r} is not an integer type", lineno)
            if elements[-1].name == "face" and parts[4] in _PLY_FACE_LISTS and item_type[0] == "f":
                raise InputFileError(path, f"{parts[4]} type {parts[3]!r} is not an integer type", lineno)
            elements[-1].properties.append(_PlyProperty(parts[4], item_type, count_type))
        else:
            raise InputFileError(path, f"malformed header line {text!r}", lineno)
    raise InputFileError(path, "PLY header has no end_header")


def _ascii_number(token, ptype):
    """token as a number of PLY type ptype ('f4', 'u1', ...); ValueError saying why not."""
    if ptype[0] == "f":
        try:
            return float(token)
        except ValueError:
            raise ValueError(f"holds {token!r}, not a float") from None
    try:
        value = int(token)
    except ValueError:
        raise ValueError(f"holds {token!r}, not an int") from None
    info = np.iinfo(ptype)
    if not info.min <= value <= info.max:
        raise ValueError(f"holds {token!r}, outside [{info.min}, {info.max}]")
    return value


def _ascii_entry(tokens, element):
    """The values of one ascii entry (a number per scalar property, a list per list property); ValueError with
    the reason when a token is not a number of its type or the token count differs from the declared layout."""
    values, need = [], 0
    for prop in element.properties:
        start = need
        need += 1
        if need > len(tokens):
            continue
        if prop.count_type is None:
            values.append(_ascii_number(tokens[start], prop.type))
            continue
        length = _ascii_number(tokens[start], prop.count_type)
        if length < 0:
            raise ValueError(f"holds {tokens[start]!r}, not a list length")
        need += length
        values.append([_ascii_number(t, prop.type) for t in tokens[start + 1:need]])
    if need != len(tokens):
        raise ValueError(f"has {len(tokens)} values, expected {need}")
    return values


class _Entries(NamedTuple):
    """An element read entry by entry: per entry its values (a number per scalar property, a list per list
    property, in the header's order) and, for ascii, the line of each entry (None: binary entries go by number)."""
    values: list
    lines: list | None


def _missing_entries(path, element, held):
    return InputFileError(path, f"the header declares {element.count} '{element.name}' entries, the file holds "
                                f"{held}", element.line)


def _read_ply_ascii(body, elements, header_lines, path):
    """{element name: _Entries} of an ascii PLY body (blank lines are skipped)."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError as err:
        raise InputFileError(path, "not ASCII text", header_lines + 1 + body[:err.start].count(b"\n")) from None
    rows = [(lineno, line.split()) for lineno, line in enumerate(text.split("\n"), header_lines + 1) if line.strip()]
    data, pos = {}, 0
    for element in elements:
        entries = rows[pos:pos + element.count]
        if len(entries) < element.count:
            raise _missing_entries(path, element, len(entries))
        pos += element.count
        values = []
        for lineno, tokens in entries:
            try:
                values.append(_ascii_entry(tokens, element))
            except ValueError as err:
                raise InputFileError(path, f"'{element.name}' entry {err}", lineno) from None
        data[element.name] = _Entries(values, [lineno for lineno, _ in entries])
    if pos < len(rows):
        raise InputFileError(path, "data after the last element the header declares", rows[pos][0])
    return data


_STRUCT_CODES = {"i1": "b", "u1": "B", "i2": "h", "u2": "H", "i4": "i", "u4": "I", "f4": "f", "f8": "d"}


def _binary_records(body, offset, element, order, path):
    """The entries of a binary element of fixed layout as one structured array: scalar properties only (a field
    per property), or a lone list holding 3 items in every entry (triangles: fields 'n' and 'i'). None for any
    other element (read entry by entry)."""
    lists = [p for p in element.properties if p.count_type is not None]
    if not lists:
        dt = np.dtype([(p.name, order + p.type) for p in element.properties])
    elif len(element.properties) == 1:
        dt = np.dtype([("n", order + lists[0].count_type), ("i", order + lists[0].type, (3,))])
    else:
        return None
    held = element.count if dt.itemsize == 0 else min(element.count, (len(body) - offset) // dt.itemsize)
    if held < element.count:
        if lists:
            return None
        raise _missing_entries(path, element, held)
    rec = np.frombuffer(body, dtype=dt, count=element.count, offset=offset) if element.count else np.zeros(0, dt)
    if lists and not np.all(rec["n"] == 3):
        return None
    return rec


def _binary_entries(view, offset, element, order, path):
    """Reads a binary element entry by entry from the memoryview of the body, each property in the header's
    order: a scalar's value, or a list's count then its items. Returns (_Entries, offset after the element)."""
    scalars = {ptype: struct.Struct(order + code) for ptype, code in _STRUCT_CODES.items()}
    values = []
    try:
        for k in range(element.count):
            row = []
            for prop in element.properties:
                if prop.count_type is None:
                    row.append(scalars[prop.type].unpack_from(view, offset)[0])
                    offset += scalars[prop.type].size
                    continue
                length = scalars[prop.count_type].unpack_from(view, offset)[0]
                offset += scalars[prop.count_type].size
                if length < 0:
                    raise InputFileError(path, f"'{element.name}' entry {k} holds a list of {length} items")
                row.append(list(struct.unpack_from(f"{order}{length}{_STRUCT_CODES[prop.type]}", view, offset)))
                offset += length * scalars[prop.type].size
            values.append(row)
    except struct.error:
        raise _missing_entries(path, element, len(values)) from None
    return _Entries(values, None), offset


def _read_ply_binary(body, elements, order, path):
    """{element name: structured array (_binary_records) or _Entries} of a binary PLY body."""
    data, offset, view = {}, 0, memoryview(body)
    for element in elements:
        rec = _binary_records(body, offset, element, order, path)
        if rec is None:
            data[element.name], offset = _binary_entries(view, offset, element, order, path)
        else:
            data[element.name] = rec
            offset += rec.dtype.itemsize * element.count
    if offset < len(body):
        raise InputFileError(path, f"{len(body) - offset} bytes after the last element the header declares")
    return data


def _ply_columns(entries, element):
    """{property name: 1-D array} of an element's scalar properties."""
    if isinstance(entries, np.ndarray):
        return {p.name: entries[p.name] for p in element.properties if p.count_type is None}
    return {p.name: np.array([row[k] for row in entries.values]) for k, p in enumerate(element.properties)
            if p.count_type is None}


def _ply_triangles(entries, element, nver, path):
    """(ntri, 3) int64 triangles of the 'face' element in file order, range-checked: polygon (p0, p1, ..., pn-1)
    is split into the fan (p0, pj, pj+1), j = 1 .. n-2."""
    if isinstance(entries, np.ndarray):
        tris = entries["i"].astype(np.int64).reshape(-1, 3)
        bad = np.flatnonzero(((tris < 0) | (tris >= nver)).any(axis=1))
        if bad.size:
            index = tris[bad[0]][(tris[bad[0]] < 0) | (tris[bad[0]] >= nver)][0]
            raise InputFileError(path, f"'face' entry {bad[0]} refers to a vertex that does not exist ({index}; "
                                       f"{nver} vertices)")
        return tris
    k = next(i for i, p in enumerate(element.properties) if p.name in _PLY_FACE_LISTS)
    tris = []
    for n, row in enumerate(entries.values):
        poly = row[k]
        what, lineno = ("face", entries.lines[n]) if entries.lines is not None else (f"'face' entry {n}", None)
        if len(poly) < 3:
            raise InputFileError(path, f"{what} has {len(poly)} vertices, at least 3 needed", lineno)
        outside = [i for i in poly if not 0 <= i < nver]
        if outside:
            raise InputFileError(path, f"{what} refers to a vertex that does not exist ({outside[0]}; {nver} "
                                       f"vertices)", lineno)
        tris.extend([poly[0], poly[j], poly[j + 1]] for j in range(1, len(poly) - 1))
    return np.array(tris, dtype=np.int64).reshape(-1, 3)


def read_ply(path):
    """Reads a PLY mesh (ascii, binary_little_endian or binary_big_endian) with a 'vertex' element (x, y, z and
    optional red, green, blue) and an optional 'face' element whose list property 'vertex_indices' (or
    'vertex_index') holds triangles or polygons (split into fans); other properties of either element (normals,
    face colours, per-wedge texture coordinates, flags, other elements) are read and ignored.

    Strict: the body must hold exactly the entries the header declares, each with the declared number of values of
    the declared types, faces at least 3 vertices, each an index into the vertices.

    Args:
        path: .ply file.
    Returns:
        dict with 'vertices' (nver, 3) float64, 'colors' (nver, 3) (float64, or uint8 when stored as uchar) or None,
        'triangles' (ntri, 3) int32 (0-based, winding reversed back).
    Raises:
        FileNotFoundError: path does not exist; InputFileError (a ValueError): unsupported or malformed content, as
        "<path>:<line>: <problem>" (the line of the header or of the ascii entry; binary entries by number).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PLY file not found: {path}")
    with open(path, "rb") as f:
        fmt, elements, header_lines = _ply_header(f, path)
        body = f.read()
    by_name = {e.name: e for e in elements}
    vertex, face = by_name.get("vertex"), by_name.get("face")
    if vertex is None:
        raise InputFileError(path, "PLY file has no 'vertex' element")
    scalars = {p.name: p.type for p in vertex.properties if p.count_type is None}
    for key in "xyz":
        if key not in scalars:
            raise InputFileError(path, f"the 'vertex' element has no {key!r} property", vertex.line)
    if face is not None and not any(p.name in _PLY_FACE_LISTS and p.count_type for p in face.properties):
        raise InputFileError(path, "the 'face' element has no 'vertex_indices' list property", face.line)
    if fmt == "ascii":
        data = _read_ply_ascii(body, elements, header_lines, path)
    else:
        data = _read_ply_binary(body, elements, _PLY_FORMATS[fmt], path)
    vert = _ply_columns(data["vertex"], vertex)
    vertices = np.stack([np.asarray(vert[k], dtype=np.float64).reshape(-1) for k in "xyz"], axis=1)
    colors = None
    if all(k in scalars for k in ("red", "green", "blue")):
        ctype = np.uint8 if {scalars[k] for k in ("red", "green", "blue")} == {"u1"} else np.float64
        colors = np.stack([np.asarray(vert[k]).astype(ctype).reshape(-1) for k in ("red", "green", "blue")], axis=1)
    t = np.zeros((0, 3), np.int64) if face is None else _ply_triangles(data["face"], face, len(vertices), path)
    return {"vertices": vertices, "colors": colors, "triangles": np.ascontiguousarray(t[:, ::-1], dtype=np.int32)}
