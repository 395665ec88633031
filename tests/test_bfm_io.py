"""face3d.morphable_model.load: loaders, writers (exact inverses), face3d compatibility, errors."""

import re

import numpy as np
import pytest
import scipy.io as sio
from _fixtures import fixtures_dir

from face3d.morphable_model import load as L

NVER, NTRI, NMOUTH = 40, 60, 5
K_SHAPE, K_EXP, K_TEX = 6, 3, 4


def make_model(seed=0):
    """A small model in the loaded form (float32, 0-based int32, tri (ntri,3))."""
    rng = np.random.default_rng(seed)
    n3 = 3 * NVER
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    return {
        "shapeMU": f32(rng.normal(0, 5e4, (n3, 1))), "shapePC": f32(rng.normal(0, 1, (n3, K_SHAPE))),
        "shapeEV": f32(rng.uniform(1e3, 1e5, (K_SHAPE, 1))),
        "expMU": f32(rng.normal(0, 1e3, (n3, 1))), "expPC": f32(rng.normal(0, 1, (n3, K_EXP))),
        "expEV": f32(rng.uniform(1, 10, (K_EXP, 1))),
        "texMU": f32(rng.uniform(0, 255, (n3, 1))), "texPC": f32(rng.normal(0, 1, (n3, K_TEX))),
        "texEV": f32(rng.uniform(1, 100, (K_TEX, 1))),
        "tri": rng.integers(0, NVER, (NTRI, 3)).astype(np.int32),
        "tri_mouth": rng.integers(0, NVER, (NMOUTH, 3)).astype(np.int32),
        "kpt_ind": rng.integers(0, NVER, L.N_KEYPOINTS).astype(np.int32),
    }


def make_info(seed=1):
    """A model_info in the loaded form with every field kind load_BFM_info converts."""
    rng = np.random.default_rng(seed)
    segbin = np.zeros((4, NVER), dtype=bool)
    segbin[rng.integers(0, 4, NVER), np.arange(NVER)] = True  # one bin per vertex, as Basel's
    return {
        "kpt_ind": rng.permutation(NVER)[:30].astype(np.int32),
        "trimIndex": np.sort(rng.permutation(3 * NVER)[:NVER]).astype(np.int32),
        "symlist": rng.integers(0, NVER, (2, 7)).astype(np.int32),
        "symlist_tri": rng.integers(0, NTRI, (2, 9)).astype(np.int32),
        "segbin": segbin,
        "segbin_tri": rng.integers(0, 2, (4, NTRI)).astype(bool),
        "tri_mouth": rng.integers(0, NVER, (NMOUTH, 3)).astype(np.int32),
        "face_contour": rng.integers(0, NVER, 28).astype(np.int32),
        "face_contour_line": rng.integers(0, NVER, 50).astype(np.int32),
        "face_contour_front": rng.integers(0, NVER, 28).astype(np.int32),
        "face_contour_front_line": rng.integers(0, NVER, 50).astype(np.int32),
        "nose_hole": rng.integers(0, NVER, 14).astype(np.int32),
        "nose_hole_right": rng.integers(0, NVER, 7).astype(np.int32),
        "nose_hole_left": rng.integers(0, NVER, 7).astype(np.int32),
        "parallel": [rng.integers(0, NVER, 1 + i % 5).astype(np.int32) for i in range(17)],
        "parallel_face_contour": [rng.integers(0, NVER, 2 + i % 3).astype(np.int32)
                                  for i in range(28)],
        "uv_coords": rng.uniform(0, 1, (NVER, 2)).astype(np.float32),
    }


def assert_same(a, b, key):
    if isinstance(a, list):
        assert len(a) == len(b), key
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{key}[{i}]")
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype, (key, a.dtype, b.dtype)
    assert a.shape == b.shape, (key, a.shape, b.shape)
    assert np.array_equal(a, b), key


def face3d_original_load_BFM(path):
    """face3d's own loader recipe (yfeng95/face3d face3d/morphable_model/load.py), for reference."""
    model = sio.loadmat(str(path))["model"][0, 0]
    return {
        "shapeMU": (model["shapeMU"] + model["expMU"]).astype(np.float32),
        "shapePC": model["shapePC"].astype(np.float32), "expPC": model["expPC"].astype(np.float32),
        "texMU": model["texMU"], "tri": model["tri"].T.copy(order="C").astype(np.int32) - 1,
        "tri_mouth": model["tri_mouth"].T.copy(order="C").astype(np.int32) - 1,
        "kpt_ind": (np.squeeze(model["kpt_ind"]) - 1).astype(np.int32),
    }


