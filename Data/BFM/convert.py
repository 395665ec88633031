#!/usr/bin/env python
"""Build face3d's BFM files from the raw downloads: the Python replacement of face3d's generate.m.

Input folder (``--raw``), laid out as face3d's examples/Data/BFM/readme.md says:

    raw/01_MorphableModel.mat         Basel Face Model 2009 (shapeMU, shapePC, shapeEV, texMU, texPC,
                                      texEV, segbin; 53490 vertices)
    3ddfa/model_info.mat              trimIndex, keypoints, symlist, symlist_tri, segbin_tri, tri
                                      (and segbin in some releases)
    3ddfa/Model_Expression.mat        mu_exp, w_exp, sigma_exp (29 expression PCs, trimmed model)
    3ddfa/Model_tri_mouth.mat         tri_mouth
    3ddfa/Model_face_contour_trimed.mat  face_contour, face_contour_line, face_contour_front,
                                      face_contour_front_line
    3ddfa/Modelplus_nose_hole.mat     nose_hole, nose_hole_right, nose_hole_left
    3ddfa/Modelplus_parallel.mat      parallel (17x1 cell), parallel_face_contour (28x1 cell)
    3ddfa/vertex_code.mat             vertex_code (3, 53215)
    stn/BFM_UV.mat                    UV (53490, 2)

Output folder (``--out``): BFM.mat, BFM_info.mat, BFM_UV.mat, pncc_code.mat, the same variables,
shapes, classes and values that generate.m writes (see Data/BFM/README.md).  Read them with
face3d.morphable_model.load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

try:
    from face3d.morphable_model import load as bfm_load
except ImportError:  # run as a script from a checkout: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from face3d.morphable_model import load as bfm_load
from face3d.utils.atomic import staging_folder
from face3d.utils.errors import os_error_at

# generate.m's repairs, 1-based indices of the trimmed 53215-vertex model.
# Three vertices with broken 3DMMasSTN UVs get the mean UV of their neighbours.
UV_REPAIRS = ((10032, (10033, 10158)),
              (10155, (10534, 10157, 10661)),
              (10280, (10916, 10286)))
# Inner-mouth triangles appended to 3DDFA's tri_mouth.  generate.m also sets ind_bad = 38 but
# then calls setdiff(all_ind, bad_ind) with the UV list bad_ind, so no triangle is removed;
# face3d's published files (and its generate.py) keep all of tri_mouth, and so do we.
TRI_MOUTH_ADD = np.array([[6420, 6542, 6664],
                          [6420, 6294, 6167],
                          [6167, 6297, 6420],
                          [6167, 6297, 6296],
                          [6167, 6296, 6295],
                          [6167, 6295, 6039],
                          [6168, 6295, 6039]], dtype=np.float64).T  # (3, 7) as MATLAB adds them

RAW_FILES = {
    "bfm": "raw/01_MorphableModel.mat",
    "info": "3ddfa/model_info.mat",
    "exp": "3ddfa/Model_Expression.mat",
    "tri_mouth": "3ddfa/Model_tri_mouth.mat",
    "contour": "3ddfa/Model_face_contour_trimed.mat",
    "nose": "3ddfa/Modelplus_nose_hole.mat",
    "parallel": "3ddfa/Modelplus_parallel.mat",
    "pncc": "3ddfa/vertex_code.mat",
    "uv": "stn/BFM_UV.mat",
}
OUT_FILES = ("BFM.mat", "BFM_info.mat", "BFM_UV.mat", "pncc_code.mat")


class _Steps:
    """Prints one line per conversion step with its duration (stderr; silent when quiet)."""

    def __init__(self, total: int, quiet: bool):
        self.total, self.quiet, self.done, self.t0 = total, quiet, 0, time.monotonic()

    def __call__(self, text: str) -> None:
        self.done += 1
        if not self.quiet:
            print(f"[{self.done}/{self.total}] {text} ({time.monotonic() - self.t0:.1f} s)",
                  file=sys.stderr, flush=True)


def _read(path: Path, names) -> dict:
    """Variables ``names`` of the .mat file ``path`` in their MATLAB classes, as generate.m's ``load`` gets them:
    a double that MATLAB's save stored as uint8/uint16 comes back float64 and a logical comes back bool (scipy's
    default gives the storage type, and the outputs would be written in it: uint16 indices, uint8 segbin_tri)."""
    return bfm_load.read_mat(path, variable_names=names, mat_dtype=True)


def _var(path: Path, mat: dict, key: str, what: str, rows=None, cols=None):
    """2-D numeric variable ``key`` of ``mat``, dimensions checked; errors name file, key, what."""
    arr = bfm_load.require_var(path, mat, key, what)
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf" or arr.ndim != 2:
        raise ValueError(f"{path}: '{key}' is {getattr(arr, 'dtype', type(arr))} "
                         f"{getattr(arr, 'shape', '')}, expected a numeric {what}")
    for axis, want in ((0, rows), (1, cols)):
        if want is not None and arr.shape[axis] != want:
            raise ValueError(f"{path}: '{key}' has shape {arr.shape}, expected {what}")
    return arr


def _row(path: Path, mat: dict, key: str, n_max: int) -> np.ndarray:
    """A 1-based vertex index vector ((1,k) in 3DDFA's files; (k,1) accepted), range-checked."""
    arr = _var(path, mat, key, "a (1,k) vector of 1-based vertex indices")
    if min(arr.shape) != 1:
        raise ValueError(f"{path}: '{key}' has shape {arr.shape}, expected a (1,k) vector of "
                         f"1-based vertex indices")
    return _indices(path, key, arr, n_max)


def _indices(path: Path, key: str, arr: np.ndarray, n_max: int) -> np.ndarray:
    """Range-check 1-based indices (the values are written unchanged, as MATLAB copies them)."""
    bfm_load.one_based_to_index(path, key, arr, n_max)
    return arr


def _cell(path: Path, mat: dict, key: str, n_max: int) -> np.ndarray:
    """A MATLAB cell of 1-based vertex index rows (3DDFA's parallel lines), range-checked."""
    arr = bfm_load.require_var(path, mat, key, "a (K,1) MATLAB cell of 1-based vertex rows")
    if not (isinstance(arr, np.ndarray) and arr.dtype == object):
        raise ValueError(f"{path}: '{key}' is not a MATLAB cell array (expected a (K,1) cell of "
                         f"1-based vertex index rows)")
    for i, row in enumerate(arr.reshape(-1, order="F")):
        _indices(path, f"{key}{{{i + 1}}}", np.asarray(row), n_max)
    return arr


def convert(raw_dir, out_dir, quiet: bool = False) -> dict:
    """Convert the raw BFM / 3DDFA / 3DMMasSTN downloads into face3d's four files.

    Follows generate.m step by step: trim the Basel model to 3DDFA's trimIndex vertices, add the
    expression model, copy the 3DDFA extras, trim the 3DMMasSTN UVs and repair three vertices,
    append seven inner-mouth triangles, copy vertex_code.mat to pncc_code.mat.  Array classes are
    kept as in the inputs (MATLAB copies them); indices stay 1-based.

    Args:
        raw_dir: folder holding raw/, 3ddfa/ and stn/ (see the module docstring).
        out_dir: output folder (created if missing).
        quiet: no progress lines.
    Returns:
        dict file name -> Path of the four written files.
    Raises:
        FileNotFoundError: an input file is missing (the message names it).
        ValueError: an input file lacks a variable, has a wrong shape, or an index out of range
            (the message names the file, the variable and what was expected).
        OSError: an output the system refuses to write (full disk), its ``filename`` the output's path. The four
            files are written into ``out_dir/.BFM.partial/`` and moved in only when all are written, so a failure
            leaves the files already in ``out_dir`` as they were.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    src = {k: raw_dir / v for k, v in RAW_FILES.items()}
    missing = [str(p) for p in src.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError("missing raw input file(s): " + ", ".join(missing)
                                + " (see Data/BFM/README.md for where each comes from)")
    step = _Steps(7, quiet)

    # 1. Basel model (skip the 106k-triangle 'tl' of the full mesh: 3DDFA's tri replaces it).
    path = src["bfm"]
    bfm = _read(path, ["shapeMU", "shapePC", "shapeEV", "texMU", "texPC", "texEV", "segbin"])
    shape_mu = _var(path, bfm, "shapeMU", "(3N,1) mean shape", cols=1)
    n3_full = shape_mu.shape[0]
    if n3_full % 3:
        raise ValueError(f"{path}: 'shapeMU' has {n3_full} rows, expected 3N (x,y,z per vertex)")
    n_full = n3_full // 3
    shape_pc = _var(path, bfm, "shapePC", "(3N,k) shape basis", rows=n3_full)
    shape_ev = _var(path, bfm, "shapeEV", "(k,1) shape std devs", rows=shape_pc.shape[1], cols=1)
    tex_mu = _var(path, bfm, "texMU", "(3N,1) mean texture", rows=n3_full, cols=1)
    tex_pc = _var(path, bfm, "texPC", "(3N,k) texture basis", rows=n3_full)
    tex_ev = _var(path, bfm, "texEV", "(k,1) texture std devs", rows=tex_pc.shape[1], cols=1)
    step(f"read {path} ({n_full} vertices)")

    # 2. 3DDFA model info; trim.  MATLAB's load of model_info.mat overrides the Basel segbin when
    # the 3DDFA file has one, hence the order of preference.
    path = src["info"]
    info = _read(path, ["trimIndex", "keypoints", "symlist", "symlist_tri", "segbin", "segbin_tri", "tri"])
    trim = _var(path, info, "trimIndex", "(n,1) 1-based Basel vertex indices", cols=1)
    trim0 = bfm_load.one_based_to_index(path, "trimIndex", trim, n_full).reshape(-1)
    trim0 = trim0.astype(np.int64)
    nver = trim0.size
    tri = _var(path, info, "tri", "(3,ntri) 1-based triangle vertex indices", rows=3)
    _indices(path, "tri", tri, nver)
    keypoints = _row(path, info, "keypoints", nver)
    # the mirror pairs index the trimmed model's vertices and triangles, as the loaders check
    symlist = _indices(path, "symlist", _var(path, info, "symlist", "(2,k) symmetric vertex pairs",
                                             rows=2), nver)
    symlist_tri = _indices(path, "symlist_tri", _var(path, info, "symlist_tri",
                                                     "(2,k) symmetric triangle pairs", rows=2), tri.shape[1])
    segbin_tri = _var(path, info, "segbin_tri", f"({tri.shape[1]},4) per-triangle segment bins",
                      rows=tri.shape[1], cols=4)
    if "segbin" in info:
        segbin_src, segbin = path, info["segbin"]
    else:
        segbin_src, segbin = src["bfm"], bfm.get("segbin")
        if segbin is None:
            raise ValueError(f"{src['bfm']}: no variable 'segbin' (expected ({n_full},4) segment "
                             f"bins nose, eyes, mouth, rest) and {path} has none either")
    segbin = _var(segbin_src, {"segbin": segbin}, "segbin", f"({n_full},4) segment bins",
                  rows=n_full, cols=4)
    # x,y,z rows of every kept vertex, in vertex order: 3*i, 3*i+1, 3*i+2 (0-based)
    trim_f = (3 * trim0[:, None] + np.arange(3)).reshape(-1)
    model = {"shapeMU": shape_mu[trim_f], "shapePC": shape_pc[trim_f], "shapeEV": shape_ev,
             "texMU": tex_mu[trim_f], "texPC": tex_pc[trim_f], "texEV": tex_ev,
             "tri": tri, "kpt_ind": keypoints}
    model_info = {"kpt_ind": keypoints, "trimIndex": trim, "symlist": symlist,
                  "symlist_tri": symlist_tri, "segbin": segbin[trim0].T.copy(),
                  "segbin_tri": segbin_tri.T.copy()}
    del bfm, shape_pc, tex_pc
    step(f"trimmed to {nver} vertices, {tri.shape[1]} triangles ({path})")

    # 3. expression model (3DDFA, already on the trimmed vertices)
    path = src["exp"]
    exp = _read(path, ["mu_exp", "w_exp", "sigma_exp"])
    model["expMU"] = _var(path, exp, "mu_exp", f"({3 * nver},1) mean expression",
                          rows=3 * nver, cols=1)
    model["expPC"] = _var(path, exp, "w_exp", f"({3 * nver},k) expression basis", rows=3 * nver)
    model["expEV"] = _var(path, exp, "sigma_exp", "(k,1) expression std devs",
                          rows=model["expPC"].shape[1], cols=1)
    step(f"expression basis: {model['expPC'].shape[1]} components ({path})")

    # 4. mouth triangles
    path = src["tri_mouth"]
    tri_mouth = _var(path, _read(path, ["tri_mouth"]), "tri_mouth",
                     "(3,m) 1-based mouth triangles", rows=3)
    _indices(path, "tri_mouth", tri_mouth, nver)

    # 5. face contour, 6. nose hole, 7. parallel lines
    for key in ("contour", "nose"):
        path = src[key]
        names = (("face_contour", "face_contour_line", "face_contour_front",
                  "face_contour_front_line") if key == "contour"
                 else ("nose_hole", "nose_hole_right", "nose_hole_left"))
        mat = _read(path, list(names))
        for name in names:
            model_info[name] = _row(path, mat, name, nver)
    path = src["parallel"]
    mat = _read(path, ["parallel", "parallel_face_contour"])
    model_info["parallel"] = _cell(path, mat, "parallel", nver)
    if model_info["parallel"].size != bfm_load.N_CONTOUR_LANDMARKS:
        raise ValueError(f"{path}: 'parallel' has {model_info['parallel'].size} cells, expected "
                         f"{bfm_load.N_CONTOUR_LANDMARKS} (one per jaw landmark)")
    model_info["parallel_face_contour"] = _cell(path, mat, "parallel_face_contour", nver)
    step("3DDFA extras: mouth triangles, face contour, nose hole, parallel lines")

    # 8. PNCC code: checked here, copied byte for byte below
    path = src["pncc"]
    _var(path, _read(path, ["vertex_code"]), "vertex_code",
         f"(3,{nver}) PNCC code", rows=3, cols=nver)

    # 9. 3DMMasSTN UVs, trimmed and repaired
    path = src["uv"]
    uv_full = _var(path, _read(path, ["UV"]), "UV", f"({n_full},2) UV coordinates",
                   rows=n_full, cols=2)
    uv = uv_full[trim0].T.copy()  # (2, n) as generate.m holds it
    needed = max(max(b, *r) for b, r in UV_REPAIRS)
    if nver < needed or nver < TRI_MOUTH_ADD.max():
        raise ValueError(f"{src['info']}: trimIndex has {nver} vertices, but generate.m's repairs "
                         f"(UV vertex {needed}, mouth vertex {int(TRI_MOUTH_ADD.max())}) need the "
                         f"53215-vertex 3DDFA trimming")
    for bad, ring in UV_REPAIRS:
        uv[:, bad - 1] = uv[:, np.asarray(ring) - 1].mean(axis=1)
    model_info["uv_coords"] = uv.T.copy()
    step(f"UV coordinates trimmed, 3 vertices repaired ({path})")

    # inner-mouth triangles; MATLAB's [a b] takes tri_mouth's class (double in 3DDFA's file; an integer or
    # single one would win over the double additions)
    tri_mouth = np.concatenate([tri_mouth, TRI_MOUTH_ADD.astype(tri_mouth.dtype)], axis=1)
    model["tri_mouth"] = tri_mouth
    model_info["tri_mouth"] = tri_mouth
    step(f"tri_mouth: {tri_mouth.shape[1] - TRI_MOUTH_ADD.shape[1]} + "
         f"{TRI_MOUTH_ADD.shape[1]} inner-mouth triangles")

    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = {name: out_dir / name for name in OUT_FILES}
    variables = {"BFM.mat": {"model": {k: model[k] for k in bfm_load.MODEL_FIELDS}},
                 "BFM_info.mat": {"model_info": {k: model_info[k] for k in bfm_load.INFO_FIELDS}},
                 "BFM_UV.mat": {"UV": model_info["uv_coords"]}}
    # written into a hidden folder and moved in together: a failure leaves the older set (or none) whole
    with staging_folder(out_dir / "BFM") as staging:
        for name in OUT_FILES:
            try:
                if name in variables:
                    bfm_load.save_mat(staging / name, variables[name])
                else:
                    shutil.copyfile(src["pncc"], staging / name)
            except OSError as error:  # a write gives no file name, copyfile its source's: name the output
                raise os_error_at(error, outputs[name]) from error
        for name in OUT_FILES:
            os.replace(staging / name, outputs[name])
    step(f"wrote {', '.join(str(p) for p in outputs.values())}")
    return outputs


def main(argv=None) -> int:
    """Command line: ``python Data/BFM/convert.py --raw DIR --out DIR``."""
    parser = argparse.ArgumentParser(
        description="Build face3d's BFM.mat, BFM_info.mat, BFM_UV.mat and pncc_code.mat from the "
                    "raw Basel Face Model, 3DDFA and 3DMMasSTN downloads (the Python replacement "
                    "of face3d's generate.m). See Data/BFM/README.md for where to get each file.",
        epilog="expected input layout under --raw: " + ", ".join(RAW_FILES.values()))
    parser.add_argument("--raw", required=True, type=Path,
                        help="folder holding raw/01_MorphableModel.mat, 3ddfa/*.mat and "
                             "stn/BFM_UV.mat")
    parser.add_argument("--out", required=True, type=Path,
                        help="output folder for the four .mat files (created if missing)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    try:
        convert(args.raw, args.out, quiet=args.quiet)
    except OSError as err:
        print(f"error: {err.filename}: {err.strerror}" if err.filename else f"error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
