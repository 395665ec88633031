"""Model files that do not fit PRNet's contract, refused by ``load_predictor`` in one line naming the file: dynamic or
non-square inputs, wrong channels or output shapes, runtimes that cannot run the file, damaged weights.

Models are built here at run time, 32 x 32 sigmoids, slices or poolings; the file runs in about 20 s on 2 cores,
8 s of it a child process running ``face3d evaluate`` on a truncated ``.tflite``.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from _graph_models import frozen_graph, saved_model

from face3d.cli import main as face3d_main
from face3d.prnet.predictor import load_predictor
from face3d.utils.errors import InputFileError

R = 32
ROOT = Path(__file__).resolve().parents[1]


def _sigmoid(images):
    return 1 / (1 + np.exp(-images))


def _tflite(path, shape, function=None, select_ops=False):
    """A ``.tflite`` of ``function`` (default sigmoid) on a float32 input of ``shape`` (None: dynamic), converted
    from a concrete function; ``select_ops`` lets the converter keep TensorFlow ops (Flex) it has no kernel for."""
    import tensorflow as tf

    spec = tf.TensorSpec(shape, tf.float32, name="input")
    concrete = tf.function(function or tf.sigmoid, input_signature=[spec]).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    if select_ops:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    Path(path).write_bytes(converter.convert())
    return Path(path)


# ------------------------------------------------------------------------------------------------ inputs

@pytest.mark.parametrize("make, name, shape, shown", [
    (frozen_graph, "gray.pb", (1, R, R, 1), "input node 'input' has shape [1, 32, 32, 1]"),
    (frozen_graph, "wide.pb", (1, R, 48, 3), "input node 'input' has shape [1, 32, 48, 3]"),
    (saved_model, "gray", (None, R, R, 1), "input 'input' has shape (None, 32, 32, 1)"),
    (saved_model, "wide", (None, R, 48, 3), "input 'input' has shape (None, 32, 48, 3)")])
def test_graph_input_must_be_square_rgb(tmp_path, make, name, shape, shown):
    """A .pb or SavedModel input of one channel or unequal sides is refused at load, as Keras, ONNX and TFLite
    inputs are, not run into a TensorFlow error (or a silently wrong map) at predict."""
    pytest.importorskip("tensorflow")
    import tensorflow as tf

    path = make(tmp_path / name, shape, (lambda x: tf.concat([x, x, x], -1)) if shape[3] == 1 else None)
    with pytest.raises(InputFileError) as caught:
        load_predictor(path)
    assert str(caught.value) == f"{path}: {shown}, expected (batch, S, S, 3)"


def test_keras_input_error_names_the_file(tmp_path):
    keras = pytest.importorskip("keras")
    inputs = keras.Input((R, R, 1))
    gray = tmp_path / "gray.keras"
    keras.Model(inputs, keras.layers.Concatenate()([inputs, inputs, inputs])).save(gray)
    with pytest.raises(InputFileError) as caught:
        load_predictor(gray)
    assert str(caught.value) == f"{gray}: input has shape (None, 32, 32, 1), expected (batch, S, S, 3)"


def test_onnx_with_dynamic_height_and_width_is_refused(tmp_path):
    """Not run at an assumed size: Keras, SavedModel, .pb and TFLite inputs need a fixed S too."""
    helper = pytest.importorskip("onnx.helper")
    dynamic = _onnx(tmp_path / "dynamic.onnx", helper.make_node("Sigmoid", ["input"], ["output"]),
                    ["N", "H", "W", 3], ["N", "H", "W", 3])
    with pytest.raises(InputFileError) as caught:
        load_predictor(dynamic)
    assert str(caught.value) == f"{dynamic}: input 'input' has shape ['N', 'H', 'W', 3], expected NHWC (batch, S, S, 3)"


# ------------------------------------------------------------------------------------------------ outputs

def _half_keras(path):
    keras = pytest.importorskip("keras")
    inputs = keras.Input((R, R, 3))
    keras.Model(inputs, keras.layers.AveragePooling2D(2)(inputs)).save(path)
    return path, "(None, 16, 16, 3)"


def _halffrozen_graph(path):
    return frozen_graph(path, (1, R, R, 3), lambda x: x[:, ::2, ::2, :]), "(1, 16, 16, 3)"


def _halfsaved_model(path):
    return saved_model(path, (None, R, R, 3), lambda x: x[:, ::2, ::2, :]), "(None, 16, 16, 3)"


def _reshapedsaved_model(path):
    """Output (None, 64, None, 3) as the graph declares it: only a call tells its width."""
    import tensorflow as tf

    def reshape(images):
        return tf.reshape(images, tf.stack([tf.shape(images)[0], tf.shape(images)[1] * 2, -1, 3]))
    return saved_model(path, (None, R, R, 3), reshape), "(1, 64, 16, 3)"


def _onnx(path, node, input_shape, output_shape):
    """An ONNX model of one ``node`` from ``input`` to ``output`` (a dynamic dimension named)."""
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([node], "one_node",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, output_shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return Path(path)


def _one_channel_onnx(path):
    helper = pytest.importorskip("onnx.helper")
    mean = helper.make_node("ReduceMean", ["input"], ["output"], axes=[3], keepdims=1)
    return _onnx(path, mean, ["N", R, R, 3], ["N", R, R, 1]), "(None, 32, 32, 1)"


def _half_tflite(path):
    return _tflite(path, (1, R, R, 3), lambda x: x[:, ::2, ::2, :]), "(1, 16, 16, 3)"


@pytest.mark.parametrize("make, name", [(_half_keras, "half.keras"), (_halffrozen_graph, "half.pb"),
                                        (_halfsaved_model, "half"), (_reshapedsaved_model, "reshaped"),
                                        (_one_channel_onnx, "mean.onnx"), (_half_tflite, "half.tflite")])
def test_output_of_another_shape_is_refused_at_load(tmp_path, make, name):
    """Each backend checks the output is (batch, S, S, 3) when it loads the model (its declared shape, or one call
    when the graph leaves the size to the run), so a wrong model is one error naming it, not one per batch."""
    pytest.importorskip("tensorflow")
    path, shown = make(tmp_path / name)
    with pytest.raises(InputFileError) as caught:
        load_predictor(path)
    assert str(caught.value) == f"{path}: output has shape {shown}, expected (batch, 32, 32, 3) as its input"


def test_demo_and_evaluate_refuse_a_model_of_another_output_shape_in_one_line(tmp_path, capsys):
    path, _ = _half_keras(tmp_path / "half.keras")
    cv2.imwrite(str(tmp_path / "face.jpg"), np.full((40, 40, 3), 128, np.uint8))
    commands = (["demo", "-i", str(tmp_path / "face.jpg"), "-o", str(tmp_path / "demo"), "--box", "5", "5", "35", "35"],
                ["evaluate", "--data", str(tmp_path), "--output", str(tmp_path / "report")])
    for argv in commands:
        status = face3d_main(argv + ["--model", str(path)])
        err = capsys.readouterr().err.strip()
        assert status == 2 and len(err.splitlines()) == 1, err
        assert err.endswith(f"{path}: output has shape (None, 16, 16, 3), expected (batch, 32, 32, 3) as its input")
    assert not (tmp_path / "demo").exists()


# ------------------------------------------------------------------------------------------------ TFLite

def test_tflite_with_dynamic_height_and_width_is_refused(tmp_path):
    pytest.importorskip("tensorflow")
    dynamic = _tflite(tmp_path / "dynamic.tflite", (None, None, None, 3))
    with pytest.raises(InputFileError) as caught:
        load_predictor(dynamic)
    assert str(caught.value) == (f"{dynamic}: input has shape (None, None, None, 3), expected (batch, S, S, 3) with a "
                                 "fixed S")


def test_tflite_with_a_dynamic_batch_runs_any_batch(tmp_path):
    pytest.importorskip("tensorflow")
    predictor = load_predictor(_tflite(tmp_path / "batch.tflite", (None, R, R, 3)))
    assert (predictor.input_size, predictor.batch_size) == (R, 1)
    images = np.random.default_rng(0).random((3, R, R, 3)).astype(np.float32)
    np.testing.assert_allclose(predictor.predict(images), _sigmoid(images), rtol=1e-6)


def test_tflite_the_interpreter_cannot_run_is_one_error_naming_it(tmp_path, caplog):
    """A .tflite holding TensorFlow (Flex) ops, here a file write, is refused naming the file, not retried as an
    XNNPACK refusal (the retry's error used to escape as a traceback)."""
    tf = pytest.importorskip("tensorflow")
    victim = tmp_path / "victim.txt"

    def write_then_sigmoid(images):
        with tf.control_dependencies([tf.io.write_file(str(victim), "owned")]):
            return tf.sigmoid(images)

    flex = _tflite(tmp_path / "flex.tflite", (1, R, R, 3), write_then_sigmoid, select_ops=True)
    with pytest.raises(InputFileError) as caught:
        load_predictor(flex)
    message = str(caught.value)
    assert message.startswith(f"{flex}: not a TFLite model this interpreter runs (Select TensorFlow op(s)")
    assert len(message.splitlines()) == 1 and "XNNPACK" not in caplog.text
    assert not victim.exists()


def test_tflite_the_xnnpack_delegate_refuses_runs_on_the_builtin_kernels(tmp_path, monkeypatch, caplog):
    """XNNPACK refuses some int8 layers (an out-of-range requantization scale) when tensors are allocated, with a
    message naming its delegate: the file is then run without it, a warning saying so."""
    tf = pytest.importorskip("tensorflow")
    real = tf.lite.Interpreter
    refusal = "failed to create XNNPACK runtimeNode number 1 (TfLiteXNNPackDelegate) failed to prepare."

    class RefusingDelegate(real):
        def allocate_tensors(self):
            if not self.builtin_only:
                raise RuntimeError(refusal)
            return super().allocate_tensors()

        def __init__(self, *args, **kwargs):
            self.builtin_only = "experimental_op_resolver_type" in kwargs
            super().__init__(*args, **kwargs)

    RefusingDelegate.__module__ = real.__module__  # where the op resolver types are looked up
    model = _tflite(tmp_path / "int8like.tflite", (1, R, R, 3))
    monkeypatch.setattr(tf.lite, "Interpreter", RefusingDelegate)
    predictor = load_predictor(model)
    images = np.random.default_rng(1).random((1, R, R, 3)).astype(np.float32)
    np.testing.assert_allclose(predictor.predict(images), _sigmoid(images), rtol=1e-6)
    assert f"{model}: {refusal}; running without the XNNPACK delegate" in caplog.text


def test_corrupt_tflite_is_one_line(tmp_path):
    pytest.importorskip("tensorflow")
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"this is not a model\n" * 3)
    with pytest.raises(InputFileError) as caught:
        load_predictor(corrupt)
    assert str(caught.value) == f"{corrupt}: not a TFLite model (bytes 4-7 are b' is ', not its identifier b'TFL3')"


