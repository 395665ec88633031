import numpy as np
import pytest

from face3d.mesh import transform as tf


def _random_angles_deg(rng, n):
    return np.column_stack((rng.uniform(-80, 80, n), rng.uniform(-85, 85, n), rng.uniform(-170, 170, n)))


def test_angle2matrix_known_rotations():
    # yaw +90 deg turns +x into -z, pitch +90 turns +y into +z, roll +90 turns +x into +y (right-handed)
    np.testing.assert_allclose(tf.angle2matrix([0, 90, 0]) @ [1, 0, 0], [0, 0, -1], atol=1e-12)
    np.testing.assert_allclose(tf.angle2matrix([90, 0, 0]) @ [0, 1, 0], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(tf.angle2matrix([0, 0, 90]) @ [1, 0, 0], [0, 1, 0], atol=1e-12)


def test_angle2matrix_3ddfa_matches_3ddfa_formula():
    x, y, z = 0.3, -0.7, 1.1
    c, s = np.cos, np.sin
    rx = np.array([[1, 0, 0], [0, c(x), s(x)], [0, -s(x), c(x)]])
    ry = np.array([[c(y), 0, -s(y)], [0, 1, 0], [s(y), 0, c(y)]])
    rz = np.array([[c(z), s(z), 0], [-s(z), c(z), 0], [0, 0, 1]])
    np.testing.assert_allclose(tf.angle2matrix_3ddfa([x, y, z]), rx @ ry @ rz, atol=1e-14)
    np.testing.assert_allclose(tf.angle2matrix_3ddfa([x, y, z]), tf.angle2matrix(np.rad2deg([x, y, z])).T, atol=1e-14)


def test_matrix2angle_round_trips():
    rng = np.random.default_rng(0)
    for angles in _random_angles_deg(rng, 50):
        R = tf.angle2matrix(angles)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        np.testing.assert_allclose(tf.matrix2angle(R), angles, atol=1e-9)
        rad = np.deg2rad(angles)
        np.testing.assert_allclose(tf.matrix2angle_3ddfa(tf.angle2matrix_3ddfa(rad)), rad, atol=1e-11)


def test_matrix2angle_gimbal_lock_reconstructs_matrix():
    R = tf.angle2matrix([30, 90, 0])
    np.testing.assert_allclose(tf.angle2matrix(tf.matrix2angle(R)), R, atol=1e-9)


def test_similarity_transform_and_rotate():
    v = np.array([[1.0, 2.0, 3.0], [-1.0, 0.0, 0.5]], dtype=np.float32)
    R = tf.angle2matrix([0, 0, 90])
    out = tf.similarity_transform(v, 2.0, R, [10, 20, 30])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[10 - 4, 20 + 2, 36], [10, 20 - 2, 31]], atol=1e-5)
    np.testing.assert_allclose(tf.rotate(v, [0, 0, 90]), v @ R.T, atol=1e-6)


@pytest.mark.parametrize("s", [2, np.float32(2), np.array(2.0), np.array([2.0]), np.array([[2]], np.uint8)],
                         ids=["int", "float32", "0-d", "(1,)", "(1, 1) as loadmat gives"])
def test_similarity_transform_takes_any_one_element_scale(s):
    v = np.array([[1.0, 2.0, 3.0], [-1.0, 0.0, 0.5]])
    R = tf.angle2matrix([0, 0, 90])
    assert np.array_equal(tf.similarity_transform(v, s, R, [10, 20, 30]), 2.0 * v @ R.T + [10, 20, 30])


@pytest.mark.parametrize("s, got", [(np.array([1.0, 2.0]), r"shape \(2,\)"), (np.zeros((1, 0)), r"shape \(1, 0\)"),
                                    ("two", "'two'"), (None, "None")])
def test_similarity_transform_names_a_scale_that_is_not_one_number(s, got):
    with pytest.raises(ValueError, match=r"^s must be a number or a one-element array, got " + got):
        tf.similarity_transform(np.zeros((2, 3)), s, np.eye(3), [0, 0, 0])


