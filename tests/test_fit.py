"""Landmark fitting: cameras, round trips over yaw, contour-aware mode, batch API, Pose_Para.

Budget: ~15 s (the default model loads once per module; fits use <= 48 faces).
"""

import numpy as np
import pytest
import scipy.io as sio
from _fixtures import fixtures_dir

from face3d.mesh.transform import angle2matrix, angle2matrix_3ddfa, estimate_affine_matrix_3d22d
from face3d.morphable_model import LandmarkFitter, MorphableModel, fit_from_pose_para, flip_y, pose_para_from_fit
from face3d.morphable_model.camera import affine_camera_batch, scaled_rotation_from_affine

SCALE = 8e-4  # face3d's example scale: the default face is ~120 px wide
BUCKETS = ((-90, -45), (-45, 0), (0, 45), (45, 91))


def random_model(rng, nver=1500, n_sp=40, n_ep=10):
    """A small random model with BFM-like units and scales (micrometres, orthonormal-ish bases)."""
    u, v = rng.uniform(-1.3, 1.3, nver), rng.uniform(-1.2, 1.2, nver)
    mean = np.stack([np.sin(u) * 7e4, v * 9e4, np.cos(u) * np.cos(0.9 * v) * 6e4], axis=1)
    model = {
        "shapeMU": mean.reshape(-1, 1).astype(np.float32),
        "shapePC": (rng.standard_normal((3 * nver, n_sp)) / np.sqrt(3 * nver)).astype(np.float32),
        "shapeEV": (4e5 / np.sqrt(np.arange(1, n_sp + 1)))[:, None].astype(np.float32),
        "expPC": (rng.standard_normal((3 * nver, n_ep)) * 2e5 / np.sqrt(3 * nver)).astype(
            np.float32),
        "expEV": np.linspace(2.0, 0.5, n_ep)[:, None].astype(np.float32),
        "texMU": np.full((3 * nver, 1), 128, np.float32),
        "texPC": np.zeros((3 * nver, 2), np.float32),
        "texEV": np.ones((2, 1), np.float32), "tri": np.array([[0, 1, 2]], np.int32),
        "kpt_ind": rng.choice(nver, 68, replace=False).astype(np.int32),
    }
    return MorphableModel.from_arrays(model)


@pytest.fixture(scope="module")
def bfm():
    return MorphableModel()


def silhouette_indices(mm, vertices, R, yaw):
    """300W-LP landmark vertices, written independently of the fitter after 3DDFA's landmark
    marching: the far-side jaw landmarks take the contour-line vertex with extreme rotated x."""
    idx = mm.kpt_ind.copy()
    x_rot = vertices @ R[0]
    for k in (range(9, 17) if yaw > 0 else range(0, 8)):
        line = mm.contour_lines[k]
        idx[k] = line[np.argmax(x_rot[line]) if yaw > 0 else np.argmin(x_rot[line])]
    return idx


def project(mm, sp, ep, s, R, t):
    """(N, nver, 2) projected vertices of N faces (face3d camera, y up)."""
    V = (mm.model["shapeMU"] + mm.model["shapePC"] @ np.asarray(sp, np.float32).T
         + mm.model["expPC"] @ np.asarray(ep, np.float32).T).T.reshape(len(sp), -1, 3)
    return s[:, None, None] * np.einsum("bvc,bac->bva", V.astype(np.float64), R[:, :2]) \
        + np.asarray(t)[:, None, :2]


def make_faces(mm, n, rng, silhouette=False, prior_scale=None):
    """n faces over yaw -90..90: (yaw, true dense 2D vertices, landmarks + 1 px noise)."""
    if prior_scale is None:
        sp = np.stack([mm.get_shape_para("random", rng)[:, 0] for _ in range(n)])
        ep = np.stack([mm.get_exp_para("random", rng)[:, 0] for _ in range(n)])
    else:
        sp = prior_scale * rng.standard_normal((n, mm.n_shape_para)) * mm.model["shapeEV"][:, 0]
        ep = prior_scale * rng.standard_normal((n, mm.n_exp_para)) * mm.model["expEV"][:, 0]
    yaw = np.linspace(-90, 90, n)
    R = np.stack([angle2matrix([rng.uniform(-10, 10), y, rng.uniform(-10, 10)]) for y in yaw])
    t = rng.uniform(100, 150, (n, 3))
    verts = project(mm, sp, ep, np.full(n, SCALE), R, t)
    lms = np.empty((n, 68, 2))
    for i in range(n):
        ind = mm.kpt_ind
        if silhouette:
            ind = silhouette_indices(mm, mm.generate_vertices(sp[i], ep[i]).astype(np.float64),
                                     R[i], yaw[i])
        lms[i] = verts[i, ind]
    return yaw, verts, lms + rng.standard_normal(lms.shape)


