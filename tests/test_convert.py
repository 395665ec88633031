"""Data/BFM/convert.py (generate.m in Python) on small synthetic raw files in the raw formats, and on raw files in
the real layout rebuilt from the published BFM_info.mat and BFM_UV.mat of the fixtures.

generate.m's repairs address fixed vertices of the 53215-vertex 3DDFA trimming (UV vertex 10916,
mouth vertex 6664), so the synthetic trimmed model has 11000 vertices, with few components.
"""

import errno
import importlib.util
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
from _fixtures import fixtures_dir

from face3d.morphable_model import MorphableModel
from face3d.morphable_model import load as L

REPO = Path(__file__).resolve().parents[1]
CONVERT = REPO / "Data" / "BFM" / "convert.py"
N_FULL, N_TRIM, N_TRI, N_MOUTH = 11300, 11000, 400, 107  # 3DDFA's Model_tri_mouth.mat holds 107 triangles
K_SHAPE, K_EXP, K_TEX = 4, 3, 2


def _import_convert():
    spec = importlib.util.spec_from_file_location("bfm_convert", CONVERT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


convert_mod = _import_convert()


def _cell(rows):
    cell = np.empty((len(rows), 1), dtype=object)
    for i, row in enumerate(rows):
        cell[i, 0] = np.asarray(row, dtype=np.float64).reshape(1, -1)
    return cell


def _mat_element(data_type: int, payload: bytes) -> bytes:
    """One MATLAB 5 data element: tag (data type, byte count), payload, zeros to the next 8-byte boundary."""
    return struct.pack("<II", data_type, len(payload)) + payload + bytes(-len(payload) % 8)


def save_like_matlab(path: Path, variables: dict) -> None:
    """Write ``variables`` as MATLAB's save does: a double array of whole numbers in 0..65535 is stored as uint8
    (all below 256) or uint16 with its class still double (scipy's savemat stores every double as double, and
    loadmat returns such an array in its storage type unless asked for mat_dtype); the rest as savemat writes it."""
    compact = {k: v for k, v in variables.items()
               if isinstance(v, np.ndarray) and v.dtype == np.float64 and v.ndim == 2 and v.size
               and np.all(v == np.round(v)) and v.min() >= 0 and v.max() <= 65535}
    sio.savemat(str(path), {k: v for k, v in variables.items() if k not in compact})
    with open(path, "ab") as f:
        for name, values in compact.items():
            storage, mi_type = (np.uint8, 2) if values.max() < 256 else (np.uint16, 4)  # miUINT8, miUINT16
            body = (_mat_element(6, struct.pack("<II", 6, 0))             # array flags (miUINT32): mxDOUBLE_CLASS
                    + _mat_element(5, struct.pack("<2i", *values.shape))  # dimensions (miINT32)
                    + _mat_element(1, name.encode())                      # name (miINT8)
                    + _mat_element(mi_type, values.astype(storage).tobytes(order="F")))  # column-major data
            f.write(_mat_element(14, body))  # miMATRIX


def write_raw(root: Path, seed=0) -> dict:
    """Write the nine raw files (variable names, shapes, classes, 1-based indices, cells) and
    return the raw arrays."""
    rng = np.random.default_rng(seed)
    r = {}
    # Basel 2009: single-precision model, double segment bins (53490x4 in the real file)
    r["shapeMU"] = rng.normal(0, 5e4, (3 * N_FULL, 1)).astype(np.float32)
    r["shapePC"] = rng.normal(0, 1, (3 * N_FULL, K_SHAPE)).astype(np.float32)
    r["shapeEV"] = rng.uniform(1e3, 1e5, (K_SHAPE, 1)).astype(np.float32)
    r["texMU"] = rng.uniform(0, 255, (3 * N_FULL, 1)).astype(np.float32)
    r["texPC"] = rng.normal(0, 1, (3 * N_FULL, K_TEX)).astype(np.float32)
    r["texEV"] = rng.uniform(1, 100, (K_TEX, 1)).astype(np.float32)
    r["tl"] = rng.integers(1, N_FULL + 1, (50, 3)).astype(np.float64)
    segbin = np.zeros((N_FULL, 4))
    segbin[np.arange(N_FULL), rng.integers(0, 4, N_FULL)] = 1.0
    r["segbin"] = segbin
    # 3DDFA model_info.mat
    r["trimIndex"] = np.sort(rng.permutation(N_FULL)[:N_TRIM] + 1).astype(np.float64)[:, None]
    r["keypoints"] = rng.integers(1, N_TRIM + 1, (1, 68)).astype(np.float64)
    r["symlist"] = rng.integers(1, N_TRIM + 1, (2, 30)).astype(np.float64)
    r["symlist_tri"] = rng.integers(1, N_TRI + 1, (2, 40)).astype(np.float64)
    r["segbin_tri"] = rng.integers(0, 2, (N_TRI, 4)).astype(np.float64)
    r["tri"] = rng.integers(1, N_TRIM + 1, (3, N_TRI)).astype(np.float64)
    # 3DDFA expression model, mouth triangles, contours, nose hole, parallel lines, PNCC
    r["mu_exp"] = rng.normal(0, 1e3, (3 * N_TRIM, 1))
    r["w_exp"] = rng.normal(0, 1, (3 * N_TRIM, K_EXP))
    r["sigma_exp"] = rng.uniform(1, 9, (K_EXP, 1))
    r["tri_mouth"] = rng.integers(1, N_TRIM + 1, (3, N_MOUTH)).astype(np.float64)
    for key, k in (("face_contour", 28), ("face_contour_line", 60), ("face_contour_front", 28),
                   ("face_contour_front_line", 60), ("nose_hole", 14), ("nose_hole_right", 7),
                   ("nose_hole_left", 7)):
        r[key] = rng.integers(1, N_TRIM + 1, (1, k)).astype(np.float64)
    r["parallel"] = [rng.integers(1, N_TRIM + 1, 3 + i).astype(np.float64) for i in range(17)]
    r["parallel_face_contour"] = [rng.integers(1, N_TRIM + 1, 4).astype(np.float64)
                                  for _ in range(28)]
    r["vertex_code"] = rng.uniform(0, 1, (3, N_TRIM))
    r["UV"] = rng.uniform(0, 1, (N_FULL, 2))

    for sub in ("raw", "3ddfa", "stn"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    save = lambda name, keys, **extra: sio.savemat(  # noqa: E731
        str(root / name), {**{k: r[k] for k in keys}, **extra})
    save("raw/01_MorphableModel.mat",
         ("shapeMU", "shapePC", "shapeEV", "texMU", "texPC", "texEV", "tl", "segbin"))
    save("3ddfa/model_info.mat", ("trimIndex", "keypoints", "symlist", "symlist_tri",
                                  "segbin_tri", "tri"))
    save("3ddfa/Model_Expression.mat", ("mu_exp", "w_exp", "sigma_exp"))
    save("3ddfa/Model_tri_mouth.mat", ("tri_mouth",))
    save("3ddfa/Model_face_contour_trimed.mat", ("face_contour", "face_contour_line",
                                                 "face_contour_front", "face_contour_front_line"))
    save("3ddfa/Modelplus_nose_hole.mat", ("nose_hole", "nose_hole_right", "nose_hole_left"))
    save("3ddfa/Modelplus_parallel.mat", (), parallel=_cell(r["parallel"]),
         parallel_face_contour=_cell(r["parallel_face_contour"]))
    save("3ddfa/vertex_code.mat", ("vertex_code",))
    save("stn/BFM_UV.mat", ("UV",))
    return r


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("bfm")
    raw = write_raw(root / "in")
    outputs = convert_mod.convert(root / "in", root / "Out", quiet=True)
    return raw, root / "in", outputs


def _trim0(raw):
    return raw["trimIndex"][:, 0].astype(np.int64) - 1


def test_bfm_mat_is_what_generate_m_writes(converted):
    raw, _, out = converted
    assert sio.whosmat(str(out["BFM.mat"])) == [("model", (1, 1), "struct")]
    rec = sio.loadmat(str(out["BFM.mat"]))["model"][0, 0]
    assert rec.dtype.names == L.MODEL_FIELDS  # generate.m's assignment order
    t = _trim0(raw)
    # trimmed vertex 7 is full vertex t[7]: rows 3*t[7] .. 3*t[7]+2, classes kept (single)
    assert rec["shapeMU"].dtype == np.float32 and rec["shapeMU"].shape == (3 * N_TRIM, 1)
    assert np.array_equal(rec["shapeMU"][21:24, 0], raw["shapeMU"][3 * t[7]:3 * t[7] + 3, 0])
    assert np.array_equal(rec["texPC"][-3:], raw["texPC"][3 * t[-1]:3 * t[-1] + 3])
    rows = (3 * t[:, None] + np.arange(3)).reshape(-1)
    assert np.array_equal(rec["shapePC"], raw["shapePC"][rows])
    assert np.array_equal(rec["shapeEV"], raw["shapeEV"])
    assert np.array_equal(rec["expMU"], raw["mu_exp"]) and np.array_equal(rec["expPC"], raw["w_exp"])
    assert np.array_equal(rec["tri"], raw["tri"]) and np.array_equal(rec["kpt_ind"], raw["keypoints"])
    # tri_mouth: all of 3DDFA's triangles (generate.m's setdiff removes none) + 7 inner ones (114 in the real file)
    tm = rec["tri_mouth"]
    assert tm.shape == (3, N_MOUTH + 7)
    assert np.array_equal(tm[:, :N_MOUTH], raw["tri_mouth"])
    assert tm[:, N_MOUTH].tolist() == [6420, 6542, 6664]
    assert tm[:, -1].tolist() == [6168, 6295, 6039]


def test_bfm_info_uv_pncc_are_what_generate_m_writes(converted):
    raw, root, out = converted
    rec = sio.loadmat(str(out["BFM_info.mat"]))["model_info"][0, 0]
    assert rec.dtype.names == L.INFO_FIELDS
    t = _trim0(raw)
    assert np.array_equal(rec["segbin"], raw["segbin"][t].T)  # (4, n) rows nose eyes mouth rest
    assert np.array_equal(rec["segbin_tri"], raw["segbin_tri"].T)
    for key in ("trimIndex", "symlist", "symlist_tri", "face_contour_line", "nose_hole_left"):
        assert np.array_equal(rec[key], raw[key]), key
    assert rec["parallel"].shape == (17, 1) and rec["parallel"].dtype == object
    assert np.array_equal(rec["parallel"][16, 0][0], raw["parallel"][16])
    assert np.array_equal(rec["tri_mouth"], sio.loadmat(str(out["BFM.mat"]))["model"][0, 0]["tri_mouth"])

    uv_trim = raw["UV"][t]
    uv = sio.loadmat(str(out["BFM_UV.mat"]))["UV"]
    assert uv.shape == (N_TRIM, 2) and np.array_equal(uv, rec["uv_coords"])
    # the three repaired vertices (1-based 10032, 10155, 10280) take their neighbours' mean
    assert np.allclose(uv[10031], uv_trim[[10032, 10157]].mean(0), rtol=0, atol=1e-15)
    assert np.allclose(uv[10154], uv_trim[[10533, 10156, 10660]].mean(0), rtol=0, atol=1e-15)
    assert np.allclose(uv[10279], uv_trim[[10915, 10285]].mean(0), rtol=0, atol=1e-15)
    keep = np.setdiff1d(np.arange(N_TRIM), [10031, 10154, 10279])
    assert np.array_equal(uv[keep], uv_trim[keep])
    assert not np.allclose(uv[10031], uv_trim[10031])
    # pncc_code.mat is 3DDFA's vertex_code.mat, byte for byte
    assert out["pncc_code.mat"].read_bytes() == (root / "3ddfa" / "vertex_code.mat").read_bytes()


def test_loaders_read_converted_files(converted):
    raw, _, out = converted
    t = _trim0(raw)
    model = L.load_BFM(out["BFM.mat"])
    expect_mu = (raw["shapeMU"][(3 * t[:, None] + np.arange(3)).reshape(-1)].astype(np.float64)
                 + raw["mu_exp"]).astype(np.float32)
    assert model["shapeMU"].dtype == np.float32 and np.array_equal(model["shapeMU"], expect_mu)
    assert model["tri"].shape == (N_TRI, 3) and model["tri"].dtype == np.int32
    assert np.array_equal(model["tri"], raw["tri"].T - 1)
    assert np.array_equal(model["kpt_ind"], raw["keypoints"][0] - 1)
    assert model["tri_mouth"].shape == (N_MOUTH + 7, 3)
    assert model["tri_mouth"][-1].tolist() == [6167, 6294, 6038]

    info = L.load_BFM_info(out["BFM_info.mat"])
    assert np.array_equal(info["trimIndex"], t)
    assert np.array_equal(info["symlist"], raw["symlist"] - 1)
    labels = L.region_labels(info, N_TRIM)
    seg = raw["segbin"][t]  # columns nose, eyes, mouth, rest
    assert np.array_equal(labels, np.select([seg[:, 2] > 0, seg[:, 0] > 0, seg[:, 1] > 0],
                                            [3, 2, 1], 0))
    lines = L.contour_lines(info)
    assert len(lines) == 17 and all(ln.dtype == np.int32 for ln in lines)
    assert np.array_equal(lines[5], raw["parallel"][5] - 1)
    assert len(info["parallel_face_contour"]) == 28

    uv = L.load_uv_coords(out["BFM_UV.mat"])
    assert uv.shape == (N_TRIM, 2) and uv.dtype == np.float32
    assert np.array_equal(uv, info["uv_coords"])
    code = L.load_pncc_code(out["pncc_code.mat"])
    assert np.array_equal(code, raw["vertex_code"].T.astype(np.float32))


def test_face3d_original_loader_reads_converted_bfm(converted):
    raw, _, out = converted
    model = sio.loadmat(str(out["BFM.mat"]))["model"][0, 0]
    shape_mu = (model["shapeMU"] + model["expMU"]).astype(np.float32)
    tri = model["tri"].T.copy(order="C").astype(np.int32) - 1
    kpt = (np.squeeze(model["kpt_ind"]) - 1).astype(np.int32)
    ours = L.load_BFM(out["BFM.mat"])
    assert np.array_equal(shape_mu, ours["shapeMU"])
    assert np.array_equal(tri, ours["tri"]) and np.array_equal(kpt, ours["kpt_ind"])


def test_segbin_taken_from_model_info_when_present(tmp_path, converted):
    raw, src, _ = converted
    shutil.copytree(src, tmp_path / "in")
    info = sio.loadmat(str(tmp_path / "in/3ddfa/model_info.mat"))
    flipped = raw["segbin"][:, ::-1].copy()
    sio.savemat(str(tmp_path / "in/3ddfa/model_info.mat"),
                {**{k: v for k, v in info.items() if not k.startswith("__")}, "segbin": flipped})
    out = convert_mod.convert(tmp_path / "in", tmp_path / "Out", quiet=True)
    rec = sio.loadmat(str(out["BFM_info.mat"]))["model_info"][0, 0]
    assert np.array_equal(rec["segbin"], flipped[_trim0(raw)].T)  # MATLAB's later load wins


CONTOUR_KEYS = ("face_contour", "face_contour_line", "face_contour_front", "face_contour_front_line")
NOSE_KEYS = ("nose_hole", "nose_hole_right", "nose_hole_left")


def test_doubles_stored_compactly_stay_double(tmp_path, converted):
    """MATLAB's save stores 3DDFA's index arrays (class double, whole numbers) as uint16 or uint8: they are written
    back as double, the class generate.m's outputs have (as uint16, generate.m's 3*trimIndex-2 would wrap)."""
    raw, src, _ = converted
    shutil.copytree(src, tmp_path / "in")
    files = {"model_info.mat": ("trimIndex", "keypoints", "symlist", "symlist_tri", "segbin_tri", "tri"),
             "Model_tri_mouth.mat": ("tri_mouth",), "Model_face_contour_trimed.mat": CONTOUR_KEYS,
             "Modelplus_nose_hole.mat": NOSE_KEYS}
    for name, keys in files.items():
        save_like_matlab(tmp_path / "in/3ddfa" / name, {k: raw[k] for k in keys})
    stored = tmp_path / "in/3ddfa/model_info.mat"
    assert ("trimIndex", (N_TRIM, 1), "double") in sio.whosmat(str(stored))
    assert sio.loadmat(str(stored))["trimIndex"].dtype == np.uint16  # the storage type, as MATLAB writes it
    assert sio.loadmat(str(stored))["segbin_tri"].dtype == np.uint8

    out = convert_mod.convert(tmp_path / "in", tmp_path / "Out", quiet=True)
    model = sio.loadmat(str(out["BFM.mat"]))["model"][0, 0]
    info = sio.loadmat(str(out["BFM_info.mat"]))["model_info"][0, 0]
    expected = [(model, "tri", raw["tri"]), (model, "kpt_ind", raw["keypoints"]),
                (info, "kpt_ind", raw["keypoints"]), (info, "segbin_tri", raw["segbin_tri"].T)]
    expected += [(info, key, raw[key]) for key in ("trimIndex", "symlist", "symlist_tri") + CONTOUR_KEYS + NOSE_KEYS]
    for rec, key, values in expected:
        assert rec[key].dtype == np.float64 and np.array_equal(rec[key], values), key
    for rec in (model, info):
        assert rec["tri_mouth"].dtype == np.float64 and np.array_equal(rec["tri_mouth"][:, :N_MOUTH], raw["tri_mouth"])


def test_logical_segbin_tri_stays_logical(tmp_path, converted):
    """3DDFA's segbin_tri is a MATLAB logical (stored as uint8 with a logical flag); the published BFM_info.mat has it
    logical too."""
    raw, src, _ = converted
    shutil.copytree(src, tmp_path / "in")
    keys = ("trimIndex", "keypoints", "symlist", "symlist_tri", "tri")
    logical = raw["segbin_tri"].astype(bool)  # savemat writes a bool array as a MATLAB logical
    sio.savemat(str(tmp_path / "in/3ddfa/model_info.mat"), {**{k: raw[k] for k in keys}, "segbin_tri": logical})
    out = convert_mod.convert(tmp_path / "in", tmp_path / "Out", quiet=True)
    segbin_tri = sio.loadmat(str(out["BFM_info.mat"]), mat_dtype=True)["model_info"][0, 0]["segbin_tri"]
    assert segbin_tri.dtype == np.bool_ and np.array_equal(segbin_tri, logical.T)


REAL_BFM = fixtures_dir() / "BFM" / "Out"  # face3d's published BFM_info.mat and BFM_UV.mat


@pytest.mark.skipif(not ((REAL_BFM / "BFM_info.mat").is_file() and (REAL_BFM / "BFM_UV.mat").is_file()),
                    reason="no published BFM_info.mat / BFM_UV.mat in the fixtures")
def test_real_layout_gives_the_published_files(tmp_path):
    """Raw files in the real layout rebuilt from the published BFM_info.mat and BFM_UV.mat (3DDFA's real indices,
    saved as MATLAB saves them; Basel's 53490 vertices with 2 random components, random triangles): the converted
    BFM_info.mat and BFM_UV.mat equal the published files field by field, in value, shape and MATLAB class."""
    published = sio.loadmat(str(REAL_BFM / "BFM_info.mat"), mat_dtype=True)["model_info"][0, 0]
    uv_published = sio.loadmat(str(REAL_BFM / "BFM_UV.mat"), mat_dtype=True)["UV"]
    n_full, k = 53490, 2
    trim = published["trimIndex"]
    t0 = trim[:, 0].astype(np.int64) - 1
    nver, ntri = t0.size, published["segbin_tri"].shape[1]
    rng = np.random.default_rng(1)
    raw = tmp_path / "in"
    for sub in ("raw", "3ddfa", "stn"):
        (raw / sub).mkdir(parents=True)
    basel = {key: rng.normal(0, 1, shape).astype(np.float32)
             for key, shape in (("shapeMU", (3 * n_full, 1)), ("shapePC", (3 * n_full, k)), ("shapeEV", (k, 1)),
                                ("texMU", (3 * n_full, 1)), ("texPC", (3 * n_full, k)), ("texEV", (k, 1)))}
    basel["shapeMU"] *= np.float32(5e4)  # a mean face of the BFM's size in micrometres, which the loader checks
    segbin = np.zeros((n_full, 4), np.uint8)
    segbin[t0] = published["segbin"].T
    sio.savemat(str(raw / "raw/01_MorphableModel.mat"), {**basel, "segbin": segbin})
    tri = rng.integers(1, nver + 1, (3, ntri)).astype(np.float64)
    save_like_matlab(raw / "3ddfa/model_info.mat", {
        "trimIndex": trim, "keypoints": published["kpt_ind"], "symlist": published["symlist"],
        "symlist_tri": published["symlist_tri"], "segbin_tri": published["segbin_tri"].T.copy(), "tri": tri})
    save_like_matlab(raw / "3ddfa/Model_Expression.mat", {
        "mu_exp": rng.normal(0, 1e3, (3 * nver, 1)), "w_exp": rng.normal(0, 1, (3 * nver, k)),
        "sigma_exp": np.ones((k, 1))})
    tri_mouth_3ddfa = published["tri_mouth"][:, :-7].copy()  # the published 114 less generate.m's 7
    save_like_matlab(raw / "3ddfa/Model_tri_mouth.mat", {"tri_mouth": tri_mouth_3ddfa})
    save_like_matlab(raw / "3ddfa/Model_face_contour_trimed.mat", {key: published[key] for key in CONTOUR_KEYS})
    save_like_matlab(raw / "3ddfa/Modelplus_nose_hole.mat", {key: published[key] for key in NOSE_KEYS})
    sio.savemat(str(raw / "3ddfa/Modelplus_parallel.mat"),
                {key: published[key] for key in ("parallel", "parallel_face_contour")})
    sio.savemat(str(raw / "3ddfa/vertex_code.mat"), {"vertex_code": rng.uniform(0, 1, (3, nver))})
    uv = rng.uniform(5, 6, (n_full, 2))  # the untrimmed vertices' UVs, never read
    uv[t0] = uv_published
    uv[t0[[10031, 10154, 10279]]] = 7.0  # 3DMMasSTN's three broken UVs, which generate.m repairs
    sio.savemat(str(raw / "stn/BFM_UV.mat"), {"UV": uv})
    assert tri_mouth_3ddfa.shape == (3, 107)
    assert sio.loadmat(str(raw / "3ddfa/model_info.mat"))["trimIndex"].dtype == np.uint16  # 3*t-2 would wrap

    out = convert_mod.convert(raw, tmp_path / "Out", quiet=True)
    info = sio.loadmat(str(out["BFM_info.mat"]), mat_dtype=True)["model_info"][0, 0]
    assert info.dtype.names == published.dtype.names
    for key in published.dtype.names:
        ours, theirs = info[key], published[key]
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, key
        for a, b in zip(ours.ravel(), theirs.ravel()) if theirs.dtype == object else [(ours, theirs)]:
            assert a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b), key
    assert sio.whosmat(str(out["BFM_UV.mat"])) == sio.whosmat(str(REAL_BFM / "BFM_UV.mat"))
    uv_ours = sio.loadmat(str(out["BFM_UV.mat"]), mat_dtype=True)["UV"]
    assert uv_ours.dtype == uv_published.dtype and np.array_equal(uv_ours, uv_published)

    # BFM.mat: the Basel rows [3t-2 3t-1 3t] of each kept vertex t, with t as plain scipy reads the output
    model = sio.loadmat(str(out["BFM.mat"]))["model"][0, 0]
    t = sio.loadmat(str(out["BFM_info.mat"]))["model_info"][0, 0]["trimIndex"]
    rows = (3 * t - [2, 1, 0]).reshape(-1).astype(np.int64) - 1
    for key in ("shapeMU", "shapePC", "texMU", "texPC"):
        assert model[key].dtype == np.float32 and np.array_equal(model[key], basel[key][rows]), key
    assert model["tri"].dtype == np.float64 and np.array_equal(model["tri"], tri)
    assert np.array_equal(model["tri_mouth"], published["tri_mouth"])
    bfm = MorphableModel(str(out["BFM.mat"]))
    assert (bfm.nver, bfm.ntri, len(bfm.contour_lines)) == (nver, ntri, 17)


def _broken(tmp_path, src, name, **variables):
    """Copy the raw tree and rewrite ``name`` with ``variables`` (delete=True removes it)."""
    dst = tmp_path / "in"
    shutil.copytree(src, dst)
    if variables.get("delete"):
        (dst / name).unlink()
    else:
        sio.savemat(str(dst / name), variables)
    return dst


@pytest.mark.parametrize("name, variables, pattern", [
    ("3ddfa/Modelplus_nose_hole.mat", {"delete": True},
     r"missing raw input.*Modelplus_nose_hole\.mat"),
    ("3ddfa/Model_Expression.mat", {"mu_exp": np.zeros((3 * N_TRIM, 1)),
                                    "sigma_exp": np.ones((K_EXP, 1))},
     r"Model_Expression\.mat.*'w_exp'"),
    ("3ddfa/Model_Expression.mat", {"mu_exp": np.zeros((3 * N_TRIM + 3, 1)),
                                    "w_exp": np.zeros((3 * N_TRIM, K_EXP)),
                                    "sigma_exp": np.ones((K_EXP, 1))},
     r"Model_Expression\.mat.*'mu_exp'.*shape"),
    ("3ddfa/Model_tri_mouth.mat", {"tri_mouth": np.full((3, 5), N_TRIM + 1.0)},
     r"Model_tri_mouth\.mat.*'tri_mouth'.*out of range"),
    ("3ddfa/Modelplus_parallel.mat", {"parallel": np.ones((17, 1)),
                                      "parallel_face_contour": _cell([[1.0]] * 28)},
     r"Modelplus_parallel\.mat.*'parallel'.*cell"),
    ("3ddfa/Modelplus_parallel.mat", {"parallel": _cell([[1.0]] * 16),
                                      "parallel_face_contour": _cell([[1.0]] * 28)},
     r"Modelplus_parallel\.mat.*'parallel'.*17"),
    ("3ddfa/vertex_code.mat", {"vertex_code": np.zeros((N_TRIM, 3))},
     r"vertex_code\.mat.*'vertex_code'"),
    ("stn/BFM_UV.mat", {"UV": np.zeros((N_TRIM, 2))}, r"BFM_UV\.mat.*'UV'.*shape"),
    ("raw/01_MorphableModel.mat", {"shapeMU": np.zeros((3 * N_FULL, 1))},
     r"01_MorphableModel\.mat.*'shapePC'"),
])
def test_convert_errors_name_file_and_variable(tmp_path, converted, name, variables, pattern):
    _, src, _ = converted
    raw_dir = _broken(tmp_path, src, name, **variables)
    error = FileNotFoundError if variables.get("delete") else ValueError
    with pytest.raises(error, match=pattern):
        convert_mod.convert(raw_dir, tmp_path / "Out", quiet=True)
    assert not (tmp_path / "Out" / "BFM.mat").exists()


def test_trimindex_out_of_range_is_reported(tmp_path, converted):
    raw, src, _ = converted
    info = {k: raw[k] for k in ("keypoints", "symlist", "symlist_tri", "segbin_tri", "tri")}
    trim = raw["trimIndex"].copy()
    trim[-1, 0] = N_FULL + 1
    raw_dir = _broken(tmp_path, src, "3ddfa/model_info.mat", trimIndex=trim, **info)
    with pytest.raises(ValueError, match=r"model_info\.mat.*'trimIndex'.*out of range.*1\.\.11300"):
        convert_mod.convert(raw_dir, tmp_path / "Out", quiet=True)


def test_symlist_past_the_trimmed_model_is_reported(tmp_path, converted):
    raw, src, _ = converted
    info = {k: raw[k] for k in ("trimIndex", "keypoints", "symlist_tri", "segbin_tri", "tri")}
    symlist = raw["symlist"].copy()
    symlist[1, 0] = N_TRIM + 1
    raw_dir = _broken(tmp_path, src, "3ddfa/model_info.mat", symlist=symlist, **info)
    with pytest.raises(ValueError, match=r"model_info\.mat.*'symlist'.*out of range.*1\.\.11000"):
        convert_mod.convert(raw_dir, tmp_path / "Out", quiet=True)


def test_cli_help_progress_and_error_exit(tmp_path, converted, capsys):
    _, src, _ = converted
    helped = subprocess.run([sys.executable, str(CONVERT), "--help"], capture_output=True,
                            text=True, cwd=tmp_path, timeout=60)
    assert helped.returncode == 0
    assert "--raw" in helped.stdout and "--out" in helped.stdout
    assert "3ddfa/Modelplus_parallel.mat" in helped.stdout
    ran = subprocess.run([sys.executable, str(CONVERT), "--raw", str(src), "--out",
                          str(tmp_path / "Out")], capture_output=True, text=True, cwd=tmp_path,
                         timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert "[1/7] read" in ran.stderr and "[7/7] wrote" in ran.stderr
    assert sorted(p.name for p in (tmp_path / "Out").iterdir()) == sorted(convert_mod.OUT_FILES)
    assert convert_mod.main(["--raw", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: missing raw input") and "01_MorphableModel.mat" in err


def test_segbin_missing_everywhere_is_reported(tmp_path, converted):
    raw, src, _ = converted
    keys = ("shapeMU", "shapePC", "shapeEV", "texMU", "texPC", "texEV", "tl")
    raw_dir = _broken(tmp_path, src, "raw/01_MorphableModel.mat", **{k: raw[k] for k in keys})
    with pytest.raises(ValueError, match=r"01_MorphableModel\.mat.*'segbin'.*model_info\.mat"):
        convert_mod.convert(raw_dir, tmp_path / "Out", quiet=True)


def _older_outputs(folder):
    """The four output names in ``folder``, each holding ``b"older <name>"`` (a previous conversion's)."""
    folder.mkdir(parents=True)
    for name in convert_mod.OUT_FILES:
        (folder / name).write_bytes(f"older {name}".encode())


def _assert_older_outputs_only(folder):
    assert sorted(p.name for p in folder.iterdir()) == sorted(convert_mod.OUT_FILES)  # no staging folder left
    for name in convert_mod.OUT_FILES:
        assert (folder / name).read_bytes() == f"older {name}".encode()


def test_failed_write_leaves_the_older_outputs(tmp_path, converted, monkeypatch, capsys):
    """The four files are moved in together: a failure on the last leaves the older set whole, not a new BFM.mat
    beside older ones; the error names the output, not the staging folder."""
    _, src, _ = converted
    out = tmp_path / "Out"
    _older_outputs(out)

    def full_disk(source, target):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(convert_mod.shutil, "copyfile", full_disk)
    with pytest.raises(OSError) as info:
        convert_mod.convert(src, out, quiet=True)
    assert info.value.filename == str(out / "pncc_code.mat")
    _assert_older_outputs_only(out)
    assert convert_mod.main(["--raw", str(src), "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: {out / 'pncc_code.mat'}: No space left on device"]
    _assert_older_outputs_only(out)


def test_write_refused_by_the_system_is_one_line(tmp_path, converted):
    """A write past the process's file size limit (as on a full disk): one line naming the file, status 2, no
    truncated BFM.mat under its final name."""
    resource = pytest.importorskip("resource")
    _, src, _ = converted
    out = tmp_path / "Out"
    _older_outputs(out)

    def limit_file_size():  # BFM.mat takes about 2 MB here; Python ignores SIGXFSZ: the write fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))

    ran = subprocess.run([sys.executable, str(CONVERT), "--raw", str(src), "--out", str(out), "--quiet"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120, preexec_fn=limit_file_size)
    assert ran.returncode == 2 and ran.stderr.splitlines() == [f"error: {out / 'BFM.mat'}: File too large"], ran.stderr
    _assert_older_outputs_only(out)
