"""Dataset-scale generation (face3d.trainset.dataset) and the synthetic 300W-LP set (face3d.trainset.synthetic).

Budget < 40 s: a few synthetic samples at a 32-pixel resolution, one rotation pair, --workers 1 and 2.
"""
import dataclasses
import gc
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
from _fixtures import CTRL_C_RAISES, fixtures_dir

from face3d.mesh.transform import angle2matrix_3ddfa, similarity_transform
from face3d.trainset import dataset
from face3d.trainset.dataset import (
    DONE_DIR,
    TEMP_SUFFIX,
    UV_DATA_DIR,
    default_generator_factory,
    discover_samples,
    done_outputs,
    generate_dataset,
    label_file_name,
    parse_shard,
    pool_context,
    read_journals,
    sample_seed,
    select_shard,
)
from face3d.trainset.outputs import Journal
from face3d.trainset.sample import GenerationConfig
from face3d.trainset.synthetic import FLIP_FOLDER, LOCK_FILE, RECORD_FILE, SYNTH_FOLDER, synthesize_dataset
from face3d.trainset.uv_layout import CANONICAL_FILE, UV_DATA_FILES
from face3d.trainset.worker_pool import run_tasks
from face3d.utils.errors import InputFileError

REPO = Path(__file__).resolve().parents[1]
N_SAMPLES = 6
RESOLUTION = 32
ANGLES = (15, -30)
CONFIG = GenerationConfig(resolution=RESOLUTION, angles=ANGLES)
CLI_WORDS = ["--resolution", str(RESOLUTION), "--angles", *map(str, ANGLES), "--label-paths", "relative", "--quiet"]


