"""Face photos + 68 landmarks -> 300W-LP samples (``face3d fit``), the input of ``face3d generate``.

Per image: 68 landmarks (image pixels, y down) from a file (``trainset.landmark_files``) or dlib (``--detect``), the
landmark fit (``fit_landmarks``) and, for a kept fit, ``<stem>.<ext>`` (the image: a hard link, else a copy) and
``<stem>.mat`` in folders mirroring the input's. ``fit_photos`` runs it as ``face3d generate`` runs its samples
(resumable, on a process pool). README: "Your own training set".
"""
import concurrent.futures as cf
import contextlib
import dataclasses
import errno
import functools
import json
import logging
import os
import shutil
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from face3d.mesh.transform import angle2matrix_3ddfa
from face3d.morphable_model.morphable_model import model_identity
from face3d.trainset.dataset import SUMMARY_FILE, config_fingerprint, intact_done
from face3d.trainset.discovery import label_text_problem, walk_stems
from face3d.trainset.landmark_files import IBUG_MIRROR, LANDMARK_SUFFIXES, find_landmark_file, read_landmark_file
from face3d.trainset.outputs import Journal, earlier_files, file_check, is_done, read_journals
from face3d.trainset.sample_io import DEFAULT_MAX_PIXELS
from face3d.trainset.worker_pool import WORKER_DIED, default_worker_count, pool_context, run_journaled_chunks
from face3d.utils.atomic import atomic_file, atomic_write_bytes, output_lock, temp_name
from face3d.utils.errors import InputFileError, os_error_at, refuses_storage
from face3d.utils.image_header import IMAGE_SUFFIXES, is_listed_image, is_unread_image, warn_unread_images
from face3d.utils.matfile import save_mat
from face3d.utils.output_names import refuse_output_in
from face3d.utils.progress import Progress

__all__ = ["FitConfig", "PhotoRef", "discover_photos", "project_landmarks", "fit_landmarks", "fit_photos",
           "DEFAULT_MAX_FIT_ERROR"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_FIT_ERROR = 0.05
# Smallest R[2, 2] of a kept fit (a face turned about 105 degrees from the camera). Measured on 48 rendered views
# of the default model and their _Flip copies: true fits (yaw up to 90 degrees) 0.01 to 0.99; fits of the copies'
# mirrored landmarks -0.99 to -0.22 (-0.99 to -0.91 where their NME is under 5 %).
MIN_FACING = -0.25
# Largest rotation in the image (``_tilt``, degrees) of a face kept from its landmarks in mirrored order. Measured:
# fits of the _Flip copies of 12 rendered views and of 15 landmark sets mirrored in x (those views, AFLW2000-3D and
# 300W-LP fixtures) 0 to 8 degrees; of y-up copies of the faces 172 to 180, of (row, col) copies 83 to 96 (a face at
# r comes out at about 180 - r and -90 - r): halfway, keeping the _Flip files of faces tilted up to 45 degrees.
MAX_MIRRORED_TILT = 45.0
# Images fitted together: one vectorised fit per chunk.
CHUNK_SIZE = 32
# os.link's errors where the file system makes no hard link, a copy then taking its place: the output on another
# file system (EXDEV), links not supported or refused (EPERM: FAT, or Linux's protected_hardlinks for another user's
# photo; ENOTSUP/EOPNOTSUPP: macOS; ENOSYS: FUSE file systems without a link operation; EACCES: some CIFS and
# SELinux set-ups), the photo at its file system's most links (EMLINK)
_NO_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EACCES,
                      errno.EMLINK})


@dataclass(frozen=True)
class FitConfig:
    """Settings of a fitting run (their fingerprint decides which journal records a rerun trusts).

    Attributes:
        max_fit_error: fits with a larger NME (fraction, 0.05 = 5 %) are dropped.
        max_iter: Gauss-Newton steps of ``MorphableModel.fit_batch``.
        landmark_noise: standard deviation of the landmarks' error in pixels (finite, > 0), the fit's
            ``noise_sigma``: how far the fit may leave the landmarks to keep the face likely under the model's prior.
        detect: None for landmark files, else the dlib detector kind ("auto", "cnn", "hog").
        landmarks: folder of the landmark files (absolute), or None for files beside the images.
        max_pixels: largest image (width * height) decoded; a larger one fails, refused from its header. Left out of
            the fingerprint (``dataset.UNFINGERPRINTED_FIELDS``): it decides which photos are refused, never a fit.
    """

    max_fit_error: float = DEFAULT_MAX_FIT_ERROR
    max_iter: int = 4
    landmark_noise: float = 2.0
    detect: str | None = None
    landmarks: str | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self):
        if not self.max_fit_error > 0:
            raise ValueError(f"max_fit_error must be a positive fraction, got {self.max_fit_error}")
        if not (np.isfinite(self.landmark_noise) and self.landmark_noise > 0):
            raise ValueError(f"landmark_noise must be a finite number of pixels > 0, got {self.landmark_noise}")
        if self.detect is not None and self.landmarks is not None:
            raise ValueError("landmarks come from files or from the detector, not both")
        if int(self.max_pixels) < 1:
            raise ValueError(f"max_pixels must be at least 1, got {self.max_pixels}")


