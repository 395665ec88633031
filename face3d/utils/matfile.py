"""The one reader of MATLAB .mat files (scipy), with errors that name the file, and the writer of the project's
own (the model files, 300W-LP samples); mesh exports and the HTTP service's answers write theirs with scipy."""
import os
from pathlib import Path

import numpy as np
import scipy.io as sio

from face3d.utils.errors import InputFileError

__all__ = ["read_mat", "mat_variable_names", "matlab_kind", "save_mat", "MAT_HEADER_TEXT"]

# HDF5's format signature, at offset 0 or after a user block of 512 bytes (MATLAB v7.3 files keep their MAT header
# there; scipy recognises those and raises NotImplementedError, so this only names other HDF5 files).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
HDF5_SIGNATURE_OFFSETS = (0, 512)
# The first byte of a pickle of protocol 2 or later (its PROTO opcode).
PICKLE_PROTO = 0x80


def _other_format(path: Path):
    """'an HDF5 file' or 'a Python pickle' when the file opens with that format's signature, else None: what a
    file scipy cannot read as MATLAB is instead."""
    try:
        with open(path, "rb") as f:
            head = f.read(HDF5_SIGNATURE_OFFSETS[-1] + len(HDF5_SIGNATURE))
    except OSError:
        return None
    if any(head[at:at + len(HDF5_SIGNATURE)] == HDF5_SIGNATURE for at in HDF5_SIGNATURE_OFFSETS):
        return "an HDF5 file"
    if head[:1] == bytes([PICKLE_PROTO]):
        return "a Python pickle"
    return None


def read_mat(path, variable_names=None, mat_dtype: bool = False, other_format_hint: str = "") -> dict:
    """Read a MATLAB 5/7 .mat file with scipy, with errors that name the file.

    Args:
        path: str or Path of the .mat file.
        variable_names: optional sequence of variable names to read (others are skipped, which
            matters for the ~500 MB ``01_MorphableModel.mat``).
        mat_dtype: False: each array in the type its data is stored in (MATLAB's save stores a double array of
            small whole numbers as uint8/uint16, a logical as uint8); True: in its MATLAB class (double -> float64,
            logical -> bool), for code that writes the arrays back with their classes.
        other_format_hint: what to use instead when the file is an HDF5 file (not MATLAB v7.3) or a Python pickle,
            appended to that message (the model loaders point at the BFM converter).
    Returns:
        dict name -> value as ``scipy.io.loadmat`` returns it (no squeezing, structs as records).
    Raises:
        FileNotFoundError: the file does not exist.
        InputFileError (a ValueError): the file is not a readable MATLAB 5/7 file (MATLAB v7.3/HDF5 included); an
            HDF5 file or a pickle is named so, e.g. ``"<path>: an HDF5 file, not a MATLAB .mat file"``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        return sio.loadmat(os.fspath(path), variable_names=variable_names, mat_dtype=mat_dtype)
    except NotImplementedError as err:  # scipy raises this for v7.3 (HDF5) files
        raise InputFileError(path, f"MATLAB v7.3 (HDF5) files are not supported; "
                                   f"re-save it in MATLAB with save(..., '-v7') ({err})") from err
    except Exception as err:  # scipy raises assorted types on corrupt files
        other_format = _other_format(path)
        if other_format is not None:
            hint = f": {other_format_hint}" if other_format_hint else ""
            raise InputFileError(path, f"{other_format}, not a MATLAB .mat file{hint}") from err
        raise InputFileError(path, f"not a readable MATLAB .mat file ({type(err).__name__}: {err})") from err


def mat_variable_names(path):
    """The sorted names of the variables in a .mat file (scipy's ``whosmat``, no array read), for messages about a
    variable ``read_mat(path, variable_names=...)`` did not find; None when scipy cannot list them."""
    try:
        return sorted(name for name, _shape, _matlab_class in sio.whosmat(os.fspath(path)))
    except Exception:  # scipy raises assorted types on files it cannot list; the message then goes without
        return None


# numpy dtype kinds of what scipy returns for each MATLAB class that is not a real numeric array
_NON_NUMERIC_KINDS = {"O": "cell", "V": "struct", "U": "char array", "S": "char array", "c": "complex array"}


def matlab_kind(value) -> str:
    """What a value ``read_mat`` returned holds, for checks and error messages: 'numeric array' (a real MATLAB
    array, double, single, integer or logical), 'cell', 'struct', 'char array', 'complex array' or, for a
    sparse matrix, its Python type name. Only a 'numeric array' converts to a float64 array."""
    if not isinstance(value, np.ndarray):
        return type(value).__name__
    return _NON_NUMERIC_KINDS.get(value.dtype.kind, "numeric array")


# The 116-byte text field opening every MATLAB 5 file; scipy puts the current time in it, which
# would make identical models give different bytes (the default model's cache must not).
MAT_HEADER_TEXT = b"MATLAB 5.0 MAT-file, written by face3d.morphable_model.load"


def save_mat(target, variables: dict) -> None:
    """Write ``variables`` as an uncompressed MATLAB 5 .mat file (what MATLAB's ``save`` reads and writes).

    Dicts become 1x1 structs, object arrays cells, 1-D arrays columns.  The header text is fixed,
    so equal inputs give byte-identical files.

    Args:
        target: a path (its parent folder is created if missing) or a binary file object open for writing,
            e.g. ``face3d.utils.atomic.atomic_file``'s.
    """
    if not hasattr(target, "write"):
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            save_mat(f, variables)
        return
    start = target.tell()
    sio.savemat(target, variables, format="5", oned_as="column")
    end = target.tell()
    target.seek(start)
    target.write(MAT_HEADER_TEXT.ljust(116, b" "))
    target.seek(end)
