"""Inference API: model loaders, crops, restoring maps, landmarks, pose, visibility, depth, OBJ, demo.

Budget: about 30 s on 2 cores (building and exporting a 32 x 32 width-2 network, one SavedModel load, one
subprocess without TensorFlow).
"""
import dataclasses
import errno
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import _inference_helpers as helpers
import cv2
import numpy as np
import pytest
from _fake_dlib import CNN_MODEL_FILE, SHAPE_PREDICTOR_FILE, install_fake_dlib, install_models_package
from _image_files import png_header, with_exif_orientation

from face3d.cli import main as face3d_main
from face3d.contract import POSMAP_SCALE
from face3d.mesh import io as mesh_io
from face3d.mesh.transform import angle2matrix, angle2matrix_3ddfa
from face3d.prnet import inference
from face3d.prnet.data import AugmentConfig, augment_sample
from face3d.prnet.demo import list_images
from face3d.prnet.inference import PRN
from face3d.prnet.predictor import load_predictor
from face3d.prnet.prnet_checkpoint import uv_data_for_model
from face3d.prnet.uv_weights import resample_indices, resample_map, resize_uv_data
from face3d.resources import default_uv_data_dir
from face3d.trainset import sample_io
from face3d.trainset.crop import CropBox, crop_matrix, keypoint_box
from face3d.trainset.posmap import keypoints_from_map
from face3d.trainset.uv_layout import load_uv_data
from tests._fixtures import fixtures_dir

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def default_model():
    from face3d.morphable_model import MorphableModel
    return MorphableModel()


@pytest.fixture(scope="module")
def uv():
    return load_uv_data(default_uv_data_dir())


@pytest.fixture(scope="module")
def generator(default_model):
    from face3d.trainset.sample import GenerationConfig, TrainsetGenerator
    return TrainsetGenerator(default_model, GenerationConfig(resolution=256, angles=(), perturb=False))


@pytest.fixture(scope="module")
def rendered(default_model, generator):
    """A rendered 300 x 300 default face (yaw about 20 degrees), its parameters, its unperturbed training pair and
    its image-space vertices (V @ A.T + b)."""
    from face3d.trainset.synthetic import synthesize_sample
    image, mat = synthesize_sample(default_model, np.random.default_rng([7, 1]), size=300, yaw_fraction=0.61)
    sample = generator.generate(image, mat, "face", seed=0)[0]
    A, b = generator.image_pose(mat["Pose_Para"], 300)
    placed = generator.vertices(mat["Shape_Para"], mat["Exp_Para"]).astype(np.float64) @ A.T + b
    return image, mat, sample, placed


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 32 x 32, width-2 resfcn256 with random batch-norm statistics, saved as .keras, SavedModel and exported
    (face3d.prnet.export) as a batch-2 frozen .pb and ONNX."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import keras

    from face3d.prnet.export import export_model
    from face3d.prnet.model import build_resfcn256
    folder = tmp_path_factory.mktemp("tiny")
    keras.utils.set_random_seed(0)
    model = helpers.randomize_batch_norms(build_resfcn256(32, 2))
    model.save(folder / "tiny.keras")
    model.export(str(folder / "saved"), verbose=False)
    export_model(model, folder / "export", batch_size=2, onnx=True, run_atc=False)
    return {"model": model, "keras": folder / "tiny.keras", "saved": folder / "saved",
            "pb": folder / "export" / "prnet.pb", "onnx": folder / "export" / "prnet.onnx"}


@pytest.fixture(scope="module")
def constant_onnx(tmp_path_factory, rendered):
    """An ONNX model at 256 whose output is the rendered face's normalised training map, whatever the input."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    _, _, sample, _ = rendered
    normalised = sample.posmap / np.float32(POSMAP_SCALE * 256)
    return helpers.constant_onnx(tmp_path_factory.mktemp("const") / "constant.onnx", normalised), normalised


# ------------------------------------------------------------------------------------------------ predictors

def test_every_backend_matches_keras(tiny):
    images = np.random.default_rng(1).random((3, 32, 32, 3)).astype(np.float32)
    expected = tiny["model"].predict_on_batch(images)
    assert expected.std() > 1e-3  # the random statistics make the output depend on the input
    for key, backend, batch in (("keras", "keras", None), ("saved", "saved_model", None),
                                ("pb", "frozen_graph", 2), ("onnx", "onnx", 2)):
        predictor = load_predictor(tiny[key])
        assert (predictor.backend, predictor.input_size, predictor.batch_size) == (backend, 32, batch)
        out = predictor.predict(images)  # 3 images: a fixed batch of 2 takes two calls, the last one padded
        assert out.shape == (3, 32, 32, 3) and out.dtype == np.float32
        np.testing.assert_allclose(out, expected, atol=2e-5, err_msg=key)
        np.testing.assert_allclose(predictor.predict(images[0]), expected[0], atol=2e-5, err_msg=key)


def test_load_predictor_errors(tmp_path, tiny):
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        load_predictor(tmp_path / "missing.onnx")
    (tmp_path / "model.txt").write_text("x")
    with pytest.raises(ValueError, match=r"unknown model type '\.txt'"):
        load_predictor(tmp_path / "model.txt")
    (tmp_path / "broken.pb").write_bytes(b"\x01\x02garbage")
    with pytest.raises(ValueError, match="broken.pb"):
        load_predictor(tmp_path / "broken.pb")
    with pytest.raises(ValueError, match="no input node named 'image'"):
        load_predictor(tiny["pb"], input_name="image")
    with pytest.raises(ValueError, match=r"\(N, 32, 32, 3\)"):
        load_predictor(tiny["onnx"]).predict(np.zeros((1, 64, 64, 3), np.float32))


def test_onnx_model_with_nchw_input_is_refused(tmp_path):
    """A channels-first model (a PyTorch export) is named with its shape, not run into an ONNX Runtime error."""
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Sigmoid", ["input"], ["output"])], "nchw",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, 32, 32])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "nchw.onnx"))
    with pytest.raises(ValueError) as caught:
        load_predictor(tmp_path / "nchw.onnx")
    assert str(caught.value) == (f"{tmp_path / 'nchw.onnx'}: input 'input' has shape ['N', 3, 32, 32], expected NHWC "
                                 "(batch, S, S, 3)")


def test_onnx_inference_never_imports_tensorflow(constant_onnx, rendered, tmp_path):
    path, normalised = constant_onnx
    np.save(tmp_path / "image.npy", rendered[0])
    code = (
        "import sys, numpy as np\n"
        "from face3d.prnet.inference import PRN\n"
        f"prn = PRN(r'{path}')\n"
        f"pos = prn.process(np.load(r'{tmp_path / 'image.npy'}'), box=(80, 60, 220, 230))\n"
        "print(prn.predictor.backend, pos.shape, 'tensorflow' in sys.modules, 'keras' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["onnx", "(256,", "256,", "3)", "False", "False"]


# ------------------------------------------------------------------------------------------------ crops

def test_box_crop_is_prnets_rule():
    box = inference.box_crop((100, 50, 200, 170))  # mean side (100 + 120) / 2 = 110
    # PRNet's api.process: size = int(old_size * 1.58), the centre not rounded
    assert box == CropBox(150.0, 110.0 + 0.14 * 110.0, 173.0)
    assert inference.box_crop((100, 120, 300, 330)) == CropBox(200.0, 225.0 + 0.14 * 205.0, 323.0)  # not 323.9
    assert inference.box_crop((10, 10, 10.5, 10.5)).size == 1.0  # never below a pixel
    for bad in ((0, 0, 0, 10), (5, 5, 1, 10), (0, 0, np.nan, 10)):
        with pytest.raises(ValueError, match="box"):
            inference.box_crop(bad)


def test_landmark_crop_is_the_generators_rule(rendered):
    points = rendered[3][:68, :2] * 0.5 + 40.0
    expected = keypoint_box(points, 1.5)
    assert inference.landmark_crop(points) == expected
    assert inference.landmark_crop(points.T) == expected  # (2, 68) accepted
    assert inference.LANDMARK_SCALE == 1.5
    with pytest.raises(ValueError, match="landmarks"):
        inference.landmark_crop(np.zeros((68, 2)) + [3.0, 4.0])


def test_a_box_is_four_numbers_not_a_detectors_five(constant_onnx):
    """(x0, y0, x1, y1, score), as face detectors return boxes, or 3 numbers: one message saying what a box is."""
    prn = PRN(constant_onnx[0])
    image = np.zeros((40, 40, 3), np.uint8)
    for box, count in (((5, 5, 35, 35, 0.9), 5), ((5, 5, 35), 3)):
        message = rf"^box must be 4 numbers \(x0, y0, x1, y1\), got {count}$"
        with pytest.raises(ValueError, match=message):
            prn.crop(image, box=box)
        with pytest.raises(ValueError, match=message):
            prn.process(image, box=box)
        with pytest.raises(ValueError, match=message):
            inference.box_crop(box)
    assert inference.box_crop(np.array([[5, 5], [35, 35]])) == inference.box_crop((5, 5, 35, 35))  # 4 numbers


def test_landmark_crops_need_the_68_ibug_points(constant_onnx, rendered, default_model):
    """Fewer points (a detector's 5, AFLW's 21 pt2d) have a smaller box than the 68: their crop would frame the face
    tighter than training did. They are refused with the advice to crop from a box."""
    prn = PRN(constant_onnx[0])
    image, _, _, placed = rendered
    points = placed[default_model.kpt_ind, :2]
    advice = "; for fewer points (a detector's 5, AFLW's 21) crop from the face's box (x0, y0, x1, y1) instead"
    for landmarks, shape in ((points[[36, 45, 30, 48, 54]], "(5, 2)"), (points[:21].T, "(2, 21)"),
                             (np.hstack([points, points]), "(68, 4)")):
        message = f"expected 68 landmarks as (68, 2|3) or (2|3, 68), in iBUG order, got shape {shape}{advice}"
        for crop in (prn.crop, prn.process):
            with pytest.raises(ValueError) as error:
                crop(image, landmarks=landmarks)
            assert str(error.value) == message
        with pytest.raises(ValueError) as error:
            inference.landmark_crop(landmarks)
        assert str(error.value) == message
    assert prn.crop(image, landmarks=points.T).box == inference.landmark_crop(points) == keypoint_box(points, 1.5)


def test_a_face_outside_the_image_is_refused_not_cropped_black(constant_onnx):
    """A box, or landmarks whose box, overlaps no pixel of the image: its crop would be all black (a box meant for
    another image, or in other units). One touching the image is cropped."""
    prn = PRN(constant_onnx[0])
    image = np.full((450, 450, 3), 128, np.uint8)
    message = "^box: 5000 5000 6000 6000 lies outside the 450 x 450 image$"
    with pytest.raises(ValueError, match=message):
        prn.crop(image, box=(5000, 5000, 6000, 6000))
    with pytest.raises(ValueError, match=message):
        prn.process(image, box=(5000, 5000, 6000, 6000))
    landmarks = np.column_stack([np.linspace(5000, 5100, 68), np.linspace(-300, -1, 68)])
    with pytest.raises(ValueError, match=r"^landmarks' box: 5000 -300 5100 -1 lies outside the 450 x 450 image$"):
        prn.crop(image, landmarks=landmarks)
    with pytest.raises(ValueError, match=r"^landmarks' box: 5000 -300 5100 -1 lies outside the 450 x 450 image$"):
        prn.process(image, landmarks=landmarks.T)
    # touching the first or last pixel centre is overlapping: cropped
    assert prn.crop(image, box=(-100, -100, 0, 0)).image.max() > 0
    assert prn.crop(image, landmarks=landmarks - [4551, -749]).image.max() > 0  # x 449..549, y 449..748


def test_crop_is_the_training_crop(rendered, default_model):
    """Cropping the source image around its 68 keypoints reproduces the generator's training crop."""
    image, _, sample, placed = rendered
    crop = inference.crop_face(image, inference.landmark_crop(placed[default_model.kpt_ind]), 256, 256)
    # the generator places the keypoints in float32: the boxes agree to about 1e-5 pixel
    np.testing.assert_allclose(crop.matrix, sample.crop_matrix, rtol=1e-5, atol=1e-4)
    assert np.abs(np.rint(crop.image * 255) - sample.image).max() <= 1


