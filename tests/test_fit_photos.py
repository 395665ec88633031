"""Photos + 68 landmarks -> 300W-LP samples (face3d.fitting, ``face3d fit``), then ``face3d generate``.

Real fixtures (AFLW2000's pt3d_68, 300W-LP's pt2d) fit within 3 % NME and generate without failure; rendered
default-model faces round-trip to maps within 1.5 px of the true parameters' maps; files, failures, drops,
resume and worker processes that die. Budget: about 45 s on 2 busy cores (tiny images; the round trip renders 8
faces).
"""
import errno
import json
import logging
import os
import re
import shutil
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
from _fake_dlib import CNN_MODEL_FILE, SHAPE_PREDICTOR_FILE, install_fake_dlib, install_models_package
from _fixtures import deny_listing, fixtures_dir
from _image_files import png_header

from face3d.cli import main
from face3d.fitting import photos as fitting_photos
from face3d.fitting.photos import (
    FitConfig,
    discover_photos,
    fit_landmarks,
    fit_photos,
    project_landmarks,
)
from face3d.morphable_model import MorphableModel
from face3d.morphable_model.load import load_BFM_info
from face3d.trainset.dataset import DONE_DIR, TEMP_SUFFIX
from face3d.trainset.landmark_files import (
    IBUG_MIRROR,
    find_landmark_file,
    read_landmark_file,
    read_landmarks,
    read_pts,
)
from face3d.trainset.outputs import earlier_files, read_journals
from face3d.trainset.sample import GenerationConfig
from face3d.trainset.uv_layout import load_uv_data
from face3d.utils.atomic import temp_name
from face3d.utils.errors import InputFileError

FIXTURES = fixtures_dir()


@pytest.fixture(scope="module")
def model():
    return MorphableModel()


def _landmarks(seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(10, 90, (68, 2)).round(3)


def _write_image(path, size=96):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size, size, 3), 128, dtype=np.uint8))


def _contour_nme(model, mat, height):
    """Landmark NME of a written .mat recomputed from scratch: the parameters placed by the 300W-LP convention;
    the 51 inner landmarks at kpt_ind, each jaw landmark at the nearest vertex of its contour line (where the
    contour-aware fit may have moved it)."""
    lines = model.contour_lines
    index = [np.asarray(lines[j]) if j < 17 else np.array([model.kpt_ind[j]]) for j in range(68)]
    flat = np.concatenate(index)
    placed = project_landmarks(model, mat["Shape_Para"].T, mat["Exp_Para"].T, mat["Pose_Para"].astype(np.float64),
                               flat[None], [height])[0]
    gt = mat["pt2d"].T
    ends = np.cumsum([len(i) for i in index])
    dist = [np.linalg.norm(placed[end - len(i):end] - gt[j], axis=1).min() for j, (i, end) in
            enumerate(zip(index, ends))]
    extent = np.ptp(gt, axis=0)
    return float(np.mean(dist) / np.sqrt(extent[0] * extent[1]))


# ------------------------------------------------------------------------------------------------ landmark files


def test_landmark_files_read_every_format_to_zero_based_pixels(tmp_path):
    points = _landmarks()
    (tmp_path / "a.pts").write_text("version: 1\nn_points:  68\n{\n" + "".join(f"{x + 1} {y + 1}\n" for x, y in points)
                                    + "}\n")
    np.savetxt(tmp_path / "b.txt", points)
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + (tmp_path / "b.txt").read_bytes())  # as Notepad saves
    np.savetxt(tmp_path / "b3.txt", np.column_stack([points, np.ones(68)]))
    np.save(tmp_path / "c.npy", points)
    np.save(tmp_path / "ct.npy", points.T)
    scipy.io.savemat(tmp_path / "lp.mat", {"pt2d": points.T})
    scipy.io.savemat(tmp_path / "aflw.mat", {"pt2d": np.zeros((2, 21)), "pt3d_68": np.vstack([points.T, np.ones(68)])})
    for name in ("a.pts", "b.txt", "bom.txt", "b3.txt", "c.npy", "ct.npy", "lp.mat", "aflw.mat"):
        read = read_landmarks(tmp_path / name)
        assert read.shape == (68, 2) and read.dtype == np.float64, name
        np.testing.assert_allclose(read, points, atol=1e-9, err_msg=name)
        # only AFLW2000-3D's pt3d_68 are landmark vertices, whose far-side jaw is not on the silhouette
        again, silhouette_jaw = read_landmark_file(tmp_path / name)
        np.testing.assert_array_equal(again, read)
        assert silhouette_jaw == (name != "aflw.mat"), name


def test_landmark_file_errors_name_the_file(tmp_path):
    np.savetxt(tmp_path / "short.txt", _landmarks()[:60])
    (tmp_path / "bad.pts").write_text("version: 1\nn_points: 68\n{\n1 2\n}\n")
    (tmp_path / "junk.pts").write_text("hello\n")
    scipy.io.savemat(tmp_path / "aflw21.mat", {"pt2d": np.zeros((2, 21))})
    cell = np.empty((1, 68), dtype=object)  # a MATLAB cell of 68 points (scipy writes object arrays as cells)
    cell[0, :] = list(_landmarks())
    scipy.io.savemat(tmp_path / "cell.mat", {"pt2d": cell})
    np.save(tmp_path / "nan.npy", np.full((68, 2), np.nan))
    (tmp_path / "x.json").write_text("{}")
    cases = {"short.txt": "expected 68 landmarks", "bad.pts": "n_points says 68 but 1", "junk.pts": "not an iBUG",
             "aflw21.mat": "no pt3d_68 .3, 68. or pt2d", "nan.npy": "NaN", "x.json": "unknown landmark file type",
             "cell.mat": r"no pt3d_68 .3, 68. or pt2d .2, 68. numeric array in the .mat .found pt2d: a cell of "
                         r"shape .1, 68.."}
    for name, message in cases.items():
        with pytest.raises(ValueError, match=message) as info:
            read_landmarks(tmp_path / name)
        assert str(tmp_path / name) in str(info.value)
    with pytest.raises(FileNotFoundError, match="missing.txt: landmark file not found"):
        read_landmarks(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="not an iBUG"):
        read_pts(tmp_path / "junk.pts")


def test_an_empty_truncated_or_foreign_npy_landmark_file_is_one_error_naming_it(tmp_path):
    (tmp_path / "empty.npy").write_bytes(b"")
    np.save(tmp_path / "truncated.npy", _landmarks())
    (tmp_path / "truncated.npy").write_bytes((tmp_path / "truncated.npy").read_bytes()[:300])
    (tmp_path / "image.npy").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    cases = {"empty.npy": "EOF: reading magic string, expected 8 bytes got 0",
             "truncated.npy": re.escape("truncated: its header declares (68, 2) float64"),
             "image.npy": "the magic string is not correct"}
    for name, reason in cases.items():
        with pytest.raises(InputFileError, match=re.escape(f"{tmp_path / name}: not a .npy array of landmarks (")
                           + ".*" + reason):
            read_landmark_file(tmp_path / name)


def test_landmark_lookup_beside_the_image_or_under_the_landmarks_folder(tmp_path):
    image = tmp_path / "photos/sub/face.jpg"
    _write_image(image)
    assert find_landmark_file(image) is None
    np.save(image.with_suffix(".npy"), _landmarks())
    (image.with_suffix(".pts")).write_text("")
    assert find_landmark_file(image) == image.with_suffix(".pts")  # .pts first
    other = tmp_path / "lms/sub/face.txt"
    other.parent.mkdir(parents=True)
    np.savetxt(other, _landmarks())
    assert find_landmark_file(image, tmp_path / "photos", tmp_path / "lms") == other


def test_landmark_file_suffixes_match_in_any_case(tmp_path, model):
    photos = tmp_path / "photos"
    _good_photos(photos, model, names="a", size=64)
    points = np.loadtxt(photos / "a.txt")
    for name in ("UP.PNG", "Mixed.png"):
        shutil.copy(photos / "a.png", photos / name)
    (photos / "UP.PTS").write_text("version: 1\nn_points: 68\n{\n" + "".join(f"{x + 1} {y + 1}\n" for x, y in points)
                                   + "}\n")
    np.savetxt(photos / "Mixed.Txt", points)
    assert find_landmark_file(photos / "UP.PNG") == photos / "UP.PTS"
    assert find_landmark_file(photos / "Mixed.png") == photos / "Mixed.Txt"
    assert find_landmark_file(photos / "Mixed.png", photos, tmp_path / "elsewhere") is None  # no such folder
    summary = fit_photos(photos, tmp_path / "out", workers=1, progress=False)
    assert (summary["written"], summary["failed"]) == (3, 0)
    for name in ("UP", "Mixed"):
        np.testing.assert_allclose(scipy.io.loadmat(tmp_path / "out" / f"{name}.mat")["pt2d"], points.T, atol=1e-9)


