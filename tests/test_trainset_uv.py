"""UV-space data (face3d.trainset.uv_layout, posmap rasterization): formulas, file formats, render equality.

Uses the embedded default model. Budget: < 8 s.
"""
import re

import cv2
import numpy as np
import pytest

from face3d.mesh.render import render_colors
from face3d.morphable_model import MorphableModel
from face3d.resources import default_uv_data_dir
from face3d.trainset import build_uv_data, load_uv_data, rasterize_uv, uv_keypoint_pixels, uv_to_pixels, write_uv_data
from face3d.trainset.uv_layout import CANONICAL_FILE, UV_DATA_FILES
from face3d.utils.errors import InputFileError

R = 256


@pytest.fixture(scope="module")
def model():
    return MorphableModel()


@pytest.fixture(scope="module")
def uv_data(model):
    return build_uv_data(model, R)


def test_uv_to_pixels_prnet_formula():
    uv = np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.25]], dtype=np.float32)
    np.testing.assert_allclose(uv_to_pixels(uv, 256), [[0, 255, 0], [255, 0, 0], [127.5, 191.25, 0]])


def test_uv_kpt_ind_is_rounded_uv_of_keypoints(model, uv_data):
    kpt = uv_data.uv_kpt_ind
    assert kpt.shape == (2, 68) and kpt.dtype == np.int32
    u, v = model.uv_coords[model.kpt_ind].astype(np.float64).T
    x, y = np.floor(u * 255 + 0.5), np.floor(255 - v * 255 + 0.5)
    covered = rasterize_uv(model.uv_coords, model.full_triangles, R).covered
    inside = covered[y.astype(int), x.astype(int)]
    assert inside.sum() >= 34
    # Keypoints inside the layout follow PRNet's formula exactly; border ones move to a covered pixel nearby.
    np.testing.assert_array_equal(kpt[0, inside], x[inside])
    np.testing.assert_array_equal(kpt[1, inside], y[inside])
    assert np.all(covered[kpt[1], kpt[0]])
    assert np.all(np.hypot(kpt[0] - u * 255, kpt[1] - (255 - v * 255)) < 3)


def test_uv_keypoint_pixels_rounds_half_away_from_zero():
    uv = np.array([[0.5, 0.5], [2.5 / 255, 1 - 3.5 / 255]])
    np.testing.assert_array_equal(uv_keypoint_pixels(uv, [0, 1], 256), [[128, 3], [128, 4]])


def test_an_off_mesh_keypoint_takes_the_nearest_covered_pixel():
    """One triangle in the top-left corner of an 8 x 8 UV image; keypoints whose rounded pixel it does not cover
    move to the nearest covered pixel, keypoints it covers stay. The layout is not symmetric in x and y, so
    reading the mask at (x, y) instead of (y, x), or measuring from (y, x), gives other pixels."""
    # vertices 0-2: the triangle (pixels (0, 0), (3, 0), (0, 7)); keypoint vertices 3-5 at pixels (6, 0), (0, 7)
    # (the triangle's own corner, on its uncovered edge) and (0, 5)
    uv = np.array([[0.0, 1.0], [3 / 7, 1.0], [0.0, 0.0], [6 / 7, 1.0], [0.0, 0.0], [0.0, 2 / 7]])
    covered = rasterize_uv(uv, np.array([[0, 1, 2]]), 8).covered
    columns_covered_per_row = [3, 3, 3, 2, 2, 1, 1, 0]
    np.testing.assert_array_equal(covered, np.arange(8)[None, :] < np.array(columns_covered_per_row)[:, None])
    np.testing.assert_array_equal(uv_keypoint_pixels(uv, [3, 4, 5], 8), [[6, 0, 0], [0, 7, 5]])
    # (6, 0) -> (2, 0), 4 px left (the next nearest, (2, 1), is sqrt(17) away); (0, 7) -> (0, 6); (0, 5) is covered
    np.testing.assert_array_equal(uv_keypoint_pixels(uv, [3, 4, 5], 8, covered), [[2, 0, 0], [0, 6, 5]])