def test_reduced_input_crop_matches_the_training_resampling(rendered, uv):
    """At S < R the crop is taken straight at S where training resamples the R crop to S: same picture."""
    image, _, sample, _ = rendered
    box = inference.box_crop((90, 70, 210, 200))
    full = inference.crop_face(image, box, 256, 256)
    small = inference.crop_face(image, box, 64, 256)
    np.testing.assert_array_equal(small.matrix, full.matrix)  # the map's frame is the R crop in both
    params = {"angle": 0.0, "scale": 1.0, "shift": np.zeros(2)}
    resampled, _ = augment_sample(np.rint(full.image * 255).astype(np.uint8), sample.posmap, params, 64,
                                  AugmentConfig.off(), uv.uv_kpt_ind)
    assert small.image.shape == (64, 64, 3)
    assert np.abs(small.image - resampled).mean() < 0.02


@pytest.mark.parametrize("input_size", [32, 16, 8])
def test_reduced_input_crop_pixels_sit_at_the_centres_of_the_map_pixels_they_cover(input_size):
    """At S < R pixel q of the S crop reads the R crop at k q + (k - 1) / 2 (k = R / S), the centre of the k x k
    R pixels it stands for, as training's resampling places it (``data.augment_sample``).

    On a photo whose red and green are the pixel's own x and y, a box of side 62 maps one R = 32 crop pixel to two
    image pixels from x = 9, y = 19: S pixel q reads image x = 9 + 2 (k q + (k - 1) / 2), an integer for k = 1, 2, 4,
    where OpenCV's bilinear warp returns the ramp's value exactly."""
    r, height, width = 32, 100, 90
    ys, xs = np.mgrid[0:height, 0:width]
    photo = np.stack([xs, ys, np.full_like(xs, 128)], axis=-1).astype(np.uint8)
    crop = inference.crop_face(photo, CropBox(40.0, 50.0, 62.0), input_size, r)
    k = r / input_size
    centres = 2 * (k * np.arange(input_size) + (k - 1) / 2)
    values = crop.image * 255
    np.testing.assert_allclose(values[..., 0], np.broadcast_to(9 + centres, values.shape[:2]), rtol=0, atol=1e-4)
    np.testing.assert_allclose(values[..., 1], np.broadcast_to(19 + centres[:, None], values.shape[:2]), rtol=0,
                               atol=1e-4)
    np.testing.assert_allclose(values[..., 2], 128, rtol=0, atol=1e-4)


# ------------------------------------------------------------------------------------------------ restoring

def test_restore_inverts_the_generators_crop(rendered, uv, default_model):
    image, mat, sample, placed = rendered
    pos = inference.restore_map(sample.posmap / np.float32(POSMAP_SCALE * 256), sample.crop_matrix, 256)
    landmarks = keypoints_from_map(pos, uv.uv_kpt_ind)
    truth = placed[default_model.kpt_ind]
    np.testing.assert_allclose(landmarks[:, :2], truth[:, :2], atol=2e-3)
    # z: the map holds k (z - min z) in crop pixels; restored it is z - min z in image pixels
    np.testing.assert_allclose(landmarks[:, 2], truth[:, 2] - placed[:, 2].min(), atol=2e-3)
    vertices = inference.vertices_from_map(pos, uv.face_ind)
    assert vertices.shape == (len(uv.face_ind), 3)
    np.testing.assert_array_equal(vertices[0], pos.reshape(-1, 3)[uv.face_ind[0]])


def test_reduced_maps_are_read_where_training_reads_them(uv):
    """An S x S output expanded to R x R nearest-neighbour gives, at uv_kpt_ind, the values at the trainer's
    resized keypoints (uv_weights.resize_uv_data)."""
    s, r = 64, 256
    output = np.random.default_rng(2).random((s, s, 3)).astype(np.float32)
    matrix = crop_matrix(CropBox(128.0, 140.0, 200.0), r)
    pos = inference.restore_map(output, matrix, r)
    small_kpt = resize_uv_data(uv, s).uv_kpt_ind
    at_kpt = output[small_kpt[1], small_kpt[0]].astype(np.float64) * POSMAP_SCALE * r
    k = (r - 1) / 200.0
    expected_xy = at_kpt[:, :2] / k + np.array([128.0 - 100.0, 140.0 - 100.0])
    landmarks = keypoints_from_map(pos, uv.uv_kpt_ind)
    np.testing.assert_allclose(landmarks[:, :2], expected_xy, rtol=1e-5)
    np.testing.assert_allclose(landmarks[:, 2], at_kpt[:, 2] / k, rtol=1e-5)


@pytest.mark.parametrize("s", [128, 96, 64])
def test_reduced_training_targets_restore_to_the_keypoints_themselves(rendered, uv, s):
    """A perfect S x S output (the training target of a sample, ``uv_weights.resample_map``) restored to R x R
    gives at uv_kpt_ind the sample's keypoints bit for bit, as the R x R output does: not a neighbouring UV pixel's
    values (the packaged keypoints have their S pixels to themselves at these sizes)."""
    _, _, sample, _ = rendered
    normalised = sample.posmap / np.float32(POSMAP_SCALE * 256)
    full = keypoints_from_map(inference.restore_map(normalised, sample.crop_matrix, 256), uv.uv_kpt_ind)
    small = resample_map(normalised, uv.uv_kpt_ind, s)
    landmarks = keypoints_from_map(inference.restore_map(small, sample.crop_matrix, 256), uv.uv_kpt_ind)
    np.testing.assert_array_equal(landmarks, full)
    nearest = inference.restore_map(normalised[np.ix_(*[resample_indices(256, s)] * 2)], sample.crop_matrix, 256)
    assert np.abs(keypoints_from_map(nearest, uv.uv_kpt_ind) - full).max() > 0.5  # pixels of the image


