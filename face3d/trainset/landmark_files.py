"""68-landmark files: iBUG ``.pts``, ``.txt``, ``.npy`` and ``.mat``, read to (68, 2) image pixels.

One reader for ``face3d fit`` (``face3d.fitting``) and ``face3d demo`` (``face3d.prnet.demo``). Coordinates are
0-based image pixels, x right, y down (the project's convention); ``read_landmark_file`` says how each format is
read and whether its jaw points follow the visible outline.
"""
import itertools
import os
from pathlib import Path

import numpy as np

from face3d.utils.errors import InputFileError
from face3d.utils.npyfile import load_npy

__all__ = ["LANDMARK_SUFFIXES", "N_LANDMARKS", "IBUG_MIRROR", "read_landmarks", "read_landmark_file", "read_pts",
           "landmarks_from_array", "find_landmark_file"]

N_LANDMARKS = 68
# The iBUG 68-point order of a mirrored face: landmark k of the mirror image is landmark IBUG_MIRROR[k] of the face
# (jaw 0-16 reversed; brows 17-21 <-> 26-22; nose 31-35 reversed; eyes 36-41 <-> 45-42, 47, 46; mouth 48-54
# reversed, 55-59 reversed, 60-64 reversed, 65-67 reversed; the midline points stay).
IBUG_MIRROR = np.array([*range(16, -1, -1), *range(26, 16, -1), 27, 28, 29, 30, *range(35, 30, -1),
                        45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40, *range(54, 47, -1), *range(59, 54, -1),
                        *range(64, 59, -1), *range(67, 64, -1)])
# Looked up in this order next to an image (or under the landmarks folder).
LANDMARK_SUFFIXES = (".pts", ".txt", ".npy", ".mat")
# Each suffix's spellings in upper- and lower-case letters, the one that sorts last first, without the all-upper one:
# it sorts first of all, so it would be reached only where no other spelling exists, and find_landmark_file has
# looked it up already.
_CASE_SPELLINGS = {suffix: sorted(map("".join, itertools.product(*({c.lower(), c.upper()} for c in suffix))),
                                  reverse=True)[:-1] for suffix in LANDMARK_SUFFIXES}


def read_pts(path):
    """Points of an iBUG ``.pts`` file (``version: 1``, ``n_points: N``, ``{``, N lines ``x y``, ``}``).

    Returns:
        (N, 2) float64, 0-based (the file's 1-based values minus 1).
    Raises:
        InputFileError: the header, the braces or the point count are wrong.
    """
    lines = [line.strip() for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines()]
    lines = [line for line in lines if line]
    try:
        count = int(next(line for line in lines if line.startswith("n_points")).split(":")[1])
        body = lines[lines.index("{") + 1:lines.index("}")]
        points = np.array([[float(v) for v in line.split()[:2]] for line in body], dtype=np.float64)
    except (StopIteration, ValueError, IndexError) as exc:
        raise InputFileError(path, "not an iBUG .pts file (version, n_points, then points between braces)") from exc
    if points.shape != (count, 2):
        raise InputFileError(path, f"n_points says {count} but {len(body)} point lines follow")
    return points - 1.0


def _from_mat(path):
    """(landmark array, its key "pt3d_68" or "pt2d") of a ``.mat``."""
    from face3d.utils.matfile import matlab_kind, read_mat

    mat = read_mat(path, variable_names=("pt3d_68", "pt2d"))
    found = {k: v for k, v in mat.items() if not k.startswith("__")}
    for key in ("pt3d_68", "pt2d"):  # AFLW2000-3D's pt2d holds AFLW's own 21 points: prefer pt3d_68
        value = found.get(key)
        if value is not None and matlab_kind(value) == "numeric array" and np.shape(value)[-1] == N_LANDMARKS:
            return np.asarray(value, dtype=np.float64), key
    described = ", ".join(f"{k}: a {matlab_kind(v)} of shape {np.shape(v)}" for k, v in found.items())
    raise InputFileError(path, f"no pt3d_68 (3, 68) or pt2d (2, 68) numeric array in the .mat "
                               f"(found {described or 'neither'})")


def read_landmarks(path):
    """The 68 landmarks of a ``.pts``, ``.txt``, ``.npy`` or ``.mat`` file (see ``read_landmark_file``).

    Returns:
        (68, 2) float64 x, y in 0-based image pixels.
    Raises:
        as ``read_landmark_file``.
    """
    return read_landmark_file(path)[0]


