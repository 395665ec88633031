"""Pack a ``trainDataLabel.txt`` into one chunked HDF5 file, and read it back fast.

A pack holds N samples of side R: ``images`` uint8 (N, R, R, 3) RGB crops, ``posmaps`` float16 (or float32)
(N, R, R, 3) crop-space position maps and ``names`` (N,), one sample a chunk with a checksum. ``pack_label_file``
gives the layout, ``read_label_file`` the label lines, ``PackedTrainset`` reads a pack. README: ``face3d pack``.
"""
import contextlib
import errno
import os
import re
import shutil
from pathlib import Path

import numpy as np

from face3d.trainset.posmap import load_posmap, posmap_value_problem
from face3d.trainset.sample_io import read_image
from face3d.utils.atomic import output_lock, temp_name
from face3d.utils.errors import InputFileError
from face3d.utils.progress import Progress

__all__ = ["read_label_file", "pack_label_file", "PackedTrainset"]

COMPRESSIONS = ("none", "lzf", "gzip")
_DATASETS = ("images", "posmaps", "names")


def read_label_file(path, base_dir=None):
    """Parse a label file: lines ``<image path> <npy path>`` as the PRNet training forks read them (``split()`` on
    whitespace); relative paths are resolved against ``base_dir`` (by default the label file's folder, which is what
    ``face3d generate --label-paths relative`` writes).

    Args:
        path: ``trainDataLabel.txt`` (UTF-8, with or without a byte-order mark); blank lines are ignored.
        base_dir: folder that relative paths are resolved against (default: the label file's folder).
    Returns:
        list of ``(image_path, npy_path)`` strings.
    Raises:
        FileNotFoundError: the label file does not exist.
        InputFileError (a ValueError): ``path`` is a folder (the message names the label file in it, if any), a
            line does not hold exactly two paths (the message names the file and line number), or the file is not
            UTF-8 text.
    """
    path = Path(path)
    if path.is_dir():
        from face3d.trainset.dataset import LABEL_FILE  # only here: the generator's module is slow to import
        inside = path / LABEL_FILE
        raise InputFileError(path, f"is a folder; give {inside}" if inside.is_file() else
                             f"is a folder; give the label file ({LABEL_FILE}) itself")
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {str(path)!r}")
    base = Path(base_dir) if base_dir is not None else path.parent
    pairs = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                # a byte-order mark (Windows editors write one) is no part of the first path
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise InputFileError(path, f"line {number} is not UTF-8 text ({error.reason} at byte "
                                           f"{error.start})") from None
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise InputFileError(path, f"expected '<image path> <npy path>', got {line.strip()!r}", line=number)
            pairs.append(tuple(str(p if os.path.isabs(p) else base / p) for p in parts))
    return pairs


def pack_label_file(label_path, h5_path, base_dir=None, posmap_dtype="float16", compression="none",
                    progress=True):
    """Pack every sample of a label file into one HDF5 file (written to a temporary name, then renamed).

    Layout of the file (h5py):
        images   uint8   (N, R, R, 3)  RGB crops, chunk (1, R, R, 3)
        posmaps  float16 (N, R, R, 3)  position maps (crop-space x, y, z), chunk (1, R, R, 3); float32 on request
        names    str     (N,)          the image file name without extension (``<stem>`` or ``<stem>_angle_<deg>``)
        attrs    label_file, resolution, count
    One sample per chunk keeps random access (shuffled batches) cheap; compression is off by default because
    position maps compress poorly and training input is read-bound (``lzf`` is the cheap option). Each chunk of
    images and posmaps carries a Fletcher-32 checksum (4 bytes), so that a damaged one fails to read; packs without
    it still read.

    Args:
        label_path: ``trainDataLabel.txt``.
        h5_path: output ``.h5`` path.
        base_dir: see ``read_label_file``.
        posmap_dtype: "float16" (default) or "float32" for the stored position maps.
        compression: "none", "lzf" or "gzip".
        progress: show a progress bar on stderr.
    Returns:
        the number of samples packed.
    Raises:
        ValueError: empty label file, unknown compression/dtype, images/maps of inconsistent shapes, a map that is
        no readable .npy file (``load_posmap``) or has non-finite or implausible values (``posmap_value_problem``),
        both an InputFileError naming the map.
        OSError naming ``h5_path`` (its ``filename``): a folder (IsADirectoryError, before any row is read), less
        free space than the uncompressed rows take (N * R * R * 3 * (1 + posmap itemsize) bytes, checked before
        writing when ``compression`` is "none"), or a write the system refuses (full disk, file size limit).
        No partial file is left. BlockingIOError naming ``h5_path``: another run writes it
        (``utils.atomic.output_lock``, whose hidden ``.<name>.lock`` stays beside it).
    """
    import h5py

    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    posmap_dtype = np.dtype(posmap_dtype)
    if posmap_dtype not in (np.float16, np.float32):
        raise ValueError(f"posmap_dtype must be float16 or float32, got {posmap_dtype}")
    h5_path = Path(h5_path)
    if h5_path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder; give the .h5 file to write", str(h5_path))
    pairs = read_label_file(label_path, base_dir)
    if not pairs:
        raise ValueError(f"label file {str(label_path)!r} lists no samples")
    first = read_image(pairs[0][0])
    shape = first.shape
    if shape[0] != shape[1] or shape[2] != 3:
        raise ValueError(f"expected square RGB crops, {pairs[0][0]!r} has shape {shape}")
    n = len(pairs)
    h5_path.parent.mkdir(parents=True, exist_ok=True)
    if compression == "none":
        _require_free_space(h5_path, n, n * first.size * (1 + posmap_dtype.itemsize))
    with output_lock(h5_path, "face3d pack", option="output file", output_is_file=True):
        tmp = temp_name(h5_path)
        options = {} if compression == "none" else {"compression": compression}
        try:
            with _write_errors(h5_path):
                # no chunk cache: each row goes to disk as it is written, so a failed write leaves no cached chunk for
                # the close to flush (HDF5 1.14 crashes the process when that flush fails too)
                f = h5py.File(tmp, "w", rdcc_nbytes=0)
            try:
                _write_rows(f, pairs, first, posmap_dtype, options, h5_path, progress)
                with _write_errors(h5_path):
                    f.attrs["label_file"] = os.path.abspath(label_path)
                    f.attrs["resolution"] = shape[0]
                    f.attrs["count"] = n
            except BaseException:
                with contextlib.suppress(Exception):  # the first error is the one to report: this close fails as well
                    f.close()                          # when a write did
                raise
            with _write_errors(h5_path):
                f.close()
            os.replace(tmp, h5_path)
        except BaseException:
            with contextlib.suppress(OSError):  # a read-only file system refuses even this: the first error is the one
                tmp.unlink(missing_ok=True)
            raise
        return n