def _touch(path, data=b""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _generate(root, output, **kwargs):
    kwargs.setdefault("workers", 1)
    return generate_dataset(root, output, kwargs.pop("config", CONFIG), relative_paths=True, progress=False,
                            **kwargs)


def _tree_digest(folder):
    """{relative path: sha256} of every sample output (jpg, npy, png) under ``folder``."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.suffix in (".jpg", ".npy", ".png")
            and UV_DATA_DIR not in p.parts and "synthetic_300W_LP" not in p.parts}


def _temp_files(folder):
    return [p for p in Path(folder).rglob("*") if p.name.endswith(TEMP_SUFFIX)]


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synthesize_dataset(root, count=N_SAMPLES, seed=3)
    return root


@pytest.fixture(scope="module")
def reference(synth_root, tmp_path_factory):
    """An uninterrupted single-process run: the outputs every other run must reproduce byte for byte."""
    output = tmp_path_factory.mktemp("reference")
    summary = _generate(synth_root, output)
    return output, summary


# ----------------------------------------------------------------------------------------------- discovery


def test_discover_300wlp_tree_skips_landmarks_and_other_folders(tmp_path):
    for rel in ("AFW/AFW_1_0", "AFW/AFW_1_1", "AFW_Flip/AFW_1_0", "HELEN/b", "LFPW_Flip/c", "IBUG/d"):
        _touch(tmp_path / f"{rel}.jpg")
        _touch(tmp_path / f"{rel}.mat")
    _touch(tmp_path / "landmarks/AFW/AFW_1_0_pts.mat")
    _touch(tmp_path / "Code/ModelGeneration/Model_Shape.mat")  # not a sample folder of 300W-LP
    _touch(tmp_path / "HELEN/no_params.jpg")  # an image alone is not a sample
    _touch(tmp_path / "IBUG/no_image.mat")  # parameters alone are: reported as a missing image
    samples = discover_samples(tmp_path)
    assert [s.rel for s in samples] == ["AFW/AFW_1_0", "AFW/AFW_1_1", "AFW_Flip/AFW_1_0", "HELEN/b", "IBUG/d",
                                        "IBUG/no_image", "LFPW_Flip/c"]
    assert samples[0].image_path == str(tmp_path / "AFW/AFW_1_0.jpg")
    assert samples[0].mat_path == str(tmp_path / "AFW/AFW_1_0.mat")
    assert samples[0].folder == "AFW" and samples[0].stem == "AFW_1_0"
    assert samples[5].image_path == str(tmp_path / "IBUG/no_image.jpg")


def test_discover_any_folder_of_pairs(tmp_path):
    for rel in ("z", "a/b/c", "a/x"):
        _touch(tmp_path / f"{rel}.png")
        _touch(tmp_path / f"{rel}.mat")
    _touch(tmp_path / "landmarks/l.jpg")
    _touch(tmp_path / "landmarks/l.mat")
    _touch(tmp_path / ".hidden/h.jpg")
    _touch(tmp_path / ".hidden/h.mat")
    _touch(tmp_path / "out/o.jpg")
    _touch(tmp_path / "out/o.mat")
    samples = discover_samples(tmp_path, exclude=[tmp_path / "out"])
    assert [s.rel for s in samples] == ["a/b/c", "a/x", "z"]
    assert samples[0].image_path.endswith("c.png") and samples[2].folder == ""
    with pytest.raises(FileNotFoundError, match="root must be a folder"):
        discover_samples(tmp_path / "missing")


def test_a_stem_with_several_images_takes_the_first_image_suffix(tmp_path):
    """Beside a .mat file the sample's image is the first of IMAGE_SUFFIXES present (.jpg, .jpeg, .png, .bmp), the
    documented choice, whatever else the folder holds: a .png export beside 300W-LP's .jpg does not replace it."""
    present = {"all": (".bmp", ".png", ".jpeg", ".jpg"), "no_jpg": (".bmp", ".png", ".jpeg"),
               "png_bmp": (".bmp", ".png", ".webp"), "bmp": (".bmp", ".webp")}
    for stem, suffixes in present.items():
        for suffix in (".mat", *suffixes):
            _touch(tmp_path / f"{stem}{suffix}")
    samples = discover_samples(tmp_path)
    assert [Path(s.image_path).name for s in samples] == ["all.jpg", "bmp.bmp", "no_jpg.jpeg", "png_bmp.png"]


def _pairs(folder, *stems):
    for stem in stems:
        _touch(folder / f"{stem}.jpg")
        _touch(folder / f"{stem}.mat")


def test_discover_follows_links_to_folders(tmp_path):
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    _pairs(root / "real", "a")
    _pairs(elsewhere / "faces", "c")
    _pairs(elsewhere / "more", "d")
    (root / "linked").symlink_to(elsewhere / "faces")
    (elsewhere / "faces" / "deeper").symlink_to(elsewhere / "more")  # a link inside a linked folder
    samples = discover_samples(root)
    assert [s.rel for s in samples] == ["linked/c", "linked/deeper/d", "real/a"]
    assert samples[0].image_path == str(root / "linked" / "c.jpg") and samples[1].folder == "linked/deeper"


def test_discover_follows_linked_300wlp_folders(tmp_path):
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    _pairs(elsewhere / "AFW", "AFW_1_0")
    _pairs(elsewhere / "extra", "e")
    _pairs(elsewhere / "more", "m")
    _pairs(root / "HELEN", "h")
    _pairs(root / "landmarks", "l")
    (root / "AFW").symlink_to(elsewhere / "AFW")
    (root / "HELEN" / "more").symlink_to(elsewhere / "more")
    (root / "HELEN" / "extra").symlink_to(elsewhere / "extra")
    (root / "IBUG_Flip").symlink_to(elsewhere / "extra")  # the same folder again: walked once, as the outer link
    assert [s.rel for s in discover_samples(root)] == ["AFW/AFW_1_0", "HELEN/h", "HELEN/more/m", "IBUG_Flip/e"]


def test_discover_walks_each_folder_once_through_link_loops(tmp_path, caplog):
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    _pairs(root, "top")
    _pairs(root / "b_real", "x")
    _pairs(elsewhere, "e")
    links = {"b_real/up": root, "b_real/self": root / "b_real", "a_link": root / "b_real",
             "z": elsewhere, "b_real/ext": elsewhere}
    for link, target in links.items():
        (root / link).symlink_to(target)
    (elsewhere / "back").symlink_to(elsewhere)
    with caplog.at_level(logging.WARNING, logger="face3d.trainset.discovery"):
        samples = discover_samples(root)
    # real folders keep their own path; the first link found (sorted, outer folders first) names the rest
    assert [s.rel for s in samples] == ["b_real/x", "top", "z/e"]
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping folder")]
    assert sorted(skipped) == sorted(
        f"skipping folder {root / link}: it is {real}, walked already as {walked}"
        for link, real, walked in [("a_link", root / "b_real", root / "b_real"), ("b_real/up", root, root),
                                   ("b_real/self", root / "b_real", root / "b_real"),
                                   ("b_real/ext", elsewhere, root / "z"), ("z/back", elsewhere, root / "z")])


# ------------------------------------------------------------------------------------------ shards, seeds


@pytest.mark.parametrize("m", [0, 1, 5, 7, 12, 100])
@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_shards_partition_in_order(m, n):
    items = list(range(m))
    parts = [select_shard(items, k, n) for k in range(1, n + 1)]
    assert sum(parts, []) == items  # disjoint, complete, and in order when concatenated
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_parse_shard_and_label_names():
    assert parse_shard("2/3") == (2, 3) and parse_shard(None) is None
    for bad in ("0/3", "4/3", "1", "a/b", "1/2/3"):
        with pytest.raises(ValueError, match="shard must be 'K/N'"):
            parse_shard(bad)
    assert label_file_name() == "trainDataLabel.txt"
    assert label_file_name((3, 12)) == "trainDataLabel.part-03-of-12.txt"  # zero-padded: globs sort in K order


def test_sample_seed_depends_only_on_seed_and_path():
    seed = sample_seed(0, "AFW/AFW_1_0")
    expected = int.from_bytes(hashlib.sha256(b"0:AFW/AFW_1_0").digest()[:8], "little") & (2 ** 63 - 1)
    assert seed == expected
    assert seed != sample_seed(1, "AFW/AFW_1_0") and seed != sample_seed(0, "AFW_Flip/AFW_1_0")


def test_npy_writer_matches_np_save():
    """The runner's .npy bytes (cached header + data, float16 through the mesh core's kernel) are what np.save
    writes, float16's edge cases included (max, overflow, infinities, NaN, subnormals, underflow, ties)."""
    import io

    from face3d.trainset.outputs import _npy_chunks
    posmap = np.random.default_rng(0).normal(0, 300, (16, 16, 3)).astype(np.float32)
    posmap[0, :6] = [[65504.0, 65519.0, 65520.0], [70000.0, -70000.0, np.inf], [-np.inf, np.nan, -np.nan],
                     [6e-8, 3e-8, 2.9e-8], [-2.5e-5, 1e-8, 0.0], [2049.0, 2051.0, -1.00048828125]]
    for dtype in ("float16", "float32"):
        expected = io.BytesIO()
        with np.errstate(over="ignore"):
            np.save(expected, posmap.astype(dtype), allow_pickle=False)
        assert b"".join(bytes(chunk) for chunk in _npy_chunks(posmap, dtype)) == expected.getvalue(), dtype
    negative_zero = np.full((4, 4, 3), -0.0, np.float32)
    stored = np.frombuffer(bytes(_npy_chunks(negative_zero, "float16")[1]), np.uint16)
    assert np.all(stored == 0)  # +0.0: the documented difference from astype


def test_write_image_rounds_floats_keeps_uint8_and_names_a_refused_file(tmp_path):
    """write_image stores floats in [0, 1] as round(clip(x) * 255), uint8 as given, RGB as RGB (PNG: lossless);
    a refused write names the file and leaves neither it nor its temporary twin."""
    from face3d.trainset.outputs import write_image
    rgb = np.array([[[0.0, 0.5, 1.0], [-0.2, 0.498, 1.7]]], dtype=np.float32)
    write_image(tmp_path / "float.png", rgb)
    assert cv2.imread(str(tmp_path / "float.png"))[..., ::-1].tolist() == [[[0, 128, 255], [0, 127, 255]]]
    grey = np.array([[3, 250]], dtype=np.uint8)
    write_image(str(tmp_path / "grey.png"), grey)
    assert cv2.imread(str(tmp_path / "grey.png"), cv2.IMREAD_UNCHANGED).tolist() == [[3, 250]]
    (tmp_path / "taken.png").mkdir()  # a folder where the file goes: the rename is refused
    with pytest.raises(OSError) as refused:
        write_image(tmp_path / "taken.png", grey)
    assert refused.value.filename == str(tmp_path / "taken.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["float.png", "grey.png", "taken.png"]

# ---------------------------------------------------------------------------------------- synthetic set


def _mirror_permutation(model):
    """(nver,) the mirror vertex of each vertex (BFM_info's symlist pairs swapped)."""
    mirror = np.arange(model.nver)
    mirror[model.info["symlist"][0]], mirror[model.info["symlist"][1]] = model.info["symlist"][1], \
        model.info["symlist"][0]
    return mirror


def test_synthetic_set_is_300wlp_format(synth_root):
    from face3d.morphable_model import MorphableModel

    model = MorphableModel()
    mirror = _mirror_permutation(model)
    mats = sorted(synth_root.glob("*/*.mat"))
    assert len(mats) == N_SAMPLES  # 3 views and their 3 _Flip copies
    yaws = []
    for mat_path in mats:
        mat = scipy.io.loadmat(mat_path)
        image = cv2.imread(str(mat_path.with_suffix(".jpg")))
        assert image.shape == (450, 450, 3)
        assert mat["Pose_Para"].shape == (1, 7) and mat["pt2d"].shape == (2, 68) and mat["roi"].shape == (1, 4)
        assert mat["Shape_Para"].shape == (model.n_shape_para, 1) and mat["Exp_Para"].shape == (model.n_exp_para, 1)
        assert mat["Tex_Para"].shape == (model.n_tex_para, 1) and mat["Illum_Para"].shape == (1, 10)
        pose = mat["Pose_Para"][0].astype(np.float64)
        vertices = model.generate_vertices(mat["Shape_Para"], mat["Exp_Para"]).astype(np.float64)
        # a flip's point k is the mirror vertex of the view's point k: mirrored in x, not re-ordered
        kpt = mirror[model.kpt_ind] if mat_path.parent.name == FLIP_FOLDER else model.kpt_ind
        projected = similarity_transform(vertices[kpt], pose[6], angle2matrix_3ddfa(pose[:3]), pose[3:6])
        expected = np.stack([projected[:, 0], 449 - projected[:, 1]])
        # all but the jaw points of the far side are the projected keypoints (300W-LP's convention)
        np.testing.assert_allclose(mat["pt2d"][:, 17:], expected[:, 17:], atol=1e-6)
        jaw_kept = np.all(np.abs(mat["pt2d"][:, :17] - expected[:, :17]) < 1e-6, axis=0)
        assert jaw_kept[8] and (jaw_kept[:8].all() or jaw_kept[9:].all())  # chin and the near side stay
        if abs(np.rad2deg(pose[1])) > 45:
            assert not jaw_kept.all()  # the far side moved to the silhouette
        assert np.all((mat["pt2d"] > 0) & (mat["pt2d"] < 449))
        yaws.append(np.rad2deg(pose[1]))
    assert max(np.abs(yaws)) > 60.0 and min(yaws) < 0 < max(yaws)


def test_synthetic_views_share_the_face_and_flips_mirror_it(synth_root):
    views = [scipy.io.loadmat(synth_root / SYNTH_FOLDER / f"SYNTH_0000_1_{v}.mat") for v in range(3)]
    flips = [scipy.io.loadmat(synth_root / FLIP_FOLDER / f"SYNTH_0000_1_{v}.mat") for v in range(3)]
    for group in (views, flips):
        for mat in group[1:]:  # only the pose differs between the views of a face
            for key in ("Shape_Para", "Exp_Para", "Tex_Para"):
                np.testing.assert_array_equal(mat[key], group[0][key])
    yaws = [abs(float(mat["Pose_Para"][0, 1])) for mat in views]
    assert yaws == sorted(yaws) and len(set(yaws)) == 3  # turning on towards the profile
    assert not np.allclose(flips[0]["Shape_Para"], views[0]["Shape_Para"])  # the mirrored face's own parameters
    for view, flip in zip(views, flips):
        a, b = view["Pose_Para"][0].astype(np.float64), flip["Pose_Para"][0].astype(np.float64)
        np.testing.assert_allclose(b[[0, 1, 2, 6]], a[[0, 1, 2, 6]] * [1, -1, -1, 1], rtol=1e-6)  # yaw, roll negated
        assert abs(b[3] - (449 - a[3])) < 1e-4 and b[4] == a[4]  # tx mirrored exactly (float32), ty kept
        # the mirrored face is a fit of the model to the mirror (its bases are not exactly symmetric): its keypoints
        # lie within about a pixel of the mirrored ones
        np.testing.assert_allclose(flip["pt2d"], [449 - view["pt2d"][0], view["pt2d"][1]], atol=1.5)


def test_synthetic_flip_texture_is_the_fit_of_the_mirrored_colours(synth_root):
    from face3d.morphable_model import MorphableModel

    model = MorphableModel()
    view = scipy.io.loadmat(synth_root / SYNTH_FOLDER / "SYNTH_0000_1_0.mat")
    flip = scipy.io.loadmat(synth_root / FLIP_FOLDER / "SYNTH_0000_1_0.mat")
    mirrored = model.generate_colors(view["Tex_Para"]).astype(np.float64)[_mirror_permutation(model)]
    fitted = model.generate_colors(flip["Tex_Para"]).astype(np.float64)
    # the least-squares parameters of the mirrored colours in the texture basis (reference: numpy's lstsq)
    basis = model.model["texPC"].astype(np.float64)
    reference, *_ = np.linalg.lstsq(basis, (mirrored - model.generate_colors(np.zeros(model.n_tex_para))).reshape(-1),
                                    rcond=None)
    np.testing.assert_allclose(fitted, model.generate_colors(reference).astype(np.float64), atol=1e-3)
    # the default texture basis is not closed under mirroring: this fit is 2.20 levels off on average (0..255), 8.03
    # at the 99th percentile, where the view's own Tex_Para is 12.1 and 35.0 off
    error = np.abs(fitted - mirrored)
    assert error.mean() < 2.3 and np.percentile(error, 99) < 8.5, (error.mean(), np.percentile(error, 99))


def test_synthetic_set_is_deterministic_and_reused(synth_root, tmp_path):
    first = sorted((synth_root / SYNTH_FOLDER).glob("*"))
    mtimes = [p.stat().st_mtime_ns for p in first]
    synthesize_dataset(synth_root, count=N_SAMPLES, seed=3)  # same settings: reused as is
    assert [p.stat().st_mtime_ns for p in first] == mtimes
    synthesize_dataset(tmp_path, count=2, seed=3)  # a prefix of the same set, rendered again
    for name in (f"{SYNTH_FOLDER}/SYNTH_0000_1_0", f"{FLIP_FOLDER}/SYNTH_0000_1_0"):  # a view and its flip
        assert (tmp_path / f"{name}.jpg").read_bytes() == (synth_root / f"{name}.jpg").read_bytes()
        a = scipy.io.loadmat(tmp_path / f"{name}.mat")
        b = scipy.io.loadmat(synth_root / f"{name}.mat")
        for key in ("Pose_Para", "Shape_Para", "Exp_Para", "Tex_Para", "pt2d", "roi"):
            np.testing.assert_array_equal(a[key], b[key])
    assert json.loads((tmp_path / RECORD_FILE).read_text())["count"] == 2
    assert not _temp_files(tmp_path)


def test_an_interrupted_synthetic_set_resumes_by_whole_faces(tmp_path, monkeypatch):
    import face3d.trainset.synthetic as synthetic

    settings = {"count": 6, "seed": 3, "size": 64, "views": 2}  # face 0: two views and their flips; face 1: one
    synthesize_dataset(tmp_path / "whole", **settings)
    render_set, rendered = synthetic._render_set, []

    def stopped_after_five(*args):
        for k, sample in enumerate(render_set(*args)):
            if k == 5:
                raise KeyboardInterrupt
            yield sample

    def recorded(*args):
        for sample in render_set(*args):
            rendered.append(sample[:2])
            yield sample

    out = tmp_path / "out"
    monkeypatch.setattr(synthetic, "_render_set", stopped_after_five)
    with pytest.raises(KeyboardInterrupt):
        synthesize_dataset(out, **settings)
    assert json.loads((out / RECORD_FILE).read_text())["complete"] is False
    monkeypatch.setattr(synthetic, "_render_set", recorded)
    synthesize_dataset(out, **settings)
    assert rendered == [(folder, stem) for folder, stem, face, *_ in synthetic.sample_names(6, 2) if face == 1]
    files = sorted(p.relative_to(out) for p in out.rglob("SYNTH_*.*"))
    assert len(files) == 12 and files == sorted(p.relative_to(tmp_path / "whole")
                                                for p in (tmp_path / "whole").rglob("SYNTH_*.*"))
    assert all((out / f).read_bytes() == (tmp_path / "whole" / f).read_bytes() for f in files)
    assert json.loads((out / RECORD_FILE).read_text()) == json.loads((tmp_path / "whole" / RECORD_FILE).read_text())
    # other settings remove the interrupted set's samples instead of resuming over them
    monkeypatch.setattr(synthetic, "_render_set", stopped_after_five)
    with pytest.raises(KeyboardInterrupt):
        synthesize_dataset(out, **{**settings, "seed": 4})
    assert len(list(out.rglob("SYNTH_*.*"))) == 10  # five samples of seed 4, none of seed 3


def test_synthetic_set_of_another_model_is_rendered_again(tmp_path):
    from face3d.morphable_model import MorphableModel, load, model_identity
    from face3d.morphable_model.default_model import default_model_dir

    wide = tmp_path / "wide"
    wide.mkdir()
    for name in ("BFM_info.mat", "BFM_UV.mat"):
        shutil.copyfile(default_model_dir() / name, wide / name)
    arrays = load.load_BFM(default_model_dir() / "BFM.mat")
    arrays["shapeMU"] = arrays["shapeMU"] * np.float32(1.3)  # a wider face: another scale in Pose_Para
    load.save_BFM(wide / "BFM.mat", arrays)

    def pose(folder):
        return scipy.io.loadmat(folder / SYNTH_FOLDER / "SYNTH_0000_1_0.mat")["Pose_Para"]

    synthesize_dataset(tmp_path / "default", count=2, seed=3, size=64)
    synthesize_dataset(tmp_path / "wide_set", count=2, seed=3, size=64, model_path=wide / "BFM.mat")
    assert not np.array_equal(pose(tmp_path / "wide_set"), pose(tmp_path / "default"))
    assert json.loads((tmp_path / "default" / RECORD_FILE).read_text())["model"] == model_identity(None)
    # a set rendered with a model object (unidentified) is never reused: asking for the default renders it again
    out = tmp_path / "out"
    synthesize_dataset(out, count=2, seed=3, size=64, model=MorphableModel(wide / "BFM.mat"))
    assert np.array_equal(pose(out), pose(tmp_path / "wide_set"))
    synthesize_dataset(out, count=2, seed=3, size=64)
    assert np.array_equal(pose(out), pose(tmp_path / "default"))
    # and a set of the default model is not reused for another model file
    synthesize_dataset(out, count=2, seed=3, size=64, model_path=wide / "BFM.mat")
    assert np.array_equal(pose(out), pose(tmp_path / "wide_set"))
    assert json.loads((out / RECORD_FILE).read_text())["model"] == model_identity(wide / "BFM.mat")


# ------------------------------------------------------------------------------------------- the runner


def test_reference_run_outputs(reference, synth_root):
    output, summary = reference
    counts = (summary["samples"], summary["written"], summary["skipped"], summary["failed"])
    assert counts == (N_SAMPLES, N_SAMPLES, 0, 0)
    assert json.loads((output / "summary.json").read_text())["written"] == N_SAMPLES
    lines = (output / "trainDataLabel.txt").read_text().splitlines()
    # the set's 6 samples: 3 views of one face, then (sorted after SYNTH/) their _Flip copies
    stems = [f"{folder}/SYNTH_0000_1_{v}" for folder in (SYNTH_FOLDER, FLIP_FOLDER) for v in range(3)]
    assert lines == [f"{n}.jpg {n}.npy" for s in stems
                     for n in (s, f"{s}_angle_15", f"{s}_angle_-30")]
    posmap = np.load(output / "SYNTH" / "SYNTH_0000_1_0.npy")
    assert posmap.dtype == np.float16 and posmap.shape == (RESOLUTION, RESOLUTION, 3)
    crop = cv2.imread(str(output / "SYNTH" / "SYNTH_0000_1_0_angle_15.jpg"))
    assert crop.shape == (RESOLUTION, RESOLUTION, 3)
    assert sorted(p.name for p in (output / UV_DATA_DIR).iterdir()) == sorted([*UV_DATA_FILES, CANONICAL_FILE])
    latest = read_journals(output)
    assert sum(done_outputs(latest, rel, summary["fingerprint"]) is not None for rel in latest) == N_SAMPLES
    assert not _temp_files(output)


def test_worker_count_does_not_change_outputs(reference, synth_root, tmp_path):
    output, _ = reference
    summary = _generate(synth_root, tmp_path, workers=2)
    assert summary["workers"] == 2 and summary["written"] == N_SAMPLES
    assert (tmp_path / "trainDataLabel.txt").read_bytes() == (output / "trainDataLabel.txt").read_bytes()
    assert _tree_digest(tmp_path) == _tree_digest(output)
    # a rerun skips everything and rewrites the same label file
    again = _generate(synth_root, tmp_path, workers=2)
    assert (again["written"], again["skipped"]) == (0, N_SAMPLES)
    assert (tmp_path / "trainDataLabel.txt").read_bytes() == (output / "trainDataLabel.txt").read_bytes()


def test_linked_folder_outputs_go_under_the_link_name(reference, synth_root, tmp_path):
    output, _ = reference
    root = tmp_path / "root"
    shutil.copytree(synth_root / FLIP_FOLDER, root / FLIP_FOLDER)
    (root / SYNTH_FOLDER).symlink_to(synth_root / SYNTH_FOLDER)
    (root / FLIP_FOLDER / "loop").symlink_to(root)
    summary = _generate(root, tmp_path / "out")
    assert (summary["samples"], summary["written"], summary["failed"]) == (N_SAMPLES, N_SAMPLES, 0)
    # the same relative paths as the reference's real folders: the same seeds, files and label file
    assert _tree_digest(tmp_path / "out") == _tree_digest(output)
    assert (tmp_path / "out" / "trainDataLabel.txt").read_bytes() == (output / "trainDataLabel.txt").read_bytes()


def test_shard_label_files_concatenate_into_the_whole(reference, synth_root, tmp_path):
    output, _ = reference
    parts = []
    for k in (1, 2, 3):
        summary = _generate(synth_root, tmp_path, shard=(k, 3))
        assert summary["samples"] == 2 and summary["shard"] == f"{k}/3"
        assert (tmp_path / f"summary.part-{k}-of-3.json").is_file()
        parts.append((tmp_path / f"trainDataLabel.part-{k}-of-3.txt").read_bytes())
    assert b"".join(parts) == (output / "trainDataLabel.txt").read_bytes()
    assert _tree_digest(tmp_path) == _tree_digest(output)
    limited = _generate(synth_root, tmp_path / "limited", limit=3, shard="2/2")  # limit first, then shard
    assert limited["samples"] == 2
    assert (tmp_path / "limited" / "trainDataLabel.part-2-of-2.txt").read_text().split("\n")[0].startswith(
        "SYNTH/SYNTH_0000_1_1.jpg")


def test_a_run_reads_the_journals_for_its_own_samples_once_a_phase(reference, synth_root, tmp_path, monkeypatch):
    """A shard run holds the journal records of its own samples only, those of its resume checks no longer while
    it makes the samples or reads the records again for the label file."""
    out = tmp_path / "out"
    shutil.copytree(reference[0], out)
    shard_rels = [ref.rel for ref in select_shard(discover_samples(synth_root), 2, 3)]
    _forget(out, shard_rels[0])  # redone by the shard's run
    events, watched = [], []

    class Records(dict):
        """A copy of the records read, which, unlike a dict, can be watched for its release."""

    def held():
        gc.collect()
        return sum(ref() is not None for ref in watched)

    def watched_read(*args, **kwargs):
        alive = held()
        records = Records(read_journals(*args, **kwargs))
        watched.append(weakref.ref(records))
        events.append(("read", alive, sorted(records)))
        return records

    def watched_run(*args, **kwargs):
        events.append(("run", held()))
        return run_tasks(*args, **kwargs)

    monkeypatch.setattr(dataset, "read_journals", watched_read)
    monkeypatch.setattr(dataset, "run_tasks", watched_run)
    summary = _generate(synth_root, out, shard=(2, 3))
    assert (summary["written"], summary["skipped"]) == (1, 1)
    assert events == [("read", 0, shard_rels[1:]), ("run", 0), ("read", 0, shard_rels)]  # the first had no record
    whole = (reference[0] / "trainDataLabel.txt").read_text().splitlines(keepends=True)
    assert (out / "trainDataLabel.part-2-of-3.txt").read_text() == "".join(whole[6:12])  # 3 lines a sample


def test_shards_started_together_without_root_render_the_default_set_once(tmp_path):
    """The jobs of an array (``--shard K/3``, one --output, no --root) started at once: one renders the embedded
    set while the others wait for it, so the part files hold every sample of an unsharded run of the set."""
    words = ["--angles", "--resolution", str(RESOLUTION), "--workers", "1", "--label-paths", "relative", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def array_parts(output):
        jobs = [subprocess.Popen([sys.executable, "-m", "face3d", "generate", "--output", str(output), *words,
                                  "--shard", f"{k}/3"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for k in (1, 2, 3)]
        for k, job in enumerate(jobs, 1):
            out, err = job.communicate(timeout=300)
            waited = f"INFO face3d.utils.atomic: waiting for {output / 'synthetic_300W_LP' / LOCK_FILE}: another " \
                     "process holds it\n"
            assert job.returncode == 0 and err in ("", waited), (k, out, err)  # a job that waits says so
            assert out.startswith("samples 8: written 8, skipped 0 (already done), failed 0; 8 label lines in "), out
        return "".join((output / f"trainDataLabel.part-{k}-of-3.txt").read_text() for k in (1, 2, 3)).splitlines()

    # the jobs' timing decides whether a job that renders on its own loses samples: two arrays make that near certain
    parts = [array_parts(tmp_path / f"array{n}") for n in (1, 2)]
    whole = GenerationConfig(resolution=RESOLUTION, angles=())
    assert _generate(tmp_path / "array1" / "synthetic_300W_LP", tmp_path / "whole", config=whole)["failed"] == 0
    lines = (tmp_path / "whole" / "trainDataLabel.txt").read_text().splitlines()
    assert len(lines) == 24 and parts == [lines, lines]


def _count_done(output):
    return sum("outputs" in record for record in read_journals(output).values())  # complete records only


def _forget(output, rel):
    """Drop a sample's records from the journals, as if the run had stopped before appending its record."""
    for journal in (output / DONE_DIR).iterdir():
        lines = journal.read_bytes().splitlines(keepends=True)
        journal.write_bytes(b"".join(line for line in lines if json.loads(line)["sample"] != rel))


KILL_AFTER = 3  # done records appended before the run is killed

# Runs `python -m face3d ARGS` and SIGKILLs it right after its KILL_AFTER-th done record is appended to its
# journal (one os.write of a '{"sample": ...' line holding "outputs"), so the kill lands at the same point on
# every run.
KILLING_RUNNER = f"""
import os, runpy, signal, sys
write, records = os.write, []

def write_then_kill(fd, data):
    written = write(fd, data)
    if isinstance(data, bytes) and data.startswith(b'{{"sample"') and b'"outputs"' in data:
        records.append(data)
        if len(records) == {KILL_AFTER}:
            os.kill(os.getpid(), signal.SIGKILL)
    return written

os.write = write_then_kill
sys.argv = ["face3d", *sys.argv[1:]]
runpy.run_module("face3d", run_name="__main__", alter_sys=True)
"""


def test_resume_after_sigkill_is_byte_identical(synth_root, tmp_path):
    # The reference is an uninterrupted run of the same command (the command line pins one BLAS thread per
    # process, so numpy's products round alike in both).
    output = tmp_path / "uninterrupted"
    args = ["generate", "--root", str(synth_root), "--workers", "1", *CLI_WORDS]
    reference = subprocess.run([sys.executable, "-m", "face3d", *args, "--output", str(output)], cwd=REPO,
                               capture_output=True, text=True, timeout=120)
    assert reference.returncode == 0, reference.stderr
    tmp_path = tmp_path / "resumed"
    args += ["--output", str(tmp_path)]
    killed = subprocess.run([sys.executable, "-c", KILLING_RUNNER, *args], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    done = _count_done(tmp_path)
    assert done == KILL_AFTER < N_SAMPLES
    assert not (tmp_path / "trainDataLabel.txt").exists()

    command = [sys.executable, "-m", "face3d", *args]
    resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["skipped"] == done and summary["written"] == N_SAMPLES - done and summary["failed"] == 0
    assert (tmp_path / "trainDataLabel.txt").read_bytes() == (output / "trainDataLabel.txt").read_bytes()
    assert _tree_digest(tmp_path) == _tree_digest(output)
    assert not _temp_files(tmp_path)

    # A sample caught between two renames: its record is absent, one output truncated, a temporary left over.
    # The rerun redoes exactly that sample and consumes the leftover.
    partial = tmp_path / SYNTH_FOLDER / "SYNTH_0000_1_2_angle_15.npy"
    _forget(tmp_path, f"{SYNTH_FOLDER}/SYNTH_0000_1_2")
    partial.write_bytes(partial.read_bytes()[:50])
    _touch(tmp_path / SYNTH_FOLDER / f".SYNTH_0000_1_2_angle_-30.jpg{TEMP_SUFFIX}", b"half")
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"written 1, skipped {N_SAMPLES - 1} (already done), failed 0" in again.stdout
    assert _tree_digest(tmp_path) == _tree_digest(output)
    assert not _temp_files(tmp_path)


# Runs `python -m face3d ARGS` with a generator that stalls on each process's second chunk, as the workers of a long
# run are still busy when the main process is killed.
STALLING_RUNNER = """
import runpy, sys, time
import face3d.trainset.dataset as dataset

build = dataset.default_generator_factory

def stalling_factory(model_path, config):
    generator = build(model_path, config)
    process_iter, calls = generator.process_iter, []  # each forked worker counts its own calls

    def stall_after_one_chunk(jobs):
        calls.append(jobs)
        if len(calls) > 1:
            time.sleep(600)
        yield from process_iter(jobs)

    generator.process_iter = stall_after_one_chunk
    return generator

dataset.default_generator_factory = stalling_factory
sys.argv = ["face3d", *sys.argv[1:]]
runpy.run_module("face3d", run_name="__main__", alter_sys=True)
"""


def _children(pid):
    """The pids of the live (not zombie) processes whose parent is ``pid``, from /proc."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # the process ended meanwhile
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


# Runs `python -m face3d ARGS` (its first argument: a flag file, then the command's words); the first worker process
# about to rename a temporary file (`.<name>.partial`) onto a sample's output prints that file's path, sends Ctrl-C's
# SIGINT to the main process and waits to be ended, the file still there; should it write on, it says so.
INTERRUPTING_RUNNER = """
import os, runpy, signal, sys, time
replace, main, flag, ended = os.replace, os.getpid(), sys.argv[1], []

def interrupt_then_wait(source, target, **kwargs):
    if ended:
        print("a worker wrote on after it was ended", flush=True)
    if os.getpid() != main and str(source).endswith(".partial"):
        try:
            os.close(os.open(flag, os.O_CREAT | os.O_EXCL))  # one worker only
        except FileExistsError:
            return replace(source, target, **kwargs)
        print(source, flush=True)
        os.kill(main, signal.SIGINT)
        try:
            time.sleep(60)
        finally:
            ended.append(source)
    return replace(source, target, **kwargs)

os.replace = interrupt_then_wait
sys.argv = ["face3d", *sys.argv[2:]]
runpy.run_module("face3d", run_name="__main__", alter_sys=True)
"""


def test_ctrl_c_ends_the_workers_leaving_no_partial_file(synth_root, tmp_path):
    """The main process ends its workers (SIGTERM) in the middle of their writes: each unwinds the file it was
    writing, whose temporary twin would otherwise outlive every rerun that does not write that file again (the
    copy of an angle no longer asked for), and exits instead of taking on the pool's next chunk."""
    output = tmp_path / "out"
    args = ["generate", "--root", str(synth_root), "--workers", "2", *CLI_WORDS, "--output", str(output)]
    script = CTRL_C_RAISES + INTERRUPTING_RUNNER
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "interrupted"), *args], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    (partial,) = run.stdout.splitlines()  # and no worker wrote on
    assert partial.startswith(".") and partial.endswith(TEMP_SUFFIX)  # written in its folder (dir_fd)
    assert (run.returncode, run.stderr) == (130, "face3d generate: interrupted; finished samples are kept: rerun the "
                                                 "same command to resume\n")
    assert not list(output.rglob(f"*{TEMP_SUFFIX}"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="worker processes are found through /proc")
def test_workers_end_when_the_main_process_is_killed(synth_root, tmp_path):
    args = ["generate", "--root", str(synth_root), "--workers", "2", *CLI_WORDS, "--output", str(tmp_path)]
    main = subprocess.Popen([sys.executable, "-c", STALLING_RUNNER, *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    workers = []
    try:
        deadline = time.monotonic() + 120
        while _count_done(tmp_path) == 0 or len(workers) < 2:
            assert main.poll() is None and time.monotonic() < deadline, "no worker wrote a sample"
            time.sleep(0.05)
            workers = _children(main.pid)
        main.kill()  # SIGKILL: the main process has no say
        main.wait()
        deadline = time.monotonic() + 10
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers if _alive(pid)], "worker processes outlived the main process"
    finally:
        main.kill()
        main.wait()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_verbose_logs_the_runs_decisions_at_debug(reference, synth_root, tmp_path, caplog):
    from face3d.cli import main

    output, summary = reference
    out = tmp_path / "out"
    shutil.copytree(output, out)
    _forget(out, f"{SYNTH_FOLDER}/SYNTH_0000_1_2")  # never finished: written, without a redo line
    other = f"{FLIP_FOLDER}/SYNTH_0000_1_0"  # done under other settings: redone
    journal = next((out / DONE_DIR).iterdir())
    journal.write_text(journal.read_text().replace(f'"sample":"{other}","fingerprint":"{summary["fingerprint"]}"',
                                                   f'"sample":"{other}","fingerprint":"0123456789abcdef"'))
    try:
        assert main(["generate", "--root", str(synth_root), "--output", str(out), "--workers", "2", *CLI_WORDS,
                     "--verbose"]) == 0
    finally:
        logging.getLogger("face3d").setLevel(logging.NOTSET)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG] == [
        f"3 samples in {synth_root / SYNTH_FOLDER}", f"3 samples in {synth_root / FLIP_FOLDER}",
        f"{N_SAMPLES} samples found under {synth_root}; {N_SAMPLES} of them in this run (--limit None, --shard None)",
        f"settings fingerprint {summary['fingerprint']} (model default, seed 0)",
        f"uv-data written for the model (neck_zeroed=False) into {out / UV_DATA_DIR}",
        f"{N_SAMPLES - 2} samples already done under these settings: skipped; 2 to write",
        f"redoing sample {other}: done under other settings or another model (fingerprint 0123456789abcdef)",
        f"2 samples to write on 2 worker processes ({pool_context().get_start_method()}), in chunks of 1"]
    assert _tree_digest(out) == _tree_digest(output)


def test_bad_inputs_are_logged_counted_and_skipped(synth_root, tmp_path, caplog):
    root = tmp_path / "in"
    good = ["SYNTH_0000_1_0", "SYNTH_0000_1_1"]
    for name in good:
        _touch(root / f"{name}.jpg", (synth_root / SYNTH_FOLDER / f"{name}.jpg").read_bytes())
        _touch(root / f"{name}.mat", (synth_root / SYNTH_FOLDER / f"{name}.mat").read_bytes())
    params = scipy.io.loadmat(synth_root / SYNTH_FOLDER / "SYNTH_0000_1_2.mat")
    params = {k: v for k, v in params.items() if not k.startswith("__")}
    jpg = (synth_root / SYNTH_FOLDER / "SYNTH_0000_1_2.jpg").read_bytes()

    def bad(name, mat, image=jpg):
        scipy.io.savemat(root / f"{name}.mat", mat)
        if image is not None:
            _touch(root / f"{name}.jpg", image)

    bad("missing_image", params, image=None)
    bad("corrupt_jpg", params, image=b"\xff\xd8\xff\xe0 this is not a jpeg")
    bad("no_pose", {k: v for k, v in params.items() if k != "Pose_Para"})
    nan_shape = dict(params, Shape_Para=params["Shape_Para"].copy())
    nan_shape["Shape_Para"][3, 0] = np.nan
    bad("nan_shape", nan_shape)
    outside = dict(params, Pose_Para=params["Pose_Para"].copy())
    outside["Pose_Para"][0, 3] += 5000.0  # 5000 pixels to the right
    bad("face_outside", outside)

    with caplog.at_level(logging.WARNING, logger="face3d.trainset.dataset"):
        summary = _generate(root, tmp_path / "out", workers=2)
    reasons = {f["sample"]: f["reason"] for f in summary["failures"]}
    assert (summary["written"], summary["failed"]) == (2, 5)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["failures"] == summary["failures"]
    expected = {"missing_image": "not found", "corrupt_jpg": "cannot decode", "no_pose": "Pose_Para",
                "nan_shape": "NaN", "face_outside": "outside the image"}
    for name, words in expected.items():
        assert words in reasons[name], reasons[name]
        logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and f"{name}.mat" in
                  r.getMessage()]
        assert len(logged) == 1 and reasons[name] in logged[0]
    out_files = sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_file())
    assert out_files == sorted([f"{n}{s}.{e}" for n in good for s in ("", "_angle_15", "_angle_-30")
                                for e in ("jpg", "npy")] + [".generate.lock", "summary.json", "trainDataLabel.txt"])
    assert len((tmp_path / "out" / "trainDataLabel.txt").read_text().splitlines()) == 6
    assert not _temp_files(tmp_path)


def test_limit_float32_and_previews(synth_root, tmp_path):
    config = GenerationConfig(resolution=RESOLUTION, angles=(), posmap_dtype="float32", preview=True,
                              perturb=False)
    summary = _generate(synth_root, tmp_path, limit=2, config=config)
    assert (summary["samples"], summary["written"], summary["label_lines"]) == (2, 2, 2)
    posmap = np.load(tmp_path / SYNTH_FOLDER / "SYNTH_0000_1_1.npy")
    assert posmap.dtype == np.float32
    preview = cv2.imread(str(tmp_path / SYNTH_FOLDER / "SYNTH_0000_1_1_preview.png"))
    assert preview.shape == (RESOLUTION, 2 * RESOLUTION, 3)
    first = (tmp_path / "trainDataLabel.txt").read_text().split()[0]
    assert first == "SYNTH/SYNTH_0000_1_0.jpg"
    absolute = generate_dataset(synth_root, tmp_path, config, limit=1, workers=1, progress=False)
    assert absolute["skipped"] == 1
    line = (tmp_path / "trainDataLabel.txt").read_text().split()
    assert line == [str(tmp_path / SYNTH_FOLDER / f"SYNTH_0000_1_0.{ext}") for ext in ("jpg", "npy")]


def test_changed_settings_redo_samples(reference, synth_root, tmp_path):
    output, _ = reference
    shutil.copytree(output, tmp_path / "out")
    summary = _generate(synth_root, tmp_path / "out", limit=2,
                        config=GenerationConfig(resolution=RESOLUTION, angles=ANGLES, perturb=False))
    assert (summary["written"], summary["skipped"]) == (2, 0)  # a different fingerprint: not done
    changed = np.load(tmp_path / "out" / SYNTH_FOLDER / "SYNTH_0000_1_0.npy")
    assert not np.array_equal(changed, np.load(output / SYNTH_FOLDER / "SYNTH_0000_1_0.npy"))
    reseeded = _generate(synth_root, tmp_path / "out", seed=1)  # another base seed: other crops, all redone
    assert (reseeded["written"], reseeded["skipped"]) == (N_SAMPLES, 0)


def test_a_float32_rerun_rewrites_the_float16_maps(reference, synth_root, tmp_path):
    """The map's dtype is part of the settings: a --float32 rerun over a float16 set must rewrite every sample, not
    skip them as done and leave float16 maps behind."""
    output, _ = reference
    shutil.copytree(output, tmp_path / "out")
    summary = _generate(synth_root, tmp_path / "out", limit=2,
                        config=dataclasses.replace(CONFIG, posmap_dtype="float32"))
    assert (summary["written"], summary["skipped"]) == (2, 0)
    for stem in ("SYNTH_0000_1_0", "SYNTH_0000_1_0_angle_15", "SYNTH_0000_1_1_angle_-30"):
        rewritten = np.load(tmp_path / "out" / SYNTH_FOLDER / f"{stem}.npy")
        assert rewritten.dtype == np.float32
        # the same map at full precision: float16 rounding of it gives the earlier file's values
        earlier = np.load(output / SYNTH_FOLDER / f"{stem}.npy")
        assert np.array_equal(rewritten.astype(np.float16), earlier)


# An earlier run's settings, and a rerun's that write fewer files per sample: no preview, one angle fewer.
PREVIEWED = GenerationConfig(resolution=RESOLUTION, angles=(30, -60), preview=True)
NARROWED = GenerationConfig(resolution=RESOLUTION, angles=(30,))


def _file_names(folder):
    return sorted(p.name for p in Path(folder).iterdir())


def _sample_files(stems, names, endings):
    """The file names ``<stem><name><ending>`` of each of ``stems``, sorted."""
    return sorted(f"{stem}{name}{ending}" for stem in stems for name in names for ending in endings)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_redone_sample_keeps_only_the_files_its_settings_write(synth_root, tmp_path, workers):
    stems, out = ["SYNTH_0000_1_0", "SYNTH_0000_1_1"], tmp_path / "out"
    _generate(synth_root, out, limit=2, config=PREVIEWED)
    assert _file_names(out / SYNTH_FOLDER) == _sample_files(stems, ("", "_angle_30", "_angle_-60"),
                                                            (".jpg", ".npy", "_preview.png"))
    summary = _generate(synth_root, out, limit=2, config=NARROWED, workers=workers)
    assert (summary["written"], summary["skipped"]) == (2, 0)
    assert _file_names(out / SYNTH_FOLDER) == _sample_files(stems, ("", "_angle_30"), (".jpg", ".npy"))
    assert _file_names(out) == sorted([DONE_DIR, ".generate.lock", SYNTH_FOLDER, UV_DATA_DIR, "summary.json",
                                       "trainDataLabel.txt"])
    _generate(synth_root, tmp_path / "fresh", limit=2, config=NARROWED)
    assert _tree_digest(out) == _tree_digest(tmp_path / "fresh")
    # a resume redoes nothing, so it removes nothing, not even a file named as an earlier record's was
    kept = out / SYNTH_FOLDER / f"{stems[0]}_angle_-60.npy"
    kept.write_bytes(b"not an output")
    digest = _tree_digest(out)
    resumed = _generate(synth_root, out, limit=2, config=NARROWED, workers=workers)
    assert (resumed["written"], resumed["skipped"]) == (0, 2)
    assert _tree_digest(out) == digest and kept.read_bytes() == b"not an output"


class _FailingGenerator:
    """A generator on which every sample fails, as a rewrite that does not finish."""

    def __init__(self, model_path, config):
        self.model = default_generator_factory(model_path, config).model

    def process_many(self, jobs):
        raise InputFileError(None, "no sample today")

    def process(self, image_path, mat_path, seed):
        raise InputFileError(mat_path, "no sample today")


class _Killed(BaseException):
    """The run ended between a sample's last write and its journal record."""


def test_an_unfinished_redo_leaves_no_record_of_removed_files_and_the_next_removes_the_rest(synth_root, tmp_path,
                                                                                             monkeypatch):
    stem, out = "SYNTH_0000_1_0", tmp_path / "out"
    folder, rel = out / SYNTH_FOLDER, f"{SYNTH_FOLDER}/SYNTH_0000_1_0"
    _generate(synth_root, out, limit=1, config=PREVIEWED)
    first = _sample_files([stem], ("", "_angle_30", "_angle_-60"), (".jpg", ".npy", "_preview.png"))
    failed = _generate(synth_root, out, limit=1, config=NARROWED, generator_factory=_FailingGenerator)
    assert (failed["written"], failed["failed"]) == (0, 1)
    assert _file_names(folder) == first
    latest = read_journals(out)[rel]  # the redo line carries the files of the record it superseded
    assert {key: value for key, value in latest.items() if key != "t"} == {"sample": rel, "redo": True,
                                                                           "earlier_files": first}

    append = Journal.append

    def append_unless_a_sample_is_done(self, records):
        if any("outputs" in record for record in records):
            raise _Killed
        append(self, records)

    with monkeypatch.context() as patched:  # the redo line's files, written by a run that failed, are removed
        patched.setattr(Journal, "append", append_unless_a_sample_is_done)
        with pytest.raises(_Killed):
            _generate(synth_root, out, limit=1, config=NARROWED)
    narrowed = _sample_files([stem], ("", "_angle_30"), (".jpg", ".npy"))
    assert _file_names(folder) == narrowed
    latest = read_journals(out)[rel]  # still the redo line: no record claims the removed files
    assert {key: value for key, value in latest.items() if key != "t"} == {"sample": rel, "redo": True,
                                                                           "earlier_files": first}
    resumed = _generate(synth_root, out, limit=1, config=NARROWED)
    assert (resumed["written"], resumed["skipped"], resumed["label_lines"]) == (1, 0, 2)
    assert _file_names(folder) == narrowed


def _label_lines_naming_missing_files(output):
    """The lines of ``output``'s label file (relative paths) naming a file that is not there."""
    lines = (output / label_file_name()).read_text().splitlines()
    return [line for line in lines if not all((output / path).is_file() for path in line.split())]


def test_a_redo_stopped_midway_leaves_no_label_file_naming_removed_files(synth_root, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _generate(synth_root, out, limit=3, config=PREVIEWED)
    assert _label_lines_naming_missing_files(out) == []
    append = Journal.append

    def append_then_stop_after_a_sample(self, records):
        append(self, records)
        if any("outputs" in record for record in records):
            raise KeyboardInterrupt

    with monkeypatch.context() as patched:  # stopped after the first redone sample: its earlier files are gone
        patched.setattr(Journal, "append", append_then_stop_after_a_sample)
        with pytest.raises(KeyboardInterrupt):
            _generate(synth_root, out, limit=3, config=NARROWED)
    assert not (out / SYNTH_FOLDER / "SYNTH_0000_1_0_angle_-60.npy").exists()
    assert not (out / label_file_name()).exists() and not (out / "summary.json").exists()
    resumed = _generate(synth_root, out, limit=3, config=NARROWED)
    assert (resumed["written"], resumed["skipped"], resumed["label_lines"]) == (2, 1, 6)
    assert _label_lines_naming_missing_files(out) == []


def test_a_rerun_with_nothing_to_write_keeps_the_label_file_bytes(synth_root, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _generate(synth_root, out, limit=2)
    label = (out / label_file_name()).read_bytes()
    stat = (out / label_file_name()).stat()

    def stop(self, rels, earlier=None):
        assert rels == []
        raise KeyboardInterrupt

    monkeypatch.setattr(Journal, "mark_redo", stop)  # a resume stopped before its end keeps the earlier label file
    with pytest.raises(KeyboardInterrupt):
        _generate(synth_root, out, limit=2)
    assert (out / label_file_name()).read_bytes() == label
    assert (out / label_file_name()).stat().st_ino == stat.st_ino and (out / "summary.json").exists()
    monkeypatch.undo()
    resumed = _generate(synth_root, out, limit=2)
    assert (resumed["written"], resumed["skipped"]) == (0, 2)
    assert (out / label_file_name()).read_bytes() == label


def test_a_redo_leaves_the_files_another_sample_writes(synth_root, tmp_path):
    """An earlier run with angle 15 wrote ``a``'s copy as ``a_angle_15.*`` and refused the sample ``a_angle_15``;
    with other angles that sample writes those names itself, and redoing ``a`` afterwards must not remove them."""
    root, out = tmp_path / "in", tmp_path / "out"
    for name, source in (("a", "SYNTH_0000_1_0"), ("a_angle_15", "SYNTH_0000_1_1")):
        for ext in (".jpg", ".mat"):
            _touch(root / f"{name}{ext}", (synth_root / SYNTH_FOLDER / f"{source}{ext}").read_bytes())
    with_15, with_30 = (GenerationConfig(resolution=RESOLUTION, angles=(angle,)) for angle in (15, 30))
    first = _generate(root, out, config=with_15)
    assert (first["written"], first["failed"]) == (1, 1)
    assert _generate(root, out, config=with_30, shard="2/2")["written"] == 1  # a_angle_15 first
    assert _generate(root, out, config=with_30, shard="1/2")["written"] == 1  # then a, redone
    resumed = _generate(root, out, config=with_30)
    assert (resumed["written"], resumed["skipped"]) == (0, 2)  # nothing lost: a_angle_15 still as written
    assert [n for n in _file_names(out) if n.endswith((".jpg", ".npy"))] == _sample_files(
        ["a", "a_angle_15"], ("", "_angle_30"), (".jpg", ".npy"))


def test_a_redo_removes_its_stale_files_beside_a_sample_named_as_its_prefix(synth_root, tmp_path):
    """``face_2`` beside a sample ``face``: ``face_2_preview.png`` and ``face_2_angle_30.*`` are only ever
    ``face_2``'s, so a rerun without them removes them (a prefix of a name is not its writer)."""
    root, out = tmp_path / "in", tmp_path / "out"
    for name, source in (("face", "SYNTH_0000_1_0"), ("face_2", "SYNTH_0000_1_1")):
        for ext in (".jpg", ".mat"):
            _touch(root / f"{name}{ext}", (synth_root / SYNTH_FOLDER / f"{source}{ext}").read_bytes())
    first = _generate(root, out, config=GenerationConfig(resolution=RESOLUTION, angles=(30,), preview=True))
    assert first["written"] == 2
    assert _generate(root, out, config=GenerationConfig(resolution=RESOLUTION, angles=()))["written"] == 2
    assert [n for n in _file_names(out) if n.endswith((".jpg", ".npy", ".png"))] == _sample_files(
        ["face", "face_2"], ("",), (".jpg", ".npy"))


def test_a_sample_whose_mat_or_image_changed_is_redone(reference, synth_root, tmp_path, caplog):
    """face3d fit rewrites the .mat of a photo it refits: the crop and map made from the old one must not stay."""
    output, _ = reference
    root, out = tmp_path / "root", tmp_path / "out"
    shutil.copytree(synth_root, root)
    shutil.copytree(output, out)
    mat = root / SYNTH_FOLDER / "SYNTH_0000_1_0.mat"
    params = scipy.io.loadmat(mat)
    params["Pose_Para"][0, 3] += 5.0  # the face 5 pixels to the right
    scipy.io.savemat(mat, {k: v for k, v in params.items() if not k.startswith("__")})
    image = root / SYNTH_FOLDER / "SYNTH_0000_1_1.jpg"
    image.write_bytes(cv2.imencode(".jpg", 255 - cv2.imread(str(image)))[1].tobytes())
    with caplog.at_level(logging.WARNING, logger="face3d.trainset.dataset"):
        summary = _generate(root, out)
    assert (summary["written"], summary["skipped"]) == (2, N_SAMPLES - 2)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"redoing sample {SYNTH_FOLDER}/SYNTH_0000_1_0: its input SYNTH_0000_1_0.mat changed since its outputs "
        f"were made from it",
        f"redoing sample {SYNTH_FOLDER}/SYNTH_0000_1_1: its input SYNTH_0000_1_1.jpg changed since its outputs "
        f"were made from it"]
    _generate(root, tmp_path / "fresh")
    assert _tree_digest(out) == _tree_digest(tmp_path / "fresh")  # as if the new inputs had always been there


def test_neck_zeroed_rewrites_uv_data_and_leaves_finished_samples_done(reference, synth_root, tmp_path):
    output, summary = reference
    out = tmp_path / "out"
    shutil.copytree(output, out)
    mask = UV_DATA_DIR + "/uv_weight_mask.png"
    zeroed = _generate(synth_root, out, config=dataclasses.replace(CONFIG, neck_zeroed=True))
    assert (zeroed["written"], zeroed["skipped"]) == (0, N_SAMPLES)
    assert zeroed["fingerprint"] == summary["fingerprint"]
    assert json.loads((out / "summary.json").read_text())["config"]["neck_zeroed"] is True
    assert (out / mask).read_bytes() != (output / mask).read_bytes()  # the neck at weight 0
    assert _tree_digest(out) == _tree_digest(output)
    back = _generate(synth_root, out)
    assert (back["written"], back["skipped"], back["config"]["neck_zeroed"]) == (0, N_SAMPLES, False)
    assert (out / mask).read_bytes() == (output / mask).read_bytes()


def test_the_model_counts_by_its_files_content(reference, synth_root, tmp_path):
    from face3d.morphable_model import load, model_identity
    from face3d.morphable_model.default_model import MODEL_VERSION, default_model_dir

    copies = [tmp_path / "here", tmp_path / "there"]
    for folder in copies:
        folder.mkdir()
        for name in ("BFM.mat", "BFM_info.mat", "BFM_UV.mat"):
            shutil.copyfile(default_model_dir() / name, folder / name)
    here, there = (folder / "BFM.mat" for folder in copies)
    assert model_identity(None) == f"default-v{MODEL_VERSION}"
    assert model_identity(here) == model_identity(there) != model_identity(None)
    written = _generate(synth_root, tmp_path / "out", model_path=here, limit=2)
    assert (written["written"], written["skipped"]) == (2, 0)
    # the same files elsewhere (another machine's path) resume; a changed file beside BFM.mat redoes
    assert _generate(synth_root, tmp_path / "out", model_path=there, limit=2)["skipped"] == 2
    uv = load.load_uv_coords(there.parent / "BFM_UV.mat")
    load.save_uv_coords(there.parent / "BFM_UV.mat", uv * np.float32(0.999))
    assert model_identity(there) != model_identity(here)
    assert _generate(synth_root, tmp_path / "out", model_path=there, limit=2)["written"] == 2
    with pytest.raises(FileNotFoundError, match="nowhere/BFM.mat: BFM model file not found"):
        model_identity(tmp_path / "nowhere" / "BFM.mat")


def test_300wlp_fixture_goes_through_with_the_default_model(tmp_path):
    root = fixtures_dir() / "300W_LP"
    if not root.is_dir():
        pytest.skip(f"real-format fixtures not found at {root}")
    config = GenerationConfig(resolution=64, angles=(30,), preview=True)
    summary = generate_dataset(root, tmp_path, config, workers=1, progress=False)
    assert (summary["written"], summary["failed"], summary["label_lines"]) == (1, 0, 2)
    uv_kpt = np.loadtxt(tmp_path / UV_DATA_DIR / "uv_kpt_ind.txt").astype(int)
    for name in ("IBUG_image_008_1_0", "IBUG_image_008_1_0_angle_30"):
        posmap = np.load(tmp_path / f"{name}.npy").astype(np.float32)
        keypoints = posmap[uv_kpt[1], uv_kpt[0], :2]
        assert np.all((keypoints > 0) & (keypoints < 63))  # the face lies in the crop
        assert cv2.imread(str(tmp_path / f"{name}_preview.png")).shape == (64, 128, 3)


def test_settings_changed_back_redo_what_the_other_settings_rewrote(reference, synth_root, tmp_path):
    output, _ = reference
    shutil.copytree(output, tmp_path / "out")
    _generate(synth_root, tmp_path / "out", limit=2, seed=9)  # rewrites the first two samples' files
    back = _generate(synth_root, tmp_path / "out")  # their records under the first settings no longer count
    assert (back["written"], back["skipped"]) == (2, N_SAMPLES - 2)
    assert _tree_digest(tmp_path / "out") == _tree_digest(output)
