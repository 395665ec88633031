"""The one exception for an unusable input file (missing, unreadable, or with wrong content), what a batch job
needs of a refused write: the errors that stop it (``STORAGE_REFUSED``) and one naming its file (``os_error_at``),
a library error's first line for a one-line message (``first_line``) and the pip command of an optional dependency
group (``install_command``)."""
import errno
import os

__all__ = ["InputFileError", "STORAGE_REFUSED", "refuses_storage", "os_error_at", "first_line", "install_command"]

# errno values of a file system that takes no more bytes (full, over quota, read-only): every later write would fail
# the same way, so a batch job stops at the first one instead of failing each remaining item.
STORAGE_REFUSED = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def refuses_storage(error) -> bool:
    """Whether ``error`` is an OSError of a file system that takes no more bytes (``STORAGE_REFUSED``)."""
    return isinstance(error, OSError) and error.errno in STORAGE_REFUSED


def os_error_at(error, path):
    """An OSError (the subclass its errno maps to) with ``error``'s errno and message, naming ``path``: for an error
    that names no file (a failed write or close reports only the errno) or names one relative to a folder's
    descriptor (``raise os_error_at(error, path) from error``)."""
    return OSError(error.errno, error.strerror or str(error), os.fspath(path))


class InputFileError(ValueError):
    """An input file that cannot be used: ``str(error)`` is ``"<path>: <problem>"``, or ``"<path>:<line>: <problem>"``
    for a text file's line (just the problem when no single file is to blame, path None). Batch jobs catch it to log
    and skip the item.

    Attributes:
        path: the offending file (str or Path as given) or None; problem: what is wrong with it; line: the 1-based
        line number or None.
    """

    def __init__(self, path, problem: str, line=None):
        where = f"{path}:{line}" if line is not None else path
        super().__init__(problem if path is None else f"{where}: {problem}")
        self.path = path
        self.problem = problem
        self.line = line

    def __reduce__(self):  # pickles (process pools) with every argument, not just the message
        return type(self), (self.path, self.problem, self.line)


def first_line(error) -> str:
    """The first line of an error's message, without surrounding blanks ('' for an empty one): a library's
    multi-line message inside a one-line error."""
    return (str(error).strip().splitlines() or [""])[0]


def install_command(extra):
    """The pip command installing face3d's optional dependency group ``extra`` of pyproject.toml, e.g.
    ``pip install 'face3d[detect]'``: every message telling what to install words it so."""
    return f"pip install 'face3d[{extra}]'"
