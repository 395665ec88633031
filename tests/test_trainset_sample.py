"""One sample to training pairs (face3d.trainset.sample): keypoints, render equality, rotation, texture, errors.

Uses the embedded default model; the 300W-LP fixture test skips when ../shared/fixtures is absent.
Budget: < 15 s.
"""
import io
import logging
import re
from dataclasses import replace

import cv2
import numpy as np
import pytest
import scipy.io as sio
from _fixtures import fixtures_dir
from _image_files import with_exif_orientation

from face3d.mesh.float16 import to_float16
from face3d.mesh.render import render_colors
from face3d.mesh.transform import angle2matrix_3ddfa, matrix2angle_3ddfa
from face3d.morphable_model import MorphableModel
from face3d.trainset import (
    CropBox,
    GenerationConfig,
    TrainsetGenerator,
    apply_affine,
    keypoint_box,
    keypoints_from_map,
    rasterize_uv,
    read_300wlp_sample,
    rotation_matrix,
    sample_io,
    uv_to_pixels,
)
from face3d.trainset.crop import compose, crop_matrices, crop_matrix, crop_scales, keypoint_boxes
from face3d.trainset.sample import check_face_inside
from face3d.trainset.sample_io import read_image
from face3d.utils.errors import InputFileError
from face3d.utils.image_header import ImageHeader, read_image_header

FIXTURES = fixtures_dir()
H = W = 300


@pytest.fixture(scope="module")
def model():
    return MorphableModel()


def _params(model, seed=0, yaw=0.35):
    """A plausible 300W-LP parameter set placing the model's face in a 300x300 image."""
    rng = np.random.default_rng(seed)
    return {"Pose_Para": np.array([0.1, yaw, -0.05, 150.0, 152.0, -40.0, 1.1e-3]),
            "Shape_Para": rng.normal(0, 1, (199, 1)) * model.model["shapeEV"][:199].astype(np.float64) * 0.5,
            "Exp_Para": rng.normal(0, 0.5, (29, 1))}


def _image_vertices(model, params, h=H):
    """Reference image-space vertices in float64: s * V @ R.T + t with y flipped into rows."""
    m = model.model
    V = (m["shapeMU"].astype(np.float64) + m["shapePC"].astype(np.float64) @ params["Shape_Para"]
         + m["expPC"].astype(np.float64) @ params["Exp_Para"]).reshape(-1, 3)
    pose = params["Pose_Para"]
    out = pose[6] * V @ angle2matrix_3ddfa(pose[:3]).T + pose[3:6]
    out[:, 1] = h - 1 - out[:, 1]
    return out


def _crop_positions(model, params, matrix):
    """Reference crop-space positions: x, y by the crop's affine map, z scaled and shifted to min 0."""
    v = _image_vertices(model, params)
    k = np.sqrt(np.linalg.det(matrix[:, :2]))
    return np.column_stack([apply_affine(matrix, v[:, :2]), k * (v[:, 2] - v[:, 2].min())])


def _image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _write_sample(folder, name, image, params):
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / f"{name}.png"), image[..., ::-1])
    sio.savemat(folder / f"{name}.mat", {k: np.atleast_2d(v) if k == "Pose_Para" else v for k, v in params.items()})
    return folder / f"{name}.png", folder / f"{name}.mat"


def test_map_keypoints_equal_projected_keypoints_when_uv_is_on_the_grid(model):
    """With keypoint UVs on pixel centres the map at uv_kpt_ind is the keypoints' crop position (< 0.5 px)."""
    r = 256
    snapped = np.array(model.uv_coords, dtype=np.float64)
    kpt = np.asarray(model.kpt_ind)
    snapped[kpt] = np.round(snapped[kpt] * (r - 1)) / (r - 1)

    class Snapped:
        pass
    grid_model = Snapped()
    grid_model.__dict__.update(model=model.model, uv_coords=snapped.astype(np.float32), kpt_ind=model.kpt_ind,
                               full_triangles=model.full_triangles)
    generator = TrainsetGenerator(grid_model, GenerationConfig(resolution=r, angles=()))
    params = _params(model)
    sample = generator.generate(_image(), params, "s", seed=5)[0]
    expected = _crop_positions(model, params, sample.crop_matrix)[kpt]
    got = keypoints_from_map(sample.posmap, generator.uv_kpt_ind)
    covered = generator.rasterization.covered[generator.uv_kpt_ind[1], generator.uv_kpt_ind[0]]
    on_grid = np.all(generator.uv_kpt_ind.T == np.round(uv_to_pixels(snapped[kpt], r)[:, :2]), axis=1) & covered
    assert on_grid.all()
    err = np.linalg.norm(got[on_grid, :2] - expected[on_grid, :2], axis=1)
    assert err.max() < 0.5, err.max()
    np.testing.assert_allclose(got[on_grid, 2], expected[on_grid, 2], atol=0.5)


def test_map_keypoints_near_projected_keypoints_default_layout(model):
    """The default model's keypoint UVs sit on pixel centres inside the layout: the map holds them exactly."""
    generator = TrainsetGenerator(model, GenerationConfig(angles=()))
    params = _params(model, seed=1)
    sample = generator.generate(_image(), params, "s", seed=1)[0]
    expected = _crop_positions(model, params, sample.crop_matrix)[model.kpt_ind]
    err = np.linalg.norm(keypoints_from_map(sample.posmap, generator.uv_kpt_ind)[:, :2] - expected[:, :2], axis=1)
    assert err.max() < 0.01, err.max()  # 0.5 px would do; only float32 rounding remains


