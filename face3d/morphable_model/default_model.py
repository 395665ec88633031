"""The embedded default face model: a BFM-layout morphable model built by our own code (no licence needed).

:func:`build_default_model` constructs it, deterministically and in seconds, in exactly the layout, units
(micrometres) and axes of face3d's ``BFM.mat`` (x right, y up, z towards the viewer, origin near the head's centre),
so a real 300W-LP ``Pose_Para`` places it where the real face is. :func:`default_model_dir` caches it as the four
files the real model comes as, so one loading path serves both. README: "The embedded default model".
"""
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from . import load
from ._default import regions
from ._default.bases import expression_basis, mean_texture, shape_basis, texture_basis
from ._default.landmarks import keypoint_indices
from ._default.surface import build_surface, snap_to_pixel_centres, uv_unwrap

# Bump whenever the built arrays change, so that stale caches are never read.
MODEL_VERSION = 4
SEED = 20161
FILE_NAMES = ("BFM.mat", "BFM_info.mat", "BFM_UV.mat", "pncc_code.mat")
# A build takes seconds: a temporary build folder untouched for this long is a killed build's, never a running one's.
STALE_TEMPORARY_SECONDS = 3600
# PRNet's UV map side: the keypoints' UVs sit on its pixel centres.
UV_RESOLUTION = 256
_MM_TO_UM = 1000.0


def _quantise(values):
    """float64 array -> float32 rounded to the grid 2^(ceil(log2 max|values|) - 22).

    Every grid value is exact in float32, and last-bit differences of the float64 arithmetic (other
    BLAS/LAPACK or libm builds) only change the result when they straddle a grid midpoint.
    """
    values = np.asarray(values, dtype=np.float64)
    peak = np.abs(values).max()
    if peak == 0.0:
        return np.zeros(values.shape, dtype=np.float32)
    step = 2.0 ** (int(np.ceil(np.log2(peak))) - 22)
    # + 0.0 turns -0.0 (from tiny negative values, whose sign is noise) into +0.0.
    return (np.round(values / step) * step + 0.0).astype(np.float32)


def _symmetric_pairs(mirror):
    """(2, k) int32 pairs (i, mirror[i]) with i < mirror[i]: mirror-symmetric vertices."""
    left = np.flatnonzero(np.arange(mirror.size) < mirror)
    return np.stack((left, mirror[left])).astype(np.int32)


