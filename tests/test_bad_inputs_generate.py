"""Bad inputs to the training-set generator and the data commands: each is refused with one line naming the file
and the problem, the rest of the run goes on, and the exit status tells.

The bad corpus is built at run time from two tiny synthesized samples (64x64 images, 16-pixel maps, no rotations):
short parameter vectors, complex or absurd poses, a non-UTF-8 name, a name with a space, an image whose header
claims 40000x40000 pixels, an unreadable folder, empty and missing roots, a model without BFM_UV.mat.
"""
import dataclasses
import errno
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
import scipy.sparse
from _fixtures import deny_listing, fixtures_dir
from _image_files import png_header

from face3d.cli import build_parser, main
from face3d.cli.generate import generation_config
from face3d.morphable_model.default_model import default_model_dir
from face3d.morphable_model.load import save_BFM
from face3d.trainset.dataset import (
    DONE_DIR,
    TEMP_SUFFIX,
    UV_DATA_DIR,
    config_fingerprint,
    discover_samples,
    generate_dataset,
    pool_context,
    read_journals,
    sample_seed,
)
from face3d.trainset.outputs import Journal
from face3d.trainset.pack import read_label_file
from face3d.trainset.sample import GenerationConfig
from face3d.trainset.synthetic import FLIP_FOLDER, SYNTH_FOLDER, synthesize_dataset
from face3d.utils.errors import InputFileError

REPO = Path(__file__).resolve().parents[1]
CONFIG = GenerationConfig(resolution=16, angles=())
SOURCE = f"{SYNTH_FOLDER}/{SYNTH_FOLDER}_0000_1_0"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """Two synthesized 64x64 samples; ``synth / SOURCE`` is the one every bad sample is made from."""
    root = tmp_path_factory.mktemp("synth")
    synthesize_dataset(root, count=2, seed=5, size=64)
    return root


def _params(synth):
    mat = scipy.io.loadmat(synth / f"{SOURCE}.mat")
    return {k: v for k, v in mat.items() if not k.startswith("__")}


def _add_sample(root, name, synth, image=None, **changes):
    """Write sample ``name`` (str, or bytes for a name the file system holds but UTF-8 cannot spell) into ``root``:
    the source sample's image (or the bytes ``image``) and its parameters with ``changes``."""
    folder = os.fsencode(root)
    os.makedirs(folder, exist_ok=True)
    base = os.path.join(folder, os.fsencode(name))
    with open(base + b".jpg", "wb") as f:
        f.write((synth / f"{SOURCE}.jpg").read_bytes() if image is None else image)
    with open(base + b".mat", "wb") as f:
        scipy.io.savemat(f, {**_params(synth), **changes})


def _run(root, output, config=CONFIG, **kwargs):
    kwargs.setdefault("workers", 1)
    return generate_dataset(root, output, config, progress=False, relative_paths=True, **kwargs)


def _reasons(summary):
    return {failure["sample"]: failure["reason"] for failure in summary["failures"]}


def _cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "face3d", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=240)


def _one_line_error(result, *words):
    """The command failed with status 2 and one stderr line holding ``words``, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and all(w in lines[0] for w in words), lines


# -------------------------------------------------------------------------------- short Shape_Para / Exp_Para


@pytest.mark.parametrize("key, size, model_size", [("Shape_Para", 40, 199), ("Shape_Para", 5, 199),
                                                   ("Exp_Para", 10, 29), ("Exp_Para", 0, 29)])
def test_short_parameter_vectors_fail_the_sample_unless_allowed(tmp_path, synth, key, size, model_size):
    root = tmp_path / "root"
    _add_sample(root, "good", synth)
    _add_sample(root, "short", synth, **{key: _params(synth)[key][:size]})
    summary = _run(root, tmp_path / "out")
    assert (summary["written"], summary["failed"]) == (1, 1)
    assert _reasons(summary) == {"short": f"{root / 'short.mat'}: {key} has {size} entries where the model "
                                          f"has {model_size} (a 300W-LP file has them all; --allow-short-params if "
                                          f"the data set truncates them on purpose)"}
    allowed = _run(root, tmp_path / "allowed", dataclasses.replace(CONFIG, allow_short_params=True))
    assert (allowed["written"], allowed["failed"]) == (2, 0)


def test_real_300wlp_sample_passes_and_its_truncated_copy_fails(tmp_path):
    """The shared 300W-LP fixture (199 / 29 parameters) against the default model; skipped without fixtures."""
    source = fixtures_dir() / "300W_LP" / "IBUG_image_008_1_0"
    if not source.with_suffix(".mat").is_file():
        pytest.skip(f"no 300W-LP fixture at {source}")
    mat = {k: v for k, v in scipy.io.loadmat(source.with_suffix(".mat")).items() if not k.startswith("__")}
    root = tmp_path / "IBUG"
    root.mkdir()
    for name, changes in (("real", {}), ("truncated", {"Shape_Para": mat["Shape_Para"][:40]})):
        (root / f"{name}.jpg").write_bytes(source.with_suffix(".jpg").read_bytes())
        scipy.io.savemat(root / f"{name}.mat", {**mat, **changes})
    summary = _run(tmp_path, tmp_path / "out")
    assert (summary["written"], summary["failed"]) == (1, 1)
    assert "Shape_Para has 40 entries where the model has 199" in _reasons(summary)["IBUG/truncated"]


def test_allow_short_params_and_max_pixels_flags_leave_the_outputs_fingerprint(synth):
    args = build_parser().parse_args(["generate", "--allow-short-params", "--max-pixels", "5000"])
    config = generation_config(args)
    assert config.allow_short_params is True and config.max_pixels == 5000
    assert GenerationConfig().allow_short_params is False and GenerationConfig().max_pixels == 100_000_000
    # they decide which samples are refused, not the bytes of the others: finished samples stay done
    assert config_fingerprint(config, "default", 0) == config_fingerprint(GenerationConfig(), "default", 0)


# One valid non-default value for every GenerationConfig field.
CHANGED_SETTINGS = {
    "resolution": 128, "crop_scale": 1.6, "perturb": False, "max_shift": 0.2, "scale_range": (0.8, 1.2),
    "angles": (15,), "refit": True, "refit_max_iter": 5, "posmap_dtype": "float32", "preview": True,
    "neck_zeroed": True, "min_visible_keypoints": 30, "allow_short_params": True, "max_pixels": 5000,
}


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(GenerationConfig)])
def test_every_setting_that_changes_the_outputs_changes_the_fingerprint(field):
    """A finished sample counts as done only under the same fingerprint: a setting that changes a sample's bytes
    (posmap_dtype among them: a float32 rerun over float16 maps must rewrite them) must change the fingerprint.
    Only three leave it: allow_short_params and max_pixels decide which samples are refused, neck_zeroed only
    uv-data's weight mask, which every run writes anew."""
    assert set(CHANGED_SETTINGS) == {f.name for f in dataclasses.fields(GenerationConfig)}
    default = GenerationConfig()
    changed = dataclasses.replace(default, **{field: CHANGED_SETTINGS[field]})
    assert getattr(changed, field) != getattr(default, field)
    same = config_fingerprint(changed, "default", 0) == config_fingerprint(default, "default", 0)
    assert same is (field in ("allow_short_params", "max_pixels", "neck_zeroed"))


# -------------------------------------------------------------------------------------------- absurd poses


def _pose(synth, index, value):
    pose = _params(synth)["Pose_Para"].astype(np.complex128 if isinstance(value, complex) else np.float64)
    pose[0, index] = value
    return pose


def _cell(item):
    """A 1 x 1 MATLAB cell holding ``item``."""
    cell = np.empty((1, 1), dtype=object)
    cell[0, 0] = item
    return cell