def test_of_several_mixed_case_landmark_spellings_the_one_that_sorts_last_wins(tmp_path):
    """On a case-sensitive file system several spellings can sit side by side: lower or upper case of any suffix
    first, then per suffix in order the mixed spelling that sorts last, skipped when it is not a file."""
    (tmp_path / "probe").write_text("")
    if (tmp_path / "PROBE").exists():
        pytest.skip("the file system ignores case")
    for name in ("a.Pts", "a.pTs", "a.PTs", "b.Pts", "b.TXT", "c.pTs", "c.Txt", "d.Npy"):
        (tmp_path / name).write_text("")
    (tmp_path / "c.ptS").mkdir()  # sorts after c.pTs: .pts has none, .txt's comes next
    (tmp_path / "e.Mat").symlink_to(tmp_path / "d.Npy")
    expected = {"a": "a.pTs", "b": "b.TXT", "c": "c.Txt", "d": "d.Npy", "e": "e.Mat", "f": None}
    assert {stem: find_landmark_file(tmp_path / f"{stem}.jpg") for stem in expected} == \
        {stem: name and tmp_path / name for stem, name in expected.items()}


def test_photos_without_landmark_files_list_each_folder_at_most_once_per_run(tmp_path, capsys, monkeypatch):
    """However many photos of a folder have no landmark file (a forgotten --landmarks), the folder beside them or
    under --landmarks is listed at most once in a run: looking a photo's file up costs the same in a folder of
    100k photos as in one of 10."""
    photos, lms = tmp_path / "photos", tmp_path / "lms"
    rels = [f"{folder}p{k:02d}" for folder in ("", "sub/") for k in range(12)]
    for rel in rels:
        _write_image(photos / f"{rel}.png", size=16)
    (lms / "sub").mkdir(parents=True)
    listed = []

    def counted(real):
        def listing(path="."):
            listed.append(path)
            return real(path)
        return listing

    monkeypatch.setattr(os, "listdir", counted(os.listdir))
    monkeypatch.setattr(os, "scandir", counted(os.scandir))
    for landmarks, where in ((None, "beside it"), (lms, f"under {lms}")):
        listed.clear()
        out = tmp_path / f"out_{where.split()[0]}"
        argv = ["fit", "--images", str(photos), "--output", str(out), "--workers", "1", "--quiet"]
        assert main(argv + ["--landmarks", str(landmarks)] * (landmarks is not None)) == 1
        capsys.readouterr()
        counts = {folder: sum(1 for path in listed if not isinstance(path, int) and Path(path) == folder)
                  for folder in (photos, photos / "sub", lms, lms / "sub")}
        assert max(counts.values()) <= 1, counts
        summary = json.loads((out / "summary.json").read_text())
        assert sorted((f["image"], f["reason"]) for f in summary["failures"]) == sorted(
            (str(photos / f"{rel}.png"), f"{photos / rel}.png: no landmark file {Path(rel).name}"
                                         f"{{.pts,.txt,.npy,.mat}} {where}") for rel in rels)


def test_ibug_mirror_order_is_the_models_symmetry(model):
    pairs = np.asarray(model.info["symlist"], dtype=np.int64)
    mirror = np.arange(model.nver)
    mirror[pairs[0]], mirror[pairs[1]] = pairs[1], pairs[0]
    kpt = np.asarray(model.kpt_ind)
    np.testing.assert_array_equal(mirror[kpt], kpt[IBUG_MIRROR])  # the embedded model is exactly symmetric
    info_path = FIXTURES / "BFM" / "Out" / "BFM_info.mat"
    if not info_path.is_file():
        pytest.skip("BFM_info.mat not in the fixtures")
    info = load_BFM_info(info_path)
    pairs, kpt = np.asarray(info["symlist"], dtype=np.int64), np.asarray(info["kpt_ind"]).reshape(-1).astype(int)
    mirror = np.arange(kpt.max() + pairs.max() + 1)
    mirror[pairs[0]], mirror[pairs[1]] = pairs[1], pairs[0]
    # the real BFM: every keypoint's mirror vertex is its partner's, except at the four mouth corners
    assert np.nonzero(mirror[kpt] != kpt[IBUG_MIRROR])[0].tolist() == [48, 54, 60, 64]


def test_discovery_sorts_mirrors_and_reports_stem_clashes(tmp_path):
    for rel in ("b.jpg", "a/x.png", "a/x.jpg", ".hidden/h.jpg", "out/o.jpg", "notes.txt"):
        _write_image(tmp_path / rel) if not rel.endswith(".txt") else (tmp_path / rel).write_text("")
    photos, clashes = discover_photos(tmp_path, exclude=[tmp_path / "out"])
    assert [(p.rel, Path(p.image_path).name) for p in photos] == [("a/x", "x.jpg"), ("b", "b.jpg")]
    assert [(Path(p.image_path).name, reason) for p, reason in clashes] == [
        ("x.png", "same stem as x.jpg, whose fit it would overwrite")]


# ------------------------------------------------------------------------------------------------ real fixtures


@pytest.mark.skipif(not (FIXTURES / "AFLW2000").is_dir(), reason="real-format fixtures not available")
def test_real_fixtures_fit_within_3_percent_and_generate(tmp_path, model, capsys):
    photos = tmp_path / "photos"
    shutil.copytree(FIXTURES / "AFLW2000", photos / "AFLW2000")  # pt3d_68 (3, 68) in the .mat beside each image
    shutil.copytree(FIXTURES / "300W_LP", photos / "300W_LP")    # pt2d (2, 68)
    out = tmp_path / "fitted"
    assert main(["fit", "--images", str(photos), "--output", str(out), "--workers", "1", "--quiet"]) == 0
    assert "written 3," in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["written"], summary["failed"], summary["dropped"]) == (3, 0, 0)
    for rel, key in (("AFLW2000/image00050", "pt3d_68"), ("AFLW2000/image00081", "pt3d_68"),
                     ("300W_LP/IBUG_image_008_1_0", "pt2d")):
        source = scipy.io.loadmat(photos / f"{rel}.mat")
        mat = scipy.io.loadmat(out / f"{rel}.mat")
        assert mat["Pose_Para"].shape == (1, 7) and mat["Pose_Para"].dtype == np.float32
        assert mat["Shape_Para"].shape == (model.n_shape_para, 1) and mat["Exp_Para"].shape == (model.n_exp_para, 1)
        assert mat["roi"].shape == (1, 4) and mat["roi"].dtype == np.int16
        np.testing.assert_array_equal(mat["pt2d"], source[key][:2].astype(np.float64))
        recomputed = _contour_nme(model, mat, 450)
        assert recomputed <= mat["fit_nme"][0, 0] + 1e-9  # the nearest contour vertex is at least as close
        assert mat["fit_nme"][0, 0] < 0.03 and summary["fit_nme"][rel] == pytest.approx(mat["fit_nme"][0, 0])
        image_out = out / f"{rel}.jpg"
        assert image_out.stat().st_ino == (photos / f"{rel}.jpg").stat().st_ino  # a hard link, not a copy
    trainset = tmp_path / "trainset"
    assert main(["generate", "--root", str(out), "--output", str(trainset), "--resolution", "64", "--angles",
                 "--workers", "1", "--quiet"]) == 0
    generated = json.loads((trainset / "summary.json").read_text())
    assert (generated["samples"], generated["written"], generated["failed"]) == (3, 3, 0)
    maps = [p for p in trainset.rglob("*.npy") if p.parent.name != "uv-data"]  # uv-data/ holds canonical_vertices
    assert len(maps) == 3


# ------------------------------------------------------------------------------------------------ round trip


def test_round_trip_maps_within_1_5_px_up_to_75_degrees_yaw(tmp_path, capsys, monkeypatch):
    rendered, fitted = tmp_path / "rendered", tmp_path / "fitted"
    assert main(["synthesize", "--output", str(rendered), "--count", "8", "--seed", "5", "--size", "450",
                 "--views", "1", "--no-flip"]) == 0  # eight different faces
    # The landmarks: each rendered face's projected 68 points, as a .npy file under a separate folder.
    landmarks = tmp_path / "landmarks"
    kept = []
    for mat_path in sorted((rendered / "SYNTH").glob("*.mat")):
        mat = scipy.io.loadmat(mat_path)
        if abs(np.rad2deg(mat["Pose_Para"][0, 1])) <= 75:
            kept.append((mat_path.stem, float(np.rad2deg(mat["Pose_Para"][0, 1]))))
            (landmarks / "SYNTH").mkdir(parents=True, exist_ok=True)
            np.save(landmarks / "SYNTH" / f"{mat_path.stem}.npy", mat["pt2d"].T)
        else:
            mat_path.with_suffix(".jpg").unlink()
            mat_path.unlink()
    yaws = [abs(y) for _, y in kept]
    assert len(kept) >= 5 and max(yaws) > 60 and min(yaws) < 30
    # The landmarks are exact projections: the fit is told so (0.5 px instead of a detector's 2 px). Chunks of 4
    # photos, so that --workers 2 runs two processes.
    monkeypatch.setattr(fitting_photos, "CHUNK_SIZE", 4)
    assert main(["fit", "--images", str(rendered), "--landmarks", str(landmarks), "--output", str(fitted),
                 "--landmark-noise", "0.5", "--workers", "2", "--quiet"]) == 0
    assert json.loads((fitted / "summary.json").read_text())["workers"] == 2
    words = ["--resolution", "256", "--angles", "--no-perturb", "--workers", "1", "--quiet"]
    assert main(["generate", "--root", str(rendered), "--output", str(tmp_path / "true_maps"), *words]) == 0
    assert main(["generate", "--root", str(fitted), "--output", str(tmp_path / "fit_maps"), *words]) == 0
    face = load_uv_data(tmp_path / "true_maps" / "uv-data").face_mask > 0
    errors = {}
    for stem, yaw in kept:
        true = np.load(tmp_path / "true_maps" / "SYNTH" / f"{stem}.npy").astype(np.float64)
        fit = np.load(tmp_path / "fit_maps" / "SYNTH" / f"{stem}.npy").astype(np.float64)
        errors[f"{stem} yaw {yaw:.0f}"] = np.linalg.norm((true - fit)[face][:, :2], axis=1)
    per_map = {name: float(e.mean()) for name, e in errors.items()}
    # Every map within 1.5 px: 0.38-0.94 px here (mean 0.55 px; 68 landmarks leave parts of the shape unobserved,
    # the worst map is the 74 degree face). The renderer and the fitter march the jaw by one rule; with different
    # rules, or with the fit assuming a detector's 2 px noise, one map was 1.6-1.8 px off.
    assert float(np.mean(np.concatenate(list(errors.values())))) < 0.8, per_map
    assert max(per_map.values()) < 1.5 and min(per_map.values()) > 0.05, per_map  # two fits, not one file twice