# ------------------------------------------------------------------------------------------------ geometry

def test_pose_recovers_known_angles(default_model, uv):
    canonical = inference.canonical_vertices(default_model, uv)
    assert canonical.shape == (len(uv.face_ind), 3)
    angles = np.array([0.2, -0.7, 0.1])  # radians, 300W-LP convention
    R = angle2matrix_3ddfa(angles)
    image = 0.002 * canonical.astype(np.float64) @ R.T + [150.0, 20.0, 3.0]
    image[:, 1] = 299 - image[:, 1]  # image rows point down
    pose = inference.estimate_pose(image, canonical)
    np.testing.assert_allclose(pose.angles_3ddfa, angles, atol=1e-6)
    np.testing.assert_allclose(pose.R, R, atol=1e-6)
    np.testing.assert_allclose(angle2matrix(pose.angles), R, atol=1e-6)  # face3d's degrees describe the same R
    assert pose.scale == pytest.approx(0.002, rel=1e-6)
    # t2d is the translation of (x, -y): x moved by 150, the up-pointing y by 20 - 299
    np.testing.assert_allclose(pose.t2d, [150.0, 20.0 - 299.0], atol=1e-6)
    # the documented camera: image (x, -y) = scale R @ canonical + t2d, to float64 rounding (the placement is exact)
    projected = pose.scale * canonical.astype(np.float64) @ pose.R[:2].T + pose.t2d
    np.testing.assert_allclose(projected, image[:, :2] * [1, -1], rtol=0, atol=1e-6)
    through_prn = PRN(helpers.OraclePredictor(256), uv_data=uv, bfm=default_model).estimate_pose(image)
    np.testing.assert_array_equal(through_prn.t2d, pose.t2d)  # the PRN method is this function on its canonical
    np.testing.assert_array_equal(through_prn.R, pose.R)
    with pytest.raises(ValueError, match="degenerate"):
        inference.estimate_pose(np.zeros_like(image), canonical)


@pytest.mark.parametrize("axis, seen", [(0, "looks down"), (1, "turns to the image's right"),
                                         (2, "tilts counter-clockwise")])
def test_pose_angle_signs_are_those_documented(default_model, axis, seen):
    """``angles`` (face3d) is positive, ``angles_3ddfa`` (300W-LP) negative, when the face looks down, turns to the
    image's right or tilts counter-clockwise on the image, as the README and ``PoseEstimate`` say."""
    mean = default_model.model["shapeMU"].reshape(-1, 3).astype(np.float64)
    angles = np.zeros(3)
    angles[axis] = 20.0
    image = 0.002 * mean @ angle2matrix(angles).T + [150.0, 0.0, 0.0]
    image[:, 1] = 299 - image[:, 1]  # image rows point down
    centre = image.mean(axis=0)
    nose, right_eye, left_eye = image[default_model.kpt_ind[[30, 36, 45]]]  # iBUG 36: the image's left eye
    frontal_nose = (0.002 * mean[default_model.kpt_ind[30]] - 0.002 * mean.mean(axis=0)) * [1, -1, 1]
    what = {"looks down": nose[1] - centre[1] > frontal_nose[1], "turns to the image's right": nose[0] > centre[0],
            "tilts counter-clockwise": right_eye[1] > left_eye[1]}
    assert what[seen]
    pose = inference.estimate_pose(image, mean)
    assert pose.angles[axis] == pytest.approx(20.0, abs=1e-6)
    assert pose.angles_3ddfa[axis] < 0


def test_pose_of_a_restored_mean_face_matches_its_pose_para(default_model, generator, uv):
    from face3d.trainset.synthetic import synthesize_sample
    image, mat = synthesize_sample(default_model, np.random.default_rng([3, 3]), size=300, yaw_fraction=0.8)
    mat["Shape_Para"][:] = 0
    mat["Exp_Para"][:] = 0
    sample = generator.generate(image, mat, "mean", seed=0)[0]
    pos = inference.restore_map(sample.posmap / np.float32(POSMAP_SCALE * 256), sample.crop_matrix, 256)
    pose = inference.estimate_pose(inference.vertices_from_map(pos, uv.face_ind),
                                   inference.canonical_vertices(default_model, uv))
    np.testing.assert_allclose(pose.angles_3ddfa, mat["Pose_Para"][0, :3], atol=1e-4)


def _two_squares():
    """A front 21 x 21 grid square (z = 10) over the middle of a back 41 x 41 one (z = 0), 1 pixel spacing."""
    def grid(n, x0, z):
        ys, xs = np.mgrid[0:n, 0:n]
        vertices = np.column_stack([xs.ravel() + x0, ys.ravel() + x0, np.full(n * n, z)]).astype(np.float32)
        index = np.arange(n * n).reshape(n, n)
        a, b, c, d = index[:-1, :-1], index[:-1, 1:], index[1:, :-1], index[1:, 1:]
        triangles = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([b, d, c], -1).reshape(-1, 3)])
        return vertices, triangles
    back, back_tri = grid(41, 10, 0.0)
    front, front_tri = grid(21, 20, 10.0)
    return np.vstack([back, front]), np.vstack([back_tri, front_tri + len(back)]).astype(np.int32), len(back)


def test_visibility_hides_what_is_behind():
    vertices, triangles, n_back = _two_squares()
    visible = inference.vertex_visibility(vertices, triangles, 64, 64)
    back = vertices[:n_back]
    assert visible[n_back:].all()
    hidden = (back[:, 0] >= 23) & (back[:, 0] <= 37) & (back[:, 1] >= 23) & (back[:, 1] <= 37)
    assert not visible[:n_back][hidden].any()  # under the front square, beyond the 2 dilation rings
    outside = (back[:, 0] < 19) | (back[:, 0] > 41) | (back[:, 1] < 19) | (back[:, 1] > 41)
    assert visible[:n_back][outside].all()
    assert not inference.vertex_visibility(vertices + [100, 0, 0], triangles, 64, 64).any()  # outside the image


def test_depth_image_of_a_slope():
    vertices, triangles, n_back = _two_squares()
    vertices = vertices[:n_back].copy()
    triangles = triangles[:(40 * 40 * 2)]
    vertices[:, 2] = vertices[:, 0]  # depth grows with x from 10 to 50
    depth = inference.depth_image(vertices, triangles, 64, 64)
    assert depth.shape == (64, 64) and depth.dtype == np.float32
    # pixel centres on the right edge (x = 50) belong to no triangle (the rasterizer's top-left rule)
    np.testing.assert_allclose(depth[30, 10:50], (np.arange(10, 50) - 10) / 40.0, atol=1e-6)
    assert depth[5, 5] == 0 and depth[30, 55] == 0


def test_colors_and_texture_read_the_image():
    image = np.random.default_rng(3).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    vertices = np.array([[0, 0, 0], [49, 39, 1], [10.4, 20.6, 2], [-5, 60, 0]], np.float32)
    colors = inference.sample_colors(image, vertices)
    np.testing.assert_allclose(colors, image[[0, 39, 21, 39], [0, 49, 10, 0]] / 255.0, rtol=1e-6)
    ys, xs = np.mgrid[0:40, 0:50].astype(np.float32)
    identity = np.stack([xs, ys, np.zeros_like(xs)], -1)
    np.testing.assert_array_equal(inference.texture_from_map(image, identity), image)


@pytest.mark.parametrize("vertices, message", [
    (np.zeros((4, 3), np.float32).T, r"^vertices must have shape \(n, 3\), got \(3, 4\)$"),
    (np.zeros(3, np.float32), r"^vertices must have shape \(n, 3\), got \(3,\)$"),
    (np.array([[1, 2, 0], [np.nan, 2, 0]], np.float32), "^vertices must be finite, found NaN or inf$"),
])
def test_colors_refuse_the_vertices_visibility_refuses(vertices, message):
    """get_colors takes the vertices get_visibility and get_depth_image take, and refuses the others alike:
    transposed ones (which it would read as 3 vertices), a single vertex, a NaN coordinate."""
    image = np.zeros((40, 50, 3), np.uint8)
    triangles = np.zeros((1, 3), np.int32)
    for read in (lambda: inference.sample_colors(image, vertices),
                 lambda: inference.vertex_visibility(vertices, triangles, 40, 50)):
        with pytest.raises(ValueError, match=message):
            read()


def test_maps_are_read_at_the_uv_data_s_resolution(uv):
    """face_ind and uv_kpt_ind index a 256 x 256 map: a map of another size is refused, naming 256, rather than
    read at the wrong pixels (512) or past its end (128)."""
    prn = PRN(helpers.OraclePredictor(256), uv_data=uv)
    pos = np.random.default_rng(6).random((256, 256, 3)).astype(np.float32)
    np.testing.assert_array_equal(prn.get_vertices(pos), pos.reshape(-1, 3)[uv.face_ind])
    np.testing.assert_array_equal(prn.get_landmarks(pos), pos[uv.uv_kpt_ind[1], uv.uv_kpt_ind[0]])
    for shape in ((512, 512, 3), (128, 128, 3), (1, 256, 256, 3), (3, 256, 256)):
        message = (rf"^pos must be a \(256, 256, 3\) position map \(the uv-data's resolution is 256\), got shape "
                   rf"{re.escape(str(shape))}$")
        for read in (prn.get_vertices, prn.get_landmarks):
            with pytest.raises(ValueError, match=message):
                read(np.zeros(shape, np.float32))


