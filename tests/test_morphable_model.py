"""MorphableModel: loading (default, real-layout files, arrays), generation, transforms, validation.

Budget: ~3 s (the default model is built/loaded once per module).
"""

import re

import numpy as np
import pytest
import scipy.io as sio
from _fixtures import fixtures_dir

from face3d.mesh.transform import angle2matrix, angle2matrix_3ddfa, similarity_transform
from face3d.morphable_model import MorphabelModel, MorphableModel, flip_y, load, model_identity
from face3d.morphable_model.morphable_model import FITTER_CACHE_SIZE
from face3d.utils.errors import InputFileError


def small_model(rng, nver=30, n_sp=4, n_ep=3, n_tp=2):
    return {
        "shapeMU": rng.normal(0, 5e4, (3 * nver, 1)).astype(np.float32),
        "shapePC": rng.normal(0, 1, (3 * nver, n_sp)).astype(np.float32),
        "shapeEV": np.arange(n_sp, 0, -1, dtype=np.float32)[:, None] * 1e4,
        "expMU": np.zeros((3 * nver, 1), np.float32),
        "expPC": rng.normal(0, 1e3, (3 * nver, n_ep)).astype(np.float32),
        "expEV": np.ones((n_ep, 1), np.float32),
        "texMU": rng.uniform(0, 255, (3 * nver, 1)).astype(np.float32),
        "texPC": rng.normal(0, 1, (3 * nver, n_tp)).astype(np.float32),
        "texEV": np.ones((n_tp, 1), np.float32),
        "tri": rng.integers(0, nver, (10, 3)).astype(np.int32),
        "tri_mouth": rng.integers(0, nver, (2, 3)).astype(np.int32),
        "kpt_ind": rng.choice(nver, 68, replace=True).astype(np.int32),
    }


@pytest.fixture(scope="module")
def bfm():
    return MorphableModel()


def test_face3d_class_name_takes_face3d_arguments(tmp_path):
    """face3d's ``MorphabelModel(model_path, model_type='BFM')``: the same model, face3d's call forms, other model
    types refused."""
    m = small_model(np.random.default_rng(10))
    load.save_BFM(tmp_path / "BFM.mat", m)
    path = str(tmp_path / "BFM.mat")
    for bfm in (MorphabelModel(path), MorphabelModel(path, "BFM"), MorphabelModel(path, model_type="BFM")):
        assert isinstance(bfm, MorphableModel) and type(bfm) is MorphabelModel
        np.testing.assert_array_equal(bfm.model["shapePC"], m["shapePC"])
        np.testing.assert_array_equal(bfm.triangles, m["tri"])
    with pytest.raises(ValueError, match="model_type must be 'BFM'.*'Basel2019'"):
        MorphabelModel(path, "Basel2019")
    assert type(MorphabelModel.from_arrays(m)) is MorphabelModel


def test_generation_follows_the_bfm_formula():
    rng = np.random.default_rng(0)
    m = small_model(rng)
    mm = MorphableModel.from_arrays(m)
    assert (mm.nver, mm.ntri, mm.n_shape_para, mm.n_exp_para, mm.n_tex_para) == (30, 10, 4, 3, 2)
    np.testing.assert_array_equal(mm.full_triangles, np.vstack((m["tri"], m["tri_mouth"])))
    sp, ep, tp = rng.normal(0, 1e4, 4), rng.normal(0, 1, (3, 1)), rng.normal(0, 1, 2)
    v = mm.generate_vertices(sp, ep)
    assert v.shape == (30, 3) and v.dtype == np.float32
    expected = (m["shapeMU"][:, 0] + m["shapePC"] @ sp + m["expPC"] @ ep[:, 0]).reshape(-1, 3)
    np.testing.assert_allclose(v, expected, rtol=1e-5, atol=1e-2)
    # Interleaved layout: vertex 1 is rows 3..5.
    np.testing.assert_allclose(mm.generate_vertices(np.zeros(4), np.zeros(3))[1],
                               m["shapeMU"][3:6, 0])
    c = mm.generate_colors(tp)
    np.testing.assert_allclose(c, (m["texMU"][:, 0] + m["texPC"] @ tp).reshape(-1, 3), rtol=1e-5)


