"""NME, keypoint reading, weighted MSE and the training views of UV data (pure numpy)."""
import dataclasses

import numpy as np
import pytest
from _prnet_data import layout_uv_data, shared_pixel_means, uv_layout, write_uv_data

from face3d.prnet import metrics
from face3d.prnet.uv_weights import loss_weights, resample_indices, resample_map, resize_uv_data
from face3d.trainset.posmap import keypoints_from_map
from face3d.trainset.uv_layout import load_uv_data


def test_keypoints_read_at_row_y_column_x():
    posmap = np.zeros((8, 10, 3), np.float32)
    posmap[2, 7] = (1, 2, 3)  # row y=2, column x=7
    kpt = np.array([[7, 0], [2, 0]])
    np.testing.assert_array_equal(keypoints_from_map(posmap, kpt), [[1, 2, 3], [0, 0, 0]])
    batch = np.stack([posmap, 2 * posmap])
    assert keypoints_from_map(batch, kpt).shape == (2, 2, 3)
    with pytest.raises(ValueError, match="uv_kpt_ind"):
        keypoints_from_map(posmap, np.array([[10], [0]]))


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


def test_a_maps_nme_is_the_same_to_the_bit_alone_and_in_any_batch():
    """The mean distance is summed in keypoint order for one map as for a batch: a sample's NME does not depend on
    how many maps it was measured with (68 landmarks or thousands of dense points, 2D and 3D)."""
    rng = np.random.default_rng(3)
    for k in (68, 5000):
        kpt = np.stack([np.arange(k), np.zeros(k, dtype=np.int64)])  # a 1 x k map holding the points in order
        gt = rng.uniform(0, 200, (4, 1, k, 3))
        pred = gt + rng.normal(0, 3, gt.shape)
        for dims in (2, 3):
            batch = metrics.nme(pred, gt, kpt, dims=dims)
            assert metrics.nme(pred[:2], gt[:2], kpt, dims=dims).tolist() == batch[:2].tolist()
            assert [metrics.nme(p, g, kpt, dims=dims) for p, g in zip(pred, gt)] == batch.tolist()
            assert [metrics.nme(p[None], g[None], kpt, dims=dims)[0] for p, g in zip(pred, gt)] == batch.tolist()


def test_weighted_mse_reference():
    rng = np.random.default_rng(1)
    pred, target = rng.random((2, 4, 5, 3)), rng.random((2, 4, 5, 3))
    weight = rng.random((4, 5))
    total = sum(weight[y, x] * np.mean((pred[b, y, x] - target[b, y, x]) ** 2)
                for b in range(2) for y in range(4) for x in range(5))
    assert metrics.weighted_mse(pred, target, weight) == pytest.approx(total / 40, rel=1e-12)


def test_loss_weights_and_uv_data_from_the_generator_files(tmp_path):
    """The trainer reads the generator's uv-data files (face3d.trainset) and weighs the loss 1 : 64/255 : 48/255 : 0."""
    uv = load_uv_data(write_uv_data(tmp_path / "uv-data", 32))
    face, eyes, region, kpt, _ = uv_layout(32)
    np.testing.assert_array_equal(uv.uv_kpt_ind, kpt)
    np.testing.assert_array_equal(uv.face_ind, np.flatnonzero(face))
    np.testing.assert_array_equal(uv.face_eyes > 0, face & ~eyes)
    weight = loss_weights(uv)
    assert weight.dtype == np.float32 and weight.shape == (32, 32)
    np.testing.assert_array_equal(weight[kpt[1], kpt[0]], 1)
    np.testing.assert_allclose(np.unique(weight), [0, 48 / 255, 64 / 255, 1], rtol=1e-6)
    np.testing.assert_array_equal(weight > 0, face)
    # every triangle of the UV grid joins three face pixels that are 4-neighbours or diagonal neighbours
    y, x = np.divmod(uv.face_ind[uv.triangles], 32)
    assert uv.triangles.shape[0] > 0 and face.ravel()[uv.face_ind[uv.triangles]].all()
    assert np.ptp(y, axis=1).max() == 1 and np.ptp(x, axis=1).max() == 1
    with pytest.raises(ValueError, match="all zero"):
        loss_weights(dataclasses.replace(uv, weight_mask=np.zeros((32, 32), np.uint8)))