# ----------------------------------------------------------------------------- BFM.mat
def test_save_load_BFM_round_trip_exact(tmp_path):
    model = make_model()
    L.save_BFM(tmp_path / "BFM.mat", model)
    loaded = L.load_BFM(tmp_path / "BFM.mat")
    assert sorted(loaded) == sorted(model)
    for key in model:
        assert_same(loaded[key], model[key], key)
        assert loaded[key].flags.c_contiguous, key


def test_save_BFM_writes_generate_m_layout(tmp_path):
    model = make_model()
    L.save_BFM(tmp_path / "BFM.mat", model)
    assert sio.whosmat(str(tmp_path / "BFM.mat")) == [("model", (1, 1), "struct")]
    rec = sio.loadmat(str(tmp_path / "BFM.mat"))["model"][0, 0]
    assert rec.dtype.names == L.MODEL_FIELDS
    for key in L.MODEL_FIELDS:
        assert rec[key].dtype == np.float64, key
    assert rec["tri"].shape == (3, NTRI)
    assert np.array_equal(rec["tri"][:, 7], model["tri"][7] + 1)
    assert rec["tri_mouth"].shape == (3, NMOUTH)
    assert rec["kpt_ind"].shape == (1, 68) and rec["kpt_ind"][0, 0] == model["kpt_ind"][0] + 1
    # the file keeps the neutral shape apart from the mean expression
    assert np.allclose(rec["shapeMU"] + rec["expMU"], model["shapeMU"], rtol=0, atol=1e-6)
    assert np.array_equal(rec["expMU"], model["expMU"].astype(np.float64))


def test_writers_give_identical_bytes_for_identical_input(tmp_path):
    # scipy stamps the creation time into the header; a cache must not change between builds
    for name, write, value in (("BFM.mat", L.save_BFM, make_model()),
                               ("BFM_info.mat", L.save_BFM_info, make_info())):
        write(tmp_path / "a" / name, value)
        write(tmp_path / "b" / name, value)
        data = (tmp_path / "a" / name).read_bytes()
        assert data == (tmp_path / "b" / name).read_bytes()
        assert data.startswith(b"MATLAB 5.0 MAT-file") and b"Created on" not in data[:116]


def test_face3d_original_loader_reads_save_BFM_output(tmp_path):
    model = make_model()
    L.save_BFM(tmp_path / "BFM.mat", model)
    ref = face3d_original_load_BFM(tmp_path / "BFM.mat")
    for key in ("shapeMU", "shapePC", "expPC", "tri", "tri_mouth", "kpt_ind"):
        assert_same(ref[key], model[key], key)
    assert np.array_equal(ref["texMU"], model["texMU"].astype(np.float64))