def test_posmap_equals_render_colors_in_uv_space(model):
    r = 64
    generator = TrainsetGenerator(model, GenerationConfig(resolution=r, angles=(30,)))
    params = _params(model, seed=2)
    for sample in generator.generate(_image(), params, "s", seed=3):
        # for the rotated copy crop_matrix includes the rotation about the face centre
        positions = _crop_positions(model, params, sample.crop_matrix)
        expected = render_colors(uv_to_pixels(model.uv_coords, r), model.full_triangles,
                                 positions.astype(np.float32), r, r, c=3)
        np.testing.assert_allclose(sample.posmap, expected, rtol=0, atol=2e-3, err_msg=sample.name)
        assert sample.posmap.dtype == np.float32 and sample.posmap.shape == (r, r, 3)
        assert sample.image.dtype == np.uint8 and sample.image.shape == (r, r, 3)
    # z is shifted so that the minimum over the model's vertices is 0: the map's minimum is just above 0
    covered = generator.rasterization.covered
    assert 0 <= sample.posmap[covered][:, 2].min() < 1.0


def test_crop_is_prnet_box_without_perturbation(model):
    generator = TrainsetGenerator(model, GenerationConfig(resolution=128, angles=(), perturb=False))
    params = _params(model, seed=4)
    sample = generator.generate(_image(), params, "s", seed=0)[0]
    kpt = _image_vertices(model, params)[model.kpt_ind, :2]
    lo, hi = kpt.min(0), kpt.max(0)
    size = 1.5 * ((hi - lo).sum() / 2)
    k = 127 / size
    corner = (lo + hi) / 2 - size / 2
    np.testing.assert_allclose(sample.crop_matrix, [[k, 0, -k * corner[0]], [0, k, -k * corner[1]]], atol=1e-9)
    # the crop is the image warped by that matrix
    expected = cv2.warpAffine(_image(), sample.crop_matrix, (128, 128), flags=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(sample.image, expected)


def test_seeded_perturbation_is_deterministic_and_bounded(model):
    generator = TrainsetGenerator(model, GenerationConfig(resolution=32, angles=()))
    plain = TrainsetGenerator(model, GenerationConfig(resolution=32, angles=(), perturb=False))
    params = _params(model, seed=5)
    a = generator.generate(_image(), params, "s", seed=7)[0]
    b = generator.generate(_image(), params, "s", seed=7)[0]
    c = generator.generate(_image(), params, "s", seed=8)[0]
    ref = plain.generate(_image(), params, "s", seed=7)[0]
    np.testing.assert_array_equal(a.posmap, b.posmap)
    assert not np.allclose(a.crop_matrix, c.crop_matrix)
    scale = a.crop_matrix[0, 0] / ref.crop_matrix[0, 0]
    assert 1 / 1.1 - 1e-9 <= scale <= 1 / 0.9 + 1e-9


def test_a_seed_gives_the_crops_its_documented_draws_give(model):
    """A seed's crops are reproducible across versions: one generator seeded with the sample's seed draws the plain
    crop's x shift, y shift and side factor, then the same three for each rotated copy, whose rotation turns about
    the unperturbed keypoint box's centre. Replayed here from the keypoints and the documented formulas; an extra
    draw or a perturbed rotation centre moves the crops by pixels."""
    params = _params(model, seed=9)
    generator = TrainsetGenerator(model, GenerationConfig(resolution=32, angles=(30,)))
    plain, rotated = generator.generate(_image(), params, "s", seed=7)
    keypoints = _image_vertices(model, params)[model.kpt_ind, :2]
    draws = np.random.default_rng(7)

    def crop(points):
        lo, hi = points.min(0), points.max(0)
        old = (hi - lo).sum() / 2
        centre = (lo + hi) / 2 + [draws.uniform(-0.1, 0.1) * old, draws.uniform(-0.1, 0.1) * old]
        side = 1.5 * old * draws.uniform(0.9, 1.1)
        k = 31 / side
        return np.array([[k, 0, -k * (centre[0] - side / 2)], [0, k, -k * (centre[1] - side / 2)], [0, 0, 1]])

    plain_crop = crop(keypoints)
    a = np.deg2rad(30)
    turn = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    centre = (keypoints.min(0) + keypoints.max(0)) / 2
    rotation = np.vstack([np.column_stack([turn, centre - turn @ centre]), [0, 0, 1]])
    rotated_crop = crop(keypoints @ turn.T + rotation[:2, 2]) @ rotation
    # the generator's vertices are float32: its keypoints differ from these float64 ones by ~1e-6 px
    np.testing.assert_allclose(plain.crop_matrix, plain_crop[:2], rtol=0, atol=2e-6)
    np.testing.assert_allclose(rotated.crop_matrix, rotated_crop[:2], rtol=0, atol=2e-6)


def test_keypoint_box_shifts_the_centre_by_at_most_max_shift_of_the_mean_side():
    """The perturbed box replays its three documented draws (x shift, y shift, side factor, in that order): the
    centre moves by uniform(-max_shift, max_shift) times the keypoint box's mean side, not the crop's side. The
    keypoints' box is 100 x 60 (mean side 80, crop side 120), so the other sides give other boxes."""
    keypoints = np.array([[10.0, 20.0], [110.0, 80.0], [50.0, 50.0]])
    for seed in range(100):
        box = keypoint_box(keypoints, 1.5, np.random.default_rng(seed), 0.1, (0.9, 1.1))
        draws = np.random.default_rng(seed)
        dx, dy, factor = draws.uniform(-0.1, 0.1), draws.uniform(-0.1, 0.1), draws.uniform(0.9, 1.1)
        assert box == CropBox(60.0 + dx * 80.0, 50.0 + dy * 80.0, 1.5 * 80.0 * factor)


def test_stacked_crops_are_those_made_one_at_a_time():
    """The generator plans all of a sample's crops at once: boxes, crop matrices, compositions, mapped keypoints
    and crop scales of a stack are bit for bit those of single calls in turn (the draws in the same order)."""
    rng = np.random.default_rng(3)
    for _ in range(50):
        sets = rng.uniform(0, 450, (9, 68, 2))
        seed = int(rng.integers(2**31))
        boxes = keypoint_boxes(sets, 1.5, np.random.default_rng(seed), 0.1, (0.9, 1.1))
        draws = np.random.default_rng(seed)
        singles = [keypoint_box(points, 1.5, draws, 0.1, (0.9, 1.1)) for points in sets]
        assert boxes.tolist() == [[b.cx, b.cy, b.size] for b in singles]
        matrices = crop_matrices(boxes, 256)
        turns = np.stack([rotation_matrix(rng.uniform(0, 450, 2), angle) for angle in rng.uniform(-90, 90, 9)])
        composed, mapped = compose(matrices, turns), apply_affine(turns, sets[0])
        scales = crop_scales(composed)
        for i, box in enumerate(singles):
            np.testing.assert_array_equal(matrices[i], crop_matrix(box, 256))
            np.testing.assert_array_equal(composed[i], compose(matrices[i], turns[i]))
            np.testing.assert_array_equal(mapped[i], apply_affine(turns[i], sets[0]))
            assert scales[i] == np.sqrt(abs(np.linalg.det(composed[i][:, :2])))
            # and the single calls are the documented formulas, written out
            k = 255 / box.size
            np.testing.assert_array_equal(matrices[i], [[k, 0.0, -k * (box.cx - box.size / 2.0)],
                                                        [0.0, k, -k * (box.cy - box.size / 2.0)]])
            outer, inner = matrices[i], turns[i]
            np.testing.assert_array_equal(composed[i], np.hstack([outer[:, :2] @ inner[:, :2],
                                                                  (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]]))
            np.testing.assert_array_equal(mapped[i], sets[0] @ turns[i][:, :2].T + turns[i][:, 2])


def test_a_crop_of_no_area_is_refused():
    for size in (0.0, -3.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="crop sides must be positive and finite"):
            crop_matrix(CropBox(10.0, 20.0, size), 256)
    with pytest.raises(ValueError, match=r"got \[12.0, 0.0\]"):
        crop_matrices(keypoint_boxes(np.array([[[0.0, 0.0], [8.0, 8.0]], [[5.0, 5.0], [5.0, 5.0]]])), 64)


def test_rotated_map_is_the_rotation_of_the_plain_map(model):
    angles = (30, -45)
    generator = TrainsetGenerator(model, GenerationConfig(resolution=64, angles=angles, perturb=False))
    samples = generator.generate(_image(), _params(model, seed=6), "face", seed=0)
    assert [s.name for s in samples] == ["face", "face_angle_30", "face_angle_-45"]
    plain = samples[0]
    covered = generator.rasterization.covered
    inverse_plain = np.linalg.inv(np.vstack([plain.crop_matrix, [0, 0, 1]]))
    for angle, rotated in zip(angles, samples[1:]):
        # crop_rot o Rot o crop_plain^-1: a similarity with rotation angle theta (counter-clockwise on screen)
        between = (np.vstack([rotated.crop_matrix, [0, 0, 1]]) @ inverse_plain)[:2]
        k = np.sqrt(np.linalg.det(between[:, :2]))
        t = np.deg2rad(angle)
        np.testing.assert_allclose(between[:, :2] / k, [[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]], atol=1e-9)
        np.testing.assert_allclose(rotated.posmap[covered][:, :2],
                                   apply_affine(between, plain.posmap[covered][:, :2]), atol=2e-3)
        np.testing.assert_allclose(rotated.posmap[covered][:, 2], k * plain.posmap[covered][:, 2], atol=2e-3)
        assert np.all(rotated.posmap[~covered] == 0)


def test_rotation_composed_into_the_pose_gives_the_same_sample(model):
    """Rotating the image and composing the rotation into Pose_Para (exact, no refit) reproduces the copy."""
    angle = 30
    config = GenerationConfig(resolution=64, angles=(angle,), perturb=False)
    generator = TrainsetGenerator(model, config)
    params = _params(model, seed=7)
    image = _image(7)
    rotated = generator.generate(image, params, "s", seed=0)[1]

    kpt = _image_vertices(model, params)[model.kpt_ind, :2]
    centre = (kpt.min(0) + kpt.max(0)) / 2
    rot = rotation_matrix(centre, angle)
    # the same rotation in the y-up projection frame, about the centre (cx, h - 1 - cy, 0)
    t = np.deg2rad(angle)
    q = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    c3 = np.array([centre[0], H - 1 - centre[1], 0.0])
    pose = params["Pose_Para"]
    new_r = q @ angle2matrix_3ddfa(pose[:3])
    new_t = q @ (pose[3:6] - c3) + c3
    new_params = dict(params, Pose_Para=np.concatenate([matrix2angle_3ddfa(new_r), new_t, [pose[6]]]))
    np.testing.assert_allclose(angle2matrix_3ddfa(new_params["Pose_Para"][:3]), new_r, atol=1e-12)
    rotated_image = cv2.warpAffine(image, rot, (W, H), flags=cv2.INTER_LINEAR)
    direct = replace(config, angles=())
    again = TrainsetGenerator(model, direct).generate(rotated_image, new_params, "s", seed=0)[0]
    np.testing.assert_allclose(again.crop_matrix, np.vstack([rotated.crop_matrix, [0, 0, 1]])[:2] @
                               np.linalg.inv(np.vstack([rot, [0, 0, 1]])), atol=1e-6)
    np.testing.assert_allclose(again.posmap, rotated.posmap, atol=2e-3)
    # the crops agree away from the corners the intermediate rotated picture lost (two interpolations)
    centre_crop = (slice(16, 48), slice(16, 48))
    assert np.abs(again.image[centre_crop].astype(int) - rotated.image[centre_crop]).mean() < 40


def test_refit_mode_approximates_the_exact_rotation(model):
    if not hasattr(model, "fit"):
        pytest.skip("model.fit is not available")
    params = _params(model, seed=8, yaw=0.2)
    exact = TrainsetGenerator(model, GenerationConfig(resolution=64, angles=(30,), perturb=False))
    refit = TrainsetGenerator(model, GenerationConfig(resolution=64, angles=(30,), perturb=False, refit=True))
    a = exact.generate(_image(), params, "s", seed=0)[1]
    b = refit.generate(_image(), params, "s", seed=0)[1]
    np.testing.assert_array_equal(a.image, b.image)
    ka = keypoints_from_map(a.posmap, exact.uv_kpt_ind)[:, :2]
    kb = keypoints_from_map(b.posmap, refit.uv_kpt_ind)[:, :2]
    err = np.linalg.norm(ka - kb, axis=1)
    assert np.median(err) < 2.0, np.median(err)


def test_remapping_the_crop_by_the_map_recovers_the_texture(model, tmp_path):
    """Render the model with a known UV texture, generate, and read the texture back with cv2.remap."""
    params = _params(model, seed=9, yaw=0.0)
    params["Pose_Para"][:3] = [0.05, 0.0, 0.03]
    uv = model.uv_coords.astype(np.float64)
    colors = np.column_stack([40 + 180 * uv[:, 0], 40 + 180 * uv[:, 1],
                              128 + 90 * np.sin(9 * uv[:, 0]) * np.cos(7 * uv[:, 1])]).astype(np.float32)
    vertices = _image_vertices(model, params).astype(np.float32)
    image = np.clip(render_colors(vertices, model.full_triangles, colors, H, W, c=3), 0, 255).astype(np.uint8)
    image_path, mat_path = _write_sample(tmp_path, "rendered", image, params)

    r = 128
    generator = TrainsetGenerator(model, GenerationConfig(resolution=r, angles=()))
    sample = generator.process(image_path, mat_path, seed=0)[0]
    texture = cv2.remap(sample.image, sample.posmap[..., 0], sample.posmap[..., 1], cv2.INTER_LINEAR)
    expected = generator.rasterization.render(colors)
    # the inner face (hull of the chin, brow, eye, nose and mouth keypoints in UV): visible in a frontal view
    # and inside the crop; the sides are seen edge-on and the upper forehead lies outside the 1.5x box
    hull = cv2.convexHull(generator.uv_kpt_ind.T[np.r_[4:13, 17:68]].astype(np.int32))
    inner = np.zeros((r, r), np.uint8)
    cv2.fillConvexPoly(inner, hull, 1)
    inner = (inner > 0) & generator.rasterization.covered
    assert inner.sum() > 0.3 * generator.rasterization.covered.sum()
    diff = np.abs(texture[inner].astype(np.float64) - expected[inner])
    assert np.median(diff) < 2 and np.percentile(diff, 95) < 12, (np.median(diff), np.percentile(diff, 95))
    for ch in range(3):
        assert np.corrcoef(texture[inner][:, ch], expected[inner][:, ch])[0, 1] > 0.9


@pytest.mark.parametrize("shape", [(100, 400, 3), (400, 100, 3)], ids=["wide", "tall"])
def test_face_inside_bounds_columns_by_the_width_and_rows_by_the_height(shape):
    """A point counts as inside when 0 <= x <= w - 1 and 0 <= y <= h - 1; on a non-square image a point past the
    last row (or column) but within the other side's length is outside."""
    h, w = shape[:2]
    corner = [w - 1, h - 1]
    check_face_inside(np.array([[0.0, 0.0], corner]), shape, 2, "x.mat", "projected keypoints")
    for past in ([10, h - 0.5], [10, h + 50], [w - 0.5, 10], [w + 50, 10]):  # one each side of the other extent
        with pytest.raises(InputFileError) as info:
            check_face_inside(np.array([[0.0, 0.0], corner, past]), shape, 3, "x.mat", "projected keypoints")
        assert str(info.value) == (f"x.mat: face outside the image: 2 of 3 projected keypoints lie inside the "
                                   f"{w}x{h} image"), past


@pytest.mark.parametrize("problem, message", [
    ("missing image", "image file not found"),
    ("corrupt image", "cannot decode the image"),
    ("no pose", "missing key(s) Pose_Para"),
    ("nan", "Shape_Para contains NaN"),
    ("outside", "face outside the image"),
    ("missing mat", "parameter file (.mat) not found"),
    ("image folder", "bad.png: is a folder; give the image file in it"),
    ("mat folder", "bad.mat: is a folder; give the parameter file (.mat) in it"),
])
def test_bad_inputs_raise_sample_error_naming_file_and_problem(model, tmp_path, problem, message):
    params = _params(model, seed=10)
    image_path, mat_path = _write_sample(tmp_path, "bad", _image(), params)
    if problem == "missing image":
        image_path.unlink()
    elif problem == "corrupt image":
        image_path.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png" * 4)
    elif problem == "no pose":
        sio.savemat(mat_path, {k: v for k, v in params.items() if k != "Pose_Para"})
    elif problem == "nan":
        params["Shape_Para"][3] = np.nan
        sio.savemat(mat_path, params)
    elif problem == "outside":
        params["Pose_Para"][3] = 5000.0
        sio.savemat(mat_path, params)
    elif problem == "missing mat":
        mat_path.unlink()
    elif problem == "image folder":
        image_path.unlink()
        image_path.mkdir()
    elif problem == "mat folder":
        mat_path.unlink()
        mat_path.mkdir()
    generator = TrainsetGenerator(model, GenerationConfig(resolution=16, angles=()))
    with pytest.raises(InputFileError) as info:
        generator.process(image_path, mat_path, seed=0)
    text = str(info.value)
    assert message in text
    assert "bad." in text
    assert isinstance(info.value, ValueError)
    # the batch entry point reports the same error in place and still processes the good sample
    good = _write_sample(tmp_path / "good", "good", _image(), _params(model, seed=10))
    results = generator.process_many([(image_path, mat_path, 0), (*good, 0)])
    assert isinstance(results[0], InputFileError) and message in str(results[0])
    assert results[1][0].name == "good"


def test_process_many_is_bit_identical_to_process_whatever_the_batch(model, tmp_path):
    """Outputs never depend on batching (resumed or sharded runs must reproduce bytes)."""
    generator = TrainsetGenerator(model, GenerationConfig(resolution=32, angles=(15,)), cache_size=0)
    jobs = [(*_write_sample(tmp_path, f"s{i}", _image(i), _params(model, seed=i)), i) for i in range(4)]
    singles = [generator.process(*job) for job in jobs]
    for batch in (jobs, jobs[2:] + jobs[:1] + jobs[:1], jobs[1:2]):
        for job, outputs in zip(batch, generator.process_many(batch)):
            single = singles[jobs.index(job)]
            assert [o.name for o in outputs] == [o.name for o in single]
            for a, b in zip(outputs, single):
                np.testing.assert_array_equal(a.image, b.image)
                np.testing.assert_array_equal(a.posmap, b.posmap)
    # the cache returns the same bytes as a fresh computation
    cached = TrainsetGenerator(model, GenerationConfig(resolution=32, angles=(15,)))
    for _ in range(2):
        np.testing.assert_array_equal(cached.process(*jobs[0])[1].posmap, singles[0][1].posmap)


@pytest.mark.parametrize("settings", [dict(angles=(15, -30)), dict(angles=(20,), refit=True, preview=True)],
                         ids=["exact", "refit-preview"])
def test_a_float16_generator_gives_the_float32_maps_rounded(model, tmp_path, settings):
    """A run's generator returns its maps as the run stores them (float16, placed and rounded in one pass): the
    float32 generator's maps through to_float16, bit for bit, for plain, rotated and refitted outputs and with a
    preview (drawn from the float32 map, the same picture)."""
    config = GenerationConfig(resolution=48, **settings)
    jobs = [(*_write_sample(tmp_path, f"s{i}", _image(i), _params(model, seed=i)), i) for i in range(2)]
    plain = TrainsetGenerator(model, config).process_many(jobs)
    half = TrainsetGenerator(model, config, posmap_dtype=np.float16).process_many(jobs)
    for outputs, rounded in zip(plain, half):
        assert [o.name for o in outputs] == [o.name for o in rounded]
        for a, b in zip(outputs, rounded):
            assert a.posmap.dtype == np.float32 and b.posmap.dtype == np.float16
            np.testing.assert_array_equal(to_float16(a.posmap).view(np.uint16), b.posmap.view(np.uint16))
            np.testing.assert_array_equal(a.image, b.image)
            if config.preview:
                np.testing.assert_array_equal(a.preview, b.preview)
    with pytest.raises(ValueError, match="posmap_dtype must be float32 or float16, got float64"):
        TrainsetGenerator(model, config, posmap_dtype=np.float64)


def test_read_300wlp_sample_returns_rgb_and_parameters(model, tmp_path):
    image = _image(11)
    params = _params(model, seed=11)
    params["pt2d"] = np.arange(136, dtype=np.float64).reshape(2, 68)
    image_path, mat_path = _write_sample(tmp_path, "s", image, params)
    got_image, got = read_300wlp_sample(image_path, mat_path)
    np.testing.assert_array_equal(got_image, image)
    assert got["Pose_Para"].shape == (7,) and got["Shape_Para"].shape == (199, 1)
    assert got["Exp_Para"].shape == (29, 1) and got["pt2d"].shape == (2, 68)
    np.testing.assert_allclose(got["Pose_Para"], params["Pose_Para"])
    rgba = sample_io.open_image(image_path).rgba()  # the generator's warp source, decoded whole
    assert rgba.shape == (*image.shape[:2], 4) and np.all(rgba[..., 3] == 255)
    np.testing.assert_array_equal(rgba[..., :3], image)


def test_process_equals_generate_on_the_decoded_sample(model, tmp_path):
    """``process`` decodes straight to RGBA, ``generate`` converts the RGB image it is given: the same bytes."""
    generator = TrainsetGenerator(model, GenerationConfig(resolution=32, angles=(15, -30)))
    image_path, mat_path = _write_sample(tmp_path, "s", _image(5), _params(model, seed=5))
    processed = generator.process(image_path, mat_path, 3)
    generated = generator.generate(*read_300wlp_sample(image_path, mat_path), "s", 3)
    assert [o.name for o in processed] == [o.name for o in generated] == ["s", "s_angle_15", "s_angle_-30"]
    for a, b in zip(processed, generated):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.posmap, b.posmap)


