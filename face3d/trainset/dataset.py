"""Generate a PRNet training set from a whole 300W-LP-style folder: discovery, sharding, workers, resume.

The per-sample work (crop, position map, rotations) is ``face3d.trainset.sample.TrainsetGenerator``; this
module runs it over a dataset and owns everything that makes a long run safe:

* Discovery (``discover_samples``): a sample is a ``.mat`` parameter file with an image of the same stem
  (``.jpg``, ``.jpeg`` or ``.png``). In the 300W-LP tree (the root holds ``AFW``, ``HELEN``, ``IBUG``, ``LFPW`` or
  their ``_Flip`` twins) only those folders are walked, so ``landmarks/`` and ``Code/`` are never samples;
  any other root is walked whole except ``landmarks/`` folders and hidden folders. Samples are sorted by their
  relative path (posix separators, no extension), which defines the order of everything below.
* ``--limit L`` keeps the first L samples of that order; ``--shard K/N`` then keeps the K-th of N contiguous,
  near-equal blocks (``select_shard``), so shard label files concatenated in K order are the whole label file:
  with every shard writing to the same output folder, ``cat OUT/trainDataLabel.part-*-of-N.txt >
  OUT/trainDataLabel.txt`` (K is zero-padded, so the shell's sorted glob is K order), or rerun without
  ``--shard`` once all shards are done (every sample is skipped and the whole label file is written).
* Seeds (``sample_seed``): each sample's seed is a hash of ``--seed`` and its relative path, and the generator's
  batched vertices are bit-identical whatever the batch (``TrainsetGenerator.process_iter``), so outputs do not
  depend on the worker count, the chunking, the order of completion, the shard or what a resumed run had left.
  Bit-identical float32 results also need the same BLAS set-up: the command line runs one BLAS thread per
  process (``OPENBLAS_NUM_THREADS=1`` etc. unless already set), so runs and resumes of the same command match;
  a Python caller should do the same.
* Outputs mirror the input folders under ``output``: ``<name>.jpg`` (the crop), ``<name>.npy`` (the position
  map, float16 unless float32 is requested) and optionally ``<name>_preview.png``, for the plain sample and each
  rotation ``<stem>_angle_<deg>``. Each file is written under a hidden temporary name in its final folder and
  ``os.replace``-d, so no half-written file is ever visible. A sample is done when its record, holding the
  output names, each file's size and checksum, and a fingerprint of the settings, is in a journal: each process
  appends one line per finished sample, after its files are in place, to its own
  ``<output>/.done/journal.<host>.<pid>.<ns>.txt`` (one ``write``, no extra file per sample; see ``_Journal``).
  A restart (even after SIGKILL) skips done samples whose files are still as written (size, and crc32 of the
  first and last ``CHECKED_BYTES``) and redoes the rest, whose rewrite reuses and renames any leftover temporary
  file; a sample whose redo fails leaves the label file. ``.uv-data.<host>.<pid>.partial`` folders of killed
  runs on this host are removed.
* A worker process that dies (killed, out of memory) fails the sample it was on (``WORKER_DIED``), found by
  running the unfinished samples of the chunks then in flight again, each chunk's first alone; the run goes on.
* ``trainDataLabel.txt`` (``trainDataLabel.part-KK-of-N.txt`` for a shard) is written at the end from the
  journals in sample order, one ``<image path> <npy path>`` line per output, so an interrupted and resumed run
  gives the same bytes as an uninterrupted one. Paths are absolute by default (``os.path.abspath`` of the
  output folder), or relative to the output folder.
* A bad sample (unreadable image, missing keys, NaN parameters, face outside the image) is logged at WARNING
  with its file and reason, counted in the summary and skipped; it leaves no output. So is, up front, a sample
  whose name the label file cannot hold (not UTF-8, or with whitespace); a folder that cannot be listed is logged
  and listed in the summary's ``unreadable_folders``.
* ``summary.json`` (``summary.part-KK-of-N.json`` for a shard) records written / skipped / failed counts and
  every failure's reason; ``<output>/uv-data/`` receives PRNet's UV files for the model in use (or a copy of the
  ``uv_data`` folder given, checked against the model).

Memory stays bounded whatever the dataset size: samples go through the generator in chunks of at most
``CHUNK_SIZE`` (128) whose vertices share one product (82 MB per process on a BFM-sized model, beside the
generator's tiled copy of the basis, 146 MB, made before the workers fork and shared by them), each sample is
written as soon as it is made, workers return only short records, and at most ``4 * workers`` chunks of tasks
(paths and seeds) are in flight.
"""
import concurrent.futures as cf
import contextlib
import dataclasses
import functools
import hashlib
import io
import itertools
import json
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from face3d.trainset.uv_layout import build_uv_data, check_uv_data_fits, load_uv_data, load_uv_model, write_uv_data
from face3d.utils.atomic import TEMP_SUFFIX, atomic_file, atomic_write_bytes
from face3d.utils.errors import InputFileError
from face3d.utils.progress import Progress