@pytest.mark.parametrize("key, value, problem", [
    ("Pose_Para", lambda pose: scipy.sparse.csc_matrix(pose.reshape(1, 7)),
     "Pose_Para is a csc_matrix of shape (1, 7), expected a numeric array"),
    ("Shape_Para", lambda _: _cell(np.zeros(3)), "Shape_Para is a cell of shape (1, 1), expected a numeric array"),
    ("Exp_Para", lambda _: {"values": np.zeros(3)}, "Exp_Para is a struct of shape (1, 1), expected a numeric array"),
])
def test_parameters_that_are_no_numeric_array_fail_the_sample_naming_what_they_are(tmp_path, synth, key, value,
                                                                                    problem):
    root = tmp_path / "root"
    _add_sample(root, "good", synth)
    _add_sample(root, "odd", synth, **{key: value(np.asarray(_params(synth)["Pose_Para"], dtype=np.float64))})
    summary = _run(root, tmp_path / "out")
    assert (summary["written"], summary["failed"]) == (1, 1)
    assert _reasons(summary) == {"odd": f"{root / 'odd.mat'}: {problem}"}


@pytest.mark.parametrize("index, value, problem", [
    (5, 1e30, "Pose_Para tz = 1e+30 is beyond +-4.29497e+09 pixels: depths measured from the lowest vertex would "
              "lose their precision"),
    (6, 1e306, "Pose_Para projects the keypoints to non-finite positions"),
    (0, 0.1 + 0.5j, "Pose_Para has complex values"),
])
def test_absurd_poses_fail_the_sample(tmp_path, synth, index, value, problem):
    root = tmp_path / "root"
    _add_sample(root, "good", synth)
    _add_sample(root, "absurd", synth, Pose_Para=_pose(synth, index, value))
    summary = _run(root, tmp_path / "out")
    assert (summary["written"], summary["failed"]) == (1, 1)
    assert _reasons(summary) == {"absurd": f"{root / 'absurd.mat'}: {problem}"}


def test_large_but_resolvable_depth_shift_gives_the_same_map(tmp_path, synth):
    """z is measured from the lowest vertex (PRNet), so a plausible tz changes nothing."""
    root = tmp_path / "root"
    _add_sample(root, "a", synth)
    _add_sample(root, "b", synth, Pose_Para=_pose(synth, 5, 1e6))
    out = tmp_path / "out"
    summary = _run(root, out, dataclasses.replace(CONFIG, perturb=False))
    assert summary["written"] == 2
    a, b = np.load(out / "a.npy").astype(np.float32), np.load(out / "b.npy").astype(np.float32)
    assert np.abs(a - b).max() <= 0.02  # float16 rounding of z values up to ~16


# --------------------------------------------------------------------------------------------- pt2d


def _pt2d_cell(pt2d):
    """``pt2d`` as a (1, 2) MATLAB cell of its two rows (scipy writes object arrays as cells)."""
    cell = np.empty((1, 2), dtype=object)
    cell[0, 0], cell[0, 1] = pt2d[:1], pt2d[1:]
    return cell


def test_a_malformed_pt2d_fails_no_sample_and_is_named_where_it_is_read(tmp_path, synth):
    """The generator never uses pt2d; ``read_300wlp_sample``, which returns it, refuses it naming file and shape."""
    from face3d.trainset.sample_io import read_300wlp_sample

    pt2d = _params(synth)["pt2d"]
    root = tmp_path / "root"
    _add_sample(root, "good", synth)
    _add_sample(root, "transposed", synth, pt2d=pt2d.T)
    _add_sample(root, "cell", synth, pt2d=_pt2d_cell(pt2d))
    out = tmp_path / "out"
    summary = _run(root, out, dataclasses.replace(CONFIG, perturb=False))
    assert (summary["written"], summary["failed"]) == (3, 0), summary["failures"]
    for name in ("transposed", "cell"):
        assert (out / f"{name}.npy").read_bytes() == (out / "good.npy").read_bytes()
    for name, problem in (("transposed", "pt2d is a numeric array of shape (68, 2), expected a (2, k) numeric array"),
                          ("cell", "pt2d is a cell of shape (1, 2), expected a (2, k) numeric array")):
        with pytest.raises(InputFileError) as info:
            read_300wlp_sample(root / f"{name}.jpg", root / f"{name}.mat")
        assert str(info.value) == f"{root / name}.mat: {problem}"
    assert read_300wlp_sample(root / "good.jpg", root / "good.mat")[1]["pt2d"].shape == (2, 68)


# ------------------------------------------------------------------------------------------- file names


def test_sample_seed_takes_any_file_system_name():
    assert sample_seed(7, "AFW/AFW_1_0") == 6133219883888409367  # unchanged for UTF-8 names
    assert sample_seed(0, "SYNTH/caf\udce9") != sample_seed(0, "SYNTH/caf\udce8")  # raw bytes 0xe9, 0xe8


def test_non_utf8_name_is_skipped_with_its_reason(tmp_path, synth):
    root = tmp_path / "root"
    _add_sample(root, "good", synth)
    _add_sample(root, b"caf\xe9", synth)  # Latin-1 e-acute: not UTF-8
    out = tmp_path / "out"
    summary = _run(root, out)
    assert (summary["written"], summary["failed"]) == (1, 1)
    assert summary["failures"][0]["sample"] == "caf\\xe9"
    assert summary["failures"][0]["reason"] == (f"{root}/caf\\xe9.mat: the name is not valid UTF-8, which the label "
                                                f"file is written in; rename it")
    assert json.loads((out / "summary.json").read_bytes().decode("utf-8"))["failed"] == 1
    assert (out / "trainDataLabel.txt").read_text(encoding="utf-8") == "good.jpg good.npy\n"


def test_name_with_a_space_is_refused_and_the_label_file_stays_readable(tmp_path, synth):
    root = tmp_path / "root"
    _add_sample(root, "good", synth)
    _add_sample(root / "sub folder", "x", synth)
    _add_sample(root, "two words", synth)
    out = tmp_path / "out"
    summary = _run(root, out)
    assert (summary["written"], summary["failed"]) == (1, 2)
    assert _reasons(summary) == {
        name: f"{root / name}.mat: the name contains whitespace, which separates the two paths of a label line; "
              f"rename it" for name in ("sub folder/x", "two words")}
    assert read_label_file(out / "trainDataLabel.txt") == [(str(out / "good.jpg"), str(out / "good.npy"))]


def test_output_folder_with_a_space_needs_relative_label_paths(tmp_path, synth):
    root = tmp_path / "root"
    _add_sample(root, "good", synth)
    with pytest.raises(ValueError, match="contains whitespace, which separates the two paths of a label line: "
                                         "give --label-paths relative or another output folder"):
        generate_dataset(root, tmp_path / "my out", CONFIG, workers=1, progress=False)
    assert not (tmp_path / "my out").exists()
    assert _run(root, tmp_path / "my out")["written"] == 1  # relative paths hold no space