def test_load_BFM_reads_file_written_as_matlab_generate_m_does(tmp_path):
    # MATLAB: struct `model` (fields in assignment order), doubles, 1-based, tri (3,ntri),
    # kpt_ind (1,68), EVs (k,1); MATLAB's default save compresses.
    rng = np.random.default_rng(5)
    n3 = 3 * NVER
    mat = {"shapeMU": rng.normal(0, 5e4, (n3, 1)), "shapePC": rng.normal(0, 1, (n3, K_SHAPE)),
           "shapeEV": rng.uniform(1, 9, (K_SHAPE, 1)), "texMU": rng.uniform(0, 255, (n3, 1)),
           "texPC": rng.normal(0, 1, (n3, K_TEX)), "texEV": rng.uniform(1, 9, (K_TEX, 1)),
           "tri": rng.integers(1, NVER + 1, (3, NTRI)).astype(np.float64),
           "kpt_ind": rng.integers(1, NVER + 1, (1, 68)).astype(np.float64),
           "expMU": rng.normal(0, 1e3, (n3, 1)), "expPC": rng.normal(0, 1, (n3, K_EXP)),
           "expEV": rng.uniform(1, 9, (K_EXP, 1)),
           "tri_mouth": rng.integers(1, NVER + 1, (3, NMOUTH)).astype(np.float64)}
    sio.savemat(str(tmp_path / "BFM.mat"), {"model": mat}, do_compression=True)
    got = L.load_BFM(tmp_path / "BFM.mat")
    assert_same(got["shapeMU"], (mat["shapeMU"] + mat["expMU"]).astype(np.float32), "shapeMU")
    assert_same(got["expMU"], mat["expMU"].astype(np.float32), "expMU")
    assert_same(got["shapePC"], mat["shapePC"].astype(np.float32), "shapePC")
    assert_same(got["texEV"], mat["texEV"].astype(np.float32), "texEV")
    assert_same(got["tri"], (mat["tri"].T - 1).astype(np.int32), "tri")
    assert got["tri"].flags.c_contiguous
    assert_same(got["tri_mouth"], (mat["tri_mouth"].T - 1).astype(np.int32), "tri_mouth")
    assert_same(got["kpt_ind"], (mat["kpt_ind"][0] - 1).astype(np.int32), "kpt_ind")
    # vertex 3 of the mean face is rows 9, 10, 11 (interleaved x, y, z)
    v3 = got["shapeMU"].reshape(-1, 3)[3]
    assert np.allclose(v3, (mat["shapeMU"] + mat["expMU"])[9:12, 0], rtol=1e-6)


# ----------------------------------------------------------------------------- BFM_info.mat
def test_save_load_BFM_info_round_trip_exact(tmp_path):
    info = make_info()
    info["extra_note"] = np.array([[1.5, 2.5]])  # an uninterpreted field passes through
    L.save_BFM_info(tmp_path / "BFM_info.mat", info)
    loaded = L.load_BFM_info(tmp_path / "BFM_info.mat")
    assert sorted(loaded) == sorted(info)
    for key in info:
        assert_same(loaded[key], info[key], key)


def test_save_BFM_info_writes_matlab_layout(tmp_path):
    info = make_info()
    L.save_BFM_info(tmp_path / "BFM_info.mat", info)
    rec = sio.loadmat(str(tmp_path / "BFM_info.mat"))["model_info"][0, 0]
    assert rec.dtype.names == L.INFO_FIELDS  # generate.m's field order
    assert rec["kpt_ind"].shape == (1, 30) and rec["kpt_ind"][0, 2] == info["kpt_ind"][2] + 1
    assert rec["trimIndex"].shape == (NVER, 1)
    assert rec["tri_mouth"].shape == (3, NMOUTH)
    assert rec["segbin"].shape == (4, NVER)
    par = rec["parallel"]  # a (17,1) MATLAB cell of (1,k) 1-based rows
    assert par.dtype == object and par.shape == (17, 1)
    assert par[4, 0].shape == (1, 5) and np.array_equal(par[4, 0][0], info["parallel"][4] + 1)
    assert rec["parallel_face_contour"].shape == (28, 1)
    assert rec["uv_coords"].shape == (NVER, 2) and rec["uv_coords"].dtype == np.float64


def test_region_labels_from_segbin_rows_nose_eyes_mouth_rest():
    segbin = np.zeros((4, 6), dtype=bool)
    segbin[0, 1] = True   # nose
    segbin[1, [2, 3]] = True  # eyes
    segbin[2, 4] = True   # mouth
    segbin[3, [0, 5]] = True  # rest
    labels = L.region_labels({"segbin": segbin}, 6)
    assert labels.dtype == np.uint8
    assert labels.tolist() == [0, 2, 1, 1, 3, 0]
    with pytest.raises(ValueError, match="segbin"):
        L.region_labels({"segbin": segbin}, 7)
    with pytest.raises(ValueError, match="segbin"):
        L.region_labels({}, 6)


def test_contour_lines_from_loaded_info(tmp_path):
    info = make_info()
    L.save_BFM_info(tmp_path / "BFM_info.mat", info)
    lines = L.contour_lines(L.load_BFM_info(tmp_path / "BFM_info.mat"))
    assert len(lines) == 17
    for got, want in zip(lines, info["parallel"]):
        assert_same(got, want, "parallel")
    with pytest.raises(ValueError, match="17"):
        L.contour_lines({"parallel": info["parallel"][:16]})
    with pytest.raises(ValueError, match="parallel"):
        L.contour_lines({})


