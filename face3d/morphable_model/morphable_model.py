"""MorphableModel: the face3d-compatible 3D morphable model API (generation, transforms, fitting).

A model is the loaded BFM layout of :mod:`face3d.morphable_model.load` (float32 / 0-based int32):
``vertices = (shapeMU + shapePC @ shape_para + expPC @ exp_para).reshape(-1, 3)`` in micrometres
(x right, y up, z towards the viewer), ``colors = (texMU + texPC @ tex_para).reshape(-1, 3)``.
``MorphableModel()`` loads the embedded default model, ``MorphableModel(path)`` a real ``BFM.mat``;
both go through the same loader.  ``MorphabelModel`` is face3d's (misspelt) name with face3d's constructor
arguments, so old scripts run.
"""
from __future__ import annotations

import functools
import hashlib
import stat
from collections import OrderedDict
from pathlib import Path

import numpy as np

from face3d.mesh.transform import (
    angle2matrix,
    angle2matrix_3ddfa,
    as_scale,
    matrix2angle,
    rotate,
    similarity_transform,
)
from face3d.morphable_model import load
from face3d.morphable_model.camera import fit_from_pose_para, flip_y, pose_para_from_fit
from face3d.morphable_model.fit import LandmarkFitter
from face3d.utils.errors import InputFileError

__all__ = ["MorphableModel", "MorphabelModel", "model_identity", "require_model_file", "FITTER_CACHE_SIZE"]

# LandmarkFitters a model keeps, the most recently used (one per landmark subset, ~0.6 MB for 60 landmarks): a loop
# over per-image visibility subsets (AFLW) holds a few MB instead of one fitter per subset ever seen.
FITTER_CACHE_SIZE = 8

_REQUIRED = ("shapeMU", "shapePC", "shapeEV", "expPC", "expEV", "texMU", "texPC", "texEV", "tri",
             "kpt_ind")


def _para(value, n, name):
    """Validate a parameter vector: (n,), a column (n, 1) as a .mat stores it, or a row (1, n), finite -> (n,)
    float64."""
    p = np.asarray(value, dtype=np.float64)
    if p.shape not in ((n,), (n, 1), (1, n)):
        raise ValueError(f"{name} must have shape ({n},), ({n}, 1) or (1, {n}), got {np.shape(value)}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} must be finite (found NaN or inf)")
    return p.reshape(n)


def _vertices(vertices, name="vertices"):
    v = np.asarray(vertices)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"{name} must have shape (n, 3), got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be finite (found NaN or inf)")
    return v