def test_name_of_another_samples_rotated_copy_is_refused_and_reruns_settle(tmp_path, synth, capsys):
    root, out = tmp_path / "root", tmp_path / "out"
    for name in ("a", "a_angle_15", "a_angle_30"):  # a's 15-degree copy is named a_angle_15 too
        _add_sample(root, name, synth)
    _add_sample(root / "sub", "a_angle_15", synth)  # another folder: no sample a beside it
    config = dataclasses.replace(CONFIG, angles=(15,))
    summary = _run(root, out, config)
    assert (summary["samples"], summary["written"], summary["failed"]) == (4, 3, 1)
    assert _reasons(summary) == {"a_angle_15": f"{root}/a_angle_15.mat: its output name a_angle_15 is also the "
                                               f"name of the 15-degree copy of sample {root}/a.mat, which sorts "
                                               f"first and is kept; rename one of them"}
    label = (out / "trainDataLabel.txt").read_text()
    assert label.splitlines() == [f"{n}.jpg {n}.npy" for n in ("a", "a_angle_15", "a_angle_30", "a_angle_30_angle_15",
                                                               "sub/a_angle_15", "sub/a_angle_15_angle_15")]
    alone = tmp_path / "alone"  # a's outputs, made without the refused sample: nothing overwrote them
    _add_sample(alone / "root", "a", synth)
    _run(alone / "root", alone / "out", config)
    assert {n: b for n, b in _outputs(out).items() if n.startswith("a.") or n.startswith("a_angle_15.")} == \
        _outputs(alone / "out")
    outputs = _outputs(out)
    words = ["generate", "--root", root, "--output", out, "--resolution", "16", "--angles", "15", "--workers", "1",
             "--label-paths", "relative", "--quiet"]
    assert main(list(map(str, words))) == 1
    assert "samples 4: written 0, skipped 3 (already done), failed 1" in capsys.readouterr().out
    assert _outputs(out) == outputs and (out / "trainDataLabel.txt").read_text() == label
    shard = _run(root, tmp_path / "shard", config, shard="2/4")  # a_angle_15 alone, a in another shard
    assert (shard["samples"], shard["failed"]) == (1, 1) and _reasons(shard) == _reasons(summary)


# --------------------------------------------------------------------------------------------- images