def _remap_whole_image(image, pos):
    """PRNet's texture read-out: cv2.remap of the whole image at the map's x, y."""
    return cv2.remap(image, np.ascontiguousarray(pos[..., 0]), np.ascontiguousarray(pos[..., 1]),
                     interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def test_texture_reads_the_face_s_sub_image_as_the_whole_image_would():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    pos = np.zeros((16, 16, 3), np.float32)
    pos[..., 0] = rng.uniform(20, 45, (16, 16))
    pos[..., 1] = rng.uniform(-3, 30, (16, 16))  # some above the image: black, half-black at its edge
    pos[:4, :4, :2] = np.round(pos[:4, :4, :2]) - np.float32(1 / 70)  # rounded by remap to the next pixel
    pos[0, 0, 0], pos[0, 1, 1] = np.nan, np.inf
    np.testing.assert_array_equal(inference.texture_from_map(image, pos), _remap_whole_image(image, pos))
    # a 33000-pixel-wide panorama (cv2.remap takes sides < 32767): read from the face's part of it
    wide = rng.integers(0, 256, (8, 33000, 3), dtype=np.uint8)
    pos[..., 0] += 32900
    left = 32800
    texture = inference.texture_from_map(wide, pos)
    np.testing.assert_array_equal(texture, _remap_whole_image(wide[:, left:], pos - np.float32([left, 0, 0])))
    assert texture[8:, 8:].any()
    pos[0, 2, 0], pos[0, 3, 0] = 10.0, 32950.5  # a face across the panorama: taps 8 to 32952
    with pytest.raises(ValueError, match=r"the face covers 32945 x 8 pixels of the image; the texture read-out "
                                         r"\(OpenCV's remap\) takes at most 32766 pixels a side"):
        inference.texture_from_map(wide, pos)


@pytest.mark.parametrize("transposed", [False, True], ids=["wide", "tall"])
def test_the_read_out_takes_a_face_of_32766_pixels_a_side_and_refuses_32767(transposed):
    """The face's sub-image may be as long as cv2.remap takes (sides under SHRT_MAX = 32767), and no longer. The map's
    x runs over whole pixels from 10 to ``last``, so the taps, 2 pixels either side, cover pixels 8 to last + 2,
    last - 5 of them; y runs from 2 to 5 in an 8-pixel-high image: all 8 rows. A whole-pixel tap reads that pixel
    alone, so the texture is the image's pixels at the map. The same face turned on its side checks the height."""
    from face3d.prnet.readout import RemapLimitError

    rng = np.random.default_rng(6)
    image = rng.integers(0, 256, (8, 33000, 3), dtype=np.uint8)
    x = rng.integers(10, 32771, (4, 4))
    y = rng.integers(2, 6, (4, 4))
    x[0, 0], x[3, 3] = 10, 32771
    y[0, 0], y[3, 3] = 2, 5
    pos = np.stack([x, y, np.zeros_like(x)], axis=-1).astype(np.float32)
    if transposed:
        image, pos = image.transpose(1, 0, 2), pos[..., [1, 0, 2]]
    np.testing.assert_array_equal(inference.texture_from_map(image, pos), image[pos[..., 1].astype(int),
                                                                               pos[..., 0].astype(int)])
    if transposed:
        pos[3, 3, 1] += 1
    else:
        pos[3, 3, 0] += 1
    covered = "8 x 32767" if transposed else "32767 x 8"
    with pytest.raises(RemapLimitError) as refused:
        inference.texture_from_map(image, pos)
    assert str(refused.value) == (f"the face covers {covered} pixels of the image; the texture read-out (OpenCV's "
                                  "remap) takes at most 32766 pixels a side")


def test_float_images_must_be_in_unit_range():
    """A float image is read as [0, 1]; one in 0-255 (PRNet's api.process takes those) is refused, not clipped
    to white."""
    image = np.random.default_rng(5).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    image[0, 0, 0] = 255
    np.testing.assert_array_equal(inference.as_rgb_uint8(image / 255.0), image)
    np.testing.assert_array_equal(inference.as_rgb_uint8(np.float32(1 + 1e-7) * np.ones((2, 2))), 255)
    message = r"float images must be in \[0, 1\] \(got max 255\); pass uint8 or divide by 255"
    with pytest.raises(ValueError, match=message):
        inference.as_rgb_uint8(image.astype(np.float64))
    with pytest.raises(ValueError, match=message):
        inference.crop_face(np.full((40, 40, 3), 255.0), inference.box_crop((5, 5, 30, 30)), 32, 32)
    with pytest.raises(ValueError, match=message):
        inference.sample_colors(np.full((40, 40, 3), 255.0, np.float32), np.zeros((1, 3)))


def test_float_images_holding_nan_or_inf_are_refused(constant_onnx):
    """NaN would turn into black pixels (with only a RuntimeWarning), inf into white: neither is a photo."""
    prn = PRN(constant_onnx[0])
    for bad in (np.nan, np.inf, -np.inf):
        image = np.full((40, 40, 3), 0.5, np.float32)
        image[3, 4, 1] = bad
        with pytest.raises(ValueError, match=r"^float images must be finite, found NaN or inf$"):
            inference.as_rgb_uint8(image)
        with pytest.raises(ValueError, match=r"^float images must be finite, found NaN or inf$"):
            prn.process(image, box=BOX)


def test_save_obj_refuses_float_colours_and_textures_in_0_255(tmp_path, constant_onnx):
    """Colours and textures are uint8 or floats in [0, 1] (as images): a float texture in 0-255 would be clipped to
    a white PNG and colours in 0-255 written 255 times too bright. Refused with the images' words, nothing
    written; uint8 colours are read as x / 255."""
    prn = PRN(constant_onnx[0])
    r = prn.resolution
    rng = np.random.default_rng(8)
    vertices = np.column_stack([prn.uv.face_ind % r, prn.uv.face_ind // r, rng.random(len(prn.uv.face_ind))])
    colors8 = rng.integers(0, 256, (len(vertices), 3), dtype=np.uint8)
    colors8[0] = 255
    texture = rng.integers(0, 256, (r, r, 3), dtype=np.uint8)
    texture[0, 0] = 255
    with pytest.raises(ValueError, match=r"^float colors must be in \[0, 1\] \(got max 255\); pass uint8 or divide "
                                         r"by 255$"):
        prn.save_obj(tmp_path / "c.obj", vertices, 256, colors=colors8.astype(np.float32))
    with pytest.raises(ValueError, match=r"^float texture must be in \[0, 1\] \(got max 255\); pass uint8 or "
                                         r"divide by 255$"):
        prn.save_obj(tmp_path / "t.obj", vertices, 256, texture=texture.astype(np.float32))
    with pytest.raises(ValueError, match=r"^float colors must be in \[0, 1\]"):
        prn.save_obj(tmp_path / "ct.obj", vertices, 256, colors=colors8 * 1.0, texture=texture)
    with pytest.raises(ValueError, match=r"^colors must be uint8 \(0\.\.255\) or float \(0\.\.1\), got dtype int64$"):
        prn.save_obj(tmp_path / "i.obj", vertices, 256, colors=colors8.astype(np.int64))
    assert list(tmp_path.iterdir()) == []
    # in [0, 1] (float32 rounding of 255 / 255 included) and uint8 are the same file
    unit = colors8.astype(np.float64) / 255.0
    written = mesh_io.read_obj(prn.save_obj(tmp_path / "u8.obj", vertices, 256, colors=colors8))
    np.testing.assert_array_equal(written["colors"], unit)
    assert (tmp_path / "u8.obj").read_bytes() == prn.save_obj(tmp_path / "f.obj", vertices, 256,
                                                              colors=unit).read_bytes()
    prn.save_obj(tmp_path / "one.obj", vertices, 256, colors=np.full((len(vertices), 3), np.float32(1 + 1e-7)))
    tex = mesh_io.read_obj(prn.save_obj(tmp_path / "tf.obj", vertices, 256, texture=texture / 255.0))
    np.testing.assert_array_equal(cv2.imread(str(tex["texture_path"]))[..., ::-1], texture)


def test_obj_with_colors_and_texture(tmp_path, uv):
    r = uv.resolution
    rng = np.random.default_rng(4)
    vertices = np.column_stack([uv.face_ind % r, uv.face_ind // r, rng.random(len(uv.face_ind))]).astype(np.float32)
    colors = rng.random((len(vertices), 3)).astype(np.float32)
    path = inference.write_obj(tmp_path / "face.obj", vertices, uv.triangles, h=256, colors=colors)
    mesh = mesh_io.read_obj(path)
    expected = vertices.astype(np.float64)
    expected[:, 1] = 255 - expected[:, 1]
    np.testing.assert_array_equal(mesh["vertices"], expected)
    np.testing.assert_array_equal(mesh["triangles"], uv.triangles)
    np.testing.assert_array_equal(mesh["colors"], colors.astype(np.float64))
    texture = rng.integers(0, 256, (r, r, 3), dtype=np.uint8)
    path = inference.write_obj(tmp_path / "tex.obj", vertices, uv.triangles, h=256, texture=texture, uv_data=uv)
    mesh = mesh_io.read_obj(path)
    np.testing.assert_allclose(mesh["uv_coords"][:, 0], (uv.face_ind % r) / (r - 1))
    np.testing.assert_allclose(mesh["uv_coords"][:, 1], 1 - (uv.face_ind // r) / (r - 1))
    np.testing.assert_array_equal(cv2.imread(str(mesh["texture_path"]))[..., ::-1], texture)
    with pytest.raises(ValueError, match="uv_data"):
        inference.write_obj(tmp_path / "x.obj", vertices, uv.triangles, h=256, texture=texture)


def test_drawings_mark_the_face(rendered, uv, default_model):
    image, _, _, placed = rendered
    kpt = placed[default_model.kpt_ind]
    drawn = inference.draw_landmarks(image, kpt)
    x, y = np.rint(kpt[30, :2]).astype(int)
    np.testing.assert_array_equal(drawn[y, x], (0, 255, 0))
    vertices = placed[:, :].astype(np.float32)
    overlay = inference.mesh_overlay(image, vertices, default_model.full_triangles)
    changed = np.any(overlay != image, axis=2)
    assert changed[y, x] and not changed[0, 0]


def test_prn_rejects_a_network_larger_than_the_uv_data(tmp_path, tiny):
    full = load_uv_data(default_uv_data_dir())
    tiny_uv = dataclasses.replace(full, face_mask=full.face_mask[:16, :16])  # resolution 16 < 32
    with pytest.raises(ValueError, match="input size 32 exceeds"):
        PRN(tiny["model"], uv_data=tiny_uv)
    with pytest.raises(ValueError, match="exactly one of box"):
        PRN(tiny["model"]).crop(np.zeros((10, 10, 3), np.uint8))



def _released_layout(root, uv_data=None):
    """PRNet's Data folder under ``root``: net-data/ with an (empty) checkpoint index, and uv-data/ copied from
    ``uv_data`` when given. Returns the checkpoint prefix."""
    net = root / "Data" / "net-data"
    net.mkdir(parents=True)
    (net / "256_256_resfcn256_weight.index").write_bytes(b"")
    if uv_data is not None:
        shutil.copytree(uv_data, root / "Data" / "uv-data")
    return net / "256_256_resfcn256_weight"


def test_prnets_checkpoint_is_read_with_prnets_uv_data(tmp_path):
    prefix = _released_layout(tmp_path / "bare")
    # refused before the network is read (its data file is missing here too), naming the flag
    with pytest.raises(ValueError, match=r"256_256_resfcn256_weight: PRNet's checkpoint .* no uv-data folder lies "
                                         r"beside .*net-data .* \(--uv-data DIR\)"):
        PRN(prefix)
    assert face3d_main(["evaluate", "--model", str(prefix), "--data", str(tmp_path), "--output",
                        str(tmp_path / "report"), "--quiet"]) == 2
    assert uv_data_for_model(prefix, uv_data="mine") == "mine"
    assert uv_data_for_model(tmp_path / "model.onnx") == default_uv_data_dir()
    assert uv_data_for_model(object()) == default_uv_data_dir()  # a keras.Model or Predictor

    prefix = _released_layout(tmp_path / "prnet", default_uv_data_dir())
    beside = tmp_path / "prnet" / "Data" / "uv-data"
    for named in (prefix, f"{prefix}.index", prefix.parent):
        assert uv_data_for_model(named) == beside


def test_prnets_uv_data_is_found_beside_the_released_checkpoint(tmp_path):
    released = fixtures_dir() / "prnet"
    if not (released / "uv-data" / "uv_kpt_ind.txt").is_file():
        pytest.skip("PRNet's uv-data not in the fixtures")
    prefix = _released_layout(tmp_path, released / "uv-data")
    shipped = np.loadtxt(released / "uv-data" / "uv_kpt_ind.txt").astype(int)
    found = load_uv_data(uv_data_for_model(prefix))
    np.testing.assert_array_equal(found.uv_kpt_ind, shipped)
    # what the packaged uv-data would have read instead: other pixels for every keypoint
    packaged = load_uv_data(default_uv_data_dir()).uv_kpt_ind
    assert (packaged != shipped).any(axis=0).all()


# ------------------------------------------------------------------------------------------------ demo

def _run_demo(*args):
    return face3d_main(["demo", *map(str, args)])


def test_demo_on_a_real_photograph(tmp_path, constant_onnx, uv):
    """skimage's astronaut with its face box: every output is written; the landmarks are the constant map's,
    restored by hand through PRNet's box crop."""
    from skimage import data
    path, normalised = constant_onnx
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), data.astronaut()[..., ::-1])
    out = tmp_path / "out"
    assert _run_demo("-i", photo, "-o", out, "--model", path, "--box", *helpers.ASTRONAUT_BOX) == 0
    for name in ("astronaut_landmarks.jpg", "astronaut_mesh.jpg", "astronaut_depth.png", "astronaut.obj",
                 "astronaut_kpt.txt", "astronaut_pose.json"):
        assert (out / name).is_file(), name
    # independent: mean side 90, centre (220, 121 + 0.14 * 90), side int(1.58 * 90) (PRNet's api.process); crop
    # x' = k (x - left)
    side = float(int(1.58 * 90.0))
    left, top = 220.0 - side / 2, 121.0 + 0.14 * 90.0 - side / 2
    k = 255.0 / side
    crop_kpt = normalised[uv.uv_kpt_ind[1], uv.uv_kpt_ind[0]].astype(np.float64) * 1.1 * 256
    expected = np.column_stack([crop_kpt[:, 0] / k + left, crop_kpt[:, 1] / k + top, crop_kpt[:, 2] / k])
    np.testing.assert_allclose(np.loadtxt(out / "astronaut_kpt.txt"), expected, atol=1e-3)
    depth = cv2.imread(str(out / "astronaut_depth.png"), cv2.IMREAD_GRAYSCALE)
    assert depth.shape == (512, 512) and depth.max() == 255 and depth[0, 0] == 0
    mesh = mesh_io.read_obj(out / "astronaut.obj")
    assert mesh["vertices"].shape == (len(uv.face_ind), 3) and mesh["colors"].shape == (len(uv.face_ind), 3)
    pose = json.loads((out / "astronaut_pose.json").read_text())
    assert 0 < pose["visible_vertices"] <= pose["vertices"] and len(pose["angles_deg_pitch_yaw_roll"]) == 3


def test_demo_with_a_keras_network_and_texture(tmp_path, tiny, rendered, default_model):
    image, _, _, placed = rendered
    cv2.imwrite(str(tmp_path / "face.jpg"), image[..., ::-1])
    np.savetxt(tmp_path / "face.txt", placed[default_model.kpt_ind, :2])
    out = tmp_path / "out"
    assert _run_demo("-i", tmp_path, "-o", out, "--model", tiny["keras"], "--landmarks", tmp_path / "face.txt",
                     "--texture") == 0
    for name in ("face_landmarks.jpg", "face_mesh.jpg", "face_depth.png", "face.obj", "face.mtl",
                 "face_texture.png", "face_kpt.txt", "face_pose.json"):
        assert (out / name).is_file(), name


def test_demo_errors_name_the_problem(tmp_path, capsys, monkeypatch, constant_onnx):
    photo = tmp_path / "a.png"
    cv2.imwrite(str(photo), np.zeros((20, 20, 3), np.uint8))
    assert _run_demo("-i", tmp_path / "nothing.jpg", "-o", tmp_path / "o", "--box", 0, 0, 5, 5) == 2
    assert "nothing.jpg" in capsys.readouterr().err
    assert _run_demo("-i", photo, "-o", tmp_path / "o", "--model", tmp_path / "none.keras", "--box", 0, 0, 5, 5) == 2
    assert "none.keras" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # refused before the output folder is made
    monkeypatch.setitem(sys.modules, "dlib", None)  # as if dlib were not installed
    assert _run_demo("-i", photo, "-o", tmp_path / "o", "--model", constant_onnx[0]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert "face detection needs dlib (not installed): pip install 'face3d[detect]'" in errors[-1]
    assert errors[-1].endswith("; or give the face box (--box X0 Y0 X1 Y1) or its 68 landmarks (--landmarks "
                               "FILE|DIR)"), errors


def test_demo_refuses_a_bfm_it_cannot_use_before_any_image(tmp_path, capsys, monkeypatch, uv, constant_onnx):
    """A missing --bfm, or a model the uv-data does not fit, is one line and status 2 before any image is read,
    not a skip (or a pose_error) per image."""
    from face3d.trainset import sample_io
    from face3d.trainset.uv_layout import write_uv_data
    photo = tmp_path / "a.png"
    cv2.imwrite(str(photo), np.zeros((40, 40, 3), np.uint8))
    monkeypatch.setattr(sample_io, "read_image", lambda path: pytest.fail(f"{path} was read"))
    missing = tmp_path / "none" / "BFM.mat"
    assert _run_demo("-i", photo, "-o", tmp_path / "o", "--model", constant_onnx[0], "--box", *BOX,
                     "--bfm", missing) == 2
    assert capsys.readouterr().err.splitlines() == [f"face3d demo: error: {missing}: BFM model file not found"]
    shifted = tmp_path / "shifted-uv"  # the default layout with its keypoints 3 pixels off, no canonical face
    write_uv_data(dataclasses.replace(uv, uv_kpt_ind=uv.uv_kpt_ind + 3, canonical_vertices=None), shifted)
    assert _run_demo("-i", photo, "-o", tmp_path / "o", "--model", constant_onnx[0], "--box", *BOX,
                     "--uv-data", shifted) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"face3d demo: error: {shifted}: uv-data does not fit the model: "
                                               "its keypoint pixels lie up to 3 px"), err
    assert not (tmp_path / "o").exists()


def test_demo_checks_a_bfm_the_uv_data_leaves_unread(tmp_path, capsys, caplog, uv, default_model, constant_onnx):
    """The uv-data's own canonical_vertices.npy leaves --bfm unread: a missing one is still one line and status 2
    before any image, an existing one (an empty file: never read) a warning saying so."""
    from face3d.trainset.uv_layout import write_uv_data
    own = tmp_path / "uv-data"
    write_uv_data(dataclasses.replace(uv, canonical_vertices=inference.canonical_vertices(default_model, uv)), own)
    photo = _photos(tmp_path / "photos", "a.jpg") / "a.jpg"
    bfm, out = tmp_path / "BFM.mat", tmp_path / "out"
    run = ("-i", photo, "-o", out, "--model", constant_onnx[0], "--box", *BOX, "--uv-data", own, "--bfm", bfm)
    assert _run_demo(*run) == 2
    assert capsys.readouterr().err.splitlines() == [f"face3d demo: error: {bfm}: BFM model file not found"]
    assert not out.exists()
    bfm.write_bytes(b"")
    caplog.clear()
    assert _run_demo(*run) == 0
    assert [record.getMessage() for record in caplog.records if record.levelname == "WARNING"] == [
        f"--bfm {bfm} is not read: {own} has its own canonical face for the pose (canonical_vertices.npy)"]
    assert "pose_error" not in json.loads((out / "a_pose.json").read_text())


def test_prn_reads_its_bfm_once_even_when_it_does_not_fit(monkeypatch, uv):
    import face3d.morphable_model
    loads = []

    class CountedModel(face3d.morphable_model.MorphableModel):
        def __init__(self, *args, **kwargs):
            loads.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(face3d.morphable_model, "MorphableModel", CountedModel)
    shifted = dataclasses.replace(uv, uv_kpt_ind=uv.uv_kpt_ind + 3, canonical_vertices=None)
    prn = PRN(helpers.OraclePredictor(256), uv_data=shifted)
    for _ in range(2):
        with pytest.raises(ValueError, match="^uv-data: uv-data does not fit the model"):
            prn.estimate_pose(np.zeros((len(uv.face_ind), 3)))
    assert len(loads) == 1


DEMO_FILES = ("_landmarks.jpg", "_mesh.jpg", "_depth.png", ".obj", "_kpt.txt", "_pose.json")
BOX = (5, 5, 35, 35)  # of the 40 x 40 photos below


def _photos(folder, *names):
    """40 x 40 noise photos named ``names`` in ``folder``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(6).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    for name in names:
        cv2.imwrite(str(folder / name), pixels)
    return folder


def _listing(folder):
    """Every name in ``folder`` (hidden ones included), sorted."""
    return sorted(p.name for p in folder.iterdir())


def test_demo_skips_a_bad_image_reports_it_and_fails(tmp_path, capsys, constant_onnx):
    photos = _photos(tmp_path / "photos", "a.jpg", "c.png")
    (photos / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")  # a JPEG cut short
    (photos / "._a.jpg").write_bytes(b"\x00\x05\x16\x07Mac OS X" + bytes(100))  # macOS's AppleDouble companion
    assert [p.name for p in list_images([photos])] == ["a.jpg", "b.jpg", "c.png"]
    out = tmp_path / "out"
    assert _run_demo("-i", photos, "-o", out, "--model", constant_onnx[0], "--box", *BOX) == 1
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"{photos / 'b.jpg'}: skipped: cannot decode the image"), err
    assert captured.out.splitlines()[-1] == "3 images: written 2, no face 0, failed 1"
    assert _listing(out) == sorted(stem + name for stem in "ac" for name in DEMO_FILES)  # no staging left behind
    assert _run_demo("-i", photos / "b.jpg", "-o", out, "--model", constant_onnx[0], "--box", *BOX) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and str(photos / "b.jpg") in err[0], err


def test_demo_refuses_an_output_that_is_an_input_folder_before_any_image(tmp_path, capsys, constant_onnx):
    """Its drawings would be images of that folder to the next run (a_landmarks_landmarks.jpg ...); a folder is
    listed without its subfolders, so an output inside it is taken."""
    photos = _photos(tmp_path / "photos", "a.jpg")
    (tmp_path / "link").symlink_to(photos, target_is_directory=True)
    for output in (photos, tmp_path / "link"):
        assert _run_demo("-i", photos / "a.jpg", photos, "-o", output, "--model", constant_onnx[0], "--box", *BOX) == 2
        assert capsys.readouterr().err.splitlines() == [
            f"face3d demo: error: {output}: the output must be a folder other than the input folder {photos} (the "
            "next run would read its <stem>_landmarks.jpg, _mesh.jpg and _depth.png as images)"]
    assert _listing(photos) == ["a.jpg"]
    for _ in range(2):
        assert _run_demo("-i", photos, "-o", photos / "out", "--model", constant_onnx[0], "--box", *BOX) == 0
        assert capsys.readouterr().out.splitlines()[-1] == "1 image: written 1, no face 0, failed 0"
    assert _listing(photos) == ["a.jpg", "out"]
    assert _run_demo("-i", photos / "a.jpg", "-o", photos, "--model", constant_onnx[0], "--box", *BOX) == 0


def test_demo_lists_the_formats_it_reads_and_counts_the_others_in_one_warning(tmp_path, capsys, caplog,
                                                                              constant_onnx, monkeypatch):
    photos = _photos(tmp_path / "photos", "a.jpg", "b.bmp", "c.webp", "d.tif", "e.TIFF")
    (photos / "._d.tif").write_bytes(b"\x00\x05\x16\x07Mac OS X" + bytes(100))  # hidden: not counted
    with caplog.at_level(logging.WARNING, logger="face3d"):
        assert [p.name for p in list_images([photos])] == ["a.jpg", "b.bmp"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{photos}: 3 image files left out (1 .tif, 1 .tiff, 1 .webp): the images read are .jpg/.jpeg/.png/.bmp files"]
    phone, phone2 = photos / "phone.jpg", photos / "phone2.jpg"  # photos shown turned: read as stored, one warning
    for path in (phone, phone2):
        path.write_bytes(with_exif_orientation((photos / "a.jpg").read_bytes(), 6))
    monkeypatch.setattr(sample_io, "_orientation_warned", False)  # as in a process that has read no such photo
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="face3d"):
        assert _run_demo("-i", photos / "c.webp", phone, phone2, "-o", tmp_path / "out", "--model",
                         constant_onnx[0], "--box", *BOX) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{photos / 'c.webp'}: skipped: cannot decode the image: a WebP image, not a JPEG, PNG or BMP file, the "
        f"formats read (convert it to one)"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{phone}: EXIF orientation 6 (viewers show the photo turned or mirrored): its pixels are read as stored, "
        f"not rotated; landmarks, boxes and .mat files must describe the stored pixels (further such images are "
        f"named at debug level only)"]


def test_demo_refuses_an_image_above_max_pixels_naming_its_flag(tmp_path, capsys, constant_onnx):
    """A 12000 x 9000 phone photo (108 megapixels; its header alone, no pixel follows) is above the default limit:
    skipped, naming --max-pixels; a raised limit passes it on to the decoder. A limit one pixel under a 40 x 40
    photo refuses it, one of its size takes it."""
    photos = _photos(tmp_path / "photos", "a.jpg")
    (photos / "phone.png").write_bytes(png_header(12000, 9000))
    out = tmp_path / "out"
    run = ("-o", out, "--model", constant_onnx[0], "--box", *BOX)
    assert _run_demo("-i", photos / "phone.png", *run) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{photos / 'phone.png'}: skipped: the image is 12000x9000 = 108000000 pixels, above the limit of 100000000 "
        "(--max-pixels)"]
    assert _run_demo("-i", photos / "phone.png", *run, "--max-pixels", 108_000_000) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{photos / 'phone.png'}: skipped: cannot decode the image (corrupt or truncated)"]
    assert _run_demo("-i", photos / "a.jpg", *run, "--max-pixels", 1599) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{photos / 'a.jpg'}: skipped: the image is 40x40 = 1600 pixels, above the limit of 1599 (--max-pixels)"]
    assert _listing(out) == []
    assert _run_demo("-i", photos / "a.jpg", *run, "--max-pixels", 1600) == 0
    assert _listing(out) == sorted("a" + name for name in DEMO_FILES)


def test_demo_skips_an_image_its_box_lies_outside_of(tmp_path, capsys, constant_onnx):
    """A --box for larger images lies outside a 20 x 20 one: that image is skipped with the words of face3d serve's
    422 (its crop would be all black), the others are written, status 1."""
    photos = _photos(tmp_path / "photos", "a.jpg")
    cv2.imwrite(str(photos / "small.jpg"), np.full((20, 20, 3), 128, np.uint8))
    out = tmp_path / "out"
    assert _run_demo("-i", photos, "-o", out, "--model", constant_onnx[0], "--box", 25, 25, 38, 38) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"{photos / 'small.jpg'}: skipped: box: 25 25 38 38 lies outside the 20 x 20 "
                                         "image"]
    assert captured.out.splitlines()[-1] == "2 images: written 1, no face 0, failed 1"
    assert _listing(out) == sorted("a" + name for name in DEMO_FILES)


def test_demo_leaves_no_file_of_an_image_it_could_not_write(tmp_path, capsys, monkeypatch, constant_onnx):
    """A write refused for this file alone (over the file system's largest file): b is skipped, the others go on."""
    photos = _photos(tmp_path / "photos", "a.jpg", "b.jpg")
    save_obj = PRN.save_obj

    def too_large_for_b(self, path, *args, **kwargs):  # the OBJ comes after the images
        if Path(path).stem == "b":
            raise OSError(errno.EFBIG, os.strerror(errno.EFBIG), str(path))
        return save_obj(self, path, *args, **kwargs)

    monkeypatch.setattr(PRN, "save_obj", too_large_for_b)
    out = tmp_path / "out"
    assert _run_demo("-i", photos, "-o", out, "--model", constant_onnx[0], "--box", *BOX) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"{photos / 'b.jpg'}: skipped: [Errno {errno.EFBIG}] File too large: '{out / 'b.obj'}'"]  # not
    # the staging copy
    assert _listing(out) == sorted("a" + name for name in DEMO_FILES)


@pytest.mark.parametrize("code, writer", [(errno.ENOSPC, "image"), (errno.EDQUOT, "image"), (errno.EROFS, "image"),
                                          (errno.ENOSPC, "text")])
def test_demo_stops_at_the_first_write_the_file_system_refuses(tmp_path, capsys, monkeypatch, constant_onnx, code,
                                                               writer):
    """The disk fills up at b's first image, or at its _kpt.txt (an OSError naming no file, as a failed write
    raises): the run stops there with one line naming the output folder, the image and the counts so far, status 2;
    c is not tried, nothing of b is left, a's files stay."""
    from face3d.prnet import demo
    photos = _photos(tmp_path / "photos", "a.jpg", "b.jpg", "c.jpg")
    tried = []

    def refusing_b(write):
        def refusing_write(path, *args, **kwargs):
            tried.append(Path(path).name)
            if Path(path).name.startswith("b"):
                raise OSError(code, os.strerror(code))
            return write(path, *args, **kwargs)
        return refusing_write

    if writer == "image":
        monkeypatch.setattr(demo, "write_image", refusing_b(demo.write_image))
    else:
        monkeypatch.setattr(np, "savetxt", refusing_b(np.savetxt))
    out = tmp_path / "out"
    assert _run_demo("-i", photos, "-o", out, "--model", constant_onnx[0], "--box", *BOX) == 2
    assert tried == (["a_landmarks.jpg", "a_mesh.jpg", "a_depth.png", "b_landmarks.jpg"] if writer == "image" else
                     ["a_kpt.txt", "b_kpt.txt"])
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"face3d demo: error: {out}: {os.strerror(code)}; stopped at "
                                         f"{photos / 'b.jpg'} (3 images: written 1, no face 0, failed 0, not done 2)"]
    assert captured.out.splitlines() == [f"{photos / 'a.jpg'}: " + ", ".join(
        str(out / f"a{name}") for name in ("_landmarks.jpg", "_mesh.jpg", "_depth.png", "_kpt.txt", "_pose.json",
                                           ".obj"))]
    assert _listing(out) == sorted("a" + name for name in DEMO_FILES)


def test_demo_names_the_jpeg_it_could_not_write_and_why(tmp_path, capsys, constant_onnx):
    """A panorama 65,501 pixels wide has no JPEG drawings (JPEG's sides end at 65,500): the message names the output
    file, not its staging copy, and the limit."""
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "pano.png"), np.zeros((8, 65501, 3), np.uint8))
    out = tmp_path / "out"
    assert _run_demo("-i", photos / "pano.png", "-o", out, "--model", constant_onnx[0], "--box", 0, 0, 8, 8) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{photos / 'pano.png'}: skipped: {out / 'pano_landmarks.jpg'}: the image is 65501 x 8 pixels; JPEG takes "
        "at most 65,500 a side"]
    assert _listing(out) == []


def test_demo_with_a_landmark_folder_skips_an_image_without_landmarks(tmp_path, capsys, constant_onnx):
    photos = _photos(tmp_path / "photos", "a.jpg", "b.jpg")
    marks = tmp_path / "marks"
    marks.mkdir()
    np.savetxt(marks / "a.txt", np.random.default_rng(7).uniform(5, 35, (68, 2)))
    out = tmp_path / "out"
    assert _run_demo("-i", photos, "-o", out, "--model", constant_onnx[0], "--landmarks", marks) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"{photos / 'b.jpg'}: skipped: no landmarks for b.jpg in {marks} (<stem>.pts/.txt/.npy/.mat)"]
    assert _listing(out) == sorted("a" + name for name in DEMO_FILES)
    # one landmark file for every image: an unusable one is an argument error, before any image
    assert _run_demo("-i", photos, "-o", tmp_path / "o2", "--model", constant_onnx[0], "--landmarks",
                     marks / "b.txt") == 2
    assert capsys.readouterr().err.splitlines() == [f"face3d demo: error: {marks / 'b.txt'}: landmark file not found"]
    assert not (tmp_path / "o2").exists()


