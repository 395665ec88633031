"""NME, keypoint reading, weighted MSE and UV files: pure numpy, and TensorFlow stays out of non-training imports."""
import subprocess
import sys

import cv2
import numpy as np
import pytest

from face3d.prnet import metrics
from face3d.prnet.uvdata import load_uv_data, resample_indices, resize_uv_data

from _prnet_data import uv_layout, write_uv_data


def test_keypoints_read_at_row_y_column_x():
    posmap = np.zeros((8, 10, 3), np.float32)
    posmap[2, 7] = (1, 2, 3)  # row y=2, column x=7
    kpt = np.array([[7, 0], [2, 0]])
    np.testing.assert_array_equal(metrics.keypoints_from_map(posmap, kpt), [[1, 2, 3], [0, 0, 0]])
    batch = np.stack([posmap, 2 * posmap])
    assert metrics.keypoints_from_map(batch, kpt).shape == (2, 2, 3)
    with pytest.raises(ValueError, match="uv_kpt_ind"):
        metrics.keypoints_from_map(posmap, np.array([[10], [0]]))


def test_nme_matches_hand_computation():
    rng = np.random.default_rng(0)
    r = 16
    kpt = np.stack([rng.integers(0, r, 68), rng.integers(0, r, 68)])
    gt = rng.uniform(0, 50, (2, r, r, 3))
    pred = gt + rng.normal(0, 1, gt.shape)
    expected = []
    for b in range(2):
        g = gt[b, kpt[1], kpt[0]]
        p = pred[b, kpt[1], kpt[0]]
        w, h = np.ptp(g[:, 0]), np.ptp(g[:, 1])
        expected.append(np.mean(np.sqrt(((p[:, :2] - g[:, :2]) ** 2).sum(1))) / np.sqrt(w * h))
    np.testing.assert_allclose(metrics.nme(pred, gt, kpt), expected, rtol=1e-12)
    # a uniform 2-pixel shift along x gives exactly 2 / sqrt(w h)
    shifted = gt[0].copy()
    shifted[..., 0] += 2
    g = gt[0, kpt[1], kpt[0]]
    assert metrics.nme(shifted, gt[0], kpt) == pytest.approx(2 / np.sqrt(np.ptp(g[:, 0]) * np.ptp(g[:, 1])))
    # z only counts with dims=3
    deeper = gt[0].copy()
    deeper[..., 2] += 5
    assert metrics.nme(deeper, gt[0], kpt) == 0
    assert metrics.nme(deeper, gt[0], kpt, dims=3) > 0


def test_weighted_mse_reference():
    rng = np.random.default_rng(1)
    pred, target = rng.random((2, 4, 5, 3)), rng.random((2, 4, 5, 3))
    weight = rng.random((4, 5))
    total = sum(weight[y, x] * np.mean((pred[b, y, x] - target[b, y, x]) ** 2)
                for b in range(2) for y in range(4) for x in range(5))
    assert metrics.weighted_mse(pred, target, weight) == pytest.approx(total / 40, rel=1e-12)


def test_uv_data_files_round_trip(tmp_path):
    folder = write_uv_data(tmp_path / "uv-data", 32)
    face, region, kpt, _ = uv_layout(32)
    uv = load_uv_data(folder)
    np.testing.assert_array_equal(uv.kpt_ind, kpt)
    assert uv.resolution == 32
    assert uv.weight_mask.dtype == np.float32 and uv.weight_mask.max() == 1
    np.testing.assert_allclose(uv.weight_mask[kpt[1], kpt[0]], 1)
    np.testing.assert_allclose(np.unique(uv.weight_mask), [0, 48 / 255, 64 / 255, 1], rtol=1e-6)
    np.testing.assert_array_equal(uv.face_mask, face)
    (folder / "uv_kpt_ind.txt").write_text("1 2 3\n4 5 6\n")
    with pytest.raises(ValueError, match="2x68"):
        load_uv_data(folder)


def test_resize_uv_data_samples_like_the_pipeline(tmp_path):
    uv = load_uv_data(write_uv_data(tmp_path / "uv", 64))
    small = resize_uv_data(uv, 32)
    index = resample_indices(64, 32)
    np.testing.assert_array_equal(index[:3], [1, 3, 5])
    assert small.resolution == 32
    np.testing.assert_allclose(small.weight_mask[small.kpt_ind[1], small.kpt_ind[0]], 1)
    # each resized keypoint samples a source pixel within one pixel of the original keypoint
    assert np.abs(index[small.kpt_ind] - uv.kpt_ind).max() <= 1
    assert resize_uv_data(uv, 64) is uv


def test_mask_png_must_be_8bit(tmp_path):
    folder = write_uv_data(tmp_path / "uv", 16)
    cv2.imwrite(str(folder / "uv_weight_mask.png"), np.zeros((16, 16), np.uint16) + 300)
    with pytest.raises(ValueError, match="8-bit"):
        load_uv_data(folder)


@pytest.mark.parametrize("module", ["face3d.mesh", "face3d.morphable_model", "face3d.trainset", "face3d.prnet",
                                    "face3d.prnet.metrics", "face3d.prnet.uvdata", "face3d.prnet.data",
                                    "face3d.prnet.training"])
def test_module_import_leaves_tensorflow_out(module):
    code = f"import sys, importlib; importlib.import_module({module!r}); print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if result.returncode != 0 and "ModuleNotFoundError" in result.stderr and module.split(".")[1] in result.stderr:
        pytest.skip(f"{module} is not in this checkout")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