def test_exact_landmarks_are_reprojected_by_the_stored_parameters_without_an_offset(model):
    """The fit turns image rows into the model's y-up frame by the row flip ``y' = h - 1 - y`` that the stored
    parameters are placed with (``project_landmarks``, the 300W-LP convention). Fitted to the exact landmarks of
    rendered faces within 36 degrees of frontal, the 51 inner landmarks reprojected from the stored parameters have
    residuals of the prior's making that average out: their mean offset stays within 0.02 px here (<= 0.003 px
    measured), whereas a flip off by one row moves every landmark, and their mean, by 1 px in y."""
    from face3d.trainset.synthetic import synthesize_sample

    size = 96
    faces = [synthesize_sample(model, np.random.default_rng([9, i]), size, yaw_fraction=fraction)[1]
             for i, fraction in enumerate((0.3, 0.5, 0.7))]
    landmarks = np.array([face["pt2d"].T for face in faces])
    fits = fit_landmarks(model, landmarks, [size] * len(faces), FitConfig(landmark_noise=0.5))
    for fit, points in zip(fits, landmarks):
        placed = project_landmarks(model, fit["Shape_Para"].T, fit["Exp_Para"].T,
                                   fit["Pose_Para"].astype(np.float64), model.kpt_ind[None], [size])[0]
        mean_offset = (placed - points)[17:].mean(axis=0)
        assert np.all(np.abs(mean_offset) < 0.02), mean_offset
        assert fit["fit_nme"][0, 0] < 0.01  # 0.30-0.35 % measured; about 3 % one row off


def test_aflw2000_pt3d_68_landmarks_are_fitted_without_jaw_marching(tmp_path, model):
    """AFLW2000-3D's pt3d_68 are the 68 landmark vertices projected: the far-side jaw points stay where those
    vertices are, hidden behind the cheek, instead of on the silhouette as in 300W-LP's pt2d. Fitted as silhouette
    landmarks, the faces below were 7.6-9.1 px off (dense mean); fitted as the vertices they are, 1.1-1.2 px."""
    rng = np.random.default_rng(3)
    photos, out, height = tmp_path / "photos", tmp_path / "out", 450
    every = np.arange(model.nver)[None]
    truth = {}
    for name, yaw in (("left", -60), ("right", 60)):
        shape = rng.standard_normal(model.n_shape_para) * model.model["shapeEV"][:, 0]
        exp = rng.standard_normal(model.n_exp_para) * model.model["expEV"][:, 0]
        pose = np.array([[0.05, np.radians(yaw), 0.03, 225, 225, 0, 1.4e-3]])
        truth[name] = project_landmarks(model, shape[None], exp[None], pose, every, [height])[0]
        _write_image(photos / f"{name}.jpg", size=height)
        scipy.io.savemat(photos / f"{name}.mat", {"pt3d_68": np.vstack([truth[name][model.kpt_ind].T,
                                                                       np.zeros(68)])})
    assert fit_photos(photos, out, workers=1, progress=False)["written"] == 2
    for name, vertices in truth.items():
        mat = scipy.io.loadmat(out / f"{name}.mat")
        fitted = project_landmarks(model, mat["Shape_Para"].T, mat["Exp_Para"].T,
                                   mat["Pose_Para"].astype(np.float64), every, [height])[0]
        error = np.linalg.norm(fitted - vertices, axis=1).mean()
        assert error < 2.0, (name, error)


def test_flip_copies_mirrored_landmarks_are_fitted_in_ibug_order(tmp_path, model, caplog, monkeypatch):
    rendered, fitted = tmp_path / "rendered", tmp_path / "fitted"
    assert main(["synthesize", "--output", str(rendered), "--count", "4", "--seed", "5", "--size", "450",
                 "--views", "1"]) == 0  # two faces and their _Flip copies, whose pt2d is mirrored, not re-ordered
    # the .mat beside each image is its landmark file (its pt2d)
    assert main(["fit", "--images", str(rendered), "--output", str(fitted), "--landmark-noise", "0.5",
                 "--workers", "1", "--quiet"]) == 0
    words = ["--resolution", "256", "--angles", "--no-perturb", "--workers", "1", "--quiet"]
    assert main(["generate", "--root", str(rendered), "--output", str(tmp_path / "true_maps"), *words]) == 0
    assert main(["generate", "--root", str(fitted), "--output", str(tmp_path / "fit_maps"), *words]) == 0
    face = load_uv_data(tmp_path / "true_maps" / "uv-data").face_mask > 0
    for folder in ("SYNTH", "SYNTH_Flip"):
        for mat_path in sorted((rendered / folder).glob("*.mat")):
            given = scipy.io.loadmat(mat_path)["pt2d"]
            written = scipy.io.loadmat(fitted / folder / mat_path.name)["pt2d"]
            np.testing.assert_array_equal(written, given[:, IBUG_MIRROR] if folder == "SYNTH_Flip" else given)
            mirrored = f"{fitted.parent / 'rendered' / folder / mat_path.stem}.jpg: its landmarks are in mirrored"
            assert (mirrored in caplog.text) == (folder == "SYNTH_Flip")
            true = np.load(tmp_path / "true_maps" / folder / f"{mat_path.stem}.npy").astype(np.float64)
            fit = np.load(tmp_path / "fit_maps" / folder / f"{mat_path.stem}.npy").astype(np.float64)
            error = np.linalg.norm((true - fit)[face][:, :2], axis=1).mean()
            assert error < 1.5, (folder, mat_path.stem, error)  # a fit of the face seen from behind: 110 px

    # landmarks that no order turns towards the camera are refused
    monkeypatch.setattr(fitting_photos, "MIN_FACING", 1.5)
    landmarks = scipy.io.loadmat(rendered / "SYNTH" / "SYNTH_0000_1_0.mat")["pt2d"].T
    with pytest.raises(ValueError, match="turned away from the camera with the landmarks in either order"):
        fit_landmarks(model, landmarks[None], [450])


def test_transposed_or_y_up_landmarks_fail_their_photo(tmp_path, model):
    """(row, col) or y-up copies of a face's landmarks fit in mirrored order (as a _Flip file's) a face rotated by
    about -90 - r or 180 - r degrees in the image (r: the face's own rotation): refused. The same face with its
    photo turned upside down, landmarks in iBUG order, is kept as it is."""
    photos = tmp_path / "photos"
    _good_photos(photos, model, names="a", size=64)
    points, image = np.loadtxt(photos / "a.txt"), cv2.imread(str(photos / "a.png"))
    copies = {"yup": np.column_stack([points[:, 0], 63 - points[:, 1]]), "rowcol": points[:, ::-1],
              "upside_down": 63 - points}
    for name, landmarks in copies.items():
        cv2.imwrite(str(photos / f"{name}.png"), image[::-1, ::-1] if name == "upside_down" else image)
        np.savetxt(photos / f"{name}.txt", landmarks)
    out = tmp_path / "out"
    # upside down, the face fits 6 % off instead of 0.7 %: the jaw marching looks for an upright face's silhouette
    # (without it both fit 1.5 % off)
    summary = fit_photos(photos, out, config=FitConfig(max_fit_error=0.1), workers=1, progress=False)
    assert (summary["written"], summary["failed"]) == (2, 2)
    tilt = {name: fitting_photos._tilt(fitting_photos._rotations(scipy.io.loadmat(out / f"{name}.mat")["Pose_Para"]))
            [0] for name in ("a", "upside_down")}
    assert 10 < tilt["a"] < 20 and abs((tilt["upside_down"] - tilt["a"]) % 360 - 180) < 10, tilt
    reasons = {Path(f["image"]).name: f["reason"] for f in summary["failures"]}
    assert sorted(reasons) == ["rowcol.png", "yup.png"]
    for name, expected in (("rowcol", -90 - tilt["a"]), ("yup", 180 - tilt["a"])):
        reason = re.fullmatch(re.escape(f"{photos / name}.png: the fit failed (the landmarks look transposed (row, "
                                        "col) or y-up: in iBUG order they fit a face turned away from the camera, in "
                                        "mirrored order (a 300W-LP _Flip file's) a face rotated by ")
                              + r"(-?\d+) degrees in the image\)", reasons[f"{name}.png"])
        assert reason, reasons[f"{name}.png"]
        assert abs((int(reason[1]) - expected + 180) % 360 - 180) < 10, (name, reason[1], expected)


