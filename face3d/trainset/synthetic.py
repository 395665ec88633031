"""Render a small sample set in the 300W-LP format from a morphable model (the project's embedded default data).

Each sample is a ``size x size`` (450 by default, as 300W-LP) ``.jpg`` and a ``.mat`` with the keys the
300W-LP readers use: ``Pose_Para`` (1,7) = pitch, yaw, roll (radians, 3DDFA convention), tx, ty, tz, scale;
``Shape_Para`` (n_shape,1), ``Exp_Para`` (n_exp,1), ``Tex_Para`` (n_tex,1) in basis units (vertices =
shapeMU + shapePC @ Shape_Para + expPC @ Exp_Para, no EV scaling, as 300W-LP stores them); ``pt2d`` (2,68) the
projected 68 keypoints in image pixels (x, y down); ``roi`` (1,4) int16 [x0, y0, x1, y1] around them;
``Color_Para`` (1,7) neutral (gains 1, offsets 0, contrast 1) and ``Illum_Para`` (1,10) = ambient rgb,
directional rgb, light elevation and azimuth (radians), specular 0, shininess 20, the lighting actually used.

Placement follows 300W-LP: ``projected = s * vertices @ R.T + t3d`` with ``R = angle2matrix_3ddfa(pitch, yaw,
roll)`` and image row ``y = size - 1 - projected_y``. As in 300W-LP, the jaw keypoints of the side turned away
from the camera (|yaw| > 10 degrees) are moved to the silhouette: for each of them, the outermost vertex of its
``contour_lines`` candidates (BFM_info's ``parallel``) when the model has them.

Sample i is drawn from ``numpy.random.default_rng([seed, i])`` alone, so the set is deterministic and its first
k samples do not depend on ``count``. Yaw is spread over [-90, 90] degrees by a golden-ratio sequence so that even
a few samples include large yaw; pitch and roll are uniform in +-20 degrees. The tree is ``<output>/SYNTH/
SYNTH_<iiii>_0.{jpg,mat}``; ``<output>/synthetic.json`` records the settings and is written last, so a complete
set with the same settings is reused instead of re-rendered.
"""
import json
import os
from pathlib import Path

import cv2
import numpy as np
import scipy.io

from face3d.mesh import light as mesh_light
from face3d.mesh import render as mesh_render
from face3d.mesh.transform import angle2matrix_3ddfa, similarity_transform
from face3d.utils.atomic import atomic_file, atomic_write_bytes

__all__ = ["synthesize_dataset", "synthesize_sample", "random_background", "SYNTH_FOLDER", "RECORD_FILE"]

SYNTH_FOLDER = "SYNTH"
RECORD_FILE = "synthetic.json"
FORMAT_VERSION = 1
_GOLDEN = 0.6180339887498949
_JPEG_QUALITY = 95


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


def _far_side_contour(model, vertices, kpt_ind, R, yaw):
    """Keypoint vertex indices with the turned-away jaw side moved to the silhouette (see module doc)."""
    lines = getattr(model, "contour_lines", None) or []
    kpt = np.array(kpt_ind, dtype=np.int64)
    if len(lines) != 17 or abs(np.rad2deg(yaw)) <= 10.0:
        return kpt
    camera = vertices @ R.T  # x right, z towards the viewer
    left, right = list(range(0, 8)), list(range(9, 17))
    far = left if camera[kpt[left], 2].mean() < camera[kpt[right], 2].mean() else right
    for j in far:
        candidates = np.asarray(lines[j], dtype=np.int64)
        if candidates.size:
            x = camera[candidates, 0]
            kpt[j] = candidates[np.argmin(x) if j < 8 else np.argmax(x)]
    return kpt


def _shade(model, vertices, colors, R, rng):
    """Lambertian shading in camera space: ambient + one directional light (face3d.mesh.light normals).

    Returns:
        (colors (n,3) float32 in [0, 1], Illum_Para (10,) float64).
    """
    normals = mesh_light.vertex_normals(vertices, model.full_triangles)
    if normals[:, 2].sum() < 0:  # the triangle winding decides the sign; a frontal face must face +z
        normals = -normals
    normals = normals @ R.T
    ambient = rng.uniform(0.35, 0.6) * rng.uniform(0.9, 1.1, 3)
    directional = rng.uniform(0.35, 0.75) * rng.uniform(0.9, 1.1, 3)
    elevation, azimuth = rng.uniform(-0.6, 0.8), rng.uniform(-1.2, 1.2)
    direction = np.array([np.cos(elevation) * np.sin(azimuth), np.sin(elevation),
                          np.cos(elevation) * np.cos(azimuth)])
    lambert = np.clip(normals @ direction, 0.0, None)[:, None]
    shaded = colors / 255.0 * (ambient[None, :] + directional[None, :] * lambert)
    illum = np.concatenate([ambient, directional, [elevation, azimuth, 0.0, 20.0]])
    return np.clip(shaded, 0.0, 1.0).astype(np.float32), illum