@dataclass(frozen=True)
class PhotoRef:
    """One input image: ``rel`` (relative path without extension, posix separators) and its ``image_path``."""

    rel: str
    image_path: str

    @property
    def folder(self):
        """Relative folder of the image ("" at the root), where its outputs go."""
        return self.rel.rsplit("/", 1)[0] if "/" in self.rel else ""


def discover_photos(images_root, exclude=(), unreadable=None):
    """Images (``IMAGE_SUFFIXES``) under ``images_root``, sorted by relative path; hidden folders and
    ``exclude`` are not walked; ``unreadable`` receives the folders that cannot be listed (``walk_stems``). Files of
    image formats not read (``.webp``, ``.tif`` ...) are counted in one warning (``warn_unread_images``).

    Returns:
        (photos [PhotoRef], refused [(PhotoRef, reason)] sorted by path): a photo whose relative path
        ``face3d generate``'s label file cannot hold (``label_text_problem``: whitespace, not UTF-8) is refused, as
        generate would refuse its sample; a second image with the same relative stem (``a.jpg`` and ``a.png``)
        would write the same ``.mat``, so only the first (in ``IMAGE_SUFFIXES`` order) is kept.
    Raises:
        FileNotFoundError: ``images_root`` is not a folder.
    """
    root = Path(images_root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: images folder not found")
    photos, refused, left_out = [], [], []
    # Only hidden folders are skipped: unlike in 300W-LP, a folder named "landmarks" may hold photos here.
    for dirpath, rel, names in walk_stems(root, [root], exclude, skip_dir=lambda name: name.startswith("."),
                                          unreadable=unreadable):
        left_out += [n for n in names if is_unread_image(n)]
        names = sorted(filter(is_listed_image, names), key=lambda n: (IMAGE_SUFFIXES.index(Path(n).suffix.lower()), n))
        if not names:
            continue
        if problem := label_text_problem(rel):
            refused += [(PhotoRef(rel, os.path.join(dirpath, n)), f"the name {problem}; rename it (face3d generate "
                                                                  f"refuses such a sample)") for n in names]
            continue
        photos.append(PhotoRef(rel, os.path.join(dirpath, names[0])))
        reason = f"same stem as {names[0]}, whose fit it would overwrite"
        refused += [(PhotoRef(rel, os.path.join(dirpath, n)), reason) for n in names[1:]]
    warn_unread_images(left_out, root)
    photos.sort(key=lambda p: p.rel)
    refused.sort(key=lambda item: item[0].image_path)
    return photos, refused


# ---------------------------------------------------------------------------------------------------------
# Fitting


def project_landmarks(model, shape_para, exp_para, pose_para, vertex_index, height):
    """Image positions of chosen vertices of N faces placed by 300W-LP parameters.

    ``X_v = shapeMU_v + shapePC_v @ sp + expPC_v @ ep`` for the listed vertices only, then the 300W-LP
    placement ``image = X @ A.T + b`` (``TrainsetGenerator.image_pose``: ``s R``, row ``y = h - 1 - y``).

    Args:
        model: MorphableModel. shape_para (N, n_sp), exp_para (N, n_ep), pose_para (N, 7).
        vertex_index: (N, m) int vertex indices per face. height: (N,) image heights in pixels.
    Returns:
        (N, m, 2) float64 x, y image pixels (y down).
    """
    from face3d.trainset.sample import TrainsetGenerator

    m = model.model
    out = np.empty(np.shape(vertex_index) + (2,))
    for i, index in enumerate(np.asarray(vertex_index, dtype=np.int64)):
        rows = (3 * index[:, None] + np.arange(3)).reshape(-1)
        X = (m["shapeMU"][rows, 0].astype(np.float64) + m["shapePC"][rows] @ np.asarray(shape_para[i], np.float64)
             + m["expPC"][rows] @ np.asarray(exp_para[i], np.float64)).reshape(-1, 3)
        A, b = TrainsetGenerator.image_pose(pose_para[i], int(height[i]))
        out[i] = (X @ A.T + b)[:, :2]
    return out


def _fit_batch(model, landmarks, heights, config, silhouette_jaw):
    """The landmark fit of ``fit_landmarks`` on (N, 68, 2) landmarks (y down), (N,) heights and (N,) bool
    ``silhouette_jaw``: contour-aware (``fit_batch(contour=True)``) for the faces whose jaw landmarks follow the
    silhouette when the model has contour lines, each landmark at its ``kpt_ind`` vertex for the others.

    Returns:
        Pose_Para (N, 7) float32, Shape_Para (N, n_sp) and Exp_Para (N, n_ep) float64, NME (N,) float64.
    """
    from face3d.prnet.evaluation import keypoint_nme

    projected = landmarks.copy()
    projected[..., 1] = heights[:, None] - 1.0 - projected[..., 1]  # flip_y, per image height
    contour = np.asarray(silhouette_jaw, dtype=bool) & (model.contour_lines is not None)
    n = len(landmarks)
    pose, shape_para, exp_para = np.empty((n, 7)), np.empty((n, model.n_shape_para)), np.empty((n, model.n_exp_para))
    vertices = np.empty(landmarks.shape[:2], dtype=np.int64)
    for marching in np.unique(contour):  # one vectorised fit per kind of landmarks
        rows = np.flatnonzero(contour == marching)
        result = model.fit_batch(projected[rows], max_iter=config.max_iter, noise_sigma=config.landmark_noise,
                                 contour=bool(marching))
        pose[rows], vertices[rows] = result.pose_para(), result.landmark_vertices
        shape_para[rows], exp_para[rows] = result.shape_para, result.exp_para
    pose = pose.astype(np.float32)
    fitted = project_landmarks(model, shape_para, exp_para, pose.astype(np.float64), vertices, heights)
    zeros = np.zeros(landmarks.shape[:2] + (1,))
    nme = keypoint_nme(np.concatenate([fitted, zeros], axis=2), np.concatenate([landmarks, zeros], axis=2))
    return pose, shape_para, exp_para, np.asarray(nme, dtype=np.float64)


def _rotations(pose):
    """(N, 3, 3) rotation matrices R of the Pose_Para rows: R's columns are the model's axes in the camera frame
    (x right, y up, z towards the camera)."""
    return np.array([angle2matrix_3ddfa(row[:3]) for row in np.asarray(pose, dtype=np.float64)]).reshape(-1, 3, 3)


def _facing(rotations):
    """(N,) z of the face's forward axis in the camera frame, ``R[2, 2]`` of each rotation (``_rotations``; 1
    frontal, 0 in profile, negative turned away; roll does not change it)."""
    return rotations[:, 2, 2]


def _tilt(rotations):
    """(N,) rotation of each face in the image in degrees, in [-180, 180], from its rotation (``_rotations``): the
    angle of its up axis (the model's y, ``R[:, 1]``) seen in the image from the image's up, ``atan2(R[0, 1],
    R[1, 1])`` (0 upright, 180 upside down; the roll without the Euler angles' ambiguity in profile)."""
    up = rotations[:, :, 1]
    return np.degrees(np.arctan2(up[:, 0], up[:, 1]))


def fit_landmarks(model, landmarks, heights, config=FitConfig(), silhouette_jaw=True):
    """Fit the model to the 68 landmarks of N images at once and return their 300W-LP parameter sets.

    The fit is ``MorphableModel.fit_batch``'s MAP estimate, contour-aware (the jaw landmarks of the far side march
    to the silhouette) when the model has contour lines and the landmarks' jaw follows the silhouette
    (``silhouette_jaw``, ``read_landmark_file``); landmarks that are projected landmark vertices (AFLW2000-3D's
    ``pt3d_68``) are fitted at their vertices.
    Landmarks in mirrored order (a 300W-LP ``_Flip`` file's ``pt2d`` is mirrored in x but not re-ordered, so its
    point 0 lies on the face's left) fit a face turned away from the camera, often with a small error: a fit whose
    forward axis points away (``_facing`` below 0) is made again on the landmarks re-ordered (``IBUG_MIRROR``),
    and the fit facing the camera more is kept, with its landmark order as ``pt2d``. Landmarks in (row, col) order
    or with y pointing up fit, so re-ordered, a face sideways or upside down: a fit kept in mirrored order must be
    upright (``_tilt`` within ``MAX_MIRRORED_TILT``).

    Args:
        model: MorphableModel. landmarks: (N, 68, 2) image pixels (y down). heights: (N,) image heights.
        config: FitConfig (max_iter, landmark_noise). silhouette_jaw: bool, or (N,) bool per image.
    Returns:
        list of N dicts in the 300W-LP layout: ``Pose_Para`` (1, 7) float32, ``Shape_Para`` (n_sp, 1) and
        ``Exp_Para`` (n_ep, 1) float64, ``pt2d`` (2, 68) float64 (the input, in iBUG order), ``roi`` (1, 4) int16
        and ``fit_nme`` (1, 1) float64, the NME of the landmark vertices placed by the parameters as stored,
        ``mean_k |p_k - x_k| / sqrt(w h)`` with (w, h) the size of the input landmarks' box.
    Raises:
        ValueError: a face turned away from the camera (``_facing`` below ``MIN_FACING``) in either landmark order,
            or kept in mirrored order but not upright.
    """
    results = _fit_rows(model, landmarks, heights, config, silhouette_jaw)
    for result in results:
        if isinstance(result, ValueError):
            raise result
    return results


def _fit_rows(model, landmarks, heights, config, silhouette_jaw):
    """``fit_landmarks``, with the ValueError of a face turned away in either landmark order or not upright in
    mirrored order in that face's place of the list instead of raised, so that one such face does not fail the
    others."""
    from face3d.trainset.synthetic import landmark_roi

    landmarks = np.array(landmarks, dtype=np.float64)
    heights = np.asarray(heights, dtype=np.int64).reshape(-1)
    silhouette_jaw = np.broadcast_to(np.asarray(silhouette_jaw, dtype=bool), heights.shape)
    pose, shape_para, exp_para, nme = _fit_batch(model, landmarks, heights, config, silhouette_jaw)
    facing = _facing(_rotations(pose))
    away = np.nonzero(facing < 0)[0]
    mirrored = np.zeros(len(landmarks), dtype=bool)
    if away.size:
        reordered = landmarks[away][:, IBUG_MIRROR]
        refit = _fit_batch(model, reordered, heights[away], config, silhouette_jaw[away])
        better = _facing(_rotations(refit[0])) > facing[away]
        landmarks[away[better]] = reordered[better]
        for fitted, again in zip((pose, shape_para, exp_para, nme), refit):
            fitted[away[better]] = again[better]
        mirrored[away[better]] = True
    rotations = _rotations(pose)
    turned_away, tilt = _facing(rotations) < MIN_FACING, _tilt(rotations)

    def result(i):
        if turned_away[i]:
            return ValueError("the fitted face is turned away from the camera with the landmarks in either order "
                              "(not the 68 iBUG landmarks of one face?)")
        if mirrored[i] and not abs(tilt[i]) <= MAX_MIRRORED_TILT:
            return ValueError(f"the landmarks look transposed (row, col) or y-up: in iBUG order they fit a face "
                              f"turned away from the camera, in mirrored order (a 300W-LP _Flip file's) a face "
                              f"rotated by {tilt[i]:.0f} degrees in the image")
        return {"Pose_Para": pose[i:i + 1], "Shape_Para": shape_para[i][:, None], "Exp_Para": exp_para[i][:, None],
                "pt2d": landmarks[i].T.copy(), "roi": landmark_roi(landmarks[i].T), "fit_nme": np.array([[nme[i]]])}

    return [result(i) for i in range(len(landmarks))]


# ---------------------------------------------------------------------------------------------------------
# Files


def _output_paths(output, ref):
    """(image copy, .mat) output paths of a photo."""
    base = Path(output) / ref.rel
    return base.with_name(base.name + Path(ref.image_path).suffix.lower()), base.with_name(base.name + ".mat")


def _link_or_copy(source, target):
    """``target`` becomes a hard link to ``source`` (a copy where the file system makes no link: ``_NO_LINK``),
    through its temporary twin, which a failure removes; an OSError of the write names ``target``."""
    tmp = temp_name(target)
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError as error:
        # any other error is no reason for a copy: EEXIST says another process made the twin since, maybe a link to
        # the photo itself, which a copy written through that name would overwrite
        if error.errno not in _NO_LINK:
            raise os_error_at(error, target) from error
        with open(source, "rb") as original, atomic_file(target) as copy:  # written as every output is
            shutil.copyfileobj(original, copy)
        return
    except BaseException:  # Ctrl-C or SIGTERM (face3d.cli) handled as the link was made
        with contextlib.suppress(OSError):  # the signal, not a refused removal, is what the caller hears of
            tmp.unlink(missing_ok=True)
        raise
    try:
        os.replace(tmp, target)
        # a rename onto a link to the same file does nothing (POSIX): target was linked to source already
        tmp.unlink(missing_ok=True)
    except BaseException as error:
        with contextlib.suppress(OSError):  # a read-only file system refuses even this: the first error is the one
            tmp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise os_error_at(error, target) from error
        raise


def _landmark_identity(path, root):
    """What the journal records of a landmark file: ``{"file": its path relative to root (posix), "size": bytes,
    "crc32": of all its bytes}`` (landmark files are small), so that a rerun refits a photo whose file changed."""
    data = Path(path).read_bytes()
    return {"file": Path(path).relative_to(root).as_posix(), "size": len(data), "crc32": zlib.crc32(data)}


def _image_identity(ref, root):
    """What the journal records of a photo's image: ``{"file": its path relative to root (posix), "check": [size,
    crc]}`` (``file_check``), so that a rerun refits a photo replaced by another picture or another file."""
    return {"file": Path(ref.image_path).relative_to(root).as_posix(), "check": file_check(ref.image_path)}


def _refit_reason(images_root, config, ref, record):
    """Why photo ``ref``, finished as its journal ``record`` says, must be fitted again because of its image or its
    landmark file (a short phrase), or None: either is no longer the file the record names with the same bytes.
    Detected landmarks come from the image and never count. A record of an earlier release names neither file: it
    stands, except for AFLW2000-3D's ``pt3d_68``, which that release fitted with jaw marching."""
    if "image" in record:
        try:
            image = _image_identity(ref, images_root)
        except OSError:  # unreadable now: the refit reports it
            return "its image cannot be read"
        if image["file"] != record["image"]["file"]:
            return f"its image is now {image['file']}, not {record['image']['file']}"
        if image["check"] != record["image"]["check"]:
            return "its image changed"
    if config.detect is not None:
        return None
    source = find_landmark_file(ref.image_path, images_root, config.landmarks)
    if source is None:
        return "its landmark file is gone"
    try:
        if "landmarks" not in record:
            silhouette_jaw = read_landmark_file(source)[1]
            return None if silhouette_jaw else "its pt3d_68 landmarks are now fitted without jaw marching"
        if record["landmarks"] != _landmark_identity(source, config.landmarks or images_root):
            return "its landmark file changed"
    except (OSError, ValueError):  # unreadable or malformed now: the refit reports it
        return "its landmark file cannot be read"
    return None


def _record(photo, fingerprint, status, fit_nme, files):
    """The journal record of a finished image (``_PhotoInput``): ``status`` "written" or "dropped", ``files``
    {name: [size, crc]}, ``image`` its ``_image_identity``, ``landmarks`` its landmark file's
    ``_landmark_identity`` (None when detected)."""
    return {"sample": photo.ref.rel, "fingerprint": fingerprint, "status": status, "fit_nme": fit_nme,
            "outputs": sorted(files), "files": files, "image": photo.image_file, "landmarks": photo.landmark_file}


def _write_sample(output, ref, mat):
    """Write the image and the ``.mat`` of a kept fit. Returns their ``{file name: [size, crc]}``."""
    image_out, mat_out = _output_paths(output, ref)
    image_out.parent.mkdir(parents=True, exist_ok=True)
    _link_or_copy(ref.image_path, image_out)
    with atomic_file(mat_out) as f:
        save_mat(f, mat)
    return {path.name: file_check(path) for path in (image_out, mat_out)}


def _remove_outputs(output, ref, earlier=(), own=True):
    """Remove the outputs of an image before it is redone or refused (a dropped fit must leave no sample): those of
    its path (``_output_paths``; not with ``own`` False) and ``earlier``, names in its output folder from its
    journal record (``earlier_files``: the copy of a replaced image of another suffix). Returns the names of the
    files removed."""
    removed = []
    paths = {Path(output, ref.folder, name) for name in earlier} | (set(_output_paths(output, ref)) if own else set())
    for path in sorted(paths):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path.name)
    return removed