def test_photo_names_with_dots_keep_their_whole_stem(tmp_path, model):
    from face3d.trainset.synthetic import synthesize_sample

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, name in enumerate(("face.v1", "face.v2")):
        image, mat = synthesize_sample(model, np.random.default_rng([7, i]), 96, yaw_fraction=0.3)
        cv2.imwrite(str(photos / f"{name}.png"), image[..., ::-1])
        np.savetxt(photos / f"{name}.txt", mat["pt2d"].T)
    summary = fit_photos(photos, tmp_path / "out", model_path=None, workers=1, progress=False)
    assert summary["written"] == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.suffix in (".png", ".mat")) == [
        "face.v1.mat", "face.v1.png", "face.v2.mat", "face.v2.png"]
    assert fit_photos(photos, tmp_path / "out", model_path=None, workers=1, progress=False)["skipped"] == 2


# ------------------------------------------------------------------------------------------------ batch behaviour


def _photo_tree(root, model):
    """good/{a,b}: rendered faces with exact landmarks; bad: no landmarks, undecodable, 60 landmarks, all 68 at one
    point; wild: a face whose landmarks the model cannot explain."""
    from face3d.trainset.synthetic import synthesize_sample

    for i, name in enumerate(("good/a", "good/b")):
        image, mat = synthesize_sample(model, np.random.default_rng([9, i]), 96, yaw_fraction=0.4 + 0.1 * i)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / f"{name}.png"), image[..., ::-1])
        np.savetxt(root / f"{name}.txt", mat["pt2d"].T)
    _write_image(root / "bad/no_landmarks.jpg")
    (root / "bad/corrupt.jpg").write_bytes(b"not a jpeg")
    np.savetxt(root / "bad/corrupt.txt", _landmarks())
    _write_image(root / "bad/short.jpg")
    np.savetxt(root / "bad/short.txt", _landmarks()[:60])
    _write_image(root / "bad/flat.jpg")
    np.savetxt(root / "bad/flat.txt", np.full((68, 2), 40.0))
    _write_image(root / "wild.jpg")
    np.savetxt(root / "wild.txt", _landmarks(seed=4))


def test_bad_inputs_are_skipped_wild_fits_dropped_and_reruns_resume(tmp_path, model, capsys):
    photos, out = tmp_path / "photos", tmp_path / "out"
    _photo_tree(photos, model)
    argv = ["fit", "--images", str(photos), "--output", str(out), "--workers", "1", "--quiet",
            "--max-fit-error", "0.04"]
    assert main(argv) == 1  # something failed
    text = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["photos"], summary["written"], summary["dropped"], summary["failed"]) == (7, 2, 1, 4)
    reasons = {Path(f["image"]).name: f["reason"] for f in summary["failures"]}
    assert "no landmark file no_landmarks{.pts,.txt,.npy,.mat} beside it" in reasons["no_landmarks.jpg"]
    assert "cannot decode the image" in reasons["corrupt.jpg"]
    assert "short.txt: expected 68 landmarks" in reasons["short.jpg"]
    assert "flat.txt: the 68 landmarks are degenerate" in reasons["flat.jpg"]
    assert [Path(d["image"]).name for d in summary["dropped_images"]] == ["wild.jpg"]
    assert summary["fit_nme"]["wild"] > 0.04 > max(summary["fit_nme"]["good/a"], summary["fit_nme"]["good/b"])
    assert "dropped" in text and "wild.jpg" in text
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and DONE_DIR not in p.parts) \
        == [".fit.lock", "good/a.mat", "good/a.png", "good/b.mat", "good/b.png", "summary.json"]
    assert not [p for p in out.rglob("*") if p.name.endswith(TEMP_SUFFIX)]
    stamp = (out / "good/a.mat").stat().st_mtime_ns

    assert main(argv) == 1  # the failures are retried (and fail again); the rest is done
    text = capsys.readouterr().out
    again = json.loads((out / "summary.json").read_text())
    # each photo counted once: skipped (written before), dropped (the earlier fit of wild.jpg), failed
    assert (again["written"], again["skipped"], again["dropped"], again["failed"]) == (0, 2, 1, 4)
    assert again["fit_nme"] == summary["fit_nme"] and again["dropped_images"] == summary["dropped_images"]
    assert again["dropped"] == len(again["dropped_images"]) and again["samples"] == 2
    assert "written 0, skipped 2 (already done), dropped 1 (fit NME > 4 %), failed 4;" in text
    assert (out / "good/a.mat").stat().st_mtime_ns == stamp

    # Finished images are journal lines, not a file each; a resume checks their files: a lost output is redone
    assert {p.name.split(".")[0] for p in (out / DONE_DIR).iterdir()} == {"journal"}
    (out / "good/b.mat").unlink()
    assert main(argv) == 1
    third = json.loads((out / "summary.json").read_text())
    assert (third["written"], third["skipped"], third["dropped"], third["failed"]) == (1, 1, 1, 4)
    assert (out / "good/b.mat").is_file()
    assert third["fit_nme"] == pytest.approx(summary["fit_nme"], rel=1e-6)  # b now fitted alone, not in a chunk
    assert (out / "good/a.mat").stat().st_mtime_ns == stamp

    # A looser threshold is another run: the wild fit is now kept
    assert main(argv[:-1] + ["0.9"]) == 1
    assert (out / "wild.mat").is_file() and json.loads((out / "summary.json").read_text())["written"] == 3


def test_a_fit_is_dropped_just_above_max_fit_error_and_written_at_or_below_it(tmp_path, model):
    """``max_fit_error`` is the NME above which a fit is dropped: the same photo is dropped with the threshold at
    0.9 times its fit's NME, written at 1.1 times, and written with the threshold at exactly its NME (only a larger
    NME drops). One photo fitted alone gives bit for bit the same NME in every run: the same arithmetic on the same
    numbers."""
    photos = tmp_path / "photos"
    _good_photos(photos, model, names="a")
    nme = fit_photos(photos, tmp_path / "first", workers=1, progress=False)["fit_nme"]["a"]

    def fit_with(max_fit_error, out):
        summary = fit_photos(photos, tmp_path / out, config=FitConfig(max_fit_error=max_fit_error), workers=1,
                             progress=False)
        assert summary["fit_nme"]["a"] == nme
        return summary["written"], summary["dropped"], (tmp_path / out / "a.mat").is_file()

    assert fit_with(0.9 * nme, "below") == (0, 1, False)
    assert fit_with(nme, "at") == (1, 0, True)
    assert fit_with(1.1 * nme, "above") == (1, 0, True)


def _good_photos(root, model, names="ab", size=96):
    """Rendered faces ``<name>.png`` (size x size) with their exact landmarks ``<name>.txt``."""
    from face3d.trainset.synthetic import synthesize_sample

    root.mkdir()
    for i, name in enumerate(names):
        image, mat = synthesize_sample(model, np.random.default_rng([9, i]), size, yaw_fraction=0.4 + 0.1 * i)
        cv2.imwrite(str(root / f"{name}.png"), image[..., ::-1])
        np.savetxt(root / f"{name}.txt", mat["pt2d"].T)


def test_every_image_format_read_is_fitted_and_the_others_counted_in_one_warning(tmp_path, model, caplog):
    photos, out = tmp_path / "photos", tmp_path / "out"
    _good_photos(photos, model, names="ab")
    cv2.imwrite(str(photos / "b.bmp"), cv2.imread(str(photos / "b.png")))  # BMP, as face3d demo reads it
    (photos / "b.png").unlink()
    for name in ("c.webp", "d.tif", "sub/e.TIFF"):
        (photos / name).parent.mkdir(exist_ok=True)
        cv2.imwrite(str(photos / name), np.full((8, 8, 3), 128, dtype=np.uint8))
    with caplog.at_level(logging.WARNING, logger="face3d"):
        summary = fit_photos(photos, out, workers=1, progress=False)
    assert (summary["photos"], summary["written"], summary["failed"]) == (2, 2, 0)
    assert sorted(p.name for p in out.iterdir()) == [".done", ".fit.lock", "a.mat", "a.png", "b.bmp", "b.mat",
                                                     "summary.json"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{photos}: 3 image files left out (1 .tif, 1 .tiff, 1 .webp): the images read are .jpg/.jpeg/.png/.bmp files"]


def test_a_photo_whose_name_generate_refuses_fails_and_its_fits_generate(tmp_path, model, capsys, caplog):
    photos, out = tmp_path / "photos", tmp_path / "out"
    _good_photos(photos, model, names="ab")
    os.rename(photos / "b.png", photos / "IMG 0001.png")
    os.rename(photos / "b.txt", photos / "IMG 0001.txt")
    shutil.copytree(photos, photos / "sub folder", ignore=lambda folder, names: ["sub folder"])
    with caplog.at_level(logging.WARNING, logger="face3d"):
        assert main(["fit", "--images", str(photos), "--output", str(out), "--workers", "1", "--quiet"]) == 1
    reason = ("the name contains whitespace, which separates the two paths of a label line; rename it (face3d "
              "generate refuses such a sample)")
    refused = [photos / "IMG 0001.png", photos / "sub folder/IMG 0001.png", photos / "sub folder/a.png"]
    assert [r.getMessage() for r in caplog.records] == [f"skipping {path}: {reason}" for path in refused]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["photos"], summary["written"], summary["failed"]) == (4, 1, 3)
    assert summary["failures"] == [{"image": str(path), "reason": reason} for path in refused]
    assert capsys.readouterr().out.splitlines()[0].startswith("photos 4: written 1, skipped 0 (already done), "
                                                              "dropped 0 (fit NME > 5 %), failed 3;")
    assert sorted(p.name for p in out.iterdir()) == [".done", ".fit.lock", "a.mat", "a.png", "summary.json"]
    trainset = tmp_path / "trainset"
    assert main(["generate", "--root", str(out), "--output", str(trainset), "--resolution", "16", "--angles",
                 "--workers", "1", "--quiet"]) == 0
    assert json.loads((trainset / "summary.json").read_text())["written"] == 1


