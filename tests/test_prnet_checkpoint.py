"""PRNet's official TF1 checkpoint: names mapped onto our resfcn256, converted weights equal to a TF1 forward.

The TF1 reference is PRNet's ``resfcn256`` (``predictor.py`` of github.com/YadiraF/PRNet) rewritten with
``tf.compat.v1`` ops: ``tf.contrib.layers.conv2d`` / ``conv2d_transpose`` with ``biases_initializer=None``, batch
norm (scale, epsilon 1e-3) and ReLU, inference mode; its checkpoint is written with Adam's slots as the released
one has them. One width-16 forward at 256 on the CPU (about 20 s for this file on 2 cores).
"""
from pathlib import Path

import numpy as np
import pytest

from tests._fixtures import fixtures_dir

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from face3d.prnet import prnet_checkpoint as pc  # noqa: E402
from face3d.prnet.model import build_resfcn256  # noqa: E402
from face3d.prnet.predictor import load_predictor  # noqa: E402
from face3d.resources import default_uv_data_dir  # noqa: E402

FIXTURE_PREFIX = fixtures_dir() / "prnet" / "net-data" / "256_256_resfcn256_weight"
SIZE, WIDTH = 256, 16
v1 = tf.compat.v1


def _tf1_batch_norm(x):
    """tf.contrib.layers.batch_norm(scale=True, is_training=False): variables under ``BatchNorm``."""
    c = int(x.shape[-1])
    with v1.variable_scope("BatchNorm"):
        beta = v1.get_variable("beta", [c], initializer=v1.zeros_initializer())
        gamma = v1.get_variable("gamma", [c], initializer=v1.ones_initializer())
        mean = v1.get_variable("moving_mean", [c], initializer=v1.zeros_initializer(), trainable=False)
        var = v1.get_variable("moving_variance", [c], initializer=v1.ones_initializer(), trainable=False)
    return tf.nn.batch_normalization(x, mean, var, beta, gamma, variance_epsilon=1e-3)


def _tf1_conv(x, channels, kernel, stride, scope, normalize=True, activation=tf.nn.relu, transpose=False):
    """tcl.conv2d / tcl.conv2d_transpose with PRNet's arg_scope (no bias, SAME padding)."""
    n, h, w, c = (int(d) for d in x.shape)
    with v1.variable_scope(scope):
        if transpose:
            weights = v1.get_variable("weights", [kernel, kernel, channels, c])
            y = tf.nn.conv2d_transpose(x, weights, [n, h * stride, w * stride, channels], [1, stride, stride, 1],
                                       padding="SAME")
        else:
            weights = v1.get_variable("weights", [kernel, kernel, c, channels])
            y = tf.nn.conv2d(x, weights, [1, stride, stride, 1], padding="SAME")
        if normalize:
            y = _tf1_batch_norm(y)
        return y if activation is None else activation(y)