def test_demo_skips_an_image_whose_landmarks_are_not_68_or_lie_outside_it(tmp_path, capsys, constant_onnx):
    """Per image: 5 points (a detector's) are not the 68 landmarks; 68 beside the 40 x 40 photo would crop black."""
    photos = _photos(tmp_path / "photos", "a.jpg", "b.jpg", "c.jpg")
    marks = tmp_path / "marks"
    marks.mkdir()
    np.savetxt(marks / "a.txt", np.random.default_rng(7).uniform(5, 35, (68, 2)))
    np.savetxt(marks / "b.txt", np.random.default_rng(7).uniform(5, 35, (5, 2)))
    np.savetxt(marks / "c.txt", np.column_stack([np.linspace(50, 60, 68), np.linspace(5, 35, 68)]))
    out = tmp_path / "out"
    assert _run_demo("-i", photos, "-o", out, "--model", constant_onnx[0], "--landmarks", marks) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"{photos / 'b.jpg'}: skipped: {marks / 'b.txt'}: expected 68 landmarks as (68, 2|3) or (2|3, 68), in iBUG "
        "order, got shape (5, 2)",
        f"{photos / 'c.jpg'}: skipped: landmarks' box: 50 5 60 35 lies outside the 40 x 40 image"]
    assert captured.out.splitlines()[-1] == "3 images: written 1, no face 0, failed 2"
    assert _listing(out) == sorted("a" + name for name in DEMO_FILES)