def _journal_records(out):
    """{journal path: [its records]} of a fit's output folder."""
    return {path: [json.loads(line) for line in path.read_text().splitlines()] for path in (out / DONE_DIR).iterdir()}


def test_a_refused_photo_keeps_no_output_of_a_run_that_fitted_it(tmp_path, model, caplog):
    """Outputs and a record of ``b c``, as a release that did not refuse whitespace left them: removed, logged and
    journalled as redone, so that generate takes the folder and the photo, once renamed, is fitted again."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    _good_photos(photos, model, names="ab")
    assert fit_photos(photos, out, workers=1, progress=False)["written"] == 2
    for name in ("b.png", "b.txt"):
        os.rename(photos / name, photos / name.replace("b", "b c"))
    for name in ("b.png", "b.mat"):
        os.rename(out / name, out / name.replace("b", "b c"))
    for path, records in _journal_records(out).items():
        path.write_text("".join(json.dumps({**record, "sample": "b c", "outputs": ["b c.mat", "b c.png"],
                                            "files": {k.replace("b", "b c"): v for k, v in record["files"].items()}}
                                           if record["sample"] == "b" else record) + "\n" for record in records))
    with caplog.at_level(logging.WARNING, logger="face3d"):
        summary = fit_photos(photos, out, workers=1, progress=False)
    assert (summary["photos"], summary["skipped"], summary["failed"], summary["samples"]) == (2, 1, 1, 1)
    assert [r.getMessage() for r in caplog.records] == [
        f"skipping {photos / 'b c.png'}: the name contains whitespace, which separates the two paths of a label "
        f"line; rename it (face3d generate refuses such a sample)",
        f"{photos / 'b c.png'}: removed its outputs of an earlier run (b c.mat, b c.png): its name is refused"]
    assert sorted(p.name for p in out.iterdir()) == [".done", ".fit.lock", "a.mat", "a.png", "summary.json"]
    assert read_journals(out)["b c"]["redo"] is True
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="face3d"):
        assert fit_photos(photos, out, workers=1, progress=False)["skipped"] == 1
    assert [r.getMessage() for r in caplog.records] == [summary["failures"][0]["image"].join(("skipping ", ": "))
                                                        + summary["failures"][0]["reason"]]
    assert main(["generate", "--root", str(out), "--output", str(tmp_path / "trainset"), "--resolution", "16",
                 "--angles", "--workers", "1", "--quiet"]) == 0
    for name in ("b c.png", "b c.txt"):
        os.rename(photos / name, photos / name.replace(" ", "_"))
    assert fit_photos(photos, out, workers=1, progress=False)["written"] == 1
    assert sorted(p.name for p in out.iterdir()) == [".done", ".fit.lock", "a.mat", "a.png", "b_c.mat", "b_c.png",
                                                     "summary.json"]


def test_a_refused_photo_without_a_record_leaves_the_files_of_its_name_alone(tmp_path, model):
    """No run of fit wrote outputs for ``x y``: files of its names in the output folder are the user's."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    _good_photos(photos, model, names="a")
    for name in ("a.png", "a.txt"):
        os.link(photos / name, photos / name.replace("a", "x y"))
    out.mkdir()
    (out / "x y.png").write_bytes(b"the user's own file")
    summary = fit_photos(photos, out, workers=1, progress=False)
    assert (summary["written"], summary["failed"]) == (1, 1)
    assert (out / "x y.png").read_bytes() == b"the user's own file"


def test_journal_names_with_a_path_separator_name_no_earlier_file():
    """A damaged or hand-edited journal line must not send a removal into another folder."""
    record = {"files": {"a.mat": [1, 2], "../b.mat": [1, 2], "sub/c.png": [1, 2]}}
    assert earlier_files(record) == ["a.mat"]
    assert earlier_files({"sample": "a", "redo": True, "earlier_files": ["a.png", "../../victim.txt"]}) == ["a.png"]


def test_a_replaced_photo_is_refitted_and_its_earlier_copy_removed(tmp_path, model, caplog):
    photos, out = tmp_path / "photos", tmp_path / "out"
    _good_photos(photos, model, names="ab")
    assert fit_photos(photos, out, workers=1, progress=False)["written"] == 2
    # another file of the stem: b.png deleted, a BMP of another picture written
    (photos / "b.png").unlink()
    cv2.imwrite(str(photos / "b.bmp"), cv2.imread(str(photos / "a.png")))
    with caplog.at_level(logging.INFO, logger="face3d.fitting.photos"):
        rerun = fit_photos(photos, out, workers=1, progress=False)
    assert (rerun["written"], rerun["skipped"]) == (1, 1)
    assert f"refitting {photos / 'b.bmp'}: its image is now b.bmp, not b.png" in caplog.text
    assert sorted(p.name for p in out.iterdir()) == [".done", ".fit.lock", "a.mat", "a.png", "b.bmp", "b.mat",
                                                     "summary.json"]
    assert (out / "b.bmp").read_bytes() == (photos / "b.bmp").read_bytes()
    # another picture moved onto a.png, the same name
    replacement = tmp_path / "other.png"
    cv2.imwrite(str(replacement), cv2.imread(str(photos / "b.bmp"))[:, ::-1])
    os.replace(replacement, photos / "a.png")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="face3d.fitting.photos"):
        rerun = fit_photos(photos, out, workers=1, progress=False)
    assert (rerun["written"], rerun["skipped"]) == (1, 1)
    assert f"refitting {photos / 'a.png'}: its image changed" in caplog.text
    assert (out / "a.png").read_bytes() == (photos / "a.png").read_bytes()
    assert fit_photos(photos, out, workers=1, progress=False)["skipped"] == 2
    # records of an earlier release name no image: they stand
    for path, records in _journal_records(out).items():
        path.write_text("".join(json.dumps({k: v for k, v in record.items() if k != "image"}) + "\n"
                                for record in records))
    cv2.imwrite(str(replacement), cv2.imread(str(photos / "b.bmp")))
    os.replace(replacement, photos / "a.png")
    assert fit_photos(photos, out, workers=1, progress=False)["skipped"] == 2


def _refuse(code):
    raise OSError(code, os.strerror(code))  # what a failed write or close raises: no file named


@pytest.mark.parametrize("refused", ["mat", "image copy"])
def test_a_full_disk_stops_the_fit_with_one_line_and_the_rerun_resumes(tmp_path, model, capsys, monkeypatch,
                                                                     refused):
    photos, out = tmp_path / "photos", tmp_path / "out"
    _good_photos(photos, model)
    argv = ["fit", "--images", str(photos), "--output", str(out), "--workers", "1", "--quiet"]
    save_mat, copy = fitting_photos.save_mat, shutil.copyfileobj
    if refused == "mat":  # a.mat is written, b.mat refused
        monkeypatch.setattr(fitting_photos, "save_mat", lambda f, mat: _refuse(errno.ENOSPC) if "b.mat" in f.name
                            else save_mat(f, mat))
    else:  # the output is on another file system (no hard links): b.png's copy is refused
        monkeypatch.setattr(os, "link", lambda *args: _refuse(errno.EXDEV))
        monkeypatch.setattr(shutil, "copyfileobj", lambda source, target: _refuse(errno.ENOSPC)
                            if source.name.endswith("b.png") else copy(source, target))
    failed = "b.mat" if refused == "mat" else "b.png"
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines() == [f"face3d fit: error: {out / failed}: No space left on device"]
    # nothing of b, no summary; the run's lock file stays
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == [".fit.lock", "a.mat", "a.png"]
    assert list(read_journals(out)) == ["a"]
    monkeypatch.undo()
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["written"], summary["skipped"], summary["failed"]) == (1, 1, 0)
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == [".fit.lock", "a.mat", "a.png", "b.mat", "b.png",
                                                                    "summary.json"]


