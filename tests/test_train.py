"""face3d train and the training loop: CLI, bad input, loss, validation NME, resume, logs; plus the slow NME-halving
runs (a synthetic affine set, and the embedded default set).

The slow tests (two short training runs) are seeded and deterministic (``--deterministic``), so they give the same
numbers on every run. The tiny runs execute eagerly (``run_eagerly``): tracing the 160-layer graph costs more than
their few steps.
"""
import csv
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import _prnet_data
import numpy as np
import pytest
from _fixtures import held_lock

from face3d.prnet import metrics
from face3d.prnet.data import AugmentConfig
from face3d.prnet.training import TrainConfig, learning_rate_at, load_samples, train
from face3d.utils.errors import InputFileError

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--train-list", "--h5", "--val-list", "--val-fraction", "--uv-data", "--epochs", "--batch-size", "--lr",
         "--lr-decay", "--lr-decay-epochs", "--width", "--input-size", "--bn-momentum", "--output", "--resume",
         "--seed", "--no-augment", "--no-rotation", "--no-translation", "--no-scale", "--no-color",
         "--no-occlusion", "--skip-bad", "--mixed-precision", "--deterministic", "--keep-checkpoints", "--run-eagerly",
         "--verbose"]


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "face3d", "train", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


def _csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_help_documents_every_flag():
    result = _run_cli("--help")
    assert result.returncode == 0, result.stderr
    for flag in FLAGS:
        assert flag in result.stdout, flag
    assert "1.1" in result.stdout and "uv_weight_mask" in result.stdout


def test_learning_rate_halves_every_five_epochs():
    config = TrainConfig(train_list="x")
    assert [learning_rate_at(config, e) for e in (0, 4, 5, 9, 10, 17)] == [1e-4, 1e-4, 5e-5, 5e-5, 2.5e-5, 1.25e-5]


def test_bad_input_stops_before_training_naming_the_file(tmp_path):
    label = _prnet_data.make_dataset(tmp_path / "data", 6, 32)
    missing = tmp_path / "data" / "sample_002.npy"
    missing.unlink()
    result = _run_cli("--train-list", label, "--output", tmp_path / "out", "--width", 2, "--batch-size", 2)
    assert result.returncode == 2
    assert str(missing) in result.stderr and "file not found" in result.stderr
    assert not (tmp_path / "out" / "checkpoints").exists()
    assert "tensorflow" not in result.stderr.lower()  # stopped before TensorFlow was even imported