def synthesize_sample(model, rng, size=450, yaw_fraction=None):
    """Render one 300W-LP-format sample.

    Args:
        model: MorphableModel.
        rng: ``numpy.random.Generator`` (all randomness of the sample).
        size: image side in pixels.
        yaw_fraction: position of the yaw in [-90, 90] degrees as a fraction in [0, 1] (jittered by +-3
            degrees); None draws it uniformly.
    Returns:
        (image (size, size, 3) uint8 RGB, mat dict with the keys listed in the module docstring).
    """
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
    R = angle2matrix_3ddfa([pitch, yaw, roll])
    kpt_ind = np.asarray(model.kpt_ind, dtype=np.int64)
    width = np.ptp(vertices[:, 0])
    scale = rng.uniform(0.33, 0.5) * size / width  # face (mask) width 33-50% of the image
    placed = similarity_transform(vertices, scale, R, np.zeros(3))
    box_centre = 0.5 * (placed[kpt_ind, :2].min(axis=0) + placed[kpt_ind, :2].max(axis=0))
    target = (size - 1) / 2.0 + rng.uniform(-0.06, 0.06, 2) * size  # in projected coordinates (y up)
    # Stored as float32 (as 300W-LP does); everything below uses the stored values, so the labels are exact.
    pose = np.array([pitch, yaw, roll, target[0] - box_centre[0], target[1] - box_centre[1], 0.0, scale],
                    dtype=np.float32).astype(np.float64)
    R = angle2matrix_3ddfa(pose[:3])
    projected = similarity_transform(vertices, pose[6], R, pose[3:6])

    shaded, illum = _shade(model, vertices, colors, R, rng)
    image_vertices = projected.copy()
    image_vertices[:, 1] = size - 1 - image_vertices[:, 1]
    background = random_background(rng, size)
    rendered = mesh_render.render_colors(image_vertices.astype(np.float32), model.full_triangles, shaded,
                                         size, size, c=3, BG=background)
    rendered = rendered + rng.normal(0.0, 1.5 / 255.0, rendered.shape)  # sensor grain
    image = np.clip(np.round(rendered * 255.0), 0, 255).astype(np.uint8)

    kpt = _far_side_contour(model, vertices, kpt_ind, R, pose[1])
    pt2d = image_vertices[kpt, :2].T.astype(np.float64)
    lo, hi = pt2d.min(axis=1), pt2d.max(axis=1)
    pad = 0.25 * (hi - lo)
    roi = np.round(np.concatenate([lo - pad, hi + pad])).astype(np.int16).reshape(1, 4)
    mat = {
        "pt2d": pt2d,
        "roi": roi,
        "Pose_Para": pose.astype(np.float32).reshape(1, 7),
        "Shape_Para": shape_para,
        "Exp_Para": exp_para,
        "Tex_Para": tex_para,
        "Color_Para": np.array([[1, 1, 1, 0, 0, 0, 1]], dtype=np.float32),
        "Illum_Para": illum.reshape(1, 10),
    }
    return image, mat


def _jpg_bytes(image):
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
    if not ok:
        raise ValueError("OpenCV could not encode a rendered sample as JPEG")
    return buf.tobytes()


def synthesize_dataset(output, count=24, seed=0, model_path=None, size=450, model=None):
    """Render ``count`` samples into ``output/SYNTH`` (reusing a complete set rendered with the same settings);
    rendering with other settings also removes the samples of an earlier, larger count, so the folder holds
    exactly this set.

    Args:
        output: folder of the set (created).
        count: number of samples (>= 1).
        seed: base seed; sample i uses ``default_rng([seed, i])`` (seed >= 0).
        model_path: ``BFM.mat`` or None for the embedded default model.
        size: image side in pixels (300W-LP: 450).
        model: an already loaded MorphableModel (overrides ``model_path``).
    Returns:
        list of the ``.mat`` paths, in sample order.
    """
    if int(count) < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0 for the synthetic set, got {seed}")
    if int(size) < 64:
        raise ValueError(f"size must be >= 64 pixels, got {size}")
    output = Path(output)
    folder = output / SYNTH_FOLDER
    mats = [folder / f"{SYNTH_FOLDER}_{i:04d}_0.mat" for i in range(int(count))]
    settings = {"version": FORMAT_VERSION, "count": int(count), "seed": int(seed), "size": int(size),
                "model": "default" if model_path is None else os.path.abspath(model_path)}
    record = output / RECORD_FILE
    try:
        done = json.loads(record.read_text(encoding="utf-8")) == settings
    except (OSError, ValueError):
        done = False
    if done and all(m.is_file() and m.with_suffix(".jpg").is_file() for m in mats):
        return mats
    if model is None:
        from face3d.morphable_model import MorphableModel
        model = MorphableModel(model_path)
    folder.mkdir(parents=True, exist_ok=True)
    record.unlink(missing_ok=True)
    wanted = {m.name for m in mats} | {m.with_suffix(".jpg").name for m in mats}
    for stale in folder.glob(f"{SYNTH_FOLDER}_*"):  # samples of an earlier, larger count are not in this set
        if stale.name not in wanted:
            stale.unlink()
    for i, mat_path in enumerate(mats):
        image, mat = synthesize_sample(model, np.random.default_rng([int(seed), i]), int(size),
                                       yaw_fraction=((i + 0.5) * _GOLDEN) % 1.0)
        atomic_write_bytes(mat_path.with_suffix(".jpg"), _jpg_bytes(image))
        with atomic_file(mat_path) as f:  # a file object: savemat would append ".mat" to the temporary name
            scipy.io.savemat(f, mat, do_compression=False)
    atomic_write_bytes(record, (json.dumps(settings, indent=2) + "\n").encode("utf-8"))
    return mats
