"""Output files of ``face3d generate``: atomic per-sample writes, ``.npy`` encoding, the journal, resume checks.

Each file is written under a hidden temporary name in its final folder and renamed, so no half-written file is
ever visible. A sample is done when its record (output names, each file's size and checksum, the settings'
fingerprint) is in its process's journal under ``<output>/.done``; a resume trusts a record only while the files
are still as written (``damaged_outputs``).
"""
import collections.abc
import contextlib
import functools
import io
import json
import os
import socket
import time
import zlib

import cv2
import numpy as np

from face3d.mesh.float16 import to_float16
from face3d.utils.atomic import atomic_write_bytes, temp_file_name
from face3d.utils.errors import os_error_at
from face3d.utils.jpeg_encode import encode_jpeg, rgba_viewed

__all__ = ["OutputFolders", "Journal", "write_sample", "encode_image", "write_image", "read_journals", "done_outputs",
           "is_done", "earlier_files", "damaged_outputs", "input_checks", "file_check", "DONE_DIR", "CHECKED_BYTES"]

DONE_DIR = ".done"
JOURNAL_PREFIX = "journal."
JPEG_QUALITY = 95


class OutputFolders:
    """Descriptors of the output folders one process writes into, each created and opened on first use: files
    are then created and renamed relative to their folder (``dir_fd``) instead of resolving the whole path for
    every system call."""

    def __init__(self):
        self._fds = {}

    def fd(self, folder):
        """The descriptor of ``folder`` (a path string), creating the folder if needed."""
        fd = self._fds.get(folder)
        if fd is None:
            os.makedirs(folder, exist_ok=True)
            fd = self._fds[folder] = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        return fd

    def close(self):
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def _write_file_atomically(folder_fd, name, views):
    """``atomic_write_bytes`` for the per-sample files, in the folder open as ``folder_fd``: the hidden temporary twin
    (``temp_file_name``: ``.<name>.partial``) receives the byte views ``views`` (``_byte_views``) in order (one
    ``writev``, no joined copy) and is renamed onto ``name``; a file left at the twin's name is removed when the
    exclusive open finds it, never written through (``atomic_file``). No fsync: a crash may lose the last files but
    never shows a partial one, and the journal record, appended last, is what a resumed run trusts."""
    tmp = temp_file_name(name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        try:
            fd = os.open(tmp, flags, 0o666, dir_fd=folder_fd)
        except FileExistsError:  # a killed run's leftover: removed only then, the usual write pays no extra call
            os.unlink(tmp, dir_fd=folder_fd)
            fd = os.open(tmp, flags, 0o666, dir_fd=folder_fd)
        try:
            views = [v for v in views if v]
            while views:  # one writev for all chunks, unless the kernel takes fewer bytes
                written = os.writev(fd, views)
                while views and written >= len(views[0]):
                    written -= len(views.pop(0))
                if written:
                    views[0] = views[0][written:]
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=folder_fd)
        raise


# A resume checks each finished file's size and the crc32 of its first and last 4 KiB: a truncated, emptied or
# rewritten file is caught while reading at most 8 KiB per file (a full checksum would read the whole data set).
CHECKED_BYTES = 4096


def _checked_ranges(size):
    """The byte ranges of a ``size``-byte file whose crc32 a resume checks: the first and the last
    ``CHECKED_BYTES`` (the whole file up to twice that)."""
    head = min(size, CHECKED_BYTES)
    return (0, head), (max(head, size - CHECKED_BYTES), size)


def _byte_views(chunks):
    """Flat byte views of the buffers ``chunks`` (no copies)."""
    return [memoryview(chunk).cast("B") for chunk in chunks]


def _buffers_check(views):
    """``[size, crc32 of _checked_ranges]`` of the byte views ``views`` (``_byte_views``) written one after the
    other."""
    size, crc = sum(len(view) for view in views), 0
    for start, stop in _checked_ranges(size):
        offset = 0
        for view in views:
            part = view[max(start - offset, 0):max(stop - offset, 0)]
            crc = zlib.crc32(part, crc)
            offset += len(view)
    return [size, crc]


def file_check(path):
    """``[size, crc32 of _checked_ranges]`` of the finished file ``path``, as ``_buffers_check`` gives for the
    buffers written into it (for outputs written by other means than ``write_sample``)."""
    with open(path, "rb") as f:
        size, crc = os.fstat(f.fileno()).st_size, 0
        for start, stop in _checked_ranges(size):
            f.seek(start)
            crc = zlib.crc32(f.read(stop - start), crc)
    return [size, crc]