# ---------------------------------------------------------------------------------------------------------
# Workers


@dataclass
class _RunState:
    model: object
    landmarker: object
    config: FitConfig
    images_root: str
    output: str
    fingerprint: str
    journal: Journal


def _landmarker(config):
    """The ``DlibLandmarker`` of ``config.detect``, None when the landmarks come from files; DetectorUnavailable
    when dlib or its model files are missing."""
    if config.detect is None:
        return None
    from face3d.prnet.detect import DlibLandmarker

    return DlibLandmarker(config.detect)


def _build_state(model_path, config, images_root, output, fingerprint, landmarker=None):
    """The ``_RunState`` of a process; ``landmarker``: one built already (``_landmarker``), else built here."""
    from face3d.morphable_model import MorphableModel

    landmarker = landmarker if landmarker is not None else _landmarker(config)
    return _RunState(MorphableModel(model_path), landmarker, config, images_root, output, fingerprint,
                     Journal(output))


@dataclass
class _PhotoInput:
    """What a photo's fit needs: ``points`` (68, 2) landmarks (image pixels), the image ``height``, the
    ``_image_identity`` of the image, the ``_landmark_identity`` of the landmark file (None for detected landmarks)
    and whether the landmarks' jaw follows the silhouette (``silhouette_jaw``: detected ones do,
    ``read_landmark_file`` tells for a file)."""

    ref: PhotoRef
    points: np.ndarray
    height: int
    image_file: dict
    landmark_file: dict | None
    silhouette_jaw: bool


