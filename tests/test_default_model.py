"""Tests of the embedded default face model (face3d.morphable_model.default_model).

Budget: ~5 s unloaded, ~20 s on a busy 2-core machine (two model builds running concurrently: one
in memory, one through the cache in a subprocess).
"""
import errno
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
from _fixtures import fixtures_dir

from face3d.mesh.render import rasterize_triangles
from face3d.mesh.transform import angle2matrix_3ddfa, similarity_transform
from face3d.morphable_model import default_model as dm
from face3d.morphable_model import load

BFM_ROWS = 159645
REPO = Path(__file__).resolve().parents[1]


def _sha(arr):
    arr = np.ascontiguousarray(arr)
    header = (arr.dtype.str + str(arr.shape)).encode()
    return hashlib.sha256(header + arr.tobytes()).hexdigest()


@pytest.fixture(scope="module")
def built():
    return dm.build_default_model()


@pytest.fixture(scope="module")
def cache_job(tmp_path_factory):
    """The second build: default_model_dir() in a subprocess with a single BLAS thread, running
    while this process builds with its default threads (so it also checks thread independence)."""
    root = tmp_path_factory.mktemp("face3d_cache")
    env = dict(os.environ, FACE3D_CACHE_DIR=str(root), OPENBLAS_NUM_THREADS="1",
               OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), env.get("PYTHONPATH"))))
    code = "from face3d.morphable_model.default_model import default_model_dir as d; print(d())"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def cache_dir(cache_job):
    out, err = cache_job.communicate(timeout=300)
    assert cache_job.returncode == 0, err
    return Path(out.strip())


def _vertices(model):
    return model["shapeMU"].reshape(-1, 3).astype(np.float64)


def test_second_build_through_cache_is_bit_identical(cache_job, built, cache_dir):
    model, info, uv, pncc = built
    assert cache_dir.name == f"default_model_v{dm.MODEL_VERSION}"
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted(dm.FILE_NAMES)
    loaded = load.load_BFM(cache_dir / "BFM.mat")
    assert loaded.keys() == model.keys()
    for key in model:
        assert loaded[key].dtype == model[key].dtype, key
        assert _sha(loaded[key]) == _sha(model[key]), key
    info2 = load.load_BFM_info(cache_dir / "BFM_info.mat")
    for key in ("kpt_ind", "trimIndex", "symlist", "segbin", "segbin_tri", "tri_mouth",
                "uv_coords"):
        assert _sha(info2[key]) == _sha(info[key]), key
    assert [_sha(a) for a in info2["parallel"]] == [_sha(a) for a in info["parallel"]]
    assert _sha(load.load_uv_coords(cache_dir / "BFM_UV.mat")) == _sha(uv)
    assert _sha(load.load_pncc_code(cache_dir / "pncc_code.mat")) == _sha(pncc)


def test_cache_is_reused_without_rebuilding(cache_dir, monkeypatch):
    monkeypatch.setenv("FACE3D_CACHE_DIR", str(cache_dir.parent))

    def fail():
        raise AssertionError("the cached model was rebuilt")

    monkeypatch.setattr(dm, "build_default_model", fail)
    stamp = (cache_dir / "BFM.mat").stat().st_mtime_ns
    assert dm.default_model_dir() == cache_dir
    assert (cache_dir / "BFM.mat").stat().st_mtime_ns == stamp


def test_concurrent_first_use_keeps_the_winner(tmp_path, monkeypatch, cache_dir):
    """Another process finishing first: our rename fails, its folder is used, our temp goes."""
    monkeypatch.setenv("FACE3D_CACHE_DIR", str(tmp_path))
    final = tmp_path / f"default_model_v{dm.MODEL_VERSION}"

    def other_process_wins(folder):
        Path(folder).mkdir(parents=True, exist_ok=True)
        final.mkdir()
        for name in dm.FILE_NAMES:
            (final / name).write_bytes((cache_dir / name).read_bytes())
            (Path(folder) / name).write_bytes(b"ours")

    monkeypatch.setattr(dm, "write_default_model", other_process_wins)
    assert dm.default_model_dir() == final
    assert sorted(p.name for p in tmp_path.iterdir()) == [final.name]
    assert (final / "BFM.mat").read_bytes() == (cache_dir / "BFM.mat").read_bytes()