def test_estimate_affine_and_P2sRt_recover_exact_pose():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(68, 3)) * 50000
    R = tf.angle2matrix([10, -40, 5])
    s, t = 1.3e-3, np.array([200.0, 180.0, 0.0])
    x = (tf.similarity_transform(X, s, R, t))[:, :2]
    P = tf.estimate_affine_matrix_3d22d(X, x)
    np.testing.assert_allclose(P[2], [0, 0, 0, 1])
    np.testing.assert_allclose((np.hstack((X, np.ones((68, 1)))) @ P.T)[:, :2], x, atol=1e-8)
    s_est, R_est, t_est = tf.P2sRt(P)
    assert s_est == pytest.approx(s, rel=1e-9)
    np.testing.assert_allclose(R_est, R, atol=1e-9)
    np.testing.assert_allclose(t_est[:2], t[:2], atol=1e-6)


def test_P2sRt_scale_is_the_mean_of_the_row_norms():
    """Rows of unequal length (2 and 2.2: an affine camera is only approximately a scaled rotation): the scale is
    their mean 2.1, R the rotation whose first two rows the rows point along, t the last column."""
    s, R, t = tf.P2sRt([[2.0, 0, 0, 5], [0, 2.2, 0, 7], [0, 0, 0, 1]])
    assert (s, t.tolist()) == (2.1, [5.0, 7.0, 1.0])
    np.testing.assert_array_equal(R, np.eye(3))
    turned = tf.angle2matrix([10, -40, 5])
    s, R, t = tf.P2sRt(np.column_stack([[[2.0], [2.2], [0.0]] * turned, [5, 7, 1]]))
    assert s == pytest.approx(2.1, rel=1e-15)
    np.testing.assert_allclose(R, turned, rtol=0, atol=1e-14)  # an SVD of an orthonormal matrix: a few ulp
    assert t.tolist() == [5.0, 7.0, 1.0]


def test_P2sRt_returns_proper_rotation_under_noise():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(68, 3)) * 50000
    x = tf.similarity_transform(X, 1e-3, tf.angle2matrix([0, 60, 0]), [100, 100, 0])[:, :2]
    _, R, _ = tf.P2sRt(tf.estimate_affine_matrix_3d22d(X, x + rng.normal(size=x.shape)))
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    assert tf.matrix2angle(R)[1] == pytest.approx(60, abs=1.0)


def _exact_correspondences():
    X = np.random.default_rng(3).normal(size=(68, 3)) * 50000
    return X, tf.similarity_transform(X, 1e-3, tf.angle2matrix([10, 20, 30]), [100, 100, 0])[:, :2]


@pytest.mark.parametrize("name, call", [
    ("x", lambda X, x: tf.estimate_affine_matrix_3d22d(X, np.where(np.arange(68)[:, None] == 0, np.nan, x))),
    ("X", lambda X, x: tf.estimate_affine_matrix_3d22d(np.where(np.arange(68)[:, None] == 5, np.inf, X), x)),
    ("P", lambda X, x: tf.P2sRt(tf.estimate_affine_matrix_3d22d(X, x) * np.nan)),
    ("R", lambda X, x: tf.matrix2angle(tf.angle2matrix([10, 20, 30]) * np.nan)),
    ("R", lambda X, x: tf.matrix2angle_3ddfa(np.full((3, 3), -np.inf))),
])
def test_camera_and_angles_refuse_nan_instead_of_returning_it(name, call):
    """A NaN landmark would give an all-NaN camera and NaN angles with a roll of 0: refused, naming the argument,
    as MorphableModel.fit refuses it."""
    X, x = _exact_correspondences()
    with pytest.raises(ValueError, match=f"^{name} must be finite, found NaN or inf$"):
        call(X, x)


def test_to_image_centres_and_flips_rows():
    v = np.array([[0.0, 0.0, 5.0], [10.0, 20.0, 1.0]])
    np.testing.assert_allclose(tf.to_image(v, 100, 200), [[100, 49, 5], [110, 29, 1]])
    np.testing.assert_allclose(tf.to_image([[1.0, 1.0, 0.0]], 100, 200, is_perspective=True), [[200, -1, 0]])