__all__ = [
    "SampleRef", "discover_samples", "parse_shard", "select_shard", "sample_seed", "label_file_name",
    "summary_file_name", "config_fingerprint", "default_worker_count", "generate_dataset",
    "read_journals", "done_outputs",
    "LABEL_FILE", "SUMMARY_FILE", "DONE_DIR", "UV_DATA_DIR", "TEMP_SUFFIX", "KNOWN_300WLP_FOLDERS",
    "IMAGE_EXTENSIONS", "done_marker_path", "pool_context", "run_chunks_in_pool",
]

logger = logging.getLogger(__name__)

KNOWN_300WLP_FOLDERS = ("AFW", "HELEN", "IBUG", "LFPW", "AFW_Flip", "HELEN_Flip", "IBUG_Flip", "LFPW_Flip")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
LABEL_FILE = "trainDataLabel.txt"
SUMMARY_FILE = "summary.json"
DONE_DIR = ".done"
JOURNAL_PREFIX = "journal."
UV_DATA_DIR = "uv-data"
JPEG_QUALITY = 95


@dataclass(frozen=True)
class SampleRef:
    """One input sample.

    Attributes:
        rel: relative path of the sample from the root, posix separators, no extension ("AFW/AFW_134212_1_0").
        image_path: the image file (may not exist: the sample then fails with that reason).
        mat_path: the ``.mat`` parameter file.
    """
    rel: str
    image_path: str
    mat_path: str

    @property
    def stem(self):
        """File name of the sample without folder and extension."""
        return self.rel.rsplit("/", 1)[-1]

    @property
    def folder(self):
        """Relative folder of the sample ("" at the root)."""
        return self.rel.rsplit("/", 1)[0] if "/" in self.rel else ""


def _is_excluded_dir(name):
    return name.startswith(".") or name.lower() == "landmarks"


def _printable(path):
    """``path`` (str) as text any stream can print: the bytes of a name that is not UTF-8 as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _label_text_problem(text):
    """Why ``text`` cannot go into a label line (``<image path> <npy path>``, UTF-8), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8, which the label file is written in"
    if any(c.isspace() for c in text):
        return "contains whitespace, which separates the two paths of a label line"
    return None


def discover_samples(root, exclude=(), unreadable=None):
    """List the samples under ``root``, sorted by relative path.

    Args:
        root: folder of the 300W-LP tree or of any image + ``.mat`` pairs (nested folders allowed).
        exclude: folders never walked (e.g. the output folder when it lies inside ``root``).
        unreadable: optional list receiving ``{"folder": path, "reason": "<error type>: <message>"}`` for each
            folder that cannot be listed (permission denied ...), whose samples are then missing; each is also
            logged at WARNING.
    Returns:
        list of ``SampleRef`` sorted by ``rel``. A ``.mat`` file whose image is missing is still listed (with the
        ``.jpg`` name it should have), so the run reports it instead of silently dropping it.
    Raises:
        FileNotFoundError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"root must be a folder of 300W-LP-style samples, got {str(root)!r}")
    excluded = {os.path.realpath(p) for p in exclude}
    known = [name for name in KNOWN_300WLP_FOLDERS if (root / name).is_dir()]
    tops = [root / name for name in known] if known else [root]
    samples = []

    def on_error(error):
        folder, reason = _printable(error.filename), f"{type(error).__name__}: {error.strerror or error}"
        logger.warning("cannot list folder %s: %s", folder, reason)
        if unreadable is not None:
            unreadable.append({"folder": folder, "reason": reason})

    for top in tops:
        for dirpath, dirnames, filenames in os.walk(top, onerror=on_error):
            dirnames[:] = sorted(d for d in dirnames if not _is_excluded_dir(d)
                                 and os.path.realpath(os.path.join(dirpath, d)) not in excluded)
            by_stem = {}
            for name in filenames:
                stem, ext = os.path.splitext(name)
                by_stem.setdefault(stem, {})[ext.lower()] = name
            for stem, exts in by_stem.items():
                if ".mat" not in exts or stem.startswith("."):
                    continue
                image = next((exts[e] for e in IMAGE_EXTENSIONS if e in exts), stem + ".jpg")
                rel = Path(os.path.relpath(os.path.join(dirpath, stem), root)).as_posix()
                samples.append(SampleRef(rel, os.path.join(dirpath, image), os.path.join(dirpath, exts[".mat"])))
    samples.sort(key=lambda s: s.rel)
    return samples


def parse_shard(text):
    """Parse ``"K/N"`` (1 <= K <= N) into ``(K, N)``; None stays None.

    Raises:
        ValueError: the text is not two positive integers ``K/N`` with ``K <= N``.
    """
    if text is None:
        return None
    try:
        k, n = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise ValueError(f"shard must be 'K/N' with integers 1 <= K <= N, got {text!r}") from None
    if not 1 <= k <= n:
        raise ValueError(f"shard must be 'K/N' with integers 1 <= K <= N, got {text!r}")
    return k, n


def select_shard(samples, k, n):
    """The K-th of N contiguous blocks of ``samples`` (1-based K).

    Block K holds indices ``[floor((K-1) M / N), floor(K M / N))`` of the M samples: the blocks are disjoint,
    cover the list, differ in size by at most one and, concatenated in K order, give the list back.
    """
    m = len(samples)
    return samples[(k - 1) * m // n: k * m // n]


def sample_seed(base_seed, rel):
    """Per-sample seed: the first 8 bytes of ``sha256(f"{base_seed}:{rel}")`` as an int in [0, 2**63), the text
    encoded as the file system's bytes (UTF-8, and the raw bytes of a name that is not UTF-8)."""
    digest = hashlib.sha256(f"{int(base_seed)}:{rel}".encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "little") & (2 ** 63 - 1)