def _file_problem(path, check):
    """What is wrong with the finished file ``path`` against its ``[size, crc]`` (``_buffers_check``), or None."""
    size, crc = check
    try:
        actual_size, actual_crc = file_check(path)
    except FileNotFoundError:
        return f"{os.path.basename(path)} is missing"
    except OSError as error:
        return f"{os.path.basename(path)} cannot be read ({error.strerror})"
    if actual_size != size:
        return f"{os.path.basename(path)} has {actual_size} bytes, {size} were written"
    return None if actual_crc == crc else f"{os.path.basename(path)} changed since it was written"


def encode_image(ext, image):
    """(h, w, 3) uint8 RGB or (h, w) uint8 grey encoded as ``ext`` (".jpg" at quality ``JPEG_QUALITY``, ".png",
    ...); a uint8 buffer. An RGB JPEG goes through libjpeg-turbo where it gives OpenCV's bytes
    (``face3d.utils.jpeg_encode``: no colour conversion, an ``rgba[..., :3]`` view read in place), the rest through
    OpenCV. ValueError when OpenCV cannot encode it."""
    pixels = np.asarray(image)
    rgb = bool(pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.size)
    if rgb and ext in (".jpg", ".jpeg"):
        encoded = encode_jpeg(pixels, JPEG_QUALITY)
        if encoded is not None:
            return encoded
    rgba = rgba_viewed(pixels) if rgb else None
    if rgba is not None:  # one conversion of the RGBA it views, not a strided copy first
        pixels = cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGR)
    else:
        pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
        if pixels.ndim == 3:  # cvtColor swaps R and B with the same bytes as image[..., ::-1], without a strided copy
            pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(ext, pixels, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if ext == ".jpg" else [])
    if not ok:
        raise ValueError(f"OpenCV could not encode an image of shape {image.shape} as {ext}")
    return buf



def write_image(path, image):
    """Write ``image`` to ``path`` in the format of its suffix (``encode_image``) through a hidden temporary twin
    (``atomic_write_bytes``): a failed write (a full disk) raises an OSError naming ``path`` and leaves no file.

    Args:
        path: the file (str or Path).
        image: (h, w, 3) RGB or (h, w) grey; uint8, or float in [0, 1] stored as ``round(clip(image, 0, 1) * 255)``.
    Raises:
        ValueError: OpenCV cannot encode it as that format.
    """
    pixels = np.asarray(image)
    if pixels.dtype != np.uint8:
        pixels = np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
    # encoded here and written by Python: cv2.imwrite reports success when a full disk took the file's bytes
    atomic_write_bytes(path, encode_image(os.path.splitext(path)[1], pixels))