def _tf1_res_block(x, channels, stride, scope):
    """PRNet's resBlock: the projection shortcut first, then 1x1 -> 4x4 -> 1x1, add, batch norm, ReLU."""
    with v1.variable_scope(scope):
        shortcut = x
        if stride != 1 or int(x.shape[-1]) != channels:
            shortcut = _tf1_conv(x, channels, 1, stride, "shortcut", normalize=False, activation=None)
        y = _tf1_conv(x, channels // 2, 1, 1, "Conv")
        y = _tf1_conv(y, channels // 2, 4, stride, "Conv_1")
        y = _tf1_conv(y, channels, 1, 1, "Conv_2", normalize=False, activation=None)
        return tf.nn.relu(_tf1_batch_norm(y + shortcut))


def _tf1_resfcn256(x, size=16):
    """PRNet's resfcn256 forward (is_training=False)."""
    with v1.variable_scope("resfcn256"):
        se = _tf1_conv(x, size, 4, 1, "Conv")
        for k, (factor, stride) in enumerate(zip((2, 2, 4, 4, 8, 8, 16, 16, 32, 32), (2, 1) * 5)):
            se = _tf1_res_block(se, size * factor, stride, "resBlock" if k == 0 else f"resBlock_{k}")
        pd = se
        decoder = ((32, 1), (16, 2), (16, 1), (16, 1), (8, 2), (8, 1), (8, 1), (4, 2), (4, 1), (4, 1), (2, 2),
                   (2, 1), (1, 2), (1, 1))
        for k, (factor, stride) in enumerate(decoder):
            pd = _tf1_conv(pd, size * factor, 4, stride, "Conv2d_transpose" if k == 0 else f"Conv2d_transpose_{k}",
                           transpose=True)
        pd = _tf1_conv(pd, 3, 4, 1, "Conv2d_transpose_14", transpose=True)
        pd = _tf1_conv(pd, 3, 4, 1, "Conv2d_transpose_15", transpose=True)
        return _tf1_conv(pd, 3, 4, 1, "Conv2d_transpose_16", transpose=True, activation=tf.nn.sigmoid)


def _random_value(variable, rng):
    """He-scaled kernels, batch norms near the identity with random statistics, random optimizer entries."""
    name, shape = variable.op.name, variable.shape.as_list()
    leaf = name.rsplit("/", 1)[-1]
    if leaf == "weights":
        fan_in = shape[0] * shape[1] * (shape[3] if "Conv2d_transpose" in name else shape[2])
        return rng.normal(0, np.sqrt(1.0 / fan_in), shape)
    if leaf in ("gamma", "moving_variance"):
        return rng.uniform(0.7, 1.3, shape)
    if leaf in ("beta", "moving_mean"):
        return rng.normal(0, 0.1, shape)
    return rng.uniform(0, 1e-3, shape)  # Adam moments and beta powers


@pytest.fixture(scope="module")
def tf1_checkpoint(tmp_path_factory):
    """PRNet's graph with random weights and Adam slots, saved as a TF1 checkpoint; returns (prefix, images, maps)
    with maps the TF1 forward of images."""
    folder = tmp_path_factory.mktemp("net-data")
    prefix = folder / "256_256_resfcn256_weight"
    rng = np.random.default_rng(0)
    images = rng.random((1, SIZE, SIZE, 3)).astype(np.float32)
    with tf.Graph().as_default():
        x = v1.placeholder(tf.float32, [1, SIZE, SIZE, 3])
        pos = _tf1_resfcn256(x, WIDTH)
        v1.train.AdamOptimizer(1e-4).minimize(tf.reduce_mean(pos))  # creates the slots and beta powers
        variables = v1.global_variables()
        values = [v1.placeholder(tf.float32, v.shape) for v in variables]
        assign = [v1.assign(v, value) for v, value in zip(variables, values)]
        with v1.Session() as session:
            session.run(assign, {value: _random_value(v, rng).astype(np.float32)
                                 for v, value in zip(variables, values)})
            maps = session.run(pos, {x: images})
            v1.train.Saver().save(session, str(prefix), write_meta_graph=False)
    return prefix, images, maps


def test_written_checkpoint_has_the_fixture_index_names_and_shapes(tf1_checkpoint):
    if not Path(f"{FIXTURE_PREFIX}.index").is_file():
        pytest.skip("PRNet's checkpoint index not in the fixtures")
    prefix, _, _ = tf1_checkpoint
    assert tf.train.list_variables(str(prefix)) == tf.train.list_variables(str(FIXTURE_PREFIX))


def test_fixture_index_maps_every_network_tensor():
    if not Path(f"{FIXTURE_PREFIX}.index").is_file():
        pytest.skip("PRNet's checkpoint index not in the fixtures")
    shapes = dict(tf.train.list_variables(str(FIXTURE_PREFIX)))
    assert len(shapes) == 545
    network = pc.network_tensors(shapes)
    assert len(network) == 245 and sum(int(np.prod(s)) for s in network.values()) == 13_365_508
    names = pc.match_checkpoint(shapes, build_resfcn256(input_size=32, width=16))
    assert sorted(names) == sorted(network)
    assert names["resfcn256/resBlock_3/Conv_1/BatchNorm/moving_mean"] == ("block4_bn2", "moving_mean")
    assert names["resfcn256/resBlock_4/shortcut/weights"] == ("block5_shortcut", "kernel")
    assert names["resfcn256/Conv2d_transpose_12/BatchNorm/gamma"] == ("deconv13_bn", "gamma")
    assert len(set(names.values())) == 245  # one Keras weight each


def test_converted_model_equals_the_tf1_forward(tf1_checkpoint, tmp_path):
    prefix, images, maps = tf1_checkpoint
    assert 0.02 < maps.std() and 0.001 < maps.min() and maps.max() < 0.999  # not saturated: a real comparison
    output, model = pc.convert_checkpoint(f"{prefix}.index", tmp_path / "prnet.keras")
    assert model.count_params() == 13_365_508
    np.testing.assert_allclose(load_predictor(output).predict(images), maps, rtol=0, atol=1e-5)
    # the prefix, its .index and the folder are one checkpoint; load_predictor reads each
    assert pc.find_checkpoint(prefix) == pc.find_checkpoint(f"{prefix}.index") == \
        pc.find_checkpoint(prefix.parent) == pc.find_checkpoint(f"{prefix}.data-00000-of-00001") == str(prefix)
    np.testing.assert_allclose(load_predictor(prefix.parent).predict(images), maps, rtol=0, atol=1e-5)


def test_mismatched_tensors_are_named():
    model = build_resfcn256(input_size=32, width=2)
    shapes = {name: tuple(getattr(model.get_layer(layer), attribute).shape)
              for name, (layer, attribute) in pc.checkpoint_names(layer.name for layer in model.layers).items()}
    shapes.update({"beta1_power": (), "resfcn256/Conv/weights/Adam": shapes["resfcn256/Conv/weights"]})
    assert len(pc.match_checkpoint(shapes, model)) == len(shapes) - 2  # optimizer entries ignored
    missing = {k: v for k, v in shapes.items() if k != "resfcn256/resBlock_9/Conv_2/weights"}
    with pytest.raises(ValueError, match=r"missing: resfcn256/resBlock_9/Conv_2/weights$"):
        pc.match_checkpoint(missing, model)
    with pytest.raises(ValueError, match=r"not in the model: resfcn256/Conv/biases$"):
        pc.match_checkpoint(dict(shapes, **{"resfcn256/Conv/biases": (2,)}), model)
    with pytest.raises(ValueError, match=r"shape differs: resfcn256/Conv2d_transpose/weights \[4, 4, 64, 32\] "
                                         r"\(model deconv1.kernel \[4, 4, 64, 64\]\)"):
        pc.match_checkpoint(dict(shapes, **{"resfcn256/Conv2d_transpose/weights": (4, 4, 64, 32)}), model)


def test_index_without_data_file_and_non_checkpoints(tmp_path):
    (tmp_path / "model.index").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="model.data-00000-of-00001"):
        pc.load_prnet_checkpoint(tmp_path / "model.index")
    assert pc.find_checkpoint(tmp_path / "other") is None
    (tmp_path / "second.index").write_bytes(b"")
    with pytest.raises(ValueError, match="several checkpoints"):
        pc.find_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="no TF1 checkpoint"):
        pc.checkpoint_prefix(tmp_path / "other")


