"""Bad input on the PRNet side, built at run time: poisoned position maps, a non-finite loss, damaged models and
states, hostile graphs, paths escaping their folder, a result folder from another run, and the one-line errors with
exit status 2 of the command lines.

Models are tiny (a two-layer Keras network stands in for resfcn256 where only training's bookkeeping is tested), the
data 32 x 32 synthetic faces (``_prnet_data``); the whole file runs in well under two minutes on 2 cores.
"""
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import _prnet_data
import cv2
import numpy as np
import pytest
from _graph_models import frozen_graph, saved_model, sigmoid_writing
from _pack_files import damage_chunk

from face3d.cli import main as face3d_main
from face3d.prnet.data import check_samples, open_h5
from face3d.trainset.pack import pack_label_file, read_label_file
from face3d.utils.errors import InputFileError

ROOT = Path(__file__).resolve().parents[1]
R = 32


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Label file of 8 synthetic 32 x 32 samples (``uv-data/`` beside it)."""
    return _prnet_data.make_dataset(tmp_path_factory.mktemp("data"), 8, R, seed=7)


def _poison(label, tmp_path, values):
    """A copy of the data set whose third map holds ``values`` (a scalar broadcast into part of the map); returns
    (label file, the poisoned map's path)."""
    pairs = read_label_file(label)
    poisoned = tmp_path / "poisoned.npy"
    posmap = np.load(pairs[2][1]).astype(np.float32)
    posmap[5:9, 5:9] = values
    np.save(poisoned, posmap.astype(np.float16))
    pairs[2] = (pairs[2][0], str(poisoned))
    copy = tmp_path / "trainDataLabel.txt"
    copy.write_text("".join(f"{a} {b}\n" for a, b in pairs))
    return copy, poisoned


def _one_line_error(capsys, status, *fragments):
    """The command's stderr is one line holding every fragment, and its status is 2."""
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert str(fragment) in err, (fragment, err)
    return err


# ------------------------------------------------------------------------------------------ position-map values

@pytest.mark.parametrize("value, problem", [(np.nan, "non-finite"), (np.inf, "non-finite"),
                                            (60000.0, "outside the plausible range")])
def test_check_samples_refuses_poisoned_maps(data, tmp_path, value, problem):
    label, poisoned = _poison(data, tmp_path, value)
    with pytest.raises(InputFileError, match=problem) as info:
        check_samples(read_label_file(label))
    assert info.value.path == str(poisoned)
    assert len(check_samples(read_label_file(label), skip_bad=True)) == 7


def test_pack_refuses_poisoned_maps(data, tmp_path):
    label, poisoned = _poison(data, tmp_path, np.nan)
    with pytest.raises(InputFileError, match="non-finite") as info:
        pack_label_file(label, tmp_path / "train.h5", progress=False)
    assert info.value.path == str(poisoned)
    assert not list(tmp_path.glob("*.h5")) and not list(tmp_path.glob(".*partial"))


def test_open_h5_refuses_poisoned_rows(data, tmp_path):
    import h5py
    pack = tmp_path / "train.h5"
    pack_label_file(data, pack, progress=False)
    with h5py.File(pack, "r+") as f:
        f["posmaps"][3, 0, 0, 0] = np.inf
        f["posmaps"][5, 1, 1, 2] = -60000
    with pytest.raises(InputFileError, match=r"row 3 \(sample_003\): 1 non-finite value") as info:
        open_h5(pack)
    assert info.value.path == str(pack)
    assert open_h5(pack, skip_bad=True).indices == (0, 1, 2, 4, 6, 7)


@pytest.mark.parametrize("compression, dataset", [("gzip", "posmaps"), ("gzip", "images"), ("none", "images")])
def test_open_h5_names_a_damaged_chunk(data, tmp_path, compression, dataset):
    pack = tmp_path / "train.h5"
    pack_label_file(data, pack, compression=compression, progress=False)
    damage_chunk(pack, dataset, 2)  # uncompressed, only the chunk's checksum tells
    with pytest.raises(InputFileError, match=f"^{re.escape(str(pack))}: row 2 \\(sample_002\\): unreadable "
                                             f"'{dataset}' data"):
        open_h5(pack)


def test_open_h5_skips_damaged_chunks(data, tmp_path, caplog):
    pack = tmp_path / "train.h5"
    pack_label_file(data, pack, progress=False)
    damage_chunk(pack, "images", 2)
    damage_chunk(pack, "posmaps", 5)
    assert open_h5(pack, skip_bad=True).indices == (0, 1, 3, 4, 6, 7)
    assert "row 5 (sample_005): unreadable 'posmaps' data" in caplog.text
    assert "skipped 2 bad sample(s) of 8" in caplog.text


def test_open_h5_refuses_a_pack_with_fewer_names_than_rows(data, tmp_path):
    import h5py
    pack = tmp_path / "train.h5"
    pack_label_file(data, pack, progress=False)
    with h5py.File(pack, "r+") as f:
        names = f["names"][:3]
        del f["names"]
        f["names"] = names
    with pytest.raises(InputFileError, match=f"^{re.escape(str(pack))}: datasets of different lengths: images 8, "
                                             r"posmaps 8, names 3 rows \(a sample is one row of each\)$"):
        open_h5(pack)


# --------------------------------------------------------------------------------------- training on bad values

_tiny_network = _prnet_data.tiny_network


@pytest.fixture
def tiny_network(monkeypatch):
    pytest.importorskip("tensorflow")
    monkeypatch.setattr("face3d.prnet.model.build_resfcn256", _tiny_network)


def test_non_finite_loss_stops_training_and_keeps_the_good_checkpoint(data, tmp_path, tiny_network, monkeypatch,
                                                                     capsys):
    out = tmp_path / "run"
    flags = ["--output", str(out), "--width", "2", "--batch-size", "4", "--val-fraction", "0", "--no-augment",
             "--seed", "1", "--run-eagerly", "--verbose", "0"]  # no op determinism: it would outlive the test
    assert face3d_main(["train", "--train-list", str(data), "--epochs", "1"] + flags) == 0
    capsys.readouterr()
    last = out / "checkpoints" / "last.keras"
    good = last.read_bytes()
    # a NaN map slipping past the checks (as a map changed on disk after them would)
    pairs = read_label_file(data)
    monkeypatch.setattr("face3d.prnet.samples.posmap_value_problem", lambda posmap, resolution: None)
    poisoned = Path(pairs[2][1])
    clean = poisoned.read_bytes()
    try:
        np.save(poisoned, np.full((R, R, 3), np.nan, np.float16))
        status = face3d_main(["train", "--train-list", str(data), "--epochs", "2", "--resume"] + flags)
    finally:
        poisoned.write_bytes(clean)
    err = _one_line_error(capsys, status, "epoch 2", "non-finite loss", poisoned)
    assert err.count(".npy") == 4  # the four maps of the batch
    assert last.read_bytes() == good
    assert json.loads((out / "checkpoints" / "state.json").read_text())["epoch"] == 1


# ---------------------------------------------------------------------------------------- one-line CLI errors

@pytest.fixture(scope="module")
def garbage(tmp_path_factory):
    folder = tmp_path_factory.mktemp("garbage")
    for name in ("garbage.onnx", "garbage.h5", "garbage.pb"):
        (folder / name).write_bytes(b"this is not a model\n" * 3)
    return folder


@pytest.mark.parametrize("name", ["garbage.onnx", "garbage.h5", "garbage.pb"])
def test_evaluate_names_a_garbage_model(garbage, tmp_path, capsys, name):
    pytest.importorskip("tensorflow")
    pytest.importorskip("onnxruntime")
    status = face3d_main(["evaluate", "--model", str(garbage / name), "--data", str(tmp_path), "--output",
                          str(tmp_path / "report")])
    _one_line_error(capsys, status, garbage / name)


def _offline_inputs(tmp_path):
    """``offline pre_process`` of one grey image at input size R; returns its input folder DIR/bin."""
    from face3d.prnet.offline import pre_process
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.jpg"), np.full((40, 40, 3), 128, np.uint8))
    (tmp_path / "boxes.txt").write_text("a.jpg 5 5 35 35\n")
    pre_process(tmp_path / "images", tmp_path / "work", input_size=R, boxes=tmp_path / "boxes.txt")
    return tmp_path / "work" / "bin"


def test_offline_run_names_a_garbage_model(garbage, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    status = face3d_main(["offline", "run", "--model", str(garbage / "garbage.onnx"), "--input",
                          str(_offline_inputs(tmp_path)), "--output", str(tmp_path / "out")])
    _one_line_error(capsys, status, garbage / "garbage.onnx", "not a loadable ONNX model")


def test_truncated_keras_file_is_not_reported_missing(tmp_path, capsys):
    pytest.importorskip("keras")
    model = _tiny_network()
    model.save(tmp_path / "whole.keras")
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes((tmp_path / "whole.keras").read_bytes()[:3000])
    status = face3d_main(["evaluate", "--model", str(truncated), "--data", str(tmp_path), "--output",
                          str(tmp_path / "report")])
    err = _one_line_error(capsys, status, truncated, "truncated or corrupt")
    assert "not found" not in err


def test_export_refuses_a_dynamic_shape_model_and_an_output_file(tmp_path, capsys):
    keras = pytest.importorskip("keras")
    inputs = keras.Input((None, None, 3), name="input")
    keras.Model(inputs, keras.layers.Conv2D(3, 3, padding="same")(inputs)).save(tmp_path / "dynamic.keras")
    status = face3d_main(["export", "--model", str(tmp_path / "dynamic.keras"), "--output", str(tmp_path / "out"),
                          "--no-atc"])
    _one_line_error(capsys, status, tmp_path / "dynamic.keras", "static input size")
    _tiny_network().save(tmp_path / "tiny.keras")
    existing = tmp_path / "existing.txt"
    existing.write_text("keep me\n")
    status = face3d_main(["export", "--model", str(tmp_path / "tiny.keras"), "--output", str(existing), "--no-atc"])
    _one_line_error(capsys, status, existing, "not a folder")
    assert existing.read_text() == "keep me\n"


@pytest.mark.parametrize("shape", [(32, 64, 3), (32, 32, 1)])
def test_export_refuses_a_model_whose_input_is_not_square_rgb(shape, tmp_path, capsys):
    keras = pytest.importorskip("keras")
    inputs = keras.Input(shape, name="input")
    keras.Model(inputs, keras.layers.Conv2D(3, 3, padding="same")(inputs)).save(tmp_path / "odd.keras")
    status = face3d_main(["export", "--model", str(tmp_path / "odd.keras"), "--output", str(tmp_path / "out"),
                          "--no-atc"])
    _one_line_error(capsys, status, f"{tmp_path / 'odd.keras'}: input shape (None, {', '.join(map(str, shape))}); "
                    "the export needs a static input size, square and RGB: (batch, S, S, 3)")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", [["export", "--model", "m.keras", "--output", "o", "--batch", "0"],
                                  ["offline", "pre_process", "--data", "d", "--output", "o", "--batch", "0"],
                                  ["evaluate", "--model", "m.onnx", "--data", "d", "--output", "o", "--batch-size",
                                   "0"]])