def test_demo_refuses_images_sharing_a_stem(tmp_path, capsys, constant_onnx):
    first = _photos(tmp_path / "one", "a.jpg") / "a.jpg"
    second = _photos(tmp_path / "two", "a.png") / "a.png"
    out = tmp_path / "out"
    assert _run_demo("-i", first, second, "-o", out, "--model", constant_onnx[0], "--box", *BOX) == 2
    shared = ("face3d demo: error: images share a name (file stem), which must be unique as it names the output "
              "files (<stem>_kpt.txt, ...; theirs would overwrite each other): a: {}, {}; rename one, or run each "
              "into its own output folder")
    assert capsys.readouterr().err.splitlines() == [shared.format(first, second)]
    _photos(tmp_path / "one", "a.png")  # side by side in one folder
    assert _run_demo("-i", tmp_path / "one", "-o", out, "--model", constant_onnx[0], "--box", *BOX) == 2
    assert capsys.readouterr().err.splitlines() == [shared.format(first, tmp_path / "one" / "a.png")]
    assert not out.exists()
    # the same file named twice is one image
    assert _run_demo("-i", first, tmp_path / "one" / "." / "a.jpg", "-o", out, "--model", constant_onnx[0],
                     "--box", *BOX) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "1 image: written 1, no face 0, failed 0"