def test_the_mean_expression_is_in_the_mean_face_once(tmp_path):
    """A BFM.mat keeps shapeMU and expMU apart; the loaded shapeMU holds their sum, so the neutral parameters give
    exactly (file shapeMU + file expMU) as float32, expMU not added a second time. Also for a model built from
    arrays, whose shapeMU already includes its expMU. The default model's expMU is zero: a non-zero one is needed
    to tell the two apart."""
    m = small_model(np.random.default_rng(12))
    m["expMU"] = np.random.default_rng(13).normal(0, 1e3, m["expMU"].shape).astype(np.float32)
    load.save_BFM(tmp_path / "BFM.mat", m)
    stored = sio.loadmat(str(tmp_path / "BFM.mat"))["model"][0, 0]
    assert np.abs(stored["expMU"]).min() > 0
    mean_face = (stored["shapeMU"].astype(np.float64) + stored["expMU"]).astype(np.float32).reshape(-1, 3)
    mm = MorphableModel(tmp_path / "BFM.mat")
    np.testing.assert_array_equal(mm.generate_vertices(np.zeros(4), np.zeros(3)), mean_face)
    from_arrays = MorphableModel.from_arrays(m)
    np.testing.assert_array_equal(from_arrays.generate_vertices(np.zeros(4), np.zeros(3)),
                                  m["shapeMU"].reshape(-1, 3))


def test_parameter_draws():
    """With a seed the draws are the documented ones from ``np.random.default_rng(seed)``: shape uniform in
    [0, 1e4), expression uniform in [-1.5, 1.5) for the first 6 (all 3 here), texture N(0, texEV^2). texEV is not
    all ones here, so that a draw missing its texEV scaling differs."""
    m = small_model(np.random.default_rng(1))
    m["texEV"] = np.array([[40.0], [0.25]], np.float32)
    mm = MorphableModel.from_arrays(m)
    assert np.all(mm.get_shape_para("zero") == 0) and mm.get_shape_para("zero").shape == (4, 1)
    sp = mm.get_shape_para("random", rng=5)
    assert sp.dtype == np.float32
    np.testing.assert_array_equal(sp, (np.random.default_rng(5).random((4, 1)) * 1e4).astype(np.float32))
    ep = mm.get_exp_para("random", rng=6)
    np.testing.assert_array_equal(ep, (-1.5 + 3 * np.random.default_rng(6).random((3, 1))).astype(np.float32))
    tp = mm.get_tex_para("random", rng=7)
    np.testing.assert_array_equal(tp, (np.random.default_rng(7).standard_normal((2, 1)) * m["texEV"])
                                  .astype(np.float32))
    with pytest.raises(ValueError, match="type"):
        mm.get_exp_para("gaussian")


def test_parameter_draws_without_rng_follow_numpy_global_seed_as_face3d():
    """rng=None draws from numpy's global random state: after np.random.seed the shape and expression draws are
    face3d's own (``np.random.rand(n, 1) * 1e4``; ``-1.5 + 3 * np.random.random([n, 1])`` with rows 6.. zeroed),
    the texture draw N(0, texEV^2) from the same stream."""
    m = small_model(np.random.default_rng(11), n_ep=8)
    m["texEV"] = np.array([[40.0], [0.25]], np.float32)  # not ones: the draw's texEV scaling shows
    mm = MorphableModel.from_arrays(m)
    saved = np.random.get_state()
    np.random.seed(0)
    sp, ep, tp = mm.get_shape_para("random"), mm.get_exp_para("random"), mm.get_tex_para("random")
    np.random.seed(0)
    face3d_sp = np.random.rand(4, 1) * 1e04
    face3d_ep = -1.5 + 3 * np.random.random([8, 1])
    face3d_ep[6:, 0] = 0
    normal = np.random.standard_normal((2, 1))
    np.random.set_state(saved)
    np.testing.assert_array_equal(sp, face3d_sp.astype(np.float32))
    np.testing.assert_array_equal(ep, face3d_ep.astype(np.float32))
    np.testing.assert_array_equal(tp, (normal * m["texEV"]).astype(np.float32))
    assert np.all(ep[6:] == 0) and np.all(ep[:6] != 0)