def test_zero_batch_is_an_argument_error(argv, capsys):
    with pytest.raises(SystemExit) as info:
        face3d_main(argv)
    assert info.value.code == 2
    assert "expected an integer >= 1, got '0'" in capsys.readouterr().err.splitlines()[-1]


_OUT_OF_RANGE = ([("--val-fraction", v, f"val_fraction must be in [0, 1) (0: no validation), got {float(v)}")
                  for v in ("-0.1", "1", "nan")]
                 + [("--seed", v, f"seed must be in [0, 2**32), got {v}") for v in ("-1", str(2 ** 32))]
                 + [("--input-size", v, f"input_size must be a positive multiple of 32, got {v}")
                    for v in ("16", "0", "48")]
                 + [("--bn-momentum", v, f"bn_momentum must be in [0, 1), got {float(v)}") for v in ("-1", "1", "1.5")]
                 + [("--lr", v, f"lr must be finite and > 0 and lr_decay in (0, 1], got {float(v)} and 0.5")
                    for v in ("inf", "0")])


@pytest.mark.parametrize("flag, value, message", _OUT_OF_RANGE)
def test_setting_out_of_range_is_refused_before_the_output_exists(data, tmp_path, capsys, flag, value, message):
    out = tmp_path / "out"
    status = face3d_main(["train", "--train-list", str(data), "--output", str(out), "--width", "2", "--batch-size",
                          "4", "--epochs", "1", flag, value])
    _one_line_error(capsys, status, message)
    assert not out.exists()