def _read_input(state, ref):
    """The ``_PhotoInput`` of a photo; InputFileError / OSError naming the file when unusable: among others,
    fewer of its landmarks inside the image than ``face3d generate`` asks of a sample's keypoints
    (``GenerationConfig.min_visible_keypoints``)."""
    from face3d.trainset.sample import GenerationConfig, check_face_inside
    from face3d.trainset.sample_io import read_image

    image_file = _image_identity(ref, state.images_root)  # before the image is read, as generate's input_checks
    image = read_image(ref.image_path, state.config.max_pixels, limit_flag="--max-pixels")
    landmark_file, silhouette_jaw = None, True
    if state.landmarker is not None:
        points, source = state.landmarker.landmarks(image), ref.image_path
        if points is None:
            raise InputFileError(ref.image_path, "the detector found no face")
    else:
        source = find_landmark_file(ref.image_path, state.images_root, state.config.landmarks)
        if source is None:
            where = "beside it" if state.config.landmarks is None else f"under {state.config.landmarks}"
            raise InputFileError(ref.image_path, f"no landmark file {Path(ref.image_path).stem}"
                                                 f"{{{','.join(LANDMARK_SUFFIXES)}}} {where}")
        points, silhouette_jaw = read_landmark_file(source)
        landmark_file = _landmark_identity(source, state.config.landmarks or state.images_root)
    if not np.all(np.ptp(points, axis=0) > 0):
        raise InputFileError(source, "the 68 landmarks are degenerate (their box has no width or no height)")
    # landmarks of another size of the photo (annotated on the full-size one beside a thumbnail): face3d generate
    # would refuse the sample
    check_face_inside(points, image.shape, GenerationConfig.min_visible_keypoints, source, "landmarks")
    return _PhotoInput(ref, points, image.shape[0], image_file, landmark_file, silhouette_jaw)