def _width2_checkpoint(folder, leave_out=()):
    """A width-2 resfcn256 checkpoint written by TF's own SaveV2: every network tensor but those named in
    ``leave_out``, the k-th name (sorted) filled with k / 1000. Returns (prefix, list of (name, (layer, attribute))
    sorted by name)."""
    model = build_resfcn256(input_size=32, width=2)
    names = sorted((name, weight) for name, weight in pc.checkpoint_names(layer.name for layer in model.layers).items()
                   if name not in leave_out)
    prefix = folder / "256_256_resfcn256_weight"
    tensors = [np.full(getattr(model.get_layer(layer), attribute).shape, k / 1000, np.float32)
               for k, (_, (layer, attribute)) in enumerate(names)]
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=[name for name, _ in names],
                      shape_and_slices=[""] * len(names), tensors=tensors)
    return prefix, names


def test_truncated_or_corrupt_checkpoint_files_are_named(tmp_path, capsys):
    from face3d.cli import main as face3d_main
    from face3d.utils.errors import InputFileError

    prefix, names = _width2_checkpoint(tmp_path)
    model = pc.load_prnet_checkpoint(prefix, input_size=32)  # the intact files load
    for k, (_, (layer, attribute)) in enumerate(names):
        assert np.all(getattr(model.get_layer(layer), attribute).numpy() == np.float32(k / 1000)), layer
    data = Path(f"{prefix}.data-00000-of-00001")
    intact = data.read_bytes()
    data.write_bytes(intact[:-4] + bytes(4))  # the last tensor's bytes changed: its checksum fails
    with pytest.raises(InputFileError, match="unreadable checkpoint data") as caught:
        pc.load_prnet_checkpoint(prefix, input_size=32)
    assert caught.value.path == data
    data.write_bytes(intact[:len(intact) // 2])  # truncated
    with pytest.raises(InputFileError, match="unreadable checkpoint data") as caught:
        pc.load_prnet_checkpoint(prefix, input_size=32)
    assert caught.value.path == data
    assert face3d_main(["import-prnet", "--checkpoint", str(prefix), "--output", str(tmp_path / "x.keras")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and str(data) in err[0] and "truncated or corrupt" in err[0], err
    assert not (tmp_path / "x.keras").exists()
    index = Path(f"{prefix}.index")
    index.write_bytes(index.read_bytes()[:20])
    with pytest.raises(InputFileError, match="unreadable checkpoint index") as caught:
        pc.load_prnet_checkpoint(prefix, input_size=32)
    assert caught.value.path == index


def test_tensors_that_do_not_fit_name_the_checkpoint_index(tmp_path, capsys):
    from face3d.cli import main as face3d_main
    from face3d.utils.errors import InputFileError

    prefix, _ = _width2_checkpoint(tmp_path, leave_out=("resfcn256/resBlock_9/Conv_2/weights",))
    index = Path(f"{prefix}.index")
    message = f"{index}: checkpoint does not fit resfcn256 - missing: resfcn256/resBlock_9/Conv_2/weights"
    with pytest.raises(InputFileError) as caught:
        pc.load_prnet_checkpoint(prefix, input_size=32)
    assert caught.value.path == index and str(caught.value) == message
    assert face3d_main(["import-prnet", "--checkpoint", str(prefix), "--output", str(tmp_path / "x.keras")]) == 2
    assert capsys.readouterr().err.splitlines() == [f"import-prnet failed: {message}"]
    assert not (tmp_path / "x.keras").exists()


def test_converted_model_is_read_with_prnets_uv_data_only(tmp_path, capsys):
    from face3d.cli import main as face3d_main
    from face3d.prnet.inference import PRN
    from face3d.prnet.predictor import save_keras_model

    prefix, _ = _width2_checkpoint(tmp_path)
    converted = tmp_path / "prnet.keras"
    assert face3d_main(["import-prnet", "--checkpoint", str(prefix), "--output", str(converted),
                        "--input-size", "32"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("use it with --uv-data <PRNet's Data/uv-data>")
    with pytest.raises(ValueError, match=r"prnet.keras: converted from PRNet's checkpoint, it gives maps in PRNet's "
                                         r"UV layout: give PRNet's uv-data \(--uv-data DIR\)$"):
        PRN(converted)
    images = np.random.default_rng(3).random((1, 32, 32, 3)).astype(np.float32)
    expected = pc.load_prnet_checkpoint(prefix, input_size=32)(images, training=False).numpy()
    prn = PRN(converted, uv_data=default_uv_data_dir())
    np.testing.assert_allclose(prn.predictor.predict(images), expected, rtol=0, atol=1e-6)
    trained = save_keras_model(build_resfcn256(input_size=32, width=2), tmp_path / "best.keras")  # as train saves
    assert pc.uv_data_for_model(trained) == default_uv_data_dir()


def test_offline_run_refuses_crops_made_with_other_uv_data(tmp_path, capsys):
    """``offline run`` with PRNet's checkpoint (PRNet's folders: Data/net-data, Data/uv-data) or its converted
    ``.keras`` file on crops whose manifest names the packaged uv-data: refused before any result folder; on crops
    made with PRNet's uv-data (here the packaged files with other keypoints), run."""
    import shutil

    import cv2

    from face3d.cli import main as face3d_main
    from face3d.prnet.offline import pre_process
    from face3d.trainset.uv_layout import read_uv_kpt_ind

    net_data, prnet_uv = tmp_path / "Data" / "net-data", tmp_path / "Data" / "uv-data"
    net_data.mkdir(parents=True)
    prefix, _ = _width2_checkpoint(net_data)
    shutil.copytree(default_uv_data_dir(), prnet_uv)
    keypoints = read_uv_kpt_ind(prnet_uv / "uv_kpt_ind.txt")
    np.savetxt(prnet_uv / "uv_kpt_ind.txt", keypoints + [[1], [0]], fmt="%d")  # another layout's keypoints
    converted = tmp_path / "prnet.keras"
    assert face3d_main(["import-prnet", "--checkpoint", str(prefix), "--output", str(converted)]) == 0
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "face.png"), np.full((300, 300, 3), 128, np.uint8))
    (tmp_path / "boxes.txt").write_text("face.png 100 100 200 200\n")
    work, out = tmp_path / "work", tmp_path / "out"
    pre_process(tmp_path / "images", work, boxes=tmp_path / "boxes.txt")
    capsys.readouterr()
    packaged = default_uv_data_dir().resolve()
    lead = {net_data: f"{net_data}: PRNet's checkpoint gives maps in PRNet's UV layout",
            converted: f"{converted}: converted from PRNet's checkpoint, it gives maps in PRNet's UV layout"}
    wanted = {net_data: prnet_uv, converted: "DIR"}
    for model in (net_data, converted):
        assert face3d_main(["offline", "run", "--model", str(model), "--input", str(work / "bin"), "--output",
                            str(out)]) == 2
        assert capsys.readouterr().err.splitlines() == [
            f"run failed: {lead[model]}, but {work / 'manifest.json'} names the uv-data {packaged}, whose keypoints "
            f"are not PRNet's: rerun offline pre_process with PRNet's uv-data (--uv-data {wanted[model]})"]
        assert not out.exists()
    pre_process(tmp_path / "images", work, boxes=tmp_path / "boxes.txt", uv_data=prnet_uv)
    for model in (net_data, converted):
        assert face3d_main(["offline", "run", "--model", str(model), "--input", str(work / "bin"), "--output",
                            str(out)]) == 0
    assert len(list(out.iterdir())) == 2
    elsewhere = tmp_path / "elsewhere"  # crops whose uv-data was moved since: named, not a bare missing file
    shutil.copytree(prnet_uv, elsewhere)
    pre_process(tmp_path / "images", work, boxes=tmp_path / "boxes.txt", uv_data=elsewhere)
    shutil.rmtree(elsewhere)
    capsys.readouterr()
    assert face3d_main(["offline", "run", "--model", str(converted), "--input", str(work / "bin"), "--output",
                        str(out)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"run failed: {work / 'manifest.json'} names the uv-data {elsewhere.resolve()}, which has no uv_kpt_ind.txt "
        "(moved, or made on another machine): rerun offline pre_process"]


def test_ascend_flow_and_import_command_on_the_checkpoint(tf1_checkpoint, tmp_path, monkeypatch):
    """``python export.py --model PREFIX --output DIR --onnx`` (PRNet's checkpoint -> pb -> atc flow) and
    ``face3d import-prnet``."""
    import export as export_script
    from face3d.cli import main as face3d_main

    prefix, images, maps = tf1_checkpoint
    monkeypatch.setenv("PATH", "/nonexistent")  # no atc here: the script is written, not run
    # no Data/uv-data lies beside this checkpoint (random weights): the export needs one for its keypoint check
    assert export_script.main(["--model", str(prefix), "--output", str(tmp_path / "refused"), "--onnx"]) == 2
    assert not (tmp_path / "refused").exists()
    assert export_script.main(["--model", str(prefix), "--output", str(tmp_path / "export"), "--onnx",
                               "--uv-data", str(default_uv_data_dir())]) == 0
    graph_def = tf.compat.v1.GraphDef.FromString((tmp_path / "export" / "prnet.pb").read_bytes())
    placeholders = [n for n in graph_def.node if n.op == "Placeholder"]
    assert [n.name for n in placeholders] == ["input"]
    assert [d.size for d in placeholders[0].attr["shape"].shape.dim] == [1, SIZE, SIZE, 3]
    assert (tmp_path / "export" / "prnet.onnx").is_file()
    assert "--input_shape=\"input:1,256,256,3\"" in (tmp_path / "export" / "atc_pb.sh").read_text()
    np.testing.assert_allclose(load_predictor(tmp_path / "export" / "prnet.pb").predict(images), maps, atol=1e-4)
    assert face3d_main(["import-prnet", "--checkpoint", str(prefix.parent), "--output",
                        str(tmp_path / "prnet.keras")]) == 0
    np.testing.assert_allclose(load_predictor(tmp_path / "prnet.keras").predict(images), maps, rtol=0, atol=1e-5)
    assert face3d_main(["import-prnet", "--checkpoint", str(tmp_path / "none"), "--output",
                        str(tmp_path / "x.keras")]) == 2


def test_fine_tuning_starts_from_the_checkpoint_at_any_input_size(tf1_checkpoint):
    from face3d.prnet.training import _copy_weights

    prefix, _, _ = tf1_checkpoint
    model = build_resfcn256(input_size=64, width=WIDTH)
    _copy_weights(prefix, model)
    images = np.random.default_rng(2).random((1, 64, 64, 3)).astype(np.float32)
    expected = pc.load_prnet_checkpoint(prefix, input_size=64)(images, training=False).numpy()
    np.testing.assert_array_equal(model(images, training=False).numpy(), expected)
    with pytest.raises(ValueError, match=r"layer 'conv0' has weights \[\(4, 4, 3, 16\)\].*another --width"):
        _copy_weights(prefix, build_resfcn256(input_size=32, width=2))