def _shard_suffix(shard):
    k, n = shard
    return f".part-{k:0{len(str(n))}d}-of-{n}"


def label_file_name(shard=None):
    """``trainDataLabel.txt``, or ``trainDataLabel.part-KK-of-N.txt`` (K zero-padded to N's width) for a shard."""
    return LABEL_FILE if shard is None else f"trainDataLabel{_shard_suffix(shard)}.txt"


def summary_file_name(shard=None):
    """``summary.json``, or ``summary.part-KK-of-N.json`` for a shard."""
    return SUMMARY_FILE if shard is None else f"summary{_shard_suffix(shard)}.json"


# GenerationConfig fields that decide which samples are refused, not the bytes of the others: changing them
# leaves finished samples done (refused ones were never done, so a rerun retries them anyway).
ADMISSION_FIELDS = ("allow_short_params", "max_pixels")


def config_fingerprint(config, model_id, seed):
    """sha256 (hex, 16 chars) of the generation settings (less ``ADMISSION_FIELDS``), the model identity and the
    base seed: a journal record counts only when it was written under the same fingerprint (so changed settings
    redo the samples)."""
    fields = {k: v for k, v in dataclasses.asdict(config).items() if k not in ADMISSION_FIELDS}
    text = json.dumps({"config": fields, "model": str(model_id), "seed": int(seed)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def default_worker_count():
    """CPUs this process may use: ``os.sched_getaffinity`` (respects cluster CPU sets), else ``os.cpu_count()``."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return max(os.cpu_count() or 1, 1)


# ---------------------------------------------------------------------------------------------------------
# Files


class _Folders:
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


def _write_file_atomically(folder_fd, name, chunks):
    """``atomic_write_bytes`` for the per-sample files, in the folder open as ``folder_fd``: the hidden temporary
    twin ``.<name>.partial`` receives the byte buffers ``chunks`` in order (one ``writev``, no joined copy) and is
    renamed onto ``name``. No fsync: a crash may lose the last files but never shows a partial one, and the journal
    record, appended last, is what a resumed run trusts."""
    tmp = f".{name}{TEMP_SUFFIX}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666, dir_fd=folder_fd)
        try:
            views = [v for v in (memoryview(chunk).cast("B") for chunk in chunks) if v]
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


def _buffers_check(chunks):
    """``[size, crc32 of _checked_ranges]`` of the byte buffers ``chunks`` written one after the other."""
    views = [memoryview(chunk).cast("B") for chunk in chunks]
    size, crc = sum(len(view) for view in views), 0
    for start, stop in _checked_ranges(size):
        offset = 0
        for view in views:
            part = view[max(start - offset, 0):max(stop - offset, 0)]
            crc = zlib.crc32(part, crc)
            offset += len(view)
    return [size, crc]


def _file_problem(path, check):
    """What is wrong with the finished file ``path`` against its ``[size, crc]`` (``_buffers_check``), or None."""
    size, crc = check
    try:
        with open(path, "rb") as f:
            actual = os.fstat(f.fileno()).st_size
            if actual != size:
                return f"{os.path.basename(path)} has {actual} bytes, {size} were written"
            found = 0
            for start, stop in _checked_ranges(size):
                f.seek(start)
                found = zlib.crc32(f.read(stop - start), found)
    except FileNotFoundError:
        return f"{os.path.basename(path)} is missing"
    except OSError as error:
        return f"{os.path.basename(path)} cannot be read ({error.strerror})"
    return None if found == crc else f"{os.path.basename(path)} changed since it was written"


def _encode(ext, image):
    # cvtColor swaps R and B with the same bytes as image[..., ::-1], without a strided copy
    ok, buf = cv2.imencode(ext, cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if ext == ".jpg" else [])
    if not ok:
        raise ValueError(f"OpenCV could not encode an image of shape {image.shape} as {ext}")
    return buf


@functools.lru_cache(maxsize=8)
def _npy_header(shape, dtype_str):
    """The ``.npy`` (format 1.0) header ``np.save`` writes for a C-order array of ``shape`` and ``dtype_str``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype_str, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _npy_chunks(array, dtype):
    """The bytes of ``np.save(f, array.astype(dtype))`` as (header, data) buffers: the cached header, then the
    array in C order. float32 to float16 goes through OpenCV (round to nearest even like numpy, several times
    faster here; a -0.0 comes out as +0.0)."""
    array = np.asarray(array)
    dtype = np.dtype(dtype)
    if dtype == np.float16 and array.dtype == np.float32 and array.ndim == 3 and array.shape[2] <= 4:
        data = cv2.add(np.ascontiguousarray(array), 0.0, dtype=cv2.CV_16F)
    else:
        data = np.ascontiguousarray(array, dtype=dtype)
    return _npy_header(data.shape, np.lib.format.dtype_to_descr(data.dtype)), data.reshape(-1).view(np.uint8)


def done_marker_path(output, rel):
    """The done marker ``<output>/.done/<rel>.json`` of an item with relative path ``rel`` (the photo fitter's
    resume record; the generator's are its journals, see ``_Journal``)."""
    return Path(output) / DONE_DIR / f"{rel}.json"


def _journal_records(output):
    """Every complete record of every journal under ``<output>/.done`` (a line cut short by a crash is skipped)."""
    folder = os.path.join(output, DONE_DIR)
    names = sorted(n for n in os.listdir(folder) if n.startswith(JOURNAL_PREFIX)) if os.path.isdir(folder) else []
    for name in names:
        with open(os.path.join(folder, name), "rb") as f:
            for line in f.read().split(b"\n")[:-1]:  # the text after the last newline is an unfinished record
                with contextlib.suppress(ValueError):
                    yield json.loads(line)


def read_journals(output):
    """The latest journal record of each sample, ``{rel: record}`` (see ``_Journal``)."""
    latest = {}
    for record in _journal_records(output):
        rel = record.get("sample")
        if rel is not None and (rel not in latest or record["t"] >= latest[rel]["t"]):
            latest[rel] = record
    return latest


def done_outputs(latest, rel, fingerprint):
    """The output names of a sample done under ``fingerprint`` according to ``read_journals``' ``latest``, or None."""
    record = latest.get(rel)
    if record is None or record.get("fingerprint") != fingerprint or "files" not in record:
        return None
    return list(record["outputs"])


def _damaged_outputs(output, ref, record):
    """What is wrong with the files of a done sample (``ref``, its journal ``record``): the first file that is
    missing, of another size or another checksum than when written (see ``CHECKED_BYTES``), or None."""
    folder = os.path.join(output, ref.folder)
    for name, check in record["files"].items():
        problem = _file_problem(os.path.join(folder, name), check)
        if problem:
            return problem
    return None


class _Journal:
    """The append-only record of the samples one process finished: ``<output>/.done/journal.<host>.<pid>.<ns>.txt``,
    one JSON line per sample, ``{"sample": rel, "fingerprint": ..., "outputs": [names], "files": {file name:
    [size, crc]}, "t": ns}`` (``files``: what a resume checks, see ``_damaged_outputs``), appended with
    one ``write`` once all of the sample's files are in place (a line cut short by a crash does not count); a
    ``{"sample": rel, "redo": true, "t": ns}`` line marks a sample about to be rewritten. A sample's state is its
    record with the latest ``t`` over all journals. Opened on first use in each process (forked workers open
    their own)."""

    def __init__(self, output):
        self.output = output
        self._fd, self._pid = None, None

    def append(self, records):
        """Append records (dicts without ``t``), stamped with the wall clock in ns, in one write."""
        if self._pid != os.getpid():
            folder = os.path.join(self.output, DONE_DIR)
            os.makedirs(folder, exist_ok=True)
            name = f"{JOURNAL_PREFIX}.{socket.gethostname()}.{os.getpid()}.{time.time_ns()}.txt"
            self._fd, self._pid = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666), \
                os.getpid()
        now = time.time_ns()
        text = "".join(json.dumps({**record, "t": now}, separators=(",", ":")) + "\n" for record in records)
        os.write(self._fd, text.encode("utf-8"))

    def close(self):
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd, self._pid = None, None


def _output_files(item, posmap_dtype):
    """(file name, byte buffers) of one generated output: the crop ``.jpg``, the map ``.npy`` and optionally the
    preview ``.png``."""
    if "/" in item.name or "\\" in item.name or not item.name:
        raise ValueError(f"generated sample name must be a plain file name, got {item.name!r}")
    files = [(f"{item.name}.jpg", (_encode(".jpg", item.image),)),
             (f"{item.name}.npy", _npy_chunks(item.posmap, posmap_dtype))]
    if item.preview is not None:
        files.append((f"{item.name}_preview.png", (_encode(".png", item.preview),)))
    return files


def _write_sample(output, ref, generated, posmap_dtype, folders):
    """Write the outputs of one sample. Returns the output names and ``{file name: [size, crc]}`` of the files
    written (``_buffers_check``).

    Args:
        folders: the process's ``_Folders``.
    """
    folder_fd = folders.fd(os.path.join(output, ref.folder))
    written, names, checks = [], [], {}
    try:
        for item in generated:
            for name, data in _output_files(item, posmap_dtype):
                _write_file_atomically(folder_fd, name, data)
                written.append(name)
                checks[name] = _buffers_check(data)
            names.append(item.name)
    except BaseException:
        for name in written:  # a sample is all or nothing
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=folder_fd)
        raise
    return names, checks