def _six_pose_values(params):
    params["Pose_Para"] = params["Pose_Para"][:6]


def _negative_scale(params):
    params["Pose_Para"][6] = -params["Pose_Para"][6]


def _nan_shape(params):
    params["Shape_Para"][3] = np.nan


def _no_expression(params):
    del params["Exp_Para"]


@pytest.mark.parametrize("spoil, problem", [
    (_six_pose_values, "Pose_Para has shape (6,), expected 7 values"),
    (_negative_scale, "Pose_Para scale (entry 7) must be positive, got -0.0011"),
    (_nan_shape, "Shape_Para contains NaN or infinite values"),
    (_no_expression, "missing key(s) Exp_Para (a 300W-LP .mat needs Pose_Para, Shape_Para, Exp_Para)"),
])
def test_generate_refuses_the_parameters_a_file_may_not_hold(model, tmp_path, spoil, problem):
    """In memory or read from a .mat, bad parameters get the same one-line error (naming the sample or the file)
    instead of an IndexError, or a mirrored face rendered from a negative scale."""
    generator = TrainsetGenerator(model, GenerationConfig(resolution=16, angles=()))
    params = _params(model, seed=12)
    spoil(params)
    with pytest.raises(InputFileError, match=f"^s: {re.escape(problem)}$"):
        generator.generate(_image(), params, "s", seed=0)
    image_path, mat_path = _write_sample(tmp_path, "s", _image(), params)
    with pytest.raises(InputFileError) as from_file:
        generator.process(image_path, mat_path, seed=0)
    with pytest.raises(InputFileError) as in_memory:
        generator.generate(_image(), sio.loadmat(mat_path), "s", seed=0)
    assert (from_file.value.path, in_memory.value.path) == (mat_path, "s")
    assert from_file.value.problem == in_memory.value.problem