def _fit_all(state, ready):
    """The fits of the ready photos [_PhotoInput] in one call (``_fit_rows``: a face turned away fails alone);
    should the call fail (a singular system), each photo alone, so that one bad landmark set cannot fail its
    neighbours. Returns per photo its 300W-LP dict or the exception."""
    points, heights = np.stack([photo.points for photo in ready]), [photo.height for photo in ready]
    silhouette_jaw = [photo.silhouette_jaw for photo in ready]
    try:
        return _fit_rows(state.model, points, heights, state.config, silhouette_jaw)
    except (np.linalg.LinAlgError, ValueError):
        results = []
        for i in range(len(ready)):
            try:
                results.append(fit_landmarks(state.model, points[i:i + 1], heights[i:i + 1], state.config,
                                             silhouette_jaw[i:i + 1])[0])
            except (np.linalg.LinAlgError, ValueError) as exc:
                results.append(exc)
        return results


def _fit_chunk(state, refs):
    """Fit a chunk of photos (all in one call), then write and journal them one by one. Returns one record per
    photo: (rel, status, fit_nme or reason), status "written", "dropped" or "failed"."""
    records, ready = {}, []
    for ref in refs:
        _remove_outputs(state.output, ref)
        try:
            ready.append(_read_input(state, ref))
        except (OSError, ValueError) as exc:
            records[ref.rel] = (ref.rel, "failed", str(exc))
    if ready:
        for photo, mat in zip(ready, _fit_all(state, ready)):
            ref = photo.ref
            if isinstance(mat, Exception):
                records[ref.rel] = (ref.rel, "failed", f"{ref.image_path}: the fit failed ({mat})")
                continue
            nme = float(mat["fit_nme"][0, 0])
            if not np.array_equal(mat["pt2d"], photo.points.T):
                logger.warning("%s: its landmarks are in mirrored order (as in a 300W-LP _Flip file's pt2d); fitted "
                               "and written in iBUG order", ref.image_path)
            status = "dropped" if nme > state.config.max_fit_error else "written"
            try:
                files = _write_sample(state.output, ref, mat) if status == "written" else {}
            except (OSError, ValueError) as exc:
                _remove_outputs(state.output, ref)
                if refuses_storage(exc):
                    raise  # every later photo would fail alike: the run stops, to be resumed once there is room
                records[ref.rel] = (ref.rel, "failed", f"cannot write the outputs: {type(exc).__name__}: {exc}")
                continue
            state.journal.append([_record(photo, state.fingerprint, status, nme, files)])
            records[ref.rel] = (ref.rel, status, nme)
    return [records[ref.rel] for ref in refs]


