"""OBJ / PLY / .mat round trips (exact), the files' winding and texture output, error handling; vis."""
import re
import sys

import numpy as np
import pytest

from face3d.mesh import io


def mesh(dtype, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.normal(0, 1e5, (30, 3)).astype(dtype)
    v[0] = [0.1, -0.0, 1e-30]  # values whose short decimal forms are not exact binary fractions
    v[1] = [np.pi, np.finfo(dtype).max, np.finfo(dtype).tiny]
    colors = rng.uniform(0, 1, (30, 3)).astype(dtype)
    t = rng.integers(0, 30, (50, 3)).astype(np.int32)
    return v, t, colors


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_obj_with_colors_round_trip_is_exact(tmp_path, dtype):
    v, t, colors = mesh(dtype)
    path = io.write_obj_with_colors(tmp_path / "face", v, t, colors)
    assert path.name == "face.obj"
    back = io.read_obj(path)
    assert back["vertices"].dtype == np.float64
    assert np.array_equal(back["vertices"], v.astype(np.float64))
    assert np.array_equal(back["colors"], colors.astype(np.float64))
    assert np.array_equal(back["triangles"], t) and back["triangles"].dtype == np.int32
    assert back["uv_coords"] is None and back["texture_path"] is None
    faces = [line for line in path.read_text().splitlines() if line.startswith("f ")]
    assert faces[0] == f"f {t[0, 2] + 1} {t[0, 1] + 1} {t[0, 0] + 1}"  # 1-based, counter-clockwise in the file


def test_obj_with_colors_of_a_mesh_without_triangles_or_vertices(tmp_path):
    v, _, colors = mesh(np.float64)
    back = io.read_obj(io.write_obj_with_colors(tmp_path / "points", v, np.zeros((0, 3), np.int32), colors))
    assert np.array_equal(back["vertices"], v) and back["triangles"].shape == (0, 3)
    assert io.encode_obj_with_colors(np.zeros((0, 3)), np.zeros((0, 3), np.int32), np.zeros((0, 3))) == b""


def test_obj_without_colors_has_plain_vertex_lines(tmp_path):
    v, t, _ = mesh(np.float64)
    path = io.write_obj_with_colors(tmp_path / "plain", v, t, None)
    assert path.read_text().splitlines()[0] == "v " + " ".join(map(repr, v[0].tolist()))
    back = io.read_obj(path)
    assert back["colors"] is None and np.array_equal(back["vertices"], v) and np.array_equal(back["triangles"], t)


@pytest.mark.parametrize("text", ["", "# exported by a tool\no Empty\n"], ids=["zero bytes", "comments only"])
def test_read_obj_without_vertices(tmp_path, text):
    empty = io.write_obj_with_colors(tmp_path / "empty", np.zeros((0, 3)), np.zeros((0, 3), np.int32), np.zeros((0, 3)))
    (tmp_path / "other.obj").write_text(text)
    for path in (empty, tmp_path / "other.obj"):
        back = io.read_obj(path)
        assert back["vertices"].shape == (0, 3) and back["vertices"].dtype == np.float64
        assert back["colors"] is None and back["triangles"].shape == (0, 3) and back["uv_triangles"] is None


def test_obj_with_texture_and_mtl(tmp_path):
    import cv2

    v, t, colors = mesh(np.float32)
    rng = np.random.default_rng(1)
    uv = rng.uniform(0, 1, (30, 2)).astype(np.float32)
    texture = rng.integers(0, 256, (8, 6, 3)).astype(np.uint8)
    path = io.write_obj_with_colors_texture(tmp_path / "tex.obj", v, t, colors, texture, uv)
    back = io.read_obj(path)
    assert np.array_equal(back["vertices"], v) and np.array_equal(back["colors"], colors)
    assert np.array_equal(back["uv_coords"], uv.astype(np.float64))
    assert np.array_equal(back["triangles"], t) and np.array_equal(back["uv_triangles"], t)
    assert back["texture_path"] == tmp_path / "tex_texture.png"
    assert (tmp_path / "tex.mtl").read_text() == "newmtl FaceTexture\nmap_Kd tex_texture.png\n"
    assert np.array_equal(cv2.imread(str(back["texture_path"]))[:, :, ::-1], texture)
    io.write_obj_with_texture(tmp_path / "plain", v, t, texture.astype(np.float32) / 255, uv)
    plain = io.read_obj(tmp_path / "plain.obj")
    assert plain["colors"] is None
    assert np.array_equal(cv2.imread(str(plain["texture_path"]))[:, :, ::-1], texture)


@pytest.mark.parametrize("texture", [np.zeros((8, 8, 2)), np.zeros((0, 8, 3)), np.zeros((8, 0))],
                         ids=["two channels", "no rows", "no columns"])
def test_invalid_texture_is_refused_before_any_file_is_written(tmp_path, texture):
    v, t, _ = mesh(np.float32)
    with pytest.raises(ValueError, match=r"^texture must have shape \(h, w\), \(h, w, 3\) or \(h, w, 4\) with "
                                         rf"h, w >= 1, got {re.escape(str(texture.shape))}$"):
        io.write_obj_with_texture(tmp_path / "tex", v, t, texture, np.zeros((30, 2)))
    assert list(tmp_path.iterdir()) == []


def test_read_obj_polygons_and_relative_indices(tmp_path):
    path = tmp_path / "quad.obj"
    path.write_text("# quad\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\n"
                    "vn 0 0 1\nf 1/1/1 2/2/1 3/3/1 4/4/1\nf -4 -2 -1\n")
    back = io.read_obj(path)
    # Fan (1 2 3), (1 3 4), then (1 3 4) again; each reversed into the in-memory (clockwise) order.
    assert back["triangles"].tolist() == [[2, 1, 0], [3, 2, 0], [3, 2, 0]]
    assert back["uv_triangles"] is None  # the last face has no texture coordinates


TRIANGLE_OBJ = "v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/1 2/1 3/1\n"


def test_read_obj_drops_a_byte_order_mark_and_the_w_of_v_lines(tmp_path):
    path = tmp_path / "m.obj"
    path.write_text("\ufeffv 0 0 0\nv 1 0 0 1\nv 0 1 0 0.5\nf 1 2 3\n", encoding="utf-8")
    back = io.read_obj(path)
    assert back["vertices"].tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0]] and back["colors"] is None
    assert back["triangles"].tolist() == [[2, 1, 0]]