@pytest.fixture(scope="module")
def weighted_tflite(tmp_path_factory):
    """A 13 KB ``.tflite`` of sigmoid(input + c), c a (1, 32, 32, 3) float32 constant, and c: the converter writes the
    model's tables first and c's 12 KB after them, so a copy cut short leaves offsets past its end."""
    tf = pytest.importorskip("tensorflow")
    constant = np.random.default_rng(2).random((1, R, R, 3)).astype(np.float32)
    path = tmp_path_factory.mktemp("weighted") / "whole.tflite"
    return _tflite(path, (1, R, R, 3), lambda x: tf.sigmoid(x + constant)), constant


# what the interpreter's verifier says of a flatbuffer that does not fit its bytes
_CUT_SHORT = "truncated or corrupt .tflite file (The model is not a valid Flatbuffer buffer)"
# TensorFlow 2.21's C++ start-up log (absl's notice, oneDNN's and the CPU-feature lines, on processors with AVX-512
# among others), which TF_CPP_MIN_LOG_LEVEL no longer silences: TensorFlow's lines, not the command's.
_TENSORFLOW_START_UP = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called|"
                                  r"[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+\.cc:\d+\] |"
                                  r"To enable the following instructions: ")


def _command_lines(stderr):
    """The lines of a child ``face3d`` command's stderr, TensorFlow's start-up log left out."""
    return [line for line in stderr.strip().splitlines() if not _TENSORFLOW_START_UP.match(line)]


