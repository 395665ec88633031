"""Training input for PRNet: sample lists, up-front validation, and the ``tf.data`` pipeline with augmentation.

Samples come from ``trainDataLabel.txt`` (one ``<image path> <npy path>`` line per sample, read by
``face3d.trainset.pack.read_label_file``: relative paths are taken relative to the label file's folder) or from an
HDF5 pack written by ``face3d pack`` (read through ``face3d.trainset.pack.PackedTrainset``: ``images`` uint8
(N, R, R, 3), ``posmaps`` float16/float32 (N, R, R, 3), ``names``). Crops are R x R images; position maps hold
crop-space x, y (pixels, pixel centres at integers) and z.

Every file is checked before training starts (``check_samples``): a missing, truncated or corrupt file raises
``InputFileError`` naming it, or is skipped with a warning under ``skip_bad``.

The pipeline (``make_dataset``) yields ``(image, target, weight)`` batches: image float32 (B, S, S, 3) in [0, 1];
target float32 (B, S, S, 3) = position map / (1.1 * R) (the official model's normalisation, so the network's
sigmoid output times 1.1 * R is a position map in crop pixels); weight float32 (B, S, S), the UV weight mask scaled
to a maximum of 1 (``uv_weights.loss_weights``), used by Keras as a per-pixel sample weight. S is the model's input
size (R unless training at a reduced size; the map is then resampled nearest-neighbour at the pixels
``resample_indices`` picks and the image warped straight to S).
Files are read and decoded by TensorFlow (JPEG exactly as OpenCV decodes it); the augmentation runs per sample in
OpenCV (``augment_sample``) inside parallel ``tf.numpy_function`` calls.

Augmentation (Feng et al. 2018, section 4.2), each part switchable (``AugmentConfig``): one similarity transform
p' = s R(theta) (p - c) + c + t about the crop centre c = ((R - 1) / 2, (R - 1) / 2), applied to the image (by
inverse warping, bilinear) and to the map's x, y (z is multiplied by s; pixels outside the face stay 0), with
theta uniform in +-45 degrees, t uniform in +-10 % of R per axis, s uniform in [0.9, 1.2]; then per-channel colour
factors uniform in [0.6, 1.4] (clipped to [0, 1]); then, with probability 0.5, a rectangle of random textured noise.
Random numbers come from stateless generators keyed by (seed, epoch, sample index), and the sample order of each
epoch from a stateless shuffle keyed by (seed, epoch), so an epoch's batches depend only on those and not on
parallelism or on where a run was resumed.
"""
import dataclasses
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from face3d.contract import map_scale
from face3d.prnet.uv_weights import loss_weights, resample_indices
from face3d.utils.errors import InputFileError

__all__ = [
    "AugmentConfig", "FileSamples", "H5Samples", "check_samples", "open_h5", "split_train_val",
    "group_key", "make_dataset", "augment_params", "augment_sample",
]

