"""Field readers shared by the BFM file loaders: variables and struct fields of a loaded .mat, numeric and
float32 checks, and 1-based MATLAB index conversion, each raising ValueError naming the file and the key."""
from __future__ import annotations

import numpy as np

from face3d.utils.matfile import mat_variable_names

# How face3d's BFM files are built from the raw downloads, for messages about a file that is not one of them.
CONVERT_COMMAND = "python Data/BFM/convert.py --raw RAW --out OUT (Data/BFM/README.md)"
# Variables of the raw downloads convert.py reads that face3d's files never hold as variables: Basel 2009's
# 01_MorphableModel.mat (its triangle list is 'tl'), 3DDFA's Model_Shape.mat, Model_Expression.mat, model_info.mat
# and the Modelplus files.
RAW_DOWNLOAD_VARIABLES = frozenset({"tl", "mu_shape", "mu_exp", "w_exp", "keypoints", "trimIndex", "face_contour",
                                    "nose_hole", "parallel"})


def require_var(path, mat: dict, key: str, what: str, converted: bool = False) -> np.ndarray:
    """Return variable ``key`` of the dict ``read_mat(path, ...)`` gave, or raise ValueError naming file and key and
    listing the variables the file holds (the dict has only those asked for).  ``converted``: the file should be one
    of the BFM files convert.py builds, so one holding RAW_DOWNLOAD_VARIABLES is named a raw download, with the
    command that converts it."""
    if key not in mat:
        names = mat_variable_names(path)
        found = "" if names is None else f"; found {names}"
        if converted and names and RAW_DOWNLOAD_VARIABLES.intersection(names):
            found += (f"; this is the raw Basel 2009 model (or 3DDFA's files): build face3d's BFM files with "
                      f"{CONVERT_COMMAND}")
        raise ValueError(f"{path}: no variable '{key}' (expected {what}){found}")
    return mat[key]


def _struct_fields(path, mat: dict, key: str) -> dict:
    """Fields of the 1x1 MATLAB struct variable ``key`` of one of face3d's BFM files as a dict name -> ndarray."""
    var = require_var(path, mat, key, f"a 1x1 MATLAB struct '{key}'", converted=True)
    if not (isinstance(var, np.ndarray) and var.dtype.names and var.size == 1):
        raise ValueError(f"{path}: variable '{key}' is not a 1x1 MATLAB struct "
                         f"(got {type(var).__name__} {getattr(var, 'shape', '')})")
    record = var.reshape(-1)[0]
    return {name: record[name] for name in var.dtype.names}


def _field(path, fields: dict, key: str, what: str) -> np.ndarray:
    if key not in fields:
        raise ValueError(f"{path}: field '{key}' missing (expected {what}); "
                         f"found {sorted(fields)}")
    return fields[key]


def _numeric(path, key: str, arr) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{path}: '{key}' must be a numeric array, got dtype {arr.dtype}")
    return arr


def _float32(path, key: str, arr, shape: tuple) -> np.ndarray:
    """Check ``arr`` against ``shape`` (None = any) and return a C-ordered float32 copy."""
    arr = _numeric(path, key, arr)
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        want = "(" + ", ".join("k" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{path}: '{key}' has shape {arr.shape}, expected {want}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{path}: '{key}' contains NaN or infinite values")
    return out


def _vector(path, key: str, arr, length=None) -> np.ndarray:
    """A MATLAB row or column vector (1,k)/(k,1) (or 1-D) -> (k,) array, length checked."""
    arr = _numeric(path, key, arr)
    if arr.ndim > 2 or (arr.ndim == 2 and min(arr.shape) > 1):
        raise ValueError(f"{path}: '{key}' has shape {arr.shape}, expected a vector (k,1) or (1,k)")
    arr = arr.reshape(-1)
    if length is not None and arr.size != length:
        raise ValueError(f"{path}: '{key}' has {arr.size} entries, expected {length}")
    return arr


def one_based_to_index(path, key: str, arr, n_max=None) -> np.ndarray:
    """1-based MATLAB indices (any numeric dtype) -> 0-based int32 of the same shape.

    Raises ValueError naming ``path`` and ``key`` if a value is not an integer, is < 1, or is
    > ``n_max`` (when given: the number of addressable items).
    """
    arr = _numeric(path, key, arr)
    if arr.size == 0:
        return np.zeros(arr.shape, dtype=np.int32)
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr) & (arr == np.round(arr))):
        raise ValueError(f"{path}: '{key}' must hold integer (1-based MATLAB) indices")
    lo, hi = arr.min(), arr.max()
    if lo < 1 or (n_max is not None and hi > n_max):
        limit = f"1..{n_max}" if n_max is not None else ">= 1"
        raise ValueError(f"{path}: '{key}' index out of range: values span {lo:g}..{hi:g}, "
                         f"expected 1-based indices in {limit}")
    return np.ascontiguousarray(arr.astype(np.int64) - 1, dtype=np.int32)


def index_to_one_based(where, key: str, arr, n_max=None) -> np.ndarray:
    """0-based integer indices -> float64 1-based (MATLAB's double), range-checked."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{where}: '{key}' must be an integer index array, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or (n_max is not None and arr.max() >= n_max)):
        limit = f"0..{n_max - 1}" if n_max is not None else ">= 0"
        raise ValueError(f"{where}: '{key}' index out of range: values span "
                         f"{arr.min()}..{arr.max()}, expected 0-based indices in {limit}")
    return arr.astype(np.float64) + 1.0


def _cell_column(rows: list) -> np.ndarray:
    """A list of 1-D arrays -> the object array savemat writes as a (K,1) MATLAB cell."""
    cell = np.empty((len(rows), 1), dtype=object)
    for i, row in enumerate(rows):
        cell[i, 0] = np.asarray(row, dtype=np.float64).reshape(1, -1)
    return cell