def test_h5_flag_given_a_label_file_is_one_line(data, tmp_path, capsys):
    out = tmp_path / "out"
    status = face3d_main(["train", "--h5", str(data), "--output", str(out), "--width", "2", "--batch-size", "4"])
    _one_line_error(capsys, status, data, "not a readable HDF5 file")
    assert not out.exists()


def test_validation_list_without_a_usable_sample_is_named(data, tmp_path, capsys):
    val = _prnet_data.make_dataset(tmp_path / "val", 2, R, seed=8)
    for npy in (tmp_path / "val").glob("*.npy"):
        npy.unlink()
    out = tmp_path / "out"
    status = face3d_main(["train", "--train-list", str(data), "--val-list", str(val), "--skip-bad", "--output",
                          str(out), "--width", "2", "--batch-size", "4", "--verbose", "0"])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.splitlines()[-1] == f"face3d train: error: {val}: no usable sample among 2"
    assert not out.exists()


def test_input_size_above_the_data_resolution_is_refused(data, tmp_path, capsys):
    out = tmp_path / "out"
    status = face3d_main(["train", "--train-list", str(data), "--output", str(out), "--width", "2", "--batch-size",
                          "4", "--epochs", "1", "--input-size", str(2 * R), "--verbose", "0"])
    _one_line_error(capsys, status, f"input_size {2 * R} is larger than the data's resolution {R}")
    assert not out.exists()


def _saved_run(tmp_path, data):
    """An output folder holding a run as the previous release wrote it: last.keras without an embedded state,
    state.json beside it, config.json."""
    from face3d.prnet.training import TrainConfig
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    model = _tiny_network()
    import keras
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mean_squared_error")
    model.save(out / "checkpoints" / "last.keras")
    config = TrainConfig(train_list=str(data), output=str(out), width=2, batch_size=4, resume=True)
    (out / "config.json").write_text(json.dumps(config.to_json()))
    return out


def test_garbage_state_json_is_named(data, tmp_path, capsys):
    pytest.importorskip("keras")
    out = _saved_run(tmp_path, data)
    state = out / "checkpoints" / "state.json"
    state.write_text("{garbage")
    status = face3d_main(["train", "--train-list", str(data), "--output", str(out), "--width", "2",
                          "--batch-size", "4", "--resume", "--verbose", "0"])
    _one_line_error(capsys, status, state, "not a training state")


def test_truncated_checkpoint_is_named(data, tmp_path, capsys):
    pytest.importorskip("keras")
    out = _saved_run(tmp_path, data)
    (out / "checkpoints" / "state.json").write_text(json.dumps({"epoch": 1, "best_nme": None, "best_epoch": None}))
    last = out / "checkpoints" / "last.keras"
    last.write_bytes(last.read_bytes()[:2000])
    status = face3d_main(["train", "--train-list", str(data), "--output", str(out), "--width", "2",
                          "--batch-size", "4", "--resume", "--verbose", "0"])
    err = _one_line_error(capsys, status, last, "truncated or corrupt")
    assert "not found" not in err


def test_resume_keeps_the_uv_data_folder(data, tmp_path, capsys):
    """A run records the uv-data folder it used; resuming it with another is refused (it would switch the loss
    weights and keypoints). A run recorded without one (an earlier release's default) resumes with the folder found
    beside the data, one recorded relative with that folder resolved from here."""
    pytest.importorskip("keras")
    out = _saved_run(tmp_path, data)
    (out / "checkpoints" / "state.json").write_text(json.dumps({"epoch": 1, "best_nme": None, "best_epoch": None}))
    argv = ["train", "--train-list", str(data), "--output", str(out), "--width", "2", "--batch-size", "4",
            "--epochs", "1", "--resume", "--verbose", "0"]
    used = str((data.parent / "uv-data").resolve())
    assert face3d_main(argv) == 0, capsys.readouterr().err  # epoch 1 of 1 is done: nothing left to train
    assert json.loads((out / "config.json").read_text())["uv_data"] == used
    other = _prnet_data.write_uv_data(tmp_path / "other-uv-data", R)
    status = face3d_main(argv + ["--uv-data", str(other)])
    _one_line_error(capsys, status, f"cannot resume {out}", f"uv_data {used!r} -> {str(other.resolve())!r}")
    assert face3d_main(argv + ["--uv-data", str(data.parent / "uv-data")]) == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())  # an earlier release recorded a given folder as given
    (out / "config.json").write_text(json.dumps({**config, "uv_data": os.path.relpath(used)}))
    assert face3d_main(argv) == 0, capsys.readouterr().err

    label = tmp_path / "trainDataLabel.txt"
    label.write_bytes(b"a.jpg a.npy\nb\xff\xfe.jpg b.npy\n")
    status = face3d_main(["train", "--train-list", str(label), "--output", str(tmp_path / "out")])
    _one_line_error(capsys, status, label, "line 2", "UTF-8")