def test_image_size_reads_only_the_header(synth):
    from face3d.trainset.sample import image_size

    assert image_size(png_header(40000, 30000)) == (40000, 30000)
    assert image_size((synth / f"{SOURCE}.jpg").read_bytes()) == (64, 64)
    assert image_size(cv2.imencode(".bmp", np.zeros((5, 7, 3), np.uint8))[1].tobytes()) == (7, 5)
    progressive = cv2.imencode(".jpg", np.zeros((37, 53, 3), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1]
    assert image_size(progressive.tobytes()) == (53, 37)  # SOF2, after the segments before it
    assert image_size(b"GIF89a" + bytes(20)) is None


def test_image_above_the_pixel_limit_fails_without_being_decoded(tmp_path, synth):
    root = tmp_path / "root"
    _add_sample(root, "good", synth)
    _add_sample(root, "huge", synth, image=png_header(40000, 40000))
    summary = _run(root, tmp_path / "out")
    assert (summary["written"], summary["failed"]) == (1, 1)
    assert _reasons(summary) == {"huge": f"{root / 'huge.jpg'}: the image is 40000x40000 = 1600000000 pixels, "
                                         f"above the limit of 100000000 (--max-pixels)"}
    small = _run(root, tmp_path / "small", dataclasses.replace(CONFIG, max_pixels=64 * 64 - 1))
    assert small["failed"] == 2
    assert _reasons(small)["good"] == (f"{root / 'good.jpg'}: the image is 64x64 = 4096 pixels, above the limit "
                                       f"of 4095 (--max-pixels)")


def test_a_sample_image_of_another_suffix_is_named_and_a_bmp_one_is_read(tmp_path, synth):
    root = tmp_path / "root"
    pixels = cv2.imread(str(synth / f"{SOURCE}.jpg"))
    for name, suffix in (("jpg", ".jpg"), ("bmp", ".bmp"), ("webp", ".webp"), ("tif", ".tif"), ("missing", "")):
        _add_sample(root, name, synth)
        (root / f"{name}.jpg").unlink()
        if suffix:
            cv2.imwrite(str(root / f"{name}{suffix}"), pixels)
    (root / "missing.txt").write_text("a landmark file beside the .mat is not taken for its image\n")
    _add_sample(root, "jfif", synth)  # a JPEG under a rarer suffix: named, to be renamed
    (root / "jfif.jpg").rename(root / "jfif.jfif")
    summary = _run(root, tmp_path / "out")
    assert (summary["written"], summary["failed"]) == (2, 4)
    assert _reasons(summary) == {
        **{name: f"{root / name}.{name}: generate reads a sample's image only from a .jpg/.jpeg/.png/.bmp file "
                 f"(convert it)" for name in ("webp", "tif", "jfif")},
        "missing": f"{root / 'missing.jpg'}: image file not found"}


# -------------------------------------------------------------------------------------------- folders


def test_unreadable_folder_is_reported_and_counted(tmp_path, synth, monkeypatch, caplog, capsys):
    root = tmp_path / "root"
    for folder in ("HELEN", "AFW"):
        _add_sample(root / folder, "good", synth)
    deny_listing(monkeypatch, "HELEN")
    unreadable = []
    assert [s.rel for s in discover_samples(root, unreadable=unreadable)] == ["AFW/good"]
    assert unreadable == [{"folder": str(root / "HELEN"), "reason": "PermissionError: Permission denied"}]
    summary = _run(root, tmp_path / "out")
    assert summary["written"] == 1 and summary["unreadable_folders"] == unreadable
    assert f"cannot list folder {root / 'HELEN'}" in caplog.text
    saved = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert saved["unreadable_folders"] == unreadable
    words = ["generate", "--root", str(root), "--resolution", "16", "--angles", "--workers", "1", "--quiet"]
    assert main([*words, "--output", str(tmp_path / "cli")]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == \
        "face3d generate: 1 folders could not be listed (more than --max-failures 0)"
    assert main([*words, "--output", str(tmp_path / "cli"), "--max-failures", "1"]) == 0


# ------------------------------------------------------------------------------------------ exit status


def test_generate_exits_non_zero_when_a_sample_failed_unless_allowed(tmp_path, synth):
    root = tmp_path / "root"
    _add_sample(root, "good", synth)
    _add_sample(root, b"caf\xe9", synth)
    _add_sample(root, "short", synth, Exp_Para=_params(synth)["Exp_Para"][:10])
    words = ["generate", "--root", root, "--resolution", "16", "--angles", "--workers", "1", "--quiet"]
    failed = _cli(*words, "--output", tmp_path / "out")
    assert failed.returncode == 1, failed.stderr
    assert "samples 3: written 1, skipped 0 (already done), failed 2" in failed.stdout
    assert "failed caf\\xe9: " in failed.stdout
    assert failed.stderr.strip().splitlines()[-1] == "face3d generate: 2 samples failed (more than --max-failures 0)"
    tolerated = _cli(*words, "--output", tmp_path / "out", "--max-failures", "2")
    assert tolerated.returncode == 0, tolerated.stderr
    assert "samples 3: written 0, skipped 1 (already done), failed 2" in tolerated.stdout


def test_the_failures_under_generates_summary_line_stop_at_20_and_name_summary_json(tmp_path, synth, capsys):
    """Each failure is logged as it happens; under the summary line the first 20 are named again, then one line
    points to the run's summary file (a shard's own), which lists all 22."""
    root, out = tmp_path / "root", tmp_path / "out"
    for k in range(22):
        _add_sample(root, f"s{k:02d}", synth, Exp_Para=_params(synth)["Exp_Para"][:10])
    assert main(["generate", "--root", str(root), "--output", str(out), "--resolution", "16", "--angles",
                 "--workers", "1", "--quiet", "--shard", "1/1"]) == 1
    lines = capsys.readouterr().out.splitlines()
    summary_path = out / "summary.part-1-of-1.json"
    failures = json.loads(summary_path.read_text())["failures"]
    assert [failure["sample"] for failure in failures] == [f"s{k:02d}" for k in range(22)]
    assert lines[0].startswith("samples 22: written 0, skipped 0 (already done), failed 22; 0 label lines in ")
    assert lines[1:] == [f"  failed {failure['sample']}: {failure['reason']}" for failure in failures[:20]] + [
        f"  ... and 2 more: see {summary_path}"]
    assert failures[0]["reason"] == f"{root / 's00.mat'}: Exp_Para has 10 entries where the model has 29 (a " \
                                    f"300W-LP file has them all; --allow-short-params if the data set truncates " \
                                    f"them on purpose)"


# --------------------------------------------------------------------------------------- synthetic set


def test_synthetic_count_change_renders_exactly_the_new_count(tmp_path):
    synthesize_dataset(tmp_path, count=4, seed=2, size=64)
    first = (tmp_path / f"{SOURCE}.jpg").read_bytes()
    synthesize_dataset(tmp_path, count=2, seed=2, size=64)
    assert [s.rel for s in discover_samples(tmp_path)] == [SOURCE, f"{FLIP_FOLDER}/{SYNTH_FOLDER}_0000_1_0"]
    assert (tmp_path / f"{SOURCE}.jpg").read_bytes() == first
    synthesize_dataset(tmp_path, count=3, seed=2, size=64)
    assert len(discover_samples(tmp_path)) == 3


# ------------------------------------------------------------------------------ commands on a fresh machine


def test_generate_on_a_folder_without_samples_says_so(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "photo.jpg").write_bytes(b"")
    result = _cli("generate", "--root", tmp_path / "empty", "--output", tmp_path / "out", "--quiet")
    _one_line_error(result, "face3d generate: error:", str(tmp_path / "empty"),
                    "no samples (an image with a .mat of the same name)")
    assert not (tmp_path / "out" / "trainDataLabel.txt").exists()


def test_commands_end_in_one_line_on_missing_inputs(tmp_path, synth):
    root = tmp_path / "root"
    _add_sample(root, "good", synth)
    out = tmp_path / "out"
    _one_line_error(_cli("generate", "--root", tmp_path / "nowhere", "--output", out),
                    "face3d generate: error:", str(tmp_path / "nowhere"))
    _one_line_error(_cli("generate", "--root", root, "--bfm", tmp_path / "BFM.mat", "--output", out),
                    "face3d generate: error:", str(tmp_path / "BFM.mat"), "not found")
    _one_line_error(_cli("generate", "--root", root, "--bfm", root, "--output", out),
                    f"face3d generate: error: {root}: is a folder; give the BFM.mat file in it")
    _one_line_error(_cli("generate", "--root", root, "--bfm", synth / f"{SOURCE}.mat", "--output", out),
                    "face3d generate: error:", str(synth / f"{SOURCE}.mat"), "no variable 'model'")
    bfm = tmp_path / "bfm" / "BFM.mat"  # no BFM_UV.mat beside it
    bfm.parent.mkdir()
    save_BFM(bfm, _tiny_model(np.random.default_rng(0).permutation(100)[:68]))
    _one_line_error(_cli("generate", "--root", root, "--bfm", bfm, "--output", out),
                    "face3d generate: error:", str(tmp_path / "bfm" / "BFM_UV.mat"), "not found")
    _one_line_error(_cli("generate", "--root", root, "--output", tmp_path / "my out"),
                    "face3d generate: error:", str(tmp_path / "my out"), "contains whitespace")
    no_info = tmp_path / "no_info"  # the default model without BFM_info.mat: no mirror pairs (symlist)
    no_info.mkdir()
    for name in ("BFM.mat", "BFM_UV.mat"):
        shutil.copyfile(default_model_dir() / name, no_info / name)
    for command in (["synthesize", "--count", "2", "--size", "64"], ["generate", "--synthetic-count", "2"]):
        _one_line_error(_cli(*command, "--bfm", no_info / "BFM.mat", "--output", tmp_path / command[0]),
                        f"face3d {command[0]}: error: {no_info / 'BFM_info.mat'}: no 'symlist': _Flip copies need it; "
                        f"use --no-flip")
        assert not (tmp_path / command[0]).exists()
    # nor eyes, nose and mouth (segbin) for the uv-data's weight and eye masks
    _one_line_error(_cli("generate", "--root", root, "--bfm", no_info / "BFM.mat", "--output", out),
                    f"face3d generate: error: {no_info / 'BFM_info.mat'}: not found: its segbin regions give "
                    f"uv-data's eyes/nose/mouth weights and eye mask")
    assert not (out / "uv-data").exists() and not (out / "trainDataLabel.txt").exists()
    _one_line_error(_cli("pack", tmp_path / "trainDataLabel.txt", tmp_path / "set.h5"),
                    "face3d pack: error:", str(tmp_path / "trainDataLabel.txt"), "not found")
    _one_line_error(_cli("preview", synth / f"{SOURCE}.jpg"),
                    "face3d preview: error:", str(synth / f"{SOURCE}.jpg"), "not a .npy position map")


def _main_error(capsys, *args):
    """``face3d.cli.main(args)`` ended with status 2 (returned, or argparse's exit) and no traceback: its stderr
    lines (argparse's usage lines, then its error line)."""
    try:
        status = main([str(a) for a in args])
    except SystemExit as stop:
        status = stop.code
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err, err
    return err.strip().splitlines()


def _misfit_uv_data(folder, resolution):
    """The default model's uv-data at ``resolution`` with its keypoint pixels moved 3 px right: another model's."""
    from face3d.trainset.uv_layout import build_uv_data, load_uv_model, write_uv_data

    write_uv_data(build_uv_data(load_uv_model(None), resolution), folder)
    kpt = np.loadtxt(folder / "uv_kpt_ind.txt").astype(int)
    kpt[0] = np.minimum(kpt[0] + 3, resolution - 1)
    np.savetxt(folder / "uv_kpt_ind.txt", kpt, fmt="%d")
    return folder


def test_bad_generate_options_end_in_one_line_with_status_2(tmp_path, synth, capsys):
    from face3d.resources import default_uv_data_dir

    root = tmp_path / "root"
    _add_sample(root, "good", synth)
    run = ["generate", "--root", root, "--output", tmp_path / "out", "--workers", "1", "--quiet", "--angles"]
    misfit = _misfit_uv_data(tmp_path / "misfit", 16)
    assert _main_error(capsys, *run, "--resolution", "16", "--uv-data", misfit) == [
        f"face3d generate: error: {misfit}: uv-data does not fit the model: its keypoint pixels lie up to 3 px from "
        f"the model's keypoint vertices (it was built for another morphable model; give the model it was made for, "
        f"or write one for this model with face3d uv-data)"]
    assert _main_error(capsys, *run, "--resolution", "16", "--uv-data", default_uv_data_dir()) == [
        f"face3d generate: error: {default_uv_data_dir()}: uv-data resolution 256 differs from the set's 16 "
        f"(--resolution)"]
    assert _main_error(capsys, *run, "15", "15.0", "--resolution", "16") == [
        "face3d generate: error: angles must have distinct names (each names its outputs <stem>_angle_<deg>, the "
        "degrees in shortest form), got (15, 15)"]
    assert _main_error(capsys, *run, "--resolution", "4")[-1] == \
        "face3d generate: error: argument --resolution: expected an integer >= 8 (pixels), got '4'"
    assert not (tmp_path / "out" / "trainDataLabel.txt").exists()
    # checked before the synthetic set is rendered into the output folder
    synthetic = ["generate", "--output", tmp_path / "synthetic", "--synthetic-count", "1", "--resolution", "16"]
    assert _main_error(capsys, *synthetic, "--seed", "-1")[-1] == \
        "face3d generate: error: argument --seed: expected an integer >= 0, got '-1'"
    assert _main_error(capsys, *synthetic, "--angles", "30", "30")[-1].startswith(
        "face3d generate: error: angles must have distinct names")
    assert _main_error(capsys, "synthesize", "--output", tmp_path / "synthetic", "--seed", "-1")[-1] == \
        "face3d synthesize: error: argument --seed: expected an integer >= 0, got '-1'"
    assert _main_error(capsys, "synthesize", "--output", tmp_path / "synthetic", "--size", "63")[-1] == \
        "face3d synthesize: error: argument --size: expected an integer >= 64 (pixels), got '63'"
    assert _main_error(capsys, "uv-data", "--output", tmp_path / "uv", "--resolution", "1")[-1] == \
        "face3d uv-data: error: argument --resolution: expected an integer >= 8 (pixels), got '1'"
    assert not (tmp_path / "uv").exists()
    assert not (tmp_path / "synthetic").exists()


def test_a_uv_data_folder_whose_files_disagree_ends_generate_in_one_line(tmp_path, synth, capsys):
    """Masks of another size than each other or than the index files, and a uv_kpt_ind.txt of 60 keypoints."""
    from face3d.trainset.uv_layout import build_uv_data, load_uv_model, write_uv_data

    root = tmp_path / "root"
    _add_sample(root, "good", synth)
    uv_data = build_uv_data(load_uv_model(None), 16)
    run = ["generate", "--root", root, "--output", tmp_path / "out", "--workers", "1", "--quiet", "--angles",
           "--resolution", "16", "--uv-data"]

    def folder(name, resized=(), side=32):
        written = tmp_path / name
        write_uv_data(uv_data, written)
        for mask in resized:
            image = cv2.imread(str(written / mask), cv2.IMREAD_UNCHANGED)
            cv2.imwrite(str(written / mask), cv2.resize(image, (side, side), interpolation=cv2.INTER_NEAREST))
        return written

    face_mask_8 = folder("face-mask-8", ["uv_face_mask.png"], side=8)
    assert _main_error(capsys, *run, face_mask_8) == [
        f"face3d generate: error: {face_mask_8}: masks of different sizes: uv_face_mask.png is 8x8, "
        f"uv_weight_mask.png and uv_face_eyes.png are 16x16; all three must be at the resolution of face_ind.txt and "
        f"uv_kpt_ind.txt"]
    masks_32 = folder("masks-32", ["uv_face_mask.png", "uv_weight_mask.png", "uv_face_eyes.png"])
    faces = len(uv_data.face_ind)
    assert _main_error(capsys, *run, masks_32) == [
        f"face3d generate: error: {masks_32 / 'face_ind.txt'}: not the face pixels of uv_face_mask.png (32x32, "
        f"row-major y*32 + x, ascending): it holds {faces} indices for the mask's {4 * faces} face pixels; the two "
        f"are from different uv-data sets or resolutions"]
    sixty = folder("sixty")
    np.savetxt(sixty / "uv_kpt_ind.txt", uv_data.uv_kpt_ind[:, :60], fmt="%d")
    assert _main_error(capsys, *run, sixty) == [
        f"face3d generate: error: {sixty / 'uv_kpt_ind.txt'}: expected 68 keypoints (2 x 68 values), got 60"]
    assert not (tmp_path / "out" / "trainDataLabel.txt").exists()


def test_a_damaged_canonical_vertices_file_ends_generate_in_one_line(tmp_path, synth, capsys):
    from face3d.trainset.uv_layout import CANONICAL_FILE, build_uv_data, load_uv_model, write_uv_data

    root, uv_data = tmp_path / "root", tmp_path / "uv"
    _add_sample(root, "good", synth)
    write_uv_data(build_uv_data(load_uv_model(None), 16), uv_data)
    canonical = uv_data / CANONICAL_FILE
    canonical.write_bytes(canonical.read_bytes()[:200])
    lines = _main_error(capsys, "generate", "--root", root, "--output", tmp_path / "out", "--workers", "1", "--quiet",
                        "--angles", "--resolution", "16", "--uv-data", uv_data)
    assert lines == [f"face3d generate: error: {canonical}: not a .npy array of canonical vertices (truncated: its "
                     f"header declares (166, 3) float32, 1992 bytes of data, the file holds 72)"]


def test_a_mat_that_is_not_bfm_ends_synthesize_and_generate_in_one_line(tmp_path, synth, capsys):
    """The synthetic set (synthesize, generate without --root) loads the model the way generate --root does."""
    not_bfm = synth / f"{SOURCE}.mat"
    for command in (["synthesize", "--count", "1", "--size", "64"], ["generate", "--synthetic-count", "1"]):
        output = tmp_path / command[0]
        assert _main_error(capsys, *command, "--bfm", not_bfm, "--output", output) == [
            f"face3d {command[0]}: error: {not_bfm}: no variable 'model' (expected a 1x1 MATLAB struct 'model'); "
            f"found ['Color_Para', 'Exp_Para', 'Illum_Para', 'Pose_Para', 'Shape_Para', 'Tex_Para', 'pt2d', 'roi']"]
        assert not output.exists()


def _tiny_model(kpt_ind, mean_x=None):
    """The loaded form of a 100-vertex model with ``kpt_ind`` (68,) 0-based and, given ``mean_x`` (100,), those
    x coordinates of the mean face (else a face about 200,000 micrometres wide)."""
    rng = np.random.default_rng(1)
    n3 = 300
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    shape_mu = rng.normal(0, 5e4, (100, 3))
    if mean_x is not None:
        shape_mu[:, 0] = mean_x
    return {"shapeMU": f32(shape_mu.reshape(n3, 1)), "shapePC": f32(rng.normal(0, 1, (n3, 4))),
            "shapeEV": f32(np.ones((4, 1))), "expMU": f32(np.zeros((n3, 1))),
            "expPC": f32(rng.normal(0, 1, (n3, 2))), "expEV": f32(np.ones((2, 1))),
            "texMU": f32(np.full((n3, 1), 128)), "texPC": f32(rng.normal(0, 1, (n3, 2))),
            "texEV": f32(np.ones((2, 1))), "tri": rng.integers(0, 100, (50, 3)).astype(np.int32),
            "tri_mouth": rng.integers(0, 100, (2, 3)).astype(np.int32), "kpt_ind": np.asarray(kpt_ind, np.int32)}


def _model_folder(folder, model):
    """``model`` as BFM.mat with the BFM_UV.mat and BFM_info.mat (its kpt_ind and face regions) that fit it."""
    from face3d.morphable_model import load

    folder.mkdir(parents=True)
    load.save_BFM(folder / "BFM.mat", model)
    load.save_uv_coords(folder / "BFM_UV.mat", np.random.default_rng(2).uniform(0.1, 0.9, (100, 2)))
    segbin = np.zeros((4, 100), bool)
    segbin[np.arange(100) % 4, np.arange(100)] = True
    load.save_BFM_info(folder / "BFM_info.mat", {"kpt_ind": model["kpt_ind"], "segbin": segbin})
    return folder / "BFM.mat"


def _model_commands(tmp_path):
    """The commands that load --bfm, each with an output folder under ``tmp_path`` it must not create."""
    return [["uv-data", "--resolution", "16", "--output", tmp_path / "uv-data"],
            ["synthesize", "--count", "1", "--size", "64", "--no-flip", "--output", tmp_path / "synthesize"],
            ["generate", "--synthetic-count", "1", "--resolution", "16", "--output", tmp_path / "generate"]]


def test_a_model_with_0_based_keypoints_ends_every_command_in_one_line(tmp_path, capsys):
    """A BFM.mat whose kpt_ind was written 0-based beside the BFM_info.mat it came with (1-based, as convert.py writes
    both): every keypoint one vertex off. Refused naming both files, not loaded with keypoints on the wrong vertices;
    keypoints that differ otherwise are refused too."""
    from face3d.morphable_model import load

    kpt = np.random.default_rng(3).permutation(np.arange(1, 100))[:68]
    model = _model_folder(tmp_path / "kpt0", _tiny_model(kpt))
    info = model.parent / "BFM_info.mat"
    load.save_BFM(model, _tiny_model(kpt - 1))  # the file holds kpt (1-based) - 1
    for command in _model_commands(tmp_path):
        assert _main_error(capsys, command[0], "--bfm", model, *command[1:]) == [
            f"face3d {command[0]}: error: {model}: kpt_ind is one less than {info}'s at every keypoint (off by one: "
            f"0-based indices? face3d's BFM.mat holds MATLAB's 1-based kpt_ind)"]
        assert not command[-1].exists()
    moved = kpt.copy()
    moved[[5, 60]] = 0
    load.save_BFM(model, _tiny_model(moved))
    assert _main_error(capsys, "uv-data", "--bfm", model, "--output", tmp_path / "uv-data") == [
        f"face3d uv-data: error: {info}: kpt_ind differs from {model}'s at 2 of 68 keypoints (keypoint 5: vertex "
        f"{kpt[5] + 1} here, 1 there, 1-based)"]


def test_a_model_in_millimetres_ends_every_command_in_one_line(tmp_path, capsys):
    """A BFM.mat converted by hand from BFM 2017's millimetres: a face 150 units wide, where the BFM's is about
    150,000 micrometres. Refused with the conversion, not rendered into samples of a face a thousand times too small."""
    model = _model_folder(tmp_path / "mm", _tiny_model(np.arange(68), mean_x=np.linspace(-75, 75, 100)))
    for command in _model_commands(tmp_path):
        assert _main_error(capsys, command[0], "--bfm", model, *command[1:]) == [
            f"face3d {command[0]}: error: {model}: the mean face is 150 units wide; face3d expects the BFM's "
            f"micrometres (about 150,000): from millimetres multiply shapeMU, expMU, shapeEV and expPC by 1000"]
        assert not command[-1].exists()


def test_raw_downloads_given_as_the_model_name_what_they_are_and_the_converter(tmp_path, capsys):
    """Basel 2009's 01_MorphableModel.mat, 3DDFA's Model_Shape.mat, a BFM 2017 .h5 and 3DDFA's .pkl given as --bfm:
    one line saying what the file is and how face3d's BFM.mat is built."""
    import pickle

    import h5py

    convert = "python Data/BFM/convert.py --raw RAW --out OUT (Data/BFM/README.md)"
    raw = "this is the raw Basel 2009 model (or 3DDFA's files): build face3d's BFM files with " + convert
    other = ("not a MATLAB .mat file: face3d reads the Basel Face Model 2009 (not BFM 2017's .h5 nor 3DDFA's .pkl): "
             "build its BFM files with " + convert)
    basel, shape = tmp_path / "01_MorphableModel.mat", tmp_path / "Model_Shape.mat"
    scipy.io.savemat(basel, {"shapeMU": np.zeros((6, 1)), "shapePC": np.zeros((6, 2)), "shapeEV": np.ones((2, 1)),
                             "texMU": np.zeros((6, 1)), "tl": np.array([[1, 2, 1]]), "segbin": np.ones((2, 4))})
    scipy.io.savemat(shape, {"mu_shape": np.zeros((6, 1)), "w": np.zeros((6, 2)), "sigma": np.ones((2, 1)),
                             "tri": np.array([[1], [2], [1]]), "keypoints": np.array([[1, 2]])})
    bfm2017 = tmp_path / "model2017-1_bfm_nomouth.h5"
    with h5py.File(bfm2017, "w") as f:
        f["shape/model/mean"] = np.zeros(6, np.float32)
    noneck = tmp_path / "bfm_noneck_v3.pkl"
    noneck.write_bytes(pickle.dumps({"u": np.zeros((6, 1), np.float32)}, protocol=4))
    for path, problem in ((basel, "no variable 'model' (expected a 1x1 MATLAB struct 'model'); found ['segbin', "
                                  "'shapeEV', 'shapeMU', 'shapePC', 'texMU', 'tl']; " + raw),
                          (shape, "no variable 'model' (expected a 1x1 MATLAB struct 'model'); found ['keypoints', "
                                  "'mu_shape', 'sigma', 'tri', 'w']; " + raw),
                          (bfm2017, "an HDF5 file, " + other), (noneck, "a Python pickle, " + other)):
        for command in _model_commands(tmp_path):
            assert _main_error(capsys, command[0], "--bfm", path, *command[1:]) == [
                f"face3d {command[0]}: error: {path}: {problem}"]
            assert not command[-1].exists()


@pytest.mark.skipif(not (fixtures_dir() / "prnet" / "uv-data").is_dir(), reason="no PRNet uv-data in the fixtures")
def test_prnet_uv_data_with_the_default_model_ends_in_one_line(tmp_path, synth, capsys):
    uv_data = fixtures_dir() / "prnet" / "uv-data"
    root = tmp_path / "root"
    _add_sample(root, "good", synth)
    lines = _main_error(capsys, "generate", "--root", root, "--output", tmp_path / "out", "--workers", "1",
                        "--quiet", "--angles", "--uv-data", uv_data)
    assert lines[-1].startswith(f"face3d generate: error: {uv_data}: uv-data does not fit the model: its keypoint "
                                f"pixels lie up to 42 px")


def test_bad_preview_output_ends_in_one_line_with_status_2(tmp_path, synth, capsys):
    root = tmp_path / "root"
    _add_sample(root, "good", synth)
    out = tmp_path / "out"
    assert _run(root, out)["written"] == 1
    npy = out / "good.npy"
    assert _main_error(capsys, "preview", npy, "--output", tmp_path / "picture")[-1] == (
        f"face3d preview: error: argument --output: {tmp_path / 'picture'}: no image format for its extension ''; "
        f"give .png or .jpg")
    assert _main_error(capsys, "preview", npy, "--output", tmp_path / "missing" / "p.png")[-1] == (
        f"face3d preview: error: argument --output: {tmp_path / 'missing' / 'p.png'}: folder "
        f"'{tmp_path / 'missing'}' not found")
    assert not (tmp_path / "picture").exists() and not (tmp_path / "missing").exists()
    assert main(["preview", str(npy), "--output", str(tmp_path / "p.jpg")]) == 0
    assert cv2.imread(str(tmp_path / "p.jpg")).shape == (16, 32, 3)  # the crop beside the map


def test_bad_inputs_leave_no_half_written_outputs(tmp_path, synth):
    """Every refused sample above leaves nothing behind: only the good sample's files are in the output (beside the
    run's lock file)."""
    root = tmp_path / "root"
    _add_sample(root, "good", synth)
    _add_sample(root, "huge", synth, image=png_header(40000, 40000))
    _add_sample(root, "absurd", synth, Pose_Para=_pose(synth, 5, 1e30))
    out = tmp_path / "out"
    _run(root, out)
    files = sorted(p.name for p in out.iterdir() if p.is_file())
    assert files == [".generate.lock", "good.jpg", "good.npy", "summary.json", "trainDataLabel.txt"]


# ------------------------------------------------------------------------------------- resume and workers


def _outputs(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*"))
            if p.suffix in (".jpg", ".npy") and UV_DATA_DIR not in p.parts}


def test_resume_redoes_missing_truncated_or_changed_outputs(tmp_path, synth):
    root = tmp_path / "root"
    for name in ("a", "b", "c", "d"):
        _add_sample(root, name, synth)
    out = tmp_path / "out"
    assert _run(root, out)["written"] == 4
    reference = _outputs(out)
    (out / "a.npy").unlink()
    (out / "b.jpg").write_bytes((out / "b.jpg").read_bytes()[:100])  # truncated
    npy = bytearray((out / "c.npy").read_bytes())
    npy[-3] ^= 0xFF  # same size, changed near the end
    (out / "c.npy").write_bytes(bytes(npy))
    again = _run(root, out)
    assert (again["written"], again["skipped"], again["failed"]) == (3, 1, 0)
    assert _outputs(out) == reference
    assert (out / "trainDataLabel.txt").read_text().split() == [f"{n}.{e}" for n in "abcd" for e in ("jpg", "npy")]


def test_resume_redoes_outputs_changed_in_their_first_or_last_4_kib(tmp_path, synth, caplog):
    """A resume checks each finished file's size and the crc32 of its first and of its last 4 KiB: a byte changed
    in either window (size kept) redoes the sample. The maps here (32-pixel float32, 12416 bytes) are longer than
    both windows together, so each change lies in one window only."""
    root = tmp_path / "root"
    for name in ("a", "b", "c"):
        _add_sample(root, name, synth)
    out, config = tmp_path / "out", GenerationConfig(resolution=32, angles=(), posmap_dtype="float32")
    assert _run(root, out, config)["written"] == 3
    reference = _outputs(out)
    size = len(reference["a.npy"])
    assert size == 128 + 32 * 32 * 3 * 4 > 2 * 4096
    for name, offset in (("a", 1000), ("b", size - 4096), ("c", size - 1)):  # head; first and last tail bytes
        npy = bytearray(reference[f"{name}.npy"])
        npy[offset] ^= 0xFF
        (out / f"{name}.npy").write_bytes(bytes(npy))
    with caplog.at_level(logging.WARNING, logger="face3d.trainset.dataset"):
        again = _run(root, out, config)
    assert (again["written"], again["skipped"], again["failed"]) == (3, 0, 0)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"redoing sample {name}: {name}.npy changed since it was written" for name in "abc"]
    assert _outputs(out) == reference


def test_resume_drops_a_damaged_sample_whose_redo_fails_from_the_label_file(tmp_path, synth):
    root = tmp_path / "root"
    for name in ("a", "b"):
        _add_sample(root, name, synth)
    out = tmp_path / "out"
    assert _run(root, out)["written"] == 2
    (out / "b.npy").write_bytes(b"")
    (root / "b.jpg").unlink()  # the redo fails: b must leave the label file, not stay listed with a broken map
    again = _run(root, out)
    assert (again["written"], again["skipped"], again["failed"]) == (0, 1, 1)
    assert (out / "trainDataLabel.txt").read_text() == "a.jpg a.npy\n"


def test_stale_partial_uv_data_folders_are_removed(tmp_path, synth):
    root = tmp_path / "root"
    _add_sample(root, "a", synth)
    out = tmp_path / "out"
    host = socket.gethostname()
    dead = 2 ** 22 + 1  # above Linux's largest pid: no such process
    stale = [out / f".{UV_DATA_DIR}.{dead}{TEMP_SUFFIX}", out / f".{UV_DATA_DIR}.{host}.{dead}{TEMP_SUFFIX}"]
    live = out / f".{UV_DATA_DIR}.{host}.{os.getppid()}{TEMP_SUFFIX}"  # another run writing right now
    for folder in (*stale, live):
        folder.mkdir(parents=True)
        (folder / "uv_kpt_ind.txt").write_text("half")
    _run(root, out)
    assert [p.exists() for p in stale] == [False, False] and live.exists()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(f".{UV_DATA_DIR}")) == [live.name]