def test_killed_builds_temporaries_are_removed_once_the_cache_is_complete(tmp_path, monkeypatch):
    """A build killed mid-write leaves its temporary folder: the next call that builds the cache, or finds it
    complete, removes those untouched for over STALE_TEMPORARY_SECONDS (any model version), never a younger one,
    which may be a running build's (a fresh folder, or an old folder with a fresh file)."""
    monkeypatch.setenv("FACE3D_CACHE_DIR", str(tmp_path))
    final = tmp_path / f"default_model_v{dm.MODEL_VERSION}"
    prefix = f".{final.name}.tmp-"
    folders = {name: tmp_path / name for name in (prefix + "killed", ".default_model_v2.tmp-killed",
                                                  prefix + "running", prefix + "writing")}
    for folder in folders.values():
        folder.mkdir()
        (folder / "BFM.mat").write_bytes(b"partial")
    old = time.time() - dm.STALE_TEMPORARY_SECONDS - 60
    for name in (prefix + "killed", ".default_model_v2.tmp-killed"):
        os.utime(folders[name] / "BFM.mat", (old, old))
        os.utime(folders[name], (old, old))
    os.utime(folders[prefix + "writing"], (old, old))              # its BFM.mat is still being written

    def write_files(folder):
        for name in dm.FILE_NAMES:
            (Path(folder) / name).write_bytes(b"model")

    monkeypatch.setattr(dm, "write_default_model", write_files)
    assert dm.default_model_dir() == final
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([prefix + "running", prefix + "writing", final.name])
    for folder in (folders[prefix + "running"], folders[prefix + "writing"]):   # both builds were killed later
        os.utime(folder / "BFM.mat", (old, old))
        os.utime(folder, (old, old))
    monkeypatch.setattr(dm, "write_default_model", lambda folder: pytest.fail("the complete cache was rebuilt"))
    assert dm.default_model_dir() == final
    assert sorted(p.name for p in tmp_path.iterdir()) == [final.name]


def test_layout_shapes_and_dtypes(built):
    model, info, uv, pncc = built
    n3 = model["shapeMU"].shape[0]
    n = n3 // 3
    assert 8000 <= n <= 15000
    expected = {"shapeMU": (n3, 1), "shapePC": (n3, 199), "shapeEV": (199, 1), "expMU": (n3, 1),
                "expPC": (n3, 29), "expEV": (29, 1), "texMU": (n3, 1), "texPC": (n3, 199),
                "texEV": (199, 1)}
    for key, shape in expected.items():
        assert model[key].shape == shape and model[key].dtype == np.float32, key
    for key in ("tri", "tri_mouth"):
        assert model[key].ndim == 2 and model[key].shape[1] == 3 and model[key].dtype == np.int32
        assert model[key].min() >= 0 and model[key].max() < n
    assert model["kpt_ind"].shape == (68,) and model["kpt_ind"].dtype == np.int32
    assert len(set(model["kpt_ind"].tolist())) == 68
    assert not model["expMU"].any()
    for key in expected:  # quantised: no -0.0, whose sign would be arithmetic noise
        assert not np.signbit(model[key][model[key] == 0]).any(), key
    assert uv.shape == (n, 2) and uv.dtype == np.float32
    assert pncc.shape == (n, 3) and pncc.dtype == np.float32
    assert info["segbin"].shape == (4, n) and info["segbin"].dtype == bool
    assert info["segbin_tri"].shape == (4, model["tri"].shape[0])
    np.testing.assert_array_equal(info["trimIndex"], np.arange(n))
    np.testing.assert_array_equal(info["kpt_ind"], model["kpt_ind"])
    np.testing.assert_array_equal(info["tri_mouth"], model["tri_mouth"])