def test_empty_or_malformed_label_file_is_named(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(InputFileError, match="empty.txt: no samples listed"):
        load_samples(TrainConfig(train_list=str(empty)))
    bad = tmp_path / "bad.txt"
    bad.write_text("only_one_path.jpg\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        load_samples(TrainConfig(train_list=str(bad)))


def test_uv_data_default_beside_the_data_or_the_packs_label_file(tmp_path, caplog):
    """A pack's default uv-data: beside the .h5, else beside the label file it was made from, else the packaged
    one with a warning; a label file's: beside it, else the packaged one with a warning. INFO names the folder."""
    from face3d.resources import default_uv_data_dir
    from face3d.trainset.pack import pack_label_file
    label = _prnet_data.make_dataset(tmp_path / "data", 4, 32)
    pack = tmp_path / "packs" / "train.h5"
    pack_label_file(label, pack, progress=False)
    caplog.set_level(logging.INFO, logger="face3d.prnet.training")

    def chosen(**source):
        caplog.clear()
        folder = load_samples(TrainConfig(val_fraction=0, batch_size=2, **source))[2]
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert (f"uv-data: {folder}" in caplog.text) != bool(warnings)  # INFO names the folder, else one WARNING
        return folder, warnings

    beside_label = (tmp_path / "data" / "uv-data").resolve()
    assert chosen(h5=str(pack)) == (beside_label, [])
    assert f"uv-data: {beside_label} (beside {label.resolve()})" in caplog.text
    beside_pack = _prnet_data.write_uv_data(tmp_path / "packs" / "uv-data", 32).resolve()
    assert chosen(h5=str(pack)) == (beside_pack, [])
    given = _prnet_data.write_uv_data(tmp_path / "given", 32).resolve()
    assert chosen(h5=str(pack), uv_data=str(given)) == (given, [])
    shutil.rmtree(beside_pack)
    shutil.rmtree(beside_label)
    for source, named in [({"h5": str(pack)}, [pack, label]), ({"train_list": str(label)}, [label])]:
        folder, warnings = chosen(**source)
        assert folder == Path(default_uv_data_dir()) and len(warnings) == 1
        assert f"no uv-data folder beside {' or '.join(str(p.resolve()) for p in named)}: using the packaged " \
               f"one ({folder})" in warnings[0]


def test_packs_are_told_by_their_signature_not_their_name(tmp_path):
    """--h5 always opens a pack; --train-list and --val-list open a file starting with HDF5's signature as a pack
    and anything else as a label file, whatever its name ends with."""
    from face3d.prnet.samples import FileSamples, H5Samples
    from face3d.trainset.pack import pack_label_file
    label = _prnet_data.make_dataset(tmp_path / "data", 4, 32)
    pack = tmp_path / "data" / "train.hdf"
    pack_label_file(label, pack, progress=False)
    label_named_h5 = tmp_path / "data" / "list.h5"
    shutil.copy(label, label_named_h5)
    train, val, _ = load_samples(TrainConfig(train_list=str(pack), val_list=str(label_named_h5), batch_size=2))
    assert isinstance(train, H5Samples) and isinstance(val, FileSamples) and len(train) == len(val) == 4
    train, val, _ = load_samples(TrainConfig(train_list=str(label_named_h5), val_list=str(pack), batch_size=2))
    assert isinstance(train, FileSamples) and isinstance(val, H5Samples)
    for not_a_pack in (label, label_named_h5):
        with pytest.raises(InputFileError, match="not a readable HDF5 file") as info:
            load_samples(TrainConfig(h5=str(not_a_pack), batch_size=2))
        assert info.value.path == str(not_a_pack)


def test_keras_loss_is_the_weighted_mse():
    keras = pytest.importorskip("keras")
    from face3d.prnet.model import build_resfcn256
    model = build_resfcn256(input_size=32, width=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mean_squared_error", jit_compile=False)
    rng = np.random.default_rng(0)
    x = rng.random((3, 32, 32, 3)).astype(np.float32)
    y = rng.random((3, 32, 32, 3)).astype(np.float32)
    weight = np.broadcast_to(rng.random((32, 32)).astype(np.float32), (3, 32, 32)).copy()
    loss = model.test_on_batch(x, y, sample_weight=weight)
    assert loss == pytest.approx(metrics.weighted_mse(model.predict_on_batch(x), y, weight), rel=1e-5)


@pytest.mark.parametrize("input_size", [32, 16])
def test_validation_nme_is_the_numpy_nme_of_the_held_out_maps(tmp_path, input_size):
    """evaluate() against metrics.nme / weighted_mse computed straight from the .npy files (brought to S as training
    brings them, ``uv_weights.resample_map``), for a predictor that returns one fixed map (the mean of the maps), at
    full and at reduced input size."""
    tf = pytest.importorskip("tensorflow")
    from face3d.prnet.data import check_samples
    from face3d.prnet.training import evaluate
    from face3d.prnet.uv_weights import loss_weights, resample_map, resize_uv_data
    from face3d.trainset.pack import read_label_file
    from face3d.trainset.uv_layout import load_uv_data
    label = _prnet_data.make_dataset(tmp_path, 5, 32, seed=4)
    samples = check_samples(read_label_file(label))
    uv = load_uv_data(tmp_path / "uv-data")
    small = resize_uv_data(uv, input_size)
    maps = np.stack([resample_map(np.load(p).astype(np.float64), uv.uv_kpt_ind, input_size)
                     for p in samples.posmaps])
    guess = maps.mean(axis=0)
    scale = 1.1 * 32
    predict = lambda images: tf.broadcast_to(tf.constant(guess / scale, tf.float32), tf.shape(images))  # noqa: E731
    loss, nme = evaluate(predict, samples, uv, batch_size=2, input_size=input_size)
    want = metrics.nme(np.broadcast_to(guess, maps.shape), maps, small.uv_kpt_ind)
    assert nme == pytest.approx(want.mean(), rel=1e-5) and nme > 0.01
    assert loss == pytest.approx(metrics.weighted_mse(np.broadcast_to(guess, maps.shape) / scale, maps / scale,
                                                      loss_weights(small)), rel=1e-4)


@pytest.fixture(scope="module")
def tiny_label(tmp_path_factory):
    return _prnet_data.make_dataset(tmp_path_factory.mktemp("tiny"), 10, 32, seed=1)


def _tiny_config(label, output, **kwargs):
    values = dict(train_list=str(label), output=str(output), epochs=2, batch_size=4, width=2, lr=1e-3,
                  lr_decay_epochs=1, val_fraction=0.2, seed=3, deterministic=True, run_eagerly=True, verbose=0)
    values.update(kwargs)
    return TrainConfig(**values)


def test_resume_continues_exactly(tiny_label, tmp_path):
    keras = pytest.importorskip("keras")
    straight = train(_tiny_config(tiny_label, tmp_path / "straight"))
    first = train(_tiny_config(tiny_label, tmp_path / "resumed", epochs=1))
    assert [row["epoch"] for row in first["history"]] == [1]
    with pytest.raises(ValueError, match="--resume"):
        train(_tiny_config(tiny_label, tmp_path / "resumed"))
    with pytest.raises(ValueError, match="seed"):
        train(_tiny_config(tiny_label, tmp_path / "resumed", resume=True, seed=4))
    resumed = train(_tiny_config(tiny_label, tmp_path / "resumed", resume=True))

    assert [row["learning_rate"] for row in resumed["history"]] == [1e-3, 5e-4]
    assert resumed["history"] == straight["history"]  # loss, lr and val NME of both epochs, exactly
    rows = _csv(tmp_path / "resumed" / "log.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"] and list(rows[0]) == ["epoch", "loss", "learning_rate",
                                                                         "val_loss", "val_nme"]
    a = keras.models.load_model(tmp_path / "straight" / "checkpoints" / "last.keras")
    b = keras.models.load_model(tmp_path / "resumed" / "checkpoints" / "last.keras")
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    for va, vb in zip(a.optimizer.variables, b.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(va), np.asarray(vb))
    assert int(b.optimizer.iterations) == 2 * (8 // 4)
    assert json.loads((tmp_path / "resumed" / "checkpoints" / "state.json").read_text())["epoch"] == 2

    best = json.loads((tmp_path / "straight" / "best.json").read_text())
    nmes = [row["val_nme"] for row in straight["history"]]
    assert best["val_nme"] == min(nmes) and best["epoch"] == 1 + int(np.argmin(nmes))
    assert (tmp_path / "straight" / "best.keras").is_file()
    assert list((tmp_path / "straight" / "logs" / "validation").glob("events.out.tfevents.*"))
    assert list((tmp_path / "straight" / "logs" / "train").glob("events.out.tfevents.*"))


def test_a_resume_without_rows_in_its_state_reads_log_csv_up_to_the_last_finished_epoch(tmp_path):
    """A state without ``rows`` (an older release's state.json) takes log.csv's rows of the finished epochs: the
    last finished epoch's row is kept, a later epoch's (written before a kill) is dropped; no log.csv, no rows."""
    from face3d.prnet.run_records import read_csv_rows, write_csv

    log = tmp_path / "log.csv"
    rows = [{"epoch": 1, "loss": 0.5, "learning_rate": 0.001, "val_loss": 0.25, "val_nme": 0.125},
            {"epoch": 2, "loss": 0.375, "learning_rate": 0.0005, "val_loss": 0.1875, "val_nme": 0.0625}]
    write_csv(log, rows)
    as_read = [{key: str(value) for key, value in row.items()} for row in rows]  # csv gives strings back
    assert read_csv_rows(log, 2) == as_read
    assert read_csv_rows(log, 1) == as_read[:1]
    assert read_csv_rows(tmp_path / "absent.csv", 2) == []


class _Killed(BaseException):
    """A simulated kill -9 before a write: a BaseException, so no handler of the code under test runs for it."""


def _equal_checkpoints(keras, a, b):
    """Weights and optimizer state (Adam moments, iteration count) of two .keras files are bitwise equal."""
    a, b = keras.models.load_model(a), keras.models.load_model(b)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    for va, vb in zip(a.optimizer.variables, b.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(va), np.asarray(vb))


@pytest.mark.slow
def test_resume_is_bit_identical_from_every_kill_point(tiny_label, tmp_path, monkeypatch):
    """Kill a two-epoch run just before each of its writes in turn (every file committed by os.replace, every
    TensorBoard write), resume it, and compare with the uninterrupted run: history, log.csv, best.json, the
    weights and Adam state of the checkpoint and of best.keras, bit for bit (a tiny network stands in for
    resfcn256)."""
    keras = pytest.importorskip("keras")
    from face3d.prnet import training
    monkeypatch.setattr("face3d.prnet.model.build_resfcn256", _prnet_data.tiny_network)
    writes, kill_at = [], [0]

    def counted(write, label):
        def wrapper(*args, **kwargs):
            writes.append(label(*args))
            if len(writes) == kill_at[0]:
                raise _Killed(writes[-1])
            return write(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(os, "replace", counted(os.replace, lambda source, target: Path(target).name))
    monkeypatch.setattr(training, "_log_scalars", counted(training._log_scalars, lambda *args: "tensorboard"))
    straight = train(_tiny_config(tiny_label, tmp_path / "straight"))
    points = list(writes)
    assert points.count("last.keras") == 2 and points.count("tensorboard") == 2
    for point in range(1, len(points) + 1):
        out = tmp_path / f"killed_{point}"
        writes.clear()
        kill_at[0] = point
        with pytest.raises(_Killed):
            train(_tiny_config(tiny_label, out))
        kill_at[0] = 0
        resumed = train(_tiny_config(tiny_label, out, resume=True))
        where = f"killed before write {point} ({points[point - 1]})"
        assert resumed["history"] == straight["history"], where
        for name in ("log.csv", "best.json"):
            assert (out / name).read_text() == (tmp_path / "straight" / name).read_text(), where
        for name in ("checkpoints/last.keras", "best.keras"):
            _equal_checkpoints(keras, out / name, tmp_path / "straight" / name)
        assert json.loads((out / "checkpoints" / "state.json").read_text())["epoch"] == 2, where


def test_best_model_never_describes_a_discarded_epoch(tiny_label, tmp_path, monkeypatch):
    """Validation NMEs 0.5, 0.4, then 0.6 for epoch 2 redone (as a GPU without --deterministic may give). Killed
    before epoch 2's checkpoint is committed, the resumed run redoes epoch 2: best.keras and best.json stay epoch 1's.
    Killed after that commit but before best.keras, the resume writes epoch 2's best from the checkpoint."""
    keras = pytest.importorskip("keras")
    from face3d.prnet import training
    monkeypatch.setattr("face3d.prnet.model.build_resfcn256", _prnet_data.tiny_network)
    real_replace = os.replace

    def killed_run(out, target):
        """Run two epochs, killed before the second rename onto ``target``; then resume."""
        nmes = iter([0.5, 0.4, 0.6])
        monkeypatch.setattr(training, "evaluate", lambda *args, **kwargs: (0.01, next(nmes)))
        seen = []

        def replace(source, destination):
            seen.append(Path(destination).name)
            if seen.count(target) == 2 and seen[-1] == target:
                raise _Killed(target)
            real_replace(source, destination)

        monkeypatch.setattr(os, "replace", replace)
        with pytest.raises(_Killed):
            train(_tiny_config(tiny_label, out, keep_checkpoints=True))
        monkeypatch.setattr(os, "replace", real_replace)
        return train(_tiny_config(tiny_label, out, keep_checkpoints=True, resume=True))

    # (case, killed before the second rename onto, val NMEs logged, best epoch and NME, checkpoint best.keras equals)
    for name, target, history, (epoch, nme), checkpoint in (
            ("redone", "last.keras", [0.5, 0.6], (1, 0.5), "epoch_001.keras"),
            ("finished", "best.keras", [0.5, 0.4], (2, 0.4), "last.keras")):
        summary = killed_run(tmp_path / name, target)
        assert [row["val_nme"] for row in summary["history"]] == history, name
        assert (summary["best_epoch"], summary["best_nme"]) == (epoch, nme), name
        assert json.loads((tmp_path / name / "best.json").read_text()) == {"epoch": epoch, "val_nme": nme}, name
        _equal_checkpoints(keras, tmp_path / name / "best.keras", tmp_path / name / "checkpoints" / checkpoint)


def test_skip_bad_trains_on_the_rest(tmp_path):
    label = _prnet_data.make_dataset(tmp_path / "data", 7, 32, seed=2)
    (tmp_path / "data" / "sample_004.jpg").write_bytes(b"\xff\xd8 broken")
    damaged = bytearray((tmp_path / "data" / "sample_005.jpg").read_bytes())  # whole, with a bad table number
    damaged[damaged.index(b"\xff\xdb") + 4] = 0x0F
    (tmp_path / "data" / "sample_005.jpg").write_bytes(damaged)
    summary = train(_tiny_config(label, tmp_path / "out", epochs=1, skip_bad=True, deterministic=False,
                                 augment=AugmentConfig.off()))
    assert summary["train_samples"] + summary["val_samples"] == 5
    assert np.isfinite(summary["history"][0]["loss"])


@pytest.mark.slow
def test_short_run_halves_validation_nme(tmp_path):
    """128 synthetic faces (the generator's formats, affine poses) at 32 x 32, width 4, constant lr 3e-3, batch 8,
    no augmentation, 8 epochs, seeded and deterministic: NME at least halves."""
    label = _prnet_data.make_dataset(tmp_path / "data", 128, 32, seed=0)
    summary = train(TrainConfig(train_list=str(label), output=str(tmp_path / "out"), epochs=8, batch_size=8, width=4,
                                lr=3e-3, lr_decay_epochs=1000, bn_momentum=0.9, val_fraction=0.25, seed=0,
                                deterministic=True, augment=AugmentConfig.off(), verbose=0))
    nme = [row["val_nme"] for row in summary["history"]]
    assert nme[-1] <= 0.5 * nme[0], nme


@pytest.mark.slow
def test_short_run_halves_validation_nme_on_the_embedded_default_set(tmp_path):
    """192 faces rendered from the embedded default model (yaw over +-90 degrees), as the generator crops them at
    64 x 64; 48 of them held out for validation. Width 4, batch 4, lr 3e-3 halved every 10 epochs, 40 epochs, no
    augmentation, seeded and deterministic. The validation NME (first epoch about 0.38) falls below half of it and
    well below that of the mean training map (about 0.25), which the network reaches first and stays near for the
    first ~400 steps. (It wanders by up to 0.04 from epoch to epoch: at 32 epochs it was 0.190, just above half.)"""
    from face3d.prnet.data import group_key
    from face3d.trainset.dataset import generate_dataset
    from face3d.trainset.pack import read_label_file
    from face3d.trainset.sample import GenerationConfig
    from face3d.trainset.synthetic import synthesize_dataset
    from face3d.trainset.uv_layout import load_uv_data

    synthesize_dataset(tmp_path / "faces", count=192, seed=0, size=128, views=1, flip=False)
    generate_dataset(tmp_path / "faces", tmp_path / "set", GenerationConfig(resolution=64, angles=()), workers=1,
                     progress=False)
    config = TrainConfig(train_list=str(tmp_path / "set" / "trainDataLabel.txt"), output=str(tmp_path / "out"),
                         epochs=40, batch_size=4, width=4, input_size=64, lr=3e-3, lr_decay_epochs=10,
                         bn_momentum=0.9, val_fraction=0.25, seed=0, deterministic=True, augment=AugmentConfig.off(),
                         verbose=0)
    train_samples, val_samples, _ = load_samples(config)
    assert len(val_samples) == 48 and len(train_samples) == 144
    assert not {group_key(n) for n in val_samples.names} & {group_key(n) for n in train_samples.names}

    nme = [row["val_nme"] for row in train(config)["history"]]
    assert nme[-1] <= 0.5 * nme[0], nme

    uv = load_uv_data(tmp_path / "set" / "uv-data")
    maps = {Path(npy).stem: np.load(npy).astype(np.float64) for _, npy in read_label_file(config.train_list)}
    mean_map = np.mean([maps[n] for n in train_samples.names], axis=0)
    val_maps = np.stack([maps[n] for n in val_samples.names])
    mean_nme = float(np.mean(metrics.nme(np.broadcast_to(mean_map, val_maps.shape), val_maps, uv.uv_kpt_ind)))
    assert nme[-1] <= 0.8 * mean_nme, (nme, mean_nme)


def _train_argv(label, output, *extra):
    """``face3d train`` of a tiny network for one epoch (``tiny_network`` patched in by the caller)."""
    return ["train", "--train-list", str(label), "--output", str(output), "--epochs", "1", "--batch-size", "4",
            "--width", "2", "--lr", "1e-3", "--seed", "3", "--run-eagerly", "--verbose", "0", *extra]


def test_a_full_disk_while_saving_a_model_is_one_line_naming_the_file(tiny_label, tmp_path, monkeypatch, capsys):
    """Keras's save fails as on a full disk (ENOSPC naming no file, or its hidden twin): the command says which
    model file in one line, status 2, and leaves no temporary behind."""
    import errno

    keras = pytest.importorskip("keras")
    from face3d.cli import main as face3d_main
    monkeypatch.setattr("face3d.prnet.model.build_resfcn256", _prnet_data.tiny_network)

    def full_disk(model, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(keras.Model, "save", full_disk)
    assert face3d_main(_train_argv(tiny_label, tmp_path / "out")) == 2
    last = tmp_path / "out" / "checkpoints" / "last.keras"
    assert capsys.readouterr().err.strip().splitlines() == [f"face3d train: error: {last}: "
                                                            f"{os.strerror(errno.ENOSPC)}"]
    assert list(last.parent.iterdir()) == []


def test_without_validation_the_last_line_names_last_keras_instead_of_a_best_model(tiny_label, tmp_path,
                                                                                     monkeypatch, capsys, caplog):
    pytest.importorskip("keras")
    from face3d.cli import main as face3d_main
    monkeypatch.setattr("face3d.prnet.model.build_resfcn256", _prnet_data.tiny_network)
    caplog.set_level(logging.INFO, logger="face3d.prnet.training")
    out = tmp_path / "out"
    assert face3d_main(_train_argv(tiny_label, out, "--val-fraction", "0")) == 0
    last = out / "checkpoints" / "last.keras"
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        "finished 1 epoch; no validation (--val-fraction 0 and no --val-list), so no best.keras: the model is "
        f"{last}; outputs in {out}")
    epoch_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch 1/1: ")]
    assert len(epoch_lines) == 1 and "val NME" not in epoch_lines[0], epoch_lines
    assert last.is_file() and not (out / "best.keras").exists()


def test_progress_in_a_log_file_is_plain_lines_on_stderr(tiny_label, tmp_path, monkeypatch, capfd):
    """With stdout and stderr not terminals (a log file, a cluster job), ``--verbose 1`` writes no backspaces,
    carriage returns or colour codes: the epoch's steps are face3d's plain progress lines on stderr (here, in under
    30 s, only the final one), and stdout holds the result line alone."""
    pytest.importorskip("keras")
    from face3d.cli import main as face3d_main
    monkeypatch.setattr("face3d.prnet.model.build_resfcn256", _prnet_data.tiny_network)
    out = tmp_path / "out"
    assert face3d_main(_train_argv(tiny_label, out, "--val-fraction", "0", "--verbose", "1")) == 0
    captured = capfd.readouterr()
    for stream in (captured.out, captured.err):
        assert not {"\r", "\b", "\x1b"} & set(stream), repr(stream[:300])
    assert captured.out == (f"finished 1 epoch; no validation (--val-fraction 0 and no --val-list), so no "
                            f"best.keras: the model is {out / 'checkpoints' / 'last.keras'}; outputs in {out}\n")
    steps = [line for line in captured.err.splitlines() if line.startswith("epoch 1/1 steps: ")]
    assert len(steps) == 1, captured.err  # 10 samples, batches of 4
    assert re.fullmatch(r"epoch 1/1 steps: 2/2 100\.0% \d+\.\d\d/s elapsed 0:\d\d ETA 0:00 loss \d\.\d+(e-\d+)?",
                        steps[0]), steps[0]


def test_a_full_disk_while_writing_tensorboard_logs_is_one_line_naming_the_folder(tiny_label, tmp_path, monkeypatch,
                                                                                   capsys):
    """TensorFlow reports a full disk as ResourceExhaustedError, no OSError: it ends the command as any refused
    write does, one line naming the log folder and status 2."""
    tf = pytest.importorskip("tensorflow")
    from face3d.cli import main as face3d_main
    monkeypatch.setattr("face3d.prnet.model.build_resfcn256", _prnet_data.tiny_network)

    def full_disk(logdir, *args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, f"{logdir}/events.out.tfevents.1; No space left on device")

    monkeypatch.setattr(tf.summary, "create_file_writer", full_disk)
    out = tmp_path / "out"
    assert face3d_main(_train_argv(tiny_label, out)) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"face3d train: error: {out / 'logs' / 'train'}: "
                                                            "No space left on device"]


def test_a_run_into_an_output_another_run_trains_in_is_refused_leaving_it_as_it_was(tiny_label, tmp_path, capsys):
    """Two runs into one output would mix their checkpoints, logs and config.json: the second is refused at once
    (the first's lock held here through an open file description of its own, as another process holds it)."""
    from face3d.cli import main as face3d_main
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("{}\n")  # the first run's
    with held_lock(out / ".train.lock"):
        assert face3d_main(_train_argv(tiny_label, out)) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"face3d train: error: {out}: another face3d train run is writing it; wait for it to end or use another "
        f"--output"]
    assert sorted(p.name for p in out.iterdir()) == [".train.lock", "config.json"]
    assert (out / "config.json").read_text() == "{}\n"


def test_an_output_that_is_a_file_is_refused_before_the_samples_are_read(tmp_path, capsys):
    from face3d.cli import main as face3d_main
    label = _prnet_data.make_dataset(tmp_path / "data", 4, 32)
    (tmp_path / "data" / "sample_000.npy").unlink()  # reading the samples would fail first
    afile = tmp_path / "afile"
    afile.touch()
    assert face3d_main(["train", "--train-list", str(label), "--output", str(afile)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"face3d train: error: {afile}: is a file, not a folder"]


@pytest.mark.parametrize("flag, advice", [("--train-list", "give {label}"),
                                          ("--h5", "give the .h5 file (face3d pack's output)")])
def test_a_folder_for_the_training_data_says_what_to_give(tiny_label, tmp_path, capsys, flag, advice):
    from face3d.cli import main as face3d_main
    folder = tiny_label.parent
    assert face3d_main(["train", flag, str(folder), "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"face3d train: error: {folder}: is a folder; {advice.format(label=tiny_label)}"]


def test_resuming_with_fewer_epochs_than_the_run_has_is_refused(tiny_label, tmp_path, monkeypatch, capsys):
    """--epochs below the run's epoch count leaves the run (and the config.json that describes it) as it is."""
    pytest.importorskip("keras")
    from face3d.cli import main as face3d_main
    monkeypatch.setattr("face3d.prnet.model.build_resfcn256", _prnet_data.tiny_network)
    out = tmp_path / "out"
    assert face3d_main(_train_argv(tiny_label, out, "--epochs", "2")) == 0
    config = (out / "config.json").read_bytes()
    capsys.readouterr()
    assert face3d_main(_train_argv(tiny_label, out, "--resume")) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"face3d train: error: cannot resume {out}: the run already has 2 epochs, more than --epochs 1; give "
        "--epochs 2 or more"]
    assert (out / "config.json").read_bytes() == config
