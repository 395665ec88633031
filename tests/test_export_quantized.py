"""TFLite (float32, float16, int8) and int8 QDQ ONNX exports: files, reload checks, export.json, calibration.

A narrow network (input 64, width 4) keeps this file around a minute on 2 cores.
"""
import json
import logging
import shutil

import cv2
import numpy as np
import pytest

from tests._fixtures import fixtures_dir
from tests._inference_helpers import randomize_batch_norms

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from face3d.cli import main as face3d_main  # noqa: E402
from face3d.prnet import export as ex  # noqa: E402
from face3d.prnet.model import build_resfcn256  # noqa: E402
from face3d.prnet.predictor import load_predictor  # noqa: E402
from face3d.prnet.quantize import calibration_for_batches, calibration_images  # noqa: E402

SIZE, WIDTH = 64, 4


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(5)
    return randomize_batch_norms(build_resfcn256(input_size=SIZE, width=WIDTH), 5)


@pytest.fixture(scope="module")
def crops_dir(tmp_path_factory):
    """Eight face-crop PNGs (skimage photos) of another size than the network's input."""
    folder = tmp_path_factory.mktemp("crops")
    for k, image in enumerate(ex.reference_images(96, 8)):
        cv2.imwrite(str(folder / f"crop_{k}.png"), cv2.cvtColor(np.round(image * 255).astype(np.uint8),
                                                                 cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture(scope="module")
def exported(tiny_model, crops_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("mobile")
    return ex.export_model(tiny_model, out, onnx=True, tflite=True, int8=True, calibration=crops_dir,
                           run_atc=False), out


def test_every_file_is_written_reloaded_and_recorded(tiny_model, crops_dir, exported):
    result, out = exported
    names = ["prnet.pb", "prnet.onnx", "prnet.tflite", "prnet_fp16.tflite", "prnet_int8.tflite", "prnet_int8.onnx"]
    assert list(result.files) == names
    summary = json.loads((out / "export.json").read_text())
    assert summary["files"] == json.loads(json.dumps(result.files)) and summary["compared_on"] == \
        result.compared_on == "8 calibration images"
    # the tolerance check's figures (max_abs_diff) come from the check images, not the calibration images
    assert summary["checked_on"] == result.checked_on == "1 check images"
    for name in names:
        assert result.files[name]["size_mb"] == (out / name).stat().st_size / 1e6
    # the random network has no face, so no box to normalise by: NME is None, the keypoint shift is measured
    assert all(row["nme_vs_float32"] is None for row in result.files.values())
    images = calibration_images(crops_dir, SIZE)
    expected = tiny_model(images, training=False).numpy()
    int8 = load_predictor(out / "prnet_int8.tflite").predict(images)
    assert np.abs(int8 - expected).max() == pytest.approx(result.files["prnet_int8.tflite"]["max_abs_diff"])
    kpt = ex._keypoint_indices(SIZE)
    shift = np.linalg.norm((int8 - expected)[:, kpt[1], kpt[0], :2], axis=-1).mean() * 1.1 * SIZE
    assert result.files["prnet_int8.tflite"]["keypoint_shift_px"] == pytest.approx(shift, rel=1e-4)


def test_keypoint_shift_is_read_at_the_keypoints_of_the_models_uv_data(tmp_path):
    """export.json's keypoint shift is measured at the keypoints of the uv-data given to the export (a model trained
    on another UV layout), not the packaged ones. The network is one convolution with large weights, so its float16
    drift differs from pixel to pixel and the two keypoint sets give different shifts."""
    import dataclasses

    from face3d.prnet.uv_weights import reduced_indices
    from face3d.resources import default_uv_data_dir
    from face3d.trainset.uv_layout import load_uv_data

    inputs = keras.Input((SIZE, SIZE, 3), batch_size=1, name="input")
    model = keras.Model(inputs, keras.layers.Conv2D(3, 3, padding="same", name="conv")(inputs))
    kernel, bias = model.get_layer("conv").get_weights()
    model.get_layer("conv").set_weights([np.random.default_rng(0).normal(0, 3, kernel.shape).astype(np.float32), bias])
    packaged = load_uv_data(default_uv_data_dir())
    moved = packaged.uv_kpt_ind.copy()
    moved[1] -= 40  # every keypoint 40 rows up: still inside the 256 map (the lowest row is 70)
    uv_data = dataclasses.replace(packaged, uv_kpt_ind=moved)
    result = ex.export_model(model, tmp_path, tflite=True, run_atc=False, uv_data=uv_data)

    images = ex.reference_images(SIZE, 1)
    drift = load_predictor(tmp_path / "prnet_fp16.tflite").predict(images) - model(images, training=False).numpy()

    def shift_at(uv_kpt_ind):
        kpt = reduced_indices(uv_kpt_ind, packaged.resolution, SIZE)
        return np.linalg.norm(drift[:, kpt[1], kpt[0], :2], axis=-1).mean() * 1.1 * SIZE

    reported = result.files["prnet_fp16.tflite"]["keypoint_shift_px"]
    # float32 rounding of the two maps before their difference: about 1e-5 of the shift; the packaged keypoints' shift
    # is some 10% away
    assert reported == pytest.approx(shift_at(moved), rel=1e-4)
    assert reported != pytest.approx(shift_at(packaged.uv_kpt_ind), rel=1e-2)


def test_float_tflite_matches_and_reduced_formats_are_close_and_smaller(exported):
    result, out = exported
    files = result.files
    assert result.max_abs_diff["tflite"] < 1e-4 and files["prnet.tflite"]["max_abs_diff"] < 1e-4
    assert 0 < files["prnet_fp16.tflite"]["max_abs_diff"] < 1e-3
    for name in ("prnet_int8.tflite", "prnet_int8.onnx"):
        assert 1e-4 < files[name]["max_abs_diff"] < 0.1, name  # the map spans about 0.2: int8 is close, not equal
    assert files["prnet.tflite"]["size_mb"] / files["prnet_fp16.tflite"]["size_mb"] > 1.9
    assert files["prnet.tflite"]["size_mb"] / files["prnet_int8.tflite"]["size_mb"] > 3.5
    assert files["prnet.onnx"]["size_mb"] / files["prnet_int8.onnx"]["size_mb"] > 3.5


def test_int8_tflite_is_full_integer_and_onnx_is_qdq(exported):
    _, out = exported
    interpreter = tf.lite.Interpreter(model_path=str(out / "prnet_int8.tflite"))
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    float_ops = {d["op_name"] for d in interpreter._get_ops_details()} & {"CONV_2D", "TRANSPOSE_CONV"}
    assert float_ops == {"CONV_2D", "TRANSPOSE_CONV"}
    tensors = {t["name"]: t["dtype"] for t in interpreter.get_tensor_details()}
    assert not any(dtype == np.float32 for dtype in tensors.values())  # every tensor integer
    model = onnx.load(str(out / "prnet_int8.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "ConvTranspose"} <= ops
    kernels = [t for t in model.graph.initializer if t.name.endswith("kernel_quantized")]
    assert len(kernels) == 53 and all(t.data_type == onnx.TensorProto.INT8 for t in kernels)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 13  # upgraded from 11


def test_int8_needs_calibration_and_reads_dataset_folders(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="int8 export needs calibration images"):
        ex.export_model(tiny_model, tmp_path / "out", int8=True, run_atc=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(FileNotFoundError, match="no image"):
        calibration_images(tmp_path, SIZE)
    aflw = fixtures_dir() / "AFLW2000"
    if not aflw.is_dir():
        pytest.skip("AFLW2000 fixtures not present")
    crops = calibration_images(aflw, SIZE)
    assert crops.shape == (2, SIZE, SIZE, 3) and crops.dtype == np.float32 and 0 <= crops.min() < crops.max() <= 1


def test_calibration_without_int8_is_refused_before_any_work(tiny_model, tmp_path, capsys):
    """As by ``face3d offline run``: the folder is not read (it need not exist), nor the model, nor --output made."""
    missing = tmp_path / "no-such-folder"
    status = face3d_main(["export", "--model", str(tmp_path / "model.keras"), "--output", str(tmp_path / "out"),
                          "--tflite", "--calibration", str(missing)])
    assert status == 2 and capsys.readouterr().err.splitlines() == [
        f"face3d export: error: a calibration folder ({missing}) is for int8 mode only (--int8)"]
    with pytest.raises(ValueError, match=r"^calibration images are for int8 mode only \(--int8\)$"):
        ex.export_model(tiny_model, tmp_path / "out", calibration=np.zeros((1, SIZE, SIZE, 3), np.float32))
    assert not (tmp_path / "out").exists()


def test_int8_onnx_quantization_gives_no_pre_processing_advice(tiny_model, tmp_path, caplog):
    """ONNX Runtime's advice to pre-process the model first does not apply (the QDQ model quantizes the graph ATC
    converts, node for node): quantize_onnx logs no warning, and other records through the root logger pass again
    once it returns."""
    from face3d.prnet.quantize import quantize_onnx

    root = logging.getLogger()
    nodes, input_name, output_name = ex.model_to_nodes(tiny_model)
    nodes, output_name = ex.fold_batch_norms(nodes, output_name)  # as export folds them by default
    onnx_model = ex.build_onnx_model(nodes, input_name, output_name)
    with caplog.at_level("INFO"):
        quantize_onnx(onnx_model, tmp_path / "int8.onnx", ex.reference_images(SIZE, 2))
        logging.warning("Please consider pre-processing before quantization.")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "Please consider pre-processing before quantization."]
    assert root.filters == []


def test_calibration_is_cut_to_whole_batches_with_a_warning(crops_dir, caplog):
    with caplog.at_level("WARNING", logger="face3d.prnet.quantize"):
        images = calibration_for_batches(crops_dir, SIZE, 3, 256)
    np.testing.assert_array_equal(images, calibration_images(crops_dir, SIZE)[:6])
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "calibration: using 6 of 8 images (a multiple of --batch 3)"]


def test_too_few_calibration_images_for_a_batch_name_the_folder(crops_dir, tiny_model, tmp_path, capsys):
    tiny_model.save(tmp_path / "tiny.keras")
    status = face3d_main(["export", "--model", str(tmp_path / "tiny.keras"), "--output", str(tmp_path / "out"),
                          "--no-atc", "--int8", "--calibration", str(crops_dir), "--batch", "9"])
    assert status == 2 and capsys.readouterr().err.splitlines()[-1] == (
        f"face3d export: error: {crops_dir}: 8 calibration images are fewer than one batch (--batch 9)")
    assert not (tmp_path / "out").exists()


def test_aflw_calibration_crops_are_evaluation_crops():
    """Framed as evaluation frames them for a network of input S whose maps refer to an R x R crop (R the uv-data
    resolution, 256 by default): crop_face(image, landmark_crop(landmarks), S, R)."""
    from face3d.prnet.evaluation import read_sample
    from face3d.prnet.face_crop import crop_face, landmark_crop
    aflw = fixtures_dir() / "AFLW2000"
    if not aflw.is_dir():
        pytest.skip("AFLW2000 fixtures not present")
    names = ("image00050", "image00081")
    samples = [read_sample(aflw / f"{name}.jpg", aflw / f"{name}.mat") for name in names]
    for resolution, options in ((256, {}), (128, {"resolution": 128})):
        crops = calibration_images(aflw, SIZE, **options)
        assert len(crops) == len(names)
        for crop, (image, truth) in zip(crops, samples):
            np.testing.assert_array_equal(crop, crop_face(image, landmark_crop(truth.landmarks), SIZE,
                                                          resolution).image)


def test_a_calibration_folder_with_some_mat_files_crops_those_and_skips_the_others(tmp_path, caplog):
    """An AFLW2000-3D-format folder with a stray image: its pairs are cropped from their landmarks as in a clean
    folder, the stray image is skipped with one warning."""
    import shutil
    aflw = fixtures_dir() / "AFLW2000"
    if not aflw.is_dir():
        pytest.skip("AFLW2000 fixtures not present")
    for path in aflw.iterdir():
        shutil.copy(path, tmp_path / path.name)
    cv2.imwrite(str(tmp_path / "stray.png"), np.full((40, 30, 3), 200, np.uint8))
    with caplog.at_level("WARNING", logger="face3d.prnet.quantize"):
        crops = calibration_images(tmp_path, SIZE)
    np.testing.assert_array_equal(crops, calibration_images(aflw, SIZE))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "skipping 1 of 3 images without a .mat" in warnings[0], warnings


def test_calibration_leaves_hidden_files_out(tmp_path, caplog):
    """macOS's ._ companions are no images (as for face3d demo and evaluate): not read, no warning."""
    cv2.imwrite(str(tmp_path / "a.png"), np.full((40, 30, 3), 200, np.uint8))
    (tmp_path / "._a.png").write_bytes(b"\x00\x05\x16\x07Mac OS X" + bytes(100))
    with caplog.at_level("WARNING"):
        crops = calibration_images(tmp_path, SIZE)
    assert crops.shape == (1, SIZE, SIZE, 3) and np.all(crops == np.float32(200 / 255))
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == []


def test_calibration_images_of_a_linked_subfolder_are_read_as_evaluation_lists_them(crops_dir, tmp_path):
    """Links to folders are followed (each folder once, in path order as seen through the link); hidden folders
    are left out."""
    folder = tmp_path / "calibration"
    (folder / ".hidden").mkdir(parents=True)
    (folder / "linked").symlink_to(crops_dir, target_is_directory=True)
    (folder / "linked_again").symlink_to(crops_dir, target_is_directory=True)
    shutil.copy(crops_dir / "crop_0.png", folder / ".hidden" / "crop_0.png")
    np.testing.assert_array_equal(calibration_images(folder, SIZE), calibration_images(crops_dir, SIZE))
