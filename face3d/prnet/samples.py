"""PRNet training samples: label files and HDF5 packs as sample sources, checked before training.

Samples come from ``trainDataLabel.txt`` (read by ``face3d.trainset.pack.read_label_file``; relative paths are taken
relative to the label file's folder) or from an HDF5 pack written by ``face3d pack`` (``images`` uint8 (N, R, R, 3),
``posmaps`` float16/float32 (N, R, R, 3), ``names``). Every file is checked before training (``check_samples``): a
missing, truncated, corrupt or implausible file, or a sample of a resolution other than most samples', raises
``InputFileError`` naming it, or is skipped under ``skip_bad``.
"""
import dataclasses
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from face3d.trainset.posmap import load_posmap, posmap_value_problem
from face3d.trainset.sample_io import decode_stored_pixels
from face3d.utils.errors import InputFileError
from face3d.utils.image_header import UnsupportedImageFormat, read_image_header
from face3d.utils.npyfile import data_bytes, read_npy_header
from face3d.utils.progress import Progress

__all__ = ["FileSamples", "H5Samples", "check_samples", "open_h5", "group_key", "split_train_val"]

logger = logging.getLogger(__name__)

_H5_CHECK_ROWS = 64  # maps read at once when checking a pack (64 x 0.8 MB at R = 256 in float32)
_ANGLE_SUFFIX = re.compile(r"_angle_-?\d+(\.\d+)?$")
_VIEW_SUFFIX = re.compile(r"(_\d+)_\d+$")  # <image>_<k>_<view>: keeps <image>_<k>


@dataclass(frozen=True)
class FileSamples:
    """Samples as image / ``.npy`` file pairs (checked by ``check_samples``).

    Attributes:
        images, posmaps: tuples of path strings, one pair per sample.
        resolution: R, the side of every crop and map.
        posmap_dtypes: tuple of each map's numpy dtype string ('<f2' or '<f4'): float16 and float32 maps may mix.
    """
    images: tuple
    posmaps: tuple
    resolution: int
    posmap_dtypes: tuple

    def __len__(self):
        return len(self.images)

    @property
    def names(self):
        """Sample names: image file stems."""
        return [Path(p).stem for p in self.images]

    def subset(self, indices):
        """The samples at ``indices`` (a sequence of ints), in that order."""
        return dataclasses.replace(self, images=tuple(self.images[i] for i in indices),
                                   posmaps=tuple(self.posmaps[i] for i in indices),
                                   posmap_dtypes=tuple(self.posmap_dtypes[i] for i in indices))

    def sources(self, indices):
        """Where the samples at ``indices`` come from: their map files (list of str)."""
        return [self.posmaps[i] for i in indices]

    def loader(self):
        """A TF function index -> (image uint8 (R, R, 3), map float32 (R, R, 3)); each map is decoded in its own
        dtype (``posmap_dtypes``)."""
        import tensorflow as tf
        images = tf.constant(list(self.images), dtype=tf.string)
        posmaps = tf.constant(list(self.posmaps), dtype=tf.string)
        half = tf.constant([np.dtype(d) == np.float16 for d in self.posmap_dtypes], dtype=tf.bool)
        res = self.resolution

        def decode(content, dtype):
            # the array data is the file's tail, whatever the header length (checked by check_samples)
            nbytes = res * res * 3 * dtype.size
            raw = tf.strings.substr(content, tf.strings.length(content) - nbytes, nbytes)
            return tf.reshape(tf.io.decode_raw(raw, dtype, little_endian=True), (res, res, 3))

        def decode_half(content):
            # read as uint16 and shaped before the bits become float16: oneDNN's graph rewrite of a float16 Reshape
            # logs an error-level "supports DT_HALF only on platforms with AVX-512" on CPUs without it
            return tf.cast(tf.bitcast(decode(content, tf.uint16), tf.float16), tf.float32)

        def load(index):
            encoded = tf.io.read_file(images[index])
            # INTEGER_ACCURATE decodes JPEG exactly as OpenCV (and so the HDF5 pack) does
            image = tf.cond(tf.io.is_jpeg(encoded),
                            lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
                            lambda: tf.io.decode_png(encoded, channels=3))
            content = tf.io.read_file(posmaps[index])
            posmap = tf.cond(half[index], lambda: decode_half(content), lambda: decode(content, tf.float32))
            return tf.ensure_shape(image, (res, res, 3)), posmap
        return load


