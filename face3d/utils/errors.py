"""The one exception for an unusable input file (missing, unreadable, or with wrong content)."""

__all__ = ["InputFileError"]


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