@pytest.mark.parametrize("mtllib, files, texture", [
    ("a.mtl b.mtl", {"b.mtl": "newmtl m\nmap_Kd b.png\n"}, "b.png"),
    ("a.mtl b.mtl", {"a.mtl": "newmtl m\nKd 1 1 1\n", "b.mtl": "newmtl m\nmap_Kd b.png\n"}, "b.png"),
    ("a.mtl b.mtl", {"a.mtl": "newmtl m\nmap_Kd a.png\n", "b.mtl": "newmtl m\nmap_Kd b.png\n"}, "a.png"),
    ("my mesh.mtl", {"my mesh.mtl": "newmtl m\nmap_Kd my mesh.png\n"}, "my mesh.png"),
    ("o.mtl", {"o.mtl": "\ufeffmap_Kd -s 1 1 1 t.png\n"}, "t.png"),
    ("o.mtl", {"o.mtl": "newmtl m\nmap_Kd -o 0.5 -clamp on tex image.png\n"}, "tex image.png"),
    ("o.mtl", {"o.mtl": "newmtl m\nmap_Kd -blendu off -blendv on -cc off -mm 0 1 -t 1 2 -texres 512 -bm 0.5 "
                        "-boost 2 -imfchan l t.png\n"}, "t.png"),
    ("o.mtl", {"o.mtl": "newmtl m\nmap_Kd -s 2 2 3.png\n"}, "3.png"),
], ids=["second library", "first without map_Kd", "first", "name with a space", "BOM, -s u v w", "-o u, -clamp",
        "every option", "-s u v then a numeric name"])
def test_read_obj_texture_of_mtl_libraries_and_map_options(tmp_path, mtllib, files, texture):
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    path = tmp_path / "m.obj"
    path.write_text(f"mtllib {mtllib}\n" + TRIANGLE_OBJ)
    assert io.read_obj(path)["texture_path"] == tmp_path / texture