def test_generate_takes_parameters_as_a_mat_file_holds_them(model):
    """A (1, 7) pose and (1, n) row vectors are read like (7,) and (n, 1); a Python list is refused by name."""
    generator = TrainsetGenerator(model, GenerationConfig(resolution=16, angles=()))
    params = _params(model, seed=13)
    rows = {k: v.reshape(1, -1) for k, v in params.items()}
    np.testing.assert_array_equal(generator.generate(_image(), rows, "s", seed=0)[0].posmap,
                                  generator.generate(_image(), params, "s", seed=0)[0].posmap)
    params["Shape_Para"] = params["Shape_Para"].ravel().tolist()
    with pytest.raises(InputFileError, match=r"^s: Shape_Para is a list of shape \(199,\), expected a numeric array$"):
        generator.generate(_image(), params, "s", seed=0)


@pytest.mark.parametrize("image, got", [
    (_image().astype(np.float64), "float64 array of shape (300, 300, 3)"),
    (_image().astype(np.float32) / 255, "float32 array of shape (300, 300, 3)"),
    (_image().astype(np.uint16) * 257, "uint16 array of shape (300, 300, 3)"),
    (_image()[:, :, 0], "uint8 array of shape (300, 300)"),
    (np.dstack([_image(), _image()[:, :, :1]]), "uint8 array of shape (300, 300, 4)"),
    (_image().tolist(), "list"),
])
def test_generate_takes_only_the_uint8_rgb_image_read_image_returns(model, image, got):
    """The samples' images are uint8 (as written to disk): another dtype is refused, not rescaled or passed on."""
    generator = TrainsetGenerator(model, GenerationConfig(resolution=16, angles=()))
    message = f"s: the image must be an (h, w, 3) uint8 RGB array (0-255), got a {got}"
    with pytest.raises(InputFileError, match=f"^{re.escape(message)}$"):
        generator.generate(image, _params(model), "s", seed=0)