def test_lookat_camera_and_perspective():
    v = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 0.0]])
    cam = tf.lookat_camera(v, eye=[0, 0, 10])
    np.testing.assert_allclose(cam, [[0, 0, -10], [1, 2, -10]], atol=1e-12)
    ndc = tf.perspective_project(cam, fovy=45, near=1, far=100)
    np.testing.assert_allclose(ndc[0, :2], [0, 0], atol=1e-12)
    # x_ndc = near / right * x / -z = 1 / tan(45 deg) * 1 / 10
    assert ndc[1, 0] == pytest.approx(0.1)
    assert ndc[1, 1] == pytest.approx(0.2)
    near_far = tf.perspective_project([[0.0, 0.0, -5.0], [0.0, 0.0, -50.0]], fovy=45, near=1, far=100)
    assert near_far[0, 2] > near_far[1, 2]  # larger z is nearer the viewer
    np.testing.assert_allclose(tf.orthographic_project(v), v)


@pytest.mark.parametrize("call, name", [
    (lambda: tf.angle2matrix([1, 2]), "angles"),
    (lambda: tf.angle2matrix_3ddfa([0, np.nan, 0]), "angles"),
    (lambda: tf.similarity_transform(np.zeros((4, 2)), 1, np.eye(3), [0, 0, 0]), "vertices"),
    (lambda: tf.similarity_transform(np.zeros((4, 3)), 1, np.eye(2), [0, 0, 0]), "R"),
    (lambda: tf.similarity_transform(np.zeros((4, 3)), 1, np.eye(3), [0, 0]), "t3d"),
    (lambda: tf.estimate_affine_matrix_3d22d(np.zeros((3, 3)), np.zeros((3, 2))), "at least 4"),
    (lambda: tf.estimate_affine_matrix_3d22d(np.zeros((5, 3)), np.zeros((4, 2))), "same number"),
    (lambda: tf.P2sRt(np.zeros((3, 3))), "P"),
    (lambda: tf.lookat_camera(np.zeros((1, 3)), eye=[0, 5, 0], up=[0, 1, 0]), "collinear"),
])
def test_bad_input_names_the_problem(call, name):
    with pytest.raises(ValueError, match=name):
        call()


@pytest.mark.parametrize("call, message", [
    (lambda X, x: tf.estimate_affine_matrix_3d22d(X, np.ones_like(x)),
     "x must be spread out, found all 68 points equal (no camera fits them)"),
    (lambda X, x: tf.estimate_affine_matrix_3d22d(np.ones_like(X), x),
     "X must be spread out, found all 68 points equal (no camera fits them)"),
    (lambda X, x: tf.perspective_project(X, 0),
     "fovy must lie strictly between 0 and 90 degrees (it is the half-angle), got 0"),
    (lambda X, x: tf.perspective_project(X, 90), "fovy must lie strictly between 0 and 90 degrees (it is the "
                                                 "half-angle), got 90"),
    (lambda X, x: tf.perspective_project(X, 30, aspect_ratio=0), "aspect_ratio must be positive and finite, got 0"),
    (lambda X, x: tf.perspective_project(X, 30, near=0), "near must be positive and finite, got 0"),
    (lambda X, x: tf.perspective_project(X, 30, near=1, far=1),
     "far must be finite and greater than near (1), got 1"),
    (lambda X, x: tf.perspective_project(X, 30, far=np.inf), "far must be finite and greater than near (0.1), got inf"),
    (lambda X, x: tf.lookat_camera(X, [0, 1]), "eye must hold 3 values, got shape (2,)"),
    (lambda X, x: tf.lookat_camera(X, [0, 0, 1], up="y"), "up must hold real numbers, got dtype <U1"),
], ids=["x one point", "X one point", "fovy 0", "fovy 90", "aspect 0", "near 0", "near == far", "far inf", "eye (2,)",
        "up str"])
@pytest.mark.filterwarnings("error")  # no numpy or LAPACK warning on the way
def test_cameras_refuse_arguments_they_cannot_use(call, message):
    X, x = _exact_correspondences()
    with pytest.raises(ValueError) as err:
        call(X, x)
    assert str(err.value) == message