class _PoisonedGenerator:
    """The real generator, except that the process working on an image named ``poison*`` kills itself, as the
    kernel's out-of-memory killer ends a worker."""

    def __init__(self, model_path, config):
        from face3d.trainset.dataset import default_generator_factory

        self._generator = default_generator_factory(model_path, config)
        self.model, self.rasterization = self._generator.model, self._generator.rasterization

    def _check(self, image_path):
        if Path(image_path).name.startswith("poison"):
            os.kill(os.getpid(), signal.SIGKILL)

    def process_iter(self, jobs):
        for job, result in zip(jobs, self._generator.process_iter(jobs)):
            self._check(job[0])
            yield result

    def process(self, image_path, mat_path, seed):
        self._check(image_path)
        return self._generator.process(image_path, mat_path, seed)


def test_a_worker_dying_on_one_sample_fails_that_sample_only(tmp_path, synth, caplog):
    root = tmp_path / "root"
    for name in ("a", "b", "poison", "c", "d"):
        _add_sample(root, name, synth)
    out = tmp_path / "out"
    with caplog.at_level(logging.DEBUG, logger="face3d.trainset.worker_pool"):
        summary = _run(root, out, workers=2, generator_factory=_PoisonedGenerator)
    assert (summary["written"], summary["failed"]) == (4, 1)
    restarts = [r.getMessage() for r in caplog.records if r.name == "face3d.trainset.worker_pool"]
    start = pool_context().get_start_method()
    assert restarts[0] == f"5 samples to write on 2 worker processes ({start}), in chunks of 1"
    assert re.fullmatch(r"a worker process died with \d chunks \(\d samples\) in flight", restarts[1]), restarts
    assert re.fullmatch(r"of those, \d had finished and \d ran alone in a fresh process; \d go to a new pool of 2 "
                        r"worker processes", restarts[2]), restarts
    assert _reasons(summary) == {"poison": "the worker process died on this sample (killed, or out of memory)"}
    assert (out / "trainDataLabel.txt").read_text().split() == [f"{n}.{e}" for n in "abcd" for e in ("jpg", "npy")]
    reference = tmp_path / "one process"
    assert _run(root, reference)["written"] == 5  # the real generator in this process: the same bytes
    assert _outputs(out) == {k: v for k, v in _outputs(reference).items() if not k.startswith("poison")}