def test_parameters_may_be_rows_columns_or_flat():
    """A (1, n) row, as numpy code often holds a parameter set, gives the vertices of its (n,) and (n, 1) forms."""
    mm = MorphableModel.from_arrays(small_model(np.random.default_rng(3)))
    sp, ep, tp = np.arange(4.0) * 1e3, np.arange(3.0) - 1, np.array([0.5, -0.5])
    vertices, colors = mm.generate_vertices(sp, ep), mm.generate_colors(tp)
    for shape in ((1, -1), (-1, 1)):
        np.testing.assert_array_equal(mm.generate_vertices(sp.reshape(shape), ep.reshape(shape)), vertices)
        np.testing.assert_array_equal(mm.generate_colors(tp.reshape(shape)), colors)
    with pytest.raises(ValueError, match=r"^shape_para must have shape \(4,\), \(4, 1\) or \(1, 4\), got \(2, 2\)$"):
        mm.generate_vertices(sp.reshape(2, 2), ep)


def test_parameter_validation():
    mm = MorphableModel.from_arrays(small_model(np.random.default_rng(2)))
    with pytest.raises(ValueError, match="shape_para"):
        mm.generate_vertices(np.zeros(5), np.zeros(3))
    with pytest.raises(ValueError, match="exp_para"):
        mm.generate_vertices(np.zeros(4), np.array([0.0, np.nan, 0.0]))
    with pytest.raises(ValueError, match="tex_para"):
        mm.generate_colors(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="angles"):
        mm.transform(np.zeros((3, 3)), 1.0, [0, 0], [0, 0, 0])
    with pytest.raises(ValueError, match="vertices"):
        mm.transform(np.zeros((3, 2)), 1.0, [0, 0, 0], [0, 0, 0])
    with pytest.raises(ValueError, match="s must"):
        mm.transform_3ddfa(np.zeros((3, 3)), np.nan, [0, 0, 0], [0, 0, 0])


def test_from_arrays_validation():
    m = small_model(np.random.default_rng(3))
    bad = dict(m)
    del bad["expPC"]
    with pytest.raises(ValueError, match="expPC"):
        MorphableModel.from_arrays(bad)
    bad = dict(m, shapePC=m["shapePC"][:-3])
    with pytest.raises(ValueError, match="shapePC"):
        MorphableModel.from_arrays(bad)
    bad = dict(m, texMU=np.full_like(m["texMU"], np.nan))
    with pytest.raises(ValueError, match="texMU"):
        MorphableModel.from_arrays(bad)
    bad = dict(m, kpt_ind=np.array([0, 30]))
    with pytest.raises(ValueError, match="kpt_ind"):
        MorphableModel.from_arrays(bad)
    with pytest.raises(ValueError, match="uv_coords"):
        MorphableModel.from_arrays(m, uv_coords=np.zeros((29, 2)))