def _write_rows(f, pairs, first, posmap_dtype, options, h5_path, progress):
    """Create the datasets ``images``, ``posmaps`` and ``names`` of ``len(pairs)`` rows in the open h5py file ``f``
    and fill them row by row; ``first`` is the first pair's image, already read. Raises the reading errors of
    ``pack_label_file``, and its OSError naming ``h5_path`` for a failed write."""
    import h5py

    n, shape = len(pairs), first.shape
    with Progress(n, desc="pack", enabled=progress) as bar:
        with _write_errors(h5_path):
            # a checksum per chunk: a damaged chunk fails to read instead of giving wrong pixels when uncompressed
            images = f.create_dataset("images", (n,) + shape, dtype=np.uint8, chunks=(1,) + shape, fletcher32=True,
                                      **options)
            posmaps = f.create_dataset("posmaps", (n,) + shape, dtype=posmap_dtype, chunks=(1,) + shape,
                                       fletcher32=True, **options)
            names = f.create_dataset("names", (n,), dtype=h5py.string_dtype("utf-8"))
        for i, (image_path, npy_path) in enumerate(pairs):
            image = first if i == 0 else read_image(image_path)
            posmap = load_posmap(npy_path)
            if image.shape != shape or posmap.shape != shape:
                raise ValueError(f"sample {i}: {image_path!r} {image.shape} and {npy_path!r} {posmap.shape} "
                                 f"must both have shape {shape}")
            problem = posmap_value_problem(posmap, shape[0])  # as loaded: float16 makes values past 65504 inf
            if problem is not None:
                raise InputFileError(npy_path, problem)
            stored = posmap.astype(posmap_dtype)  # in [-R, 2R]: float16 holds them
            with _write_errors(h5_path):
                images[i] = image
                posmaps[i] = stored
                names[i] = Path(image_path).stem
            bar.update()


def _require_free_space(h5_path, n, needed):
    """Refuse to start a pack of ``n`` rows whose uncompressed bytes alone (``needed``, a lower bound of the file's
    size) exceed the free space of ``h5_path``'s folder."""
    free = shutil.disk_usage(h5_path.parent).free
    if needed > free:
        raise OSError(errno.ENOSPC, f"{n} samples need at least {needed} bytes uncompressed; the disk has {free} "
                                    f"bytes free", str(h5_path))


@contextlib.contextmanager
def _write_errors(h5_path):
    """Report HDF5's failures to write ``h5_path`` as an OSError naming it, with the system's reason: h5py raises an
    OSError without a file name, or a RuntimeError for a failed flush or close, its errno only in the text
    ("errno = 28")."""
    try:
        yield
    except (OSError, RuntimeError) as error:
        number = getattr(error, "errno", None)
        if number is None:
            found = re.search(r"errno\s*=\s*(\d+)", str(error))
            number = int(found.group(1)) if found else None
        reason = os.strerror(number) if number else str(error).split(" (", 1)[0]
        raise OSError(number, reason, str(h5_path)) from error