def errors(mm, result, lms, verts):
    """Per-face landmark RMSE (vs the given landmarks) and dense 2D vertex RMSE (vs truth), px."""
    proj = project(mm, result.shape_para, result.exp_para, result.s, result.R, result.t)
    fitted = np.take_along_axis(proj, result.landmark_vertices[:, :, None].astype(np.int64), 1)
    lm = np.sqrt(((fitted - lms) ** 2).sum(-1).mean(1))
    dense = np.sqrt(((proj - verts) ** 2).sum(-1).mean(1))
    return lm, dense


def per_bucket(yaw, values):
    return np.array([values[(yaw >= lo) & (yaw < hi)].mean() for lo, hi in BUCKETS])


# --------------------------------------------------------------------------------- cameras
def test_affine_camera_batch_matches_gold_standard():
    rng = np.random.default_rng(1)
    X = rng.normal(0, 5e4, (3, 20, 3))
    x = rng.normal(100, 30, (3, 20, 2))
    A, t = affine_camera_batch(X, x)
    for i in range(3):
        P = estimate_affine_matrix_3d22d(X[i], x[i])
        np.testing.assert_allclose(A[i], P[:2, :3], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(t[i], P[:2, 3], rtol=1e-9, atol=1e-9)


def test_scaled_rotation_from_affine_recovers_exact_camera():
    R = angle2matrix([20, -70, 35])
    s, Rf = scaled_rotation_from_affine(1.5e-3 * R[None, :2])
    assert s[0] == pytest.approx(1.5e-3, rel=1e-12)
    np.testing.assert_allclose(Rf[0], R, atol=1e-12)
    assert np.linalg.det(Rf[0]) == pytest.approx(1.0)


def test_exact_pose_and_mean_shape_recovered_without_noise():
    mm = random_model(np.random.default_rng(2))
    R = angle2matrix([12, 65, -8])
    V = mm.generate_vertices(mm.get_shape_para("zero"), mm.get_exp_para("zero")).astype(np.float64)
    x = (SCALE * V @ R.T + [40.0, -25.0, 0])[mm.kpt_ind, :2]
    sp, ep, s, angles, t = mm.fit(x, mm.kpt_ind, max_iter=4, noise_sigma=1e-3)
    assert s == pytest.approx(SCALE, rel=1e-6)
    np.testing.assert_allclose(angle2matrix(angles), R, atol=1e-6)
    np.testing.assert_allclose(t, [40.0, -25.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(sp, 0, atol=1e-3 * mm.model["shapeEV"].max())
    np.testing.assert_allclose(ep, 0, atol=1e-3)


# ------------------------------------------------------------------------------ round trips
def test_round_trip_random_model_over_yaw():
    rng = np.random.default_rng(3)
    mm = random_model(rng)
    yaw, verts, lms = make_faces(mm, 32, rng, prior_scale=1.0)
    r = mm.fit_batch(lms, max_iter=4)
    lm, dense = errors(mm, r, lms, verts)
    lm_b, dense_b = per_bucket(yaw, lm), per_bucket(yaw, dense)
    # 50 parameters + pose against 136 noisy coordinates: the residual is close to the noise.
    assert np.all(lm_b < 1.3) and np.all(lm_b > 0.6), lm_b
    assert np.all(dense_b < 1.5), dense_b
    # The landmarks, not the prior, drive the fit: the zero-parameter face is much worse.
    zero = project(mm, np.zeros_like(r.shape_para), np.zeros_like(r.exp_para), r.s, r.R, r.t)
    assert np.sqrt(((zero - verts) ** 2).sum(-1).mean()) > 2 * dense.mean()


def test_round_trip_default_model_fixed_index(bfm):
    rng = np.random.default_rng(4)
    yaw, verts, lms = make_faces(bfm, 32, rng)
    r = bfm.fit_batch(lms, max_iter=4)
    lm, dense = errors(bfm, r, lms, verts)
    # Targets: landmark RMSE <= 1.5 px and dense error at most half of that.
    assert np.all(per_bucket(yaw, lm) <= 1.5), per_bucket(yaw, lm)
    assert np.all(per_bucket(yaw, dense) <= 0.75), per_bucket(yaw, dense)


def test_contour_aware_beats_fixed_index_at_large_yaw(bfm):
    rng = np.random.default_rng(5)
    yaw, verts, lms = make_faces(bfm, 40, rng, silhouette=True)
    rc = bfm.fit_batch(lms, max_iter=4, contour=True)
    rf = bfm.fit_batch(lms, max_iter=4, contour=False)
    lm_c, dense_c = errors(bfm, rc, lms, verts)
    lm_f, dense_f = errors(bfm, rf, lms, verts)
    assert np.all(per_bucket(yaw, lm_c) <= 1.5), per_bucket(yaw, lm_c)
    assert np.all(per_bucket(yaw, dense_c) <= 1.0), per_bucket(yaw, dense_c)
    big = np.abs(yaw) > 45
    assert dense_c[big].mean() < 0.3 * dense_f[big].mean()
    assert lm_c[big].mean() < 0.75 * lm_f[big].mean()
    # The marched jaw vertices are on the far side only; the chin and near side stay fixed.
    i = np.argmax(yaw)
    moved = np.flatnonzero(rc.landmark_vertices[i] != bfm.kpt_ind)
    assert moved.size and np.all((moved >= 9) & (moved <= 16))


# (seed, faces, noise_sigma); at 0.5 px one of the 12 faces has a step whose landmark term drops while the MAP
# objective (landmarks plus prior) rises: the step length must be chosen on the whole objective.
@pytest.mark.parametrize("seed,n_faces,noise_sigma", [(6, 6, 2.0), (0, 12, 0.5)])
def test_objective_never_increases(bfm, seed, n_faces, noise_sigma):
    """Silhouette landmarks fitted at the fixed frontal vertices: the model cannot explain them and a full
    Gauss-Newton step can overshoot; the MAP objective of each iteration is still at most the previous one's."""
    rng = np.random.default_rng(seed)
    _, _, lms = make_faces(bfm, n_faces, rng, silhouette=True)
    f = bfm.fitter()
    r = f.fit(lms, max_iter=4, noise_sigma=noise_sigma, tol=0.0, keep_history=True)
    ev = np.concatenate([bfm.model["shapeEV"][:, 0], bfm.model["expEV"][:, 0]])
    costs = []
    for sp, ep, s, R, t in r.history:
        proj = project(bfm, sp, ep, s, R, t)[:, bfm.kpt_ind]
        z = np.concatenate([sp, ep], axis=1) / ev
        costs.append(((proj - lms) ** 2).sum((1, 2)) / noise_sigma ** 2 + (z ** 2).sum(1))
    costs = np.array(costs)
    assert np.all(np.diff(costs, axis=0) <= 1e-6 * costs[:-1])
    assert np.all(costs[-1] < 0.9 * costs[0])


@pytest.mark.parametrize("noise_sigma", [0.5, 2.0, 5.0])
def test_converged_parameters_are_the_map_ridge_solution_at_the_fitted_pose(noise_sigma):
    """At the MAP optimum the gradient in z of |x - s R2 X(z) - t|^2 / sigma^2 + |z|^2 vanishes, i.e. for the
    fitted pose z is the ridge solution (B^T B + sigma^2 I)^-1 B^T y, with B the whitened basis projected by the
    camera and y the landmarks less the projected mean: the prior is weighted by the noise variance asked for.
    Solved here in the primal (P x P) form, independently of the fitter's dual form."""
    rng = np.random.default_rng(11)
    mm = random_model(rng, nver=300, n_sp=12, n_ep=4)
    _, _, lms = make_faces(mm, 3, rng, prior_scale=1.0)
    r = mm.fitter().fit(lms, max_iter=20, noise_sigma=noise_sigma, tol=0.0)
    ev = np.concatenate([mm.model["shapeEV"][:, 0], mm.model["expEV"][:, 0]]).astype(np.float64)
    z = np.concatenate([r.shape_para, r.exp_para], axis=1).astype(np.float64) / ev
    mean = mm.model["shapeMU"].astype(np.float64).reshape(-1, 3)[mm.kpt_ind]
    basis = np.concatenate([mm.model["shapePC"], mm.model["expPC"]], axis=1).astype(np.float64)
    whitened = basis.reshape(-1, 3, len(ev))[mm.kpt_ind] * ev  # (68, 3, P)
    for i in range(len(lms)):
        M = r.s[i] * r.R[i, :2]
        B = np.einsum("ac,kcp->kap", M, whitened).reshape(-1, len(ev))
        y = (lms[i] - mean @ M.T - r.t[i, :2]).reshape(-1)
        ridge = np.linalg.solve(B.T @ B + noise_sigma ** 2 * np.eye(len(ev)), B.T @ y)
        # the parameters come back as float32 (relative rounding 6e-8); 20 iterations converge below that
        np.testing.assert_allclose(z[i], ridge, rtol=0, atol=1e-6 * np.abs(ridge).max())


# ----------------------------------------------------------------------------------- API
def test_batch_equals_single_fits_and_chunks(bfm):
    rng = np.random.default_rng(7)
    _, _, lms = make_faces(bfm, 5, rng, silhouette=True)
    batch = bfm.fit_batch(lms, contour=True)
    chunked = bfm.fitter(contour=True).fit(lms, contour=True, chunk_size=2)
    for i in range(5):
        sp, ep, s, angles, t = bfm.fit(lms[i], bfm.kpt_ind, contour=True)
        np.testing.assert_allclose(batch.shape_para[i], sp[:, 0], rtol=1e-5,
                                   atol=1e-5 * bfm.model["shapeEV"].max())
        np.testing.assert_allclose(batch.exp_para[i], ep[:, 0], rtol=1e-5, atol=1e-5)
        assert batch.s[i] == pytest.approx(s, rel=1e-9)
        np.testing.assert_allclose(batch.angles[i], angles, atol=1e-6)
        np.testing.assert_allclose(batch.t[i], t, atol=1e-6)
    for a, b in ((batch.shape_para, chunked.shape_para), (batch.R, chunked.R),
                 (batch.landmark_vertices, chunked.landmark_vertices)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(a).max())


def test_subset_of_landmarks_and_isShow():
    rng = np.random.default_rng(8)
    mm = random_model(rng)
    ind = mm.kpt_ind[17:]                                   # no jaw: 51 landmarks
    R = angle2matrix([5, -30, 3])
    V = mm.generate_vertices(mm.get_shape_para("zero"), mm.get_exp_para("zero")).astype(np.float64)
    x = (SCALE * V @ R.T)[ind, :2] + rng.normal(0, 0.5, (51, 2))
    sp, ep, s, angles, t = mm.fit(x, ind, max_iter=3, isShow=True, tol=0.0)
    assert sp.shape == (4, mm.n_shape_para, 1) and ep.shape == (4, mm.n_exp_para, 1)
    assert s.shape == (4,) and angles.shape == (4, 3) and t.shape == (4, 3)
    assert np.all(sp[0] == 0)                               # the initial state: mean shape
    np.testing.assert_allclose(angle2matrix(angles[-1]), R, atol=0.02)


def test_bad_inputs_raise(bfm):
    f = bfm.fitter()
    x = np.zeros((68, 2))
    with pytest.raises(ValueError, match="x must have shape"):
        f.fit(np.zeros((67, 2)))
    with pytest.raises(ValueError, match="finite"):
        f.fit(np.full((68, 2), np.nan))
    with pytest.raises(ValueError, match="max_iter"):
        f.fit(x, max_iter=0)
    with pytest.raises(ValueError, match="noise_sigma"):
        f.fit(x, noise_sigma=0.0)
    with pytest.raises(ValueError, match="tol"):
        f.fit(x, tol=-1.0)
    with pytest.raises(ValueError, match="contour"):
        f.fit(x, contour=True)                              # built without contour lines
    with pytest.raises(ValueError, match="contour"):
        bfm.fit(x[:51], bfm.kpt_ind[:51], contour=True)
    with pytest.raises(ValueError, match="X_ind"):
        LandmarkFitter(bfm.model, np.array([0, 1, bfm.nver]))
    with pytest.raises(ValueError, match="X_ind"):
        LandmarkFitter(bfm.model, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="one face"):
        bfm.fit(np.zeros((2, 68, 2)), bfm.kpt_ind)


def test_coplanar_landmark_vertices_are_refused(bfm):
    """Coplanar mean-shape points leave the initial affine camera singular: refused when the fitter is built."""
    message = "X_ind: the landmark vertices are coplanar in the mean shape; fitting a camera needs at least 4 " \
              "non-coplanar landmarks"
    corners = bfm.kpt_ind[[36, 39, 42, 45]]                 # a trapezoid on the mirror-symmetric default face
    with pytest.raises(ValueError, match="coplanar") as info:
        bfm.fit(np.array([[10.0, 50.0], [40.0, 52.0], [60.0, 52.0], [90.0, 50.0]]), corners)
    assert str(info.value) == message
    with pytest.raises(ValueError, match="coplanar"):
        LandmarkFitter(bfm.model, bfm.kpt_ind[[8, 27, 28, 29, 30, 33, 51, 57, 62, 66]])   # the midline
    LandmarkFitter(bfm.model, bfm.kpt_ind[[36, 45, 30, 8]])  # four corners of a tetrahedron
    # contour-aware mode: its initial camera uses only the 52 landmarks that never march (inner ones and chin)
    rng = np.random.default_rng(4)
    mean = rng.uniform(-5e4, 5e4, (68, 3))
    mean[17:, 2] = mean[8, 2] = 1e4                         # all but the marching jaw ones in the plane z = 1 cm
    model = {"shapeMU": mean.reshape(-1, 1), "shapePC": np.zeros((204, 1)), "shapeEV": np.ones((1, 1)),
             "expPC": np.zeros((204, 1)), "expEV": np.ones((1, 1))}
    LandmarkFitter(model, np.arange(68))
    with pytest.raises(ValueError, match="X_ind: the landmark vertices besides the marching jaw ones are coplanar"):
        LandmarkFitter(model, np.arange(68), [np.array([i]) for i in range(17)])


def test_pose_only_contour_fitter_recovers_a_turned_mean_face(bfm):
    """No shape or expression parameters: the contour-aware fit is a pose fit with jaw marching."""
    fitter = LandmarkFitter(bfm.model, bfm.kpt_ind, bfm.contour_lines, n_shape_para=0, n_exp_para=0)
    R = angle2matrix([8, 50, -5])
    V = bfm.generate_vertices(bfm.get_shape_para("zero"), bfm.get_exp_para("zero")).astype(np.float64)
    index = silhouette_indices(bfm, V, R, 50)
    x = (SCALE * V @ R.T + [30.0, -20.0, 0])[index, :2]
    r = fitter.fit(x, contour=True, noise_sigma=1e-3)
    assert r.shape_para.shape == (1, 0) and r.exp_para.shape == (1, 0)
    np.testing.assert_array_equal(r.landmark_vertices[0], index)
    assert r.s[0] == pytest.approx(SCALE, rel=1e-6)
    np.testing.assert_allclose(r.R[0], R, atol=1e-6)
    np.testing.assert_allclose(r.t[0], [30.0, -20.0, 0.0], atol=1e-4)


@pytest.mark.parametrize("contour", [False, True])
def test_fit_of_no_faces_gives_empty_results(bfm, contour):
    r = bfm.fit_batch(np.zeros((0, 68, 2)), contour=contour)
    assert r.shape_para.shape == (0, bfm.n_shape_para) and r.shape_para.dtype == np.float32
    assert r.exp_para.shape == (0, bfm.n_exp_para) and r.exp_para.dtype == np.float32
    assert (r.s.shape, r.R.shape, r.t.shape) == ((0,), (0, 3, 3), (0, 3))
    assert r.landmark_vertices.shape == (0, 68) and r.landmark_vertices.dtype == np.int32
    assert r.n_iter.shape == (0,) and r.n_iter.dtype == np.int32
    assert r.pose_para().shape == (0, 7) and r.angles.shape == (0, 3) and r.history == []


def test_landmarks_without_spread_are_refused_naming_the_face(bfm):
    rng = np.random.default_rng(9)
    x = rng.uniform(50, 150, (3, 68, 2))
    x[1] = 5.0                                              # 68 coincident landmarks
    with pytest.raises(ValueError, match=r"face 1: the landmarks' box has no width or no height"):
        bfm.fit_batch(x)
    x[1, :, 0] = np.linspace(0, 100, 68)                    # all on one horizontal line
    with pytest.raises(ValueError, match=r"face 1: the landmarks' box has no width or no height"):
        bfm.fit_batch(x, contour=True)


# ---------------------------------------------------------------------------- Pose_Para
def test_pose_para_round_trip():
    pose = np.array([-0.13, -0.77, 0.056, 183.6, 189.5, -81.7, 1.3e-3])
    s, angles, t = fit_from_pose_para(pose)
    np.testing.assert_allclose(angle2matrix(angles), angle2matrix_3ddfa(pose[:3]), atol=1e-12)
    back = pose_para_from_fit(s, angle2matrix(angles), t, tz=t[2])[0]
    np.testing.assert_allclose(back, pose, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="pose_para"):
        fit_from_pose_para(pose[:6])


def test_fit_recovers_300wlp_placement(bfm):
    """Landmarks placed by a 300W-LP Pose_Para (y down) -> fit -> the same Pose_Para."""
    pose = np.array([-0.13, -0.5, 0.06, 183.6, 189.5, 0.0, 1.3e-3])
    h = 450
    V = bfm.generate_vertices(bfm.get_shape_para("zero"), bfm.get_exp_para("zero"))
    img = flip_y(bfm.transform_3ddfa(V, pose[6], pose[:3], pose[3:6])[bfm.kpt_ind, :2], h)
    r, pose_fit = bfm.fit_image_landmarks(img, h, contour=False, noise_sigma=1e-2)
    np.testing.assert_allclose(pose_fit[0, :3], pose[:3], atol=1e-3)
    np.testing.assert_allclose(pose_fit[0, 3:5], pose[3:5], atol=0.05)
    assert pose_fit[0, 6] == pytest.approx(pose[6], rel=1e-3)
    assert r.landmark_vertices.shape == (1, 68)


# ------------------------------------------------------------------------------ fixtures
FIXTURES = [("300W_LP/IBUG_image_008_1_0", "pt2d"), ("AFLW2000/image00050", "pt3d_68"),
            ("AFLW2000/image00081", "pt3d_68")]


@pytest.mark.parametrize("name,key", FIXTURES)
def test_fit_real_landmarks_nme_below_4_percent(bfm, name, key):
    mat_path = fixtures_dir() / f"{name}.mat"
    if not mat_path.is_file():
        pytest.skip(f"fixture {mat_path} not available")
    import cv2
    h = cv2.imread(str(mat_path.with_suffix(".jpg"))).shape[0]
    pts = sio.loadmat(str(mat_path))[key][:2].T.astype(np.float64)
    r, pose = bfm.fit_image_landmarks(pts, h, contour=True)
    V = bfm.generate_vertices(r.shape_para[0], r.exp_para[0])
    fitted = flip_y(bfm.transform_3ddfa(V, pose[0, 6], pose[0, :3], pose[0, 3:6]), h)
    fitted = fitted[r.landmark_vertices[0], :2]
    size = np.sqrt(np.prod(pts.max(0) - pts.min(0)))
    nme = np.linalg.norm(fitted - pts, axis=1).mean() / size
    assert nme < 0.04, nme
    # The fitted rotation agrees with the dataset's own pose (a different model, same face).
    real = sio.loadmat(str(mat_path))["Pose_Para"][0].astype(np.float64)
    R_fit, R_real = angle2matrix_3ddfa(pose[0, :3]), angle2matrix_3ddfa(real[:3])
    angle = np.degrees(np.arccos(np.clip((np.trace(R_fit @ R_real.T) - 1) / 2, -1, 1)))
    assert angle < 15, angle