def require_model_file(path: Path):
    """FileNotFoundError naming ``path`` unless it is a file: ``"<path>: BFM model file not found"``, or for a
    folder (the one holding the model, say) ``"<path>: is a folder; give the BFM.mat file in it"``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: is a folder; give the BFM.mat file in it" if path.is_dir()
                                else f"{path}: BFM model file not found")


def _check_keypoints(model_kpt, info_kpt, model_path, info_path):
    """InputFileError naming both files unless BFM.mat's and BFM_info.mat's kpt_ind ((68,) 0-based as loaded) are
    equal: convert.py and generate.m write the same keypoints into both, so a difference is a wrong file, and a
    difference of one everywhere is a file written with 0-based indices (blamed, with the hint)."""
    if np.array_equal(model_kpt, info_kpt):
        return
    if np.shape(model_kpt) != np.shape(info_kpt):
        raise InputFileError(info_path, f"kpt_ind has {np.size(info_kpt)} entries, {model_path} has "
                                        f"{np.size(model_kpt)}")
    offset = np.unique(np.asarray(info_kpt, np.int64) - np.asarray(model_kpt, np.int64))
    if offset.tolist() in ([1], [-1]):  # the file one less everywhere holds 0-based indices: it is the one named
        low, high, role = ((model_path, info_path, "BFM.mat") if offset[0] == 1
                           else (info_path, model_path, "BFM_info.mat"))
        raise InputFileError(low, f"kpt_ind is one less than {high}'s at every keypoint (off by one: 0-based "
                                  f"indices? face3d's {role} holds MATLAB's 1-based kpt_ind)")
    differ = np.flatnonzero(np.asarray(model_kpt) != np.asarray(info_kpt))
    first = differ[0]
    raise InputFileError(info_path, f"kpt_ind differs from {model_path}'s at {differ.size} of {np.size(model_kpt)} "
                                    f"keypoints (keypoint {first}: vertex {info_kpt[first] + 1} here, "
                                    f"{model_kpt[first] + 1} there, 1-based)")


def _random_source(rng):
    """Where parameter draws come from: numpy's global random state for None (face3d draws with ``np.random.rand``,
    so ``np.random.seed`` makes them repeatable), else ``np.random.default_rng(rng)`` (a Generator or a seed).
    Both offer ``random(size)`` (uniform [0, 1)) and ``standard_normal(size)``."""
    return np.random if rng is None else np.random.default_rng(rng)


def _pose(s, angles, t3d):
    s = as_scale(s)
    if not np.isfinite(s) or s <= 0:
        raise ValueError(f"s must be a positive finite scale, got {s}")
    a = np.asarray(angles, dtype=np.float64).reshape(-1)
    if a.shape != (3,) or not np.all(np.isfinite(a)):
        raise ValueError(f"angles must be 3 finite values [pitch, yaw, roll], "
                         f"got {np.shape(angles)}")
    t = np.asarray(t3d, dtype=np.float64).reshape(-1)
    if t.shape != (3,) or not np.all(np.isfinite(t)):
        raise ValueError(f"t3d must be 3 finite values, got {np.shape(t3d)}")
    return s, a, t


class MorphableModel:
    """A 3D morphable model in the BFM layout (face3d's ``MorphabelModel``, extended).

    Args:
        model_path: None for the embedded default model
            (``face3d.morphable_model.default_model.default_model_dir()``), else the path of a
            face3d ``BFM.mat``.
        info_path: ``BFM_info.mat`` (default: next to ``model_path``, used if present).
        uv_path: ``BFM_UV.mat`` (default: next to ``model_path``, used if present).
    Raises:
        FileNotFoundError: ``model_path`` is no file (missing, or a folder), or an explicitly given info/uv path does
            not exist.
        InputFileError (a ValueError): a file is malformed (the loader's message, naming file and field), or a side
            file was written for a model of another vertex count (naming both files, e.g.
            ``".../BFM_info.mat: segbin has 53215 vertices, .../BFM.mat has 13019"``; see
            :func:`load.info_model_mismatch`) or with other keypoints (kpt_ind, compared when the info file holds
            one; off by one everywhere is named as 0-based indices), so every command reports a wrong model file the
            same way.

    Attributes:
        model: dict (see :func:`face3d.morphable_model.load.load_BFM`).
        info: dict from ``BFM_info.mat`` or {}.
        uv_coords: (nver, 2) float32 in [0, 1] or None.
        region_labels: (nver,) uint8 (0 rest, 1 eyes, 2 nose, 3 mouth) or None without ``segbin``.
        contour_lines: list of 17 int32 arrays (jaw landmark candidates) or None.
        nver, ntri, n_shape_para, n_exp_para, n_tex_para: ints.
        kpt_ind: (68,) int32 vertex index of each iBUG landmark.
        triangles: (ntri, 3) int32 (= model['tri']); full_triangles: tri + tri_mouth rows.
    """

    def __init__(self, model_path=None, info_path=None, uv_path=None):
        if model_path is None:
            from face3d.morphable_model.default_model import default_model_dir
            folder = default_model_dir()
            model_path = folder / "BFM.mat"
        model_path = Path(model_path)
        require_model_file(model_path)
        if info_path is None and (model_path.parent / "BFM_info.mat").is_file():
            info_path = model_path.parent / "BFM_info.mat"
        if uv_path is None and (model_path.parent / "BFM_UV.mat").is_file():
            uv_path = model_path.parent / "BFM_UV.mat"
        info, uv = {}, None
        try:
            model = load.load_BFM(model_path)
            nver, ntri = model["shapeMU"].shape[0] // 3, model["tri"].shape[0]
            if info_path is not None:  # a side file of another model: name both files, not a field of one
                info = load.load_BFM_info(info_path)
                mismatch = load.info_model_mismatch(info, nver, ntri, model_path)
                if mismatch:
                    raise InputFileError(info_path, mismatch)
                if "kpt_ind" in info:
                    _check_keypoints(model["kpt_ind"], info["kpt_ind"], model_path, info_path)
            if uv_path is not None:
                uv = load.load_uv_coords(uv_path)
                if uv.shape[0] != nver:
                    raise InputFileError(uv_path, f"UV has {uv.shape[0]} vertices, {model_path} has {nver}")
            self._setup(model, info, uv, None)
        except InputFileError:
            raise
        except ValueError as error:  # the loaders name the file and the field: one error for every command
            raise InputFileError(None, str(error)) from error

    @classmethod
    def from_arrays(cls, model, info=None, uv_coords=None, contour_lines=None):
        """A MorphableModel from in-memory arrays (tests, benchmarks, converted models).

        Args:
            model: dict in the loaded BFM layout (see :func:`load.load_BFM`); ``expMU`` and
                ``tri_mouth`` may be omitted (zeros / no mouth triangles).
            info: optional BFM_info dict (loaded form); gives region_labels ('segbin') and
                contour_lines ('parallel').
            uv_coords: optional (nver, 2) texture coordinates.
            contour_lines: optional 17 jaw candidate lines, overriding those from ``info``.
        Raises:
            ValueError: a missing key, inconsistent shapes or NaN values (naming the key).
        """
        mm = cls.__new__(cls)
        mm._setup(model, info or {}, uv_coords, contour_lines)
        return mm

    def _setup(self, model, info, uv_coords, contour_lines):
        if not isinstance(model, dict):
            raise ValueError(f"model must be a dict of arrays, got {type(model).__name__}")
        missing = [k for k in _REQUIRED if k not in model]
        if missing:
            raise ValueError(f"model is missing keys {missing} (expected the loaded BFM layout)")
        m = {k: np.asarray(v) for k, v in model.items()}
        n3 = m["shapeMU"].shape[0]
        if m["shapeMU"].shape != (n3, 1) or n3 % 3:
            raise ValueError(f"model['shapeMU'] must have shape (3n, 1), got {m['shapeMU'].shape}")
        m.setdefault("expMU", np.zeros((n3, 1), dtype=np.float32))
        m.setdefault("tri_mouth", np.zeros((0, 3), dtype=np.int32))
        for pc, ev in (("shapePC", "shapeEV"), ("expPC", "expEV"), ("texPC", "texEV")):
            k = m[pc].shape[1] if m[pc].ndim == 2 else -1
            if m[pc].shape != (n3, k):
                raise ValueError(f"model['{pc}'] must have shape ({n3}, k), got {m[pc].shape}")
            m[ev] = m[ev].reshape(-1, 1)
            if m[ev].shape != (k, 1):
                raise ValueError(f"model['{ev}'] must hold {k} values, got {np.shape(model[ev])}")
        for key in ("shapeMU", "expMU", "texMU", "shapePC", "expPC", "texPC",
                    "shapeEV", "expEV", "texEV"):
            if not np.all(np.isfinite(m[key])):
                raise ValueError(f"model['{key}'] contains NaN or inf")
            m[key] = np.ascontiguousarray(m[key], dtype=np.float32)
        nver = n3 // 3
        for key in ("tri", "tri_mouth", "kpt_ind"):
            idx = m[key]
            if idx.dtype.kind not in "iu" or (idx.size and (idx.min() < 0 or idx.max() >= nver)):
                raise ValueError(f"model['{key}'] must hold integer vertex indices 0..{nver - 1}")
            m[key] = np.ascontiguousarray(idx, dtype=np.int32)
        self.model = m
        self.info = info
        self.uv_coords = None if uv_coords is None else np.asarray(uv_coords, dtype=np.float32)
        if self.uv_coords is not None and self.uv_coords.shape != (nver, 2):
            raise ValueError(f"uv_coords must have shape ({nver}, 2), got {self.uv_coords.shape}")
        self.region_labels = load.region_labels(info, nver) if "segbin" in info else None
        if contour_lines is None and "parallel" in info:
            contour_lines = load.contour_lines(info)
        self.contour_lines = None if contour_lines is None else [
            np.asarray(line, dtype=np.int32).reshape(-1) for line in contour_lines]
        if self.contour_lines is not None and len(self.contour_lines) != 17:
            raise ValueError(f"contour_lines must hold 17 lines, got {len(self.contour_lines)}")
        self.nver = nver
        self.ntri = m["tri"].shape[0]
        self.n_shape_para = m["shapePC"].shape[1]
        self.n_exp_para = m["expPC"].shape[1]
        self.n_tex_para = m["texPC"].shape[1]
        self.kpt_ind = m["kpt_ind"]
        self.triangles = m["tri"]
        self.full_triangles = np.vstack((m["tri"], m["tri_mouth"]))
        self._fitters = OrderedDict()  # (contour, landmark indices) -> LandmarkFitter, least recently used first

    # ----------------------------------------------------------------------------- parameters
    def get_shape_para(self, type="random", rng=None):
        """Shape parameters as face3d draws them.

        Args:
            type: 'zero' or 'random' (face3d: uniform in [0, 1e4) per component, small next to
                BFM-scale shapeEV ~1e5..1e6).
            rng: numpy Generator or seed; None (default) draws from numpy's global random state as face3d does
                (after ``np.random.seed(k)`` the same values as face3d's ``get_shape_para``).
        Returns:
            (n_shape_para, 1) float32.
        """
        if type == "zero":
            return np.zeros((self.n_shape_para, 1), dtype=np.float32)
        if type == "random":
            return (_random_source(rng).random((self.n_shape_para, 1)) * 1e04).astype(np.float32)
        raise ValueError(f"type must be 'zero' or 'random', got {type!r}")

    def get_exp_para(self, type="random", rng=None):
        """Expression parameters as face3d draws them: 'random' gives the first 6 components
        uniform in [-1.5, 1.5) and the rest 0; 'zero' all zeros. ``rng`` as in :meth:`get_shape_para`.
        Returns (n_exp_para, 1) float32."""
        if type == "zero":
            return np.zeros((self.n_exp_para, 1), dtype=np.float32)
        if type == "random":
            ep = -1.5 + 3 * _random_source(rng).random((self.n_exp_para, 1))
            ep[6:] = 0
            return ep.astype(np.float32)
        raise ValueError(f"type must be 'zero' or 'random', got {type!r}")

    def get_tex_para(self, type="random", rng=None):
        """Texture parameters: 'random' ~ N(0, texEV^2) per component (plausible colours; face3d's
        uniform [0, 1) draw barely changes BFM colours), 'zero' all zeros. ``rng`` as in :meth:`get_shape_para`.
        Returns (n_tex_para, 1) float32."""
        if type == "zero":
            return np.zeros((self.n_tex_para, 1), dtype=np.float32)
        if type == "random":
            z = _random_source(rng).standard_normal((self.n_tex_para, 1))
            return (z * self.model["texEV"]).astype(np.float32)
        raise ValueError(f"type must be 'zero' or 'random', got {type!r}")

    # ----------------------------------------------------------------------------- generation
    def generate_vertices(self, shape_para, exp_para):
        """Vertices of a face: ``(shapeMU + shapePC @ sp + expPC @ ep).reshape(-1, 3)``.

        Args:
            shape_para: (n_shape_para,), (n_shape_para, 1) or (1, n_shape_para). exp_para: likewise with
                n_exp_para.
        Returns:
            (nver, 3) float32 micrometres.
        """
        sp = _para(shape_para, self.n_shape_para, "shape_para").astype(np.float32)
        ep = _para(exp_para, self.n_exp_para, "exp_para").astype(np.float32)
        m = self.model
        v = m["shapeMU"][:, 0] + m["shapePC"] @ sp + m["expPC"] @ ep
        return v.reshape(-1, 3)

    def generate_colors(self, tex_para):
        """Per-vertex colours ``(texMU + texPC @ tp).reshape(-1, 3)`` (0..255 scale).

        Unlike face3d's ``generate_colors``, which returns ``(texMU + texPC @ (tp * texEV)) / 255``, the parameters
        are in basis units (``get_tex_para('random')`` draws them with the EVs already applied) and the colours stay
        on the model's 0..255 scale: divide by 255 for [0, 1].

        Args:
            tex_para: (n_tex_para,), (n_tex_para, 1) or (1, n_tex_para).
        Returns:
            (nver, 3) float32 on the 0..255 scale of ``texMU``.
        """
        tp = _para(tex_para, self.n_tex_para, "tex_para").astype(np.float32)
        return (self.model["texMU"][:, 0] + self.model["texPC"] @ tp).reshape(-1, 3)

    # ----------------------------------------------------------------------------- transforms
    def rotate(self, vertices, angles):
        """face3d rotation about the origin: ``vertices @ angle2matrix(angles).T``.

        Args:
            vertices: (n, 3). angles: [pitch, yaw, roll] in DEGREES (face3d).
        Returns:
            (n, 3) rotated vertices (dtype of ``vertices``).
        """
        return rotate(_vertices(vertices), angles)

    def transform(self, vertices, s, angles, t3d):
        """face3d similarity transform: ``s * vertices @ angle2matrix(angles).T + t3d``.

        Args:
            vertices: (n, 3). s: scale (a number or a one-element array). angles: [pitch, yaw, roll] in
                DEGREES (face3d).
            t3d: (3,) translation.
        Returns:
            (n, 3) transformed vertices (dtype of ``vertices``).
        """
        s, a, t = _pose(s, angles, t3d)
        return similarity_transform(_vertices(vertices), s, angle2matrix(a), t)

    def transform_3ddfa(self, vertices, s, angles, t3d):
        """300W-LP / 3DDFA placement: ``s * vertices @ angle2matrix_3ddfa(angles).T + t3d``.

        With ``angles = Pose_Para[0:3]`` (RADIANS), ``t3d = Pose_Para[3:6]``, ``s = Pose_Para[6]``
        this gives image pixels with y up; the image row is ``h - 1 - y``
        (:func:`face3d.morphable_model.camera.flip_y`).
        """
        s, a, t = _pose(s, angles, t3d)
        return similarity_transform(_vertices(vertices), s, angle2matrix_3ddfa(a), t)

    # ----------------------------------------------------------------------------- fitting
    def fitter(self, X_ind=None, contour=False):
        """The :class:`LandmarkFitter` for landmark vertices ``X_ind`` (default kpt_ind), cached: the
        ``FITTER_CACHE_SIZE`` most recently used landmark subsets keep theirs.

        Args:
            X_ind: (m,) landmark vertex indices or None for ``kpt_ind``.
            contour: build the contour-aware fitter (needs the 68 keypoints and contour lines).
        Raises:
            ValueError: contour requested but unavailable, or bad X_ind.
        """
        ind = self.kpt_ind if X_ind is None else np.asarray(X_ind).reshape(-1)
        if ind.dtype.kind not in "iu":
            raise ValueError(f"X_ind must hold integer vertex indices, got dtype {ind.dtype}")
        if contour and (self.contour_lines is None or ind.size != 68):
            raise ValueError("contour-aware fitting needs the 68 iBUG landmarks and a model with "
                             "contour lines (BFM_info.mat 'parallel')")
        key = (bool(contour), ind.astype(np.int64).tobytes())
        if key in self._fitters:
            self._fitters.move_to_end(key)
        else:
            self._fitters[key] = LandmarkFitter(self.model, ind, contour_lines=self.contour_lines
                                                if contour else None)
            if len(self._fitters) > FITTER_CACHE_SIZE:
                self._fitters.popitem(last=False)
        return self._fitters[key]

    def fit_batch(self, x, X_ind=None, max_iter=4, contour=False, noise_sigma=2.0, tol=1e-3):
        """Fit many faces at once (vectorised); see :meth:`LandmarkFitter.fit`.

        Args:
            x: (N, m, 2) landmarks in the projected frame (pixels, y up), row j observing vertex
                ``X_ind[j]`` (default: the 68 keypoints).
            max_iter, contour, noise_sigma, tol: see :meth:`LandmarkFitter.fit`.
        Returns:
            :class:`face3d.morphable_model.fit.FitResult` (shape_para (N, n_sp), exp_para, s, R,
            t, landmark_vertices; ``.angles`` in degrees, ``.pose_para()`` 300W-LP rows).
        """
        return self.fitter(X_ind, contour).fit(x, max_iter=max_iter, contour=contour,
                                               noise_sigma=noise_sigma, tol=tol)

    def fit(self, x, X_ind, max_iter=4, isShow=False, contour=False, noise_sigma=2.0, tol=1e-3):
        """face3d-compatible fit of one face to 2D landmarks.

        Args:
            x: (m, 2) landmark positions in the projected frame (pixels, y up).
            X_ind: (m,) vertex indices the landmarks observe (e.g. ``self.kpt_ind``).
            max_iter: at most this many iterations (joint pose + shape + expression Gauss-Newton
                steps; fewer once converged to ``tol`` pixels).
            isShow: if True return the estimates after initialisation and each iteration
                (arrays with a leading axis of max_iter + 1), as face3d's ``fit_points_for_show``.
            contour: contour-aware jaw landmarks (68 iBUG landmarks and contour lines needed).
            noise_sigma: landmark noise plus model error, pixels (the prior's weight).
        Returns:
            fitted_sp (n_shape_para, 1) float32, fitted_ep (n_exp_para, 1) float32, s (float),
            angles [pitch, yaw, roll] degrees (face3d's ``matrix2angle``), t (3,) float64 with
            t[2] = 0; with isShow each is stacked over iterations.
        """
        if np.ndim(x) != 2:
            raise ValueError(f"x must have shape (m, 2) for one face (fit_batch takes (N, m, 2)), "
                             f"got {np.shape(x)}")
        r = self.fitter(X_ind, contour).fit(x, max_iter=max_iter, contour=contour,
                                            noise_sigma=noise_sigma, tol=tol,
                                            keep_history=isShow)
        if isShow:
            sp, ep, s, R, t = (np.stack(f) for f in zip(*r.history))
            return (sp[:, 0, :, None], ep[:, 0, :, None], s[:, 0],
                    np.array([matrix2angle(Ri) for Ri in R[:, 0]]), t[:, 0])
        return (r.shape_para[0][:, None], r.exp_para[0][:, None], float(r.s[0]),
                list(matrix2angle(r.R[0])), r.t[0])

    def fit_image_landmarks(self, points, h, X_ind=None, max_iter=4, contour=True,
                            noise_sigma=2.0):
        """Fit landmarks given in IMAGE coordinates (y down), e.g. 300W-LP ``pt2d.T``.

        The points are flipped to the projected frame (``y -> h - 1 - y``), fitted, and the pose is
        returned as a 300W-LP ``Pose_Para`` row, so ``transform_3ddfa`` with it reproduces the
        300W-LP placement.

        Args:
            points: (m, 2) or (N, m, 2) image coordinates. h: image height in pixels.
            X_ind: landmark vertices (default the 68 keypoints). contour: contour-aware jaw
                (used only when available: 68 landmarks and model contour lines).
        Returns:
            (FitResult, pose_para (N, 7) float64).
        """
        pts = flip_y(points, h)
        n = pts.shape[-2]
        use_contour = bool(contour) and self.contour_lines is not None and n == 68
        r = self.fit_batch(pts, X_ind=X_ind, max_iter=max_iter, contour=use_contour,
                           noise_sigma=noise_sigma)
        return r, r.pose_para()

    def fit_to_pose_para(self, s, angles, t, tz=0.0):
        """A face3d fit result (s, angles in degrees, t) as a 300W-LP ``Pose_Para`` (7,) row.

        Valid when the landmarks were fitted in the 300W-LP projected frame (``flip_y`` of the
        image points); the 3DDFA angles come from the same rotation matrix.
        """
        s, a, t3 = _pose(s, angles, np.append(np.asarray(t, np.float64).reshape(-1)[:2], tz))
        return pose_para_from_fit(s, angle2matrix(a), t3[:2], tz=tz)[0]

    @staticmethod
    def pose_para_to_fit(pose_para):
        """Inverse of :meth:`fit_to_pose_para`: -> s, angles (degrees, face3d), t (3,)."""
        return fit_from_pose_para(pose_para)


class MorphabelModel(MorphableModel):
    """face3d's ``MorphabelModel`` (its misspelt name), so its scripts run unchanged: a :class:`MorphableModel`
    whose constructor takes face3d's arguments ``(model_path, model_type='BFM')``.

    Args:
        model_path: a face3d ``BFM.mat`` (None: the embedded default model).
        model_type: 'BFM', the only kind face3d loads (it exits on any other; this raises ValueError).
        info_path, uv_path: keyword only, as in :class:`MorphableModel`.
    """

    def __init__(self, model_path=None, model_type="BFM", *, info_path=None, uv_path=None):
        if model_type != "BFM":
            raise ValueError(f"model_type must be 'BFM' (the only model face3d supports), got {model_type!r}")
        super().__init__(model_path, info_path=info_path, uv_path=uv_path)


def model_identity(model_path=None) -> str:
    """What a resumable run records as its model: ``default-v<MODEL_VERSION>`` for the embedded model, else the
    sha256 (16 hex digits) of ``BFM.mat`` and of the ``BFM_info.mat`` and ``BFM_UV.mat`` beside it when present
    (the files ``MorphableModel(model_path)`` reads). The same files give the same identity wherever they lie
    (shards on several machines), and a replaced file gives another.

    Raises:
        FileNotFoundError: no file at ``model_path``.
    """
    from face3d.morphable_model.default_model import MODEL_VERSION

    if model_path is None:
        return f"default-v{MODEL_VERSION}"
    path = Path(model_path)
    require_model_file(path)
    keys = []
    for file in (path, path.parent / "BFM_info.mat", path.parent / "BFM_UV.mat"):
        try:
            status = file.stat()  # once: size and time of the same moment
        except FileNotFoundError:
            continue
        if stat.S_ISREG(status.st_mode):
            keys.append((file.name, str(file.resolve()), status.st_size, status.st_mtime_ns))
    return _files_identity(tuple(keys))


@functools.lru_cache(maxsize=4)
def _files_identity(files):
    """``model_identity`` of the files given as (name, resolved path, size, mtime in ns): one hash per run, however
    many steps ask (a changed file has another size or time, so another key)."""
    digest = hashlib.sha256()
    for name, resolved, _, _ in files:
        digest.update(name.encode("utf-8") + b"\0")
        file_digest = hashlib.sha256()
        with open(resolved, "rb") as f:  # 1 MiB at a time (hashlib.file_digest is Python 3.11+)
            for chunk in iter(lambda: f.read(1 << 20), b""):
                file_digest.update(chunk)
        digest.update(file_digest.digest())
    return digest.hexdigest()[:16]