_WORKER_STATE = None


def _init_worker(state, state_args):
    global _WORKER_STATE
    _WORKER_STATE = state if state is not None else _build_state(*state_args)


def _worker_chunk(refs):
    return _fit_chunk(_WORKER_STATE, refs)


def _journaled_photo(fingerprint, latest, ref):
    """The record (rel, status, fit_nme) of a photo that the journals' ``latest`` records (``read_journals``) hold
    as fitted under ``fingerprint`` (redone photos carry a redo line), else None."""
    record = latest.get(ref.rel)  # decoded once (JournalRecords decodes at each look-up)
    return (ref.rel, record["status"], record["fit_nme"]) if is_done(record, fingerprint) else None


def _worker_died(output, ref):
    """The failure record of a photo whose worker process died on it, alone in its process; any output it left
    unjournaled is removed."""
    _remove_outputs(output, ref)
    return ref.rel, "failed", f"{ref.image_path}: {WORKER_DIED}"


# ---------------------------------------------------------------------------------------------------------
# The run


def _done_photos(output, photos, latest, fingerprint, images_root, config):
    """``{rel: journal record}`` of the ``photos`` that an earlier run finished under ``fingerprint`` with their
    outputs still as written (``intact_done``) and no reason to refit in their image or landmark file
    (``_refit_reason``), both checked on 4 threads: reading the files is what a resume waits for."""
    by_rel = {ref.rel: ref for ref in photos}
    done = sorted(intact_done(output, photos, latest, fingerprint, threads=4))
    records = {rel: latest[rel] for rel in done}  # decoded here once (JournalRecords decodes at each look-up)
    with cf.ThreadPoolExecutor(4) as pool:
        reasons = list(pool.map(lambda rel: _refit_reason(images_root, config, by_rel[rel], records[rel]), done))
    for rel, reason in zip(done, reasons):
        if reason is not None:
            logger.info("refitting %s: %s", by_rel[rel].image_path, reason)
    return {rel: records[rel] for rel, reason in zip(done, reasons) if reason is None}