@functools.lru_cache(maxsize=8)
def _npy_header(shape, dtype):
    """The ``.npy`` (format 1.0) header ``np.save`` writes for a C-order array of ``shape`` and ``dtype``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue()


def _npy_chunks(array, dtype):
    """The bytes of ``np.save(f, array.astype(dtype))`` as (header, data) buffers: the cached header, then the
    array in C order. float32 to float16 is ``face3d.mesh.float16.to_float16``: ``array + 0.0`` rounded to nearest
    even, so a -0.0 comes out as +0.0 (the bytes OpenCV 5's ``cv2.add(array, 0.0, dtype=cv2.CV_16F)`` gives)."""
    array = np.asarray(array)
    dtype = np.dtype(dtype)
    if dtype == np.float16 and array.dtype == np.float32:
        data = to_float16(array)
    else:
        data = np.ascontiguousarray(array, dtype=dtype)
    return _npy_header(data.shape, data.dtype), data.reshape(-1).view(np.uint8)


def _journal_lines(output):
    """Every complete line (bytes, with its newline) of every journal under ``<output>/.done``, read line by line;
    the text after a journal's last newline is a record cut short by a crash and is skipped."""
    folder = os.path.join(output, DONE_DIR)
    names = sorted(n for n in os.listdir(folder) if n.startswith(JOURNAL_PREFIX)) if os.path.isdir(folder) else []
    for name in names:
        with open(os.path.join(folder, name), "rb") as f:
            for line in f:
                if line.endswith(b"\n"):
                    yield line


class JournalRecords(collections.abc.Mapping):
    """``{rel: record}`` of ``read_journals``, each record kept as its journal line (bytes) and decoded at each
    look-up: decoded, a record takes several times its line (a generated sample with eight angles: 5.5 KB, most of
    it in the 18 file checks, against 1.3 KB for its line and key), and a run holds one for each of its samples."""

    def __init__(self, stamped_lines):
        self._stamped_lines = stamped_lines  # {rel: (t, line)}

    def __getitem__(self, rel):
        return json.loads(self._stamped_lines[rel][1])

    def __contains__(self, rel):  # without decoding the record, as Mapping's would
        return rel in self._stamped_lines

    def __iter__(self):
        return iter(self._stamped_lines)

    def __len__(self):
        return len(self._stamped_lines)


def read_journals(output, rels=None):
    """The latest journal record of each sample, ``{rel: record}`` (see ``Journal``; a ``JournalRecords``). With
    ``rels`` (a set of rels), only those samples' records are kept: a run of some of the samples (a shard) holds
    none of the others'. A damaged line is skipped: not JSON, or not a record (an object with a string ``sample``
    and a number ``t``)."""
    stamped_lines = {}
    for line in _journal_lines(output):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        rel = record.get("sample") if isinstance(record, dict) else None
        t = record.get("t") if rel is not None else None
        if not isinstance(rel, str) or isinstance(t, bool) or not isinstance(t, (int, float)):
            continue
        if rels is not None and rel not in rels:
            continue
        if rel not in stamped_lines or t >= stamped_lines[rel][0]:
            stamped_lines[rel] = (t, line)
    return JournalRecords(stamped_lines)


def done_outputs(latest, rel, fingerprint):
    """The output names of a sample done under ``fingerprint`` according to ``read_journals``' ``latest``, or None."""
    record = latest.get(rel)
    return list(record["outputs"]) if is_done(record, fingerprint) else None


def is_done(record, fingerprint):
    """Whether a sample's journal record (or None) says it was done under ``fingerprint``, with its file checks."""
    return record is not None and record.get("fingerprint") == fingerprint and "files" in record


def earlier_files(record):
    """The file names a sample's folder may still hold from its earlier runs, by its latest journal ``record``
    (``read_journals``; None for a sample never journalled): a finished record's ``files``, or the ``earlier_files``
    a redo line carries over from the record it superseded (``Journal.mark_redo``), for a rewrite that did not
    finish (killed, failed) leaves them on disk; [] for a record of an earlier release without ``files``. Only
    plain names count: one with a path separator (a damaged journal's) would name a file in another folder."""
    if record is None:
        return []
    names = sorted(record["files"]) if "files" in record else list(record.get("earlier_files", ()))
    return [name for name in names if _is_plain_name(name)]


def input_checks(ref):
    """``{"image": [size, crc], "mat": [size, crc]}`` (``file_check``) of a sample's input files, recorded with its
    outputs so that a resume redoes the sample when they change (``face3d fit`` rewrites a ``.mat`` it refits);
    None when one cannot be read (the sample then fails on its own)."""
    try:
        return {"image": file_check(ref.image_path), "mat": file_check(ref.mat_path)}
    except OSError:
        return None


def damaged_outputs(output, ref, record):
    """What is wrong with the files of a done sample (``ref``, its journal ``record``): the first file that is
    missing, of another size or another checksum than when written (see ``CHECKED_BYTES``), or an input (image,
    ``.mat``) that changed since its outputs were made from it (records of earlier releases hold no input checks
    and are trusted); None when all is as recorded."""
    folder = os.path.join(output, ref.folder)
    for name, check in record["files"].items():
        problem = _file_problem(os.path.join(folder, name), check)
        if problem:
            return problem
    if record.get("inputs"):
        current = input_checks(ref) or {}
        for key, path in (("image", ref.image_path), ("mat", ref.mat_path)):
            if current.get(key) != record["inputs"].get(key):
                return f"its input {os.path.basename(path)} changed since its outputs were made from it"
    return None


class Journal:
    """The append-only record of the samples one process finished: ``<output>/.done/journal.<host>.<pid>.<ns>.txt``,
    one JSON line per sample, ``{"sample": rel, "fingerprint": ..., "outputs": [names], "files": {file name:
    [size, crc]}, "inputs": {"image": [size, crc], "mat": [size, crc]}, "t": ns}`` (``files`` and ``inputs``:
    what a resume checks, see ``damaged_outputs``), appended with
    one ``write`` (more only where the kernel takes fewer bytes) once all of the sample's files are in place (a
    line cut short by a crash or a full disk does not count); a ``{"sample": rel, "redo": true, "t": ns}`` line
    marks a sample about to be rewritten (with ``"earlier_files": [names]``, ``earlier_files``, when its earlier
    outputs are known). A sample's state is its record with the latest ``t`` over all journals.
    Opened on first use in each process (forked workers open their own)."""

    def __init__(self, output):
        self.output = output
        self._fd, self._pid, self._path = None, None, None

    def append(self, records):
        """Append records (dicts without ``t``), stamped with the wall clock in ns; an OSError names the journal."""
        if self._pid != os.getpid():
            folder = os.path.join(self.output, DONE_DIR)
            os.makedirs(folder, exist_ok=True)
            name = f"{JOURNAL_PREFIX}.{socket.gethostname()}.{os.getpid()}.{time.time_ns()}.txt"
            self._path = os.path.join(folder, name)
            self._fd, self._pid = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666), os.getpid()
        now = time.time_ns()
        text = "".join(json.dumps({**record, "t": now}, separators=(",", ":")) + "\n" for record in records)
        data, written = text.encode("utf-8"), 0
        try:
            while written < len(data):  # a write may take fewer bytes (a signal, a nearly full disk): the rest follows
                written += os.write(self._fd, data[written:])
        except OSError as error:
            raise os_error_at(error, self._path) from error

    def mark_redo(self, rels, earlier=None):
        """Append a redo line for each sample of ``rels`` about to be rewritten, so that no earlier record of it
        outlives the redo (a run's journals then hold as finished only what it finished). ``earlier``: ``{rel:
        [file names]}`` (``earlier_files``) for the lines to carry, so that the files of the superseded record are
        still known should the rewrite not finish."""
        lines = []
        for rel in rels:
            line = {"sample": rel, "redo": True}
            if earlier and earlier.get(rel):
                line["earlier_files"] = earlier[rel]
            lines.append(line)
        if lines:
            self.append(lines)

    def close(self):
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd, self._pid, self._path = None, None, None


