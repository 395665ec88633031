"""3D reconstruction NME after rigid ICP (face3d.prnet.reconstruction) and its report keys; budget < 2 s."""
import numpy as np
import pytest
from scipy.spatial import cKDTree

from face3d.mesh.transform import angle2matrix
from face3d.prnet import evaluation
from face3d.prnet.reconstruction import (
    chamfer_distance,
    icp_align,
    outer_interocular_distance,
    reconstruction_nme,
    rigid_motion,
)


def _surface(n=24, seed=0):
    """A curved face-like patch: (n*n, 3) points of z = 20 cos(x/40) cos(y/50) over a 100 x 120 grid."""
    x, y = np.meshgrid(np.linspace(-50, 50, n), np.linspace(-60, 60, n))
    z = 20.0 * np.cos(x / 40.0) * np.cos(y / 50.0)
    return np.column_stack([x.ravel(), y.ravel(), z.ravel()])


def test_rigid_motion_recovers_a_known_motion():
    points = _surface()
    R = angle2matrix([20.0, -35.0, 10.0])
    t = np.array([3.0, -7.0, 11.0])
    R_est, t_est = rigid_motion(points, points @ R.T + t)
    np.testing.assert_allclose(R_est, R, atol=1e-12)
    np.testing.assert_allclose(t_est, t, atol=1e-10)
    assert np.linalg.det(R_est) == pytest.approx(1.0)


def test_a_rigidly_moved_copy_scores_zero():
    gt = _surface()
    moved = gt @ angle2matrix([-15.0, 60.0, 25.0]).T + np.array([40.0, -12.0, 300.0])
    normalizer = np.array([100.0])
    assert reconstruction_nme(moved[None], gt[None], normalizer)[0] < 1e-9
    # without the correspondences (another point count) ICP still finds the motion from a nearby start
    near = gt[:-3] @ angle2matrix([2.0, -3.0, 1.0]).T + np.array([1.0, 2.0, -1.0])
    aligned, distances = icp_align(near, gt)
    assert distances.max() < 1e-6


def test_a_known_non_rigid_deformation_gives_its_hand_computed_value():
    """A flat 10 x 10 grid (spacing 1) whose points move out of the plane by +h and -h in a checkerboard: no rigid
    motion explains any of it (the pattern has no mean, tilt or twist), each moved point's nearest ground-truth
    point is its own and each ground-truth point's nearest moved point is its own (h < 1/2), so the distance is h
    at every point in both directions: NME = h / normaliser."""
    x, y = np.meshgrid(np.arange(10.0), np.arange(10.0))
    gt = np.column_stack([x.ravel(), y.ravel(), np.zeros(100)])
    h = 0.2
    pred = gt + np.column_stack([np.zeros(100), np.zeros(100), np.where((x + y).ravel() % 2 == 0, h, -h)])
    motion = angle2matrix([10.0, 20.0, 30.0])
    pred = pred @ motion.T + np.array([5.0, 6.0, 7.0])  # and a rigid motion on top, which ICP removes
    assert reconstruction_nme(pred[None], gt[None], np.array([4.0]))[0] == pytest.approx(h / 4.0, rel=1e-9)


def test_chamfer_distance_averages_both_directions():
    """One point at the origin against two points at 0 and 2 on x: a -> b is 0, b -> a is mean(0, 2) = 1, so 1/2;
    and on random clouds, the brute-force value of every pairwise distance."""
    assert chamfer_distance([[0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]) == pytest.approx(0.5)
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(7, 3)), rng.normal(size=(5, 3))
    pairwise = np.linalg.norm(a[:, None] - b[None], axis=-1)
    expected = (pairwise.min(axis=1).mean() + pairwise.min(axis=0).mean()) / 2
    assert chamfer_distance(a, b) == pytest.approx(expected, rel=1e-12)
    assert chamfer_distance(b, a) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("max_iter", [0, 1, 30])