@pytest.mark.parametrize("code", ["EXDEV", "EPERM", "ENOTSUP", "ENOSYS", "EACCES", "EMLINK"])
def test_a_photo_is_copied_where_the_file_system_makes_no_link(tmp_path, model, monkeypatch, code):
    """Another file system (EXDEV), links refused (EPERM, EACCES), unsupported (ENOTSUP; ENOSYS: a FUSE mount
    without a link operation) or the photo at its most links (EMLINK): the photo is copied, byte for byte."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    _good_photos(photos, model, names="a")
    monkeypatch.setattr(os, "link", lambda *args: _refuse(getattr(errno, code)))
    assert main(["fit", "--images", str(photos), "--output", str(out), "--workers", "1", "--quiet"]) == 0
    copy = out / "a.png"
    assert copy.read_bytes() == (photos / "a.png").read_bytes()
    assert copy.stat().st_ino != (photos / "a.png").stat().st_ino


def test_ctrl_c_as_a_photo_is_linked_in_leaves_no_partial_file(tmp_path, model, capsys, monkeypatch):
    """Ctrl-C (or SIGTERM, face3d.cli) arriving during the hard link of a photo's copy is raised as the call returns,
    the temporary link made."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    _good_photos(photos, model)
    link = os.link

    def linked_then_interrupted(source, target, **kwargs):
        link(source, target, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "link", linked_then_interrupted)
    assert main(["fit", "--images", str(photos), "--output", str(out), "--workers", "1", "--quiet"]) == 130
    assert capsys.readouterr().err == ("face3d fit: interrupted; finished images are kept: rerun the same command to "
                                       "resume\n")
    assert list(out.rglob("*")) == [out / ".fit.lock"]  # the photo was the first file of the run


def test_a_twin_another_run_links_to_the_photo_first_is_never_written_through(tmp_path, monkeypatch):
    """Two runs linking one photo into one output: the other run makes the hidden twin a link to the photo between
    this run's removal of the twin and its own link. That EEXIST fails the photo's outputs: a copy written through
    the twin would empty the photo."""
    photo, target = tmp_path / "a.jpg", tmp_path / "out" / "a.jpg"
    photo.write_bytes(b"the user's photo")
    target.parent.mkdir()
    link = os.link

    def linked_first_by_another_run(source, twin, **kwargs):
        link(source, twin)
        link(source, twin, **kwargs)

    monkeypatch.setattr(os, "link", linked_first_by_another_run)
    with pytest.raises(FileExistsError) as raised:
        fitting_photos._link_or_copy(photo, target)
    assert raised.value.filename == str(target)
    os.replace(temp_name(target), target)  # the other run goes on
    assert photo.read_bytes() == b"the user's photo"
    assert [p.name for p in target.parent.iterdir()] == ["a.jpg"]


def test_a_photo_linked_again_onto_its_own_link_leaves_no_twin(tmp_path):
    """Renaming the twin onto a link to the same file does nothing (POSIX): the twin is removed all the same."""
    photo, target = tmp_path / "a.jpg", tmp_path / "out" / "a.jpg"
    photo.write_bytes(b"the user's photo")
    target.parent.mkdir()
    os.link(photo, target)  # another run linked it in after this one removed the earlier copy
    fitting_photos._link_or_copy(photo, target)
    assert target.stat().st_ino == photo.stat().st_ino and photo.read_bytes() == b"the user's photo"
    assert [p.name for p in target.parent.iterdir()] == ["a.jpg"]


def test_a_worker_process_dying_on_a_photo_fails_that_photo_alone_and_the_rerun_completes(tmp_path, model,
                                                                                           monkeypatch, capsys):
    photos, out = tmp_path / "photos", tmp_path / "out"
    _good_photos(photos, model, names="abcde", size=64)
    monkeypatch.setattr(fitting_photos, "CHUNK_SIZE", 2)  # chunks [a, b], [c, d], [e] on 2 worker processes
    parent, read_input = os.getpid(), fitting_photos._read_input

    def read_or_die(state, ref):
        if ref.rel == "d" and os.getpid() != parent:
            os._exit(137)  # as the kernel's out-of-memory killer ends a worker
        return read_input(state, ref)

    monkeypatch.setattr(fitting_photos, "_read_input", read_or_die)
    argv = ["fit", "--images", str(photos), "--output", str(out), "--workers", "2", "--quiet"]
    assert main(argv) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["workers"], summary["written"], summary["failed"]) == (2, 4, 1)
    died = f"{photos / 'd.png'}: the worker process died on this sample (killed, or out of memory)"
    assert summary["failures"] == [{"image": str(photos / "d.png"), "reason": died}]
    assert f"failed {photos / 'd.png'}: {died}" in capsys.readouterr().out
    written = sorted(p.name for p in out.iterdir() if p.is_file())
    assert written == [".fit.lock"] + [f"{name}.{ext}" for name in "abce" for ext in ("mat", "png")] + ["summary.json"]
    # c refitted (its landmarks moved) in a chunk with d: its outputs are removed before d kills the worker, and
    # its earlier record must not pass for the refit
    moved = np.loadtxt(photos / "c.txt") + [1.0, 0.0]
    np.savetxt(photos / "c.txt", moved)
    (out / "e.mat").unlink()  # e redone as well: chunks [c, d], [e]
    assert main(argv) == 1
    rerun = json.loads((out / "summary.json").read_text())
    assert (rerun["written"], rerun["skipped"], rerun["failed"]) == (2, 2, 1)
    np.testing.assert_array_equal(scipy.io.loadmat(out / "c.mat")["pt2d"], moved.T)
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == written
    monkeypatch.setattr(fitting_photos, "_read_input", read_input)
    assert main(argv) == 0
    rerun = json.loads((out / "summary.json").read_text())
    assert (rerun["written"], rerun["skipped"], rerun["failed"]) == (1, 4, 0)


def test_landmarks_off_the_photo_fail_it_naming_the_file_and_the_image_size(tmp_path, model):
    """Landmarks annotated on a 2x larger photo than the one beside them, shifted off it in part, or absurdly large
    (which would overflow the int16 roi): fewer than the generator's 34 inside the image fail the photo."""
    photos = tmp_path / "photos"
    _good_photos(photos, model, names="a", size=64)
    points = np.loadtxt(photos / "a.txt")
    cases = {"large": points * 2, "huge": points * 1e12}
    for n_inside in (33, 34):
        cases[f"off{n_inside}"] = np.where(np.arange(68)[:, None] < 68 - n_inside, points + [1000.0, 0.0], points)
    for name, landmarks in cases.items():
        shutil.copy(photos / "a.png", photos / f"{name}.png")
        np.savetxt(photos / f"{name}.txt", landmarks)
    inside = int(np.sum(np.all((points * 2 >= 0) & (points * 2 <= 63), axis=1)))
    assert 0 < inside < GenerationConfig.min_visible_keypoints == 34
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow on the way
        summary = fit_photos(photos, tmp_path / "out", workers=1, progress=False)
    reasons = {Path(f["image"]).name: f["reason"] for f in summary["failures"]}
    outside = "face outside the image: {} of 68 landmarks lie inside the 64x64 image"
    assert reasons == {f"{name}.png": f"{photos / name}.txt: " + outside.format(count)
                       for name, count in (("large", inside), ("huge", 0), ("off33", 33))}
    assert summary["failed"] == 3 and "off34" in summary["fit_nme"]  # 34 inside: fitted (and dropped)


def test_the_failures_under_fits_summary_line_stop_at_20_and_name_summary_json(tmp_path, capsys):
    """Each failure is logged as it happens; under the summary line the first 20 are named again, then one line
    points to summary.json, which lists all 22."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    for k in range(22):  # no landmark file beside any
        _write_image(photos / f"p{k:02d}.png", size=16)
    assert main(["fit", "--images", str(photos), "--output", str(out), "--workers", "1", "--quiet"]) == 1
    reasons = [f"{photos / f'p{k:02d}.png'}: no landmark file p{k:02d}{{.pts,.txt,.npy,.mat}} beside it"
               for k in range(22)]
    assert capsys.readouterr().out.splitlines() == [
        f"photos 22: written 0, skipped 0 (already done), dropped 0 (fit NME > 5 %), failed 22; mean fit NME -; "
        f"0 samples in {out}",
        *[f"  failed {photos / f'p{k:02d}.png'}: {reasons[k]}" for k in range(20)],
        f"  ... and 2 more: see {out / 'summary.json'}"]
    summary = json.loads((out / "summary.json").read_text())
    assert [(f["image"], f["reason"]) for f in summary["failures"]] == \
        [(str(photos / f"p{k:02d}.png"), reasons[k]) for k in range(22)]


def test_a_photo_above_max_pixels_fails_naming_its_flag_and_a_raised_limit_fits_it(tmp_path, model, capsys):
    """A 12000 x 9000 phone photo (108 megapixels; its header alone) is above the default limit: it fails, named
    with --max-pixels. A limit one pixel under a 64 x 64 photo fails it too; a rerun with a limit of its size fits
    it, the settings' fingerprint unchanged (the limit decides which photos are refused, never a fit)."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    _good_photos(photos, model, names="a", size=64)
    (photos / "phone.png").write_bytes(png_header(12000, 9000))
    shutil.copy(photos / "a.txt", photos / "phone.txt")

    def fit(output, *flags):
        return main(["fit", "--images", str(photos), "--output", str(output), "--workers", "1", "--quiet", *flags])

    assert fit(out) == 1
    assert (f"  failed {photos / 'phone.png'}: {photos / 'phone.png'}: the image is 12000x9000 = 108000000 pixels, "
            "above the limit of 100000000 (--max-pixels)") in capsys.readouterr().out.splitlines()
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["written"], summary["failed"], summary["config"]["max_pixels"]) == (1, 1, 100_000_000)

    small = tmp_path / "small"
    assert fit(small, "--max-pixels", "4095") == 1
    assert (f"  failed {photos / 'a.png'}: {photos / 'a.png'}: the image is 64x64 = 4096 pixels, above the limit of "
            "4095 (--max-pixels)") in capsys.readouterr().out.splitlines()
    refused = json.loads((small / "summary.json").read_text())
    assert (refused["written"], refused["failed"], refused["fingerprint"]) == (0, 2, summary["fingerprint"])
    assert fit(small, "--max-pixels", "4096") == 1  # the phone photo still fails
    assert json.loads((small / "summary.json").read_text())["written"] == 1
    assert (small / "a.mat").is_file() and not (small / "phone.mat").exists()
    with pytest.raises(ValueError, match="^max_pixels must be at least 1, got 0$"):
        FitConfig(max_pixels=0)