def test_300wlp_fixture_with_default_model_and_preview(model):
    folder = FIXTURES / "300W_LP"
    if not (folder / "IBUG_image_008_1_0.jpg").is_file():
        pytest.skip(f"fixtures not found in {FIXTURES}")
    stem = folder / "IBUG_image_008_1_0"
    generator = TrainsetGenerator(model, GenerationConfig(preview=True, angles=(30,)))
    samples = generator.process(f"{stem}.jpg", f"{stem}.mat", seed=0)
    assert [s.name for s in samples] == ["IBUG_image_008_1_0", "IBUG_image_008_1_0_angle_30"]
    _, params = read_300wlp_sample(f"{stem}.jpg", f"{stem}.mat")
    for sample in samples:
        assert sample.preview.shape == (256, 512, 3) and sample.preview.dtype == np.uint8
        keypoints = keypoints_from_map(sample.posmap, generator.uv_kpt_ind)[:, :2]
        assert np.all((keypoints >= 0) & (keypoints <= 255))
        # the 300W-LP landmarks of the inner face (brows, nose, eyes: 17..47) in the crop
        pt2d = apply_affine(sample.crop_matrix, params["pt2d"].T)
        err = np.linalg.norm(keypoints[17:48] - pt2d[17:48], axis=1)
        assert np.median(err) < 10, np.median(err)
        # the preview draws each keypoint as a green dot on the crop, left half
        xy = np.round(keypoints).astype(int)
        dots = sample.preview[xy[:, 1], xy[:, 0]]
        assert np.all(dots == (0, 255, 0))
        # elsewhere the left half is the crop itself
        assert np.mean(np.any(sample.preview[:, :256] != sample.image, axis=2)) < 0.2