@dataclass(frozen=True)
class H5Samples:
    """Rows of an HDF5 pack (``face3d pack``), read through ``face3d.trainset.pack.PackedTrainset``; see ``open_h5``.

    Attributes:
        path: the HDF5 file.
        indices: tuple of the pack's row indices used, in order.
        resolution: R.
        all_names: tuple of the names of every row of the pack.
        label_file: the label file the pack was made from (``PackedTrainset.label_file``), or None.
    """
    path: str
    indices: tuple
    resolution: int
    all_names: tuple
    label_file: str = None

    def __len__(self):
        return len(self.indices)

    @property
    def names(self):
        """Sample names of the used rows."""
        return [self.all_names[i] for i in self.indices]

    def subset(self, indices):
        """The samples at ``indices`` (positions in this subset), in that order."""
        return dataclasses.replace(self, indices=tuple(self.indices[i] for i in indices))

    def sources(self, indices):
        """Where the samples at ``indices`` come from: ``<pack> row <row> (<name>)`` (list of str)."""
        return [f"{self.path} row {self.indices[i]} ({self.all_names[self.indices[i]]})" for i in indices]

    def loader(self):
        """A TF function index -> (image uint8 (R, R, 3), map float32 (R, R, 3)), reading rows of the pack."""
        import tensorflow as tf

        from face3d.trainset.pack import PackedTrainset
        rows = np.asarray(self.indices, dtype=np.int64)
        res = self.resolution
        opened = {}  # the pack, opened lazily, once, in the process running the pipeline

        def read(index):
            if "pack" not in opened:
                opened["pack"] = PackedTrainset(self.path)
            image, posmap = opened["pack"][int(rows[int(index)])]
            return image, posmap.astype(np.float32)

        def load(index):
            image, posmap = tf.numpy_function(read, [index], (tf.uint8, tf.float32), stateful=False)
            return tf.ensure_shape(image, (res, res, 3)), tf.ensure_shape(posmap, (res, res, 3))
        return load


# The bytes a complete file of each format ends with (trailing zero padding aside).
_END_MARKERS = {"png": (b"IEND\xaeB`\x82", "truncated or corrupt PNG"),
                "jpeg": (b"\xff\xd9", "truncated JPEG (no end-of-image marker)")}


def _image_size(path):
    """(width, height) of a complete, decodable JPEG or PNG (the formats TensorFlow decodes here): the header
    (``face3d.utils.image_header``) and the end marker are checked, then the pixels are decoded once
    (``face3d.trainset.sample_io.decode_stored_pixels``), so that a damaged table or damaged compressed data stops
    before training instead of failing TensorFlow's decoder mid-epoch. Raises InputFileError for a truncated or
    corrupt file or another format.

    A JPEG whose scan data is damaged with its end marker intact decodes (libjpeg fills what is missing, with a
    warning OpenCV does not report) in OpenCV and in TensorFlow alike, so it passes."""
    data = Path(path).read_bytes()
    try:
        header = read_image_header(data)
    except UnsupportedImageFormat:
        header = None
    except ValueError as exc:
        raise InputFileError(path, f"corrupt image header ({exc})") from None
    if header is None or header.format not in _END_MARKERS:
        raise InputFileError(path, "not a JPEG or PNG image")
    end, problem = _END_MARKERS[header.format]
    if not data.rstrip(b"\0").endswith(end):
        raise InputFileError(path, problem)
    if decode_stored_pixels(data) is None:
        raise InputFileError(path, f"corrupt image data (its {header.format.upper()} pixels do not decode)")
    return header.width, header.height


def _npy_info(path):
    """(shape, dtype string) of a ``.npy`` file after checking its header (``read_npy_header``) and size; raises
    InputFileError."""
    shape, fortran, dtype, offset = read_npy_header(path, "position map")
    if fortran:
        raise InputFileError(path, "Fortran-ordered array, expected C order")
    if dtype.str not in ("<f2", "<f4"):
        raise InputFileError(path, f"dtype {dtype.str}, expected little-endian float16 or float32")
    expected = offset + data_bytes(shape, dtype)
    if os.path.getsize(path) != expected:
        raise InputFileError(path, f"truncated or padded .npy ({os.path.getsize(path)} bytes, expected {expected})")
    return shape, dtype.str


