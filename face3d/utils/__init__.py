"""Small helpers every layer may use (they import nothing from face3d above them).

``atomic`` (atomic file writes), ``progress`` (``Progress`` bars, ``format_duration``), ``errors``
(``InputFileError``, the one unusable-input-file exception), ``matfile`` (``read_mat``, the one .mat reader),
``image_header`` (format, size and EXIF orientation without decoding), ``jpeg_region`` (decoding the part of a JPEG
that crops read), ``npyfile`` (the one .npy reader), ``output_names`` (``refuse_shared_stems``: inputs whose stems
name the same outputs) and ``unit_floats`` (``refuse_above_one``: float pixel values in 0-255 where [0, 1] is read).
"""
from face3d.utils.progress import Progress, format_duration

__all__ = ["Progress", "format_duration"]
