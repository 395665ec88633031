"""Render a small sample set in the 300W-LP format from a morphable model (the embedded default unless given one).

Each sample is a ``.jpg`` and a ``.mat`` with 300W-LP's keys (listed in ``synthesize_sample``): angles in radians
(3DDFA convention, ``angle2matrix_3ddfa``), parameters in basis units (no EV scaling), ``pt2d`` in image pixels
(x right, y down). A face has ``views`` profiled views ``SYNTH/SYNTH_<ffff>_1_<view>``, each with a mirrored copy of
the same name in ``SYNTH_Flip`` (``sample_names``). Face f is drawn from ``default_rng([seed, f])`` alone, so the set
is deterministic; ``synthesize_dataset`` records, reuses and resumes a set. README: ``face3d synthesize``.
"""
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import scipy.linalg

from face3d.mesh import light as mesh_light
from face3d.mesh import render as mesh_render
from face3d.mesh.transform import angle2matrix_3ddfa, similarity_transform
from face3d.morphable_model.contour import landmark_vertices
from face3d.morphable_model.morphable_model import model_identity
from face3d.trainset.outputs import write_image
from face3d.utils.atomic import atomic_file, atomic_write_bytes, exclusive_lock
from face3d.utils.errors import InputFileError
from face3d.utils.matfile import save_mat

__all__ = [
    "FLIP_FOLDER",
    "LOCK_FILE",
    "MIN_SIZE",
    "RECORD_FILE",
    "SYNTH_FOLDER",
    "VIEWS",
    "landmark_roi",
    "random_background",
    "sample_names",
    "synthesize_dataset",
    "synthesize_sample",
    "view_yaws",
]

SYNTH_FOLDER = "SYNTH"
FLIP_FOLDER = "SYNTH_Flip"
RECORD_FILE = "synthetic.json"
LOCK_FILE = ".synthetic.lock"  # hidden: never a sample; left in place (see exclusive_lock)
VIEWS = 4
MIN_SIZE = 64  # the smallest image side in pixels synthesize_dataset renders
FORMAT_VERSION = 4  # bumped when the rendered samples change, so that older sets are rendered again
_GOLDEN = 0.6180339887498949