# ---------------------------------------------------------------------------------------------------------
# Workers


@dataclass(frozen=True)
class _RunState:
    generator: object
    output: str
    posmap_dtype: str
    fingerprint: str
    folders: _Folders = dataclasses.field(default_factory=_Folders, compare=False)
    journal: _Journal = None

    def __post_init__(self):
        if self.journal is None:
            object.__setattr__(self, "journal", _Journal(self.output))


# Samples per generator call: their vertices come from one product that reads the basis from memory once for the
# whole batch (on a BFM-sized model a lone sample streams 146 MB; in a batch of 128 the arithmetic dominates),
# while the batch's vertices take 0.64 MB per sample there (82 MB at 128), whatever the dataset size.
CHUNK_SIZE = 128


def _generated_results(generator, jobs):
    """Each job's result from ``generator.process_iter`` as it is made (``process_many`` for generators without
    it); should the batch fail unexpectedly, the samples not yet done are run one by one with ``process``, so
    that one sample cannot fail its neighbours."""
    done = 0
    try:
        stream = generator.process_iter(jobs) if hasattr(generator, "process_iter") else \
            iter(generator.process_many(jobs))
        for result in stream:
            done += 1
            yield result
    except Exception:  # noqa: BLE001 - fall back to isolating the sample that broke the batch
        for image_path, mat_path, seed in jobs[done:]:
            try:
                yield generator.process(image_path, mat_path, seed)
            except Exception as exc:  # noqa: BLE001 - one sample must never end a day-long run
                yield exc