def build_default_model():
    """Build the default face model in memory, in the loaded (float32, 0-based int32) form.

    The surface (n ~ 13k vertices, ~26k triangles) is a smooth mask-like face (forehead, brows, eye sockets with
    eyes, nose, lips, cheeks, jaw and chin) with a mouth slit closed by ``tri_mouth`` and, as the BFM's face region,
    a margin beyond the jaw line (an under-chin / upper-neck strip and a strip behind the side contour), so the jaw
    keypoints and contour lines are interior vertices; in the UV unwrap that strip below the jaw line is PRNet's
    "neck". The bases have BFM-like scales (:mod:`face3d.morphable_model._default.bases`), so 300W-LP parameters
    give plausible faces.

    Determinism: the geometry uses only arithmetic on design tables, the random fields a
    ``numpy.random.RandomState`` (whose stream numpy keeps frozen) with a fixed seed, and every float array is
    rounded to a power-of-two grid 2^-22 of its largest magnitude before the float32 cast (``_quantise``; builds
    with 1 and 2 BLAS threads were checked identical), so the arrays are the same bit for bit on every build.

    Returns:
        model: dict as :func:`face3d.morphable_model.load.load_BFM` returns: shapeMU (3n,1)
            micrometres (expMU, all zero, included), shapePC (3n,199) with column RMS
            1/sqrt(159645), shapeEV (199,1); expMU (3n,1) zeros, expPC (3n,29) micrometres per unit,
            expEV (29,1); texMU (3n,1) colours 0..255, texPC (3n,199), texEV (199,1);
            tri (ntri,3) int32 clockwise seen from outside as in the BFM (right-hand normals
            point into the head, -z for a frontal face); tri_mouth (m,3) int32, same winding;
            kpt_ind (68,) int32 (iBUG order).
        info: dict as :func:`load.load_BFM_info` returns: kpt_ind, trimIndex (n,) (identity),
            symlist (2,k) mirror vertex pairs, segbin (4,n) / segbin_tri (4,ntri) bool (rows nose,
            eyes with the brows, mouth, rest; the margin is rest), tri_mouth, parallel (17 int32 arrays),
            uv_coords (n,2) float32.
        uv_coords: (n,2) float32 in [0,1] (what ``BFM_UV.mat`` holds); the 68 keypoints sit on
            pixel centres of the 256 UV map (u*255, v*255 integers to 1e-4), strictly inside.
        pncc_code: (n,3) float32, the mean shape's x, y, z each normalised to [0,1] (3DDFA's
            vertex_code).
    """
    surface = build_surface()
    kpt = keypoint_indices(surface)
    rng = np.random.RandomState(SEED)
    shape_pc, shape_ev = shape_basis(surface, rng)
    exp_pc, exp_ev = expression_basis(surface, rng)
    tex_pc, tex_ev = texture_basis(surface, rng)
    n3 = 3 * surface.vertices.shape[0]
    shape_mu = _quantise(surface.vertices.reshape(-1, 1) * _MM_TO_UM)
    model = {
        "shapeMU": shape_mu, "shapePC": _quantise(shape_pc), "shapeEV": _quantise(shape_ev),
        "expMU": np.zeros((n3, 1), dtype=np.float32), "expPC": _quantise(exp_pc),
        "expEV": _quantise(exp_ev),
        "texMU": _quantise(mean_texture(surface).reshape(-1, 1)), "texPC": _quantise(tex_pc),
        "texEV": _quantise(tex_ev),
        "tri": surface.tri.astype(np.int32), "tri_mouth": surface.tri_mouth.astype(np.int32),
        "kpt_ind": kpt,
    }
    uv = _quantise(snap_to_pixel_centres(uv_unwrap(surface), kpt, UV_RESOLUTION))
    masks = regions.segbin(surface)
    info = {
        "kpt_ind": kpt.copy(),
        "trimIndex": np.arange(n3 // 3, dtype=np.int32),
        "symlist": _symmetric_pairs(surface.mirror),
        "segbin": masks,
        "segbin_tri": regions.segbin_tri(masks, surface.tri),
        "tri_mouth": model["tri_mouth"].copy(),
        "parallel": regions.parallel_lines(surface, kpt),
        "uv_coords": uv.copy(),
    }
    mean = shape_mu.reshape(-1, 3).astype(np.float64)
    lo, hi = mean.min(axis=0), mean.max(axis=0)
    pncc = _quantise((mean - lo) / (hi - lo))
    return model, info, uv, pncc


def cache_root():
    """Folder holding face3d's caches: ``$FACE3D_CACHE_DIR`` if set, else ``~/.cache/face3d``."""
    env = os.environ.get("FACE3D_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "face3d"


class CacheFolderError(OSError):
    """The embedded default model's cache folder cannot be created: an OSError (errno of the cause, ``filename`` the
    folder) whose message is the one line ``"<folder>: <problem>; set FACE3D_CACHE_DIR to a writable folder"``."""

    def __str__(self):
        return f"{self.filename}: {self.strerror}"


def write_default_model(folder):
    """Build the default model and write its four files (FILE_NAMES) into ``folder`` (created), with the writers of
    :mod:`face3d.morphable_model.load`, so the default and the real model are read by one loading path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model, info, uv, pncc = build_default_model()
    load.save_BFM(folder / "BFM.mat", model)
    load.save_BFM_info(folder / "BFM_info.mat", info)
    load.save_uv_coords(folder / "BFM_UV.mat", uv)
    load.save_pncc_code(folder / "pncc_code.mat", pncc)


def remove_stale_temporaries(root):
    """Delete the temporary build folders (``.default_model_v*.tmp-*``, any version) that killed builds left in
    ``root``: those whose newest modification time, of the folder or of a file in it, is over
    STALE_TEMPORARY_SECONDS old.  A running build writes its files within seconds, so its folder is never that old
    (no owner pid is recorded: a cache folder may be shared by several machines, where a pid says nothing).
    Best effort: a folder that vanishes meanwhile (another process removing it) or cannot be removed stays.
    """
    for folder in root.glob(".default_model_v*.tmp-*"):
        try:
            newest = max([folder.stat().st_mtime] + [entry.stat().st_mtime for entry in folder.iterdir()])
        except OSError:
            continue
        if time.time() - newest > STALE_TEMPORARY_SECONDS:
            shutil.rmtree(folder, ignore_errors=True)


def default_model_dir():
    """Path of the cached default model (BFM.mat, BFM_info.mat, BFM_UV.mat, pncc_code.mat).

    The folder ``<cache_root()>/default_model_v<MODEL_VERSION>`` is built on first use: the files
    are written into a temporary sibling folder that is then renamed into place, so a reader never
    sees a half-written model, and concurrent first uses (several processes) are safe: the first
    rename wins and the others discard their copy.  Once the folder is complete (found or built), the temporary
    folders of killed builds are removed (:func:`remove_stale_temporaries`).

    Returns:
        Path of the folder.
    Raises:
        CacheFolderError: the cache folder cannot be created (a read-only home, a file in the way).
        OSError: the model cannot be written into it (a full disk).
    """
    root = cache_root()
    final = root / f"default_model_v{MODEL_VERSION}"
    if all((final / name).is_file() for name in FILE_NAMES):
        remove_stale_temporaries(root)
        return final
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=root))
    except OSError as error:
        raise CacheFolderError(error.errno, f"the embedded default model's cache cannot be created there "
                                            f"({error.strerror}); set FACE3D_CACHE_DIR to a writable folder",
                               str(root)) from error
    try:
        write_default_model(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is readable like ~/.cache
        try:
            os.rename(tmp, final)
        except OSError as err:
            # Another process renamed its copy first; theirs is complete, use it.
            if not all((final / name).is_file() for name in FILE_NAMES):
                raise OSError(f"{final}: exists but lacks some of {', '.join(FILE_NAMES)}; "
                              f"delete the folder to rebuild the default model ({err})") from err
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    remove_stale_temporaries(root)
    return final