# ----------------------------------------------------------------------------- UV and PNCC
def test_uv_and_pncc_round_trip_exact(tmp_path):
    rng = np.random.default_rng(3)
    uv = rng.uniform(0, 1, (NVER, 2)).astype(np.float32)
    L.save_uv_coords(tmp_path / "BFM_UV.mat", uv)
    assert_same(L.load_uv_coords(tmp_path / "BFM_UV.mat"), uv, "UV")
    assert sio.loadmat(str(tmp_path / "BFM_UV.mat"))["UV"].shape == (NVER, 2)
    code = rng.uniform(0, 1, (NVER, 3)).astype(np.float32)
    L.save_pncc_code(tmp_path / "pncc_code.mat", code)
    assert_same(L.load_pncc_code(tmp_path / "pncc_code.mat"), code, "vertex_code")
    raw = sio.loadmat(str(tmp_path / "pncc_code.mat"))["vertex_code"]
    assert raw.shape == (3, NVER) and raw[1, 7] == np.float64(code[7, 1])


# ----------------------------------------------------------------------------- errors
def _write_model(path, **changes):
    """Write a MATLAB-layout BFM.mat (via save_BFM) and apply raw field changes to it."""
    L.save_BFM(path, make_model())
    rec = sio.loadmat(str(path))["model"][0, 0]
    fields = {k: rec[k] for k in rec.dtype.names}
    for key, value in changes.items():
        if value is None:
            del fields[key]
        else:
            fields[key] = value
    sio.savemat(str(path), {"model": fields})


def test_real_bfm_info_and_uv_files_load_with_the_basel_layout():
    """The real BFM_info.mat and BFM_UV.mat (53215-vertex trimmed BFM, generate.m's output) load with the shapes
    of the Basel layout; segbin's rows hold the keypoints of their regions, BFM_UV.mat is info's uv_coords."""
    folder = fixtures_dir() / "BFM" / "Out"
    if not (folder / "BFM_info.mat").is_file() or not (folder / "BFM_UV.mat").is_file():
        pytest.skip(f"real BFM_info.mat / BFM_UV.mat not in {folder} (set FACE3D_FIXTURES)")
    info = L.load_BFM_info(folder / "BFM_info.mat")
    nver, ntri = 53215, 105840
    shapes = {"kpt_ind": (68,), "trimIndex": (nver,), "symlist": (2, 26720), "symlist_tri": (2, 52937),
              "segbin": (4, nver), "segbin_tri": (4, ntri), "tri_mouth": (114, 3), "face_contour": (28,),
              "face_contour_line": (512,), "nose_hole": (142,), "uv_coords": (nver, 2)}
    assert {key: info[key].shape for key in shapes} == shapes
    assert info["kpt_ind"].dtype == np.int32 and info["segbin"].dtype == bool and info["uv_coords"].dtype == np.float32
    kpt = info["kpt_ind"]
    assert kpt[[0, 8, 30, 48]].tolist() == [21873, 47914, 8192, 5522]       # 0-based (the file holds 1-based)
    # the mirror pairs index the trimmed model, up to its last vertex and last triangle
    assert (info["symlist"].max(), info["symlist_tri"].max()) == (nver - 1, ntri - 1)
    assert info["trimIndex"][[0, -1]].tolist() == [0, 53489]                 # into the full 53490-vertex model
    np.testing.assert_array_equal(info["face_contour"][:3], kpt[:3])
    # segbin: disjoint masks covering every vertex; rows nose, eyes, mouth, rest.
    assert info["segbin"].sum(axis=1).tolist() == [2245, 7182, 2460, 41328]
    assert np.all(info["segbin"].sum(axis=0) == 1)
    labels = L.region_labels(info, nver)[kpt]
    assert np.all(labels[0:17] == L.REGION_REST)                             # jaw
    assert np.all(labels[17:27] == L.REGION_EYES)                            # brows
    assert np.all(labels[27:36] == L.REGION_NOSE)
    assert np.all(labels[36:48] == L.REGION_EYES)
    assert np.all(labels[48:68] == L.REGION_MOUTH)
    lines = L.contour_lines(info)
    assert [line.size for line in lines] == [366, 267, 282, 427, 313, 132, 61, 30, 1, 31, 60, 136, 306, 437, 282,
                                             269, 352]
    assert lines[8].tolist() == [kpt[8]]                                     # the chin does not march
    assert len(info["parallel_face_contour"]) == 28
    uv = L.load_uv_coords(folder / "BFM_UV.mat")
    assert uv.shape == (nver, 2) and uv.dtype == np.float32
    np.testing.assert_array_equal(uv, info["uv_coords"])
    assert uv.min() == 0.0 and uv.max() == 1.0
    np.testing.assert_array_equal(uv[kpt[[8, 30]], 0], [0.5, 0.5])          # chin and nose tip on the mid line
    # They fit the real BFM.mat's counts, and name the misfit for a model of another size.
    assert L.info_model_mismatch(info, nver, ntri, "BFM.mat") is None
    assert L.info_model_mismatch(info, 13019, 25648, "BFM.mat") == "segbin has 53215 vertices, BFM.mat has 13019"