def random_background(rng, size):
    """A varied background: smooth noise, a linear gradient, random shapes or a radial gradient.

    Args:
        rng: ``numpy.random.Generator``.
        size: side in pixels.
    Returns:
        (size, size, 3) float32 RGB in [0, 1].
    """
    kind = int(rng.integers(4))
    if kind == 0:  # smooth coloured noise: a coarse random grid upsampled, plus fine grain
        cells = int(rng.integers(3, 12))
        coarse = rng.random((cells, cells, 3), dtype=np.float32)
        image = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
        image += rng.normal(0.0, 0.04, (size, size, 3)).astype(np.float32)
    elif kind == 1:  # linear gradient between two colours at a random angle
        c0, c1 = rng.random(3, dtype=np.float32), rng.random(3, dtype=np.float32)
        theta = rng.uniform(0.0, 2.0 * np.pi)
        grid = np.linspace(-1.0, 1.0, size, dtype=np.float32)
        t = (np.cos(theta) * grid[None, :] + np.sin(theta) * grid[:, None]) * 0.5 + 0.5
        image = c0 + (c1 - c0) * t[..., None]
    elif kind == 2:  # shapes: rectangles, circles and thick lines over a flat colour
        image = np.empty((size, size, 3), dtype=np.float32)
        image[:] = rng.random(3, dtype=np.float32)
        for _ in range(int(rng.integers(6, 16))):
            colour = tuple(float(c) for c in rng.random(3))
            p0 = tuple(int(v) for v in rng.integers(0, size, 2))
            p1 = tuple(int(v) for v in rng.integers(0, size, 2))
            shape = int(rng.integers(3))
            if shape == 0:
                cv2.rectangle(image, p0, p1, colour, -1)
            elif shape == 1:
                cv2.circle(image, p0, int(rng.integers(size // 20, size // 4)), colour, -1)
            else:
                cv2.line(image, p0, p1, colour, int(rng.integers(3, size // 15)))
    else:  # radial gradient with grain
        c0, c1 = rng.random(3, dtype=np.float32), rng.random(3, dtype=np.float32)
        centre = rng.uniform(0.0, size, 2)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        t = np.clip(np.hypot(xx - centre[0], yy - centre[1]) / (0.8 * size), 0.0, 1.0)
        image = c0 + (c1 - c0) * t[..., None] + rng.normal(0.0, 0.03, (size, size, 3)).astype(np.float32)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _draw_light(rng):
    """Ambient rgb, directional rgb, elevation and azimuth (radians) of the light: (3,), (3,), float, float."""
    ambient = rng.uniform(0.35, 0.6) * rng.uniform(0.9, 1.1, 3)
    directional = rng.uniform(0.35, 0.75) * rng.uniform(0.9, 1.1, 3)
    elevation, azimuth = rng.uniform(-0.6, 0.8), rng.uniform(-1.2, 1.2)
    return ambient, directional, elevation, azimuth


def _shade(model, vertices, colors, R, light):
    """Lambertian shading in camera space: ambient + one directional light (face3d.mesh.light normals).

    Returns:
        (colors (n,3) float32 in [0, 1], Illum_Para (10,) float64).
    """
    ambient, directional, elevation, azimuth = light
    normals = mesh_light.vertex_normals(vertices, model.full_triangles)
    if normals[:, 2].sum() < 0:  # the triangle winding decides the sign; a frontal face must face +z
        normals = -normals
    normals = normals @ R.T
    direction = np.array([np.cos(elevation) * np.sin(azimuth), np.sin(elevation),
                          np.cos(elevation) * np.cos(azimuth)])
    lambert = np.clip(normals @ direction, 0.0, None)[:, None]
    shaded = colors / 255.0 * (ambient[None, :] + directional[None, :] * lambert)
    illum = np.concatenate([ambient, directional, [elevation, azimuth, 0.0, 20.0]])
    return np.clip(shaded, 0.0, 1.0).astype(np.float32), illum


@dataclass(frozen=True)
class _Face:
    """What every view of one face shares: the subject (parameters, vertices (n, 3), colours (n, 3) 0-255), pitch,
    roll and base yaw (radians), scale, the keypoint-box centre (2,) in projected pixels (y up), the light and the
    background (size, size, 3) float32."""

    shape_para: np.ndarray
    exp_para: np.ndarray
    tex_para: np.ndarray
    vertices: np.ndarray
    colors: np.ndarray
    pitch: float
    roll: float
    yaw: float
    scale: float
    target: np.ndarray
    light: tuple
    background: np.ndarray


def _draw_face(model, rng, size, yaw_fraction):
    """A random face (see ``synthesize_sample`` for the distributions)."""
    m = model.model
    # Components ~ N(0, (k EV)^2), clipped at 2.5 sigma: plausible faces, the scales of 300W-LP's fits.
    shape_para = (np.clip(rng.standard_normal((model.n_shape_para, 1)), -2.5, 2.5) * 0.7
                  * m["shapeEV"].reshape(-1, 1)).astype(np.float64)
    exp_para = (np.clip(rng.standard_normal((model.n_exp_para, 1)), -2.5, 2.5) * 0.6
                * m["expEV"].reshape(-1, 1)).astype(np.float64)
    tex_para = (np.clip(rng.standard_normal((model.n_tex_para, 1)), -2.5, 2.5) * 0.6
                * m["texEV"].reshape(-1, 1)).astype(np.float64)
    vertices = model.generate_vertices(shape_para, exp_para).astype(np.float64)
    colors = model.generate_colors(tex_para).astype(np.float64)
    fraction = rng.random() if yaw_fraction is None else float(yaw_fraction)
    yaw = np.deg2rad(np.clip(-90.0 + 180.0 * fraction + rng.uniform(-3.0, 3.0), -90.0, 90.0))
    pitch, roll = np.deg2rad(rng.uniform(-20.0, 20.0, 2))
    scale = rng.uniform(0.33, 0.5) * size / np.ptp(vertices[:, 0])  # face (mask) width 33-50% of the image
    target = (size - 1) / 2.0 + rng.uniform(-0.06, 0.06, 2) * size  # in projected coordinates (y up)
    light = _draw_light(rng)
    return _Face(shape_para, exp_para, tex_para, vertices, colors, float(pitch), float(roll), float(yaw),
                 float(scale), target, light, random_background(rng, size))


def _render_view(model, face, yaw, rng, size, kpt=None, translation=None):
    """One view of ``face`` at ``yaw`` (radians), its keypoint box centred on ``face.target``; ``rng`` draws the
    sensor grain. ``kpt``: the keypoint vertices of pt2d, by default 300W-LP's (``contour.landmark_vertices``).
    ``translation``: (tx, ty) of the pose instead (a ``_Flip`` copy's: its view's, mirrored exactly).

    Placement follows 300W-LP: ``projected = s * vertices @ R.T + t3d`` with ``R = angle2matrix_3ddfa(pitch, yaw,
    roll)`` and image row ``y = size - 1 - projected_y``. As in 300W-LP, the jaw keypoints of the side turned away
    from the camera (|yaw| > 10 degrees) are moved to the silhouette: for each of them, the outermost vertex of its
    ``contour_lines`` candidates (BFM_info's ``parallel``) when the model has them.

    Returns:
        (image (size, size, 3) uint8 RGB, mat dict (``synthesize_sample``), keypoint vertex indices (68,)).
    """
    vertices = face.vertices
    kpt_ind = np.asarray(model.kpt_ind, dtype=np.int64)
    R = angle2matrix_3ddfa([face.pitch, yaw, face.roll])
    placed = similarity_transform(vertices, face.scale, R, np.zeros(3))
    box_centre = 0.5 * (placed[kpt_ind, :2].min(axis=0) + placed[kpt_ind, :2].max(axis=0))
    tx, ty = face.target - box_centre if translation is None else translation
    # Stored as float32 (as 300W-LP does); everything below uses the stored values, so the labels are exact.
    pose = np.array([face.pitch, yaw, face.roll, tx, ty, 0.0, face.scale], dtype=np.float32).astype(np.float64)
    R = angle2matrix_3ddfa(pose[:3])
    projected = similarity_transform(vertices, pose[6], R, pose[3:6])

    shaded, illum = _shade(model, vertices, face.colors, R, face.light)
    image_vertices = projected.copy()
    image_vertices[:, 1] = size - 1 - image_vertices[:, 1]
    rendered = mesh_render.render_colors(image_vertices.astype(np.float32), model.full_triangles, shaded,
                                         size, size, c=3, BG=face.background.copy())
    rendered = rendered + rng.normal(0.0, 1.5 / 255.0, rendered.shape)  # sensor grain
    image = np.clip(np.round(rendered * 255.0), 0, 255).astype(np.uint8)

    if kpt is None:
        lines = model.contour_lines
        kpt = kpt_ind if lines is None else landmark_vertices(vertices, R, kpt_ind, lines)
    pt2d = image_vertices[kpt, :2].T.astype(np.float64)
    mat = {
        "pt2d": pt2d,
        "roi": landmark_roi(pt2d),
        "Pose_Para": pose.astype(np.float32).reshape(1, 7),
        "Shape_Para": face.shape_para,
        "Exp_Para": face.exp_para,
        "Tex_Para": face.tex_para,
        "Color_Para": np.array([[1, 1, 1, 0, 0, 0, 1]], dtype=np.float32),
        "Illum_Para": illum.reshape(1, 10),
    }
    return image, mat, kpt


def synthesize_sample(model, rng, size=450, yaw_fraction=None):
    """Render one 300W-LP-format sample.

    Args:
        model: MorphableModel.
        rng: ``numpy.random.Generator`` (all randomness of the sample).
        size: image side in pixels.
        yaw_fraction: position of the yaw in [-90, 90] degrees as a fraction in [0, 1] (jittered by +-3
            degrees); None draws it uniformly. Pitch and roll are uniform in +-20 degrees.
    Returns:
        (image (size, size, 3) uint8 RGB, mat dict): 300W-LP's keys: ``Pose_Para`` (1,7) = pitch, yaw, roll
        (radians, 3DDFA convention), tx, ty, tz, scale; ``Shape_Para`` (n_shape,1), ``Exp_Para`` (n_exp,1),
        ``Tex_Para`` (n_tex,1) in basis units (vertices = shapeMU + shapePC @ Shape_Para + expPC @ Exp_Para, no EV
        scaling, as 300W-LP stores them); ``pt2d`` (2,68) the projected 68 keypoints in image pixels (x, y down);
        ``roi`` (1,4) int16 (``landmark_roi``); ``Color_Para`` (1,7) neutral (gains 1, offsets 0, contrast 1) and
        ``Illum_Para`` (1,10) = ambient rgb, directional rgb, light elevation and azimuth (radians), specular 0,
        shininess 20, the lighting actually used.
    """
    face = _draw_face(model, rng, size, yaw_fraction)
    return _render_view(model, face, face.yaw, rng, size)[:2]


def view_yaws(yaw, views):
    """Yaws (radians) of a face's ``views`` profiled views: the first at ``yaw``, the others evenly on towards
    the profile (+-90 degrees) on its side, as 300W-LP's ``_1_<view>`` samples turn the face further away."""
    side = 1.0 if yaw >= 0 else -1.0
    return [yaw + side * (np.pi / 2 - abs(yaw)) * v / views for v in range(views)]


class _BasisFit:
    """Least-squares parameters of a linear model ``values = mean + basis @ para``: ``para = (B^T B)^-1 B^T (values -
    mean)`` through the Cholesky factor of the normal matrix ``B^T B``, factored once.

    Args:
        mean: (3n, 1) or (3n,).
        basis: (3n, k).
    """

    def __init__(self, mean, basis):
        self._mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        self._basis = np.asarray(basis, dtype=np.float64)
        self._factor = scipy.linalg.cho_factor(self._basis.T @ self._basis)

    def __call__(self, values):
        """(n, 3) values -> (k, 1) float64 parameters."""
        rhs = self._basis.T @ (np.asarray(values, dtype=np.float64).reshape(-1) - self._mean)
        return scipy.linalg.cho_solve(self._factor, rhs).reshape(-1, 1)


class _Mirror:
    """Mirror image of a face in the model (x -> -x): the model's vertex symmetry (BFM_info's ``symlist``) and the
    least-squares shape, expression and texture parameters of the mirrored vertices and colours (``_BasisFit``).

    Raises:
        InputFileError: the model has no ``symlist``, naming ``info_file`` (the BFM_info.mat it would come from).
        ValueError: the same, when ``info_file`` is None (a model object).
    """

    def __init__(self, model, info_file=None):
        pairs = np.asarray((getattr(model, "info", None) or {}).get("symlist", np.zeros((2, 0))), dtype=np.int64)
        if pairs.size == 0 and info_file is None:
            raise ValueError("the model has no 'symlist' (BFM_info's mirror vertex pairs): _Flip copies need it; "
                             "pass flip=False")
        if pairs.size == 0:
            raise InputFileError(info_file, "no 'symlist': _Flip copies need it; use --no-flip (face3d synthesize; "
                                            "give its set to generate as --root)")
        self.model = model
        self.permutation = np.arange(model.nver)
        self.permutation[pairs[0]], self.permutation[pairs[1]] = pairs[1], pairs[0]
        m = model.model
        self._fit_geometry = _BasisFit(m["shapeMU"], np.hstack([m["shapePC"], m["expPC"]]))
        self._fit_texture = _BasisFit(m["texMU"], m["texPC"])

    def __call__(self, face, size):
        """The mirrored ``face``: fitted parameters and the vertices and colours they give (the model's nearest face
        to the mirror image, so that the parameters describe what is rendered), background mirrored, roll, yaw,
        light azimuth and target x mirrored (``x -> size - 1 - x`` in the image)."""
        para = self._fit_geometry(face.vertices[self.permutation] * np.array([-1.0, 1.0, 1.0]))
        tex_para = self._fit_texture(face.colors[self.permutation])
        ns = self.model.n_shape_para
        ambient, directional, elevation, azimuth = face.light
        return dataclasses.replace(
            face, shape_para=para[:ns], exp_para=para[ns:], tex_para=tex_para,
            vertices=self.model.generate_vertices(para[:ns], para[ns:]).astype(np.float64),
            colors=self.model.generate_colors(tex_para).astype(np.float64), roll=-face.roll, yaw=-face.yaw,
            target=np.array([size - 1 - face.target[0], face.target[1]]),
            light=(ambient, directional, elevation, -azimuth), background=face.background[:, ::-1])


def sample_names(count, views=VIEWS, flip=True):
    """(folder, stem, face, view, flipped) of the set's samples in order: sample i is view ``v`` of face ``f``
    (``<SYNTH>/SYNTH_<ffff>_1_<v>``), or with ``flip`` its mirror copy for odd i (same stem in ``SYNTH_Flip``).

    As in 300W-LP, a face (subject, expression, light, background) has ``views`` views sharing ``Shape_Para`` and
    ``Exp_Para``: only ``Pose_Para`` differs (``view_yaws``). How a flipped copy is made: ``_render_set``."""
    names = []
    for i in range(int(count)):
        pair, flipped = (i // 2, i % 2 == 1) if flip else (i, False)
        face, view = divmod(pair, int(views))
        folder = FLIP_FOLDER if flipped else SYNTH_FOLDER
        names.append((folder, f"{SYNTH_FOLDER}_{face:04d}_1_{view}", face, view, flipped))
    return names


def _render_set(model, mirror, names, seed, size, views):
    """Yield (folder, stem, image, mat) for ``names`` (``sample_names``), each face drawn once; ``mirror``: the
    model's ``_Mirror`` (None when no name is a flipped copy).

    A flipped copy of view v is the mirrored face (``_Mirror``) with the mirrored light and background, yaw and roll
    negated, the view's tx mirrored exactly (w - 1 - tx), ty kept; its ``pt2d`` is mirrored in x but not re-ordered
    (point 0 is then the subject's left jaw; the fitted face's keypoints lie within about a pixel of the mirrored
    ones)."""
    face, face_index, keypoints, translations = None, -1, {}, {}
    for folder, stem, f, v, flipped in names:
        if f != face_index:
            rng = np.random.default_rng([int(seed), f])
            face, face_index = _draw_face(model, rng, size, ((f + 0.5) * _GOLDEN) % 1.0), f
            mirrored = mirror(face, size) if mirror is not None else None
            yaws = view_yaws(face.yaw, views)
        if flipped:  # the mirror of view v: keypoint k is the mirror vertex of the view's keypoint k, and tx mirrored
            tx, ty = translations[v]
            image, mat, _ = _render_view(model, mirrored, -yaws[v], np.random.default_rng([int(seed), f, v, 1]),
                                         size, kpt=mirror.permutation[keypoints[v]], translation=(size - 1 - tx, ty))
        else:  # view 0 continues the face's generator, so a one-view face is what synthesize_sample renders
            image, mat, keypoints[v] = _render_view(model, face, yaws[v], rng if v == 0 else
                                                    np.random.default_rng([int(seed), f, v]), size)
            translations[v] = mat["Pose_Para"][0, 3:5].astype(np.float64)
        yield folder, stem, image, mat


def landmark_roi(pt2d):
    """The ``roi`` written for landmarks: a landmark box grown by a quarter on each side (300W-LP's own roi is a
    square face box of its source image; nothing here reads it).

    Args:
        pt2d: (2, k) image pixels (x row, y row).
    Returns:
        (1, 4) int16 [x0, y0, x1, y1].
    """
    pt2d = np.asarray(pt2d, dtype=np.float64)
    lo, hi = pt2d.min(axis=1), pt2d.max(axis=1)
    pad = 0.25 * (hi - lo)
    return np.round(np.concatenate([lo - pad, hi + pad])).astype(np.int16).reshape(1, 4)


def synthesize_dataset(output, count=24, seed=0, model_path=None, size=450, model=None, views=VIEWS, flip=True,
                       before_writing=None):
    """Render ``count`` samples into ``output/SYNTH`` and ``output/SYNTH_Flip``.

    ``output/synthetic.json`` records the settings and the model's identity (``model_identity``: the embedded
    model's version or the model files' content), marked ``"complete": false`` before the first sample and rewritten
    without the mark after the last: a complete set with the same settings and model is reused instead of
    re-rendered, an interrupted one keeps its finished faces and renders the rest; rendering with other settings
    first removes the samples there, so the folders hold exactly this set. Processes given the same ``output`` at
    once (``generate`` shards without ``--root``) take turns under an exclusive lock on ``LOCK_FILE``: the first
    renders the set, the others then find it complete and reuse it.

    Args:
        output: folder of the set (created).
        count: number of samples (>= 1), flipped copies included; see ``sample_names`` for their order.
        seed: base seed (>= 0); face f is drawn from ``default_rng([seed, f])`` alone, its yaw spread over [-90, 90]
            degrees by a golden-ratio sequence, so its first k samples do not depend on ``count``; a one-view face
            without flip is what ``synthesize_sample`` renders.
        model_path: ``BFM.mat`` or None for the embedded default model.
        size: image side in pixels (300W-LP: 450).
        model: an already loaded MorphableModel (overrides ``model_path``); its set is always rendered (an object
            may differ from its files) and recorded with model null.
        views: profiled views per face (>= 1), sharing Shape_Para and Exp_Para.
        flip: every other sample is the ``_Flip`` copy of the one before (needs the model's ``symlist``; without it
            ``InputFileError`` names the ``BFM_info.mat`` beside ``model_path``, before the output is touched).
        before_writing: None, or a function called with no argument once the model is checked, before the output
            is touched (not when a complete set is found before the set's lock is taken): ``face3d generate`` takes
            its output's lock there.
    Returns:
        list of the ``.mat`` paths, in sample order.
    Raises:
        FileNotFoundError: no file at ``model_path``. InputFileError: a model file that is not what it should be
            (``MorphableModel``'s message, naming the file), or no ``symlist`` for ``flip``; both before the output
            is touched.
    """
    if int(count) < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0 for the synthetic set, got {seed}")
    if int(size) < MIN_SIZE:
        raise ValueError(f"size must be >= {MIN_SIZE} pixels, got {size}")
    if int(views) < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    output = Path(output)
    names = sample_names(count, views, flip)
    mats = [output / folder / f"{stem}.mat" for folder, stem, *_ in names]
    settings = {"version": FORMAT_VERSION, "count": int(count), "seed": int(seed), "size": int(size),
                "views": int(views), "flip": bool(flip),
                "model": None if model is not None else model_identity(model_path)}
    record = output / RECORD_FILE
    reusable = settings["model"] is not None  # a model object may differ from any files: never reused
    recorded, written = _recorded_set(record, mats)
    if reusable and recorded == settings and all(written):
        return mats
    info_file = None
    if model is None:
        from face3d.morphable_model import MorphableModel
        model = MorphableModel(model_path)
        info_file = None if model_path is None else Path(model_path).parent / "BFM_info.mat"
    # before the output is touched: a model without mirror pairs leaves an earlier set as it is
    mirror = _Mirror(model, info_file) if any(flipped for *_, flipped in names) else None
    if before_writing is not None:
        before_writing()
    with exclusive_lock(output / LOCK_FILE):
        recorded, written = _recorded_set(record, mats)  # as another process may have left it while this one waited
        if reusable and recorded == settings and all(written):
            return mats
        # a run with these settings was interrupted: its finished faces stand (a face's samples depend on it alone)
        resuming = reusable and recorded == {**settings, "complete": False}
        wanted = set(mats) | {m.with_suffix(".jpg") for m in mats} if resuming else set()
        for stale in [p for folder in (SYNTH_FOLDER, FLIP_FOLDER) for p in (output / folder).glob(f"{SYNTH_FOLDER}_*")]:
            if stale not in wanted:  # another set's sample (other settings, or an earlier, larger count)
                stale.unlink()
        atomic_write_bytes(record, (json.dumps({**settings, "complete": False}, indent=2) + "\n").encode("utf-8"))
        unfinished = {name[2] for name, done in zip(names, written) if not (resuming and done)}
        todo = [name for name in names if name[2] in unfinished]  # whole faces: a flip needs its view's render
        for folder, stem, image, mat in _render_set(model, mirror, todo, seed, int(size), int(views)):
            mat_path = output / folder / f"{stem}.mat"
            mat_path.parent.mkdir(parents=True, exist_ok=True)
            write_image(mat_path.with_suffix(".jpg"), image)
            with atomic_file(mat_path) as f:
                save_mat(f, mat)
        atomic_write_bytes(record, (json.dumps(settings, indent=2) + "\n").encode("utf-8"))
    return mats


def _recorded_set(record, mats):
    """The settings ``record`` (``synthetic.json``) holds (None when missing or unreadable), and per sample of
    ``mats`` whether its ``.mat`` and ``.jpg`` are both there."""
    try:
        recorded = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = None
    return recorded, [m.is_file() and m.with_suffix(".jpg").is_file() for m in mats]