def _clear_earlier(output, pending, refused, by_rel, latest):
    """Journal a redo line for each photo of ``pending`` with a record in ``latest`` (``read_journals``), so that it
    does not pass for finished by that record should a worker process die, and remove the outputs its record
    lists (``earlier_files``: a replaced image's copy may have another suffix). A photo of ``refused`` (with its
    reason) keeps no output either, as a refit that fails keeps none: those its record lists, written by a run that
    fitted it (its name was not refused then), are removed and logged, and the record gets a redo line, so that a
    rerun counts none of them; without a record, files of its names are not fit's and stay. A refused photo
    sharing the stem of one kept (``by_rel``) owns no output."""
    stale = [ref for ref in pending if ref.rel in latest]
    for ref in stale:
        _remove_outputs(output, ref, earlier_files(latest[ref.rel]))
    for ref in {ref.rel: ref for ref, _ in refused}.values():  # x y.jpg and x y.png: one photo's outputs
        if ref.rel in by_rel:
            continue
        record = latest.get(ref.rel)
        if record is None:  # no run of fit wrote outputs for it: files of its names there are someone else's
            continue
        removed = _remove_outputs(output, ref, earlier_files(record), own=False)
        if removed:
            logger.warning("%s: removed its outputs of an earlier run (%s): its name is refused", ref.image_path,
                           ", ".join(removed))
        if removed or not record.get("redo"):
            stale.append(ref)
    with contextlib.closing(Journal(str(output))) as marks:
        marks.mark_redo([ref.rel for ref in stale])


