"""Small utilities shared by the command-line tools (progress reporting)."""
from face3d.utils.progress import Progress, format_duration

__all__ = ["Progress", "format_duration"]