def test_dlib_detector_finds_the_astronaut():
    pytest.importorskip("dlib")
    from skimage import data

    from face3d.prnet.detect import DlibDetector
    boxes, scores = DlibDetector("hog").detect(data.astronaut())
    assert scores[0] == scores.max()
    x0, y0, x1, y1 = boxes[0]
    ax0, ay0, ax1, ay1 = helpers.ASTRONAUT_BOX
    overlap = max(0, min(x1, ax1) - max(x0, ax0)) * max(0, min(y1, ay1) - max(y0, ay0))
    assert overlap / ((ax1 - ax0) * (ay1 - ay0)) > 0.8


def test_detectors_read_float_images_as_prn_does(monkeypatch, tmp_path):
    """A float image in [0, 1] (PRN.process takes it) reaches dlib as the uint8 image as_rgb_uint8 makes, not
    cast to 0/1 (dlib replaced by a stand-in that records what it gets)."""
    import types

    from face3d.prnet.detect import DlibLandmarker
    seen = []

    class Rect:
        def left(self):
            return 10

        def top(self):
            return 20

        def right(self):
            return 30

        def bottom(self):
            return 40

    def run(image, upsample, threshold):
        seen.append(image)
        return [Rect()], [1.5], [0]

    def predict(image, rectangle):
        seen.append(image)
        return types.SimpleNamespace(num_parts=68, part=lambda i: types.SimpleNamespace(x=i, y=2 * i))

    dlib = types.SimpleNamespace(get_frontal_face_detector=lambda: types.SimpleNamespace(run=run),
                                 shape_predictor=lambda path: predict, rectangle=lambda *corners: corners)
    monkeypatch.setitem(sys.modules, "dlib", dlib)
    install_models_package(monkeypatch, tmp_path, files=[SHAPE_PREDICTOR_FILE])
    image = np.random.default_rng(8).integers(0, 256, (50, 60, 3), dtype=np.uint8)
    landmarker = DlibLandmarker("hog")
    boxes, scores = landmarker.detector.detect(image / 255.0)
    np.testing.assert_array_equal(boxes, [[10, 20, 30, 40]])
    np.testing.assert_array_equal(landmarker.landmarks(image.astype(np.float32) / 255)[67], [67, 134])
    assert len(seen) == 3
    for received in seen:
        assert received.dtype == np.uint8 and received.flags.c_contiguous
        np.testing.assert_array_equal(received, image)


