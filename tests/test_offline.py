"""The msame flow without a board: pre_process -> offline runner -> post_process against in-process evaluation.

A narrow random-weight network (input 64, width 4) and three synthetic AFLW2000-3D-format samples keep this file
around 40 s on 2 cores.
"""
import json
import logging
import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io as sio

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")
pytest.importorskip("onnxruntime")

from _fixtures import fixtures_dir  # noqa: E402
from _image_files import png_header  # noqa: E402

from face3d.cli import main as face3d_main  # noqa: E402
from face3d.prnet import evaluation, offline  # noqa: E402
from face3d.prnet.export import export_model  # noqa: E402
from face3d.prnet.inference import PRN  # noqa: E402
from face3d.prnet.model import build_resfcn256  # noqa: E402
from face3d.trainset.synthetic import synthesize_dataset  # noqa: E402
from face3d.utils.errors import InputFileError  # noqa: E402

SIZE = 64


@pytest.fixture(scope="module")
def aflw(tmp_path_factory):
    """Three rendered faces in the AFLW2000-3D format: pt3d_68 = the projected keypoints plus a depth."""
    root = tmp_path_factory.mktemp("aflw")
    for i, mat_path in enumerate(synthesize_dataset(root, count=3, seed=5, size=160, views=1, flip=False)):
        mat = sio.loadmat(str(mat_path))
        pt2d = np.asarray(mat["pt2d"], dtype=np.float64)
        depth = np.linspace(0.0, 20.0 + i, 68)[None]
        mat["pt3d_68"] = np.concatenate([pt2d, depth])
        sio.savemat(str(mat_path), {k: v for k, v in mat.items() if not k.startswith("__")})
    return root


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The random-weight network exported for batch 1 (.pb, .onnx) and 2 (.pb), its maps depending on its input.

    Freshly initialised, its activations fade through the layers and every map is sigmoid(0) = 0.5 whatever the
    input, so a wrong .bin layout would go unseen. One training-mode call with batch-norm momentum 0 sets each
    moving mean and variance to that batch's; the variances raised by half then shrink each layer's spread a
    little, short of the chaos of a deep random network, whose maps float16 rounding would change by up to 0.3.
    """
    keras.utils.set_random_seed(11)
    model = build_resfcn256(input_size=SIZE, width=4, bn_momentum=0.0)
    rng = np.random.default_rng(0)
    model(rng.random((4, SIZE, SIZE, 3), dtype=np.float32), training=True)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_variance.assign(layer.moving_variance * 1.5)
    image = rng.random((1, SIZE, SIZE, 3), dtype=np.float32)
    bgr, nchw = image[..., ::-1], image.transpose(0, 3, 1, 2).reshape(image.shape)  # .bin layouts msame must not get
    maps = model.predict(np.concatenate([image, bgr, nchw]), verbose=0)
    assert np.abs(maps[1] - maps[0]).max() > 0.01 and np.abs(maps[2] - maps[0]).max() > 0.01
    out = tmp_path_factory.mktemp("export")
    export_model(model, out / "b1", batch_size=1, onnx=True, run_atc=False)
    export_model(model, out / "b2", batch_size=2, onnx=True, run_atc=False)
    return model, out


@pytest.fixture(scope="module")
def direct(exported, aflw):
    """In-process evaluation of the same Keras model (evaluation.evaluate_model)."""
    return evaluation.evaluate_model(PRN(exported[0]), aflw)


def _compare_reports(report, reference):
    """post_process's report against evaluate_model's: the same NMEs, and the same signed yaw per sample (read from
    the manifest's ground truth), so the same yaw buckets, bucket means and balanced means.

    The three synthetic faces fall one in each yaw bucket, so a yaw lost or folded on the way through the manifest
    (all zero, or its sign dropped) moves a face to another bucket and changes the counts.
    """
    assert report["samples"] == reference["samples"] == 3
    metrics = ("nme_2d", "nme_3d", "nme_3d_diagonal")
    for key in metrics:
        assert abs(report[key] - reference[key]) < 1e-4, key
    assert [s["name"] for s in report["per_sample"]] == [s["name"] for s in reference["per_sample"]]
    for mine, theirs in zip(report["per_sample"], reference["per_sample"]):
        assert abs(mine["nme_2d"] - theirs["nme_2d"]) < 1e-4
        # the manifest's JSON keeps a float's every digit: the yaw comes back exactly
        assert (mine["yaw_deg"], mine["yaw_bucket"]) == (theirs["yaw_deg"], theirs["yaw_bucket"])
    assert sorted(s["yaw_bucket"] for s in reference["per_sample"]) == sorted(evaluation.YAW_BUCKETS)
    for label in evaluation.YAW_BUCKETS:
        mine, theirs = report["yaw_buckets"][label], reference["yaw_buckets"][label]
        assert mine["count"] == theirs["count"] == 1, label
        for key in metrics:
            assert abs(mine[key] - theirs[key]) < 1e-4, (label, key)
    for key in metrics:
        assert abs(report["balanced"][key] - reference["balanced"][key]) < 1e-4, key


def test_round_trip_onnx_gives_the_direct_nme(exported, aflw, direct, tmp_path, capsys):
    work = tmp_path / "work"
    _, out = exported
    manifest = offline.pre_process(aflw, work, input_size=SIZE)
    bins = sorted(p.name for p in (work / "bin").glob("*.bin"))
    assert bins == ["SYNTH_0000_1_0.bin", "SYNTH_0001_1_0.bin", "SYNTH_0002_1_0.bin"]
    assert all((work / "bin" / b).stat().st_size == SIZE * SIZE * 3 * 4 for b in bins)
    assert manifest["ground_truth"] and len(manifest["samples"]) == 3
    result = offline.run_offline(out / "b1" / "prnet.onnx", work / "bin", tmp_path / "out")
    assert re.fullmatch(r"\d{8}_\d{6}(_\d+)?", result.name) and result.parent == tmp_path / "out"
    assert sorted(p.name for p in result.glob("*.bin")) == [b.replace(".bin", "_output_0.bin") for b in bins]
    printed = capsys.readouterr().out
    assert "Inference average time : " in printed and "Inference average time without first time: " in printed
    timing = json.loads((result / offline.TIMING).read_text())
    assert list(timing["files_ms"]) == [b[:-4] for b in bins]  # processed in sorted order
    report = offline.post_process(result, work / offline.MANIFEST, tmp_path / "report")
    _compare_reports(report, direct)
    assert report["latency"]["calls"] == 3 and report["latency"]["images_per_s"] > 0
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert abs(saved["nme_2d"] - direct["nme_2d"]) < 1e-4 and (tmp_path / "report" / "latency.md").is_file()


def test_round_trip_batch_two_pb_through_the_command_line(exported, aflw, direct, tmp_path):
    work = tmp_path / "work"
    _, out = exported
    assert face3d_main(["offline", "pre_process", "--data", str(aflw), "--output", str(work),
                         "--input-size", str(SIZE), "--batch", "2"]) == 0
    manifest = json.loads((work / offline.MANIFEST).read_text())
    assert [f["samples"] for f in manifest["files"]] == [["SYNTH/SYNTH_0000_1_0", "SYNTH/SYNTH_0001_1_0"],
                                                         ["SYNTH/SYNTH_0002_1_0"]]  # named as evaluate names them
    padded = np.fromfile(work / "bin" / "batch_00001.bin", dtype="<f4").reshape(2, SIZE, SIZE, 3)
    assert padded[1].max() == 0 and padded[0].max() > 0
    assert face3d_main(["offline", "run", "--model", str(out / "b2" / "prnet.pb"), "--input", str(work / "bin"),
                         "--output", str(tmp_path / "out")]) == 0
    result, = (tmp_path / "out").iterdir()
    assert face3d_main(["offline", "post_process", "--result", str(result), "--manifest",
                         str(work / offline.MANIFEST), "--output", str(tmp_path / "report")]) == 0
    _compare_reports(json.loads((tmp_path / "report" / "report.json").read_text()), direct)


def test_each_bin_holds_the_crops_prn_feeds_its_network(exported, aflw, tmp_path):
    """Byte for byte: little-endian float32 NHWC RGB / 255, the crops of PRN.crop (evaluate_model's and demo's), the
    last batch padded with black; from ground-truth landmarks and from detector boxes."""
    prn = PRN(exported[0])
    manifest = offline.pre_process(aflw, tmp_path / "truth", input_size=SIZE, batch_size=2)
    crops = []
    for image_path in sorted(aflw.rglob("*.jpg")):
        image, sample = evaluation.read_sample(image_path, image_path.with_suffix(".mat"))
        crops.append(prn.crop(image, landmarks=sample.landmarks).image)
    crops.append(np.zeros((SIZE, SIZE, 3), np.float32))
    for k, entry in enumerate(manifest["files"]):
        expected = np.stack(crops[2 * k:2 * k + 2]).astype("<f4").tobytes()
        assert (tmp_path / "truth" / "bin" / entry["bin"]).read_bytes() == expected
    image_path = sorted(aflw.rglob("*.jpg"))[0]
    (tmp_path / "boxes.txt").write_text(f"{image_path.name} 30 35 120 130\n")
    offline.pre_process(image_path.parent, tmp_path / "boxes", input_size=SIZE, boxes=tmp_path / "boxes.txt")
    image = cv2.cvtColor(cv2.imread(str(image_path)), cv2.COLOR_BGR2RGB)
    expected = prn.crop(image, box=np.array([30.0, 35.0, 120.0, 130.0])).image.astype("<f4").tobytes()
    assert (tmp_path / "boxes" / "bin" / f"{image_path.stem}.bin").read_bytes() == expected


def test_fp16_mode_predicts_a_small_nme_change(exported, aflw, direct, tmp_path):
    work = tmp_path / "work"
    _, out = exported
    offline.pre_process(aflw, work, input_size=SIZE)
    full = offline.run_offline(out / "b1" / "prnet.onnx", work / "bin", tmp_path / "out", quiet=True)
    half = offline.run_offline(out / "b1" / "prnet.onnx", work / "bin", tmp_path / "out", fp16=True,
                               quiet=True)
    assert full != half and json.loads((half / offline.TIMING).read_text())["fp16"] is True
    a = np.fromfile(full / "SYNTH_0000_1_0_output_0.bin", dtype="<f4")
    b = np.fromfile(half / "SYNTH_0000_1_0_output_0.bin", dtype="<f4")
    assert 0 < np.abs(a - b).max() < 2e-2
    report = offline.post_process(half, work / offline.MANIFEST, tmp_path / "report16")
    assert 0 < abs(report["nme_2d"] - direct["nme_2d"]) < 0.01
    with pytest.raises(ValueError, match="fp16 mode needs an .onnx"):
        offline.run_offline(out / "b2" / "prnet.pb", work / "bin", tmp_path / "out", fp16=True)


def test_int8_mode_runs_the_quantized_model(exported, aflw, tmp_path):
    work = tmp_path / "work"
    _, out = exported
    offline.pre_process(aflw, work, input_size=SIZE)
    full = offline.run_offline(out / "b1" / "prnet.onnx", work / "bin", tmp_path / "out", quiet=True)
    assert face3d_main(["offline", "run", "--model", str(out / "b1" / "prnet.onnx"), "--input", str(work / "bin"),
                        "--output", str(tmp_path / "out8"), "--int8", "--calibration", str(aflw)]) == 0
    (quantized,) = (tmp_path / "out8").iterdir()
    assert json.loads((quantized / offline.TIMING).read_text())["int8"] is True
    a = np.fromfile(full / "SYNTH_0000_1_0_output_0.bin", dtype="<f4")
    b = np.fromfile(quantized / "SYNTH_0000_1_0_output_0.bin", dtype="<f4")
    assert 0 < np.abs(a - b).max() < 0.05
    with pytest.raises(ValueError, match="int8 mode needs an .onnx"):
        offline.run_offline(out / "b2" / "prnet.pb", work / "bin", tmp_path / "out", int8=True)


def test_a_calibration_folder_without_int8_is_refused(exported, aflw, tmp_path, capsys):
    _, out = exported
    work = tmp_path / "work"
    offline.pre_process(aflw, work, input_size=SIZE, limit=1)
    assert face3d_main(["offline", "run", "--model", str(out / "b1" / "prnet.onnx"), "--input", str(work / "bin"),
                        "--output", str(tmp_path / "out"), "--calibration", str(aflw)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"run failed: a calibration folder ({aflw}) is for int8 mode only (--int8)"]
    assert not (tmp_path / "out").exists()


def test_int8_without_a_calibration_folder_calibrates_on_the_real_crops_only(exported, aflw, tmp_path, monkeypatch):
    """pre_process pads the last .bin with black crops: the manifest tells them apart and calibration skips them."""
    work = tmp_path / "work"
    from face3d.prnet import quantize
    _, out = exported
    offline.pre_process(aflw, work, input_size=SIZE, batch_size=2)
    bins = [np.fromfile(work / "bin" / f"batch_{k:05d}.bin", dtype="<f4").reshape(2, SIZE, SIZE, 3)
            for k in range(2)]
    calibrated = []

    class Captured(Exception):
        """Stops the run before quantizing: the calibration images are what this test reads."""

    def capture(model, output, calibration, batch_size=1):
        calibrated.append(calibration)
        raise Captured

    monkeypatch.setattr(quantize, "quantize_onnx", capture)
    with pytest.raises(Captured):
        offline.run_offline(out / "b1" / "prnet.onnx", work / "bin", tmp_path / "out", int8=True, quiet=True)
    np.testing.assert_array_equal(calibrated[0], np.concatenate([bins[0], bins[1][:1]]))


def test_int8_calibration_cut_to_the_models_batch_names_that_batch(exported, aflw, tmp_path, monkeypatch, capsys,
                                                                    caplog):
    """offline run has no --batch flag: the batch the calibration images are cut to is the model's input's."""
    from face3d.prnet import quantize
    _, out = exported
    model = out / "b2" / "prnet.onnx"

    class Captured(Exception):
        """Stops the run before quantizing."""

    def capture(*args, **kwargs):
        raise Captured

    monkeypatch.setattr(quantize, "quantize_onnx", capture)
    offline.pre_process(aflw, tmp_path / "work3", input_size=SIZE, batch_size=2)
    with caplog.at_level(logging.WARNING, logger="face3d.prnet.quantize"), pytest.raises(Captured):
        offline.run_offline(model, tmp_path / "work3" / "bin", tmp_path / "out", int8=True, quiet=True)
    assert [r.getMessage() for r in caplog.records if r.name == "face3d.prnet.quantize"] == [
        "calibration: using 2 of 3 images (a multiple of prnet.onnx's input batch 2)"]
    offline.pre_process(aflw, tmp_path / "work1", input_size=SIZE, batch_size=2, limit=1)
    assert face3d_main(["offline", "run", "--model", str(model), "--input", str(tmp_path / "work1" / "bin"),
                        "--output", str(tmp_path / "out"), "--int8"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "run failed: 1 calibration images are fewer than one batch (prnet.onnx's input batch 2)"]


def test_int8_calibration_on_crops_of_another_size_names_the_file(exported, aflw, tmp_path, capsys):
    _, out = exported
    work = tmp_path / "work"
    offline.pre_process(aflw, work, input_size=SIZE // 2)
    assert face3d_main(["offline", "run", "--model", str(out / "b1" / "prnet.onnx"), "--input", str(work / "bin"),
                        "--output", str(tmp_path / "out"), "--int8"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"run failed: {work / 'bin' / 'SYNTH_0000_1_0.bin'}: {(SIZE // 2) ** 2 * 3 * 4} bytes, not a whole number "
        f"of the model's [{SIZE}, {SIZE}, 3] float32 images ({SIZE * SIZE * 3 * 4} bytes each)"]
    assert not (tmp_path / "out").exists()


def test_images_with_boxes_give_the_landmarks_of_prn(exported, aflw, tmp_path):
    work = tmp_path / "work"
    model, out = exported
    images = sorted(aflw.rglob("*.jpg"))[:2]
    boxes = {p.name: np.array([30.0, 35.0, 120.0, 130.0]) + k for k, p in enumerate(images)}
    (tmp_path / "boxes.txt").write_text("# name x0 y0 x1 y1\n" + "".join(
        f"{name} {' '.join(str(v) for v in box)}\n" for name, box in boxes.items()))
    manifest = offline.pre_process(images[0].parent, work, input_size=SIZE,
                                   boxes=tmp_path / "boxes.txt")
    assert not manifest["ground_truth"]
    result = offline.run_offline(out / "b1" / "prnet.onnx", work / "bin", tmp_path / "out", quiet=True)
    report = offline.post_process(result, work / offline.MANIFEST, tmp_path / "report")
    prn = PRN(model)
    for name, landmarks in zip(report["names"], report["landmarks"]):
        image = cv2.cvtColor(cv2.imread(str(images[0].parent / f"{name}.jpg")), cv2.COLOR_BGR2RGB)
        expected = prn.get_landmarks(prn.process(image, box=boxes[f"{name}.jpg"]))
        np.testing.assert_allclose(landmarks, expected, atol=1e-2)
    assert (tmp_path / "report" / "landmarks.npz").is_file()


def test_boxes_names_stay_inside_the_image_folder_by_their_text(aflw, tmp_path):
    """A link inside --data to an image elsewhere is an image of --data; a name leading out is refused, whether
    by '..' or as an absolute path; two names of one image are one image named twice."""
    elsewhere = sorted(aflw.rglob("*.jpg"))[0]
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    (images / "linked.jpg").symlink_to(elsewhere)
    boxes = tmp_path / "boxes.txt"
    boxes.write_text("linked.jpg 30 35 120 130\nsub/../own.jpg 1 2 3 4\n")
    assert sorted(offline.read_boxes(boxes, images)) == ["linked.jpg", "sub/../own.jpg"]
    boxes.write_text("linked.jpg 30 35 120 130\n")
    manifest = offline.pre_process(images, tmp_path / "work", input_size=SIZE, boxes=boxes)
    assert [record["name"] for record in manifest["samples"]] == ["linked"]
    for name in ("../elsewhere.jpg", "sub/../../elsewhere.jpg", str(elsewhere)):
        boxes.write_text(f"own.jpg 1 2 3 4\n{name} 1 2 3 4\n")
        with pytest.raises(InputFileError) as error:
            offline.read_boxes(boxes, images)
        assert str(error.value) == f"{boxes}:2: {name!r} lies outside the image folder {images}"
    boxes.write_text("linked.jpg 1 2 3 4\n./sub/../linked.jpg 5 6 7 8\n")
    with pytest.raises(InputFileError, match=r"boxes.txt:2: '\./sub/\.\./linked.jpg' already has a box on line 1"):
        offline.read_boxes(boxes, images)


def test_a_boxes_file_that_is_no_boxes_file_is_named_with_its_line(aflw, tmp_path, capsys):
    boxes = tmp_path / "boxes.txt"
    argv = ["offline", "pre_process", "--data", str(aflw), "--output", str(tmp_path / "work"), "--boxes", str(boxes)]
    expected = "expected '<image> x0 y0 x1 y1' (four numbers), got"
    for text, problem in [("a.jpg 10 20 abc 200\n", f"1: {expected} 'a.jpg 10 20 abc 200'"),
                          ("# name x0 y0 x1 y1\na.jpg 10 20 30,5 40\n", f"2: {expected} 'a.jpg 10 20 30,5 40'"),
                          ("a.jpg 1 2 3\n", f"1: {expected} 'a.jpg 1 2 3'")]:
        boxes.write_text(text)
        assert face3d_main(argv) == 2
        assert capsys.readouterr().err.strip().splitlines() == [f"pre_process failed: {boxes}:{problem}"]
    boxes.write_bytes(b"a.jpg 1 2 3 4\n\xff\xfe\x00garbage\n")
    assert face3d_main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"pre_process failed: {boxes}: not a text file (no UTF-8 at byte 14)"]
    assert not (tmp_path / "work").exists()


def test_boxes_names_may_hold_spaces(aflw, tmp_path):
    """The last four fields of a line are the box and the text before them the name, its own spaces and tabs kept."""
    images = tmp_path / "images"
    (images / "sp ace").mkdir(parents=True)
    (images / "sp ace" / "phötö 1.jpg").symlink_to(sorted(aflw.rglob("*.jpg"))[0])
    boxes = tmp_path / "boxes.txt"
    boxes.write_text("sp ace/phötö 1.jpg 30 35 120 130\n  two  spaces\tand a tab.jpg\t1 2 3 4  # a comment\n",
                     encoding="utf-8")
    table = offline.read_boxes(boxes, images)
    assert list(table) == ["sp ace/phötö 1.jpg", "two  spaces\tand a tab.jpg"]
    assert table["sp ace/phötö 1.jpg"].tolist() == [30.0, 35.0, 120.0, 130.0]
    assert table["two  spaces\tand a tab.jpg"].tolist() == [1.0, 2.0, 3.0, 4.0]
    boxes.write_text("sp ace/phötö 1.jpg 30 35 120 130\nsp ace/phötö 1.jpg 10 20 150 160 0.98\n", encoding="utf-8")
    with pytest.raises(InputFileError) as refused:  # a detector's score after the box is not part of a name
        offline.read_boxes(boxes, images)
    assert str(refused.value) == (f"{boxes}:2: expected '<image> x0 y0 x1 y1' (four numbers), got "
                                  "'sp ace/phötö 1.jpg 10 20 150 160 0.98'")
    boxes.write_text("scan 2 10 20 150 160\n", encoding="utf-8")  # a missing image whose name ends in a number
    assert offline.read_boxes(boxes, images)["scan 2"].tolist() == [10.0, 20.0, 150.0, 160.0]
    (images / "scan").mkdir()  # a folder named as the name without its number: still not an image
    assert offline.read_boxes(boxes, images)["scan 2"].tolist() == [10.0, 20.0, 150.0, 160.0]
    boxes.write_text("sp ace/phötö 1.jpg 30 35 120 130\n", encoding="utf-8")
    assert face3d_main(["offline", "pre_process", "--data", str(images), "--output", str(tmp_path / "work"),
                        "--boxes", str(boxes), "--input-size", str(SIZE)]) == 0
    manifest = json.loads((tmp_path / "work" / offline.MANIFEST).read_text())
    assert [record["name"] for record in manifest["samples"]] == ["sp ace/phötö 1"]
    assert manifest["files"] == [{"bin": "phötö 1.bin", "samples": ["sp ace/phötö 1"]}]


def test_a_hash_is_a_comment_only_first_on_a_line_or_after_the_box(aflw, tmp_path, caplog):
    """'#' in a name is part of it; a line starting with '#' is a comment, and one that reads as an image's box is
    named in a warning, with the name that boxes that image; text from a '#' word after the box is a comment."""
    images = tmp_path / "images"
    images.mkdir()
    for name in ("plain.jpg", "photo #3.jpg", "#hash é.jpg"):
        shutil.copy(sorted(aflw.rglob("*.jpg"))[0], images / name)
    boxes = tmp_path / "boxes.txt"
    boxes.write_text("# name x0 y0 x1 y1\nplain.jpg 30 35 120 130\nphoto #3.jpg 30 35 120 130 # third #\n"
                     "  #hash é.jpg 30 35 120 130\n#hash é.jpg 30 35 120 130 # old box\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="face3d.prnet.offline"):
        table = offline.read_boxes(boxes, images)
    assert {name: box.tolist() for name, box in table.items()} == {"plain.jpg": [30.0, 35.0, 120.0, 130.0],
                                                                   "photo #3.jpg": [30.0, 35.0, 120.0, 130.0]}
    assert [r.getMessage() for r in caplog.records] == [
        f"{boxes}:{line}: a comment line, though '#hash é.jpg' is an image of {images}: name it './#hash é.jpg' to "
        "box it" for line in (4, 5)]
    boxes.write_text("plain.jpg 30 35 120 130\nphoto #3.jpg 30 35 120 130\n./#hash é.jpg 30 35 120 130\n",
                     encoding="utf-8")
    manifest = offline.pre_process(images, tmp_path / "work", input_size=SIZE, boxes=boxes)
    assert [record["name"] for record in manifest["samples"]] == ["#hash é", "photo #3", "plain"]
    assert manifest["skipped"] == []
    crops = {path.name: path.read_bytes() for path in (tmp_path / "work" / "bin").iterdir()}
    assert sorted(crops) == ["#hash é.bin", "photo #3.bin", "plain.bin"]
    assert crops["#hash é.bin"] == crops["photo #3.bin"] == crops["plain.bin"]  # one image, one box: one crop
    boxes.write_text("plain.jpg 30 35 120 #130\n", encoding="utf-8")
    with pytest.raises(InputFileError) as refused:
        offline.read_boxes(boxes, images)
    assert str(refused.value) == (f"{boxes}:1: expected '<image> x0 y0 x1 y1' (four numbers), got "
                                  "'plain.jpg 30 35 120 #130'")


def test_an_image_its_box_lies_outside_of_is_skipped_as_demo_skips_it(aflw, tmp_path, capsys):
    """Its crop would be all black: logged with the words of face3d demo and serve, in the manifest's skipped, and
    counted; status 1 as for an image that cannot be read."""
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (images / name).symlink_to(sorted(aflw.rglob("*.jpg"))[0])  # 160 x 160
    (tmp_path / "boxes.txt").write_text("a.jpg 30 35 120 130\nb.jpg 150 170 300 330\n")
    work = tmp_path / "work"
    assert face3d_main(["offline", "pre_process", "--data", str(images), "--output", str(work), "--boxes",
                        str(tmp_path / "boxes.txt"), "--input-size", str(SIZE)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"wrote 1 .bin files for 1 faces to {work / 'bin'} and {work / offline.MANIFEST} (1 skipped)"]
    manifest = json.loads((work / offline.MANIFEST).read_text())
    assert manifest["skipped"] == [{"image": str(images / "b.jpg"),
                                    "reason": "box: 150 170 300 330 lies outside the 160 x 160 image"}]
    assert [record["name"] for record in manifest["samples"]] == ["a"] and sorted(os.listdir(work / "bin")) == ["a.bin"]


def test_a_missing_image_named_in_the_boxes_is_skipped_as_an_unreadable_one(aflw, tmp_path, capsys, caplog):
    """Logged, in the manifest's skipped with the reason naming it, counted; status 1, the other image written."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").symlink_to(sorted(aflw.rglob("*.jpg"))[0])
    (tmp_path / "boxes.txt").write_text("a.jpg 30 35 120 130\nmissing.jpg 30 35 120 130\n")
    work = tmp_path / "work"
    with caplog.at_level(logging.WARNING, logger="face3d.prnet.offline"):
        assert face3d_main(["offline", "pre_process", "--data", str(images), "--output", str(work), "--boxes",
                            str(tmp_path / "boxes.txt"), "--input-size", str(SIZE)]) == 1
    missing = images / "missing.jpg"
    assert capsys.readouterr().out.splitlines() == [
        f"wrote 1 .bin files for 1 faces to {work / 'bin'} and {work / offline.MANIFEST} (1 skipped)"]
    assert f"skipping {missing}: {missing}: image file not found" in caplog.messages
    manifest = json.loads((work / offline.MANIFEST).read_text())
    assert manifest["skipped"] == [{"image": str(missing), "reason": f"{missing}: image file not found"}]
    assert [record["name"] for record in manifest["samples"]] == ["a"] and sorted(os.listdir(work / "bin")) == ["a.bin"]

def test_an_image_above_max_pixels_is_skipped_naming_the_flag(aflw, tmp_path, capsys, caplog):
    """A 12000 x 9000 phone photo (108 megapixels; its header alone) is above the default limit: skipped, naming
    --max-pixels; a raised limit passes it on to the decoder. With ground truth the limit reaches the AFLW2000-3D
    reader: one pixel under the 160 x 160 images skips them all."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "face.jpg").symlink_to(sorted(aflw.rglob("*.jpg"))[0])
    (images / "phone.png").write_bytes(png_header(12000, 9000))
    (tmp_path / "boxes.txt").write_text("face.jpg 30 35 120 130\nphone.png 30 35 120 130\n")
    work = tmp_path / "work"
    argv = ["offline", "pre_process", "--data", str(images), "--output", str(work), "--boxes",
            str(tmp_path / "boxes.txt"), "--input-size", str(SIZE)]
    phone = images / "phone.png"
    for flags, reason in [((), "the image is 12000x9000 = 108000000 pixels, above the limit of 100000000 "
                                "(--max-pixels)"),
                          (("--max-pixels", "108000000"), "cannot decode the image (corrupt or truncated)")]:
        assert face3d_main(argv + list(flags)) == 1
        assert capsys.readouterr().out.endswith("(1 skipped)\n")
        assert json.loads((work / offline.MANIFEST).read_text())["skipped"] == [
            {"image": str(phone), "reason": f"{phone}: {reason}"}]
    with caplog.at_level(logging.WARNING, logger="face3d.prnet.offline"):
        with pytest.raises(ValueError, match=f"^{re.escape(str(aflw))}: no sample could be pre-processed \\(3 "
                                             "skipped\\)$"):
            offline.pre_process(aflw, tmp_path / "gt", input_size=SIZE, max_pixels=160 * 160 - 1)
    first = sorted(aflw.rglob("*.jpg"))[0]
    assert f"skipping {first}: {first}: the image is 160x160 = 25600 pixels, above the limit of 25599 " \
           "(--max-pixels)" in caplog.messages
    assert len(offline.pre_process(aflw, tmp_path / "gt", input_size=SIZE, max_pixels=160 * 160)["samples"]) == 3


def test_an_unreadable_image_named_in_the_boxes_is_in_the_landmarks_report(exported, aflw, tmp_path, capsys):
    _, out = exported
    images = tmp_path / "images"
    images.mkdir()
    (images / "face.jpg").symlink_to(sorted(aflw.rglob("*.jpg"))[0])
    (images / "broken.jpg").write_bytes(b"no JPEG")
    (tmp_path / "boxes.txt").write_text("face.jpg 30 35 120 130\nbroken.jpg 30 35 120 130\n")
    manifest = offline.pre_process(images, tmp_path / "work", input_size=SIZE, boxes=tmp_path / "boxes.txt")
    (skipped,) = manifest["skipped"]
    assert skipped["image"] == str(images / "broken.jpg") and skipped["reason"]
    result = offline.run_offline(out / "b1" / "prnet.onnx", tmp_path / "work" / "bin", tmp_path / "out", quiet=True)
    report = offline.post_process(result, tmp_path / "work" / offline.MANIFEST, tmp_path / "report")
    saved = json.loads((tmp_path / "report" / "landmarks.json").read_text())
    assert saved["names"] == report["names"] == ["face"] and saved["skipped"] == report["skipped"] == [skipped]
    assert face3d_main(["offline", "post_process", "--result", str(result), "--manifest",
                        str(tmp_path / "work" / offline.MANIFEST), "--output", str(tmp_path / "report2")]) == 1
    assert capsys.readouterr().out.splitlines()[0] == "2 images: 1 with landmarks, 1 skipped"


def test_images_sharing_a_name_are_listed_before_any_crop(aflw, tmp_path, capsys):
    """Each file stem names a manifest record (and a .bin file): every shared one is named with its images, also
    an image that could not have been read."""
    images = tmp_path / "images"
    for folder in ("x", "y"):
        (images / folder).mkdir(parents=True)
    face = sorted(aflw.rglob("*.jpg"))[0]
    for name in ("x/p1.jpg", "x/p2.jpg", "y/p2.jpg", "y/p3.jpg"):
        (images / name).symlink_to(face)
    (images / "y" / "p1.jpg").write_bytes(b"no JPEG")
    (tmp_path / "boxes.txt").write_text("".join(f"{name} 30 35 120 130\n" for name in
                                                ("x/p1.jpg", "x/p2.jpg", "y/p1.jpg", "y/p2.jpg", "y/p3.jpg")))
    assert face3d_main(["offline", "pre_process", "--data", str(images), "--output", str(tmp_path / "work"),
                        "--boxes", str(tmp_path / "boxes.txt"), "--input-size", str(SIZE)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"pre_process failed: {images}: images share a name (file stem), which must be unique as it names the .bin "
        "file: p1: x/p1.jpg, y/p1.jpg; p2: x/p2.jpg, y/p2.jpg"]
    assert not (tmp_path / "work").exists()


def test_a_batch_names_its_samples_by_their_paths_so_only_images_of_one_folder_clash(aflw, tmp_path, capsys):
    """With --batch above 1 the .bin files are batch_<k>.bin and each sample is named by its path without its
    suffix: x/p1.jpg and y/p1.jpg are two samples, x/p1.jpg and x/p1.png would be one."""
    images = tmp_path / "images"
    for folder in ("x", "y"):
        (images / folder).mkdir(parents=True)
    face = sorted(aflw.rglob("*.jpg"))[0]
    for name in ("x/p1.jpg", "y/p1.jpg"):
        (images / name).symlink_to(face)
    boxes = tmp_path / "boxes.txt"
    boxes.write_text("x/p1.jpg 30 35 120 130\ny/p1.jpg 30 35 120 130\n")
    command = ["offline", "pre_process", "--data", str(images), "--output", str(tmp_path / "work"), "--boxes",
               str(boxes), "--input-size", str(SIZE), "--batch", "2"]
    assert face3d_main(command) == 0
    manifest = json.loads((tmp_path / "work" / offline.MANIFEST).read_text())
    assert manifest["files"] == [{"bin": "batch_00000.bin", "samples": ["x/p1", "y/p1"]}]
    (images / "x" / "p1.png").write_bytes(b"never read")
    boxes.write_text(boxes.read_text() + "x/p1.png 30 35 120 130\n")
    capsys.readouterr()
    assert face3d_main(command[:5] + [str(tmp_path / "work2")] + command[6:]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"pre_process failed: {images}: images share a name (file stem), which must be unique as it names a sample "
        "of the manifest: x/p1: x/p1.jpg, x/p1.png"]
    assert not (tmp_path / "work2").exists()


def _poison(path, sample, count):
    """Set the first ``count`` values of sample ``sample`` (0-based) of an output file [B, S, S, 3] to NaN, inf,
    -inf in turn."""
    maps = np.fromfile(path, dtype="<f4").reshape(-1, SIZE, SIZE, 3)
    maps[sample].reshape(-1)[:count] = np.resize(np.array([np.nan, np.inf, -np.inf], np.float32), count)
    maps.tofile(path)


def test_a_non_finite_map_skips_that_sample_and_measures_the_rest_of_its_batch(exported, aflw, direct, tmp_path,
                                                                               capsys, caplog):
    """A diverged network on one face of a batch: that sample is logged and listed as skipped (the reason naming the
    output file and the sample, worded as face3d evaluate words it), the other samples of the file and of the run
    are measured as evaluate measures them, the padding crop of the last batch is not looked at, exit status 1."""
    _, out = exported
    work = tmp_path / "work"
    manifest = offline.pre_process(aflw, work, input_size=SIZE, batch_size=2)
    result = offline.run_offline(out / "b2" / "prnet.pb", work / "bin", tmp_path / "out", quiet=True)
    first, last = result / "batch_00000_output_0.bin", result / "batch_00001_output_0.bin"
    _poison(first, 1, 3)
    _poison(last, 1, SIZE * SIZE * 3)  # the padding crop: no sample
    argv = ["offline", "post_process", "--result", str(result), "--manifest", str(work / offline.MANIFEST),
            "--output", str(tmp_path / "report")]
    with caplog.at_level(logging.WARNING, logger="face3d.prnet.offline"):
        assert face3d_main(argv) == 1
    name = "SYNTH/SYNTH_0001_1_0"
    image = next(record["image"] for record in manifest["samples"] if record["name"] == name)
    reason = f"{first}, sample 2 of 2 ({name}): the network's position map has 3 non-finite value(s) (NaN or inf)"
    assert f"skipping {image}: {reason}" in caplog.text
    assert capsys.readouterr().out.splitlines()[0].startswith("3 images: 2 evaluated, 1 skipped; NME 2D ")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["skipped"] == [{"image": image, "reason": reason}]
    assert f"Skipped 1 image(s), not in the figures above:\n\n* {image}: {reason}\n" in (
        tmp_path / "report" / "report.md").read_text()
    expected = {s["name"]: s["nme_2d"] for s in direct["per_sample"] if s["name"] != name}
    assert report["samples"] == 2 and [s["name"] for s in report["per_sample"]] == list(expected)
    for sample in report["per_sample"]:
        assert abs(sample["nme_2d"] - expected[sample["name"]]) < 1e-4
    assert report["latency"]["calls"] == 2 and (tmp_path / "report" / "latency.md").is_file()
    # no sample left: one line, status 2, the earlier report as it was
    earlier = {path.name: path.read_bytes() for path in (tmp_path / "report").iterdir()}
    _poison(first, 0, 1)
    _poison(last, 0, 1)
    assert face3d_main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"post_process failed: {result}: no sample could be post-processed (3 skipped; first: "
                           f"{manifest['samples'][0]['image']}: {first}, sample 1 of 2 ")
    assert {path.name: path.read_bytes() for path in (tmp_path / "report").iterdir()} == earlier
    # a manifest edited to list no sample (pre_process never writes one): the same line, without a first
    edited = json.loads((work / offline.MANIFEST).read_text())
    edited.update(samples=[], files=[], skipped=[])
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    assert face3d_main([*argv[:4], "--manifest", str(tmp_path / "edited.json"), *argv[6:]]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"post_process failed: {result}: no sample could be post-processed (0 skipped)"]


def test_a_non_finite_map_in_a_boxes_batch_skips_that_face_only(exported, aflw, tmp_path, capsys):
    """Without ground truth: landmarks.json and landmarks.npz hold the batch's other face, its landmarks as a run
    without the bad map gives them; landmarks.json's skipped names the face, the output file and the sample."""
    _, out = exported
    images = sorted(aflw.rglob("*.jpg"))[:2]
    (tmp_path / "boxes.txt").write_text("".join(f"{p.name} 30 35 120 130\n" for p in images))
    work = tmp_path / "work"
    offline.pre_process(images[0].parent, work, input_size=SIZE, boxes=tmp_path / "boxes.txt", batch_size=2)
    result = offline.run_offline(out / "b2" / "prnet.pb", work / "bin", tmp_path / "out", quiet=True)
    clean = offline.post_process(result, work / offline.MANIFEST, tmp_path / "clean")
    _poison(result / "batch_00000_output_0.bin", 0, 1)
    assert face3d_main(["offline", "post_process", "--result", str(result), "--manifest",
                        str(work / offline.MANIFEST), "--output", str(tmp_path / "report")]) == 1
    assert capsys.readouterr().out.splitlines()[0] == "2 images: 1 with landmarks, 1 skipped"
    saved = json.loads((tmp_path / "report" / "landmarks.json").read_text())
    assert saved["names"] == [images[1].stem] and saved["landmarks"] == clean["landmarks"][1:]
    assert saved["skipped"] == [{"image": str(images[0].resolve()), "reason": (
        f"{result / 'batch_00000_output_0.bin'}, sample 1 of 2 ({images[0].stem}): the network's position map has "
        "1 non-finite value(s) (NaN or inf)")}]
    with np.load(tmp_path / "report" / "landmarks.npz") as npz:
        assert list(npz["names"]) == [images[1].stem]
        np.testing.assert_array_equal(npz["landmarks"], np.asarray(clean["landmarks"][1:]))


def test_timing_from_an_msame_log_and_latency_figures(tmp_path):
    log = tmp_path / "msame.log"
    log.write_text("[INFO] start to process file:./bin/a.bin\n[INFO] model execute success\n"
                   "Inference time: 30.5ms\n[INFO] output data success\nInference time: 10.0ms\n"
                   "Inference time: 12.0ms\nInference average time : 17.5 ms\n")
    times = offline.read_timing(log)
    assert times == [30.5, 10.0, 12.0]
    summary = offline.latency_summary(times, batch_size=2)
    assert summary["first_call_ms"] == 30.5 and summary["call_ms_mean"] == 11.0
    assert summary["image_ms_mean"] == 5.5 and summary["images_per_s"] == pytest.approx(2000.0 / 11.0)
    (tmp_path / "empty.log").write_text("nothing here\n")
    with pytest.raises(ValueError, match="Inference time"):
        offline.read_timing(tmp_path / "empty.log")


def test_an_msame_log_of_another_count_of_files_is_refused(exported, aflw, tmp_path, capsys):
    _, out = exported
    work = tmp_path / "work"
    offline.pre_process(aflw, work, input_size=SIZE, limit=2)
    result = offline.run_offline(out / "b1" / "prnet.onnx", work / "bin", tmp_path / "out", quiet=True)
    log = tmp_path / "msame.log"
    log.write_text("".join(f"[INFO] start to process file:bin/{k}.bin\nInference time: {40 + k}ms\n" for k in range(5)))
    assert face3d_main(["offline", "post_process", "--result", str(result), "--manifest", str(work / offline.MANIFEST),
                        "--output", str(tmp_path / "report"), "--timing", str(log)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"post_process failed: {log}: 5 inference times, but 2 .bin files to time: pass the log of the run on them"]
    assert not (tmp_path / "report").exists()


def test_the_runs_own_timing_gives_the_listed_files_times_only(exported, aflw, tmp_path):
    """A file in the input folder that the manifest does not list is run (and timed) too: its time is left out."""
    _, out = exported
    work = tmp_path / "work"
    offline.pre_process(aflw, work, input_size=SIZE, limit=2)
    listed = [entry["bin"] for entry in offline.read_manifest(work / offline.MANIFEST)["files"]]
    shutil.copy(work / "bin" / listed[0], work / "bin" / "unlisted.bin")
    result = offline.run_offline(out / "b1" / "prnet.onnx", work / "bin", tmp_path / "out", quiet=True)
    files_ms = json.loads((result / offline.TIMING).read_text())["files_ms"]
    assert sorted(files_ms) == sorted([Path(name).stem for name in listed] + ["unlisted"])
    report = offline.post_process(result, work / offline.MANIFEST, tmp_path / "report")
    assert report["latency"]["calls"] == 2
    assert report["latency"]["first_call_ms"] == files_ms[Path(listed[0]).stem]


def test_bad_inputs_are_named(exported, aflw, tmp_path):
    _, out = exported
    work = tmp_path / "work"
    offline.pre_process(aflw, work, input_size=SIZE, limit=1)
    np.zeros(10, np.float32).tofile(work / "bin" / "short.bin")
    with pytest.raises(ValueError, match="short.bin"):
        offline.run_offline(out / "b1" / "prnet.onnx", work / "bin", tmp_path / "out", quiet=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .bin file"):
        offline.run_offline(out / "b1" / "prnet.onnx", tmp_path / "empty", tmp_path / "out2")
    with pytest.raises(FileNotFoundError, match="SYNTH_0000_1_0_output_0.bin"):
        offline.post_process(tmp_path / "empty", work / offline.MANIFEST, tmp_path / "report")


def test_a_report_inside_the_data_folder_is_no_image_of_its_next_pre_process(exported, aflw, tmp_path):
    """post_process's ced.png lies beside its report.json: the next pre_process of the folder leaves it out, as
    evaluate does."""
    data = tmp_path / "data"
    shutil.copytree(aflw, data)
    work = tmp_path / "work"
    first = offline.pre_process(data, work, input_size=SIZE)
    result = offline.run_offline(exported[1] / "b1" / "prnet.onnx", work / "bin", tmp_path / "out", quiet=True)
    offline.post_process(result, work / offline.MANIFEST, data / "report")
    assert (data / "report" / "ced.png").is_file()
    again = offline.pre_process(data, tmp_path / "work2", input_size=SIZE)
    assert again["files"] == first["files"] and again["skipped"] == first["skipped"] == []


def test_post_process_removes_the_other_kind_of_reports_files(exported, aflw, tmp_path):
    """An output folder reused for a --boxes manifest's landmarks after a ground-truth report, or the other way
    round, keeps no file of the earlier kind: its numbers belong to another run."""
    model = exported[1] / "b1" / "prnet.onnx"
    work, boxed_work, images = tmp_path / "work", tmp_path / "boxed", tmp_path / "images"
    offline.pre_process(aflw, work, input_size=SIZE, limit=1)
    truth = offline.run_offline(model, work / "bin", tmp_path / "out", quiet=True)
    images.mkdir()
    shutil.copy(sorted(aflw.rglob("*.jpg"))[0], images / "photo.jpg")
    (tmp_path / "boxes.txt").write_text("photo.jpg 30 35 120 130\n")
    offline.pre_process(images, boxed_work, input_size=SIZE, boxes=tmp_path / "boxes.txt")
    boxed = offline.run_offline(model, boxed_work / "bin", tmp_path / "out", quiet=True)
    report = tmp_path / "report"
    offline.post_process(truth, work / offline.MANIFEST, report)
    offline.post_process(boxed, boxed_work / offline.MANIFEST, report)
    assert sorted(p.name for p in report.iterdir()) == ["landmarks.json", "landmarks.npz", "latency.md"]
    offline.post_process(truth, work / offline.MANIFEST, report)
    assert sorted(p.name for p in report.iterdir()) == ["ced.png", "latency.md", "predictions.npz", "report.json",
                                                        "report.md"]
    written = {"json": "report.json", "markdown": "report.md", "ced": "ced.png", "predictions": "predictions.npz",
               "latency": "latency.md"}
    assert json.loads((report / "report.json").read_text())["files"] == {
        kind: str(report / name) for kind, name in written.items()}  # not the removed landmark files


def test_a_result_folder_inside_the_input_folder_is_refused_before_anything_is_written(exported, aflw, tmp_path,
                                                                                       capsys):
    """msame runs every entry of its input folder: the next run would stop at the result folder, not a file."""
    work = tmp_path / "work"
    offline.pre_process(aflw, work, input_size=SIZE, limit=1)
    (tmp_path / "bin_link").symlink_to(work / "bin", target_is_directory=True)
    for output in (work / "bin", work / "bin" / "out", tmp_path / "bin_link" / "out" / "deeper"):
        assert face3d_main(["offline", "run", "--model", str(exported[1] / "b1" / "prnet.onnx"), "--input",
                            str(work / "bin"), "--output", str(output)]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [
            f"run failed: {output}: the output must lie outside the input folder {work / 'bin'} (msame runs every "
            "entry of its input folder: the next run would take the results for an input)"]
    assert sorted(p.name for p in (work / "bin").iterdir()) == ["SYNTH_0000_1_0.bin"]


def test_msame_text_output_is_named_with_the_option_that_wrote_it(aflw, tmp_path, capsys):
    work, result = tmp_path / "work", tmp_path / "out" / "20240101_120000"
    offline.pre_process(aflw, work, input_size=SIZE, limit=1)
    result.mkdir(parents=True)
    (result / "SYNTH_0000_1_0_output_0.txt").write_text("0.5 " * (SIZE * SIZE * 3) + "\n")
    assert face3d_main(["offline", "post_process", "--result", str(result), "--manifest", str(work / offline.MANIFEST),
                        "--output", str(tmp_path / "report")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"post_process failed: output file not found: {result / 'SYNTH_0000_1_0_output_0.bin'}, but msame wrote its "
        "text output SYNTH_0000_1_0_output_0.txt: rerun msame without --outfmt TXT (BIN is its default)"]


def test_a_wrong_size_input_stops_the_run_before_any_result(exported, aflw, tmp_path, capsys):
    _, out = exported
    work = tmp_path / "work"
    offline.pre_process(aflw, work, input_size=SIZE)
    earlier = offline.run_offline(out / "b1" / "prnet.onnx", work / "bin", tmp_path / "out", quiet=True)
    bad = work / "bin" / "SYNTH_0001_1_0.bin"  # the second of three: the first would run before it
    bad.write_bytes(bad.read_bytes()[:1000])
    assert face3d_main(["offline", "run", "--model", str(out / "b1" / "prnet.onnx"), "--input", str(work / "bin"),
                        "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"run failed: {bad}: 1000 bytes, not the model's input [1, {SIZE}, {SIZE}, 3] of float32 "
        f"({SIZE * SIZE * 3 * 4} bytes)"]
    assert list((tmp_path / "out").iterdir()) == [earlier]


def test_a_failure_during_the_run_removes_its_result_folder(exported, aflw, tmp_path, monkeypatch):
    from face3d.prnet import predictor as predictor_module
    _, out = exported
    work = tmp_path / "work"
    offline.pre_process(aflw, work, input_size=SIZE)
    load = predictor_module.load_predictor

    def failing_on_the_second_call(*args, **kwargs):
        runner, calls = load(*args, **kwargs), []
        predict = runner.predict

        def predict_once(images):
            calls.append(len(images))
            if len(calls) == 2:
                raise RuntimeError("device lost")
            return predict(images)
        runner.predict = predict_once
        return runner

    monkeypatch.setattr(predictor_module, "load_predictor", failing_on_the_second_call)
    with pytest.raises(RuntimeError, match="device lost"):
        offline.run_offline(out / "b1" / "prnet.onnx", work / "bin", tmp_path / "out", quiet=True)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("batch", [1, 2])
def test_the_input_folder_holds_only_the_model_inputs(aflw, tmp_path, batch):
    """msame runs every entry of its --input folder (its ScanFiles skips only hidden names): DIR/bin holds the
    .bin inputs, DIR/manifest.json lies beside it."""
    work = tmp_path / "work"
    manifest = offline.pre_process(aflw, work, input_size=SIZE, batch_size=batch)
    entries = sorted(os.listdir(work / "bin"))
    assert entries == sorted(entry["bin"] for entry in manifest["files"]) and len(entries) == {1: 3, 2: 2}[batch]
    for name in entries:
        assert name.endswith(".bin") and (work / "bin" / name).stat().st_size == batch * SIZE * SIZE * 3 * 4
    assert json.loads((work / offline.MANIFEST).read_text()) == manifest
    assert sorted(os.listdir(work)) == [".pre_process.lock", "bin", offline.MANIFEST]


def test_runs_at_once_into_one_output_get_a_result_folder_each(tmp_path, monkeypatch):
    """Two runs in one second: the other run makes the timestamped folder just before this one's mkdir."""
    stamp, mkdir = "20250101_120000", Path.mkdir

    def made_by_another_run_first(self, *args, **kwargs):
        if self.name == stamp and not self.exists():
            mkdir(self)
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(offline.time, "strftime", lambda form: stamp)
    monkeypatch.setattr(Path, "mkdir", made_by_another_run_first)
    (tmp_path / "out").mkdir()
    assert offline._timestamp_folder(tmp_path / "out") == tmp_path / "out" / f"{stamp}_1"
    assert sorted(os.listdir(tmp_path / "out")) == [stamp, f"{stamp}_1"]


def test_a_result_folder_under_a_dangling_link_is_one_error_not_an_endless_search(tmp_path):
    (tmp_path / "out").symlink_to(tmp_path / "gone")
    with pytest.raises(InputFileError) as raised:
        offline._timestamp_folder(tmp_path / "out")
    assert str(raised.value) == f"{tmp_path / 'out'}: not a folder (a file, or a link to a missing folder)"


def test_run_reads_the_manifest_beside_its_input_folder(exported, aflw, tmp_path, capsys):
    _, out = exported
    work = tmp_path / "work"
    manifest = offline.pre_process(aflw, work, input_size=SIZE, limit=2)
    result = offline.run_offline(out / "b1" / "prnet.onnx", work / "bin", tmp_path / "out", quiet=True)
    assert json.loads((result / offline.TIMING).read_text())["run_id"] == manifest["run_id"]
    (work / offline.MANIFEST).rename(work / "bin" / offline.MANIFEST)  # the layout msame would run it in
    argv = ["offline", "run", "--model", str(out / "b1" / "prnet.onnx"), "--input", str(work / "bin"), "--output",
            str(tmp_path / "out2")]
    assert face3d_main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"run failed: manifest not found: {work / offline.MANIFEST} (pre_process writes DIR/{offline.MANIFEST} "
        "beside the input folder DIR/bin)"]
    (work / "bin" / offline.MANIFEST).rename(work / offline.MANIFEST)
    (work / "bin" / "notes.txt").write_text("msame would feed this file to the model too\n")
    assert face3d_main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"run failed: {work / 'bin' / 'notes.txt'}: ")
    assert not (tmp_path / "out2").exists()


def test_an_image_without_a_mat_is_listed_as_skipped_in_the_manifest(aflw, tmp_path, capsys):
    """As in face3d evaluate: a stray image is no sample, and the manifest (then post_process's report) says so."""
    import shutil
    data = tmp_path / "data"
    shutil.copytree(aflw, data)
    shutil.copy(sorted(data.rglob("*.jpg"))[0], data / "stray.jpg")
    manifest = offline.pre_process(data, tmp_path / "work", input_size=SIZE)
    assert len(manifest["samples"]) == 3
    assert manifest["skipped"] == [{"image": str(data / "stray.jpg"), "reason": "no .mat beside it"}]
    # the command counts it and exits 1, as face3d evaluate does for the same folder
    assert face3d_main(["offline", "pre_process", "--data", str(data), "--output", str(tmp_path / "work2"),
                        "--input-size", str(SIZE)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"wrote 3 .bin files for 3 faces to {tmp_path / 'work2' / 'bin'} and {tmp_path / 'work2' / offline.MANIFEST} "
        "(1 skipped)"]


def test_a_linked_subfolder_is_pre_processed_as_evaluate_lists_it(aflw, tmp_path):
    """Links to folders are followed (each folder once), as face3d evaluate, generate and fit follow them."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "linked").symlink_to(aflw, target_is_directory=True)
    (data / "loop").symlink_to(data, target_is_directory=True)
    manifest = offline.pre_process(data, tmp_path / "work", input_size=SIZE)
    names = [f"linked/{path.relative_to(aflw).with_suffix('').as_posix()}" for path in sorted(aflw.rglob("*.jpg"))]
    assert len(names) == 3 and [record["name"] for record in manifest["samples"]] == names
    assert manifest["skipped"] == []


def test_each_batch_is_written_once_full_and_a_failed_run_leaves_the_earlier_one(aflw, tmp_path, monkeypatch):
    """Not every crop is held until the end: a batch is written (staged, hidden) as soon as it is full; all are
    moved in at the end, so a run stopped midway leaves the earlier run's files as they were."""
    from face3d.prnet import face_crop
    work = tmp_path / "work"
    offline.pre_process(aflw, work, input_size=SIZE, limit=1)
    earlier = {path.relative_to(work): path.is_file() and path.read_bytes() for path in work.rglob("*")}
    crop_face, seen = face_crop.crop_face, []

    def crop_face_stopped_at_the_third(*args):
        seen.append(sorted(path.name for path in work.rglob("*.bin")))
        if len(seen) == 3:
            raise KeyboardInterrupt
        return crop_face(*args)

    monkeypatch.setattr(face_crop, "crop_face", crop_face_stopped_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        offline.pre_process(aflw, work, input_size=SIZE, batch_size=2)
    assert seen == [["SYNTH_0000_1_0.bin"]] * 2 + [["SYNTH_0000_1_0.bin", "batch_00000.bin"]]
    assert {path.relative_to(work): path.is_file() and path.read_bytes() for path in work.rglob("*")} == earlier


def test_a_rerun_removes_the_bin_files_of_the_earlier_one(aflw, tmp_path, caplog):
    work = tmp_path / "work"
    first = offline.pre_process(aflw, work, input_size=SIZE, batch_size=1)
    assert len(first["files"]) > 1
    np.zeros(4, np.float32).tofile(work / "bin" / "mine.bin")  # not pre_process's: left alone, with a warning
    with caplog.at_level(logging.WARNING, logger="face3d.prnet.offline"):
        second = offline.pre_process(aflw, work, input_size=SIZE, batch_size=2, limit=1)
    assert sorted(p.name for p in (work / "bin").glob("*.bin")) == sorted(
        [entry["bin"] for entry in second["files"]] + ["mine.bin"])
    assert f"{work / 'bin'} also holds mine.bin, not listed in {work / offline.MANIFEST}" in caplog.text


def test_a_rerun_stopped_while_moving_its_bin_files_in_leaves_no_manifest_describing_them(aflw, tmp_path,
                                                                                            monkeypatch):
    """The earlier manifest goes before the new .bin files come (here of the same names, other crop sizes), and the
    new one is written last: a run stopped between the two leaves no manifest rather than a wrong one."""
    work = tmp_path / "work"
    first = offline.pre_process(aflw, work, input_size=SIZE, batch_size=1, limit=2)
    replace, moved = os.replace, []

    def replace_stopped_at_the_second_bin(source, target, **kwargs):
        if Path(target).parent == work / "bin":
            moved.append(Path(target).name)
            if len(moved) == 2:
                raise KeyboardInterrupt
        return replace(source, target, **kwargs)

    monkeypatch.setattr(os, "replace", replace_stopped_at_the_second_bin)
    with pytest.raises(KeyboardInterrupt):
        offline.pre_process(aflw, work, input_size=SIZE // 2, batch_size=1, limit=2)
    assert moved == [entry["bin"] for entry in first["files"]]  # the same names
    assert (work / "bin" / moved[0]).stat().st_size == 4 * (SIZE // 2) ** 2 * 3  # one new crop of float32 RGB
    assert not (work / offline.MANIFEST).exists()
    assert sorted(path.relative_to(work).as_posix() for path in work.rglob("*")) == [".pre_process.lock", "bin",
                                                                                f"bin/{moved[0]}"]


def test_a_rerun_over_the_earlier_layout_removes_its_manifest_and_inputs(aflw, tmp_path):
    """Earlier releases wrote the manifest among the inputs, where msame would run it as one."""
    work = tmp_path / "work"
    first = offline.pre_process(aflw, work, input_size=SIZE, batch_size=1)
    (work / offline.MANIFEST).rename(work / "bin" / offline.MANIFEST)
    second = offline.pre_process(aflw, work, input_size=SIZE, batch_size=2, limit=1)
    assert len(first["files"]) > 1 and len(second["files"]) == 1
    assert sorted(p.name for p in (work / "bin").iterdir()) == [second["files"][0]["bin"]]


def _aflw2000():
    return fixtures_dir() / "AFLW2000"


@pytest.mark.skipif(not _aflw2000().is_dir(), reason="shared AFLW2000-3D fixtures absent")
def test_round_trip_on_real_aflw2000_samples(exported, tmp_path):
    work = tmp_path / "work"
    model, out = exported
    reference = evaluation.evaluate_model(PRN(model), _aflw2000())
    offline.pre_process(_aflw2000(), work, input_size=SIZE)
    result = offline.run_offline(out / "b1" / "prnet.onnx", work / "bin", tmp_path / "out", quiet=True)
    report = offline.post_process(result, work / offline.MANIFEST, tmp_path / "report")
    assert report["samples"] == reference["samples"] == 2
    for key in ("nme_2d", "nme_3d"):
        assert abs(report[key] - reference[key]) < 1e-4


def test_an_input_size_outside_the_uv_resolution_is_one_error(aflw, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        face3d_main(["offline", "pre_process", "--data", str(aflw), "--output", str(tmp_path / "zero"),
                     "--input-size", "0"])
    assert info.value.code == 2 and "expected an integer >= 1, got '0'" in capsys.readouterr().err
    assert face3d_main(["offline", "pre_process", "--data", str(aflw), "--output", str(tmp_path / "big"),
                        "--input-size", "512"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()  # once, not once per sample
    assert line.startswith("pre_process failed: input_size must be in [1, 256]") and line.endswith("got 512")
    assert not (tmp_path / "big").exists()