def test_masks_and_weights(model, uv_data):
    covered = rasterize_uv(model.uv_coords, model.full_triangles, R).covered
    face = uv_data.face_mask > 0
    assert set(np.unique(uv_data.face_mask)) == {0, 255}
    assert set(np.unique(uv_data.weight_mask)) == {0, 48, 64, 255}
    assert not np.any(face & ~covered)
    # 0 exactly outside the covered UV area; 255 exactly at the keypoint pixels.
    np.testing.assert_array_equal(uv_data.weight_mask > 0, covered)
    k = uv_data.uv_kpt_ind
    hot = np.zeros((R, R), bool)
    hot[k[1], k[0]] = True
    np.testing.assert_array_equal(uv_data.weight_mask == 255, hot)
    # eyes, nose and mouth regions carry 64: the nose tip (keypoint 30) and a lip corner (48) sit in them.
    labels = model.region_labels
    for i in (30, 48, 36):
        assert labels[model.kpt_ind[i]] > 0
    feature = uv_data.weight_mask == 64
    assert 0.02 < feature.sum() / covered.sum() < 0.5
    # face without eyes: a subset of the face, missing exactly some 64-weighted pixels.
    eyes_removed = face & (uv_data.face_eyes == 0)
    assert 0 < eyes_removed.sum() and np.all(uv_data.weight_mask[eyes_removed] >= 64)
    assert not np.any((uv_data.face_eyes > 0) & ~face)


def test_neck_zeroed_variant_differs_only_below_the_jaw(model, uv_data):
    zeroed = build_uv_data(model, R, neck_zeroed=True)
    changed = zeroed.weight_mask != uv_data.weight_mask
    face = uv_data.face_mask > 0
    assert not np.any(changed & face)
    assert np.all(zeroed.weight_mask[changed] == 0)
    assert np.all(zeroed.weight_mask[~face] == 0)
    # the neck lies below the polyline through the jaw keypoints 0..16 (extended sideways at their ends)
    jaw = uv_to_pixels(model.uv_coords[model.kpt_ind[:17]], R)
    order = np.argsort(jaw[:, 0])
    y, x = np.nonzero(changed)
    assert np.all(y >= np.interp(x, jaw[order, 0], jaw[order, 1]) - 1)
    # the default model reaches below the chin, as the BFM does: a real neck strip is zeroed
    assert changed.sum() > 0.03 * (uv_data.weight_mask > 0).sum()


def test_neck_of_a_model_with_a_neck():
    """A flat grid model whose jaw keypoints run across the middle of its UV square: below them is neck."""
    g = 41
    v, u = np.mgrid[0:g, 0:g] / (g - 1.0)
    idx = np.arange(g * g).reshape(g, g)
    tri = np.concatenate([np.stack([idx[:-1, :-1], idx[1:, :-1], idx[:-1, 1:]], -1).reshape(-1, 3),
                          np.stack([idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]], -1).reshape(-1, 3)])
    # jaw 0..16 on a straight line at grid row 28 (v = 0.3 from the bottom), the rest above it
    kpt = np.concatenate([idx[28, 4:37:2], idx[8:14, 5:35:3].ravel()[:51]])
    model = MorphableModel.from_arrays({
        "shapeMU": np.zeros((3 * g * g, 1), np.float32), "shapePC": np.zeros((3 * g * g, 1), np.float32),
        "shapeEV": np.ones(1, np.float32), "expPC": np.zeros((3 * g * g, 1), np.float32),
        "expEV": np.ones(1, np.float32), "texMU": np.zeros((3 * g * g, 1), np.float32),
        "texPC": np.zeros((3 * g * g, 1), np.float32), "texEV": np.ones(1, np.float32),
        "tri": tri.astype(np.int32), "kpt_ind": kpt.astype(np.int32)},
        uv_coords=np.column_stack([u.ravel(), 1 - v.ravel()]))
    r = 41
    default = build_uv_data(model, r)
    zeroed = build_uv_data(model, r, neck_zeroed=True)
    covered = rasterize_uv(model.uv_coords, model.full_triangles, r).covered
    assert covered.sum() >= (r - 1) ** 2  # the top-left rule leaves out the last column / row at most
    neck = (np.arange(r)[:, None] > 28) & covered
    face = (np.arange(r)[:, None] <= 28) & covered
    np.testing.assert_array_equal(default.face_mask > 0, face)
    assert np.all(default.weight_mask[neck] == 48)
    assert np.all(zeroed.weight_mask[neck] == 0)
    np.testing.assert_array_equal(zeroed.weight_mask[~neck], default.weight_mask[~neck])
    np.testing.assert_array_equal(default.face_ind, np.flatnonzero(face))


