"""The one reader of ``.npy`` files (position maps, landmark arrays, canonical vertices), never unpickled: the header
is checked first with numpy's ``read_magic`` and ``read_array_header``, and every failure is one InputFileError
naming the file and saying what it should have held."""
import math
import os
import tokenize

import numpy as np

from face3d.utils.errors import InputFileError

__all__ = ["read_npy_header", "data_bytes", "load_npy"]


def read_npy_header(path, what="array"):
    """The header of a ``.npy`` file, read without its array (numpy's ``read_magic`` and ``read_array_header``).

    Args:
        path: the file. what: what it holds, for the message (``"position map"``: "not a .npy position map").
    Returns:
        (shape tuple, fortran_order bool, dtype, offset of the array data in bytes).
    Raises:
        InputFileError (a ValueError) naming the file, with numpy's reason: not a .npy file (its first bytes are
            not numpy's magic string, as for an image in a map column), empty, or a short or damaged header.
    """
    with open(path, "rb") as handle:
        return _header(handle, path, what)


def data_bytes(shape, dtype) -> int:
    """Bytes of the array data a ``.npy`` header declares: prod(shape) x itemsize (Python ints, never overflowing)."""
    return math.prod(shape) * dtype.itemsize


def _header(handle, path, what):
    """``read_npy_header`` from an open binary ``handle`` at the file's start (``path`` names it in errors)."""
    try:
        version = np.lib.format.read_magic(handle)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran_order, dtype = read_header(handle)
    except (ValueError, EOFError, SyntaxError, TypeError) as error:
        raise InputFileError(path, f"not a .npy {what} ({error})") from None
    except tokenize.TokenError:  # numpy's for a header whose brackets do not close; its text is a tuple
        raise InputFileError(path, f"not a .npy {what} (the header's brackets do not close)") from None
    return shape, fortran_order, dtype, handle.tell()


def load_npy(path, what="array") -> np.ndarray:
    """The array of a ``.npy`` file as stored, its header checked first (``read_npy_header``), never unpickled.

    Args:
        path: the file. what: what it holds, for the message (``"position map"``: "not a .npy position map").
    Raises:
        FileNotFoundError (an OSError naming the file): missing. InputFileError (a ValueError) naming the file:
            not a .npy file, empty, with a damaged header, shorter than its header declares (checked before any
            array is allocated) or holding pickled objects (numpy's reason).
    """
    with open(path, "rb") as handle:
        # first: np.load takes any file without numpy's magic for a pickle, and says so
        shape, _, dtype, offset = _header(handle, path, what)
        if not dtype.hasobject:  # np.load would first allocate the declared array (a damaged header: any size)
            held, declared = os.fstat(handle.fileno()).st_size - offset, data_bytes(shape, dtype)
            if held < declared:
                raise InputFileError(path, f"not a .npy {what} (truncated: its header declares {shape} {dtype}, "
                                           f"{declared} bytes of data, the file holds {held})")
        handle.seek(0)
        try:
            return np.load(handle, allow_pickle=False)
        except (ValueError, EOFError) as error:  # numpy's: short data, an object dtype
            raise InputFileError(path, f"not a .npy {what} ({error})") from None