# ------------------------------------------------------------------------------------------------- a full disk


def _refuse(code=errno.ENOSPC):
    """Raise what a failed write or close raises: an OSError of errno ``code`` naming no file."""
    raise OSError(code, os.strerror(code))


def _refusing(monkeypatch, after, code=errno.ENOSPC):
    """Make ``os.writev`` (the sample files' write) refuse with OSError ``code`` from its ``after + 1``-th call on,
    as a file system that filled up does; returns the list of its calls."""
    writev, calls = os.writev, []

    def refusing_writev(fd, buffers):
        calls.append(fd)
        if len(calls) > after:
            _refuse(code)
        return writev(fd, buffers)

    monkeypatch.setattr(os, "writev", refusing_writev)
    return calls


def _four_samples(tmp_path, synth):
    root = tmp_path / "root"
    for name in ("a", "b", "c", "d"):
        _add_sample(root, name, synth)
    return root


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS])
def test_a_full_disk_stops_the_run_with_one_line_and_the_run_resumes(tmp_path, synth, capsys, monkeypatch, code):
    root, out = _four_samples(tmp_path, synth), tmp_path / "out"
    calls = _refusing(monkeypatch, after=2, code=code)  # a.jpg and a.npy are written, b.jpg is refused
    run = ["generate", "--root", root, "--output", out, "--workers", "1", "--quiet", "--angles", "--resolution", "16"]
    assert _main_error(capsys, *run) == [f"face3d generate: error: {out / 'b.jpg'}: {os.strerror(code)}"]
    assert len(calls) == 3  # c and d were not tried
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == [".generate.lock", "a.jpg", "a.npy"]  # no b
    assert list(read_journals(out)) == ["a"]
    monkeypatch.undo()
    resumed = _run(root, out)
    assert (resumed["written"], resumed["skipped"], resumed["failed"]) == (3, 1, 0)
    assert _run(root, tmp_path / "reference")["written"] == 4
    assert _outputs(out) == _outputs(tmp_path / "reference")