def test_missing_files_raise_file_not_found_naming_them(tmp_path):
    for loader, name in ((L.load_BFM, "BFM.mat"), (L.load_BFM_info, "BFM_info.mat"),
                         (L.load_uv_coords, "BFM_UV.mat"), (L.load_pncc_code, "pncc_code.mat")):
        with pytest.raises(FileNotFoundError, match=name):
            loader(tmp_path / name)


def test_load_BFM_errors_name_file_and_key(tmp_path):
    path = tmp_path / "mine.mat"
    sio.savemat(str(path), {"shapeMU": np.zeros((3, 1))})
    with pytest.raises(ValueError, match=r"mine\.mat.*'model'"):
        L.load_BFM(path)
    cases = {
        "expPC": (None, "missing"),
        "shapePC": (np.zeros((3 * NVER + 3, K_SHAPE)), "shape"),
        "tri": (np.full((3, 4), NVER + 1.0), "out of range"),
        "tri_mouth": (np.zeros((3, 2)), "out of range"),  # 0 in a 1-based field
        "kpt_ind": (np.array([[1.5, 2.0]]), "integer"),
        "shapeEV": (np.zeros((K_SHAPE + 1, 1)), "entries"),
    }
    for key, (value, what) in cases.items():
        _write_model(path, **{key: value})
        with pytest.raises(ValueError, match=rf"mine\.mat.*'{key}'.*{what}|mine\.mat.*{what}.*'{key}'"):
            L.load_BFM(path)
    path.write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(ValueError, match=r"mine\.mat"):
        L.load_BFM(path)


def test_a_missing_variable_is_named_with_the_variables_the_file_holds(tmp_path, monkeypatch):
    """Each loader reads only its own variable; the message lists every variable of the file, e.g. BFM_info.mat's
    model_info where BFM.mat's model was expected."""
    info_path = tmp_path / "BFM_info.mat"
    L.save_BFM_info(info_path, make_info())
    with pytest.raises(ValueError) as error:
        L.load_BFM(info_path)
    assert str(error.value) == (f"{info_path}: no variable 'model' (expected a 1x1 MATLAB struct 'model'); "
                                "found ['model_info']")
    uv_path = tmp_path / "uv.mat"
    sio.savemat(str(uv_path), {"uv": np.zeros((4, 2)), "Coords": np.zeros((4, 2))})
    with pytest.raises(ValueError, match=r"uv\.mat: no variable 'UV' .*; found \['Coords', 'uv'\]$"):
        L.load_uv_coords(uv_path)
    for loader, path, key in ((L.load_BFM_info, uv_path, "model_info"), (L.load_pncc_code, info_path, "vertex_code")):
        with pytest.raises(ValueError, match=rf"no variable '{key}' .*; found \['"):
            loader(path)

    def cannot_list(*args, **kwargs):
        raise OSError("unreadable variable directory")

    monkeypatch.setattr(sio, "whosmat", cannot_list)  # a file scipy reads but cannot list: the message stops there
    with pytest.raises(ValueError) as error:
        L.load_BFM(info_path)
    assert str(error.value) == f"{info_path}: no variable 'model' (expected a 1x1 MATLAB struct 'model')"


