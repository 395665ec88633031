"""Hostile input to the mesh layer: arrays another thread changes during a render, odd arrays given to the private
C++ bridge, damaged OBJ / PLY / .mat mesh files, NaN or non-numeric arrays and failed writes given to the mesh
writers, and BFM keypoint tables.

The thread, bridge and failed-write cases run in a child process (this file run as a script), so a crash shows as a
failed exit status instead of ending the test run.
"""
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
from test_bfm_io import make_model

from face3d.mesh import _mesh_core, io, light, render
from face3d.morphable_model import load

ROOT = Path(__file__).resolve().parents[1]
BRIDGE_FUNCTIONS = ("rasterize_triangles", "render_colors", "render_texture", "triangle_normals", "vertex_normals")


def run_child(*args):
    """Runs this file as a script with args in a fresh interpreter; returns the CompletedProcess."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, timeout=300,
                          check=False)


# ----------------------------------------------------------------------------- arrays changed by another thread
def overlapping_mesh(ntri, size):
    """ntri triangles that each cover the whole size x size image, each nearer than the one before, so each wins
    every pixel in turn (the kernels read a triangle's indices once more for every pixel it wins)."""
    corners = np.array([[-size, -size], [4 * size, -size], [-size, 4 * size]], dtype=np.float32)
    v = np.zeros((ntri, 3, 3), dtype=np.float32)
    v[:, :, :2] = corners
    v[:, :, 2] = np.arange(ntri, dtype=np.float32)[:, None]
    return v.reshape(-1, 3), np.arange(3 * ntri, dtype=np.int32).reshape(ntri, 3)


def race(rounds=150, size=48):
    """Calls every kernel, through the public functions and the private bridge, while a thread keeps writing
    out-of-range indices into triangles / tex_triangles and shrinking the mesh into the image's corner and back.
    Every call must return or raise ValueError; prints how many did which."""
    v, t = overlapping_mesh(24, size)
    tt = t.copy()
    good_v, good_t, tiny_v = v.copy(), t.copy(), v * np.float32(0.02)
    bad_t = np.full_like(t, 1 << 30)
    colors = np.ones((len(v), 3), np.float32)
    texture = np.ones((4, 4, 3), np.float32)
    uv = np.zeros((len(v), 2), np.float32)
    stop = threading.Event()

    def mutate():
        while not stop.is_set():
            t[:], tt[:], v[:] = bad_t, -bad_t, tiny_v
            time.sleep(0)  # hands the GIL over, so calls start with either state of the arrays
            t[:], tt[:], v[:] = good_t, good_t, good_v
            time.sleep(0)

    def image():
        return np.zeros((size, size, 3), np.float32)

    calls = {
        "rasterize_triangles": lambda: render.rasterize_triangles(v, t, size, size),
        "render_colors": lambda: render.render_colors(v, t, colors, size, size),
        "render_texture": lambda: render.render_texture(v, t, texture, uv, tt, size, size),
        "triangle_normals": lambda: light.triangle_normals(v, t),
        "vertex_normals": lambda: light.vertex_normals(v, t),
        "bridge render_colors": lambda: _mesh_core.render_colors(v, t, colors, size, size, image()),
        "bridge render_texture": lambda: _mesh_core.render_texture(v, t, texture, uv, tt, size, size, True,
                                                                   image()),
        "bridge vertex_normals": lambda: _mesh_core.vertex_normals(v, t, np.empty_like(v)),
    }
    sys.setswitchinterval(1e-5)  # hand the GIL back and forth often: the mutator runs between and during calls
    mutator = threading.Thread(target=mutate)
    mutator.start()
    outcomes = {}
    try:
        for _ in range(rounds):
            for name, call in calls.items():
                try:
                    result = call()
                    outcome = "ok" if not isinstance(result, int) or result == 0 else f"status {result}"
                except ValueError:
                    outcome = "ValueError"
                outcomes[name, outcome] = outcomes.get((name, outcome), 0) + 1
    finally:
        stop.set()
        mutator.join()
    print(outcomes)


def test_changing_arrays_during_renders_never_crashes():
    child = run_child("race")
    assert child.returncode == 0, (child.returncode, child.stdout[-2000:], child.stderr[-2000:])
    assert "render_colors" in child.stdout  # the loop ran to the end


# ----------------------------------------------------------------------------- odd arrays at the private bridge
def good_bridge_arguments(name):
    """Keyword arguments of a valid call of _mesh_core.<name> (3 vertices, 1 triangle, 5 x 6 image, 2 channels)."""
    h, w, c = 5, 6, 2
    args = {"vertices": np.array([[0, 0, 0], [4, 0, 0], [0, 4, 0]], np.float32),
            "triangles": np.array([[0, 1, 2]], np.int32)}
    if name == "rasterize_triangles":
        args.update(h=h, w=w, depth=np.zeros((h, w), np.float32), tri_buf=np.zeros((h, w), np.int32),
                    bary=np.zeros((h, w, 3), np.float32))
    elif name == "render_colors":
        args.update(colors=np.ones((3, c), np.float32), h=h, w=w, image=np.zeros((h, w, c), np.float32))
    elif name == "render_texture":
        args.update(texture=np.ones((4, 4, c), np.float32), tex_coords=np.zeros((3, 2), np.float32),
                    tex_triangles=np.array([[0, 1, 2]], np.int32), h=h, w=w, bilinear=False,
                    image=np.zeros((h, w, c), np.float32))
    else:
        rows = 1 if name == "triangle_normals" else 3
        args.update(normals=np.zeros((rows, 3), np.float32))
    return args


def odd_variants(value):
    """(label, odd value) pairs for one argument: other types, 0-d and other ranks, other dtypes, byte order,
    memory layout, alignment and writeability, and out-of-range sizes."""
    if not isinstance(value, np.ndarray):
        if isinstance(value, bool):
            return []
        return [("negative", -1), ("huge", 1 << 40), ("float", 2.5), ("None", None), ("str", "5")]
    other = np.float64 if value.dtype == np.float32 else np.int64
    wide = np.zeros(value.shape[:-1] + (2 * value.shape[-1],), value.dtype)
    unaligned = np.frombuffer(bytearray(value.nbytes + 1), value.dtype, offset=1, count=value.size)
    read_only = value.copy()
    read_only.flags.writeable = False
    return [("0-d", np.array(0, value.dtype)), ("None", None), ("list", value.tolist()), ("1-D", value.ravel()),
            ("one more axis", value[None]), ("dtype", value.astype(other)), ("object", value.astype(object)),
            ("byte-swapped", value.astype(value.dtype.newbyteorder())), ("strided", wide[..., ::2]),
            ("unaligned", unaligned.reshape(value.shape)), ("read-only", read_only),
            ("huge empty", np.empty((1 << 31,) + value.shape[1:-1] + (0,), value.dtype)
             if value.ndim == 3 else np.empty((0, 0, 0), value.dtype))]


INPUTS = {"vertices", "triangles", "colors", "texture", "tex_coords", "tex_triangles"}


def bridge_problems(name):
    """Calls _mesh_core.<name> with each odd variant of each argument; returns the calls that did not raise a
    ValueError naming the argument (read-only arrays are fine where the kernel only reads)."""
    function = getattr(_mesh_core, name)
    good = good_bridge_arguments(name)
    problems = []
    if function(**good) != 0:
        problems.append("the valid call failed")
    for arg, value in good.items():
        for label, odd in odd_variants(value):
            if label == "read-only" and arg in INPUTS:
                if function(**dict(good, **{arg: odd})) != 0:
                    problems.append(f"{arg} read-only: the valid call failed")
                continue
            try:
                function(**dict(good, **{arg: odd}))
                problems.append(f"{arg} {label}: no error")
            except ValueError as err:
                if not re.search(rf"\b{arg}\b", str(err)):
                    problems.append(f"{arg} {label}: message does not name it: {err}")
            except Exception as err:  # noqa: BLE001 - any other type is the defect being looked for
                problems.append(f"{arg} {label}: {type(err).__name__}: {err}")
    return problems


def test_bridge_rejects_odd_arrays_naming_the_argument():
    child = run_child("bridge")
    assert child.returncode == 0, (child.returncode, child.stdout[-3000:], child.stderr[-2000:])
    assert child.stdout.split() == [f"{name}:ok" for name in BRIDGE_FUNCTIONS]


# ----------------------------------------------------------------------------- damaged mesh files
PLY_HEADER = ("ply\nformat {fmt} 1.0\nelement vertex {nver}\nproperty float x\nproperty float y\nproperty float z\n"
              "element face {ntri}\nproperty list uchar int vertex_indices\nend_header\n")
PLY_VERTICES = "0 0 0\n1 0 0\n0 1 0\n"


def write(path, text):
    path.write_bytes(text.encode("latin-1") if isinstance(text, str) else text)
    return path


@pytest.mark.parametrize("body, nver, ntri, match", [
    (PLY_VERTICES + "3 0 1 2\n", 3, 5, r":7: the header declares 5 'face' entries, the file holds 1$"),
    (PLY_VERTICES, 4, 0, r":3: the header declares 4 'vertex' entries, the file holds 3$"),
    ("0 0 0\n1 0\n0 1 0\n", 3, 0, r":11: 'vertex' entry has 2 values, expected 3$"),
    ("0 0 0\n1 0 x\n0 1 0\n", 3, 0, r":11: 'vertex' entry holds 'x', not a float$"),
    (PLY_VERTICES + "3 0 1 3\n", 3, 1, r":13: face refers to a vertex that does not exist \(3; 3 vertices\)$"),
    (PLY_VERTICES + "3 0 1\n", 3, 1, r":13: 'face' entry has 3 values, expected 4$"),
    (PLY_VERTICES + "2 0 1\n", 3, 1, r":13: face has 2 vertices, at least 3 needed$"),
    (PLY_VERTICES + "3 0 1 2.5\n", 3, 1, r":13: 'face' entry holds '2.5', not an int$"),
    (PLY_VERTICES + "3 0 1 2\n1 1 1\n", 3, 1, r":14: data after the last element the header declares$"),
    (PLY_VERTICES + "300 0 1 2\n", 3, 1, r":13: 'face' entry holds '300', outside \[0, 255\]$"),
], ids=["5 faces hold 1", "4 vertices hold 3", "short vertex", "not a float", "face index", "short face",
        "2-gon", "not an int", "trailing data", "uchar range"])
def test_read_ply_ascii_is_strict_and_names_file_and_line(tmp_path, body, nver, ntri, match):
    path = write(tmp_path / "damaged.ply", PLY_HEADER.format(fmt="ascii", nver=nver, ntri=ntri) + body)
    with pytest.raises(ValueError, match=r"^" + re.escape(str(path)) + match):
        io.read_ply(path)


@pytest.mark.parametrize("header, match", [
    (PLY_HEADER.replace("float z", "float16 z"), r":6: unknown PLY property type 'float16'$"),
    (PLY_HEADER.replace("element face {ntri}", "element face many"), r":7: malformed header line 'element face many'$"),
    (PLY_HEADER.replace("element face {ntri}", "element face -1"), r":7: malformed header line 'element face -1'$"),
    (PLY_HEADER.replace("format {fmt} 1.0\n", ""), r": PLY header has no format line$"),
    (PLY_HEADER.replace("property float z\n", ""), r":3: the 'vertex' element has no 'z' property$"),
    (PLY_HEADER.replace("list uchar int", "list float int"), r":8: list count type 'float' is not an integer type$"),
    (PLY_HEADER.replace("list uchar int", "list uchar double"),
     r":8: vertex_indices type 'double' is not an integer type$"),
], ids=["type", "count", "negative count", "no format", "no z", "float list count", "float indices"])
def test_read_ply_header_errors_name_file_and_line(tmp_path, header, match):
    path = write(tmp_path / "header.ply", header.format(fmt="ascii", nver=3, ntri=0) + PLY_VERTICES)
    with pytest.raises(ValueError, match=r"header\.ply" + match):
        io.read_ply(path)


def test_read_ply_binary_is_strict(tmp_path):
    path = io.write_ply(tmp_path / "b.ply", np.eye(3), [[0, 1, 2], [2, 1, 0]], binary=True)
    data = path.read_bytes()
    write(path, data[:-5])
    with pytest.raises(ValueError, match=r"b\.ply:7: the header declares 2 'face' entries, the file holds 1$"):
        io.read_ply(path)
    write(path, data + b"\n")
    with pytest.raises(ValueError, match=r"b\.ply: 1 bytes after the last element the header declares$"):
        io.read_ply(path)
    # face entry 1 refers to vertex 7: (n, i0, i1, i2) records of 13 bytes at the end
    write(path, data[:-4] + np.array([7], "<i4").tobytes())
    with pytest.raises(ValueError, match=r"b\.ply: 'face' entry 1 refers to a vertex that does not exist "
                                         r"\(7; 3 vertices\)$"):
        io.read_ply(path)


@pytest.mark.parametrize("text, match", [
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/1 2/5 3/1\n",
     r":5: face refers to a texture coordinate that does not exist \(5; 1 'vt' lines\)$"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/1 2/-5 3/1\n",
     r":5: face refers to a texture coordinate that does not exist \(-5; 1 'vt' lines\)$"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 0\n", r":4: face refers to a vertex that does not exist \(0; 3 'v' lines\)$"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\nf 1 2 3\n",
     r":4: face refers to a vertex that does not exist \(4; 3 'v' lines\)$"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n", r":4: face has 2 vertices, at least 3 needed$"),
    ("v 0 0 0\nv 1 0 0\nv 0 1\n",
     r":3: 'v' line has 2 numbers, expected 3 \(x y z\), 4 \(x y z w\) or 6 \(x y z r g b\)$"),
    ("v 0 0 0 1 1 1\nv 1 0 0\n", r":2: 'v' line has 3 numbers, the first 'v' line 6$"),
    ("v 0 0 0 1\nv 1 0 0 1 1 1\n", r":2: 'v' line has 6 numbers, the first 'v' line 4$"),
    ("v 0 0 0\nvt 0.5\n", r":2: 'vt' line has 1 numbers, expected 2 \(u v\) or 3 \(u v w\)$"),
    (b"v 0 0 0\nv 1 \xff 0\n", r":2: not UTF-8 text$"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/1 2 3/1\n", r":5: face gives texture coordinates for some corners only$"),
    ("v 0 0 0\nmtllib ../x.mtl\n", r":2: mtllib '\.\./x\.mtl' lies outside the OBJ's folder$"),
], ids=["vt index", "relative vt index", "index 0", "v index", "2 corners", "short v", "v count changes",
        "w then colours", "short vt", "not UTF-8", "some corners without vt", "mtllib outside"])
def test_read_obj_is_strict_and_names_file_and_line(tmp_path, text, match):
    path = write(tmp_path / "damaged.obj", text)
    with pytest.raises(ValueError, match=r"damaged\.obj" + match):
        io.read_obj(path)


# ----------------------------------------------------------------------------- mesh writers
V3, NAN_V3, T1 = np.eye(3), np.array([[0, 0, 0], [1, np.nan, 0], [0, 1, 0]]), [[0, 1, 2]]
TEX, UV3 = np.zeros((2, 2, 3), np.uint8), np.eye(3)[:, :2]


@pytest.mark.parametrize("write, match", [
    (lambda out: io.write_obj_with_colors(out / "m", NAN_V3, T1, V3), r"vertices must be finite, found NaN or inf"),
    (lambda out: io.write_ply(out / "m.ply", V3, T1, np.full((3, 3), np.inf)),
     r"colors must be finite, found NaN or inf"),
    (lambda out: io.write_obj_with_colors(out / "m", V3, T1, np.full((3, 3), "x")),
     r"colors must hold real numbers, got dtype <U1"),
    (lambda out: io.write_obj_with_texture(out / "m", V3, T1, TEX, UV3 * np.nan),
     r"uv_coords must be finite, found NaN or inf"),
    (lambda out: io.write_obj_with_texture(out / "m", V3, T1, np.full((2, 2, 3), np.nan), UV3),
     r"texture must be finite, found NaN or inf"),
    (lambda out: io.write_obj_with_texture(out / "m", V3, T1, np.full((2, 2, 3), 100, np.float32), UV3),
     r"float texture must be in \[0, 1\] \(got max 100\); pass uint8 or divide by 255"),
    (lambda out: io.write_obj_with_texture(out / "m", V3, T1, np.full((2, 2, 3), 100, np.int64), UV3),
     r"texture must be uint8 \(0\.\.255\) or float \(0\.\.1\), got dtype int64"),
    (lambda out: io.write_obj_with_texture(out / "m", V3, T1, np.full((2, 2, 3), 30000, np.uint16), UV3),
     r"texture must be uint8 \(0\.\.255\) or float \(0\.\.1\), got dtype uint16"),
    (lambda out: io.write_asc(out / "m", NAN_V3), r"vertices must be finite, found NaN or inf"),
    (lambda out: io.save_mesh_mat(out / "m.mat", NAN_V3, T1), r"vertices must be finite, found NaN or inf"),
], ids=["obj NaN vertex", "ply inf colours", "obj str colours", "NaN uv", "NaN texture", "0-255 float texture",
        "int64 texture", "uint16 texture", "asc NaN", "mat NaN"])
def test_mesh_writers_refuse_non_finite_or_non_numeric_arrays(tmp_path, write, match):
    with pytest.raises(ValueError, match=rf"^{match}$"):
        write(tmp_path)
    assert list(tmp_path.iterdir()) == []


def write_under_a_size_limit(folder):
    """Runs every mesh writer on a 30-vertex mesh into folder with files limited to 600 bytes (as a full disk: Python
    ignores SIGXFSZ, so the write fails with EFBIG); prints {file name: filename of the OSError raised}."""
    import resource

    rng = np.random.default_rng(0)
    v, colors, t = rng.normal(size=(30, 3)), rng.uniform(size=(30, 3)), np.arange(30).reshape(10, 3)
    writers = {  # t.obj's PNG and MTL fit under the limit, its OBJ does not
        "m.obj": lambda path: io.write_obj_with_colors(path, v, t, colors),
        "t.obj": lambda path: io.write_obj_with_texture(path, v, t, TEX, colors[:, :2]),
        "m.ply": lambda path: io.write_ply(path, v, t, colors, binary=True),
        "m.asc": lambda path: io.write_asc(path, v),
        "m.mat": lambda path: io.save_mesh_mat(path, v, t, colors),
    }
    resource.setrlimit(resource.RLIMIT_FSIZE, (600, resource.RLIM_INFINITY))
    refused = {}
    for name, write in writers.items():
        try:
            write(Path(folder) / name)
        except OSError as error:
            refused[name] = error.filename
    print(json.dumps(refused))


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_mesh_writers_leave_no_file_and_name_it_when_a_write_fails(tmp_path):
    child = run_child("write_under_a_size_limit", str(tmp_path))
    assert child.returncode == 0, child.stderr[-2000:]
    assert json.loads(child.stdout) == {name: str(tmp_path / name) for name in ("m.obj", "t.obj", "m.ply", "m.asc",
                                                                                  "m.mat")}
    assert list(tmp_path.iterdir()) == []  # no truncated file, no temporary, no PNG or MTL without their OBJ


def test_load_mesh_mat_checks_arrays_naming_file_and_key(tmp_path):
    path = tmp_path / "mesh.mat"
    good = {"vertices": np.eye(3), "triangles": np.array([[0, 1, 2]], np.int32), "colors": np.ones((3, 3))}
    for changes, match in [
        ({"triangles": np.array([[0, 1, 3]])}, r"mesh\.mat: triangles must hold indices into vertices in \[0, 3\)"),
        ({"vertices": np.zeros((3, 2))}, r"mesh\.mat: vertices must have shape \(nver, 3\), got \(3, 2\)"),
        ({"colors": np.ones((2, 3))}, r"mesh\.mat: colors must have shape \(3, 3\), got \(2, 3\)"),
    ]:
        sio.savemat(path, dict(good, **changes))
        with pytest.raises(ValueError, match=match):
            io.load_mesh_mat(path)
    sio.savemat(path, good)
    write(path, path.read_bytes()[:-7])
    with pytest.raises(ValueError, match=r"mesh\.mat: not a readable MATLAB"):
        io.load_mesh_mat(path)


# ----------------------------------------------------------------------------- BFM keypoints
@pytest.mark.parametrize("kpt", [np.arange(1, 11, dtype=np.float64)[None, :], np.zeros((0, 0)), np.zeros((1, 0))],
                         ids=["10", "empty 0x0", "empty 1x0"])
def test_load_BFM_requires_68_keypoints(tmp_path, kpt):
    path = tmp_path / "BFM.mat"
    load.save_BFM(path, make_model())
    record = sio.loadmat(path)["model"][0, 0]
    sio.savemat(path, {"model": dict({k: record[k] for k in record.dtype.names}, kpt_ind=kpt)})
    with pytest.raises(ValueError, match=rf"BFM\.mat: 'kpt_ind' has {kpt.size} entries, expected 68"):
        load.load_BFM(path)


def test_save_BFM_requires_68_keypoints(tmp_path):
    with pytest.raises(ValueError, match=r"out\.mat\): 'kpt_ind' has 10 entries, expected 68"):
        load.save_BFM(tmp_path / "out.mat", dict(make_model(), kpt_ind=np.arange(10, dtype=np.int32)))
    assert not (tmp_path / "out.mat").exists()


if __name__ == "__main__":
    if sys.argv[1] == "race":
        race()
    elif sys.argv[1] == "write_under_a_size_limit":
        write_under_a_size_limit(sys.argv[2])
    else:
        for function_name in BRIDGE_FUNCTIONS:
            print(f"{function_name}:" + ("\n  ".join(bridge_problems(function_name)) or "ok"), flush=True)