def test_a_full_disk_midway_through_a_sample_removes_the_files_it_had_written(tmp_path, synth, capsys, monkeypatch):
    """A sample is all or nothing: when its map is refused after its crop was written, the crop is removed too and
    the sample is not journalled, so no half sample is left for a label file or a resume to trust."""
    root, out = _four_samples(tmp_path, synth), tmp_path / "out"
    calls = _refusing(monkeypatch, after=3)  # a.jpg, a.npy and b.jpg are written, b.npy is refused
    run = ["generate", "--root", root, "--output", out, "--workers", "1", "--quiet", "--angles", "--resolution", "16"]
    assert _main_error(capsys, *run) == [f"face3d generate: error: {out / 'b.npy'}: No space left on device"]
    assert len(calls) == 4
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == [".generate.lock", "a.jpg", "a.npy"]  # no b.jpg
    assert list(read_journals(out)) == ["a"]


def test_a_full_disk_stops_a_run_on_worker_processes_with_one_line(tmp_path, synth, capsys, monkeypatch):
    root, out = _four_samples(tmp_path, synth), tmp_path / "out"
    _refusing(monkeypatch, after=0)  # the workers fork with it: each one's first file is refused
    lines = _main_error(capsys, "generate", "--root", root, "--output", out, "--workers", "2", "--quiet", "--angles",
                        "--resolution", "16")
    assert len(lines) == 1 and re.fullmatch(rf"face3d generate: error: {re.escape(str(out))}/[abcd]\.jpg: No space "
                                            rf"left on device", lines[0]), lines
    assert not (out / "summary.json").exists() and not (out / "trainDataLabel.txt").exists()
    assert [p for p in out.iterdir() if p.is_file()] == [out / ".generate.lock"] and not read_journals(out)