def _process_tasks(state, tasks):
    """Run the generator on ``tasks`` [(SampleRef, seed)] and write each sample's outputs as soon as it is made.

    The chunk goes through ``generator.process_iter``, whose one product for all vertices reads the basis once
    (several times faster per sample than a product each on a BFM-sized model), and whose bytes do not depend
    on the batch (so not on the worker count or on what a resumed run has left).
    Returns:
        one short record per task: ``(rel, "written", n_outputs)`` or ``(rel, "failed", reason)``.
    """
    records = []
    jobs = [(ref.image_path, ref.mat_path, seed) for ref, seed in tasks]
    for (ref, _), generated in zip(tasks, _generated_results(state.generator, jobs)):
        if isinstance(generated, Exception):
            reason = str(generated) if isinstance(generated, InputFileError) else \
                f"unexpected {type(generated).__name__}: {generated}"
            records.append((ref.rel, "failed", reason))
            continue
        try:
            names, checks = _write_sample(state.output, ref, generated, state.posmap_dtype, state.folders)
        except (OSError, ValueError) as exc:
            records.append((ref.rel, "failed", f"cannot write the outputs: {type(exc).__name__}: {exc}"))
            continue
        state.journal.append([{"sample": ref.rel, "fingerprint": state.fingerprint, "outputs": names,
                               "files": checks}])
        records.append((ref.rel, "written", len(names)))
    return records


# Set once per worker process by the pool initializer: the generator must be built once per process, not
# once per sample, and a process pool offers no other place to keep it.
_WORKER_STATE = None


def _init_worker(state, factory_args):
    global _WORKER_STATE
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled by the parent, which stops the pool
    if state is None:
        factory, model_path, config, output, posmap_dtype, fingerprint = factory_args
        state = _RunState(factory(model_path, config), output, posmap_dtype, fingerprint)
    _WORKER_STATE = state


def _worker_chunk(tasks):
    return _process_tasks(_WORKER_STATE, tasks)


def default_generator_factory(model_path, config):
    """Build ``TrainsetGenerator(load_uv_model(model_path), config)``; ``model_path=None`` is the default model."""
    from face3d.trainset.sample import TrainsetGenerator

    return TrainsetGenerator(load_uv_model(model_path), config)


def _chunked(items, size):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def pool_context():
    """The multiprocessing context of the runners: fork where available (workers share the parent's model pages
    copy-on-write, and the initializer's arguments are not pickled), else spawn."""
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def run_chunks_in_pool(worker, chunks, workers, on_result, initializer=None, initargs=(), context=None,
                       on_broken=None):
    """Run ``worker(chunk)`` for every chunk on a process pool and pass each result to ``on_result`` in the parent.

    At most ``4 * workers`` chunks are in flight, so the task list of a huge dataset is never materialised in the
    pool; results arrive in order of completion. On any error or interrupt the worker processes are ended at once:
    work is resumable, so what they had not finished is redone by the next run.

    Args:
        worker: module-level function of one chunk (picklable where processes spawn).
        chunks: iterable of chunks. workers: pool size (>= 1). on_result: called with each ``worker`` result.
        initializer, initargs: run once per worker process (``ProcessPoolExecutor``'s). context: multiprocessing
            context (default ``pool_context()``).
        on_broken: when a worker process dies (killed, out of memory) the pool breaks and the results of the
            chunks then in flight are lost: ``on_broken(those chunks)`` returns the chunks to run again, which a
            new pool runs before the rest. Without it the pool's ``BrokenProcessPool`` is raised.
    """
    chunks = iter(chunks)
    context = pool_context() if context is None else context
    while True:
        lost = _run_until_broken(worker, chunks, workers, on_result, initializer, initargs, context,
                                 on_broken is not None)
        if not lost:
            return
        chunks = itertools.chain(on_broken(lost), chunks)


