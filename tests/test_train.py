"""train.py and the training loop: CLI, bad input, loss, resume, logs; plus the slow NME-halving run.

Budget: about 40 s without the slow tests, which add about 80 s on 2 cores. The tiny runs execute eagerly
(``run_eagerly``): tracing the 160-layer graph costs about 15 s per model, more than their few steps.
"""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from face3d.prnet import metrics
from face3d.prnet.data import AugmentConfig
from face3d.prnet.training import TrainConfig, learning_rate_at, train

import _prnet_data

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--train-list", "--h5", "--val-list", "--val-fraction", "--uv-data", "--epochs", "--batch-size", "--lr",
         "--lr-decay", "--lr-decay-epochs", "--width", "--input-size", "--bn-momentum", "--output", "--resume",
         "--seed", "--no-augment", "--no-rotation", "--no-translation", "--no-scale", "--no-color",
         "--no-occlusion", "--skip-bad", "--mixed-precision", "--deterministic", "--keep-checkpoints", "--run-eagerly",
         "--verbose"]


def _run_cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


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


def test_skip_bad_trains_on_the_rest(tmp_path):
    label = _prnet_data.make_dataset(tmp_path / "data", 7, 32, seed=2)
    (tmp_path / "data" / "sample_004.jpg").write_bytes(b"\xff\xd8 broken")
    summary = train(_tiny_config(label, tmp_path / "out", epochs=1, skip_bad=True, deterministic=False,
                                 augment=AugmentConfig.off()))
    assert summary["train_samples"] + summary["val_samples"] == 6
    assert np.isfinite(summary["history"][0]["loss"])


def _short_run(label, output):
    """The short CPU recipe of the NME tests: width 4 at 32 x 32, constant lr 3e-3, batch 8, no augmentation."""
    return train(TrainConfig(train_list=str(label), output=str(output), epochs=8, batch_size=8, width=4, lr=3e-3,
                             lr_decay_epochs=1000, bn_momentum=0.9, val_fraction=0.25, seed=0,
                             augment=AugmentConfig.off(), verbose=0))


@pytest.mark.slow
def test_short_run_halves_validation_nme(tmp_path):
    """128 synthetic faces (the generator's formats, affine poses), 8 epochs: NME at least halves (~35 s)."""
    label = _prnet_data.make_dataset(tmp_path / "data", 128, 32, seed=0)
    nme = [row["val_nme"] for row in _short_run(label, tmp_path / "out")["history"]]
    assert nme[-1] <= 0.5 * nme[0], nme


@pytest.mark.slow
def test_short_run_learns_on_the_embedded_default_set(tmp_path):
    """128 default-model renders (yaw over +-90 degrees) at 32 x 32, no rotated copies, 8 epochs (~45 s).

    This set is much harder than the affine one: in this budget the network reaches about the NME of predicting
    the mean training map (0.25 here), not half of its first epoch (0.40); the test checks that it gets there.
    """
    pytest.importorskip("face3d.trainset")
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "9_generate_prnet_trainset.py"), "--output",
                             str(tmp_path / "data"), "--synthetic-count", "128", "--resolution", "32", "--angles",
                             "--workers", "2", "--quiet"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    label = tmp_path / "data" / "trainDataLabel.txt"
    nme = [row["val_nme"] for row in _short_run(label, tmp_path / "out")["history"]]
    assert min(nme[-3:]) <= 0.75 * nme[0], nme