def test_bfm_scales(built):
    model = built[0]
    n3 = model["shapeMU"].shape[0]
    for key in ("shapePC", "texPC"):
        pc = model[key].astype(np.float64)
        np.testing.assert_allclose(np.linalg.norm(pc, axis=0), np.sqrt(n3 / BFM_ROWS), rtol=1e-5)
        gram = pc[:, :40].T @ pc  # leading columns against all: orthogonal to float32 precision
        gram[np.arange(40), np.arange(40)] = 0.0
        assert np.abs(gram).max() < 1e-5 * n3 / BFM_ROWS
    for key in ("shapeEV", "expEV", "texEV"):
        ev = model[key].ravel()
        assert np.all(ev > 0) and np.all(np.diff(ev) < 0), key
    v = _vertices(model)
    width = np.ptp(v[:, 0])
    assert 140000 < width < 160000
    assert 160000 < np.ptp(v[:, 1]) < 200000
    assert 10000 < v[:, 2].min() < 30000 and 120000 < v[:, 2].max() < 145000
    # A 300W-LP-sized identity (Shape_Para 3 std devs of the first PC) moves vertices by mm, not cm.
    sp = np.zeros((199, 1))
    sp[0] = 3 * model["shapeEV"][0]
    move = np.linalg.norm((model["shapePC"] @ sp).reshape(-1, 3), axis=1)
    assert 1000 < np.sqrt((move ** 2).mean()) < 15000
    tex = model["texMU"]
    assert tex.min() >= 0 and tex.max() <= 255


def _edges(tri):
    return np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])


def _normals(v, tri):
    return np.cross(v[tri[:, 1]] - v[tri[:, 0]], v[tri[:, 2]] - v[tri[:, 0]])


def _boundary_vertices(tri):
    """Vertices on an edge used by a single triangle (the mesh border)."""
    edges, counts = np.unique(np.sort(_edges(tri), axis=1), axis=0, return_counts=True)
    return np.unique(edges[counts == 1])


def test_triangulation_is_clockwise_seen_from_outside_as_the_bfm(built):
    """BFM / face3d winding: right-hand normals cross(v1 - v0, v2 - v0) point into the head."""
    model = built[0]
    v = _vertices(model)
    tri, mouth = model["tri"], model["tri_mouth"]
    full = np.concatenate([tri, mouth])
    directed = _edges(full)
    # consistent orientation: no directed edge twice (a flipped neighbour would repeat one)
    assert np.unique(directed, axis=0).shape[0] == directed.shape[0]
    # every undirected edge is used by at most two triangles
    undirected = np.unique(np.sort(directed, axis=1), axis=0, return_counts=True)[1]
    assert undirected.max() == 2
    # every vertex is used by the face triangles
    assert np.array_equal(np.unique(tri), np.arange(v.shape[0]))
    normals = _normals(v, tri)
    area = 0.5 * np.linalg.norm(normals, axis=1)
    assert area.min() > 0.05e6  # > 0.05 mm^2 in um^2: no degenerate triangles
    unit_z = normals[:, 2] / (2 * area)
    assert (unit_z < 0).mean() > 0.97
    # a mask wrapping round to the ears: its frontal projection is about half its area (hemisphere)
    assert (-normals[:, 2] * 0.5).sum() > 0.45 * area.sum()
    # mouth triangles close the slit with the same winding
    assert np.all(_normals(v, mouth)[:, 2] < 0)
    # the mouth slit's boundary edges are the face mesh's inner-lip edges, reversed
    edges_tri = {tuple(e) for e in _edges(tri).tolist()}
    mouth_edges = _edges(mouth)
    counts = {}
    for a, b in np.sort(mouth_edges, axis=1).tolist():
        counts[(a, b)] = counts.get((a, b), 0) + 1
    boundary = [tuple(e) for e in mouth_edges.tolist() if counts[tuple(sorted(e))] == 1]
    assert boundary and all((b, a) in edges_tri for a, b in boundary)