def test_transforms_known_geometry():
    mm = MorphableModel.from_arrays(small_model(np.random.default_rng(4)))
    nose = np.array([[0.0, 0.0, 1.0]])
    # face3d: yaw +90 degrees turns the nose (+z) to +x.
    np.testing.assert_allclose(mm.transform(nose, 2.0, [0, 90, 0], [1, 2, 3]), [[3, 2, 3]],
                               atol=1e-12)
    v = np.random.default_rng(5).normal(0, 1, (7, 3))
    ang = [10.0, -35.0, 20.0]
    np.testing.assert_allclose(mm.transform(v, 0.5, ang, [1, 2, 3]),
                               similarity_transform(v, 0.5, angle2matrix(ang), [1, 2, 3]))
    rad = np.deg2rad(ang)
    np.testing.assert_allclose(mm.transform_3ddfa(v, 0.5, rad, [1, 2, 3]),
                               0.5 * v @ angle2matrix_3ddfa(rad).T + [1, 2, 3], atol=1e-12)


def test_rotate_is_face3d_rotation_about_the_origin():
    mm = MorphableModel.from_arrays(small_model(np.random.default_rng(12)))
    # face3d: yaw +90 degrees turns the nose (+z) to +x; pitch +90 turns it to -y.
    np.testing.assert_allclose(mm.rotate(np.array([[0.0, 0.0, 1.0]]), [0, 90, 0]), [[1, 0, 0]], atol=1e-12)
    np.testing.assert_allclose(mm.rotate(np.array([[0.0, 0.0, 1.0]]), [90, 0, 0]), [[0, -1, 0]], atol=1e-12)
    v = np.random.default_rng(13).normal(0, 1e4, (5, 3)).astype(np.float32)
    rotated = mm.rotate(v, [10, 30, 20])
    assert rotated.dtype == np.float32
    np.testing.assert_allclose(rotated, mm.transform(v, 1.0, [10, 30, 20], [0, 0, 0]), rtol=1e-6)
    with pytest.raises(ValueError, match="vertices"):
        mm.rotate(np.zeros((3, 2)), [0, 0, 0])


def test_pose_scale_may_be_a_one_element_array():
    mm = MorphableModel.from_arrays(small_model(np.random.default_rng(4)))
    v = np.random.default_rng(5).normal(0, 1, (7, 3))
    ang, t = [10.0, -35.0, 20.0], [1, 2, 3]
    for s in (np.array([0.5]), np.array([[0.5]])):  # scipy.io.loadmat gives (1, 1)
        assert np.array_equal(mm.transform(v, s, ang, t), mm.transform(v, 0.5, ang, t))
        assert np.array_equal(mm.transform_3ddfa(v, s, ang, t), mm.transform_3ddfa(v, 0.5, ang, t))
        assert np.array_equal(mm.fit_to_pose_para(s, ang, t), mm.fit_to_pose_para(0.5, ang, t))
    with pytest.raises(ValueError, match=r"^s must be a number or a one-element array, got shape \(2,\)"):
        mm.transform(v, np.array([0.5, 0.5]), ang, t)
    with pytest.raises(ValueError, match=r"^s must be a positive finite scale, got -0.5"):
        mm.transform(v, np.array([[-0.5]]), ang, t)


def test_pose_para_conversion_round_trip():
    mm = MorphableModel.from_arrays(small_model(np.random.default_rng(6)))
    pose = mm.fit_to_pose_para(1.3e-3, [-7.0, 44.0, 3.0], [183.0, 189.0, 0.0], tz=-81.0)
    R = angle2matrix([-7.0, 44.0, 3.0])
    np.testing.assert_allclose(angle2matrix_3ddfa(pose[:3]), R, atol=1e-12)
    np.testing.assert_allclose(pose[3:], [183.0, 189.0, -81.0, 1.3e-3])
    s, angles, t = mm.pose_para_to_fit(pose)
    assert s == pytest.approx(1.3e-3)
    np.testing.assert_allclose(angles, [-7.0, 44.0, 3.0], atol=1e-9)
    np.testing.assert_allclose(t, [183.0, 189.0, -81.0])
    # Both placements of a vertex agree.
    v = np.random.default_rng(7).normal(0, 1e4, (5, 3))
    np.testing.assert_allclose(mm.transform(v, s, angles, t),
                               mm.transform_3ddfa(v, pose[6], pose[:3], pose[3:6]), atol=1e-9)