@pytest.mark.parametrize("kwargs, message", [
    ({"resolution": 4}, "resolution"),
    ({"scale_range": (1.1, 0.9)}, "scale_range"),
    ({"posmap_dtype": "float64"}, "posmap_dtype"),
    ({"angles": (15, 15.0)}, "angles must have distinct names"),
    ({"angles": (15.0000001, 15.0000002)}, r"angles must have distinct names .*\(15.0000001, 15.0000002\)"),
    ({"max_shift": 1.5}, "max_shift"),
    ({"angles": (15, float("nan"))}, r"angles must be finite degrees, got \(15, nan\)"),
    ({"angles": (float("inf"),)}, r"angles must be finite degrees, got \(inf,\)"),
])
def test_generation_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GenerationConfig(**kwargs)


def test_too_many_parameters_for_the_model(model):
    generator = TrainsetGenerator(model, GenerationConfig(resolution=16, angles=()))
    params = _params(model)
    params["Exp_Para"] = np.ones((40, 1))
    with pytest.raises(InputFileError, match="Exp_Para has 40 entries, nonzero beyond the model's 29"):
        generator.generate(_image(), params, "s", seed=0)
    params["Exp_Para"][29:] = 0  # zero tails are harmless
    assert generator.generate(_image(), params, "s", seed=0)[0].name == "s"