def test_load_BFM_refuses_a_mean_face_in_other_units(tmp_path):
    """The mean face (shapeMU + expMU) must be 1e4..1e7 wide (x extent): the BFM's micrometres give about 150,000;
    millimetres are named with the conversion, other units with what is expected."""
    path = tmp_path / "BFM.mat"
    model = make_model()
    x = np.zeros((NVER, 3))
    x[:, 0] = np.linspace(-2e6, 3e6, NVER)  # 5e6 wide
    model["shapeMU"], model["expMU"] = x.reshape(-1, 1).astype(np.float32), np.zeros((3 * NVER, 1), np.float32)
    # scale of that face -> the width the message gives (None: loads), with the millimetre advice or not
    for scale, width, millimetres in ((1.0, None, False), (2.0, None, False), (4.0, "2e+07", False),
                                      (2e-3, None, False), (1.99e-3, "9.95e+03", True), (3e-5, "150", True)):
        L.save_BFM(path, dict(model, shapeMU=model["shapeMU"] * np.float32(scale)))
        if width is None:
            L.load_BFM(path)
            continue
        with pytest.raises(ValueError) as error:
            L.load_BFM(path)
        expected = f"{path}: the mean face is {width} units wide; face3d expects the BFM's micrometres (about 150,000)"
        if millimetres:
            expected += ": from millimetres multiply shapeMU, expMU, shapeEV and expPC by 1000"
        assert str(error.value) == expected


def test_the_model_loaders_name_raw_downloads_and_other_formats(tmp_path):
    """Each BFM file loader names a raw download (3DDFA's model_info.mat as BFM_info.mat) and a file of another
    format (an HDF5 file as BFM_UV.mat, a pickle as pncc_code.mat) with the converter's command."""
    import pickle

    import h5py

    convert = "python Data/BFM/convert.py --raw RAW --out OUT (Data/BFM/README.md)"
    info = tmp_path / "model_info.mat"
    sio.savemat(str(info), {"trimIndex": np.ones((4, 1)), "keypoints": np.ones((1, 2))})
    with pytest.raises(ValueError) as error:
        L.load_BFM_info(info)
    assert str(error.value) == (f"{info}: no variable 'model_info' (expected a 1x1 MATLAB struct 'model_info'); "
                                f"found ['keypoints', 'trimIndex']; this is the raw Basel 2009 model (or 3DDFA's "
                                f"files): build face3d's BFM files with {convert}")
    uv, code = tmp_path / "BFM_UV.h5", tmp_path / "pncc.pkl"
    with h5py.File(uv, "w") as f:
        f["UV"] = np.zeros((4, 2))
    code.write_bytes(pickle.dumps(np.zeros((3, 4)), protocol=4))
    for loader, path, kind in ((L.load_uv_coords, uv, "an HDF5 file"), (L.load_pncc_code, code, "a Python pickle")):
        with pytest.raises(ValueError) as error:
            loader(path)
        assert str(error.value) == (f"{path}: {kind}, not a MATLAB .mat file: face3d reads the Basel Face Model 2009 "
                                    f"(not BFM 2017's .h5 nor 3DDFA's .pkl): build its BFM files with {convert}")


def test_load_BFM_rejects_tri_stored_as_rows(tmp_path):
    # a (ntri,3) tri is the Python layout, not the MATLAB one the file must hold
    path = tmp_path / "BFM.mat"
    _write_model(path, tri=np.ones((NTRI, 3)))
    with pytest.raises(ValueError, match=r"BFM\.mat.*'tri'.*\(3, ntri\)"):
        L.load_BFM(path)