def _skip_or_raise(error, skip_bad):
    """A bad sample: log ``error`` (InputFileError) as a warning when ``skip_bad``, else raise it."""
    if not skip_bad:
        raise error
    logger.warning("skipping bad sample: %s", error)


def _checked_sample(image, posmap):
    """``check_samples``' checks of one (image, map) pair on its own. Returns (resolution, map dtype string);
    raises InputFileError naming the bad file."""
    for name in (image, posmap):
        if not os.path.isfile(name):
            raise InputFileError(name, "file not found")
    shape, map_dtype = _npy_info(posmap)
    if len(shape) != 3 or shape[2] != 3 or shape[0] != shape[1]:
        raise InputFileError(posmap, f"shape {shape}, expected (R, R, 3)")
    width, height = _image_size(image)
    if (height, width) != shape[:2]:
        raise InputFileError(image, f"size {width}x{height} differs from its map's {shape[1]}x{shape[0]}")
    problem = posmap_value_problem(load_posmap(posmap), shape[0])
    if problem is not None:
        raise InputFileError(posmap, problem)
    return shape[0], map_dtype


def check_samples(pairs, skip_bad=False, progress=False, source=None):
    """Check every sample's files before training; return the usable ones as FileSamples.

    Checks: both files exist; the image is a complete JPEG/PNG of size R x R whose pixels decode (``_image_size``);
    the map is a C-ordered little-endian float16/float32 ``.npy`` of shape (R, R, 3) with all its bytes, finite
    and within the plausible range of an R x R crop (``face3d.trainset.posmap.posmap_value_problem``). Then every
    sample must have the resolution R that most samples passing those checks have (the first one's among equally
    common ones): a sample of another R is bad. float16 and float32 maps may mix.

    Args:
        pairs: list of (image path, npy path).
        skip_bad: log a warning per bad sample and drop it, instead of raising.
        progress: a progress bar on stderr (decoding every image makes the check last a few ms a sample).
        source: the label file ``pairs`` were read from, named when no sample is usable (None: none named).
    Returns:
        FileSamples of the good samples, with absolute paths.
    Raises:
        InputFileError naming the first bad file (skip_bad False; a sample of another resolution only after every
        sample was checked), or the source when no sample is usable.
    """
    checked = []  # (image, map, resolution, map dtype) of the samples passing the checks of one sample
    with Progress(len(pairs), desc="check samples", enabled=progress) as bar:
        for image, posmap in pairs:
            try:
                checked.append((image, posmap, *_checked_sample(image, posmap)))
            except InputFileError as error:
                _skip_or_raise(error, skip_bad)
            bar.update()
    if not checked:
        raise InputFileError(source, f"no usable sample among {len(pairs)}")
    resolution, count = Counter(r for _, _, r, _ in checked).most_common(1)[0]
    good = []
    for image, posmap, map_resolution, map_dtype in checked:
        if map_resolution == resolution:
            good.append((os.path.abspath(image), os.path.abspath(posmap), map_dtype))
            continue
        _skip_or_raise(InputFileError(posmap, f"resolution {map_resolution}, {count} of {len(checked)} samples "
                                              f"have {resolution}"), skip_bad)
    if len(good) < len(pairs):
        logger.warning("skipped %d bad sample(s) of %d", len(pairs) - len(good), len(pairs))
    images, posmaps, dtypes = zip(*good)
    return FileSamples(images, posmaps, int(resolution), dtypes)