def fit_photos(images, output, model_path=None, config=FitConfig(), workers=None, progress=True):
    """Fit every image under ``images`` and write the 300W-LP samples into ``output``; resumable.

    The run follows ``face3d generate`` (``trainset.dataset``): sorted discovery, a process pool (a worker process
    that dies fails the photo it was on), atomic writes, the journal of finished images (``trainset.outputs.Journal``:
    a rerun resumes), bad inputs logged and skipped, a write the file system refuses for good (full, read-only)
    stopping the run, a progress bar, ``summary.json``.

    Args:
        images: folder of photos (nested folders allowed). output: output folder (created; not ``images``).
        model_path: ``BFM.mat`` or None for the embedded default model. config: FitConfig.
        workers: processes (default ``default_worker_count()``); 1 runs here. progress: progress bar on stderr.
    Returns:
        the summary dict, also written to ``output/summary.json``: counts that add up to ``photos``, each photo
        counted once (``written`` by this run, ``skipped``: written by an earlier run, ``dropped``: a fit of this
        run or an earlier one above ``max_fit_error``, one per ``dropped_images`` entry, ``failed``), ``samples``
        (written + skipped), ``fit_nme`` ({image: NME} of every fit, dropped ones included), ``dropped_images``,
        ``failures`` (with reasons; a photo whose worker process died on it, killed or out of memory:
        ``worker_pool.WORKER_DIED``) and ``unreadable_folders`` (folders that could not be listed, whose photos are
        missing).
    Raises:
        InputFileError: no image under ``images``. FileNotFoundError: no ``images`` or ``config.landmarks`` folder,
            or no file at ``model_path``. ValueError: ``workers`` below 1; as InputFileError, ``output`` that is
            ``images`` (``refuse_output_in``).
        DetectorUnavailable: ``config.detect`` without dlib or its model files (``face3d.prnet.detect``).
        Nothing is created under ``output`` in these cases. OSError naming the file: a write the file system refuses
        for good (``STORAGE_REFUSED``: full, over quota, read-only) stops the run at once, leaving that photo no
        output and no ``summary.json``; a rerun once there is room resumes. BlockingIOError naming ``output``: another
        run writes it (``utils.atomic.output_lock``, whose hidden ``.fit.lock`` stays in ``output``).
    """
    started = time.monotonic()
    images, output = Path(images), Path(output)
    refuse_output_in(output, images, "the images folder", "its photos' copies would be taken for photos",
                     inside=False)  # a folder inside it is left out of the listing
    workers = default_worker_count() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if config.landmarks is not None and not Path(config.landmarks).is_dir():
        raise FileNotFoundError(f"{config.landmarks}: landmarks folder not found")
    unreadable = []
    photos, refused = discover_photos(images, exclude=[output], unreadable=unreadable)
    if not photos and not refused and not unreadable:
        raise InputFileError(images, f"no {'/'.join(IMAGE_SUFFIXES)} images in this folder or below")
    model_id = "default" if model_path is None else os.path.abspath(model_path)
    fingerprint = config_fingerprint(config, model_identity(model_path), 0)
    landmarker = _landmarker(config)  # a detector that cannot be built stops the run before anything is written
    with output_lock(output, "face3d fit"):
        fit_nme, statuses, failures = {}, {}, []
        latest = read_journals(output)
        intact = _done_photos(output, photos, latest, fingerprint, images, config)
        pending = [ref for ref in photos if ref.rel not in intact]
        for rel, record in intact.items():
            statuses[rel], fit_nme[rel] = record["status"], record["fit_nme"]
        # Each photo is counted once: an earlier run's dropped fit counts as dropped, not as skipped.
        earlier = list(statuses.values())
        skipped = earlier.count("written")
        counts = {"written": 0, "dropped": earlier.count("dropped"), "failed": 0}
        by_rel = {ref.rel: ref for ref in photos}
        for ref, reason in refused:
            logger.warning("skipping %s: %s", ref.image_path, reason)
            failures.append({"image": ref.image_path, "reason": reason})
        bar = Progress(len(photos), desc="fit", enabled=progress, initial=len(intact))

        def on_records(records):
            for rel, status, detail in records:
                counts[status] += 1
                statuses[rel] = status
                if status == "failed":
                    logger.warning("skipping %s: %s", by_rel[rel].image_path, detail)
                    failures.append({"image": by_rel[rel].image_path, "reason": detail})
                else:
                    fit_nme[rel] = detail
            notes = [f"{skipped} skipped"] * bool(skipped) + [f"{counts['dropped']} dropped"] * bool(counts["dropped"])
            bar.update(len(records), postfix=", ".join(notes + [f"{counts['failed']} failed"] * bool(counts["failed"])))

        state_args = (model_path, config, str(images), str(output), fingerprint)
        chunks = [pending[i:i + CHUNK_SIZE] for i in range(0, len(pending), CHUNK_SIZE)]
        run_workers = min(workers, max(len(chunks), 1))
        _clear_earlier(output, pending, refused, by_rel, latest)
        try:
            if run_workers == 1 and chunks:
                state = _build_state(*state_args, landmarker)
                try:
                    for chunk in chunks:
                        on_records(_fit_chunk(state, chunk))
                finally:
                    state.journal.close()
            elif chunks:
                context = pool_context()
                fork = context.get_start_method() == "fork"
                initargs = (_build_state(*state_args, landmarker), None) if fork else (None, state_args)
                run_journaled_chunks(_worker_chunk, chunks, run_workers, on_records, _init_worker, initargs, context,
                                     str(output), functools.partial(_journaled_photo, fingerprint),
                                     functools.partial(_worker_died, str(output)), requeue_singly=True)
        finally:
            bar.close()

        dropped = sorted(rel for rel, status in statuses.items() if status == "dropped")
        values = [fit_nme[rel] for rel in sorted(fit_nme)]
        summary = {
            "images": os.path.abspath(images), "output": os.path.abspath(output), "model": model_id,
            "config": dataclasses.asdict(config), "fingerprint": fingerprint, "workers": run_workers,
            "photos": len(photos) + len(refused), "written": counts["written"], "skipped": skipped,
            "dropped": counts["dropped"], "failed": counts["failed"] + len(refused), "unreadable_folders": unreadable,
            "samples": sum(status == "written" for status in statuses.values()),
            "fit_nme_mean": float(np.mean(values)) if values else None,
            "fit_nme_max": float(np.max(values)) if values else None,
            "elapsed_s": round(time.monotonic() - started, 3),
            "dropped_images": [{"image": by_rel[rel].image_path, "fit_nme": fit_nme[rel]} for rel in dropped],
            "failures": sorted(failures, key=lambda f: f["image"]),
            "fit_nme": {rel: fit_nme[rel] for rel in sorted(fit_nme)},
        }
        atomic_write_bytes(output / SUMMARY_FILE, (json.dumps(summary, indent=2) + "\n").encode("utf-8"))
        return summary
