"""Read and write the Basel Face Model files in face3d's MATLAB layout.

The four files are the ones face3d's ``examples/Data/BFM/generate.m`` writes (and ``Data/BFM/convert.py``
reproduces): ``BFM.mat`` (:func:`load_BFM`), ``BFM_info.mat`` (:func:`load_BFM_info`), ``BFM_UV.mat``
(:func:`load_uv_coords`) and ``pncc_code.mat`` (:func:`load_pncc_code`). Loaders convert once to float32 arrays and
0-based int32 indices, triangles as (ntri,3) rows; writers are their exact inverses, in MATLAB's layout (float64,
1-based indices, (3,ntri) triangles). A missing file raises FileNotFoundError, a wrong one ValueError naming the
file, the key and what was expected.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from face3d.morphable_model._mat_fields import (
    CONVERT_COMMAND,
    _cell_column,
    _field,
    _float32,
    _numeric,
    _struct_fields,
    _vector,
    index_to_one_based,
    one_based_to_index,
    require_var,
)
from face3d.utils.matfile import read_mat, save_mat

# Field order of the struct `model` as generate.m assigns it (MATLAB keeps assignment order).
MODEL_FIELDS = ("shapeMU", "shapePC", "shapeEV", "texMU", "texPC", "texEV", "tri", "kpt_ind",
                "expMU", "expPC", "expEV", "tri_mouth")

# Field order of the struct `model_info` as generate.m assigns it.
INFO_FIELDS = ("kpt_ind", "trimIndex", "symlist", "symlist_tri", "segbin", "segbin_tri",
               "tri_mouth", "face_contour", "face_contour_line", "face_contour_front",
               "face_contour_front_line", "nose_hole", "nose_hole_right", "nose_hole_left",
               "parallel", "parallel_face_contour", "uv_coords")

# model_info fields holding 1-based indices of trimmed-model vertices, stored as (1,k) rows.
INFO_VERTEX_ROWS = ("kpt_ind", "face_contour", "face_contour_line", "face_contour_front",
                    "face_contour_front_line", "nose_hole", "nose_hole_right", "nose_hole_left")
# model_info fields that are MATLAB cell arrays (K,1) of (1,k) rows of 1-based vertex indices.
INFO_VERTEX_CELLS = ("parallel", "parallel_face_contour")
# trimIndex (n,1) indexes the full 53490-vertex Basel model, so it is not range-checked against the trimmed
# counts.  symlist (2,26720) and symlist_tri (2,52937) pair vertices / triangles of the trimmed model (the real
# file's largest are its last vertex and last triangle; a vertex on the midline pairs with itself), checked
# against the vertex count and segbin_tri's triangle count.
# Binary masks: segbin (4,n) per vertex, segbin_tri (4,ntri) per triangle.
# Rows (generate.m: "segbin: nose eyes mouth rest"; Basel's 01_MorphableModel.mat segbin columns).
INFO_MASKS = ("segbin", "segbin_tri")
SEGBIN_ROWS = {"nose": 0, "eyes": 1, "mouth": 2, "rest": 3}

# region_labels values.
REGION_REST, REGION_EYES, REGION_NOSE, REGION_MOUTH = 0, 1, 2, 3
N_CONTOUR_LANDMARKS = 17
N_KEYPOINTS = 68  # kpt_ind: the iBUG-68 landmarks, in iBUG order

# Bounds of the mean face's width (x extent) in a BFM.mat: the Basel model and the default model are in micrometres
# (about 1.5e5); a hand-converted BFM 2017 in millimetres (about 150) or metres falls below.
FACE_WIDTH_RANGE = (1e4, 1e7)

# The other formats the Basel models come in, named when a BFM file turns out to be one of them.
OTHER_FORMAT_HINT = (f"face3d reads the Basel Face Model 2009 (not BFM 2017's .h5 nor 3DDFA's .pkl): build its BFM "
                     f"files with {CONVERT_COMMAND}")


def _read_bfm_file(path, variable: str) -> dict:
    """``read_mat`` of one variable of a BFM file, an HDF5 file or a pickle (another model format) named as such."""
    return read_mat(path, variable_names=[variable], other_format_hint=OTHER_FORMAT_HINT)


# ----------------------------------------------------------------------------- BFM.mat
def _check_model(where, fields: dict, from_file: bool) -> dict:
    """Validate the BFM fields and return the loaded (float32 / 0-based int32) form.

    ``fields`` is the MATLAB struct (``from_file``: 1-based, tri (3,ntri), shapeMU without expMU)
    or an in-memory model (0-based, tri (ntri,3), shapeMU including expMU).
    """
    what = {"shapeMU": "(3n,1) mean shape", "shapePC": "(3n,k) shape basis",
            "shapeEV": "(k,1) shape std devs", "expMU": "(3n,1) mean expression",
            "expPC": "(3n,ke) expression basis", "expEV": "(ke,1) expression std devs",
            "texMU": "(3n,1) mean texture", "texPC": "(3n,kt) texture basis",
            "texEV": "(kt,1) texture std devs", "tri": "triangles", "tri_mouth": "mouth triangles",
            "kpt_ind": "68 keypoint vertex indices"}
    raw = {k: _field(where, fields, k, what[k]) for k in MODEL_FIELDS}
    n3 = np.shape(raw["shapeMU"])[0] if np.ndim(raw["shapeMU"]) == 2 else -1
    if n3 <= 0 or n3 % 3:
        raise ValueError(f"{where}: 'shapeMU' has shape {np.shape(raw['shapeMU'])}, "
                         f"expected (3n,1) with n >= 1 vertices")
    nver = n3 // 3
    out = {}
    for mu, pc, ev in (("shapeMU", "shapePC", "shapeEV"), ("expMU", "expPC", "expEV"),
                       ("texMU", "texPC", "texEV")):
        out[mu] = _float32(where, mu, raw[mu], (n3, 1))
        out[pc] = _float32(where, pc, raw[pc], (n3, None))
        k = out[pc].shape[1]
        out[ev] = np.ascontiguousarray(_vector(where, ev, raw[ev], k), dtype=np.float32)[:, None]
    if from_file:
        # face3d's loader adds expMU into shapeMU; do it in float64 as it does.
        out["shapeMU"] = (np.asarray(raw["shapeMU"], np.float64)
                          + np.asarray(raw["expMU"], np.float64)).astype(np.float32)
    for key in ("tri", "tri_mouth"):
        tri = _numeric(where, key, raw[key])
        if from_file:
            if tri.ndim != 2 or tri.shape[0] != 3:
                raise ValueError(f"{where}: '{key}' has shape {tri.shape}, expected (3, ntri) "
                                 f"1-based vertex indices (MATLAB layout)")
            out[key] = np.ascontiguousarray(one_based_to_index(where, key, tri, nver).T)
        else:
            if tri.ndim != 2 or tri.shape[1] != 3:
                raise ValueError(f"{where}: '{key}' has shape {tri.shape}, expected (ntri, 3)")
            index_to_one_based(where, key, tri, nver)  # range check only
            out[key] = np.ascontiguousarray(tri, dtype=np.int32)
    kpt = _vector(where, "kpt_ind", raw["kpt_ind"])
    if from_file:
        out["kpt_ind"] = one_based_to_index(where, "kpt_ind", kpt, nver)
    else:
        index_to_one_based(where, "kpt_ind", kpt, nver)
        out["kpt_ind"] = np.ascontiguousarray(kpt, dtype=np.int32)
    if kpt.size != N_KEYPOINTS:
        raise ValueError(f"{where}: 'kpt_ind' has {kpt.size} entries, expected {N_KEYPOINTS} "
                         f"(the iBUG-68 keypoint vertices)")
    return out


def load_BFM(path) -> dict:
    """Load face3d's ``BFM.mat`` (struct ``model``) into float32 arrays and 0-based int32 indices.

    Args:
        path: str or Path of BFM.mat as written by face3d's generate.m, Data/BFM/convert.py or
            :func:`save_BFM`.
    Returns:
        dict with, for n vertices (interleaved x0,y0,z0,x1,..; micrometres; colours 0..255):
            shapeMU (3n,1) float32: mean shape INCLUDING the mean expression (file shapeMU + expMU,
                summed in float64 as face3d's loader does),
            shapePC (3n,k) float32, shapeEV (k,1) float32,
            expMU (3n,1) float32, expPC (3n,ke) float32, expEV (ke,1) float32,
            texMU (3n,1) float32, texPC (3n,kt) float32, texEV (kt,1) float32,
            tri (ntri,3) int32 0-based, tri_mouth (m,3) int32 0-based, kpt_ind (68,) int32 0-based.
    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: no struct ``model``, a missing field, a wrong shape (a kpt_ind of other than 68
            entries included), an index out of range (the message names the file and the field), or a
            mean face outside FACE_WIDTH_RANGE wide (a model in millimetres).
    """
    mat = _read_bfm_file(path, "model")
    model = _check_model(Path(path), _struct_fields(Path(path), mat, "model"), from_file=True)
    _check_units(Path(path), model["shapeMU"])
    return model


def _check_units(path, shape_mu) -> None:
    """ValueError naming ``path`` unless the mean face (shapeMU (3n,1)) is FACE_WIDTH_RANGE wide (x extent), as a face
    in micrometres is: a model in other units makes every sample of the right shape and the wrong size."""
    width = float(np.ptp(shape_mu.reshape(-1, 3)[:, 0]))
    low, high = FACE_WIDTH_RANGE
    if not low <= width <= high:
        advice = ": from millimetres multiply shapeMU, expMU, shapeEV and expPC by 1000" if width < low else ""
        raise ValueError(f"{path}: the mean face is {width:.3g} units wide; face3d expects the BFM's micrometres "
                         f"(about 150,000){advice}")


def save_BFM(path, model: dict) -> None:
    """Write ``model`` (the form :func:`load_BFM` returns) as face3d's MATLAB ``BFM.mat``.

    Exact inverse of :func:`load_BFM`: writes struct ``model`` (1x1) with float64 arrays,
    shapeMU = model['shapeMU'] - model['expMU'] (the file keeps them apart), tri and tri_mouth
    (3,ntri) 1-based, kpt_ind (1,68) 1-based, fields in generate.m's order, in the MATLAB 5 format
    MATLAB's ``save`` writes, so face3d's original loader (``scipy.io.loadmat(p)['model'][0,0]``,
    ``tri.T - 1``, ``shapeMU + expMU``) reads it.

    Raises:
        ValueError: a missing key, a wrong shape (a kpt_ind of other than 68 entries included) or an
            out-of-range index (message names the key).
    """
    where = f"save_BFM({os.fspath(path)})"
    checked = _check_model(where, model, from_file=False)
    nver = checked["shapeMU"].shape[0] // 3
    f64 = {k: checked[k].astype(np.float64) for k in checked if k not in ("tri", "tri_mouth",
                                                                           "kpt_ind")}
    f64["shapeMU"] = f64["shapeMU"] - f64["expMU"]
    f64["tri"] = index_to_one_based(where, "tri", checked["tri"], nver).T.copy()
    f64["tri_mouth"] = index_to_one_based(where, "tri_mouth", checked["tri_mouth"], nver).T.copy()
    f64["kpt_ind"] = index_to_one_based(where, "kpt_ind", checked["kpt_ind"], nver)[None, :]
    save_mat(path, {"model": {k: f64[k] for k in MODEL_FIELDS}})


# ----------------------------------------------------------------------------- BFM_info.mat
def _info_nver(where, fields: dict):
    """Number of trimmed-model vertices implied by segbin / uv_coords, or None if neither."""
    if "segbin" in fields:
        seg = np.asarray(fields["segbin"])
        if seg.ndim != 2 or seg.shape[0] != 4:
            raise ValueError(f"{where}: 'segbin' has shape {seg.shape}, expected (4, n) masks "
                             f"(rows nose, eyes, mouth, rest)")
        return seg.shape[1]
    if "uv_coords" in fields:
        uv = np.asarray(fields["uv_coords"])
        if uv.ndim != 2 or uv.shape[1] != 2:
            raise ValueError(f"{where}: 'uv_coords' has shape {uv.shape}, expected (n, 2)")
        return uv.shape[0]
    return None


def _mask(where, key: str, arr) -> np.ndarray:
    arr = _numeric(where, key, arr)
    if arr.ndim != 2 or arr.shape[0] != 4:
        raise ValueError(f"{where}: '{key}' has shape {arr.shape}, expected (4, k) binary masks")
    if not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"{where}: '{key}' must be binary (0/1 values)")
    return np.ascontiguousarray(arr, dtype=bool)


def _info_ntri(where, fields: dict):
    """Number of triangles of the model's ``tri`` implied by segbin_tri (4, ntri), or None without it."""
    if "segbin_tri" not in fields:
        return None
    shape = np.shape(fields["segbin_tri"])
    if len(shape) != 2 or shape[0] != 4:
        raise ValueError(f"{where}: 'segbin_tri' has shape {shape}, expected (4, ntri) masks "
                         f"(rows nose, eyes, mouth, rest)")
    return shape[1]


def _cells(where, key: str, arr, from_file: bool) -> list:
    """A (K,1) MATLAB cell (file) or a list of index arrays (memory) -> list of 1-D arrays."""
    if from_file:
        if not (isinstance(arr, np.ndarray) and arr.dtype == object):
            raise ValueError(f"{where}: '{key}' is not a MATLAB cell array "
                             f"(expected a (K,1) cell of 1-based vertex index rows)")
        rows = list(arr.reshape(-1, order="F"))
    else:
        if isinstance(arr, np.ndarray) and arr.dtype != object:
            raise ValueError(f"{where}: '{key}' must be a list of index arrays")
        rows = list(arr)
    return [_vector(where, f"{key}[{i}]", row) for i, row in enumerate(rows)]


def _convert_info(where, fields: dict, from_file: bool) -> dict:
    """model_info fields (file: 1-based MATLAB layout; memory: loaded form) -> loaded form."""
    nver = _info_nver(where, fields)
    ntri = _info_ntri(where, fields)

    def index(key, arr, n_max):
        if from_file:
            return one_based_to_index(where, key, arr, n_max)
        index_to_one_based(where, key, arr, n_max)
        return np.ascontiguousarray(arr, dtype=np.int32)

    out = {}
    for key, value in fields.items():
        if key in INFO_VERTEX_ROWS:
            out[key] = index(key, _vector(where, key, value), nver)
        elif key == "trimIndex":
            out[key] = index(key, _vector(where, key, value), None)
        elif key in ("symlist", "symlist_tri"):
            arr = _numeric(where, key, value)
            if arr.ndim != 2 or arr.shape[0] != 2:
                raise ValueError(f"{where}: '{key}' has shape {arr.shape}, expected (2, k) pairs")
            out[key] = index(key, arr, nver if key == "symlist" else ntri)
        elif key in INFO_MASKS:
            out[key] = _mask(where, key, value)
        elif key == "tri_mouth":
            arr = _numeric(where, key, value)
            axis = 0 if from_file else 1
            if arr.ndim != 2 or arr.shape[axis] != 3:
                want = "(3, m) 1-based" if from_file else "(m, 3) 0-based"
                raise ValueError(f"{where}: '{key}' has shape {arr.shape}, expected {want}")
            tri = index(key, arr, nver)
            out[key] = np.ascontiguousarray(tri.T if from_file else tri)
        elif key in INFO_VERTEX_CELLS:
            out[key] = [index(f"{key}[{i}]", row, nver)
                        for i, row in enumerate(_cells(where, key, value, from_file))]
        elif key == "uv_coords":
            out[key] = _float32(where, key, value, (nver, 2))
        else:
            out[key] = value  # fields this module does not interpret pass through unchanged
    return out


def load_BFM_info(path) -> dict:
    """Load face3d's ``BFM_info.mat`` (struct ``model_info``), indices converted to 0-based int32.

    Every field is optional; those present are converted as follows (n trimmed vertices):
        kpt_ind (68,), face_contour (28,), face_contour_line (512,), face_contour_front (28,),
        face_contour_front_line (512,), nose_hole (142,), nose_hole_right (71,),
        nose_hole_left (71,): int32 0-based trimmed-model vertex indices (file: (1,k) 1-based).
        trimIndex (n,) int32: 0-based vertex of the full 53490-vertex Basel model that each
            trimmed vertex comes from (file: (n,1) 1-based).
        symlist (2,26720), symlist_tri (2,52937) int32: 0-based pairs of mirror-symmetric
            vertices / triangles of the trimmed model (3DDFA's data, copied by generate.m as they
            are), checked against n and against segbin_tri's triangle count.
        segbin (4,n) bool: per-vertex masks, rows 0 nose, 1 eyes, 2 mouth, 3 rest of the face.
        segbin_tri (4,ntri) bool: the same per triangle of ``tri``.
        tri_mouth (m,3) int32 0-based (file: (3,m) 1-based).
        parallel: list of 17 int32 arrays, 0-based trimmed-model vertices; entry i is the
            horizontal line of candidate vertices for jaw landmark i (file: (17,1) MATLAB cell of
            (1,k) 1-based rows).  parallel_face_contour: the same, 28 lines for face_contour.
        uv_coords (n,2) float32.
    Other fields pass through as scipy reads them.  Vertex indices are range-checked against n
    (taken from segbin or uv_coords) when one of those is present, symlist_tri against the
    triangle count of segbin_tri when present.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: no struct ``model_info``, a wrong shape, a non-binary mask, or an index out of
            range (the message names the file and the field).
    """
    mat = _read_bfm_file(path, "model_info")
    return _convert_info(Path(path), _struct_fields(Path(path), mat, "model_info"), True)


def save_BFM_info(path, info: dict) -> None:
    """Write ``info`` (the form :func:`load_BFM_info` returns) as face3d's ``BFM_info.mat``.

    Exact inverse of :func:`load_BFM_info`: struct ``model_info`` with 1-based float64 indices,
    (1,k) index rows, trimIndex (n,1), tri_mouth (3,m), parallel lines as a (K,1) cell, masks as
    MATLAB logical, uv_coords (n,2) float64; generate.m's field order, unknown fields last.

    Raises:
        ValueError: a wrong shape, non-binary mask or out-of-range index (names the key).
    """
    where = f"save_BFM_info({os.fspath(path)})"
    checked = _convert_info(where, dict(info), from_file=False)
    out = {}
    for key in [k for k in INFO_FIELDS if k in checked] + [k for k in checked
                                                            if k not in INFO_FIELDS]:
        value = checked[key]
        if key in INFO_VERTEX_ROWS:
            out[key] = (value.astype(np.float64) + 1.0)[None, :]
        elif key == "trimIndex":
            out[key] = (value.astype(np.float64) + 1.0)[:, None]
        elif key in ("symlist", "symlist_tri"):
            out[key] = value.astype(np.float64) + 1.0
        elif key == "tri_mouth":
            out[key] = (value.astype(np.float64) + 1.0).T.copy()
        elif key in INFO_VERTEX_CELLS:
            out[key] = _cell_column([row.astype(np.float64) + 1.0 for row in value])
        elif key == "uv_coords":
            out[key] = value.astype(np.float64)
        else:
            out[key] = value
    save_mat(path, {"model_info": out})


# ----------------------------------------------------------------------------- BFM_UV.mat
def load_uv_coords(path) -> np.ndarray:
    """Load ``BFM_UV.mat`` (variable ``UV``, (n,2)) as a C-ordered (n,2) float32 array.

    The coordinates are texture (u, v) in [0, 1] per trimmed-model vertex (3DMMasSTN's BFM
    parameterisation with generate.m's three repaired vertices).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: no variable ``UV``, a shape other than (n,2), or NaN/inf values.
    """
    mat = _read_bfm_file(path, "UV")
    uv = require_var(path, mat, "UV", "(n,2) texture coordinates", converted=True)
    return _float32(Path(path), "UV", uv, (None, 2))


def save_uv_coords(path, uv) -> None:
    """Write (n,2) UV coordinates as ``BFM_UV.mat`` (variable ``UV``, float64): inverse of
    :func:`load_uv_coords`."""
    uv = _float32(f"save_uv_coords({os.fspath(path)})", "UV", uv, (None, 2))
    save_mat(path, {"UV": uv.astype(np.float64)})


# ----------------------------------------------------------------------------- pncc_code.mat
def load_pncc_code(path) -> np.ndarray:
    """Load ``pncc_code.mat`` (3DDFA's ``vertex_code.mat``: variable ``vertex_code`` (3,n)).

    PNCC (Projected Normalized Coordinate Code, Zhu et al., "Face Alignment Across Large Poses:
    A 3D Solution", CVPR 2016): the mean shape's x, y, z normalised to [0, 1] per vertex.

    Returns:
        (n,3) float32, one row per trimmed-model vertex.
    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: no variable ``vertex_code`` or a shape other than (3,n).
    """
    mat = _read_bfm_file(path, "vertex_code")
    code = require_var(path, mat, "vertex_code", "(3,n) PNCC code", converted=True)
    return np.ascontiguousarray(_float32(Path(path), "vertex_code", code, (3, None)).T)


def save_pncc_code(path, code) -> None:
    """Write (n,3) PNCC code as ``pncc_code.mat`` (variable ``vertex_code`` (3,n) float64):
    inverse of :func:`load_pncc_code`."""
    code = _float32(f"save_pncc_code({os.fspath(path)})", "vertex_code", code, (None, 3))
    save_mat(path, {"vertex_code": code.T.astype(np.float64)})


# ----------------------------------------------------------------------------- derived views
def region_labels(info: dict, nver: int) -> np.ndarray:
    """Per-vertex face region from ``info['segbin']``: 0 rest of face, 1 eyes, 2 nose, 3 mouth.

    ``segbin`` is (4, nver) binary with rows 0 nose, 1 eyes, 2 mouth, 3 rest (Basel's
    01_MorphableModel.mat ``segbin`` columns, trimmed and transposed by generate.m).  The bins
    are disjoint in the Basel data; should they overlap, mouth wins over nose, nose over eyes.

    Args:
        info: dict as :func:`load_BFM_info` returns (needs 'segbin').
        nver: number of model vertices (checked against segbin).
    Returns:
        (nver,) uint8 labels.
    Raises:
        ValueError: ``info`` has no 'segbin' or its shape is not (4, nver).
    """
    if "segbin" not in info:
        raise ValueError("region_labels: info has no 'segbin' (expected (4, nver) masks "
                         "rows nose, eyes, mouth, rest)")
    seg = np.asarray(info["segbin"])
    if seg.shape != (4, nver):
        raise ValueError(f"region_labels: info['segbin'] has shape {seg.shape}, "
                         f"expected (4, {nver})")
    seg = seg.astype(bool)
    labels = np.full(nver, REGION_REST, dtype=np.uint8)
    labels[seg[SEGBIN_ROWS["eyes"]]] = REGION_EYES
    labels[seg[SEGBIN_ROWS["nose"]]] = REGION_NOSE
    labels[seg[SEGBIN_ROWS["mouth"]]] = REGION_MOUTH
    return labels


def info_model_mismatch(info: dict, nver: int, ntri: int, model="the model"):
    """What in a loaded ``BFM_info`` does not fit a model of ``nver`` vertices and ``ntri`` triangles, or None.

    Checked: segbin (4, nver), uv_coords (nver, 2), segbin_tri (4, ntri), every trimmed-model vertex index
    (INFO_VERTEX_ROWS, tri_mouth, the parallel cells, symlist) < nver and every symlist_tri triangle index < ntri.
    trimIndex refers to the full Basel model and is not checked.  :func:`load_BFM_info` can check the indices only
    against the counts of segbin / uv_coords / segbin_tri in the same file; this check catches an info file written
    for another model.

    Args:
        info: dict as :func:`load_BFM_info` returns. nver, ntri: the model's counts. model: its name in the message.
    Returns:
        None, or the first misfit, e.g. ``"segbin has 53215 vertices, BFM.mat has 13019"`` or
        ``"parallel indexes vertex 52815 (1-based), BFM.mat has 13019"``.
    """
    for key, axis, unit, count in (("segbin", 1, "vertices", nver), ("uv_coords", 0, "vertices", nver),
                                   ("segbin_tri", 1, "triangles", ntri)):
        if key in info and np.shape(info[key])[axis] != count:
            return f"{key} has {np.shape(info[key])[axis]} {unit}, {model} has {count}"
    for key in INFO_VERTEX_ROWS + ("tri_mouth", "symlist", "symlist_tri") + INFO_VERTEX_CELLS:
        if key not in info:
            continue
        unit, count = ("triangle", ntri) if key == "symlist_tri" else ("vertex", nver)
        arrays = info[key] if key in INFO_VERTEX_CELLS else [info[key]]
        top = max((int(np.max(a)) for a in arrays if np.size(a)), default=-1)
        if top >= count:
            return f"{key} indexes {unit} {top + 1} (1-based), {model} has {count}"
    return None


def contour_lines(info: dict) -> list:
    """Candidate vertices of the 17 jaw landmarks (iBUG 0..16) from ``info['parallel']``.

    3DDFA's ``Modelplus_parallel.mat`` ``parallel`` is a 17x1 MATLAB cell; cell i is a (1,k) row
    of 1-based vertex indices of the trimmed 53215-vertex model (generate.m copies it unchanged,
    so it indexes the same vertices as BFM.mat): a horizontal line across the cheek through the
    frontal position of landmark i.  At large yaw the landmark moves along its line to the
    silhouette vertex (3DDFA "landmark marching").

    Args:
        info: dict as :func:`load_BFM_info` returns (needs 'parallel', already 0-based).
    Returns:
        list of 17 (k_i,) int32 arrays of 0-based vertex indices.
    Raises:
        ValueError: no 'parallel', or it does not hold 17 non-empty index lines.
    """
    if "parallel" not in info:
        raise ValueError("contour_lines: info has no 'parallel' (expected 17 vertex index lines)")
    lines = list(info["parallel"])
    if len(lines) != N_CONTOUR_LANDMARKS:
        raise ValueError(f"contour_lines: info['parallel'] has {len(lines)} lines, "
                         f"expected {N_CONTOUR_LANDMARKS}")
    out = []
    for i, line in enumerate(lines):
        line = np.asarray(line).reshape(-1)
        if line.size == 0 or line.dtype.kind not in "iu" or line.min() < 0:
            raise ValueError(f"contour_lines: info['parallel'][{i}] must be a non-empty array "
                             f"of 0-based vertex indices")
        out.append(line.astype(np.int32))
    return out