def test_flip_y_is_an_involution():
    p = np.array([[3.0, 10.0], [5.0, 0.0]])
    np.testing.assert_allclose(flip_y(p, 450), [[3.0, 439.0], [5.0, 449.0]])
    np.testing.assert_allclose(flip_y(flip_y(p, 450), 450), p)
    with pytest.raises(ValueError, match="points"):
        flip_y(np.zeros((3, 4)), 10)


def test_loads_files_in_the_bfm_layout(tmp_path):
    rng = np.random.default_rng(8)
    m = small_model(rng)
    load.save_BFM(tmp_path / "BFM.mat", m)
    uv = rng.uniform(0, 1, (30, 2)).astype(np.float32)
    load.save_uv_coords(tmp_path / "BFM_UV.mat", uv)
    segbin = np.zeros((4, 30), bool)
    segbin[0, :5] = segbin[1, 5:10] = segbin[2, 10:15] = segbin[3, 15:] = True
    lines = [rng.choice(30, 4, replace=False).astype(np.int32) for _ in range(17)]
    load.save_BFM_info(tmp_path / "BFM_info.mat", {"segbin": segbin, "parallel": lines})
    mm = MorphableModel(tmp_path / "BFM.mat")
    np.testing.assert_allclose(mm.model["shapePC"], m["shapePC"])
    np.testing.assert_array_equal(mm.kpt_ind, m["kpt_ind"])
    np.testing.assert_allclose(mm.uv_coords, uv)
    np.testing.assert_array_equal(mm.region_labels[[0, 5, 10, 20]], [2, 1, 3, 0])
    assert len(mm.contour_lines) == 17
    np.testing.assert_array_equal(mm.contour_lines[3], lines[3])
    # Without the side files the model still loads.
    only = tmp_path / "only"
    only.mkdir()
    load.save_BFM(only / "BFM.mat", m)
    bare = MorphableModel(only / "BFM.mat")
    assert bare.info == {} and bare.uv_coords is None and bare.contour_lines is None
    with pytest.raises(FileNotFoundError, match="nothing.mat"):
        MorphableModel(tmp_path / "nothing.mat")
    # the folder holding the model, given for the model: said so, and which file to give
    folder = f"{only}: is a folder; give the BFM.mat file in it"
    with pytest.raises(FileNotFoundError, match=re.escape(folder)):
        MorphableModel(only)
    with pytest.raises(FileNotFoundError, match=re.escape(folder)):
        model_identity(only)


def test_side_files_of_another_model_are_refused_naming_both_files(tmp_path):
    """A BFM_info.mat or BFM_UV.mat written for a model of another vertex count is refused on loading, the message
    naming the side file and BFM.mat; so is an info file holding only jaw lines that index beyond the model."""
    rng = np.random.default_rng(9)
    load.save_BFM(tmp_path / "BFM.mat", small_model(rng))                     # 30 vertices, 10 triangles
    model = tmp_path / "BFM.mat"
    info, uv = tmp_path / "BFM_info.mat", tmp_path / "BFM_UV.mat"
    lines = [np.array([i, 20 + i % 10], np.int32) for i in range(17)]
    for fields, problem in (
            ({"segbin": np.eye(4, 31, dtype=bool)}, "segbin has 31 vertices"),
            ({"uv_coords": np.zeros((29, 2), np.float32)}, "uv_coords has 29 vertices"),
            ({"segbin_tri": np.eye(4, 11, dtype=bool)}, "segbin_tri has 11 triangles"),
            ({"parallel": lines[:16] + [np.array([3, 40], np.int32)]}, r"parallel indexes vertex 41 \(1-based\)"),
            ({"face_contour": np.array([0, 30], np.int32)}, r"face_contour indexes vertex 31 \(1-based\)")):
        load.save_BFM_info(info, fields)
        count = "10" if "triangles" in problem else "30"
        with pytest.raises(InputFileError, match=f"^{re.escape(str(info))}: {problem}, {re.escape(str(model))} "
                                                 f"has {count}$") as caught:
            MorphableModel(model)
        assert caught.value.path == info
    load.save_BFM_info(info, {"parallel": lines})                             # fits: loads
    assert MorphableModel(model).contour_lines[16].tolist() == [16, 26]
    load.save_uv_coords(uv, np.zeros((31, 2), np.float32))
    with pytest.raises(InputFileError, match=f"^{re.escape(str(uv))}: UV has 31 vertices, "
                                             f"{re.escape(str(model))} has 30$"):
        MorphableModel(model)
    # Given explicitly, a side file elsewhere is checked the same way.
    load.save_uv_coords(tmp_path / "other_UV.mat", np.zeros((12, 2), np.float32))
    with pytest.raises(InputFileError, match="other_UV.mat: UV has 12 vertices"):
        MorphableModel(model, uv_path=tmp_path / "other_UV.mat")