logger = logging.getLogger(__name__)

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ANGLE_SUFFIX = re.compile(r"_angle_-?\d+(\.\d+)?$")
_N_UNIFORMS = 12  # per-sample uniforms: angle, tx, ty, scale, 3 colours, occlusion gate, rectangle (4)


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run and their ranges (defaults: the paper's recipe).

    Attributes:
        rotation: rotate image and map x, y together by an angle uniform in +-max_rotation degrees.
        translation: shift by up to +-max_translation x R pixels per axis.
        scale: scale about the crop centre by a factor uniform in scale_range.
        color: multiply each image channel by a factor uniform in color_range.
        occlusion: with probability occlusion_prob, paste a rectangle of textured noise whose sides are uniform
            in occlusion_size x S.
    """
    rotation: bool = True
    translation: bool = True
    scale: bool = True
    color: bool = True
    occlusion: bool = True
    max_rotation: float = 45.0
    max_translation: float = 0.1
    scale_range: tuple = (0.9, 1.2)
    color_range: tuple = (0.6, 1.4)
    occlusion_prob: float = 0.5
    occlusion_size: tuple = (0.1, 0.5)

    @classmethod
    def off(cls):
        """An AugmentConfig with every augmentation disabled."""
        return cls(rotation=False, translation=False, scale=False, color=False, occlusion=False)

    @property
    def geometric(self):
        """True when any of rotation, translation, scale is on."""
        return self.rotation or self.translation or self.scale

    @property
    def enabled(self):
        """True when any augmentation is on."""
        return self.geometric or self.color or self.occlusion


# ----------------------------------------------------------------------------------------------- sample sources

@dataclass(frozen=True)
class FileSamples:
    """Samples as image / ``.npy`` file pairs (checked by ``check_samples``).

    Attributes:
        images, posmaps: tuples of path strings, one pair per sample.
        resolution: R, the side of every crop and map.
        posmap_dtype: numpy dtype string of every map ('<f2' or '<f4').
    """
    images: tuple
    posmaps: tuple
    resolution: int
    posmap_dtype: str

    def __len__(self):
        return len(self.images)

    @property
    def names(self):
        """Sample names: image file stems."""
        return [Path(p).stem for p in self.images]

    def subset(self, indices):
        """The samples at ``indices`` (a sequence of ints), in that order."""
        return dataclasses.replace(self, images=tuple(self.images[i] for i in indices),
                                   posmaps=tuple(self.posmaps[i] for i in indices))

    def loader(self):
        """A TF function index -> (image uint8 (R, R, 3), map float32 (R, R, 3))."""
        import tensorflow as tf
        images = tf.constant(list(self.images), dtype=tf.string)
        posmaps = tf.constant(list(self.posmaps), dtype=tf.string)
        res = self.resolution
        dtype = tf.float16 if np.dtype(self.posmap_dtype).itemsize == 2 else tf.float32
        nbytes = res * res * 3 * np.dtype(self.posmap_dtype).itemsize

        def load(index):
            encoded = tf.io.read_file(images[index])
            # INTEGER_ACCURATE decodes JPEG exactly as OpenCV (and so the HDF5 pack) does
            image = tf.cond(tf.io.is_jpeg(encoded),
                            lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
                            lambda: tf.io.decode_png(encoded, channels=3))
            content = tf.io.read_file(posmaps[index])
            # the array data is the file's tail, whatever the header length (checked by check_samples)
            raw = tf.strings.substr(content, tf.strings.length(content) - nbytes, nbytes)
            posmap = tf.reshape(tf.io.decode_raw(raw, dtype, little_endian=True), (res, res, 3))
            return tf.ensure_shape(image, (res, res, 3)), tf.cast(posmap, tf.float32)
        return load


@dataclass(frozen=True)
class H5Samples:
    """Rows of an HDF5 pack (``face3d pack``), read through ``face3d.trainset.pack.PackedTrainset``; see ``open_h5``.

    Attributes:
        path: the HDF5 file.
        indices: tuple of the pack's row indices used, in order.
        resolution: R.
        all_names: tuple of the names of every row of the pack.
    """
    path: str
    indices: tuple
    resolution: int
    all_names: tuple

    def __len__(self):
        return len(self.indices)

    @property
    def names(self):
        """Sample names of the used rows."""
        return [self.all_names[i] for i in self.indices]

    def subset(self, indices):
        """The samples at ``indices`` (positions in this subset), in that order."""
        return dataclasses.replace(self, indices=tuple(self.indices[i] for i in indices))

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


def _image_size(path):
    """(width, height) from a JPEG's SOF or a PNG's IHDR header; raises InputFileError for anything else."""
    data = Path(path).read_bytes()
    if data.startswith(_PNG_SIGNATURE):
        if len(data) < 33 or data[12:16] != b"IHDR" or not data.rstrip(b"\0").endswith(b"IEND\xaeB`\x82"):
            raise InputFileError(path, "truncated or corrupt PNG")
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if not data.startswith(b"\xff\xd8"):
        raise InputFileError(path, "not a JPEG or PNG image")
    if not data.rstrip(b"\0").endswith(b"\xff\xd9"):
        raise InputFileError(path, "truncated JPEG (no end-of-image marker)")
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise InputFileError(path, "corrupt JPEG header")
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker in _JPEG_SOF and pos + 9 <= len(data):
            return int.from_bytes(data[pos + 7:pos + 9], "big"), int.from_bytes(data[pos + 5:pos + 7], "big")
        pos += 2 + length
    raise InputFileError(path, "corrupt JPEG (no frame header)")


def _npy_info(path):
    """(shape, dtype string) of a ``.npy`` file after checking its header and size; raises InputFileError."""
    with open(path, "rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(handle)
        except (ValueError, EOFError, SyntaxError, TypeError) as error:
            raise InputFileError(path, f"not a .npy file ({error})") from None
        offset = handle.tell()
    if fortran:
        raise InputFileError(path, "Fortran-ordered array, expected C order")
    if dtype.str not in ("<f2", "<f4"):
        raise InputFileError(path, f"dtype {dtype.str}, expected little-endian float16 or float32")
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    if os.path.getsize(path) != expected:
        raise InputFileError(path, f"truncated or padded .npy ({os.path.getsize(path)} bytes, expected {expected})")
    return shape, dtype.str


def check_samples(pairs, skip_bad=False):
    """Check every sample's files before training; return the usable ones as FileSamples.

    Checks: both files exist; the image is a complete JPEG/PNG of size R x R; the map is a C-ordered
    little-endian float16/float32 ``.npy`` of shape (R, R, 3) with all its bytes; R and the map dtype agree across
    samples (the first good sample sets them).

    Args:
        pairs: list of (image path, npy path).
        skip_bad: log a warning per bad sample and drop it, instead of raising.
    Returns:
        FileSamples of the good samples, with absolute paths.
    Raises:
        InputFileError naming the first bad file (skip_bad False), or when no sample is usable.
    """
    good, bad = [], 0
    resolution = dtype = None
    for image, posmap in pairs:
        try:
            for name in (image, posmap):
                if not os.path.isfile(name):
                    raise InputFileError(name, "file not found")
            shape, map_dtype = _npy_info(posmap)
            if len(shape) != 3 or shape[2] != 3 or shape[0] != shape[1]:
                raise InputFileError(posmap, f"shape {shape}, expected (R, R, 3)")
            width, height = _image_size(image)
            if (height, width) != shape[:2]:
                raise InputFileError(image, f"size {width}x{height} differs from its map's {shape[1]}x{shape[0]}")
            if resolution is not None and shape[0] != resolution:
                raise InputFileError(posmap, f"resolution {shape[0]}, the other samples have {resolution}")
            if dtype is not None and map_dtype != dtype:
                raise InputFileError(posmap, f"dtype {map_dtype}, the other samples have {dtype}")
        except InputFileError as error:
            if not skip_bad:
                raise
            bad += 1
            logger.warning("skipping bad sample: %s", error)
            continue
        resolution, dtype = shape[0], map_dtype
        good.append((os.path.abspath(image), os.path.abspath(posmap)))
    if not good:
        raise InputFileError(None, f"no usable sample among {len(pairs)}")
    if bad:
        logger.warning("skipped %d bad sample(s) of %d", bad, len(pairs))
    return FileSamples(tuple(p[0] for p in good), tuple(p[1] for p in good), int(resolution), dtype)


def open_h5(path):
    """Open an HDF5 pack (``face3d pack``) as training samples over all its rows.

    ``PackedTrainset`` checks the file and its datasets; this adds what training needs: at least one sample,
    ``images`` uint8 (N, R, R, 3) and ``posmaps`` float of the same shape.
    Returns:
        H5Samples.
    Raises:
        FileNotFoundError / InputFileError naming the file.
    """
    from face3d.trainset.pack import PackedTrainset
    path = os.path.abspath(path)
    try:
        pack = PackedTrainset(path)
    except FileNotFoundError:
        raise
    except OSError as error:  # h5py's message does not name the file
        raise InputFileError(path, f"not a readable HDF5 file ({error})") from None
    except ValueError as error:
        raise InputFileError(None, str(error)) from None
    with pack:
        images, posmaps = pack.images, pack.posmaps
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2]:
            raise InputFileError(path, f"'images' must be uint8 (N, R, R, 3), got {images.dtype} {images.shape}")
        if posmaps.shape != images.shape or posmaps.dtype.kind != "f":
            raise InputFileError(path, f"'posmaps' must be float {images.shape}, got {posmaps.dtype} {posmaps.shape}")
        if len(pack) == 0:
            raise InputFileError(path, "the pack holds no samples")
        return H5Samples(path, tuple(range(len(pack))), int(pack.resolution), tuple(pack.names))


def group_key(name):
    """Name of the source sample: a rotated copy ``<stem>_angle_<deg>`` belongs to ``<stem>``."""
    return _ANGLE_SUFFIX.sub("", name)


def split_train_val(names, fraction, seed):
    """Deterministic split keeping every rotated copy in the same part as its source sample.

    Args:
        names: sample names.
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
        raise ValueError(f"cannot split {len(names)} samples from {len(groups)} source sample(s) into train and val")
    order = np.random.default_rng(seed).permutation(len(groups))
    n_val = min(max(1, int(round(fraction * len(groups)))), len(groups) - 1)
    val_groups = {groups[i] for i in order[:n_val]}
    val = [i for i, n in enumerate(names) if group_key(n) in val_groups]
    train = [i for i, n in enumerate(names) if group_key(n) not in val_groups]
    return train, val


# ------------------------------------------------------------------------------------------------- augmentation

def augment_params(seed, augment):
    """Per-sample random augmentation parameters (stateless: equal seeds give equal parameters).

    Args:
        seed: int64 tensor (2,), the sample's stateless seed.
        augment: AugmentConfig.
    Returns:
        dict of float32 tensors: ``angle`` () radians, ``shift`` (2,) fraction of R, ``scale`` (), ``color`` (3,),
        ``occlude`` () 0 or 1, ``rect`` (4,) centre x, y and width, height as fractions of S,
        ``coarse`` (8, 8, 3) and ``fine`` (32, 32, 3) uniform noise for the occluder's texture.
    """
    import tensorflow as tf
    seeds = tf.random.experimental.stateless_split(seed, 3)
    u = tf.random.stateless_uniform((_N_UNIFORMS,), seeds[0], dtype=tf.float32)

    def ranged(value, bounds):
        return bounds[0] + (bounds[1] - bounds[0]) * value

    zero = tf.constant(0.0)
    angle = ranged(u[0], (-1.0, 1.0)) * (augment.max_rotation * math.pi / 180.0) if augment.rotation else zero
    shift = ranged(u[1:3], (-1.0, 1.0)) * augment.max_translation if augment.translation else tf.zeros(2)
    scale = ranged(u[3], augment.scale_range) if augment.scale else tf.constant(1.0)
    color = ranged(u[4:7], augment.color_range) if augment.color else tf.ones(3)
    occlude = tf.cast(u[7] < augment.occlusion_prob, tf.float32) if augment.occlusion else zero
    rect = tf.concat([u[8:10], ranged(u[10:12], augment.occlusion_size)], axis=0)
    return {
        "angle": angle, "shift": shift, "scale": scale, "color": color, "occlude": occlude, "rect": rect,
        "coarse": tf.random.stateless_uniform((8, 8, 3), seeds[1]),
        "fine": tf.random.stateless_uniform((32, 32, 3), seeds[2]),
    }


def augment_sample(image, posmap, params, size, augment):
    """Apply the augmentation of ``params`` to one sample and bring it to the model's input size (numpy + OpenCV,
    which runs several times faster than TensorFlow's image ops here and releases the GIL for parallel calls).

    Args:
        image: (R, R, 3) uint8 crop.
        posmap: (R, R, 3) float32 map in crop pixels.
        params: dict of numpy values from ``augment_params``.
        size: S, the output side.
        augment: AugmentConfig (decides which steps run at all).
    Returns:
        image float32 (S, S, 3) in [0, 1]; map float32 (S, S, 3) in crop pixels of the R x R crop (resampled
        nearest-neighbour at ``resample_indices(R, S)`` when R != S). OpenCV's bilinear warp interpolates on a
        1/32-pixel grid.
    """
    import cv2
    res = image.shape[0]
    out = image.astype(np.float32)
    posmap = np.asarray(posmap, dtype=np.float32)
    if augment.geometric or res != size:
        centre = (res - 1) / 2.0
        angle, scale = float(params["angle"]), float(params["scale"])
        tx, ty = float(params["shift"][0]) * res, float(params["shift"][1]) * res
        cos, sin = math.cos(angle), math.sin(angle)
        # output pixel q (S grid) sits at p' = k q + b in the crop; its source is p = R^T (p' - c - t) / s + c
        k = res / size
        b = 0.5 * k - 0.5
        px, py = b - centre - tx, b - centre - ty
        inverse = np.array([[cos * k / scale, sin * k / scale, (cos * px + sin * py) / scale + centre],
                            [-sin * k / scale, cos * k / scale, (-sin * px + cos * py) / scale + centre]])
        out = cv2.warpAffine(out, inverse, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        if augment.geometric:
            # x' = s R x + o with o = c + t - s R c, z' = s z; the offset only inside the face (outside stays 0).
            # OpenCV's vectorised calls run several times faster than the numpy equivalents on (R, R, 3).
            linear = np.array([[scale * cos, -scale * sin, 0], [scale * sin, scale * cos, 0], [0, 0, scale]])
            offset = (centre + tx - scale * (cos - sin) * centre, centre + ty - scale * (sin + cos) * centre, 0, 0)
            magnitude = cv2.transform(cv2.absdiff(posmap, (0.0, 0.0, 0.0, 0.0)), np.ones((1, 3)))
            inside = (magnitude > 0).view(np.uint8)
            posmap = cv2.transform(posmap, linear)
            cv2.add(posmap, offset, dst=posmap, mask=inside)
    if posmap.shape[0] != size:
        index = resample_indices(posmap.shape[0], size)
        posmap = posmap[np.ix_(index, index)]
    if augment.color:
        cv2.multiply(out, tuple(float(c) for c in params["color"]) + (0.0,), dst=out)
        cv2.threshold(out, 255.0, 255.0, cv2.THRESH_TRUNC, dst=out)  # clip to 255
    if augment.occlusion and params["occlude"] > 0.5:
        cx, cy, w, h = (float(v) for v in params["rect"])
        x0, x1 = max(math.ceil((cx - w / 2) * size - 0.5), 0), min(math.floor((cx + w / 2) * size - 0.5), size - 1)
        y0, y1 = max(math.ceil((cy - h / 2) * size - 0.5), 0), min(math.floor((cy + h / 2) * size - 0.5), size - 1)
        if x1 >= x0 and y1 >= y0:
            shape = (x1 - x0 + 1, y1 - y0 + 1)
            texture = 0.6 * cv2.resize(params["coarse"], shape, interpolation=cv2.INTER_LINEAR) + \
                0.4 * cv2.resize(params["fine"], shape, interpolation=cv2.INTER_NEAREST)
            out[y0:y1 + 1, x0:x1 + 1] = 255.0 * texture
    out /= np.float32(255)  # the same rounding as the TensorFlow path without augmentation
    return out, posmap


def make_dataset(samples, uv, *, batch_size, input_size=None, augment=None, seed=0, epoch=0, shuffle=True,
                 drop_remainder=True):
    """The ``tf.data`` pipeline of one epoch.

    Args:
        samples: FileSamples or H5Samples.
        uv: ``face3d.trainset.uv_layout.UVData`` at the model's input size S (``uv_weights.resize_uv_data``); its
            weight mask (``uv_weights.loss_weights``) becomes the per-pixel weight.
        batch_size: samples per batch.
        input_size: S (default: the samples' resolution R).
        augment: AugmentConfig, or None for no augmentation (validation).
        seed: int, base seed of the shuffle and of the augmentation.
        epoch: int, the epoch whose order and augmentation are produced.
        shuffle: shuffle the sample order (stateless, keyed by seed and epoch).
        drop_remainder: drop the last incomplete batch.
    Returns:
        tf.data.Dataset of (image (B, S, S, 3), target (B, S, S, 3), weight (B, S, S)) float32 tensors; the
        target is the map / (1.1 R).
    """
    import tensorflow as tf
    size = int(input_size or samples.resolution)
    if uv.resolution != size:
        raise ValueError(f"uv data resolution {uv.resolution} differs from the input size {size}; "
                         "use resize_uv_data(uv, size)")
    if len(samples) == 0:
        raise ValueError("samples is empty")
    augment = augment or AugmentConfig.off()
    n = len(samples)
    order = tf.range(n, dtype=tf.int64)
    if shuffle:
        order = tf.random.experimental.stateless_shuffle(order, seed=tf.constant([seed, epoch], tf.int64))
    load = samples.loader()
    epoch_key = tf.constant(int(epoch) * n, tf.int64)
    seed_value = tf.constant(int(seed), tf.int64)

    keys = ("angle", "shift", "scale", "color", "occlude", "rect", "coarse", "fine")

    def transform(image, posmap, *values):
        return augment_sample(image, posmap, dict(zip(keys, values)), size, augment)

    def element(index):
        image, posmap = load(index)
        if augment.enabled or samples.resolution != size:
            params = augment_params(tf.stack([seed_value, epoch_key + index]), augment)
            image, posmap = tf.numpy_function(transform, [image, posmap] + [params[k] for k in keys],
                                              (tf.float32, tf.float32), stateful=False)
            image, posmap = tf.ensure_shape(image, (size, size, 3)), tf.ensure_shape(posmap, (size, size, 3))
        else:
            image = tf.cast(image, tf.float32) / 255.0
        return image, posmap

    weight = tf.constant(loss_weights(uv), tf.float32)
    scale = map_scale(samples.resolution)

    def finish(images, posmaps):
        return images, posmaps / scale, tf.broadcast_to(weight, tf.shape(posmaps)[:3])

    dataset = tf.data.Dataset.from_tensor_slices(order)
    dataset = dataset.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