def test_a_full_disk_on_worker_processes_leaves_no_temporary_behind(tmp_path, synth, capsys, monkeypatch):
    """The first refused write stops the run; the other worker, inside its own write by then, is not ended there
    (its temporary file would stay): it stops at its refused write and removes its temporary."""
    root, out, marks = _four_samples(tmp_path, synth), tmp_path / "out", tmp_path / "marks"
    marks.mkdir()

    def refusing_writev(fd, buffers):  # both workers reach their first write; one is refused at once, one later
        (marks / str(os.getpid())).touch()
        deadline = time.monotonic() + 30
        while len(list(marks.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            os.close(os.open(marks / "first", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            time.sleep(1.0)  # still inside its write when the run stops
        _refuse()

    monkeypatch.setattr(os, "writev", refusing_writev)
    lines = _main_error(capsys, "generate", "--root", root, "--output", out, "--workers", "2", "--quiet", "--angles",
                        "--resolution", "16")
    assert len(lines) == 1 and lines[0].endswith(": No space left on device"), lines
    assert len(list(marks.iterdir())) == 3  # two workers and the first-refused mark
    assert [p for p in out.iterdir() if p.is_file()] == [out / ".generate.lock"] and not read_journals(out)


def test_a_full_disk_at_the_uv_data_or_the_label_file_ends_in_one_line(tmp_path, synth, capsys, monkeypatch):
    import face3d.trainset.dataset as dataset
    import face3d.trainset.uv_layout as uv_layout

    root, out = _four_samples(tmp_path, synth), tmp_path / "out"
    run = ["generate", "--root", root, "--output", out, "--workers", "1", "--quiet", "--angles", "--resolution", "16"]

    with monkeypatch.context() as patch:
        patch.setattr(uv_layout, "write_uv_data", lambda *args: _refuse())
        assert _main_error(capsys, *run) == [f"face3d generate: error: {out / UV_DATA_DIR}: No space left on device"]
    assert not [p for p in out.iterdir() if p.name.endswith(TEMP_SUFFIX)]

    def lines_then_full(*args, **kwargs):
        yield "a.jpg a.npy\n"
        _refuse()

    with monkeypatch.context() as patch:
        patch.setattr(dataset, "_label_lines", lines_then_full)
        assert _main_error(capsys, *run) == [
            f"face3d generate: error: {out / 'trainDataLabel.txt'}: No space left on device"]
    assert not (out / "trainDataLabel.txt").exists() and not [p for p in out.iterdir() if p.name.endswith(TEMP_SUFFIX)]
    assert _run(root, out)["skipped"] == 4  # the samples were done before the label file


def test_a_read_only_output_is_named_not_the_uv_data_staging_folder(tmp_path, synth, capsys, monkeypatch):
    root, out = _four_samples(tmp_path, synth), tmp_path / "out"
    make_folder = Path.mkdir

    def mkdir(self, *args, **kwargs):  # a file system mounted read-only refuses the hidden staging folder first
        if self.name.endswith(TEMP_SUFFIX):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return make_folder(self, *args, **kwargs)
    monkeypatch.setattr(Path, "mkdir", mkdir)
    assert _main_error(capsys, "generate", "--root", root, "--output", out, "--workers", "1", "--quiet",
                       "--angles", "--resolution", "16") == [
        f"face3d generate: error: {out / UV_DATA_DIR}: Read-only file system"]


def test_the_journal_writes_every_byte_when_the_kernel_takes_fewer(tmp_path, monkeypatch):
    journal, write = Journal(str(tmp_path)), os.write
    with monkeypatch.context() as patch:
        patch.setattr(os, "write", lambda fd, data: write(fd, bytes(data[:5])))  # 5 bytes a call
        journal.append([{"sample": "a", "redo": True}, {"sample": "b", "redo": True}])
        journal.append([{"sample": "c", "redo": True}])
    assert sorted(read_journals(tmp_path)) == ["a", "b", "c"]
    with monkeypatch.context() as patch, pytest.raises(OSError) as raised:
        patch.setattr(os, "write", lambda fd, data: _refuse())
        journal.append([{"sample": "d", "redo": True}])
    journal.close()
    assert raised.value.errno == errno.ENOSPC and Path(raised.value.filename).parent == tmp_path / DONE_DIR
    assert raised.value.filename == str(next((tmp_path / DONE_DIR).iterdir()))


def test_read_journals_keeps_the_latest_complete_record_of_each_sample_asked_for(tmp_path):
    (tmp_path / DONE_DIR).mkdir()
    (tmp_path / DONE_DIR / "journal.h.1.1.txt").write_bytes(
        b'{"sample":"a","outputs":["a"],"t":5}\n{"sample":"b","outputs":["b"],"t":1}\nnot json\n'
        b'[1]\n7\n{"sample":["a"],"t":9}\n{"sample":"a"}\n{"sample":"b","t":"9"}\n'  # JSON, but no records
        b'{"sample":"c","outputs":["c"],"t":9}')  # the last line cut short by a crash: no newline
    (tmp_path / DONE_DIR / "journal.h.2.1.txt").write_bytes(
        b'{"sample":"a","redo":true,"t":7}\n{"sample":"b","outputs":["b0"],"t":0}\n')
    a, b = {"sample": "a", "redo": True, "t": 7}, {"sample": "b", "outputs": ["b"], "t": 1}
    assert dict(read_journals(tmp_path)) == {"a": a, "b": b}
    assert dict(read_journals(tmp_path, {"b", "c", "z"})) == {"b": b}
    assert "a" in read_journals(tmp_path) and "c" not in read_journals(tmp_path)