def test_mean_shape_is_mirror_symmetric(built):
    model, info = built[0], built[1]
    v = _vertices(model)
    left, right = info["symlist"]
    assert left.size > 0.45 * v.shape[0]
    np.testing.assert_array_equal(v[left, 0], -v[right, 0])
    np.testing.assert_array_equal(v[left, 1:], v[right, 1:])


def test_keypoints_are_anatomically_ordered(built):
    model = built[0]
    k = _vertices(model)[model["kpt_ind"]]
    x, y, z = k[:, 0], k[:, 1], k[:, 2]
    # jaw runs from the subject's right ear (image left, -x) down to the chin and up to +x
    assert np.all(np.diff(x[:17]) > 0)
    assert np.argmin(y[:17]) == 8
    # brows above the eyes, eyes above the nose tip, nose above the mouth, mouth above the chin
    assert y[17:27].min() > y[36:48].max()
    assert y[36:48].min() > y[30]
    assert y[31:36].min() > y[48:68].max()
    assert y[48:68].min() > y[8]
    # left (image) eye left of the right eye; corners outside the lids
    assert x[36] < x[37] < x[38] < x[39] < 0 < x[42] < x[43] < x[44] < x[45]
    assert y[37] > y[41] and y[38] > y[40] and y[43] > y[47] and y[44] > y[46]
    # nose tip is the nearest keypoint to the viewer; nose ridge on the midline going forward
    assert np.argmax(z) == 30
    assert np.all(np.diff(z[27:31]) > 0) and np.all(np.abs(x[27:31]) < 1000)
    # mouth: corners at the sides, upper lip above lower lip, inner lip gap small but open
    assert x[48] < x[60] < x[64] < x[54]
    assert y[51] > y[62] > y[66] > y[57]
    assert 0 < y[62] - y[66] < 3000
    # symmetry of the landmark set
    np.testing.assert_allclose(x[:8], -x[16:8:-1])
    np.testing.assert_allclose(x[36:40], -x[[45, 44, 43, 42]])


def test_jaw_keypoints_and_contour_lines_are_interior(built):
    """As in the BFM, the surface reaches beyond the jaw line (under-chin / neck, behind the side
    contour): no keypoint and no contour candidate lies on the mesh border."""
    model, info = built[0], built[1]
    border = _boundary_vertices(np.concatenate([model["tri"], model["tri_mouth"]]))
    assert border.size > 0
    assert not np.isin(model["kpt_ind"], border).any()
    lines = np.concatenate(load.contour_lines(info))
    assert not np.isin(lines, border).any()
    # the margin below the chin and behind the side contour, seen from the front, stays within
    # 2 mm of the jaw line: the jaw keypoints remain the frontal silhouette
    v = _vertices(model)
    kpt = v[model["kpt_ind"]]
    assert v[:, 1].min() > kpt[8, 1] - 2000.0
    assert v[:, 1].min() < kpt[8, 1] - 500.0
    assert np.abs(v[:, 0]).max() < np.abs(kpt[[0, 16], 0]).max() + 2000.0