@pytest.mark.parametrize("mtl, problem", [
    ("newmtl m\nmap_Kd caf\xe9.png\n".encode("latin-1"), "not UTF-8 text"),
    (b"newmtl m\nmap_Kd -clamp on\n", "map_Kd names no file"),
], ids=["latin-1", "options only"])
def test_read_obj_names_a_bad_mtl_file_and_line(tmp_path, mtl, problem):
    (tmp_path / "l.mtl").write_bytes(mtl)
    path = tmp_path / "m.obj"
    path.write_text("mtllib l.mtl\n" + TRIANGLE_OBJ)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(tmp_path / 'l.mtl'))}:2: {problem}$"):
        io.read_obj(path)


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ply_round_trip_is_exact(tmp_path, binary, dtype):
    v, t, colors = mesh(dtype, seed=3)
    path = io.write_ply(tmp_path / "m.ply", v, t, colors, binary=binary)
    back = io.read_ply(path)
    assert np.array_equal(back["vertices"], v.astype(np.float64))
    assert np.array_equal(back["colors"], colors.astype(np.float64))
    assert np.array_equal(back["triangles"], t)
    byte_colors = (colors * 255).astype(np.uint8)
    back = io.read_ply(io.write_ply(tmp_path / "u8.ply", v, t, byte_colors, binary=binary))
    assert back["colors"].dtype == np.uint8 and np.array_equal(back["colors"], byte_colors)
    back = io.read_ply(io.write_ply(tmp_path / "nocolor.ply", v, t, binary=binary))
    assert back["colors"] is None and np.array_equal(back["triangles"], t)


PLY_STRUCT = {"char": "b", "uchar": "B", "short": "h", "ushort": "H", "int": "i", "uint": "I", "float": "f",
              "double": "d"}


def ply_file(fmt, elements):
    """PLY bytes of format fmt; elements: (name, property declarations as in the header, rows), a row holding a
    value per scalar property and a Python list per list property."""
    import struct

    header = ["ply", f"format {fmt} 1.0"]
    body = []
    for name, props, rows in elements:
        header += [f"element {name} {len(rows)}"] + [f"property {p}" for p in props]
        for row in rows:
            if fmt == "ascii":
                body.append(" ".join(" ".join(map(str, [len(x), *x])) if isinstance(x, list) else str(x)
                                     for x in row).encode() + b"\n")
                continue
            order = "<" if fmt == "binary_little_endian" else ">"
            for decl, x in zip(props, row):
                types = decl.split()[:-1]
                if types[0] == "list":
                    count, item = PLY_STRUCT[types[1]], PLY_STRUCT[types[2]]
                    body.append(struct.pack(f"{order}{count}{len(x)}{item}", len(x), *x))
                else:
                    body.append(struct.pack(order + PLY_STRUCT[types[0]], x))
    return ("\n".join(header + ["end_header"]) + "\n").encode() + b"".join(body)


SQUARE = ("vertex", ["float x", "float y", "float z", "uchar red", "uchar green", "uchar blue"],
          [[0, 0, 0, 255, 0, 0], [1, 0, 0, 0, 255, 0], [1, 1, 0, 0, 0, 255], [0, 1, 0, 10, 20, 30],
           [0.5, 2, 0.25, 1, 2, 3]])


@pytest.mark.parametrize("face", [
    (["list uchar int vertex_indices", "uchar red", "uchar green", "uchar blue", "uchar alpha"],
     [[[0, 1, 2], 1, 2, 3, 255], [[0, 2, 3], 4, 5, 6, 255], [[3, 2, 4], 7, 8, 9, 128]],
     [[0, 1, 2], [0, 2, 3], [3, 2, 4]]),
    (["list uchar int vertex_indices"], [[[0, 1, 2, 3]], [[3, 2, 4]], [[0, 1, 2, 4, 3]]],
     [[0, 1, 2], [0, 2, 3], [3, 2, 4], [0, 1, 2], [0, 2, 4], [0, 4, 3]]),
    (["list uchar int vertex_indices", "list uchar float texcoord"],
     [[[0, 1, 2], [0, 0, 1, 0, 1, 1]], [[0, 2, 3, 4], [0, 0, 1, 1, 0, 1, 0.5, 0.5]]],
     [[0, 1, 2], [0, 2, 3], [0, 3, 4]]),
    (["int flags", "list char ushort vertex_index", "float quality"], [[7, [0, 1, 2], 0.5], [-1, [2, 3, 4], 1.5]],
     [[0, 1, 2], [2, 3, 4]]),
], ids=["face colours", "polygons", "per-wedge texcoords", "flags and quality"])
def test_binary_ply_faces_with_other_properties_or_polygons_read_as_in_ascii(tmp_path, face):
    props, rows, fans = face
    results = {}
    for fmt in ("ascii", "binary_little_endian", "binary_big_endian"):
        path = tmp_path / f"{fmt}.ply"
        path.write_bytes(ply_file(fmt, [SQUARE, ("face", props, rows)]))
        results[fmt] = io.read_ply(path)
    for fmt, back in results.items():
        assert np.array_equal(back["vertices"], np.array(SQUARE[2], np.float64)[:, :3]), fmt
        assert back["colors"].dtype == np.uint8 and back["colors"].tolist() == [r[3:] for r in SQUARE[2]], fmt
        assert back["triangles"].dtype == np.int32 and back["triangles"][:, ::-1].tolist() == fans, fmt