def test_keypoints_of_bfm_info_must_be_those_of_the_model(tmp_path):
    """BFM_info.mat's kpt_ind, when it holds one, equals BFM.mat's (convert.py writes the same into both): the file one
    less everywhere is named as written 0-based, BFM.mat or BFM_info.mat; another count is named too."""
    m = small_model(np.random.default_rng(15))
    kpt = np.random.default_rng(16).permutation(np.arange(1, 30))[:20]
    m["kpt_ind"] = np.concatenate((kpt, kpt, kpt, kpt[:8])).astype(np.int32)
    model, info = tmp_path / "BFM.mat", tmp_path / "BFM_info.mat"
    load.save_BFM(model, m)
    load.save_BFM_info(info, {"kpt_ind": m["kpt_ind"]})
    np.testing.assert_array_equal(MorphableModel(model).kpt_ind, m["kpt_ind"])      # equal: loads
    load.save_BFM_info(info, {"kpt_ind": m["kpt_ind"] - 1})
    with pytest.raises(InputFileError) as caught:
        MorphableModel(model)
    assert str(caught.value) == (f"{info}: kpt_ind is one less than {model}'s at every keypoint (off by one: 0-based "
                                 f"indices? face3d's BFM_info.mat holds MATLAB's 1-based kpt_ind)")
    assert caught.value.path == info
    load.save_BFM_info(info, {"kpt_ind": m["kpt_ind"][:60]})
    with pytest.raises(InputFileError) as caught:
        MorphableModel(model)
    assert str(caught.value) == f"{info}: kpt_ind has 60 entries, {model} has 68"


def test_real_side_files_beside_a_smaller_model_are_refused(tmp_path):
    """The real 53215-vertex BFM_info.mat, then BFM_UV.mat, beside a BFM.mat of 30 vertices."""
    real = fixtures_dir() / "BFM" / "Out"
    if not (real / "BFM_info.mat").is_file() or not (real / "BFM_UV.mat").is_file():
        pytest.skip(f"real BFM_info.mat / BFM_UV.mat not in {real} (set FACE3D_FIXTURES)")
    load.save_BFM(tmp_path / "BFM.mat", small_model(np.random.default_rng(14)))
    (tmp_path / "BFM_info.mat").symlink_to(real / "BFM_info.mat")
    with pytest.raises(InputFileError, match=r"BFM_info.mat: segbin has 53215 vertices, .*BFM.mat has 30$"):
        MorphableModel(tmp_path / "BFM.mat")
    (tmp_path / "BFM_info.mat").unlink()
    (tmp_path / "BFM_UV.mat").symlink_to(real / "BFM_UV.mat")
    with pytest.raises(InputFileError, match=r"BFM_UV.mat: UV has 53215 vertices, .*BFM.mat has 30$"):
        MorphableModel(tmp_path / "BFM.mat")