def test_uv_coordinates_and_keypoint_pixels(built):
    model, info, uv, _ = built
    assert uv.min() >= 0 and uv.max() <= 1
    # the face fills most of the square
    assert np.ptp(uv[:, 0]) > 0.9 and np.ptp(uv[:, 1]) > 0.9
    kpt = model["kpt_ind"]
    # keypoints on pixel centres of the 256 UV map: PRNet's uv_kpt_ind formula is exact
    scaled = uv[kpt].astype(np.float64) * 255
    assert np.abs(scaled - np.round(scaled)).max() < 1e-4
    px = np.stack([np.round(scaled[:, 0]), np.round(255 - scaled[:, 1])], axis=1).astype(int)
    dist = np.linalg.norm(px[:, None] - px[None], axis=2) + np.eye(68) * 1e9
    assert dist.min() >= 2.0
    # UV triangles keep the orientation of the mesh (no fold-over, also after the keypoints'
    # snap to pixel centres): all signed areas negative, as the triangles seen from +z
    t = np.concatenate([model["tri"], model["tri_mouth"]])
    signed = ((uv[t[:, 1], 0] - uv[t[:, 0], 0]) * (uv[t[:, 2], 1] - uv[t[:, 0], 1])
              - (uv[t[:, 1], 1] - uv[t[:, 0], 1]) * (uv[t[:, 2], 0] - uv[t[:, 0], 0]))
    assert np.all(signed < 0)
    # every keypoint pixel is strictly inside the rasterized UV layout: its 3x3 block is covered
    pix = np.column_stack([uv[:, 0] * 255, 255 - uv[:, 1] * 255, np.zeros(len(uv))])
    _, triangle_buffer, _ = rasterize_triangles(pix.astype(np.float32), t, 256, 256)
    covered = np.asarray(triangle_buffer) >= 0
    for x, y in px:
        assert covered[y - 1:y + 2, x - 1:x + 2].all(), (x, y)
    # PRNet's "neck": covered UV rows below the chin keypoint, all labelled "rest of face"
    neck_rows = np.flatnonzero(covered.any(axis=1))
    assert neck_rows.max() - px[8, 1] >= 10
    labels = load.region_labels(info, len(uv))
    assert np.all(labels[uv[:, 1] * 255 < scaled[8, 1] - 0.5] == load.REGION_REST)


def test_regions_and_contour_lines(built):
    model, info = built[0], built[1]
    n = model["shapeMU"].shape[0] // 3
    labels = load.region_labels(info, n)
    kpt = model["kpt_ind"]
    assert np.all(labels[kpt[36:48]] == load.REGION_EYES)
    assert np.all(labels[kpt[17:27]] == load.REGION_EYES)  # the brows too, as in the BFM's BFM_info.mat
    assert np.all(labels[kpt[27:36]] == load.REGION_NOSE)
    assert np.all(labels[kpt[48:68]] == load.REGION_MOUTH)
    assert np.all(labels[kpt[:17]] == load.REGION_REST)
    assert np.array_equal(info["segbin"].sum(axis=0), np.ones(n))  # disjoint and complete
    assert np.array_equal(info["segbin_tri"].sum(axis=0), np.ones(model["tri"].shape[0]))
    v = _vertices(model)
    # the eyes region reaches over 3 mm past every brow and eye keypoint in the frontal plane, spans the glabella
    # between the brows' inner ends, and is about as large as the BFM's (13.5 % of its vertices)
    outside = v[labels != load.REGION_EYES, :2]
    for i in range(17, 48):
        if not 27 <= i < 36:
            assert np.linalg.norm(outside - v[kpt[i], :2], axis=1).min() > 3000.0, i
    midline = np.flatnonzero(np.abs(v[:, 0]) < 1.0)
    glabella = midline[np.argmin(np.abs(v[midline, 1] - v[kpt[[21, 22]], 1].mean()))]
    assert labels[glabella] == load.REGION_EYES
    assert 0.10 < np.mean(labels == load.REGION_EYES) < 0.17
    lines = load.contour_lines(info)
    for i, line in enumerate(lines):
        assert kpt[i] in line
        assert np.ptp(v[line, 1]) < 1000.0  # horizontal to 1 mm (the lips part near the mouth)
        if i != 8:
            assert line[0] == kpt[i]  # starts at the side edge and runs inwards
            assert np.all(np.diff(np.abs(v[line, 0])) < 0)


def test_pncc_code_is_normalised_mean_shape(built):
    model, _, _, pncc = built
    v = _vertices(model)
    np.testing.assert_array_equal(pncc.min(axis=0), [0, 0, 0])
    np.testing.assert_array_equal(pncc.max(axis=0), [1, 1, 1])
    expected = (v - v.min(axis=0)) / np.ptp(v, axis=0)
    np.testing.assert_allclose(pncc, expected, atol=1e-6)