def test_resume_compares_the_input_size_used(data, tmp_path, capsys):
    """A run records the input size it used (the data's resolution R when none was given), so it resumes with
    --input-size R or without it; a run recorded without one (an earlier release's default) used R too. Another
    size is refused."""
    pytest.importorskip("keras")
    out = _saved_run(tmp_path, data)
    (out / "checkpoints" / "state.json").write_text(json.dumps({"epoch": 1, "best_nme": None, "best_epoch": None}))
    argv = ["train", "--train-list", str(data), "--output", str(out), "--width", "2", "--batch-size", "4",
            "--epochs", "1", "--resume", "--verbose", "0"]
    assert face3d_main(argv) == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert config["input_size"] == R
    assert face3d_main(argv + ["--input-size", str(R)]) == 0, capsys.readouterr().err
    (out / "config.json").write_text(json.dumps({**config, "input_size": None}))
    assert face3d_main(argv + ["--input-size", str(R)]) == 0, capsys.readouterr().err
    (out / "config.json").write_text(json.dumps({**config, "input_size": 2 * R}))
    status = face3d_main(argv)
    _one_line_error(capsys, status, f"cannot resume {out}: settings differ from the saved run: input_size {2 * R} "
                                    f"-> {R}")


def test_an_earlier_releases_run_at_a_reduced_input_size_is_not_resumed(tmp_path, capsys):
    """Its targets there put most keypoints one UV pixel off, so its best val NME is not comparable with today's:
    refused in one line, its files left as they were (a run at the data's resolution, whose targets did not
    change, resumes: test_resume_compares_the_input_size_used)."""
    pytest.importorskip("keras")
    data = _prnet_data.make_dataset(tmp_path / "data64", 8, 2 * R, seed=7)
    out = _saved_run(tmp_path, data)  # the previous release's config.json: no targets_version
    (out / "checkpoints" / "state.json").write_text(json.dumps({"epoch": 1, "best_nme": 0.3, "best_epoch": 1}))
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "input_size": R}))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    status = face3d_main(["train", "--train-list", str(data), "--output", str(out), "--width", "2", "--batch-size",
                          "4", "--epochs", "2", "--resume", "--verbose", "0", "--input-size", str(R)])
    _one_line_error(capsys, status, f"cannot resume {out}: an earlier release trained it at input size {R}, whose "
                                    "targets put most keypoints one UV pixel off and whose val NME is not comparable "
                                    "with today's; start it again in another --output")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".train.lock"} == before


def test_resume_takes_another_spelling_of_the_same_files(data, tmp_path, capsys, monkeypatch):
    """The label file, pack and validation list are compared as resolved paths: a resumed run may name them
    relative or absolute, and a run saved with a relative path (as an earlier release recorded them) resumes with
    that path resolved from here. Another file is still refused."""
    pytest.importorskip("keras")
    out = _saved_run(tmp_path, data)
    (out / "checkpoints" / "state.json").write_text(json.dumps({"epoch": 1, "best_nme": None, "best_epoch": None}))
    monkeypatch.chdir(data.parent)
    flags = ["--output", str(out), "--width", "2", "--batch-size", "4", "--epochs", "1", "--resume", "--verbose",
             "0"]
    assert face3d_main(["train", "--train-list", data.name] + flags) == 0, capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["train_list"] == str(data.resolve())
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "train_list": data.name}))
    assert face3d_main(["train", "--train-list", str(data)] + flags) == 0, capsys.readouterr().err
    other = tmp_path / "other.txt"
    shutil.copy(data, other)
    status = face3d_main(["train", "--train-list", str(other), "--uv-data", "uv-data"] + flags)
    err = _one_line_error(capsys, status, f"cannot resume {out}: settings differ from the saved run: train_list "
                                          f"{str(data.resolve())!r} -> {str(other.resolve())!r}")
    assert "uv_data" not in err


def _read_only_folder():
    """A folder nobody (root included) may create entries in: sysfs, mounted read-only."""
    probe = Path("/sys/face3d_probe")
    try:
        probe.mkdir()
    except OSError:
        return Path("/sys")
    probe.rmdir()
    pytest.skip("/sys is writable here")


@pytest.mark.parametrize("command", ["train", "offline", "export"])
def test_read_only_output_is_one_line(data, tmp_path, capsys, command):
    target = _read_only_folder() / "face3d_out"
    argv = {"train": ["train", "--train-list", str(data), "--output", str(target), "--width", "2",
                      "--batch-size", "4", "--verbose", "0"],
            "offline": ["offline", "pre_process", "--data", str(tmp_path), "--output", str(target), "--boxes",
                        str(tmp_path / "boxes.txt"), "--input-size", str(R)],
            "export": ["export", "--model", str(tmp_path / "tiny.keras"), "--output", str(target), "--no-atc"]}
    cv2.imwrite(str(tmp_path / "face.jpg"), np.full((40, 40, 3), 128, np.uint8))
    (tmp_path / "boxes.txt").write_text("face.jpg 5 5 35 35\n")
    if command == "export":
        pytest.importorskip("keras")
        _tiny_network().save(tmp_path / "tiny.keras")
    _one_line_error(capsys, face3d_main(argv[command]), target)