def test_read_image_ignores_the_exif_orientation(tmp_path):
    """A 300W-LP .mat describes the pixels as stored: an Orientation tag must not turn them."""
    image = np.random.default_rng(3).integers(0, 256, (8, 16, 3), dtype=np.uint8)
    plain = cv2.imencode(".jpg", image)[1].tobytes()
    (tmp_path / "plain.jpg").write_bytes(plain)
    (tmp_path / "rotated.jpg").write_bytes(with_exif_orientation(plain, 6))
    stored = read_image(tmp_path / "plain.jpg")
    got = read_image(tmp_path / "rotated.jpg")
    assert stored.shape == got.shape == (8, 16, 3)
    np.testing.assert_array_equal(got, stored)
    np.testing.assert_array_equal(sample_io.open_image(tmp_path / "rotated.jpg").rgba()[..., :3], stored)


@pytest.mark.parametrize("endian", ["<", ">"])
def test_image_header_reads_the_exif_orientation_that_pil_writes(endian):
    """IFD0's Orientation tag (0x0112) in either TIFF byte order, behind PIL's JFIF APP0 and among other tags."""
    image = pytest.importorskip("PIL.Image")
    for orientation in (1, 6, 8):
        exif = image.Exif()
        exif.endian = endian
        exif[0x010F], exif[0x0112], exif[0x0131] = "Phone maker", orientation, "camera app"  # Make, ..., Software
        jpeg = io.BytesIO()
        image.new("RGB", (16, 8)).save(jpeg, "JPEG", exif=exif)
        data = jpeg.getvalue()
        tiff = data[data.index(b"Exif\0\0") + 6:]
        assert tiff[:2] == {"<": b"II", ">": b"MM"}[endian]
        assert image.open(io.BytesIO(data)).getexif()[0x0112] == orientation  # PIL reads back what it wrote
        assert read_image_header(data) == ImageHeader("jpeg", 16, 8, orientation)
    plain = io.BytesIO()
    image.new("RGB", (16, 8)).save(plain, "JPEG")
    assert read_image_header(plain.getvalue()) == ImageHeader("jpeg", 16, 8, None)
    exif = image.Exif()
    exif[0x010F] = "Phone maker"
    without_tag = io.BytesIO()
    image.new("RGB", (16, 8)).save(without_tag, "JPEG", exif=exif)
    assert b"Exif\0\0" in without_tag.getvalue()
    assert read_image_header(without_tag.getvalue()) == ImageHeader("jpeg", 16, 8, None)