@pytest.mark.parametrize("kept, problem", [
    (lambda size: 8, _CUT_SHORT), (lambda size: size * 9 // 10, _CUT_SHORT), (lambda size: size - 1, _CUT_SHORT),
    (lambda size: 0, "not a TFLite model (bytes 4-7 are b'', not its identifier b'TFL3')")],
    ids=["first 8 bytes", "90 percent", "one byte short", "empty"])
def test_truncated_tflite_is_one_error_naming_it(weighted_tflite, tmp_path, kept, problem):
    """A model that runs whole is refused cut short: the interpreter, given the file's bytes, verifies them (given its
    path, it read past the end: the one byte short file loaded, half the file crashed the process)."""
    whole, constant = weighted_tflite
    images = np.random.default_rng(3).random((1, R, R, 3)).astype(np.float32)
    np.testing.assert_allclose(load_predictor(whole).predict(images), _sigmoid(images + constant), rtol=1e-6)
    data = whole.read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[:kept(len(data))])
    with pytest.raises(InputFileError) as caught:
        load_predictor(cut)
    assert str(caught.value) == f"{cut}: {problem}"


def test_half_a_tflite_file_stops_evaluate_in_one_line_not_a_crash(weighted_tflite, tmp_path):
    """Half the file made TensorFlow's interpreter read past its end and crash the process (a segmentation fault,
    before any Python error): the command runs in a child process, whose exit status and stderr are checked."""
    whole, _ = weighted_tflite
    data = whole.read_bytes()
    half = tmp_path / "half.tflite"
    half.write_bytes(data[:len(data) // 2])
    cv2.imwrite(str(tmp_path / "face.jpg"), np.full((40, 40, 3), 128, np.uint8))
    result = subprocess.run([sys.executable, "-m", "face3d", "evaluate", "--model", str(half), "--data", str(tmp_path),
                             "--output", str(tmp_path / "report")], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 2, result.stderr[-3000:]
    assert _command_lines(result.stderr) == [f"face3d evaluate: error: {half}: {_CUT_SHORT}"]
    assert not (tmp_path / "report").exists()


def testsaved_model_with_truncated_weights_is_named(tmp_path):
    """A SavedModel whose variables file was cut short is an InputFileError naming the folder, not TensorFlow's bare
    IndexError."""
    tf = pytest.importorskip("tensorflow")

    module = tf.Module()
    module.scale = tf.Variable(np.linspace(0.5, 2, 16, dtype=np.float32))
    module.serve = tf.function(lambda images: {"output": tf.sigmoid(images * module.scale[0])},
                               input_signature=[tf.TensorSpec((None, R, R, 3), tf.float32, name="input")])
    folder = tmp_path / "saved"
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    data = folder / "variables" / "variables.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:40])
    with pytest.raises(InputFileError) as caught:
        load_predictor(folder)
    assert str(caught.value) == (f"{folder}: not a loadable SavedModel (IndexError: Read less bytes than "
                                 "requested)")
