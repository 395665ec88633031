"""Export to frozen .pb / ONNX for Ascend ATC: batch-norm folding, numerical agreement, op tables, ATC files.

Narrow networks (input 64, width 4) keep this file around 40 s on 2 cores.
"""
import json
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest
from _fixtures import held_lock

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from face3d.cli import main as face3d_main  # noqa: E402
from face3d.prnet import export as ex  # noqa: E402
from face3d.prnet import tf_graph  # noqa: E402
from face3d.prnet.model import build_resfcn256  # noqa: E402
from face3d.prnet.predictor import load_predictor  # noqa: E402

SIZE, WIDTH = 64, 4


def _randomise_batch_norms(model, seed):
    """Moving statistics and affine parameters far from the identity (negative gammas included), so that a
    wrong fold shows."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            gamma = rng.uniform(0.5, 1.5, c) * rng.choice([-1.0, 1.0], c)
            layer.set_weights([gamma.astype(np.float32), rng.normal(0, 0.3, c).astype(np.float32),
                               rng.normal(0, 0.3, c).astype(np.float32), rng.uniform(0.5, 2.0, c).astype(np.float32)])
    return model


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(3)
    return _randomise_batch_norms(build_resfcn256(input_size=SIZE, width=WIDTH), 3)


@pytest.fixture(scope="module")
def folded(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("folded")
    return ex.export_model(tiny_model, out, batch_size=2, onnx=True, opset=13), out


@pytest.fixture(scope="module")
def unfolded(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("unfolded")
    return ex.export_model(tiny_model, out, batch_size=1, fold_bn=False, onnx=True), out


def _graph_def(path):
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(Path(path).read_bytes())
    return graph_def


def _random_inputs(batch, seed):
    return np.random.default_rng(seed).random((batch, SIZE, SIZE, 3)).astype(np.float32)


def test_folded_pb_has_no_batch_norm_and_matches_keras(tiny_model, folded):
    result, out = folded
    graph_def = _graph_def(out / "prnet.pb")
    ops = ex.graph_op_types(graph_def)
    assert not ex.BATCH_NORM_OP_TYPES & set(ops), ops
    assert "Sub" not in ops and ops["Conv2DBackpropInput"] == 17 and ops["Conv2D"] == 36
    assert ops["Mul"] == 5  # the five identity shortcuts (blocks 2, 4, 6, 8, 10) take the post-add scale
    assert not {"VarHandleOp", "ReadVariableOp", "VariableV2", "Assign", "PlaceholderWithDefault"} & set(ops)
    assert tf_graph._foldable_nodes(graph_def) == []  # every constant subgraph folded
    placeholders = [n for n in graph_def.node if n.op == "Placeholder"]
    assert [n.name for n in placeholders] == ["input"]
    assert [d.size for d in placeholders[0].attr["shape"].shape.dim] == [2, SIZE, SIZE, 3]
    assert placeholders[0].attr["dtype"].type == tf.float32.as_datatype_enum
    assert any(n.name == "output" for n in graph_def.node)
    assert result.max_abs_diff["pb"] < 1e-4
    # independent inputs, through the loader inference uses
    x = _random_inputs(2, 7)
    expected = tiny_model(x, training=False).numpy()
    assert np.abs(load_predictor(out / "prnet.pb").predict(x) - expected).max() < 1e-4
    assert np.abs(load_predictor(out / "prnet.onnx").predict(x) - expected).max() < 1e-4
    summary = json.loads((out / "export.json").read_text())
    assert summary["op_types"] == ops and summary["fold_bn"] is True
    assert not (out / "fusion_switch.cfg").exists()


def test_unfolded_pb_keeps_one_fused_batch_norm_per_layer_and_matches(tiny_model, unfolded):
    result, out = unfolded
    graph_def = _graph_def(out / "prnet.pb")
    ops = ex.graph_op_types(graph_def)
    # attributes TensorFlow 1.15 (ATC's parser IR) does not know are stripped at their default values
    assert not any({"exponential_avg_factor", "explicit_paddings"} & set(n.attr) for n in graph_def.node)
    assert all(n.attr["data_format"].s == b"NHWC" for n in graph_def.node if n.op == "FusedBatchNormV3")
    n_bn = sum(isinstance(layer, keras.layers.BatchNormalization) for layer in tiny_model.layers)
    assert ops["FusedBatchNormV3"] == n_bn == 48 and "Rsqrt" not in ops and "BiasAdd" not in ops
    x = _random_inputs(1, 8)
    expected = tiny_model(x, training=False).numpy()
    for name in ("prnet.pb", "prnet.onnx"):
        assert np.abs(load_predictor(out / name).predict(x) - expected).max() < 1e-4
    assert result.onnx_op_types["BatchNormalization"] == 48
    config = json.loads((out / "fusion_switch.cfg").read_text())
    assert config["Switch"]["GraphFusion"] == {"ConvBatchnormFusionPass": "off"}
    assert result.atc_commands["pb"].endswith("--fusion_switch_file=fusion_switch.cfg")


def test_onnx_graph_layout_and_opset(folded):
    result, out = folded
    model = onnx.load(str(out / "prnet.onnx"))
    assert [o.version for o in model.opset_import] == [13]
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["output"]
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, SIZE, SIZE, 3]
    # the 12 stride-1 transposed convs become Conv (flipped kernels), the 5 stride-2 ones stay ConvTranspose
    assert result.onnx_op_types == {"Add": 10, "Conv": 48, "ConvTranspose": 5, "MaxPool": 5, "Mul": 5,
                                    "Relu": 47, "Sigmoid": 1, "Transpose": 2}
    assert result.max_abs_diff["onnx"] < 1e-4


def test_fold_matches_the_batch_norm_formula():
    inputs = keras.Input((8, 8, 2), name="input")
    x = keras.layers.Conv2D(3, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(epsilon=1e-3, name="bn")(x)
    skip = keras.layers.Conv2D(3, 1, use_bias=False, name="proj")(inputs)
    x = keras.layers.Add(name="add")([x, skip])
    x = keras.layers.BatchNormalization(name="bn_add")(x)
    model = _randomise_batch_norms(keras.Model(inputs, x), 1)
    nodes, i, o = ex.model_to_nodes(model)
    folded, out = ex.fold_batch_norms(nodes, o)
    kinds = {n.name: n.kind for n in folded}
    assert kinds == {"input": "input", "conv": "conv", "proj": "conv", "add": "add"} and out == "add"
    gamma, beta, mean, var = (w.astype(np.float64) for w in model.get_layer("bn").get_weights())
    g2, b2, m2, v2 = (w.astype(np.float64) for w in model.get_layer("bn_add").get_weights())
    s1, s2 = gamma / np.sqrt(var + 1e-3), g2 / np.sqrt(v2 + 1e-3)
    conv = {n.name: n for n in folded}["conv"].params
    kernel = model.get_layer("conv").kernel.numpy()
    np.testing.assert_allclose(conv["kernel"], kernel * s1 * s2, rtol=1e-6)
    np.testing.assert_allclose(conv["bias"], (beta - mean * s1) * s2 + b2 - m2 * s2, rtol=1e-5, atol=1e-6)
    proj = {n.name: n for n in folded}["proj"].params
    np.testing.assert_allclose(proj["kernel"], model.get_layer("proj").kernel.numpy() * s2, rtol=1e-6)
    np.testing.assert_allclose(proj["bias"], 0.0, atol=0)


def test_a_conv_read_past_its_batch_norm_keeps_its_kernel_and_the_export_matches_keras(tmp_path):
    """A convolution whose output also feeds another layer cannot absorb its batch norm: that layer would read
    the normalised values. The batch norm becomes an affine node, the kernel stays Keras' own, and the frozen
    graph and ONNX model agree with Keras to float32 rounding (a fold here differs by about 2)."""
    inputs = keras.Input((8, 8, 3), name="input")
    conv = keras.layers.Conv2D(3, 3, padding="same", name="conv")(inputs)  # a map: 3 channels
    normalised = keras.layers.BatchNormalization(name="bn")(conv)
    model = _randomise_batch_norms(keras.Model(inputs, keras.layers.Add(name="add")([normalised, conv])), 4)
    nodes, i, o = ex.model_to_nodes(model)
    folded, out = ex.fold_batch_norms(nodes, o)
    by_name = {n.name: n for n in folded}
    assert {n.name: n.kind for n in folded} == {"input": "input", "conv": "conv", "bn": "affine", "add": "add"}
    assert out == "add" and by_name["add"].inputs == ["bn", "conv"]
    np.testing.assert_array_equal(by_name["conv"].params["kernel"], model.get_layer("conv").kernel.numpy())
    images = np.random.default_rng(0).random((1, 8, 8, 3)).astype(np.float32)
    result = ex.export_model(model, tmp_path, onnx=True, check_images=images, run_atc=False)
    assert result.max_abs_diff["pb"] < 1e-5 and result.max_abs_diff["onnx"] < 1e-5


def test_odd_sizes_valid_padding_and_strides_match_keras(tmp_path):
    """SAME padding with the extra pixel at the end, VALID convs and transposed convs, tanh, a lone BN."""
    inputs = keras.Input((33, 33, 3), name="input")
    x = keras.layers.Conv2D(4, 4, strides=2, padding="same", name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Activation("tanh", name="t")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool")(x)
    x = keras.layers.Conv2D(5, 3, padding="valid", dilation_rate=2, activation="relu", name="c2")(x)
    x = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="valid", name="d1")(x)
    x = keras.layers.Conv2DTranspose(4, 3, strides=1, padding="valid", name="d1b")(x)  # 11 -> 13
    x = keras.layers.Conv2D(4, 3, padding="valid", name="c3")(x)  # 13 -> 11
    x = keras.layers.Conv2DTranspose(3, 4, strides=3, padding="same", use_bias=False, name="d2")(x)
    x = keras.layers.BatchNormalization(name="bn_out")(keras.layers.ReLU(name="r")(x))
    model = _randomise_batch_norms(keras.Model(inputs, keras.layers.Activation("sigmoid", name="output")(x)), 2)
    images = np.random.default_rng(0).random((1, 33, 33, 3)).astype(np.float32)
    result = ex.export_model(model, tmp_path, onnx=True, check_images=images, run_atc=False)
    assert result.max_abs_diff["pb"] < 1e-5 and result.max_abs_diff["onnx"] < 1e-5
    assert not ex.BATCH_NORM_OP_TYPES & set(result.op_types)  # bn_out follows a ReLU: a Mul + BiasAdd


class _NumpyClip(keras.layers.Layer):
    """A layer that runs Python code: its PyFunc op cannot be converted by ATC."""

    def call(self, x):
        y = tf.numpy_function(lambda a: np.clip(a, 0, 1), [x], tf.float32)
        return tf.reshape(y, [-1, *x.shape[1:]])


def test_unsupported_op_fails_naming_it(tmp_path):
    inputs = keras.Input((32, 32, 3), name="input")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = _NumpyClip(name="clip")(x)
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1, activation=None, name="head")(x))
    with pytest.raises(ex.UnsupportedOpError, match=r"PyFunc \(nodes clip"):
        ex.export_model(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written
    graph_def = ex.build_graph_def(*ex.model_to_nodes(model), batch_size=1)
    with pytest.raises(ex.UnsupportedOpError, match="Conv2D"):
        ex.check_atc_ops(graph_def, supported={"Placeholder", "Const", "Identity", "PyFunc", "Reshape",
                                               "BiasAdd"})


def test_atc_command_is_exact():
    argv = ex.atc_command("prnet.pb", "prnet", 3)
    assert argv == ["atc", "--model=prnet.pb", "--framework=3", "--output=prnet", "--soc_version=Ascend310",
                    "--input_shape=input:1,256,256,3", "--input_format=NHWC", "--output_type=FP32",
                    "--precision_mode=force_fp16", "--log=error"]
    assert ex.shell_line(argv) == ('atc --model=prnet.pb --framework=3 --output=prnet --soc_version=Ascend310 '
                                   '--input_shape="input:1,256,256,3" --input_format=NHWC --output_type=FP32 '
                                   '--precision_mode=force_fp16 --log=error')
    onnx_argv = ex.atc_command("m.onnx", "m", 5, batch_size=4, soc_version="Ascend310P3",
                               precision_mode="allow_fp32_to_fp16", fusion_switch_file="fusion_switch.cfg")
    assert "--input_format=ND" in onnx_argv and "--input_shape=input:4,256,256,3" in onnx_argv
    assert onnx_argv[-1] == "--fusion_switch_file=fusion_switch.cfg" and "--soc_version=Ascend310P3" in onnx_argv
    with pytest.raises(ValueError, match="precision_mode"):
        ex.atc_command("m.pb", "m", 3, precision_mode="fp8")
    with pytest.raises(ValueError, match="framework"):
        ex.atc_command("m.pb", "m", 1)


def test_float16_onnx_is_close_but_not_equal(folded):
    _, out = folded
    model16 = ex.onnx_to_float16(onnx.load(str(out / "prnet.onnx")))
    assert all(t.data_type == onnx.TensorProto.FLOAT16 for t in model16.graph.initializer)
    assert model16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    path = out / "fp16.onnx"
    path.write_bytes(model16.SerializeToString())
    x = ex.reference_images(SIZE, 2)
    full = load_predictor(out / "prnet.onnx").predict(x)
    half = load_predictor(path).predict(x)
    assert half.dtype == np.float32
    assert 0 < np.abs(half - full).max() < 2e-2


def _fake_atc(tmp_path, monkeypatch, body):
    """Put an ``atc`` shell script running ``body`` first on PATH, as a stand-in for the CANN tool."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    atc = fake_bin / "atc"
    atc.write_text(f"#!/bin/sh\n{body}\n")
    atc.chmod(atc.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # inside keras Model.save
def test_cli_writes_the_files_and_runs_atc_when_installed(tiny_model, tmp_path, monkeypatch, capsys):
    model_path = tmp_path / "tiny.keras"
    tiny_model.save(model_path)
    _fake_atc(tmp_path, monkeypatch, f"printf '%s\\n' \"$@\" > {tmp_path / 'atc_args.txt'}")  # records its arguments
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    status = face3d_main(["export", "--model", str(model_path), "--output", str(out), "--soc-version", "Ascend310P3",
                              "--precision-mode", "allow_mix_precision"])
    assert status == 0
    assert (out / "prnet.pb").is_file() and not (out / "prnet.onnx").exists()
    recorded = (tmp_path / "atc_args.txt").read_text().split()
    assert recorded == ex.atc_command("prnet.pb", "prnet_pb", 3, 1, SIZE, "Ascend310P3", "allow_mix_precision")[1:]
    script = (out / "atc_pb.sh").read_text()
    assert '--input_shape="input:1,64,64,3"' in script and "--soc_version=Ascend310P3" in script
    assert json.loads((out / "export.json").read_text())["atc_status"] == {"pb": 0}
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"wrote {out / 'prnet.pb'}"
    assert re.fullmatch(r"max \|pb - keras\| = \S+ \(on 1 check images\)", lines[2])
    assert lines[3] == "each file against the Keras model, on 1 check images:" and lines[4].startswith("prnet.pb: ")
    assert face3d_main(["export", "--model", str(tmp_path / "missing.keras"), "--output", str(out)]) == 2


def _small_model(seed):
    keras.utils.set_random_seed(seed)
    return _randomise_batch_norms(build_resfcn256(input_size=32, width=2), seed)


def _width_one_model(seed):
    keras.utils.set_random_seed(seed)
    return build_resfcn256(input_size=32, width=1)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # inside keras Model.save
def test_a_failed_atc_run_leaves_a_complete_export_that_records_it(tmp_path, monkeypatch, capsys):
    """atc runs once every file is written (both commands, though the first fails): export.json has the statuses,
    the CLI exits 1 with one line naming the logs."""
    out = tmp_path / "out"
    ex.export_model(_width_one_model(1), out, run_atc=False)  # an earlier export, replaced
    _width_one_model(2).save(tmp_path / "new.keras")
    _fake_atc(tmp_path, monkeypatch, 'echo "E10001 invalid soc_version $*"; exit 3')
    status = face3d_main(["export", "--model", str(tmp_path / "new.keras"), "--output", str(out), "--onnx",
                          "--soc-version", "Ascend999"])
    assert status == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"export failed: atc failed with status 3 (log {out / 'atc_pb.log'}); status 3 (log {out / 'atc_onnx.log'})")
    assert sorted(os.listdir(out)) == [".export.lock", "atc_onnx.log", "atc_onnx.sh", "atc_pb.log", "atc_pb.sh",
                                       "export.json", "prnet.onnx", "prnet.pb"]
    summary = json.loads((out / "export.json").read_text())
    assert summary["atc_status"] == {"pb": 3, "onnx": 3} and list(summary["atc_commands"]) == ["pb", "onnx"]
    assert summary["files"]["prnet.onnx"]["size_mb"] == (out / "prnet.onnx").stat().st_size / 1e6
    assert "--soc_version=Ascend999" in (out / "atc_onnx.sh").read_text()
    assert (out / "atc_onnx.log").read_text().startswith("E10001 invalid soc_version --model=prnet.onnx")


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # inside keras Model.save
def test_no_atc_does_not_run_an_installed_atc_and_says_so(tmp_path, monkeypatch, capsys):
    _width_one_model(1).save(tmp_path / "model.keras")
    _fake_atc(tmp_path, monkeypatch, f"touch {tmp_path / 'atc_ran'}")
    out = tmp_path / "out"
    assert face3d_main(["export", "--model", str(tmp_path / "model.keras"), "--output", str(out), "--no-atc",
                        "--onnx"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"wrote {out / 'prnet.pb'}, {out / 'prnet.onnx'}" and lines[-1] == "  -> atc not run (--no-atc)"
    assert not (tmp_path / "atc_ran").exists() and json.loads((out / "export.json").read_text())["atc_status"] == {
        "pb": None, "onnx": None}


def test_a_new_export_into_the_folder_removes_the_earlier_files_it_does_not_write(tmp_path):
    out = tmp_path / "out"
    ex.export_model(_small_model(1), out, fold_bn=False, onnx=True, tflite=True, run_atc=False)
    assert {"prnet.onnx", "prnet.tflite", "prnet_fp16.tflite", "fusion_switch.cfg", "atc_onnx.sh"} <= set(
        os.listdir(out))
    for name in ("prnet_pb.om", "prnet_onnx.om", "atc_pb.log", "atc_onnx.log"):  # what atc left on an earlier run
        (out / name).write_text("earlier\n")
    (out / "notes.txt").write_text("mine\n")
    model = _small_model(2)
    result = ex.export_model(model, out, run_atc=False)
    assert sorted(os.listdir(out)) == [".export.lock", "atc_pb.sh", "export.json", "notes.txt", "prnet.pb"]
    summary = json.loads((out / "export.json").read_text())
    assert list(summary["files"]) == ["prnet.pb"] and list(summary["atc_commands"]) == ["pb"]
    assert summary["fold_bn"] is True and summary["opset"] is None and result.onnx_path is None
    x = _random_inputs(1, 9)[:, :32, :32]
    assert np.abs(load_predictor(out / "prnet.pb").predict(x) - model(x, training=False).numpy()).max() < 1e-4


def test_an_export_into_a_folder_another_export_writes_is_refused_leaving_it_as_it_was(tmp_path, capsys):
    """Two exports into one folder would clear each other's staging folder and mix their files: the second is
    refused at once (the first's lock held here through an open file description of its own)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "prnet.pb").write_bytes(b"the first export's")
    _small_model(1).save(tmp_path / "model.keras")
    with held_lock(out / ".export.lock"):
        assert face3d_main(["export", "--model", str(tmp_path / "model.keras"), "--output", str(out), "--no-atc"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"face3d export: error: {out}: another face3d export run is writing it; wait for it to end or use another "
        f"--output"]
    assert sorted(os.listdir(out)) == [".export.lock", "prnet.pb"]
    assert (out / "prnet.pb").read_bytes() == b"the first export's"


def test_a_failed_check_keeps_the_earlier_export(tmp_path, capsys):
    out = tmp_path / "out"
    ex.export_model(_small_model(1), out, onnx=True, run_atc=False)
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}
    _small_model(2).save(tmp_path / "other.keras")
    status = face3d_main(["export", "--model", str(tmp_path / "other.keras"), "--output", str(out), "--no-atc",
                          "--tflite", "--tolerance", "0"])
    assert status == 1 and "differs from the Keras model" in capsys.readouterr().err
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before  # no staged file left either
    with pytest.raises(RuntimeError, match="differs from the Keras model"):
        ex.export_model(_small_model(2), tmp_path / "fresh", onnx=True, tolerance=0.0, run_atc=False)
    assert os.listdir(tmp_path / "fresh") == [".export.lock"]  # the run's lock file alone


def test_a_file_its_runtime_cannot_run_keeps_the_earlier_export(tmp_path, monkeypatch):
    """export.json's drift table reloads every written file (the int8 ones too, which TFLite's kernels may refuse or
    even abort on) before an earlier export's files are replaced."""
    out = tmp_path / "out"
    ex.export_model(_small_model(1), out, onnx=True, run_atc=False)
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}

    def refuse(model, paths, *args):
        raise RuntimeError(f"cannot run {Path(paths[-1]).name}")
    monkeypatch.setattr(ex, "compare_files", refuse)
    with pytest.raises(RuntimeError, match="cannot run prnet.onnx"):
        ex.export_model(_small_model(2), out, onnx=True, run_atc=False)
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before  # no staged file left either