def test_read_image_warns_naming_the_first_jpeg_whose_exif_orientation_is_not_1(tmp_path, caplog, monkeypatch):
    """The advice is given once, with the first such photo; the later ones are named at DEBUG level."""
    monkeypatch.setattr(sample_io, "_orientation_warned", False)  # as in a process that has read no such photo
    image = np.random.default_rng(3).integers(0, 256, (8, 16, 3), dtype=np.uint8)
    plain = cv2.imencode(".jpg", image)[1].tobytes()
    (tmp_path / "plain.jpg").write_bytes(plain)
    for orientation in (1, 6, 8, 3):
        (tmp_path / f"o{orientation}.jpg").write_bytes(with_exif_orientation(plain, orientation))
    with caplog.at_level(logging.DEBUG, logger="face3d.trainset.sample_io"):
        for name in ("plain", "o1", "o6", "o8", "o1", "o3"):
            assert read_image(tmp_path / f"{name}.jpg").shape == (8, 16, 3)
    assert [(record.levelname, record.getMessage()) for record in caplog.records] == [
        ("WARNING", f"{tmp_path / 'o6.jpg'}: EXIF orientation 6 (viewers show the photo turned or mirrored): its "
                    f"pixels are read as stored, not rotated; landmarks, boxes and .mat files must describe the "
                    f"stored pixels (further such images are named at debug level only)"),
        ("DEBUG", f"{tmp_path / 'o8.jpg'}: EXIF orientation 8: its pixels are read as stored, not rotated"),
        ("DEBUG", f"{tmp_path / 'o3.jpg'}: EXIF orientation 3: its pixels are read as stored, not rotated")]


def test_read_image_names_the_formats_it_reads_when_refusing_another(tmp_path):
    pixels = np.zeros((8, 16, 3), np.uint8)
    jpeg = cv2.imencode(".jpg", pixels)[1].tobytes()
    files = {"x.webp": cv2.imencode(".webp", pixels)[1].tobytes(), "x.tif": cv2.imencode(".tif", pixels)[1].tobytes(),
             "webp.jpg": cv2.imencode(".webp", pixels)[1].tobytes(), "empty.jpg": b"", "cut.jpg": jpeg[:len(jpeg) // 2]}
    other = "cannot decode the image: {}not a JPEG, PNG or BMP file, the formats read (convert it to one)"
    expected = {"x.webp": other.format("a WebP image, "), "x.tif": other.format(""),
                "webp.jpg": other.format("a WebP image, "), "empty.jpg": "cannot decode the image: the file is empty",
                "cut.jpg": "cannot decode the image (corrupt or truncated)"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputFileError) as raised:
            read_image(tmp_path / name)
        assert str(raised.value) == f"{tmp_path / name}: {expected[name]}"


def test_read_image_takes_a_jpeg_with_stray_bytes_between_segments(tmp_path):
    """Bytes between two marker segments (libjpeg: "Corrupt JPEG data: 3 extraneous bytes before marker") are
    skipped up to the next 0xFF, as libjpeg does: the header gives the size and the pixels are OpenCV's."""
    image = np.random.default_rng(4).integers(0, 256, (8, 16, 3), dtype=np.uint8)
    clean = cv2.imencode(".jpg", image)[1].tobytes()
    assert clean[2:4] == b"\xff\xe0"  # SOI, then the APP0 (JFIF) segment and its length
    app0_end = 4 + int.from_bytes(clean[4:6], "big")
    stray = clean[:app0_end] + b"\0\0\0" + clean[app0_end:]
    assert read_image_header(stray) == ImageHeader("jpeg", 16, 8)
    (tmp_path / "stray.jpg").write_bytes(stray)
    decoded = cv2.imdecode(np.frombuffer(stray, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(decoded, cv2.imdecode(np.frombuffer(clean, np.uint8), cv2.IMREAD_COLOR))
    np.testing.assert_array_equal(read_image(tmp_path / "stray.jpg"), cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB))


@pytest.mark.parametrize("triangles, resolution, message", [
    (np.array([[2**32, 1, 2]], np.int64), 8, "triangles must hold indices into uv_coords in [0, 3)"),  # no wrap to 0
    (np.array([[0.5, 1, 2]]), 8, "triangles must hold whole-number indices"),
    (np.array([[0, 1, 2]]), 2.7, "resolution must be a positive integer, got 2.7"),
    (np.array([[0, 1, 2]]), 2**24 + 1, "resolution must be a positive integer at most"),
    (np.array([[0, 1, 2]]), 1, "resolution must be at least 2, got 1"),
])
def test_rasterize_uv_refuses_what_it_cannot_take_naming_the_argument(triangles, resolution, message):
    uv = np.array([[0, 0], [1, 0], [0, 1]], np.float64)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        rasterize_uv(uv, triangles, resolution)
    with pytest.raises(ValueError, match="^uv_coords must be finite, found NaN or inf$"):
        rasterize_uv(np.where(uv == 1, np.nan, uv), np.array([[0, 1, 2]]), 8)