def _is_plain_name(name):
    """Whether ``name`` is a non-empty name without a path separator (a file in its folder)."""
    return bool(name) and "/" not in name and "\\" not in name


def _output_files(item, posmap_dtype):
    """(file name, byte buffers) of one generated output: the crop ``.jpg``, the map ``.npy`` and optionally the
    preview ``.png``."""
    if not _is_plain_name(item.name):
        raise ValueError(f"generated sample name must be a plain file name, got {item.name!r}")
    files = [(f"{item.name}.jpg", (encode_image(".jpg", item.image),)),
             (f"{item.name}.npy", _npy_chunks(item.posmap, posmap_dtype))]
    if item.preview is not None:
        files.append((f"{item.name}_preview.png", (encode_image(".png", item.preview),)))
    return files


def write_sample(output, ref, generated, posmap_dtype, folders, replaces=()):
    """Write the outputs of one sample, then remove the files of its earlier outputs this write did not rewrite.
    Returns the output names and ``{file name: [size, crc]}`` of the files written (``_buffers_check``); a failed
    write or removal removes the sample's files written so far and raises an OSError naming the output's path.

    The caller journals the sample after this returns: a crash before that leaves the sample's redo line
    (``Journal.mark_redo``, carrying its earlier files) as its latest record, so no record claims a removed file and the
    next run redoes the sample, its outputs ending exactly those of its settings.

    Args:
        folders: the process's ``OutputFolders``.
        replaces: file names in the sample's output folder from its earlier record (``earlier_files``); those this
            write does not produce are removed (one already gone is skipped; a name with a separator is ignored).
    """
    folder = os.path.join(output, ref.folder)
    folder_fd = folders.fd(folder)
    written, names, checks = [], [], {}
    try:
        for item in generated:
            for name, chunks in _output_files(item, posmap_dtype):
                views = _byte_views(chunks)
                try:
                    _write_file_atomically(folder_fd, name, views)
                except OSError as error:  # it names no file, or the temporary one relative to the folder
                    raise os_error_at(error, os.path.join(folder, name)) from error
                written.append(name)
                checks[name] = _buffers_check(views)
            names.append(item.name)
        for name in replaces:
            if name not in checks and _is_plain_name(name):
                try:
                    os.unlink(name, dir_fd=folder_fd)
                except FileNotFoundError:
                    pass
                except OSError as error:
                    raise os_error_at(error, os.path.join(folder, name)) from error
    except BaseException:
        for name in written:  # a sample is all or nothing
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=folder_fd)
        raise
    return names, checks