def test_an_empty_npy_landmark_file_fails_its_photo_alone(tmp_path, model):
    from face3d.trainset.synthetic import synthesize_sample

    photos = tmp_path / "photos"
    photos.mkdir()
    image, mat = synthesize_sample(model, np.random.default_rng([9, 0]), 96, yaw_fraction=0.4)
    cv2.imwrite(str(photos / "good.png"), image[..., ::-1])
    np.save(photos / "good.npy", mat["pt2d"].T)
    _write_image(photos / "empty.jpg")
    (photos / "empty.npy").write_bytes(b"")
    summary = fit_photos(photos, tmp_path / "out", workers=1, progress=False)
    assert (summary["written"], summary["failed"]) == (1, 1)
    assert [(Path(f["image"]).name, f["reason"]) for f in summary["failures"]] == [
        ("empty.jpg", f"{photos / 'empty.npy'}: not a .npy array of landmarks "
                      "(EOF: reading magic string, expected 8 bytes got 0)")]


def test_a_changed_landmark_file_is_refitted_on_rerun(tmp_path, model):
    photos, out = tmp_path / "photos", tmp_path / "out"
    _photo_tree(photos, model)
    shutil.rmtree(photos / "bad")
    (photos / "wild.jpg").unlink()
    assert fit_photos(photos, out, workers=1, progress=False)["written"] == 2
    # the same number of bytes, other points: only the content tells
    landmarks = photos / "good/b.txt"
    size, moved = landmarks.stat().st_size, np.loadtxt(landmarks) + [3.0, 0.0]
    np.savetxt(landmarks, moved)
    assert landmarks.stat().st_size == size
    rerun = fit_photos(photos, out, workers=1, progress=False)
    assert (rerun["written"], rerun["skipped"]) == (1, 1)
    np.testing.assert_array_equal(scipy.io.loadmat(out / "good/b.mat")["pt2d"], moved.T)
    # another file of the photo's stem: a .pts is looked up before the .txt
    (photos / "good/b.pts").write_text("version: 1\nn_points: 68\n{\n"
                                         + "".join(f"{x + 1} {y + 1}\n" for x, y in moved + [0.0, 2.0]) + "}\n")
    rerun = fit_photos(photos, out, workers=1, progress=False)
    assert (rerun["written"], rerun["skipped"]) == (1, 1)
    np.testing.assert_allclose(scipy.io.loadmat(out / "good/b.mat")["pt2d"], (moved + [0.0, 2.0]).T, atol=1e-9)
    assert fit_photos(photos, out, workers=1, progress=False)["skipped"] == 2


def test_a_photo_whose_landmark_file_is_gone_fails_on_rerun_and_its_outputs_are_removed(tmp_path, model, caplog):
    """Without its landmark file a finished photo can no longer be fitted: a rerun does not keep its earlier fit as
    done but refits it, which fails naming the missing file, and its outputs go (generate would otherwise take a
    sample whose landmarks are gone); the other photo stays done."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    _good_photos(photos, model, names="ab")
    assert fit_photos(photos, out, workers=1, progress=False)["written"] == 2
    (photos / "b.txt").unlink()
    with caplog.at_level(logging.INFO, logger="face3d.fitting.photos"):
        rerun = fit_photos(photos, out, workers=1, progress=False)
    assert (rerun["written"], rerun["skipped"], rerun["failed"]) == (0, 1, 1)
    assert f"refitting {photos / 'b.png'}: its landmark file is gone" in caplog.text
    assert [(Path(f["image"]).name, f["reason"]) for f in rerun["failures"]] == [
        ("b.png", f"{photos / 'b.png'}: no landmark file b{{.pts,.txt,.npy,.mat}} beside it")]
    assert sorted(p.name for p in out.iterdir()) == [".done", ".fit.lock", "a.mat", "a.png", "summary.json"]


def test_records_of_an_earlier_release_stand_but_for_pt3d_68(tmp_path, model, caplog):
    """Journal lines written before the landmark file was recorded name none: their photos are not refitted, but
    those fitted from AFLW2000-3D's pt3d_68 are (that release marched their jaw landmarks)."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    _photo_tree(photos, model)
    shutil.rmtree(photos / "bad")
    (photos / "wild.jpg").unlink()
    points = np.loadtxt(photos / "good/b.txt")
    (photos / "good/b.txt").unlink()  # good/b's landmarks come from a .mat's pt3d_68 instead
    scipy.io.savemat(photos / "good/b.mat", {"pt3d_68": np.vstack([points.T, np.zeros(68)])})
    assert fit_photos(photos, out, workers=1, progress=False)["written"] == 2
    for journal in (out / DONE_DIR).iterdir():
        lines = [json.loads(line) for line in journal.read_text().splitlines()]
        assert all("landmarks" in record for record in lines)
        journal.write_text("".join(json.dumps({k: v for k, v in record.items() if k != "landmarks"}) + "\n"
                                   for record in lines))
    with caplog.at_level(logging.INFO, logger="face3d.fitting.photos"):
        rerun = fit_photos(photos, out, workers=1, progress=False)
    assert (rerun["written"], rerun["skipped"]) == (1, 1)
    assert "good/b.png: its pt3d_68 landmarks are now fitted without jaw marching" in caplog.text
    assert "good/a.png" not in caplog.text
    assert fit_photos(photos, out, workers=1, progress=False)["skipped"] == 2


def test_unreadable_folder_is_reported_and_fails_the_run(tmp_path, model, monkeypatch, capsys):
    photos, out = tmp_path / "photos", tmp_path / "out"
    _photo_tree(photos, model)
    deny_listing(monkeypatch, "bad")
    assert main(["fit", "--images", str(photos), "--output", str(out), "--workers", "1", "--quiet"]) == 1
    summary = json.loads((out / "summary.json").read_text())
    reason = "PermissionError: Permission denied"
    assert summary["unreadable_folders"] == [{"folder": str(photos / "bad"), "reason": reason}]
    assert (summary["written"], summary["dropped"], summary["failed"]) == (2, 1, 0)  # nothing of bad/ was seen
    assert f"cannot list {photos / 'bad'}: PermissionError: Permission denied" in capsys.readouterr().out


def test_workers_agree_and_detector_path(tmp_path, model, monkeypatch):
    photos = tmp_path / "photos"
    _photo_tree(photos, model)
    shutil.rmtree(photos / "bad")
    (photos / "wild.jpg").unlink()
    monkeypatch.setattr(fitting_photos, "CHUNK_SIZE", 1)  # two chunks: two worker processes
    one = fit_photos(photos, tmp_path / "one", config=FitConfig(), workers=1, progress=False)
    two = fit_photos(photos, tmp_path / "two", config=FitConfig(), workers=2, progress=False)
    assert (one["workers"], two["workers"]) == (1, 2)
    assert one["fit_nme"] == two["fit_nme"] and one["written"] == two["written"] == 2
    for rel in ("good/a", "good/b"):
        a, b = (scipy.io.loadmat(tmp_path / run / f"{rel}.mat") for run in ("one", "two"))
        for key in ("Pose_Para", "Shape_Para", "Exp_Para", "pt2d", "roi", "fit_nme"):
            np.testing.assert_array_equal(a[key], b[key])
        for name in (f"{rel}.mat", f"{rel}.png"):
            assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name

    # --detect: the landmarks come from the detector (a stand-in giving face a's points for every image), none
    # from files
    from face3d.prnet import detect

    points_a = np.loadtxt(photos / "good/a.txt")
    for txt in (photos / "good").glob("*.txt"):
        txt.unlink()

    class Landmarker:
        def __init__(self, kind):
            assert kind == "hog"

        def landmarks(self, image):
            return points_a

    monkeypatch.setattr(detect, "DlibLandmarker", Landmarker)
    detected = fit_photos(photos, tmp_path / "detected", config=FitConfig(detect="hog"), workers=1, progress=False)
    assert detected["written"] == 2 and detected["failed"] == 0
    assert detected["fit_nme"]["good/a"] == detected["fit_nme"]["good/b"] == one["fit_nme"]["good/a"]