def test_icp_distances_are_the_aligned_points_nearest_so_chamfer_takes_them_as_its_forward_half(max_iter):
    """reconstruction_nme passes icp_align's distances to chamfer_distance instead of querying them again: they
    must be exactly the aligned points' nearest ground-truth distances, whether ICP stopped on its tolerance, at
    its last iteration or never ran, and give the same bits as the query."""
    gt = _surface(16)
    rng = np.random.default_rng(5)
    pred = (gt + rng.normal(scale=0.5, size=gt.shape)) @ angle2matrix([4.0, -6.0, 3.0]).T + np.array([2.0, 1.0, -3.0])
    aligned, distances = icp_align(pred, gt, max_iter=max_iter)
    np.testing.assert_array_equal(distances, cKDTree(gt).query(aligned)[0])
    assert chamfer_distance(aligned, gt, forward=distances) == chamfer_distance(aligned, gt)
    # the distances given are the ones used: each 1 further moves the forward half's mean, so the result, by 1 / 2
    assert chamfer_distance(aligned, gt, forward=distances + 1.0) == pytest.approx(
        chamfer_distance(aligned, gt) + 0.5, rel=1e-12)


@pytest.mark.parametrize("degenerate", ["collapsed to its centroid", "shrunk to 30 %"])
def test_a_collapsed_or_shrunk_face_scores_a_large_error(degenerate):
    """Every point of a collapsed or shrunk face lies near some ground-truth point, so the predicted -> ground-truth
    distance alone is near 0; the ground-truth -> predicted direction is not. The normaliser 50 is about the outer
    interocular distance of a face 100 wide."""
    gt = _surface()
    centroid = gt.mean(axis=0)
    scale = 0.0 if degenerate == "collapsed to its centroid" else 0.3
    pred = centroid + scale * (gt - centroid)
    assert reconstruction_nme(pred[None], gt[None], [50.0])[0] > 0.20


def test_a_non_finite_prediction_scores_nan_without_running_icp():
    """A diverged network's NaN vertices: that sample's error is NaN (a failure in the report), the others are
    measured (ICP's SVD is never given NaN)."""
    gt = np.stack([_surface(8), _surface(8)])
    pred = gt.copy()
    pred[1, 5] = np.nan
    errors = reconstruction_nme(pred, gt, [100.0, 100.0])
    assert errors[0] < 1e-9 and np.isnan(errors[1])


def test_outer_interocular_distance_is_the_3d_distance_of_landmarks_36_and_45():
    landmarks = np.zeros((2, 68, 3))
    landmarks[0, 36], landmarks[0, 45] = (10.0, 20.0, 5.0), (70.0, 20.0, -75.0)
    landmarks[1, 45] = (3.0, 4.0, 0.0)
    np.testing.assert_allclose(outer_interocular_distance(landmarks), [100.0, 5.0])
    assert outer_interocular_distance(landmarks[0]) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="68, 3"):
        outer_interocular_distance(np.zeros((21, 3)))


def test_report_has_the_reconstruction_key_and_every_ced_curve():
    gt_dense = np.stack([_surface(12), _surface(12)])
    pred_dense = gt_dense.copy()
    pred_dense[1, :, 2] *= 1.1  # a deeper face: a shape error that no rigid motion removes
    box = np.array([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0], [0.0, 50.0, 0.0], [100.0, 50.0, 0.0]])
    gt = np.stack([np.tile(box, (17, 1))] * 2)
    dense = evaluation.dense_errors(pred_dense, gt_dense, gt)
    report = evaluation.evaluate_predictions(gt, gt, [10.0, 50.0], dense=dense)
    errors = [s["reconstruction_nme_3d"] for s in report["per_sample"]]
    # the normaliser is the outer interocular distance: landmarks 36 and 45 are box corners 0 and 1, 100 apart
    assert errors[0] < 1e-9
    assert errors[1] == pytest.approx(reconstruction_nme(pred_dense[1:], gt_dense[1:], [100.0])[0], rel=1e-12)
    assert 0.001 < errors[1] < 0.02
    assert report["reconstruction_nme_3d"] == pytest.approx(np.mean(errors))
    assert "ICP" in report["labels"]["reconstruction_nme_3d"] and "reconstruction" in report["protocol"]
    assert report["ced"]["thresholds"][:3] == [0.0, 0.001, 0.002] and report["ced"]["thresholds"][-1] == 0.1
    assert set(report["ced"]) == {"thresholds", "nme_2d", "nme_3d", "nme_3d_diagonal", "dense_nme_2d",
                                  "dense_nme_3d", "reconstruction_nme_3d"}
    curve = np.array(report["ced"]["reconstruction_nme_3d"])
    np.testing.assert_array_equal(curve, evaluation.ced(errors, report["ced"]["thresholds"]))
    assert curve[1] == 0.5 and curve[-1] == 1.0  # the exact sample below 0.1 %, the deeper one below 10 %
    assert "3D reconstruction NME" in evaluation.markdown_report(report)