def read_landmark_file(path):
    """The 68 landmarks of a ``.pts``, ``.txt``, ``.npy`` or ``.mat`` file and whether their jaw follows the face's
    outline.

    iBUG ``.pts`` files (300-W, LFPW, HELEN, AFW, iBUG) are 1-based, as menpo's ``pts_importer`` documents and
    handles, so 1 is subtracted (``read_pts``); the other formats are taken as they are: ``.txt`` 68 rows ``x y`` (a
    third column is ignored), ``.npy`` (68, 2|3) or (2|3, 68), ``.mat`` with ``pt3d_68`` (3, 68) (AFLW2000-3D) or
    ``pt2d`` (2, 68) (300W-LP). AFLW2000-3D's ``pt3d_68`` are the model's 68 landmark vertices projected, so the jaw
    points of the far side lie hidden behind the face; every other source is a 2D annotation whose jaw follows the
    visible outline (300W-LP's ``pt2d``, iBUG files, detectors).

    Returns:
        (points, silhouette_jaw): points (68, 2) float64 x, y in 0-based image pixels; silhouette_jaw False for a
        ``.mat``'s ``pt3d_68`` (the far-side jaw points where the model's landmark vertices are, hidden), True for
        every other source (the jaw points on the visible outline, where a contour-aware fit marches them).
    Raises:
        FileNotFoundError: the file does not exist. InputFileError (a ValueError): unknown suffix, unreadable file
            (an empty, truncated or foreign ``.npy`` included), not 68 points or non-finite values; the message
            names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: landmark file not found")
    suffix = path.suffix.lower()
    key = None
    try:
        if suffix == ".pts":
            points = read_pts(path)
        elif suffix == ".txt":
            points = np.loadtxt(path, dtype=np.float64, ndmin=2, encoding="utf-8-sig")  # a BOM: Windows editors
        elif suffix == ".npy":
            points = np.asarray(load_npy(path, "array of landmarks"), dtype=np.float64)
        elif suffix == ".mat":
            points, key = _from_mat(path)
        else:
            raise InputFileError(path, f"unknown landmark file type (expected one of {', '.join(LANDMARK_SUFFIXES)})")
    except InputFileError:
        raise
    except ValueError as exc:  # numpy: text, or a .npy array, that is not numbers
        raise InputFileError(path, f"cannot read the landmarks ({exc})") from exc
    try:
        return landmarks_from_array(points), key != "pt3d_68"
    except ValueError as exc:
        raise InputFileError(path, str(exc)) from None


def landmarks_from_array(points, remedy=None):
    """The 68 landmarks of a parsed array laid out as (68, 2|3) (one row ``x y [z]`` per point) or (2|3, 68).

    One rule for every reader: the files above, the landmarks sent to ``face3d serve`` and those ``PRN`` crops
    around (``face_crop.landmark_crop``).

    Args:
        points: float64 array (any shape; anything else is refused).
        remedy: what to do instead, ending the message for another shape; None: nothing.
    Returns:
        (68, 2) float64 x, y (a z row or column is dropped).
    Raises:
        ValueError: another shape (``expected 68 landmarks as (68, 2|3) or (2|3, 68), in iBUG order, got shape
        (5, 2)[; <remedy>]``), or NaN or infinite x, y.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim == 2 and points.shape[0] in (2, 3) and points.shape[1] == N_LANDMARKS:
        points = points.T
    if points.ndim != 2 or points.shape[0] != N_LANDMARKS or points.shape[1] not in (2, 3):
        message = f"expected 68 landmarks as (68, 2|3) or (2|3, 68), in iBUG order, got shape {points.shape}"
        raise ValueError(message if remedy is None else f"{message}; {remedy}")
    if not np.all(np.isfinite(points[:, :2])):
        raise ValueError("landmarks contain NaN or infinite values")
    return np.ascontiguousarray(points[:, :2])


def find_landmark_file(image_path, images_root=None, landmarks_root=None):
    """The landmark file of an image: ``<stem>`` plus the first of ``LANDMARK_SUFFIXES`` that exists in lower or
    upper case (``UP.PTS`` beside ``UP.JPG``), else in a mixed case (``.Pts``), beside the image, or under
    ``landmarks_root`` at the image's path relative to ``images_root`` when both are given. Of several mixed-case
    spellings there, the one that sorts last wins (where it is not a file, that suffix has none). Each spelling is
    looked up by name (8 spellings of ``.pts``); the folder is never listed, so an image costs the same in a folder
    of 100k images as in one of 10.

    Returns:
        Path, or None when there is none (no such folder included).
    """
    image_path = Path(image_path)
    folder = image_path.parent
    if landmarks_root is not None:
        folder = Path(landmarks_root) / image_path.parent.relative_to(images_root)
    stem = image_path.stem
    for suffix in LANDMARK_SUFFIXES:
        for spelling in (suffix, suffix.upper()):
            if (folder / f"{stem}{spelling}").is_file():
                return folder / f"{stem}{spelling}"
    for suffix in LANDMARK_SUFFIXES:
        # lexists, not is_file: any entry of a spelling that sorts later (a folder, a broken link) hides the earlier
        # ones, as in a sorted listing of the folder; str paths: half the time of Path's
        names = (f"{stem}{spelling}" for spelling in _CASE_SPELLINGS[suffix])
        last = next((name for name in names if os.path.lexists(os.path.join(folder, name))), None)
        if last is not None and (folder / last).is_file():
            return folder / last
    return None