def test_face_ind_and_triangles(uv_data):
    np.testing.assert_array_equal(uv_data.face_ind, np.flatnonzero(uv_data.face_mask.reshape(-1)))
    tri = uv_data.triangles
    assert tri.ndim == 2 and tri.shape[1] == 3 and tri.min() >= 0 and tri.max() < uv_data.face_ind.size
    y, x = np.divmod(uv_data.face_ind[tri], R)
    # every triangle is half of a 2x2 pixel block
    assert np.all(np.ptp(x, axis=1) == 1) and np.all(np.ptp(y, axis=1) == 1)
    # clockwise with y up, seen from outside (BFM winding): cross product of the edges in (x, -y) is negative
    cross = (x[:, 1] - x[:, 0]) * (-(y[:, 2] - y[:, 0])) - (-(y[:, 1] - y[:, 0])) * (x[:, 2] - x[:, 0])
    assert np.all(cross < 0)
    # close to two triangles per face pixel
    assert 1.8 < tri.shape[0] / uv_data.face_ind.size < 2.0


def test_write_and_load_round_trip_with_prnet_text_layout(uv_data, tmp_path):
    paths = write_uv_data(uv_data, tmp_path / "uv-data")
    assert [p.name for p in paths] == [*UV_DATA_FILES, CANONICAL_FILE]
    lines = (tmp_path / "uv-data" / "uv_kpt_ind.txt").read_text().splitlines()
    assert len(lines) == 2 and all(len(line.split()) == 68 for line in lines)
    assert [int(t) for t in lines[0].split()] == uv_data.uv_kpt_ind[0].tolist()
    face_lines = (tmp_path / "uv-data" / "face_ind.txt").read_text().split()
    assert [int(t) for t in face_lines[:5]] == uv_data.face_ind[:5].tolist()
    back = load_uv_data(tmp_path / "uv-data")
    for name in ("uv_kpt_ind", "face_ind", "triangles", "face_mask", "weight_mask", "face_eyes",
                 "canonical_vertices"):
        np.testing.assert_array_equal(getattr(back, name), getattr(uv_data, name), err_msg=name)
    assert back.resolution == R


def test_load_reports_missing_file(uv_data, tmp_path):
    write_uv_data(uv_data, tmp_path)
    (tmp_path / "face_ind.txt").unlink()
    with pytest.raises(FileNotFoundError, match="face_ind.txt"):
        load_uv_data(tmp_path)


def test_load_names_a_damaged_canonical_vertices_file(uv_data, tmp_path):
    write_uv_data(uv_data, tmp_path)
    canonical = tmp_path / CANONICAL_FILE
    canonical.write_bytes(canonical.read_bytes()[:1000])
    with pytest.raises(InputFileError, match=re.escape(f"{canonical}: not a .npy array of canonical vertices "
                                                       "(truncated: its header declares (")):
        load_uv_data(tmp_path)