@pytest.mark.parametrize("kind", ["hog", "cnn"])
def test_detections_come_most_confident_first_and_the_landmarks_are_of_that_face(monkeypatch, tmp_path, kind):
    """dlib lists its faces in its own order: ``detect`` returns them by falling confidence, and ``landmarks``
    predicts on the first of those, the most confident box, not dlib's first (dlib replaced by a stand-in)."""
    import types

    from face3d.prnet.detect import DlibLandmarker
    corners = [(0, 0, 10, 10), (20, 22, 60, 64), (5, 6, 30, 31)]
    confidences = [0.2, 1.7, 0.9]
    rects = [types.SimpleNamespace(left=lambda c=c: c[0], top=lambda c=c: c[1], right=lambda c=c: c[2],
                                   bottom=lambda c=c: c[3]) for c in corners]
    predicted_on = []

    def predict(image, rectangle):
        predicted_on.append(rectangle)
        return types.SimpleNamespace(num_parts=68, part=lambda i: types.SimpleNamespace(x=i, y=2 * i))

    def cnn_detector(path):
        return lambda image, upsample: [types.SimpleNamespace(rect=r, confidence=c) for r, c in zip(rects, confidences)]

    hog_detector = types.SimpleNamespace(run=lambda image, upsample, threshold: (rects, confidences, [0, 0, 0]))
    dlib = types.SimpleNamespace(get_frontal_face_detector=lambda: hog_detector,
                                 cnn_face_detection_model_v1=cnn_detector, shape_predictor=lambda path: predict,
                                 rectangle=lambda *box: box)
    monkeypatch.setitem(sys.modules, "dlib", dlib)
    install_models_package(monkeypatch, tmp_path)
    landmarker = DlibLandmarker(kind)
    assert landmarker.detector.kind == kind
    image = np.zeros((80, 80, 3), np.uint8)
    boxes, scores = landmarker.detector.detect(image)
    np.testing.assert_array_equal(boxes, [corners[1], corners[2], corners[0]])
    np.testing.assert_array_equal(scores, [1.7, 0.9, 0.2])
    np.testing.assert_array_equal(landmarker.landmarks(image), np.c_[np.arange(68), 2 * np.arange(68)])
    assert predicted_on == [corners[1]]


def test_auto_takes_the_cnn_of_face_recognition_models_whose_init_cannot_import_pkg_resources(tmp_path, monkeypatch):
    """face_recognition_models 0.3.0 imports pkg_resources, gone with setuptools >= 82 and Python 3.12+ venvs: its
    model files are used all the same, the CNN detector's and the shape predictor's."""
    from face3d.prnet.detect import DlibDetector, DlibLandmarker
    built = install_fake_dlib(monkeypatch)
    models = install_models_package(monkeypatch, tmp_path)
    assert DlibDetector("auto").kind == "cnn"
    assert DlibLandmarker("auto").detector.kind == "cnn"
    assert built == [("cnn_face_detection_model_v1", str(models / CNN_MODEL_FILE))] * 2 + [
        ("shape_predictor", str(models / SHAPE_PREDICTOR_FILE))]


def test_a_detector_that_cannot_be_built_says_why(tmp_path, monkeypatch, caplog):
    from face3d.prnet.detect import DetectorUnavailable, DlibDetector, DlibLandmarker
    hint = "pip install 'face3d[detect]'"
    install_fake_dlib(monkeypatch)
    monkeypatch.setitem(sys.modules, "face_recognition_models", None)  # as if not installed
    cnn_missing = (f"the CNN detector needs {CNN_MODEL_FILE} from the face_recognition_models package "
                   f"(not installed): {hint}")
    with pytest.raises(DetectorUnavailable) as error:
        DlibDetector("cnn")
    assert str(error.value) == cnn_missing
    with caplog.at_level("INFO", logger="face3d.prnet.detect"):
        assert DlibDetector("auto").kind == "hog"
    assert caplog.messages == [f"dlib's HOG face detector, not the CNN: {cnn_missing}"]
    models = install_models_package(monkeypatch, tmp_path, files=[CNN_MODEL_FILE])  # no shape predictor
    with pytest.raises(DetectorUnavailable) as error:
        DlibLandmarker("cnn")
    assert str(error.value) == (f"68-landmark detection (dlib's shape predictor) needs {SHAPE_PREDICTOR_FILE} from "
                                f"the face_recognition_models package (not in {models}): {hint}")
    # a dlib that is installed but fails to load is not told to be installed
    broken = tmp_path / "broken" / "dlib"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('libcblas.so.3: cannot open shared object file')\n")
    monkeypatch.delitem(sys.modules, "dlib")
    monkeypatch.syspath_prepend(str(broken.parent))
    with pytest.raises(DetectorUnavailable) as error:
        DlibDetector("hog")
    assert str(error.value) == ("face detection needs dlib (it fails to import: libcblas.so.3: cannot open shared "
                                f"object file): {hint}")


def test_demo_detector_cnn_without_its_model_names_the_file_and_the_extra(tmp_path, capsys, monkeypatch,
                                                                          constant_onnx):
    install_fake_dlib(monkeypatch)
    monkeypatch.setitem(sys.modules, "face_recognition_models", None)  # as if not installed
    photo = tmp_path / "a.png"
    cv2.imwrite(str(photo), np.zeros((20, 20, 3), np.uint8))
    assert _run_demo("-i", photo, "-o", tmp_path / "o", "--model", constant_onnx[0], "--detector", "cnn") == 2
    assert capsys.readouterr().err.splitlines() == [
        f"face3d demo: error: the CNN detector needs {CNN_MODEL_FILE} from the face_recognition_models package (not "
        "installed): pip install 'face3d[detect]'; or give the face box (--box X0 Y0 X1 Y1) or its 68 landmarks "
        "(--landmarks FILE|DIR)"]
    assert not (tmp_path / "o").exists()


def test_dlib_finds_the_astronaut_in_a_float_image():
    pytest.importorskip("dlib")
    from skimage import data

    from face3d.prnet.detect import DlibDetector
    detector = DlibDetector("hog")
    boxes, scores = detector.detect(data.astronaut() / 255.0)
    expected_boxes, expected_scores = detector.detect(data.astronaut())
    assert len(boxes) >= 1
    np.testing.assert_array_equal(boxes, expected_boxes)
    np.testing.assert_array_equal(scores, expected_scores)