def _run_until_broken(worker, chunks, workers, on_result, initializer, initargs, context, survive_broken):
    """``run_chunks_in_pool`` on one pool: returns [] when ``chunks`` ran out, or, with ``survive_broken``, the
    chunks in flight when a worker process died."""
    with cf.ProcessPoolExecutor(workers, mp_context=context, initializer=initializer, initargs=initargs) as pool:
        in_flight = {}
        try:
            while True:
                while len(in_flight) < 4 * workers:
                    chunk = next(chunks, None)
                    if chunk is None:
                        break
                    in_flight[pool.submit(worker, chunk)] = chunk
                if not in_flight:
                    return []
                finished, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
                lost = []
                for future in finished:
                    chunk = in_flight.pop(future)
                    if survive_broken and isinstance(future.exception(), cf.process.BrokenProcessPool):
                        lost.append(chunk)
                    else:
                        on_result(future.result())
                if lost:
                    return lost + list(in_flight.values())
        except BaseException:
            # Stop now rather than after the running chunks: the executor has no public way to, so end its
            # processes.
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            raise


WORKER_DIED = "the worker process died on this sample (killed, or out of memory)"


def _run_pool(state, factory_args, pending, workers, on_records):
    """Run ``pending`` tasks on a process pool (``run_chunks_in_pool``); each worker builds its generator once.

    A worker that dies (killed, out of memory) breaks the pool. Of the chunks then in flight, the samples with a
    journal record are counted as written; of the others, the first of each chunk (the one a dead worker was on)
    runs alone in a fresh process, where dying again records it as failed (``WORKER_DIED``), and the rest run again
    on a new pool.
    """
    ctx = pool_context()
    initargs = (state, None) if ctx.get_start_method() == "fork" else (None, factory_args)
    # Large chunks for the matrix product, yet at least 8 per worker so that the last ones finish together.
    chunk = max(1, min(CHUNK_SIZE, len(pending) // (workers * 8)))

    def on_broken(lost):
        latest, again = read_journals(state.output), []
        for tasks in lost:
            done = [done_outputs(latest, ref.rel, state.fingerprint) for ref, _ in tasks]
            on_records([(ref.rel, "written", len(names)) for (ref, _), names in zip(tasks, done) if names is not None])
            unfinished = [task for task, names in zip(tasks, done) if names is None]
            if unfinished:
                on_records(_run_alone(unfinished[0], initargs, ctx))
            if unfinished[1:]:
                again.append(unfinished[1:])
        return again

    run_chunks_in_pool(_worker_chunk, _chunked(pending, chunk), workers, on_records, _init_worker, initargs, ctx,
                       on_broken)


def _run_alone(task, initargs, context):
    """The records of one task run in a fresh one-process pool, or its failure when that process dies."""
    records = []
    try:
        run_chunks_in_pool(_worker_chunk, [[task]], 1, records.extend, _init_worker, initargs, context)
    except cf.process.BrokenProcessPool:
        return [(task[0].rel, "failed", WORKER_DIED)]
    return records


# ---------------------------------------------------------------------------------------------------------
# The run


def _write_uv_data(generator, output, config, uv_data=None):
    """Write PRNet's uv-data files for the generator's model into ``output/uv-data`` (file by file, atomically), or
    copy the files of the existing folder ``uv_data`` there after checking that it fits the model and resolution."""
    final = Path(output) / UV_DATA_DIR
    _remove_stale_uv_temporaries(output)
    tmp = Path(output) / f".{UV_DATA_DIR}.{socket.gethostname()}.{os.getpid()}{TEMP_SUFFIX}"
    if uv_data is not None:
        source = Path(uv_data)
        layout = load_uv_data(source)
        if layout.resolution != int(config.resolution):
            raise ValueError(f"{source}: uv-data resolution {layout.resolution} differs from the set's "
                             f"{config.resolution}")
        check_uv_data_fits(layout, generator.model, str(source))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        if uv_data is None:
            write_uv_data(build_uv_data(generator.model, int(config.resolution),
                                        neck_zeroed=bool(config.neck_zeroed),
                                        rasterization=getattr(generator, "rasterization", None)), tmp)
        else:
            for path in sorted(p for p in source.iterdir() if p.is_file()):
                shutil.copyfile(path, tmp / path.name)
        final.mkdir(parents=True, exist_ok=True)
        for path in sorted(tmp.iterdir()):
            os.replace(path, final / path.name)  # file by file: concurrent shards may write the same folder
    finally:
        for path in tmp.iterdir():
            path.unlink()
        tmp.rmdir()


def _process_exists(pid):
    """Whether process ``pid`` (> 0) runs on this host, whoever's it is."""
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user
        return True


def _remove_stale_uv_temporaries(output):
    """Remove the ``.uv-data.<host>.<pid>.partial`` folders (and ``.uv-data.<pid>.partial`` ones of earlier
    versions) that a run killed while writing uv-data left on this host: its pid no longer runs. Another host's
    folders are left alone, since its processes cannot be seen from here."""
    prefix, host = f".{UV_DATA_DIR}.", socket.gethostname()
    for path in Path(output).glob(f"{prefix}*{TEMP_SUFFIX}"):
        owner, _, pid = path.name[len(prefix):-len(TEMP_SUFFIX)].rpartition(".")
        if owner in ("", host) and pid.isdigit() and int(pid) > 0 and not _process_exists(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _label_lines(output, samples, fingerprint, relative):
    base = Path(output) if relative else Path(os.path.abspath(output))
    latest = read_journals(output)
    for ref in samples:
        names = done_outputs(latest, ref.rel, fingerprint)
        if names is None:
            continue
        folder = Path(ref.folder) if relative else base / ref.folder
        for name in names:
            yield f"{(folder / f'{name}.jpg').as_posix()} {(folder / f'{name}.npy').as_posix()}\n"


def write_label_file(path, output, samples, fingerprint, relative=False):
    """Write the label file for the done ``samples`` (in the given order), streamed to a temporary file and
    renamed; returns the line count."""
    count = 0
    with atomic_file(path) as f:
        for line in _label_lines(output, samples, fingerprint, relative):
            f.write(line.encode("utf-8"))
            count += 1
    return count


def generate_dataset(root, output, config, model_path=None, workers=None, shard=None, limit=None, seed=0,
                     relative_paths=False, progress=True, generator_factory=None, uv_data=None):
    """Generate the training set for every sample under ``root`` into ``output``; resumable.

    Args:
        root: input folder (300W-LP tree or image + ``.mat`` pairs); see ``discover_samples``.
        output: output folder (created); see the module docstring for its layout.
        config: ``GenerationConfig`` (resolution, perturbation, angles, refit, posmap dtype, preview).
        model_path: ``BFM.mat`` of the real model, or None for the embedded default model.
        workers: worker processes (default ``default_worker_count()``); 1 runs in this process.
        shard: ``(K, N)`` or ``"K/N"`` to run the K-th of N contiguous blocks, or None for all.
        limit: keep only the first ``limit`` samples (before sharding), or None.
        seed: base seed; the per-sample seed is ``sample_seed(seed, rel)``.
        relative_paths: label paths relative to ``output`` instead of absolute.
        progress: show the progress bar on stderr.
        generator_factory: ``f(model_path, config) -> generator`` with ``process_iter(jobs)`` (or
            ``process_many(jobs)``) and ``process(image, mat, seed)`` (default ``default_generator_factory``);
            must be a module-level function where processes spawn.
        uv_data: an existing uv-data folder (e.g. PRNet's) to copy into ``output/uv-data`` instead of building one
            for the model; ValueError when it does not fit the model (``uv_layout.check_uv_data_fits``) or the
            resolution.
    Returns:
        the summary dict, also written to ``output/summary.json`` (or its shard name).
    """
    started = time.monotonic()
    shard, workers = _checked_run_arguments(root, output, shard, limit, workers, relative_paths)
    output = Path(output)
    unreadable = []
    samples = _selected_samples(root, output, limit, shard, unreadable)
    output.mkdir(parents=True, exist_ok=True)
    factory = default_generator_factory if generator_factory is None else generator_factory
    model_id = "default" if model_path is None else os.path.abspath(model_path)
    fingerprint = config_fingerprint(config, model_id, seed)
    posmap_dtype = str(np.dtype(config.posmap_dtype))
    generator = factory(model_path, config)
    _write_uv_data(generator, output, config, uv_data)
    state = _RunState(generator, str(output), posmap_dtype, fingerprint)
    latest = read_journals(output)
    # names the label file cannot hold are refused up front, with the reason
    refused = [(ref.rel, "failed", f"{_printable(ref.mat_path)}: the name {problem}; rename it")
               for ref in samples if (problem := _label_text_problem(ref.rel))]
    refused_rels = {rel for rel, _, _ in refused}
    intact = _intact_done(output, [ref for ref in samples if ref.rel not in refused_rels], latest, fingerprint,
                          threads=min(32, 4 * workers))
    pending = [(ref, sample_seed(seed, ref.rel)) for ref in samples
               if ref.rel not in refused_rels and ref.rel not in intact]
    # a sample done under other settings is about to be rewritten: its record must not outlive the redo
    stale = [{"sample": ref.rel, "redo": True} for ref, _ in pending if ref.rel in latest]
    if stale:
        state.journal.append(stale)
    tally = _Tally(samples, len(samples) - len(pending) - len(refused), progress)
    if refused:
        tally.add(refused)
    run_workers = min(workers, max(len(pending), 1))
    try:
        _run_tasks(state, (factory, model_path, config, str(output), posmap_dtype, fingerprint), pending,
                   run_workers, tally.add)
    finally:
        tally.close()
        state.folders.close()
        state.journal.close()
    label_path = output / label_file_name(shard)
    n_lines = write_label_file(label_path, output, samples, fingerprint, relative=relative_paths)
    summary = {
        "root": os.path.abspath(root), "output": os.path.abspath(output), "label_file": os.path.abspath(label_path),
        "label_paths": "relative" if relative_paths else "absolute",
        "model": model_id, "shard": None if shard is None else f"{shard[0]}/{shard[1]}", "limit": limit,
        "seed": int(seed), "workers": run_workers, "fingerprint": fingerprint,
        "config": dataclasses.asdict(config), "samples": len(samples), "label_lines": n_lines,
        "unreadable_folders": unreadable, **tally.summary(time.monotonic() - started),
    }
    atomic_write_bytes(output / summary_file_name(shard),
                       (json.dumps(summary, indent=2, default=str) + "\n").encode("utf-8"))
    return summary


def _checked_run_arguments(root, output, shard, limit, workers, relative_paths):
    """``generate_dataset``'s arguments checked: returns (shard as (K, N) or None, worker count).

    Raises:
        ValueError: a bad shard, limit or worker count.
        InputFileError: an output folder the label file cannot name (see ``_label_text_problem``) or equal to root.
    """
    shard = parse_shard(shard if shard is None or isinstance(shard, str) else f"{shard[0]}/{shard[1]}")
    if limit is not None and int(limit) < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    workers = default_worker_count() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    problem = None if relative_paths else _label_text_problem(os.path.abspath(output))
    if problem:
        raise InputFileError(_printable(os.path.abspath(output)), f"the output path {problem}: give --label-paths "
                                                                  f"relative or another output folder")
    if os.path.realpath(output) == os.path.realpath(root):
        raise InputFileError(output, "the output must be a folder other than root (the crops would replace the "
                                     "input images)")
    return shard, workers


def _selected_samples(root, output, limit, shard, unreadable):
    """The samples under ``root`` (the output folder excluded), the first ``limit``, then the shard's block;
    ``unreadable`` receives the folders that cannot be listed (see ``discover_samples``).

    Raises:
        InputFileError: ``root`` holds no sample at all (and no folder that could not be listed).
    """
    samples = discover_samples(root, exclude=[output], unreadable=unreadable)
    if not samples and not unreadable:
        raise InputFileError(root, "no samples (an image with a .mat of the same name) in this folder or below")
    if limit is not None:
        samples = samples[:int(limit)]
    return samples if shard is None else select_shard(samples, *shard)


def _intact_done(output, samples, latest, fingerprint, threads):
    """The rels of ``samples`` done under ``fingerprint`` whose files are still as written (``_damaged_outputs``),
    checked on ``threads`` threads, since waiting for the files' ends from disk is what a resume spends its time
    on; a damaged sample is logged."""
    done = [ref for ref in samples if done_outputs(latest, ref.rel, fingerprint) is not None]
    with cf.ThreadPoolExecutor(threads) as pool:
        problems = list(pool.map(lambda ref: _damaged_outputs(output, ref, latest[ref.rel]), done))
    for ref, problem in zip(done, problems):
        if problem:
            logger.warning("redoing sample %s: %s", _printable(ref.rel), problem)
    return {ref.rel for ref, problem in zip(done, problems) if problem is None}


def _run_tasks(state, factory_args, pending, workers, on_records):
    """Run the pending tasks in this process (one worker) or on a pool, passing each chunk's records on."""
    if workers == 1:
        for tasks in _chunked(pending, CHUNK_SIZE):
            on_records(_process_tasks(state, tasks))
    else:
        _run_pool(state, factory_args, pending, workers, on_records)


class _Tally:
    """Counts the workers' records (written, failed with the reason logged) and shows them on the progress bar."""

    def __init__(self, samples, skipped, progress):
        self.by_rel = {ref.rel: ref for ref in samples}
        self.skipped, self.written, self.failed, self.outputs_written = skipped, 0, 0, 0
        self.failures = []
        self.bar = Progress(len(samples), desc="generate", enabled=progress, initial=skipped)
        self.bar.postfix = f"{skipped} skipped" if skipped else ""

    def add(self, records):
        for rel, status, detail in records:
            if status == "written":
                self.written += 1
                self.outputs_written += detail
            else:
                self.failed += 1
                ref = self.by_rel[rel]
                image, mat = _printable(ref.image_path), _printable(ref.mat_path)
                logger.warning("skipping sample %s (image %s): %s", mat, image, detail)
                self.failures.append({"sample": _printable(rel), "image": image, "mat": mat, "reason": detail})
        notes = [f"{self.skipped} skipped"] * bool(self.skipped) + [f"{self.failed} failed"] * bool(self.failed)
        self.bar.update(len(records), postfix=", ".join(notes))

    def close(self):
        self.bar.close()

    def summary(self, elapsed):
        """The counts part of the run summary."""
        return {"written": self.written, "skipped": self.skipped, "failed": self.failed,
                "outputs_written": self.outputs_written, "elapsed_s": round(elapsed, 3),
                "samples_per_s": round(self.written / elapsed, 3) if elapsed > 0 else 0.0,
                "failures": sorted(self.failures, key=lambda f: f["sample"])}