def test_info_uv_pncc_errors_name_file_and_key(tmp_path):
    info = make_info()
    path = tmp_path / "info.mat"
    L.save_BFM_info(path, info)
    rec = sio.loadmat(str(path))["model_info"][0, 0]
    fields = {k: rec[k] for k in rec.dtype.names}
    bad = dict(fields, face_contour=np.array([[1.0, NVER + 1.0]]))
    sio.savemat(str(path), {"model_info": bad})
    with pytest.raises(ValueError, match=r"info\.mat.*'face_contour'.*out of range"):
        L.load_BFM_info(path)
    cell = fields["parallel"].copy()
    cell[3, 0] = np.array([[NVER + 5.0]])
    sio.savemat(str(path), {"model_info": dict(fields, parallel=cell)})
    with pytest.raises(ValueError, match=r"info\.mat.*'parallel\[3\]'.*out of range"):
        L.load_BFM_info(path)
    sio.savemat(str(path), {"model_info": dict(fields, parallel=np.ones((17, 1)))})
    with pytest.raises(ValueError, match=r"info\.mat.*'parallel'.*cell"):
        L.load_BFM_info(path)
    sio.savemat(str(path), {"model_info": dict(fields, segbin=2 * fields["segbin"])})
    with pytest.raises(ValueError, match=r"info\.mat.*'segbin'.*binary"):
        L.load_BFM_info(path)
    sio.savemat(str(path), {"model": fields})
    with pytest.raises(ValueError, match=r"info\.mat.*'model_info'"):
        L.load_BFM_info(path)

    uv_path = tmp_path / "uv.mat"
    sio.savemat(str(uv_path), {"uv": np.zeros((4, 2))})
    with pytest.raises(ValueError, match=r"uv\.mat.*'UV'"):
        L.load_uv_coords(uv_path)
    sio.savemat(str(uv_path), {"UV": np.zeros((2, 4))})
    with pytest.raises(ValueError, match=r"uv\.mat.*'UV'.*shape"):
        L.load_uv_coords(uv_path)
    code_path = tmp_path / "code.mat"
    sio.savemat(str(code_path), {"vertex_code": np.zeros((NVER, 3))})
    with pytest.raises(ValueError, match=r"code\.mat.*'vertex_code'.*shape"):
        L.load_pncc_code(code_path)


def test_symlist_past_the_trimmed_model_is_refused_naming_file_and_field(tmp_path):
    """symlist / symlist_tri pair vertices / triangles of the trimmed model: checked against segbin's vertex count
    and segbin_tri's triangle count on load, against the model's counts by info_model_mismatch."""
    path = tmp_path / "BFM_info.mat"
    L.save_BFM_info(path, make_info())
    rec = sio.loadmat(str(path))["model_info"][0, 0]
    fields = {k: rec[k] for k in rec.dtype.names}
    for key, count in (("symlist", NVER), ("symlist_tri", NTRI)):
        pairs = fields[key].copy()
        pairs[1, 0] = count + 1.0
        sio.savemat(str(path), {"model_info": dict(fields, **{key: pairs})})
        message = f"{path}: '{key}' index out of range: values span {pairs.min():g}..{count + 1}, " \
                  f"expected 1-based indices in 1..{count}"
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            L.load_BFM_info(path)
    info = {"symlist": np.array([[0, 1], [NVER - 1, 2]], np.int32),            # up to the last vertex and triangle
            "symlist_tri": np.array([[0], [NTRI - 1]], np.int32)}
    assert L.info_model_mismatch(info, NVER, NTRI, "BFM.mat") is None
    assert L.info_model_mismatch(info, NVER - 1, NTRI, "BFM.mat") == \
        f"symlist indexes vertex {NVER} (1-based), BFM.mat has {NVER - 1}"
    assert L.info_model_mismatch(info, NVER, NTRI - 1, "BFM.mat") == \
        f"symlist_tri indexes triangle {NTRI} (1-based), BFM.mat has {NTRI - 1}"


def test_writers_reject_bad_input_naming_key(tmp_path):
    model = make_model()
    with pytest.raises(ValueError, match="'tri'.*out of range"):
        L.save_BFM(tmp_path / "a.mat", dict(model, tri=model["tri"] + NVER))
    with pytest.raises(ValueError, match="'expPC'"):
        L.save_BFM(tmp_path / "a.mat", {k: v for k, v in model.items() if k != "expPC"})
    with pytest.raises(ValueError, match="'tri'.*\\(ntri, 3\\)"):
        L.save_BFM(tmp_path / "a.mat", dict(model, tri=model["tri"].T))
    with pytest.raises(ValueError, match="'kpt_ind'"):
        L.save_BFM_info(tmp_path / "b.mat", dict(make_info(), kpt_ind=np.array([NVER])))
    with pytest.raises(ValueError, match="'UV'"):
        L.save_uv_coords(tmp_path / "c.mat", np.zeros((NVER, 3)))
    assert not list(tmp_path.iterdir())  # nothing half-written
