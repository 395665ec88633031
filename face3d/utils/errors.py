"""The one exception for an unusable input file (missing, unreadable, or with wrong content)."""

__all__ = ["InputFileError"]


class InputFileError(ValueError):
    """An input file that cannot be used: ``str(error)`` is ``"<path>: <problem>"`` (just the problem when no single
    file is to blame, path None). Batch jobs catch it to log and skip the item.

    Attributes:
        path: the offending file (str or Path as given) or None; problem: what is wrong with it.
    """

    def __init__(self, path, problem: str):
        super().__init__(problem if path is None else f"{path}: {problem}")
        self.path = path
        self.problem = problem

    def __reduce__(self):  # pickles (process pools) with both arguments, not just the message
        return type(self), (self.path, self.problem)