def test_fitter_cache_keeps_the_most_recently_used_subsets(bfm):
    """One fitter per landmark subset, at most FITTER_CACHE_SIZE of them: the least recently used one goes."""
    subsets = [np.delete(bfm.kpt_ind, i) for i in range(FITTER_CACHE_SIZE + 3)]
    fitters = [bfm.fitter(ind) for ind in subsets[:FITTER_CACHE_SIZE]]     # fills the cache
    assert bfm.fitter(subsets[0]) is fitters[0]                            # a hit: now the most recently used
    for ind in subsets[FITTER_CACHE_SIZE:]:                                # evict the least recently used: 1, 2, 3
        bfm.fitter(ind)
    assert len(bfm._fitters) == FITTER_CACHE_SIZE
    assert bfm.fitter(subsets[0]) is fitters[0] and bfm.fitter(subsets[4]) is fitters[4]
    rebuilt = bfm.fitter(subsets[1])
    assert rebuilt is not fitters[1]
    np.testing.assert_array_equal(rebuilt.X_ind, subsets[1])


def test_model_identity_hashes_each_file_in_chunks_without_file_digest(tmp_path, monkeypatch):
    """The identity is sha256 over (name, NUL, sha256 of the bytes) of BFM.mat and each side file present; read in
    chunks, it needs no ``hashlib.file_digest`` (Python 3.11+), which is removed here as on Python 3.10."""
    import hashlib

    monkeypatch.delattr(hashlib, "file_digest", raising=False)
    rng = np.random.default_rng(3)
    contents = {"BFM.mat": rng.bytes((1 << 20) + 3), "BFM_UV.mat": rng.bytes(1000)}  # one past a 1 MiB chunk
    for name, data in contents.items():
        (tmp_path / name).write_bytes(data)
    expected = hashlib.sha256()
    for name, data in contents.items():  # in model_identity's order: BFM.mat, (no BFM_info.mat), BFM_UV.mat
        expected.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    assert model_identity(tmp_path / "BFM.mat") == expected.hexdigest()[:16]


def test_default_model(bfm):
    assert bfm.nver > 5000 and bfm.n_shape_para == 199 and bfm.n_exp_para == 29
    assert bfm.kpt_ind.shape == (68,) and bfm.kpt_ind.dtype == np.int32
    assert len(bfm.contour_lines) == 17 and bfm.region_labels.shape == (bfm.nver,)
    assert bfm.full_triangles.shape[0] > bfm.ntri
    assert bfm.uv_coords.shape == (bfm.nver, 2)
    # Nose tip (iBUG 30) is the most forward keypoint of the mean face (z towards the viewer).
    v = bfm.generate_vertices(bfm.get_shape_para("zero"), bfm.get_exp_para("zero"))
    assert np.argmax(v[bfm.kpt_ind, 2]) == 30


def test_real_pose_places_the_default_model_on_the_face(bfm):
    """300W-LP Pose_Para + zero parameters land near pt2d (axes, units, y flip): NME < 15 %."""
    root = fixtures_dir()
    path = root / "300W_LP" / "IBUG_image_008_1_0.mat"
    if not path.is_file():
        pytest.skip(f"fixture {path} not available")
    mat = sio.loadmat(str(path))
    pose = mat["Pose_Para"][0].astype(np.float64)
    v = bfm.generate_vertices(bfm.get_shape_para("zero"), bfm.get_exp_para("zero"))
    img = flip_y(bfm.transform_3ddfa(v, pose[6], pose[:3], pose[3:6]), 450)[bfm.kpt_ind, :2]
    pts = mat["pt2d"].T
    nme = np.linalg.norm(img - pts, axis=1).mean() / np.sqrt(np.prod(pts.max(0) - pts.min(0)))
    assert nme < 0.15, nme