# Makes `import tensorflow` / `import keras` fail as on a machine without them (ModuleNotFoundError, as Python
# raises for a package that is not installed).
_NO_TENSORFLOW = textwrap.dedent("""
    import sys

    class _Missing:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "keras", "tf_keras"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _Missing())
    from face3d.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.parametrize("argv", [["train", "--train-list", "LABEL", "--output", "OUT", "--batch-size", "4"],
                                  ["export", "--model", "OUT/m.keras", "--output", "OUT/export"]])
def test_train_and_export_without_tensorflow_name_the_extra(data, tmp_path, argv):
    (tmp_path / "m.keras").write_bytes(b"PK")
    argv = [a.replace("LABEL", str(data)).replace("OUT", str(tmp_path)) for a in argv]
    result = subprocess.run([sys.executable, "-c", _NO_TENSORFLOW, *argv], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("is not installed: pip install 'face3d[train]'")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["demo", "serve"])
def test_a_folder_that_is_no_saved_model_is_told_so_without_tensorflow(tmp_path, command):
    """An export folder (prnet.onnx in it) given as --model on an install without TensorFlow: the folder is no
    SavedModel, which is what the line says, not that TensorFlow is missing."""
    export = tmp_path / "export"
    export.mkdir()
    (export / "prnet.onnx").write_bytes(b"an exported model")
    cv2.imwrite(str(tmp_path / "face.png"), np.full((40, 40, 3), 128, np.uint8))
    argv = {"demo": ["demo", "-i", str(tmp_path / "face.png"), "-o", str(tmp_path / "out"), "--box", "5", "5", "35",
                     "35", "--model", str(export)],
            "serve": ["serve", "--model", str(export), "--port", "0"]}[command]
    result = subprocess.run([sys.executable, "-c", _NO_TENSORFLOW, *argv], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == \
        f"face3d {command}: error: not a SavedModel folder (no saved_model.pb): {export}"


# ------------------------------------------------------------------------------------------------ hostile models

def _frozen_graph(path, write_to=None):
    """A frozen GraphDef ``input`` (1, 32, 32, 3) -> ``output`` = sigmoid(input); with ``write_to`` it also writes
    that file when run (a WriteFile op the output depends on)."""
    return frozen_graph(path, (1, R, R, 3), None if write_to is None else sigmoid_writing(write_to))


def _saved_model(path, write_to=None):
    """A SavedModel whose ``serving_default`` maps (None, 32, 32, 3) images to sigmoid(images), optionally writing
    ``write_to`` first."""
    return saved_model(path, (None, R, R, 3), None if write_to is None else sigmoid_writing(write_to))


@pytest.mark.parametrize("make", [_frozen_graph, _saved_model])
def test_graph_ops_outside_the_inference_list_are_refused(tmp_path, capsys, make):
    pytest.importorskip("tensorflow")
    from face3d.prnet.predictor import UntrustedModelError, load_predictor

    images = np.random.default_rng(0).random((1, R, R, 3)).astype(np.float32)
    plain = load_predictor(make(tmp_path / "plain.pb" if make is _frozen_graph else tmp_path / "plain"))
    np.testing.assert_allclose(plain.predict(images), 1 / (1 + np.exp(-images)), rtol=1e-6)

    victim = tmp_path / "victim.txt"
    hostile = make(tmp_path / "hostile.pb" if make is _frozen_graph else tmp_path / "hostile", write_to=victim)
    with pytest.raises(UntrustedModelError, match="WriteFile") as info:
        load_predictor(hostile)
    assert str(hostile) in str(info.value) and "--trust-model" in str(info.value)
    status = face3d_main(["evaluate", "--model", str(hostile), "--data", str(tmp_path), "--output",
                          str(tmp_path / "report")])
    _one_line_error(capsys, status, hostile, "WriteFile")
    cv2.imwrite(str(tmp_path / "face.jpg"), np.full((40, 40, 3), 128, np.uint8))
    status = face3d_main(["demo", "-i", str(tmp_path / "face.jpg"), "-o", str(tmp_path / "demo"), "--model",
                          str(hostile), "--box", "5", "5", "35", "35"])
    _one_line_error(capsys, status, hostile, "WriteFile")
    if importlib.util.find_spec("fastapi") and importlib.util.find_spec("uvicorn"):
        _one_line_error(capsys, face3d_main(["serve", "--model", str(hostile), "--port", "0"]), hostile, "WriteFile")
    assert not victim.exists()

    trusted = load_predictor(hostile, trust_model=True)
    trusted.predict(images)
    assert victim.read_text() == "owned"


def _saving_saved_model(path, victim):
    """A SavedModel whose ``serving_default`` writes checkpoint ``victim`` (SaveV2, a saver op) before its sigmoid."""
    import tensorflow as tf

    class Net(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((None, R, R, 3), tf.float32, name="input")])
        def serve(self, images):
            written = tf.raw_ops.SaveV2(prefix=str(victim), tensor_names=["owned"], shape_and_slices=[""],
                                        tensors=[images])
            with tf.control_dependencies([written]):
                return {"output": tf.sigmoid(images)}

    net = Net()
    tf.saved_model.save(net, str(path), signatures={"serving_default": net.serve})
    return Path(path)


def _read_saved_model(folder):
    """The SavedModel proto of ``folder/saved_model.pb``."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((folder / "saved_model.pb").read_bytes())
    return saved


def _edit_meta_graph(folder, edit):
    """Rewrite ``folder/saved_model.pb`` after ``edit(meta_graph, save_node_name)``."""
    saved = _read_saved_model(folder)
    meta_graph = saved.meta_graphs[0]
    edit(meta_graph, meta_graph.saver_def.save_tensor_name.split(":")[0])
    (folder / "saved_model.pb").write_bytes(saved.SerializeToString())


def _serving_caller_and_saver(meta_graph, save_node):
    """The top-level node calling the serving function (its signature wrapper), and the save node."""
    nodes = meta_graph.graph_def.node
    caller = next(node for node in nodes if node.name != save_node and "serve" in node.attr["f"].func.name)
    return caller, next(node for node in nodes if node.name == save_node)


def _serving_named_by_the_saver_only(attribute):
    """An edit making the serving function look reached from the saver node alone: the saver node names it in
    ``attribute`` and the top-level node calling it is gone. TF2's load calls the object graph's functions, not the
    graph's nodes, so the edited model still serves, and writes."""
    def edit(meta_graph, save_node):
        caller, saver = _serving_caller_and_saver(meta_graph, save_node)
        saver.attr[attribute].func.name = caller.attr["f"].func.name
        meta_graph.graph_def.node.remove(caller)

    return edit


@pytest.mark.parametrize("attribute", [
    "_also",  # an internal attribute, which the check does not follow from the saver node
    "executor_type",  # an ordinary attribute of the call op, which it follows
])
def test_saver_ops_in_a_function_a_load_can_call_are_refused(tmp_path, attribute):
    """SaveV2 passes only in the checkpoint save function: a serving function holding it is refused though the saver
    node names it and no other node calls it (the object graph's functions count as called), and nothing is
    written, neither by the load nor by a prediction had the load let it through."""
    pytest.importorskip("tensorflow")
    from face3d.prnet.predictor import UntrustedModelError, load_predictor

    images = np.random.default_rng(0).random((2, R, R, 3)).astype(np.float32)
    disguised = _saving_saved_model(tmp_path / "disguised", tmp_path / "victim")
    _edit_meta_graph(disguised, _serving_named_by_the_saver_only(attribute))
    with pytest.raises(UntrustedModelError, match=r"inference list: SaveV2 \(node SaveV2\);") as info:
        load_predictor(disguised).predict(images)
    assert str(disguised) in str(info.value)
    assert not list(tmp_path.glob("victim*"))

    load_predictor(disguised, trust_model=True).predict(images)
    assert sorted(path.name for path in tmp_path.glob("victim*")) == ["victim.data-00000-of-00001", "victim.index"]


def _function(meta_graph, name):
    return next(function for function in meta_graph.graph_def.library.function if function.signature.name == name)


def _serving_named_by_the_saver_internally(meta_graph, save_node):
    """The saver node names the serving function in an internal attribute; its caller is gone (here checked by
    the rules alone, without the loadable functions a load passes)."""
    _serving_named_by_the_saver_only("_also")(meta_graph, save_node)


def _serving_named_by_the_save_function_internally(meta_graph, save_node):
    """A node of the save function names the serving function in an internal attribute; its caller is gone."""
    caller, saver = _serving_caller_and_saver(meta_graph, save_node)
    save_function = _function(meta_graph, saver.attr["f"].func.name)
    save_function.node_def[0].attr["_also"].func.name = caller.attr["f"].func.name
    meta_graph.graph_def.node.remove(caller)


def _serving_named_by_its_caller_internally(meta_graph, save_node):
    """The saver node names the serving function in an ordinary attribute, its caller only in an internal one."""
    caller, saver = _serving_caller_and_saver(meta_graph, save_node)
    saver.attr["executor_type"].func.name = caller.attr["_also"].func.name = caller.attr["f"].func.name
    del caller.attr["f"]


def _serving_named_by_its_callers_function_internally(meta_graph, save_node):
    """The saver node names the function holding SaveV2 in an ordinary attribute; the signature wrapper, which called
    it, names it only in an internal one."""
    caller, saver = _serving_caller_and_saver(meta_graph, save_node)
    call = next(node for node in _function(meta_graph, caller.attr["f"].func.name).node_def
                if node.attr["f"].func.name)
    saver.attr["executor_type"].func.name = call.attr["_also"].func.name = call.attr["f"].func.name
    del call.attr["f"]


@pytest.mark.parametrize("edit", [
    _serving_named_by_the_saver_internally, _serving_named_by_the_save_function_internally,
    _serving_named_by_its_caller_internally, _serving_named_by_its_callers_function_internally,
])
def test_internal_attributes_lend_saver_ops_to_no_function(tmp_path, edit):
    """The functions the save node reaches follow its calls (attributes other than ``_``-prefixed ones, which
    TensorFlow never calls), those the other nodes reach follow every attribute, so that a doubt counts against the
    saver: a serving function holding SaveV2 is refused when only an internal attribute links it to the saver, or
    only an internal attribute links it to its caller, by these rules alone (no function passed as loadable)."""
    pytest.importorskip("tensorflow")
    from face3d.prnet.graph_trust import UntrustedModelError, check_graph_def

    model = _saving_saved_model(tmp_path / "model", tmp_path / "victim")
    _edit_meta_graph(model, edit)
    meta_graph = _read_saved_model(model).meta_graphs[0]
    with pytest.raises(UntrustedModelError, match=r"inference list: SaveV2 \(node SaveV2\);"):
        check_graph_def(meta_graph.graph_def, model, meta_graph.saver_def.save_tensor_name.split(":")[0])


def _save_node_as_restore(meta_graph, save_node):
    """The saver's restore op (run by a TF1-style load) made its save node."""
    meta_graph.saver_def.restore_op_name = save_node


def _save_node_as_signature_output(meta_graph, save_node):
    """The serving signature's output made the save node's (a prediction fetches it)."""
    meta_graph.signature_def["serving_default"].outputs["output"].name = f"{save_node}:0"


def _save_node_as_main_op(meta_graph, save_node):
    """The save node made the main op collection's node (a TF1-style load runs it)."""
    meta_graph.collection_def["saved_model_main_op"].node_list.value[0] = save_node


def _save_node_as_a_control_input_of_restore(meta_graph, save_node):
    """The restore node made to wait for the save node (``^name``, a control input: running one runs the other)."""
    restore = next(node for node in meta_graph.graph_def.node if node.name == meta_graph.saver_def.restore_op_name)
    restore.input.append(f"^{save_node}")


def _save_node_as_filename(meta_graph, save_node):
    """The saver's filename tensor, which a load feeds or evaluates, made the save node's output."""
    meta_graph.saver_def.filename_tensor_name = f"{save_node}:0"


@pytest.mark.parametrize("edit", [_save_node_as_restore, _save_node_as_signature_output, _save_node_as_main_op,
                                  _save_node_as_a_control_input_of_restore, _save_node_as_filename])
def test_saver_ops_are_refused_where_a_load_can_run_them(tmp_path, edit):
    """The save node's function may hold saver ops only while the save node is nothing but the checkpoint save: a
    plain SavedModel passes, and one referring to its save node in any other way that a load or a prediction runs
    (as the restore op, a signature's tensor, a collection's node, another node's control input, the filename
    tensor) is refused, its SaveV2 named."""
    pytest.importorskip("tensorflow")
    from face3d.prnet.predictor import UntrustedModelError, load_predictor

    images = np.random.default_rng(0).random((2, R, R, 3)).astype(np.float32)
    model = _saved_model(tmp_path / "model")
    np.testing.assert_allclose(load_predictor(model).predict(images), 1 / (1 + np.exp(-images)), rtol=1e-6)

    _edit_meta_graph(model, edit)
    with pytest.raises(UntrustedModelError, match=r"SaveV2 \(node SaveV2\)") as info:
        load_predictor(model)
    assert str(model) in str(info.value)


def _writing_a_checkpoint(op, victim, source):
    """sigmoid(images) that first writes the checkpoint ``victim`` with the saver op ``op`` (the output depends on
    it): SaveV2 of the images, or MergeV2Checkpoints moving the checkpoint ``source`` there."""
    import tensorflow as tf

    def function(images):
        if op == "SaveV2":
            written = tf.raw_ops.SaveV2(prefix=str(victim), tensor_names=["owned"], shape_and_slices=[""],
                                        tensors=[images])
        else:
            written = tf.raw_ops.MergeV2Checkpoints(checkpoint_prefixes=[str(source)], destination_prefix=str(victim),
                                                    delete_old_dirs=False)
        with tf.control_dependencies([written]):
            return tf.identity(tf.sigmoid(images))

    return function


@pytest.mark.parametrize("op", ["SaveV2", "MergeV2Checkpoints"])
def test_saver_ops_among_a_frozen_graphs_nodes_are_refused(tmp_path, op):
    """A frozen graph has no checkpoint save for saver ops to belong to: SaveV2 or MergeV2Checkpoints among its nodes
    is refused by name, and nothing is written or moved, neither by the load nor by a prediction had the load let it
    through; trusted, the same graph writes the checkpoint."""
    tf = pytest.importorskip("tensorflow")
    from face3d.prnet.predictor import UntrustedModelError, load_predictor

    images = np.random.default_rng(0).random((1, R, R, 3)).astype(np.float32)
    source = tmp_path / "source" / "checkpoint"
    source.parent.mkdir()
    tf.raw_ops.SaveV2(prefix=str(source), tensor_names=["kept"], shape_and_slices=[""], tensors=[tf.zeros(1)])
    source_files = sorted(source.parent.iterdir())
    writing = _writing_a_checkpoint(op, tmp_path / "victim", source)
    hostile = frozen_graph(tmp_path / "hostile.pb", (1, R, R, 3), writing)
    with pytest.raises(UntrustedModelError, match=rf"inference list: {op} \(node {op}\);") as info:
        load_predictor(hostile).predict(images)
    assert str(hostile) in str(info.value)
    assert not list(tmp_path.glob("victim*")) and sorted(source.parent.iterdir()) == source_files

    load_predictor(hostile, trust_model=True).predict(images)
    assert sorted(path.name for path in tmp_path.glob("victim*")) == ["victim.data-00000-of-00001", "victim.index"]


def test_a_call_of_a_function_the_graph_does_not_define_is_refused(tmp_path):
    """A call node naming the primitive ``WriteFile`` as its function holds no WriteFile op for the op check to see;
    TensorFlow would resolve the name outside the graph's library."""
    pytest.importorskip("tensorflow")
    from tensorflow.core.framework import types_pb2

    from face3d.prnet.graph_trust import UntrustedModelError, check_graph_def
    from face3d.prnet.predictor import load_predictor

    plain = _frozen_graph(tmp_path / "plain.pb")
    graph_def = _graph_def(plain)
    call = graph_def.node.add()
    call.name, call.op = "call", "StatefulPartitionedCall"
    call.attr["Tin"].list.type.extend([types_pb2.DT_STRING, types_pb2.DT_STRING])
    call.attr["Tout"].list.SetInParent()
    call.attr["f"].func.name = "WriteFile"
    check_graph_def(_graph_def(plain), plain)  # the graph as built passes
    hostile = tmp_path / "hostile.pb"
    hostile.write_bytes(graph_def.SerializeToString())
    with pytest.raises(UntrustedModelError, match=r"outside face3d's inference list: WriteFile \(node call\)"):
        load_predictor(hostile)


def _graph_def(path):
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(Path(path).read_bytes())
    return graph_def


def test_offline_run_refuses_a_hostile_graph(tmp_path, capsys):
    pytest.importorskip("tensorflow")
    victim = tmp_path / "victim.txt"
    hostile = _frozen_graph(tmp_path / "hostile.pb", write_to=victim)
    argv = ["offline", "run", "--model", str(hostile), "--input", str(_offline_inputs(tmp_path)), "--output",
            str(tmp_path / "out")]
    _one_line_error(capsys, face3d_main(argv), hostile, "WriteFile")
    assert not victim.exists()
    assert face3d_main(argv + ["--trust-model"]) == 0
    assert victim.exists()


def test_boxes_file_paths_stay_in_the_data_folder(tmp_path):
    from face3d.prnet.offline import pre_process
    (tmp_path / "data").mkdir()
    image = np.full((40, 40, 3), 128, np.uint8)
    cv2.imwrite(str(tmp_path / "outside.jpg"), image)
    boxes = tmp_path / "data" / "boxes.txt"
    boxes.write_text("../outside.jpg 5 5 35 35\n")
    with pytest.raises(InputFileError, match=r"boxes.txt:1: '\.\./outside\.jpg' lies outside"):
        pre_process(tmp_path / "data", tmp_path / "bins", input_size=R, boxes=boxes)


def test_boxes_file_refuses_a_second_box_for_an_image(tmp_path):
    from face3d.prnet.offline import pre_process
    (tmp_path / "data").mkdir()
    cv2.imwrite(str(tmp_path / "data" / "face.jpg"), np.full((40, 40, 3), 128, np.uint8))
    boxes = tmp_path / "data" / "boxes.txt"
    for second in ("face.jpg", "./face.jpg"):
        boxes.write_text(f"face.jpg 5 5 35 35\n# another face\n{second} 1 1 20 20\n")
        with pytest.raises(InputFileError, match=rf"boxes.txt:3: '{second}' already has a box on line 1 \(one face"):
            pre_process(tmp_path / "data", tmp_path / "bins", input_size=R, boxes=boxes)
        assert not (tmp_path / "bins").exists()


def test_obj_mtllib_stays_in_the_obj_folder(tmp_path):
    from face3d.mesh.io import read_obj
    (tmp_path / "mesh").mkdir()
    (tmp_path / "secret.mtl").write_text("newmtl m\nmap_Kd secret.png\n")
    obj = tmp_path / "mesh" / "face.obj"
    obj.write_text("mtllib ../secret.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(InputFileError, match=r"mtllib '\.\./secret\.mtl' lies outside"):
        read_obj(obj)
    (tmp_path / "mesh" / "face.mtl").write_text("newmtl m\nmap_Kd /etc/passwd\n")
    obj.write_text("mtllib face.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(InputFileError, match=r"map_Kd '/etc/passwd' lies outside"):
        read_obj(obj)


# ------------------------------------------------------------------------------------------------ offline results

@pytest.fixture
def offline_flow(tmp_path):
    """Two pre-processed runs of the same images (boxes, no ground truth) and an ONNX model run on the first."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import _inference_helpers as helpers

    from face3d.prnet.offline import pre_process, run_offline

    (tmp_path / "images").mkdir()
    rng = np.random.default_rng(3)
    for name in ("a", "b"):
        cv2.imwrite(str(tmp_path / "images" / f"{name}.jpg"), rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
    boxes = tmp_path / "images" / "boxes.txt"
    boxes.write_text("a.jpg 8 8 40 40\nb.jpg 4 6 44 42\n")
    for run in ("first", "second"):
        pre_process(tmp_path / "images", tmp_path / run, input_size=256, boxes=boxes)
    model = helpers.constant_onnx(tmp_path / "constant.onnx", np.full((256, 256, 3), 0.4, np.float32))
    result = run_offline(model, tmp_path / "first" / "bin", tmp_path / "out", quiet=True)
    return tmp_path, result


def test_post_process_refuses_a_manifest_of_another_run(offline_flow, capsys):
    from face3d.prnet.offline import post_process
    tmp_path, result = offline_flow
    first = json.loads((tmp_path / "first" / "manifest.json").read_text())
    second = json.loads((tmp_path / "second" / "manifest.json").read_text())
    assert first["run_id"] != second["run_id"]
    assert json.loads((result / "timing.json").read_text())["run_id"] == first["run_id"]
    report = post_process(result, tmp_path / "first" / "manifest.json", tmp_path / "report")
    assert report["run_id"] == first["run_id"] and len(report["names"]) == 2
    status = face3d_main(["offline", "post", "--result", str(result), "--manifest",
                          str(tmp_path / "second" / "manifest.json"), "--output", str(tmp_path / "report2")])
    _one_line_error(capsys, status, result, first["run_id"], second["run_id"])
    assert not (tmp_path / "report2").exists()


def test_post_process_skips_a_non_finite_output_and_refuses_when_none_is_left(offline_flow, capsys):
    """A face whose map holds NaN is skipped (status 1, the other face written); with every face's map non-finite
    nothing is left: one line naming an output file, status 2, no report."""
    tmp_path, result = offline_flow
    argv = ["offline", "post", "--result", str(result), "--manifest", str(tmp_path / "first" / "manifest.json"),
            "--output"]

    def poison(output):
        maps = np.fromfile(output, "<f4")
        maps[100] = np.nan
        maps.tofile(output)

    poison(result / "a_output_0.bin")
    assert face3d_main(argv + [str(tmp_path / "report")]) == 1
    capsys.readouterr()
    saved = json.loads((tmp_path / "report" / "landmarks.json").read_text())
    assert saved["names"] == ["b"] and saved["skipped"] == [{
        "image": str((tmp_path / "images" / "a.jpg").resolve()),
        "reason": f"{result / 'a_output_0.bin'}, sample 1 of 1 (a): the network's position map has 1 non-finite "
                  "value(s) (NaN or inf)"}]
    poison(result / "b_output_0.bin")
    _one_line_error(capsys, face3d_main(argv + [str(tmp_path / "report2")]), result / "a_output_0.bin", "non-finite")
    assert not (tmp_path / "report2").exists()


def test_post_process_names_a_json_file_of_the_wrong_kind(offline_flow, capsys):
    tmp_path, result = offline_flow
    manifest, timing = tmp_path / "first" / "manifest.json", result / "timing.json"
    truncated = tmp_path / "truncated.json"
    truncated.write_text(manifest.read_text()[:100])
    for argv, named, problem in ((["--manifest", str(timing)], timing, "not a face3d manifest.json"),
                                 (["--manifest", str(truncated)], truncated, "not a face3d manifest.json"),
                                 (["--manifest", str(manifest), "--timing", str(manifest)], manifest,
                                  "not a face3d timing.json")):
        status = face3d_main(["offline", "post", "--result", str(result), "--output", str(tmp_path / "report")]
                             + argv)
        _one_line_error(capsys, status, f"post_process failed: {named}: {problem} (")
        assert not (tmp_path / "report").exists()