class PackedTrainset:
    """Read a packed training set: ``len``, indexing and batch iteration.

    ``ds[i]`` -> ``(image uint8 (R,R,3), posmap (R,R,3))``; ``ds[a:b]`` or ``ds[[i, j, ...]]`` -> stacked
    ``(k,R,R,3)`` arrays in the requested order; ``ds[mask]`` (N booleans) -> the rows where ``mask`` is True.
    ``ds.names[i]`` is the sample name. Use as a context manager or call ``close()``.

    Raises:
        FileNotFoundError; InputFileError naming the path for a folder, or a file that is no readable HDF5 file
        (truncated, empty, another format), lacks a dataset or holds datasets of different lengths, and, when
        reading, naming the row too for a damaged chunk.
    """

    def __init__(self, path):
        import h5py

        path = Path(path)
        if path.is_dir():
            raise InputFileError(str(path), "is a folder; give the .h5 file (face3d pack's output)")
        if not path.is_file():
            raise FileNotFoundError(f"packed training set not found: {str(path)!r}")
        self.path = path
        try:
            self._file = h5py.File(path, "r")
        except OSError as error:  # truncated, empty or no HDF5 file: h5py's message names no file
            raise InputFileError(str(path), f"not a readable HDF5 file ({error})") from None
        try:
            self._check_datasets()
        except InputFileError:
            self._file.close()
            raise
        self.images = self._file["images"]
        self.posmaps = self._file["posmaps"]
        self.names = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in self._file["names"][()]]

    def _check_datasets(self):
        """Raise InputFileError naming the file unless it holds the datasets ``images``, ``posmaps`` and ``names``
        with one row for each sample in each (a shorter ``names`` would fail training at its first missing name)."""
        for key in _DATASETS:
            if key not in self._file:
                raise InputFileError(str(self.path), f"not a packed training set: dataset {key!r} is missing")
        rows = {key: self._file[key].shape[0] if self._file[key].ndim else 0 for key in _DATASETS}
        if len(set(rows.values())) > 1:
            counts = ", ".join(f"{key} {count}" for key, count in rows.items())
            raise InputFileError(str(self.path), f"datasets of different lengths: {counts} rows (a sample is one row "
                                                 f"of each)")

    def __len__(self):
        return self.images.shape[0]

    @property
    def resolution(self):
        """Side of the crops and maps in pixels."""
        return self.images.shape[1]

    @property
    def label_file(self):
        """The label file the pack was made from (the ``label_file`` attribute, an absolute path str), or None for
        a pack without it."""
        value = self._file.attrs.get("label_file")
        return None if value is None else str(value)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            i = int(index)
            if not -len(self) <= i < len(self):
                raise IndexError(f"index {i} out of range for {len(self)} samples")
            return self._read_rows(i % len(self))
        if isinstance(index, slice):
            index = np.arange(len(self))[index]
        index = np.asarray(index)
        if index.dtype == bool:  # a mask: as an int64 array its True / False would read rows 1 and 0
            if index.shape != (len(self),):
                raise IndexError(f"boolean mask of {index.size} values for {len(self)} samples")
            index = np.flatnonzero(index)
        return self._take(index.astype(np.int64))

    def _take(self, indices):
        if indices.size and (indices.min() < -len(self) or indices.max() >= len(self)):
            raise IndexError(f"indices out of range for {len(self)} samples")
        indices = indices % max(len(self), 1)
        # h5py reads fancy indices only in increasing order without repeats: read the sorted unique set, reorder.
        unique, inverse = np.unique(indices, return_inverse=True)
        images, posmaps = self._read_rows(unique)
        return images[inverse], posmaps[inverse]

    def _read_rows(self, rows):
        """``(images[rows], posmaps[rows])`` for a row number or an increasing int64 array of distinct ones."""
        return self._read(self.images, rows), self._read(self.posmaps, rows)

    def _read(self, dataset, rows):
        """``dataset[rows]`` (see ``_read_rows``). Raises InputFileError naming the file, the first unreadable row and
        the dataset for a chunk that fails its decompression or checksum: damaged bytes, which h5py reports as an
        OSError naming neither."""
        try:
            return dataset[rows]
        except OSError as error:
            for row in np.atleast_1d(rows):  # one chunk a row: read them one by one to name the damaged one
                try:
                    dataset[row]
                except OSError as row_error:
                    raise InputFileError(str(self.path), f"row {row} ({self.names[row]}): unreadable "
                                                         f"{dataset.name[1:]!r} data ({row_error})") from None
            # the rows failed together but none alone (an I/O error that passed): still name the file
            raise InputFileError(str(self.path), f"unreadable {dataset.name[1:]!r} data ({error})") from None

    def batches(self, batch_size, shuffle=False, seed=None, drop_last=False):
        """Iterate ``(images (b,R,R,3) uint8, posmaps (b,R,R,3))`` over one epoch.

        Args:
            batch_size: samples per batch (>= 1).
            shuffle: visit samples in a random order drawn from ``numpy.random.default_rng(seed)``.
            seed: seed of that order.
            drop_last: drop the final smaller batch.
        """
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        order = np.random.default_rng(seed).permutation(len(self)) if shuffle else np.arange(len(self))
        for start in range(0, len(order), int(batch_size)):
            batch = order[start:start + int(batch_size)]
            if drop_last and len(batch) < batch_size:
                return
            yield self._take(batch)

    def close(self):
        """Close the HDF5 file."""
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