def _resize_png(path, side):
    """Rewrite the PNG at ``path`` at side x side pixels (nearest neighbour, channels kept)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(path), cv2.resize(image, (side, side), interpolation=cv2.INTER_NEAREST))


def test_the_shipped_face_ind_lists_the_face_mask_pixels():
    """What load_uv_data requires of every folder holds for the packaged files, read as they are stored."""
    face_ind = np.loadtxt(default_uv_data_dir() / "face_ind.txt").astype(np.int64)
    face_mask = cv2.imread(str(default_uv_data_dir() / "uv_face_mask.png"), cv2.IMREAD_GRAYSCALE)
    assert face_ind.size == 45496
    np.testing.assert_array_equal(face_ind, np.flatnonzero(face_mask))


@pytest.mark.parametrize("sides, listing", [
    ({"uv_face_mask.png": 128}, "uv_face_mask.png is 128x128, uv_weight_mask.png and uv_face_eyes.png are 256x256"),
    ({"uv_face_eyes.png": 512}, "uv_face_eyes.png is 512x512, uv_face_mask.png and uv_weight_mask.png are 256x256"),
    # the face mask fits face_ind.txt: the two others are the odd ones
    ({"uv_weight_mask.png": 512, "uv_face_eyes.png": 512},
     "uv_weight_mask.png and uv_face_eyes.png are 512x512, uv_face_mask.png is 256x256"),
    ({"uv_face_mask.png": 128, "uv_face_eyes.png": 512},
     "uv_face_mask.png is 128x128, uv_weight_mask.png is 256x256, uv_face_eyes.png is 512x512"),
])
def test_load_names_the_masks_of_another_size(uv_data, tmp_path, sides, listing):
    write_uv_data(uv_data, tmp_path)
    for name, side in sides.items():
        _resize_png(tmp_path / name, side)
    with pytest.raises(InputFileError) as error:
        load_uv_data(tmp_path)
    assert str(error.value) == (f"{tmp_path}: masks of different sizes: {listing}; all three must be at the "
                                f"resolution of face_ind.txt and uv_kpt_ind.txt")


def test_load_refuses_a_mask_that_is_not_square(uv_data, tmp_path):
    write_uv_data(uv_data, tmp_path)
    cv2.imwrite(str(tmp_path / "uv_weight_mask.png"), uv_data.weight_mask[:200])
    with pytest.raises(InputFileError) as error:
        load_uv_data(tmp_path)
    assert str(error.value) == f"{tmp_path / 'uv_weight_mask.png'}: expected a square image, got 256x200"


def test_load_refuses_face_ind_other_than_the_face_mask_pixels(uv_data, tmp_path):
    """Masks at another resolution than the index files, and a face_ind.txt of the mask's size but one other
    pixel: either would read the network's map at other pixels than the face."""
    write_uv_data(uv_data, tmp_path)
    for name in ("uv_face_mask.png", "uv_weight_mask.png", "uv_face_eyes.png"):
        _resize_png(tmp_path / name, 512)
    face_ind = tmp_path / "face_ind.txt"
    with pytest.raises(InputFileError) as error:
        load_uv_data(tmp_path)
    assert str(error.value) == (f"{face_ind}: not the face pixels of uv_face_mask.png (512x512, row-major y*512 + x, "
                                f"ascending): it holds 45496 indices for the mask's 181984 face pixels; the two are "
                                f"from different uv-data sets or resolutions")
    write_uv_data(uv_data, tmp_path)
    moved = uv_data.face_ind.copy()
    moved[100] += 256  # the pixel below
    np.savetxt(face_ind, moved.reshape(-1, 1), fmt="%d")
    with pytest.raises(InputFileError) as error:
        load_uv_data(tmp_path)
    assert str(error.value) == (f"{face_ind}: not the face pixels of uv_face_mask.png (256x256, row-major y*256 + x, "
                                f"ascending): they differ at 1 of its 45496 indices; the two are from different "
                                f"uv-data sets or resolutions")


@pytest.mark.parametrize("keypoints, got", [(np.ones((2, 60)), "60"), (np.ones((68, 2)), "shape (68, 2)")])
def test_load_refuses_a_uv_kpt_ind_without_68_keypoints(uv_data, tmp_path, keypoints, got):
    write_uv_data(uv_data, tmp_path)
    np.savetxt(tmp_path / "uv_kpt_ind.txt", keypoints, fmt="%d")
    with pytest.raises(InputFileError) as error:
        load_uv_data(tmp_path)
    assert str(error.value) == f"{tmp_path / 'uv_kpt_ind.txt'}: expected 68 keypoints (2 x 68 values), got {got}"


def test_rasterization_equals_render_colors(model):
    r = 96
    ras = rasterize_uv(model.uv_coords, model.full_triangles, r)
    rng = np.random.default_rng(3)
    attributes = rng.normal(0, 100, (model.nver, 3)).astype(np.float32)
    expected = render_colors(uv_to_pixels(model.uv_coords, r), model.full_triangles, attributes, r, r, c=3)
    np.testing.assert_allclose(ras.render(attributes), expected, rtol=0, atol=1e-3)
    np.testing.assert_array_equal(ras.covered, np.any(expected != 0, axis=2) | ras.covered)
    assert ras.weights.shape == (ras.pixel_index.size, 3)
    np.testing.assert_allclose(ras.weights.sum(axis=1), 1, atol=1e-5)


def test_build_requires_uv_coords(model):
    class NoUV:
        uv_coords = None
    with pytest.raises(ValueError, match="uv_coords"):
        build_uv_data(NoUV())


def test_shipped_uv_data_matches_the_default_model():
    """The packaged uv-data is what `face3d uv-data` writes for the embedded default model (rerun it after changing
    the model)."""
    shipped = load_uv_data(default_uv_data_dir())
    built = build_uv_data(MorphableModel(), 256)
    for name in ("uv_kpt_ind", "face_ind", "triangles", "face_mask", "weight_mask", "face_eyes"):
        np.testing.assert_array_equal(getattr(shipped, name), getattr(built, name), err_msg=name)