def test_resize_uv_data_samples_like_the_pipeline():
    uv = layout_uv_data(64)
    small = resize_uv_data(uv, 32)
    index = resample_indices(64, 32)
    np.testing.assert_array_equal(index[:3], [1, 3, 5])
    assert small.resolution == 32 and small.weight_mask.shape == small.face_eyes.shape == (32, 32)
    np.testing.assert_array_equal(small.weight_mask[small.uv_kpt_ind[1], small.uv_kpt_ind[0]], 255)
    np.testing.assert_array_equal(small.face_mask, uv.face_mask[np.ix_(index, index)])
    np.testing.assert_array_equal(small.face_ind, np.flatnonzero(small.face_mask))
    assert small.triangles.max() < len(small.face_ind)
    # away from the keypoints the weights are the sampled ones
    moved = np.zeros((32, 32), bool)
    moved[small.uv_kpt_ind[1], small.uv_kpt_ind[0]] = True
    np.testing.assert_array_equal(small.weight_mask[~moved], uv.weight_mask[np.ix_(index, index)][~moved])
    # each resized keypoint samples a source pixel within one pixel of the original keypoint
    assert np.abs(index[small.uv_kpt_ind] - uv.uv_kpt_ind).max() <= 1
    assert resize_uv_data(uv, 64) is uv


@pytest.mark.parametrize("size", [48, 32])
def test_resample_map_holds_the_keypoints_at_their_reduced_pixels(size):
    """Nearest-neighbour would put at a resized keypoint a neighbouring UV pixel's value (R pixel 2m + 1 at S pixel
    m for S = R / 2); the resampled map holds there the keypoint's own value (the mean where keypoints share a
    pixel), and the sampled values everywhere else."""
    uv = layout_uv_data(64)
    posmap = np.random.default_rng(5).uniform(0, 80, (64, 64, 3)).astype(np.float32)
    small_kpt = resize_uv_data(uv, size).uv_kpt_ind
    small = resample_map(posmap, uv.uv_kpt_ind, size)
    assert small.shape == (size, size, 3) and small.dtype == np.float32
    want = posmap[uv.uv_kpt_ind[1], uv.uv_kpt_ind[0]]
    got = small[small_kpt[1], small_kpt[0]]
    pixels = small_kpt[1] * size + small_kpt[0]
    alone = (pixels[:, None] == pixels[None, :]).sum(axis=1) == 1
    assert alone.sum() == {48: 68, 32: 62}[size]
    np.testing.assert_array_equal(got[alone], want[alone])
    np.testing.assert_allclose(got, shared_pixel_means(want.astype(np.float64), pixels), rtol=1e-6)
    moved = np.zeros((size, size), bool)
    moved[small_kpt[1], small_kpt[0]] = True
    index = np.ix_(resample_indices(64, size), resample_indices(64, size))
    np.testing.assert_array_equal(small[~moved], posmap[index][~moved])
    assert resample_map(posmap, uv.uv_kpt_ind, 64) is posmap


def test_resample_map_gives_keypoints_sharing_a_pixel_their_mean():
    posmap = np.arange(4 * 4 * 3, dtype=np.float32).reshape(4, 4, 3)
    kpt = np.array([[0, 1, 3], [2, 2, 0]])  # (x, y) = (0, 2) and (1, 2) both go to (0, 1) at S = 2; (3, 0) to (1, 0)
    np.testing.assert_array_equal(resample_map(posmap, kpt, 2),
                                  [[posmap[1, 1], posmap[0, 3]], [(posmap[2, 0] + posmap[2, 1]) / 2, posmap[3, 3]]])
