"""Fitting a morphable model to 2D landmarks: pose, shape and expression, one face or many at once.

Landmarks are in face3d's "projected" frame (x right, y up, pixels) under a scaled orthographic camera. The fit is
the MAP estimate under a Gaussian prior on the shape and expression parameters (the EVs are standard deviations) and
Gaussian landmark noise of ``noise_sigma`` pixels. The objective and the algorithm, and why it converges faster than
face3d's ``fit_points``, are told in ``LandmarkFitter``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg.lapack import dposv as _dposv

from face3d.mesh.transform import matrix2angle
from face3d.morphable_model.camera import (
    affine_camera_batch,
    orthonormalise,
    pose_para_from_fit,
    rodrigues,
    scaled_rotation_from_affine,
)
from face3d.morphable_model.contour import MARCHING, line_table, silhouette_vertices, yaw_3ddfa

__all__ = ["FitResult", "LandmarkFitter"]

_N_IBUG = 68
# Step lengths tried along each Gauss-Newton update (1 first: the full step wins ties).
_STEPS = np.array([1.0, 0.5, 0.25, 0.1, 0.0])


@dataclass
class FitResult:
    """Result of fitting N faces (arrays have a leading batch axis N).

    Attributes:
        shape_para: (N, n_sp) float32 shape parameters (basis units, as Shape_Para).
        exp_para: (N, n_ep) float32 expression parameters (as Exp_Para).
        s: (N,) float64 scale.
        R: (N, 3, 3) float64 rotations; the camera is ``x = s * X @ R[:2].T + t[:2]``.
        t: (N, 3) float64 translation with ``t[:, 2] = 0`` (an orthographic camera has no depth).
        landmark_vertices: (N, n) int32 vertex index used for each landmark at the last iteration
            (differs from ``X_ind`` on the jaw in contour-aware mode).
        n_iter: (N,) int32 iterations run per face (fewer than max_iter once converged).
        history: list of (shape_para, exp_para, s, R, t) after initialisation and each iteration
            when requested (``keep_history=True``), else empty.
    """

    shape_para: np.ndarray
    exp_para: np.ndarray
    s: np.ndarray
    R: np.ndarray
    t: np.ndarray
    landmark_vertices: np.ndarray
    n_iter: np.ndarray
    history: list

    @property
    def angles(self) -> np.ndarray:
        """(N, 3) float64 face3d angles [pitch, yaw, roll] in degrees (``matrix2angle`` of R)."""
        return np.array([matrix2angle(r) for r in self.R], dtype=np.float64).reshape(-1, 3)

    def pose_para(self, tz: float = 0.0) -> np.ndarray:
        """(N, 7) float64 300W-LP ``Pose_Para`` rows; see :func:`pose_para_from_fit`."""
        return pose_para_from_fit(self.s, self.R, self.t, tz=tz)


def _solve_spd(K, rhs):
    """Solve ``K[b] X[b]^T = rhs[b]^T`` for symmetric positive definite K, face by face.

    LAPACK's Cholesky solver (dposv) called per face is several times faster than numpy's batched
    LU ``np.linalg.solve`` for these 2n x 2n systems (it does half the flops and no layout copies:
    the transpose of a C-ordered matrix is Fortran-ordered).

    Args:
        K: (N, k, k) float64 SPD of which only the lower triangle is read; overwritten.
        rhs: (N, r, k) float64 right-hand sides as rows.
    Returns:
        (N, r, k) float64 solutions as rows.
    """
    out = np.empty_like(rhs)
    for b in range(len(K)):
        _, x, info = _dposv(K[b].T, rhs[b].T, lower=0, overwrite_a=0, overwrite_b=0)
        if info != 0:
            raise np.linalg.LinAlgError(f"landmark system of face {b} is not positive definite "
                                        f"(LAPACK dposv info={info})")
        out[b] = x.T
    return out


# ------------------------------------------------------------------------------------ fitter
class LandmarkFitter:
    """Precomputed landmark sub-bases of one model and landmark set; fits one or many faces.

    Build once per (model, X_ind) and reuse: the precomputation (whitened basis rows of the
    landmark vertices and their Gram matrix, plus those of the jaw contour candidates) is what makes
    each fit cheap.

    Camera and model.  A landmark j of vertex v is observed at ``x_j = s * R[:2] @ X_v + t`` (scaled
    orthographic camera, the "projected" frame of face3d: x right, y up, pixels), where
    ``X = shapeMU + shapePC @ sp + expPC @ ep`` reshaped to (nver, 3).  Shape and expression
    parameters have the Gaussian prior ``sp_i ~ N(0, shapeEV_i^2)``, ``ep_i ~ N(0, expEV_i^2)`` (the
    EVs are standard deviations, as in face3d's regularisation ``lamb / EV^2``) and the landmarks
    Gaussian noise of ``noise_sigma`` pixels, so the fit is the MAP estimate

        minimise  |x - s R2 X(z) - t|^2 / noise_sigma^2 + |z|^2,     z = [sp / shapeEV, ep / expEV].

    Why face3d converges slowly.  face3d's ``fit_points`` starts from the mean shape, then alternates an
    affine pose, the expression alone and the shape alone, each with a fixed ad hoc weight (lamb 20 and
    40): the two bases are correlated at the landmarks, so solving them one after the other zig-zags,
    and the pose never sees the shape update of its own iteration.

    What this module does instead (``LandmarkFitter``):
    1. Initial pose from the mean shape by the Gold Standard affine camera (Hartley & Zisserman,
       Algorithm 7.2: linear least squares on centred points, which is what the normalised DLT solves),
       then the nearest scaled rotation (SVD of the 2x3 part).  In contour-aware mode only the 52
       landmarks that never march (the 51 inner ones and the chin) are used, since the other jaw
       ones may sit on the silhouette.
    2. Each iteration is one Gauss-Newton step on pose AND all shape/expression parameters jointly:
       with the observation Jacobians ``A`` (2n x P, shape) and ``J`` (2n x 6, pose: rotation
       increment, log-scale, translation) the linearised MAP problem is solved in its dual (2n x 2n)
       form through ``K = A A^T + noise_sigma^2 I`` (push-through identity):
       ``dq = (J^T K^-1 J)^-1 J^T K^-1 y``, ``z = A^T K^-1 (y - J dq)``.  ``A A^T`` is assembled from a
       per-model precomputed ``G = L L^T`` (L: whitened basis rows of the landmark vertices) and the 2x3
       camera only, so an iteration costs one Cholesky solve of size 2n per face, independent of the
       number of parameters, vectorised across faces.  The best of a few step lengths along the update
       (0 included) is kept, so the MAP objective never increases (plain Gauss-Newton can overshoot
       when the model cannot explain the landmarks).  A face stops once its landmarks move less than
       ``tol`` pixels.
    3. Contour-aware mode (68 iBUG landmarks): at each iteration, once the face is turned more than
       10 degrees, the jaw landmarks of the side turned away from the camera (0-7 or 9-16) move, along
       their candidate line (``contour_lines``), to the vertex outermost in the current projection:
       3DDFA's landmark marching, the rule 300W-LP's landmarks follow (``morphable_model.contour``).
       The chin (8) and the near side keep their vertices.

    Args:
        model: dict with shapeMU (3n,1), shapePC (3n,k), shapeEV (k,1), expPC (3n,ke),
            expEV (ke,1) (the loaded BFM layout; shapeMU already includes expMU).
        X_ind: (m,) vertex indices of the landmarks (m >= 4, not coplanar in the mean shape; in contour-aware
            mode those that never march), e.g. ``model['kpt_ind']``; else ValueError.
        contour_lines: optional list of 17 int arrays, candidate vertices of the jaw landmarks;
            when given, ``X_ind`` must be the 68 iBUG landmarks and ``fit(..., contour=True)`` is
            allowed.
        n_shape_para, n_exp_para: number of leading components to fit (default: all).
    """

    def __init__(self, model, X_ind, contour_lines=None, n_shape_para=None, n_exp_para=None):
        shape_pc = np.asarray(model["shapePC"])
        exp_pc = np.asarray(model["expPC"])
        nver = np.asarray(model["shapeMU"]).size // 3
        n_sp = shape_pc.shape[1] if n_shape_para is None else int(n_shape_para)
        n_ep = exp_pc.shape[1] if n_exp_para is None else int(n_exp_para)
        if not 0 <= n_sp <= shape_pc.shape[1] or not 0 <= n_ep <= exp_pc.shape[1]:
            raise ValueError(f"n_shape_para/n_exp_para must be within 0..{shape_pc.shape[1]} / "
                             f"0..{exp_pc.shape[1]}, got {n_sp} / {n_ep}")
        ind = np.asarray(X_ind)
        if ind.ndim != 1 or ind.size < 4 or ind.dtype.kind not in "iu":
            raise ValueError(f"X_ind must be a 1-D integer array of at least 4 vertex indices, "
                             f"got dtype {ind.dtype} shape {ind.shape}")
        if ind.min() < 0 or ind.max() >= nver:
            raise ValueError(f"X_ind must index vertices 0..{nver - 1}, got range "
                             f"{ind.min()}..{ind.max()}")
        self.X_ind = ind.astype(np.int32)
        self.n_shape_para, self.n_exp_para = n_sp, n_ep
        self.nver = nver
        self.ev = np.concatenate([
            np.asarray(model["shapeEV"], np.float64).reshape(-1)[:n_sp],
            np.asarray(model["expEV"], np.float64).reshape(-1)[:n_ep]])
        self._mu = np.asarray(model["shapeMU"]).reshape(nver, 3)
        self._shape_pc = shape_pc.reshape(nver, 3, -1)
        self._exp_pc = exp_pc.reshape(nver, 3, -1)

        m = ind.size
        self.has_contour = contour_lines is not None
        if self.has_contour:
            if m != _N_IBUG or len(contour_lines) != 17:
                raise ValueError(f"contour_lines needs the 68 iBUG landmarks and 17 lines, got "
                                 f"{m} landmarks and {len(contour_lines)} lines")
            dyn_pos = MARCHING
        else:
            dyn_pos = np.zeros(0, dtype=np.int64)
        self._dyn_pos = dyn_pos
        self._static_pos = np.setdiff1d(np.arange(m), dyn_pos)
        # Observation order inside the solver: static landmarks first, then the marching ones.
        self._order = np.concatenate([self._static_pos, dyn_pos])

        static_v = self.X_ind[self._static_pos]
        self._mu_s, self._L_s = self._rows(static_v)                 # (ns,3), (ns,3,P)
        # The initial affine camera solves with the 3x3 scatter of these centred points: coplanar ones (e.g. the
        # eye corners of a mirror-symmetric face, or midline points) leave it singular.  Singular values under
        # 1e-6 of the largest are float32 rounding of the model, not depth.
        spread = np.linalg.svd(self._mu_s - self._mu_s.mean(axis=0), compute_uv=False)
        if spread[2] <= 1e-6 * spread[0]:
            which = "vertices besides the marching jaw ones" if self.has_contour else "vertices"
            raise ValueError(f"X_ind: the landmark {which} are coplanar in the mean shape; fitting a camera "
                             f"needs at least 4 non-coplanar landmarks")
        ns = len(static_v)
        Ls = self._L_s.reshape(3 * ns, -1)
        G = (Ls @ Ls.T).reshape(ns, 3, ns, 3)
        # Rearranged so one GEMM with the per-face camera coefficients M_ac M_ed gives all K_ss.
        self._G_cd = np.ascontiguousarray(G.transpose(1, 3, 0, 2).reshape(9, ns * ns))

        if self.has_contour:
            lines = [np.asarray(line, dtype=np.int64).reshape(-1) for line in contour_lines]
            for i, line in enumerate(lines):
                if line.size == 0 or line.min() < 0 or line.max() >= nver:
                    raise ValueError(f"contour_lines[{i}] must be a non-empty array of vertex "
                                     f"indices 0..{nver - 1}")
            kpt_dyn = self.X_ind[dyn_pos].astype(np.int64)
            cand = np.unique(np.concatenate([kpt_dyn] + [lines[p] for p in dyn_pos]))
            self._cand = cand
            self._mu_d, self._L_d = self._rows(cand)                  # (nc,3), (nc,3,P)
            # Cross Gram blocks candidate x static landmarks, gathered per face later.
            self._G_ds = (self._L_d.reshape(3 * len(cand), -1) @ Ls.T).reshape(len(cand), 3, ns, 3)
            self._lines_local = line_table(lines, cand)                 # (nd, width) into cand
            self._kpt_local = np.searchsorted(cand, kpt_dyn)            # (nd,)

    def _rows(self, vertices):
        """Mean (k,3) and whitened basis (k,3,P) float64 rows of the given vertices."""
        mu = self._mu[vertices].astype(np.float64)
        L = np.concatenate([self._shape_pc[vertices, :, :self.n_shape_para],
                            self._exp_pc[vertices, :, :self.n_exp_para]], axis=2)
        return mu, L.astype(np.float64) * self.ev

    # ------------------------------------------------------------------------------ helpers
    def _select(self, s, R, z):
        """Candidate index (into ``self._cand``) of each marching landmark: (N, nd) int64
        (:func:`face3d.morphable_model.contour.silhouette_vertices` on the current shape and pose)."""
        N = len(s)
        nc = len(self._cand)
        Xc = self._mu_d[None] + (z @ self._L_d.reshape(3 * nc, -1).T).reshape(N, nc, 3)
        camera = np.einsum("bvc,bkc->bvk", Xc, R)                        # (N, nc, 3) = X @ R.T
        return silhouette_vertices(camera, self._lines_local, self._kpt_local, yaw_3ddfa(R))

    def _camera_K(self, M, Ld_sel, sel, noise_var):
        """Lower triangle of K = A A^T + noise_var I for N faces.

        Observation order is (coordinate, landmark): rows 0..n-1 hold x, rows n..2n-1 hold y, the
        landmarks ordered static first.  Only the blocks (x,x), (y,x), (y,y) are written: the
        Cholesky solver reads the lower triangle.  ``Ld_sel`` (N, nd, 3, P) are the whitened basis
        rows of the selected jaw vertices ``sel`` (N, nd) (both None without contour lines).

        Returns:
            (N, 2n, 2n) float64, upper off-diagonal block left uninitialised.
        """
        N = len(M)
        ns = len(self._static_pos)
        nd = 0 if sel is None else sel.shape[1]
        n = ns + nd
        W = np.einsum("bac,bed->baecd", M, M).reshape(N, 4, 9)
        K = np.empty((N, 2, n, 2, n))
        blocks = ((0, 0), (1, 0), (1, 1))
        for a, e in blocks:
            K[:, a, :ns, e, :ns] = (W[:, 2 * a + e] @ self._G_cd).reshape(N, ns, ns)
        if nd:
            MG = np.einsum("bac,bkcjd->bakjd", M, self._G_ds[sel])      # (N, 2, nd, ns, 3)
            Kds = np.einsum("bakjd,bed->bakej", MG, M)                  # (N, 2, nd, 2, ns)
            Ld = Ld_sel.reshape(N, nd * 3, -1)
            Gdd = (Ld @ Ld.transpose(0, 2, 1)).reshape(N, nd, 3, nd, 3)
            MG = np.einsum("bac,bkcld->bakld", M, Gdd)
            Kdd = np.einsum("bakld,bed->bakel", MG, M)                  # (N, 2, nd, 2, nd)
            for a, e in blocks:
                K[:, a, ns:, e, :ns] = Kds[:, a, :, e]
                K[:, a, :ns, e, ns:] = Kds[:, e, :, a].transpose(0, 2, 1)
                K[:, a, ns:, e, ns:] = Kdd[:, a, :, e]
        K = K.reshape(N, 2 * n, 2 * n)
        K[:, np.arange(2 * n), np.arange(2 * n)] += noise_var
        return K

    # ---------------------------------------------------------------------------------- fit
    def fit(self, x, max_iter=4, contour=False, noise_sigma=2.0, tol=1e-3, keep_history=False,
            chunk_size=32):
        """Fit N faces to their landmarks.

        Args:
            x: (N, m, 2) or (m, 2) landmark positions in the projected frame (pixels, y up; use
                :func:`face3d.morphable_model.camera.flip_y` for image coordinates), row j
                observing vertex ``X_ind[j]``.
            max_iter: at most this many joint pose + shape + expression Gauss-Newton iterations.
            contour: march the jaw landmarks to the silhouette (needs ``contour_lines``).
            noise_sigma: landmark noise plus model error in pixels (> 0), the weight of the
                prior: larger values regularise more.
            tol: a face stops iterating once its landmarks move less than ``tol`` pixels in an
                iteration (0 forces ``max_iter`` iterations).
            keep_history: also return the estimates after initialisation and each iteration.
            chunk_size: faces solved together; 32 keeps the per-chunk systems (~0.2 MB per face)
                in cache, which is faster than larger chunks.
        Returns:
            :class:`FitResult` with a batch axis (N = 1 for a single (m, 2) input; N = 0 gives
            empty arrays).
        Raises:
            ValueError: wrong shape, NaN/inf, a face whose landmarks' box has no width or no
                height (named by its index), bad max_iter / noise_sigma, or contour without lines.
        """
        pts = np.asarray(x, dtype=np.float64)
        if pts.ndim == 2:
            pts = pts[None]
        m = len(self.X_ind)
        if pts.ndim != 3 or pts.shape[1:] != (m, 2):
            raise ValueError(f"x must have shape ({m}, 2) or (N, {m}, 2) to match X_ind, "
                             f"got {np.shape(x)}")
        if not np.all(np.isfinite(pts)):
            raise ValueError("x must be finite (no NaN or inf landmark coordinates)")
        if isinstance(max_iter, bool) or int(max_iter) != max_iter or max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {max_iter}")
        if not (np.isfinite(noise_sigma) and noise_sigma > 0):
            raise ValueError(f"noise_sigma must be a positive number of pixels, got {noise_sigma}")
        if contour and not self.has_contour:
            raise ValueError("contour=True needs a fitter built with contour_lines (68 iBUG "
                             "landmarks); the model has none")
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if not (np.isfinite(tol) and tol >= 0):
            raise ValueError(f"tol must be a non-negative number of pixels, got {tol}")
        # Landmarks at one point (or one row or column of pixels) make the camera system singular.
        flat = np.flatnonzero((np.ptp(pts, axis=1) <= 0).any(axis=1))
        if flat.size:
            raise ValueError(f"face {flat[0]}: the landmarks' box has no width or no height "
                             f"(no camera can be estimated)")
        if not len(pts):
            empty = self._snapshot(np.zeros((0, len(self.ev))), np.zeros(0), np.zeros((0, 3, 3)),
                                   np.zeros((0, 2)))
            return FitResult(*empty, np.zeros((0, m), np.int32), np.zeros(0, np.int32),
                             [empty] * (int(max_iter) + 1) if keep_history else [])
        parts = [self._fit_chunk(pts[i:i + int(chunk_size)], int(max_iter), bool(contour),
                                 float(noise_sigma) ** 2, float(tol), keep_history)
                 for i in range(0, len(pts), int(chunk_size))]
        if len(parts) == 1:
            return parts[0]
        cat = [np.concatenate(field) for field in zip(*[(r.shape_para, r.exp_para, r.s, r.R, r.t,
                                                         r.landmark_vertices, r.n_iter)
                                                        for r in parts])]
        history = [tuple(np.concatenate(f) for f in zip(*steps))
                   for steps in zip(*[r.history for r in parts])]
        return FitResult(*cat, history)

    def _fit_chunk(self, pts, max_iter, contour, noise_var, tol, keep_history):
        N, m = pts.shape[:2]
        P = len(self.ev)
        ns = len(self._static_pos)
        obs = pts[:, self._order]                                      # (N, n, 2)
        # Without contour lines every landmark is static; with them the jaw rows are gathered per
        # face (fixed at their X_ind vertices unless contour=True).
        sel = None
        mu = np.broadcast_to(self._mu_s, (N, ns, 3))
        if self.has_contour:
            sel = np.broadcast_to(self._kpt_local, (N, len(self._dyn_pos))).copy()
            if not contour:
                mu = np.concatenate([mu, self._mu_d[sel]], axis=1)
        # In contour mode the jaw landmarks may sit on the silhouette, away from their frontal
        # vertices: the initial camera comes from the 52 that never march.
        A, t = affine_camera_batch(mu, obs[:, :mu.shape[1]])
        s, R = scaled_rotation_from_affine(A)
        z = np.zeros((N, P))
        history = [self._snapshot(z, s, R, t)] if keep_history else []
        active = np.arange(N)
        n_iter = np.zeros(N, dtype=np.int32)
        for _ in range(max_iter):
            a = active
            n_iter[a] += 1
            sel_a = None if sel is None else sel[a]
            if contour:
                sel_a = self._select(s[a], R[a], z[a])
            z[a], s[a], R[a], t[a], moved = self._step(obs[a], z[a], s[a], R[a], t[a], sel_a,
                                                       noise_var)
            if sel is not None:
                sel[a] = sel_a
            if keep_history:
                history.append(self._snapshot(z, s, R, t))
            # A face whose landmarks moved less than tol has converged: later steps are no-ops.
            active = a[moved >= tol]
            if not active.size:
                break
        if keep_history:
            history += history[-1:] * (max_iter + 1 - len(history))
        landmark_vertices = np.broadcast_to(self.X_ind, (N, m)).astype(np.int32)
        if self.has_contour:
            landmark_vertices[:, self._dyn_pos] = self._cand[sel]
        return FitResult(*self._snapshot(z, s, R, t), landmark_vertices, n_iter, history)

    def _step(self, obs, z, s, R, t, sel, noise_var):
        """One joint Gauss-Newton step for the faces given (all arrays share the batch axis).

        Args:
            obs (N, n, 2) landmarks in solver order; z (N, P) whitened parameters; s (N,), R
            (N, 3, 3), t (N, 2) pose; sel (N, nd) jaw candidates or None; noise_var float.
        Returns:
            z, s, R, t updated, and moved (N,): the largest landmark displacement in pixels.
        """
        N = len(obs)
        P = len(self.ev)
        ns = len(self._static_pos)
        Ls_flat = self._L_s.reshape(3 * ns, P)
        X = self._mu_s + (z @ Ls_flat.T).reshape(N, ns, 3)
        mu = np.broadcast_to(self._mu_s, (N, ns, 3))
        Ld_sel = None
        if sel is not None:
            Ld_sel = self._L_d[sel]                                     # (N, nd, 3, P)
            X = np.concatenate([X, self._mu_d[sel] + np.einsum("bkcp,bp->bkc", Ld_sel, z)],
                               axis=1)
            mu = np.concatenate([mu, self._mu_d[sel]], axis=1)
        n = X.shape[1]
        M = s[:, None, None] * R[:, :2]
        MX = X @ M.transpose(0, 2, 1)                                   # (N, n, 2)
        # y0: residual w.r.t. the mean shape under the current pose (see LandmarkFitter).
        y0 = (obs - mu @ M.transpose(0, 2, 1) - t[:, None]).transpose(0, 2, 1).reshape(N, -1)
        # Pose Jacobian: rotation increment (R <- R exp([w]x)), log-scale, translation.
        # d(M X)/dw_k = M (e_k x X), i.e. the columns of -M [X]x.
        J = np.zeros((N, 6, 2, n))
        Xc = X.transpose(0, 2, 1)                                       # (N, 3, n)
        zeros = np.zeros_like(Xc[:, 0])
        cross = np.stack([np.stack([zeros, -Xc[:, 2], Xc[:, 1]], 1),
                          np.stack([Xc[:, 2], zeros, -Xc[:, 0]], 1),
                          np.stack([-Xc[:, 1], Xc[:, 0], zeros], 1)], 1)  # (N, 3k, 3c, n)
        J[:, :3] = M[:, None] @ cross
        J[:, 3] = MX.transpose(0, 2, 1)
        J[:, 4, 0] = 1.0
        J[:, 5, 1] = 1.0
        J = J.reshape(N, 6, 2 * n)
        K = self._camera_K(M, Ld_sel, sel, noise_var)
        sol = _solve_spd(K, np.concatenate([y0[:, None], J], axis=1))   # (N, 7, 2n)
        u, V = sol[:, 0], sol[:, 1:]
        JtV = J @ V.transpose(0, 2, 1)                                  # (N, 6, 6)
        dq = np.linalg.solve(JtV, (J @ u[:, :, None]))[:, :, 0]
        w = (u - (dq[:, None] @ V)[:, 0]).reshape(N, 2, n)
        v = w.transpose(0, 2, 1) @ M                                    # (N, n, 3) = (I (x) M)^T w
        z_new = v[:, :ns].reshape(N, -1) @ Ls_flat
        if sel is not None:
            z_new += np.einsum("bkcp,bkc->bp", Ld_sel, v[:, ns:])
        X_new = self._mu_s + (z_new @ Ls_flat.T).reshape(N, ns, 3)
        if sel is not None:
            X_new = np.concatenate([X_new, self._mu_d[sel]
                                    + np.einsum("bkcp,bp->bkc", Ld_sel, z_new)], axis=1)
        # Gauss-Newton can overshoot when the model cannot explain the landmarks (e.g. fixed jaw
        # vertices on a profile's silhouette): take the best of a few step lengths, 0 included,
        # so the MAP objective never increases.
        step = _STEPS[:, None]
        za = z + step[..., None] * (z_new - z)
        Xa = X + step[..., None, None] * (X_new - X)
        Ra = R @ rodrigues((step[..., None] * dq[:, :3]).reshape(-1, 3)).reshape(
            len(_STEPS), N, 3, 3)
        sa = s * np.exp(step * dq[:, 3])
        ta = t + step[..., None] * dq[:, 4:6]
        proj = sa[..., None, None] * (Xa @ Ra[:, :, :2].transpose(0, 1, 3, 2)) + ta[:, :, None]
        cost = ((obs - proj) ** 2).sum(axis=(2, 3)) / noise_var + (za ** 2).sum(axis=2)
        best = np.argmin(cost, axis=0)
        faces = np.arange(N)
        moved = np.sqrt(((proj[best, faces] - proj[-1]) ** 2).sum(axis=2)).max(axis=1)
        return (za[best, faces], sa[best, faces], orthonormalise(Ra[best, faces]),
                ta[best, faces], moved)

    def _snapshot(self, z, s, R, t):
        p = z * self.ev
        t3 = np.concatenate([t, np.zeros((len(t), 1))], axis=1)
        return (p[:, :self.n_shape_para].astype(np.float32),
                p[:, self.n_shape_para:].astype(np.float32), s.copy(), R.copy(), t3)