def test_expressions_move_the_mouth_and_brows(built):
    model = built[0]
    kpt = model["kpt_ind"]

    def keypoints(component, value):
        ep = np.zeros((29, 1), dtype=np.float32)
        ep[component] = value
        return (model["shapeMU"] + model["expPC"] @ ep).reshape(-1, 3)[kpt].astype(np.float64)

    rest = _vertices(model)[kpt]
    opened = keypoints(0, 2.0)
    assert (opened[62, 1] - opened[66, 1]) - (rest[62, 1] - rest[66, 1]) > 5000  # > 5 mm wider
    assert opened[8, 1] < rest[8, 1] - 5000
    smile = keypoints(1, 2.0)
    assert smile[48, 1] > rest[48, 1] + 2000 and smile[54, 1] > rest[54, 1] + 2000
    raised = keypoints(2, 2.0)
    assert np.all(raised[17:27, 1] > rest[17:27, 1] + 2000)


def _fixture_samples():
    root = fixtures_dir()
    return sorted(root.glob("*/*.mat")) if root.is_dir() else []


@pytest.mark.parametrize("mat_path", _fixture_samples() or [None],
                         ids=lambda p: p.stem if p else "no-fixtures")
def test_real_pose_places_keypoints_on_the_face(built, mat_path):
    """Real 300W-LP / AFLW2000-3D Pose_Para with zero shape and expression: NME < 8%."""
    if mat_path is None:
        pytest.skip("fixtures not found (set FACE3D_FIXTURES)")
    model = built[0]
    mat = sio.loadmat(mat_path)
    pose = mat["Pose_Para"].ravel().astype(np.float64)
    height = 450
    projected = similarity_transform(_vertices(model)[model["kpt_ind"]], pose[6],
                                     angle2matrix_3ddfa(pose[:3]), pose[3:6])
    xy = np.column_stack((projected[:, 0], height - 1 - projected[:, 1]))
    truth = (mat["pt3d_68"][:2] if "pt3d_68" in mat else mat["pt2d"]).T.astype(np.float64)
    assert truth.shape == (68, 2)
    box = truth.max(axis=0) - truth.min(axis=0)
    nme = np.linalg.norm(xy - truth, axis=1).mean() / np.sqrt(box[0] * box[1])
    assert nme < 0.08, f"NME {nme:.3f}"


def test_incomplete_cache_folder_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("FACE3D_CACHE_DIR", str(tmp_path))
    final = tmp_path / f"default_model_v{dm.MODEL_VERSION}"
    final.mkdir()
    (final / "BFM.mat").write_bytes(b"partial")
    monkeypatch.setattr(dm, "write_default_model", lambda folder: None)
    with pytest.raises(OSError, match="lacks some of BFM.mat"):
        dm.default_model_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == [final.name]


def test_a_cache_folder_that_cannot_be_created_ends_the_command_with_one_line(tmp_path):
    """A file where the cache folder should be (as a read-only home): ``face3d generate`` ends with one line naming
    the folder, the embedded default model's cache and FACE3D_CACHE_DIR, status 2, and writes nothing."""
    (tmp_path / "file").write_bytes(b"")
    cache = tmp_path / "file" / "cache"
    env = dict(os.environ, FACE3D_CACHE_DIR=str(cache))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), env.get("PYTHONPATH"))))
    result = subprocess.run([sys.executable, "-m", "face3d", "generate", "--output", str(tmp_path / "out")], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"face3d generate: error: {cache}: the embedded default model's cache cannot be created there (Not a "
        f"directory); set FACE3D_CACHE_DIR to a writable folder"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_cache_folder_that_cannot_be_created_is_one_oserror(tmp_path, monkeypatch):
    """The library raises an OSError with the cause's errno and the folder as its filename; its message is the
    command's line."""
    (tmp_path / "file").write_bytes(b"")
    monkeypatch.setenv("FACE3D_CACHE_DIR", str(tmp_path / "file" / "cache"))
    with pytest.raises(OSError) as raised:
        dm.default_model_dir()
    assert (raised.value.errno, raised.value.filename) == (errno.ENOTDIR, str(tmp_path / "file" / "cache"))
    assert str(raised.value) == (f"{tmp_path / 'file' / 'cache'}: the embedded default model's cache cannot be "
                                 f"created there (Not a directory); set FACE3D_CACHE_DIR to a writable folder")