def test_a_failing_batch_fit_is_redone_image_by_image(tmp_path, model, monkeypatch):
    """A singular system in the batched fit must not fail the chunk: each image is fitted alone, the one that
    fails again is reported, the others are written."""
    from face3d.fitting import photos as photos_module

    photos = tmp_path / "photos"
    _photo_tree(photos, model)
    shutil.rmtree(photos / "bad")
    (photos / "wild.jpg").unlink()
    real_fit = photos_module._fit_rows
    poisoned = np.loadtxt(photos / "good/b.txt")

    def fit(model, landmarks, heights, config, silhouette_jaw):
        if any(np.array_equal(points, poisoned) for points in landmarks):
            raise np.linalg.LinAlgError("Singular matrix")
        return real_fit(model, landmarks, heights, config, silhouette_jaw)

    monkeypatch.setattr(photos_module, "_fit_rows", fit)
    summary = fit_photos(photos, tmp_path / "out", workers=1, progress=False)
    assert (summary["written"], summary["failed"]) == (1, 1)
    assert summary["failures"][0]["reason"].endswith("b.png: the fit failed (Singular matrix)")
    assert (tmp_path / "out/good/a.mat").is_file() and not (tmp_path / "out/good/b.mat").exists()


def test_a_face_turned_away_fails_alone_without_refitting_its_chunk(tmp_path, model, monkeypatch):
    from face3d.fitting import photos as photos_module

    photos = tmp_path / "photos"
    _photo_tree(photos, model)
    shutil.rmtree(photos / "bad")
    (photos / "wild.jpg").unlink()
    points = np.stack([np.loadtxt(photos / f"good/{name}.txt") for name in "ab"])
    poses = np.concatenate([fit["Pose_Para"] for fit in fit_landmarks(model, points, [96, 96])])
    facing = photos_module._facing(photos_module._rotations(poses))
    assert facing[0] != facing[1]
    monkeypatch.setattr(photos_module, "MIN_FACING", facing.mean())  # one of the two counts as turned away
    real_fit, calls = photos_module._fit_rows, []

    def counted(*args):
        calls.append(len(args[1]))
        return real_fit(*args)

    monkeypatch.setattr(photos_module, "_fit_rows", counted)
    summary = fit_photos(photos, tmp_path / "out", workers=1, progress=False)
    assert (summary["written"], summary["failed"]) == (1, 1) and calls == [2]
    assert summary["failures"][0]["reason"].endswith("the fit failed (the fitted face is turned away from the camera "
                                                     "with the landmarks in either order (not the 68 iBUG landmarks "
                                                     "of one face?))")


def test_fit_command_errors(tmp_path, capsys):
    photos = tmp_path / "photos"
    _write_image(photos / "x.jpg")
    assert main(["fit", "--images", str(photos), "--output", str(photos), "--quiet"]) == 2
    assert capsys.readouterr().err == (f"face3d fit: error: {photos}: the output must be a folder other than the "
                                       f"images folder {photos} (its photos' copies would be taken for photos)\n")
    assert main(["fit", "--images", str(photos), "--output", str(photos / "." / "sub" / ".."), "--quiet"]) == 2
    assert "the output must be a folder other than the images folder" in capsys.readouterr().err
    assert main(["fit", "--images", str(tmp_path / "none"), "--output", str(tmp_path / "o"), "--quiet"]) == 2
    assert "images folder not found" in capsys.readouterr().err
    assert main(["fit", "--images", str(photos), "--landmarks", str(tmp_path / "none"), "--output",
                 str(tmp_path / "o"), "--quiet"]) == 2
    assert "landmarks folder not found" in capsys.readouterr().err
    assert main(["fit", "--images", str(photos), "--landmark-noise", "0", "--output", str(tmp_path / "o"),
                 "--quiet"]) == 2
    assert "landmark_noise must be a finite number of pixels > 0, got 0.0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", "--images", str(photos), "--landmarks", "x", "--detect", "--output", "o"])
    assert "not allowed with argument" in capsys.readouterr().err
    try:
        import dlib  # noqa: F401
    except ImportError:
        assert main(["fit", "--images", str(photos), "--detect", "--output", str(tmp_path / "o"), "--quiet"]) == 2
        assert "pip install 'face3d[detect]'" in capsys.readouterr().err


def test_fit_detect_without_dlib_names_the_extra_and_fit_s_own_flag(tmp_path, capsys, monkeypatch):
    photos = tmp_path / "photos"
    _write_image(photos / "x.jpg")
    monkeypatch.setitem(sys.modules, "dlib", None)  # as if dlib were not installed
    assert main(["fit", "--images", str(photos), "--detect", "--output", str(tmp_path / "o"), "--quiet"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert errors == ["face3d fit: error: face detection needs dlib (not installed): pip install "
                      "'face3d[detect]'; or give the photos' 68-landmark files (--landmarks DIR, default: beside "
                      "each image)"], errors
    assert not (tmp_path / "o").exists()


def test_fit_detect_names_the_model_file_it_lacks(tmp_path, capsys, monkeypatch):
    """dlib there, face_recognition_models too (its __init__ failing without pkg_resources), but not its shape
    predictor's file: the line names that file and where it was looked for."""
    photos = tmp_path / "photos"
    _write_image(photos / "x.jpg")
    install_fake_dlib(monkeypatch)
    models = install_models_package(monkeypatch, tmp_path / "site", files=[CNN_MODEL_FILE])
    assert main(["fit", "--images", str(photos), "--detect", "--output", str(tmp_path / "o"), "--quiet"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"face3d fit: error: 68-landmark detection (dlib's shape predictor) needs {SHAPE_PREDICTOR_FILE} from the "
        f"face_recognition_models package (not in {models}): pip install 'face3d[detect]'; or give the photos' "
        "68-landmark files (--landmarks DIR, default: beside each image)"]


def test_fit_detect_without_a_detector_leaves_the_finished_photos_done(tmp_path, model, capsys, monkeypatch):
    """--detect that cannot build its detector is status 2 before anything is written: the journal of an earlier
    run is untouched (no photo marked for redo), and the next run skips every finished photo."""
    from face3d.prnet import detect

    def unavailable(kind):
        raise detect.DetectorUnavailable("face detection needs dlib (not installed): pip install 'face3d[detect]'")

    photos, out = tmp_path / "photos", tmp_path / "out"
    _good_photos(photos, model)
    argv = ["fit", "--images", str(photos), "--output", str(out), "--workers", "1", "--quiet"]
    assert main(argv) == 0
    journal = {path.name: path.read_bytes() for path in (out / DONE_DIR).iterdir()}
    monkeypatch.setattr(detect, "DlibLandmarker", unavailable)
    assert main(argv + ["--detect"]) == 2
    assert {path.name: path.read_bytes() for path in (out / DONE_DIR).iterdir()} == journal
    assert main(["fit", "--images", str(photos), "--output", str(tmp_path / "fresh"), "--detect", "--quiet"]) == 2
    assert not (tmp_path / "fresh").exists()
    capsys.readouterr()
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["written"], summary["skipped"]) == (0, 2)
    assert "written 0, skipped 2 (already done)" in capsys.readouterr().out


@pytest.mark.parametrize("noise", ["inf", "nan", "-1"])
def test_landmark_noise_must_be_a_finite_positive_number(tmp_path, capsys, noise):
    with pytest.raises(ValueError, match=f"landmark_noise must be a finite number of pixels > 0, got {noise}"):
        FitConfig(landmark_noise=float(noise))
    photos = tmp_path / "photos"
    _write_image(photos / "x.jpg")
    np.savetxt(photos / "x.txt", _landmarks())
    out = tmp_path / "out"
    assert main(["fit", "--images", str(photos), "--output", str(out), "--landmark-noise", noise, "--quiet"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"face3d fit: error: landmark_noise must be a finite number of pixels > 0, got {float(noise)}"]
    assert not out.exists()


def test_no_images_or_a_missing_model_exit_2_before_the_output_folder_is_made(tmp_path, capsys, caplog):
    empty, webp_only, out = tmp_path / "empty", tmp_path / "webp_only", tmp_path / "out"
    empty.mkdir()
    webp_only.mkdir()
    cv2.imwrite(str(webp_only / "x.webp"), np.full((8, 8, 3), 128, dtype=np.uint8))  # not a format read
    np.savetxt(webp_only / "x.txt", _landmarks())
    for folder in (empty, webp_only):
        caplog.clear()
        assert main(["fit", "--images", str(folder), "--output", str(out), "--quiet"]) == 2
        assert capsys.readouterr().err.splitlines() == [
            f"face3d fit: error: {folder}: no .jpg/.jpeg/.png/.bmp images in this folder or below"]
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
            f"{webp_only}: 1 image file left out (1 .webp): the images read are .jpg/.jpeg/.png/.bmp files"] * (
            folder == webp_only)
        assert not out.exists()
    photos = tmp_path / "photos"
    _write_image(photos / "x.jpg")
    np.savetxt(photos / "x.txt", _landmarks())
    missing = tmp_path / "BFM.mat"
    assert main(["fit", "--images", str(photos), "--output", str(out), "--bfm", str(missing), "--quiet"]) == 2
    assert capsys.readouterr().err.splitlines() == [f"face3d fit: error: {missing}: BFM model file not found"]
    assert not out.exists()