def open_h5(path, skip_bad=False):
    """Open an HDF5 pack (``face3d pack``) as training samples over its rows.

    ``PackedTrainset`` checks the file and its datasets; this adds what training needs: at least one sample,
    ``images`` uint8 (N, R, R, 3) and ``posmaps`` float of the same shape, every image and map readable (a damaged
    chunk fails its decompression or, in a pack written with checksums, its checksum) and every map finite and
    plausible (``posmap_value_problem``; the whole pack is read once).

    Args:
        path: the ``.h5`` file.
        skip_bad: log a warning per bad row and leave it out, instead of raising.
    Returns:
        H5Samples.
    Raises:
        FileNotFoundError / InputFileError naming the file (and the row).
    """
    from face3d.trainset.pack import PackedTrainset
    path = os.path.abspath(path)
    with PackedTrainset(path) as pack:
        images, posmaps = pack.images, pack.posmaps
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2]:
            raise InputFileError(path, f"'images' must be uint8 (N, R, R, 3), got {images.dtype} {images.shape}")
        if posmaps.shape != images.shape or posmaps.dtype.kind != "f":
            raise InputFileError(path, f"'posmaps' must be float {images.shape}, got {posmaps.dtype} {posmaps.shape}")
        if len(pack) == 0:
            raise InputFileError(path, "the pack holds no samples")
        rows = []
        for start in range(0, len(pack), _H5_CHECK_ROWS):
            for row, posmap in _readable_maps(pack, range(start, min(start + _H5_CHECK_ROWS, len(pack))), skip_bad):
                problem = posmap_value_problem(posmap, pack.resolution)
                if problem is None:
                    rows.append(row)
                else:
                    _skip_or_raise(InputFileError(path, f"row {row} ({pack.names[row]}): {problem}"), skip_bad)
        if not rows:
            raise InputFileError(path, f"no usable sample among {len(pack)}")
        if len(rows) < len(pack):
            logger.warning("skipped %d bad sample(s) of %d", len(pack) - len(rows), len(pack))
        return H5Samples(path, tuple(rows), int(pack.resolution), tuple(pack.names), pack.label_file)


def _readable_maps(pack, block, skip_bad):
    """``(row, posmap (R, R, 3))`` for the rows of ``block`` (a range) of ``pack`` (PackedTrainset) whose image and
    map both read: the block at once, or row by row when a chunk in it is damaged, each unreadable row raised (with
    ``skip_bad``: logged and left out) as PackedTrainset's InputFileError naming the file and the row."""
    try:
        return list(zip(block, pack[block.start:block.stop][1]))
    except InputFileError:  # named the first damaged row only: look at each row
        pass
    readable = []
    for row in block:
        try:
            readable.append((row, pack[row][1]))
        except InputFileError as error:
            _skip_or_raise(error, skip_bad)
    return readable


def group_key(name):
    """The source face of a sample, the unit that the validation split keeps on one side.

    ``name`` is an image stem, as ``FileSamples.names`` and a pack's ``names`` give them (no folder). Rules:

    * a rotated copy ``<stem>_angle_<deg>`` belongs to ``<stem>``;
    * then a name ending in two numeric groups ``<image>_<k>_<view>`` belongs to ``<image>_<k>``: 300W-LP's profiled
      views of face k of an image (``AFW_134212_1_0``, ``AFW_134212_1_1``) and ``face3d synthesize``'s
      ``SYNTH_<ffff>_1_<view>`` share one face's Shape_Para and Exp_Para;
    * a ``_Flip`` copy (the same stem in the folder ``<X>_Flip``: the mirrored photo of the same face) has the
      same stem as its source, so the same key.

    A name with a single trailing number (``IMG_1234``) is its own source.

    Example: ``AFW_134212_1_3_angle_-30`` -> ``AFW_134212_1``.
    """
    return _VIEW_SUFFIX.sub(r"\1", _ANGLE_SUFFIX.sub("", name))


def split_train_val(names, fraction, seed):
    """Deterministic split keeping every sample of a source face (``group_key``: its views, rotated and mirrored
    copies) in the same part.

    Args:
        names: sample names (image stems).
        fraction: share of the groups used for validation, in [0, 1); at least one group when > 0.
        seed: int, the split's random seed.
    Returns:
        (train indices, val indices): sorted lists of ints.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    groups = sorted({group_key(n) for n in names})
    if fraction == 0:
        return list(range(len(names))), []
    if len(groups) < 2:
        raise ValueError(f"cannot split {len(names)} samples of {len(groups)} source face into train and validation "
                         "parts (a face's views and copies stay together): train without validation "
                         "(--val-fraction 0) or give a validation list (--val-list)")
    order = np.random.default_rng(seed).permutation(len(groups))
    n_val = min(max(1, int(round(fraction * len(groups)))), len(groups) - 1)
    val_groups = {groups[i] for i in order[:n_val]}
    val = [i for i, n in enumerate(names) if group_key(n) in val_groups]
    train = [i for i, n in enumerate(names) if group_key(n) not in val_groups]
    return train, val