def test_binary_ply_faces_read_entry_by_entry_are_strict(tmp_path):
    path = tmp_path / "f.ply"
    props = ["list char int vertex_indices", "uchar red"]

    def read(rows, edit=lambda data: data):
        path.write_bytes(edit(ply_file("binary_little_endian", [SQUARE, ("face", props, rows)])))
        return io.read_ply(path)

    good = [[[0, 1, 2, 3], 1], [[0, 2, 4], 2]]
    assert read(good)["triangles"][:, ::-1].tolist() == [[0, 1, 2], [0, 2, 3], [0, 2, 4]]
    with pytest.raises(ValueError, match=r"f\.ply:10: the header declares 2 'face' entries, the file holds 1$"):
        read(good, lambda data: data[:-1])
    with pytest.raises(ValueError, match=r"f\.ply: 1 bytes after the last element the header declares$"):
        read(good, lambda data: data + b"\0")
    with pytest.raises(ValueError, match=r"f\.ply: 'face' entry 1 refers to a vertex that does not exist "
                                         r"\(9; 5 vertices\)$"):
        read([[[0, 1, 2, 3], 1], [[0, 2, 9], 2]])
    with pytest.raises(ValueError, match=r"f\.ply: 'face' entry 1 has 2 vertices, at least 3 needed$"):
        read([[[0, 1, 2, 3], 1], [[0, 2], 2]])
    first_face = len(ply_file("binary_little_endian", [SQUARE, ("face", props, [])]))
    with pytest.raises(ValueError, match=r"f\.ply: 'face' entry 0 holds a list of -1 items$"):
        read(good, lambda data: data[:first_face] + b"\xff" + data[first_face + 1:])


def test_ply_header_and_winding(tmp_path):
    v, t, _ = mesh(np.float32)
    text = io.write_ply(tmp_path / "a.ply", v, t).read_text().splitlines()
    assert text[:6] == ["ply", "format ascii 1.0", "element vertex 30", "property float x", "property float y",
                        "property float z"]
    assert text[text.index("end_header") + 31] == f"3 {t[0, 2]} {t[0, 1]} {t[0, 0]}"


def test_mat_round_trip(tmp_path):
    v, t, colors = mesh(np.float32)
    io.save_mesh_mat(tmp_path / "m.mat", v, t, colors, full_triangles=t[:5])
    back = io.load_mesh_mat(tmp_path / "m.mat")
    assert np.array_equal(back["vertices"], v) and np.array_equal(back["colors"], colors)
    assert np.array_equal(back["triangles"], t) and back["triangles"].dtype == np.int32
    assert np.array_equal(back["full_triangles"], t[:5])


def test_write_asc(tmp_path):
    v, _, _ = mesh(np.float64)
    path = io.write_asc(tmp_path / "points", v)
    assert path.suffix == ".asc" and np.array_equal(np.loadtxt(path), v)


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.obj"):
        io.read_obj(tmp_path / "missing.obj")
    with pytest.raises(FileNotFoundError, match="missing.ply"):
        io.read_ply(tmp_path / "missing.ply")
    bad = tmp_path / "bad.obj"
    bad.write_text("v 0 0 0\nv 1 0 x\n")
    with pytest.raises(ValueError, match=r"bad.obj:2: malformed"):
        io.read_obj(bad)
    bad.write_text("v 0 0 0\nf 1 2 3\n")
    with pytest.raises(ValueError, match="vertex that does not exist"):
        io.read_obj(bad)
    (tmp_path / "x.ply").write_text("not a ply\n")
    with pytest.raises(ValueError, match="not a PLY file"):
        io.read_ply(tmp_path / "x.ply")
    with pytest.raises(ValueError, match=r"^triangles must hold indices"):
        io.write_obj_with_colors(tmp_path / "e", np.zeros((3, 3)), [[0, 1, 3]], np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"^colors must have shape"):
        io.write_ply(tmp_path / "e.ply", np.zeros((3, 3)), [[0, 1, 2]], np.zeros((2, 3)))


def test_vis_imports_matplotlib_lazily():
    import subprocess

    code = "import sys, face3d.mesh, face3d.mesh_numpy; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_plot_mesh():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from face3d.mesh import vis

    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0.5]])
    ax = vis.plot_mesh(v, [[0, 1, 2], [1, 3, 2]], title="quad")
    assert ax.get_title() == "quad" and len(ax.collections) == 1
    plt.close("all")
