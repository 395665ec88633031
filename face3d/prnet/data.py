"""Training input for PRNet: the ``tf.data`` pipeline with augmentation (Feng et al. 2018, section 4.2).

Samples and their up-front checks are in ``face3d.prnet.samples``. ``make_dataset`` yields (image, target, weight)
batches at the model's input size S: images in [0, 1], targets the position map / (1.1 * R) for R x R maps.
``augment_sample`` documents the augmentation. An epoch's batches depend only on (seed, epoch), not on
parallelism or on where a run was resumed.
"""
import logging
import math
from dataclasses import dataclass

import numpy as np

from face3d.contract import map_scale
from face3d.prnet.samples import FileSamples, H5Samples, check_samples, group_key, open_h5, split_train_val
from face3d.prnet.uv_weights import loss_weights, resample_map, resize_uv_data

__all__ = [
    "AugmentConfig", "FileSamples", "H5Samples", "check_samples", "open_h5", "split_train_val",
    "group_key", "epoch_order", "make_dataset", "augment_params", "augment_sample",
]  # the sample sources and checks are re-exported from face3d.prnet.samples

logger = logging.getLogger(__name__)

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


def augment_sample(image, posmap, params, size, augment, uv_kpt_ind):
    """Apply the augmentation of ``params`` to one sample and bring it to the model's input size (numpy + OpenCV,
    which runs several times faster than TensorFlow's image ops here and releases the GIL for parallel calls).

    One similarity transform ``p' = s R(theta) (p - c) + c + t`` about the crop centre c = ((R - 1) / 2, (R - 1) / 2)
    is applied to the image (by inverse warping, bilinear) and to the map's x, y (z is multiplied by s; pixels
    outside the face stay 0), with the defaults theta uniform in +-45 degrees, t uniform in +-10 % of R per axis,
    s uniform in [0.9, 1.2] (``AugmentConfig``); then per-channel colour factors uniform in [0.6, 1.4] (clipped to
    [0, 1]); then, with probability 0.5, a rectangle of random textured noise. Below R the map is resampled
    nearest-neighbour with the keypoints' own values at their pixels of the S map, and the image warped straight
    to S.

    Args:
        image: (R, R, 3) uint8 crop.
        posmap: (R, R, 3) float32 map in crop pixels.
        params: dict of numpy values from ``augment_params``.
        size: S, the output side.
        augment: AugmentConfig (decides which steps run at all).
        uv_kpt_ind: (2, 68) keypoint pixels of the R x R map (the UV data's ``uv_kpt_ind``).
    Returns:
        image float32 (S, S, 3) in [0, 1]; map float32 (S, S, 3) in crop pixels of the R x R crop (brought to S by
        ``uv_weights.resample_map`` when R != S). OpenCV's bilinear warp interpolates on a 1/32-pixel grid.
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
    posmap = resample_map(posmap, uv_kpt_ind, size)
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


def epoch_order(count, seed, epoch, shuffle=True):
    """The order in which one epoch visits ``count`` samples: a stateless shuffle keyed by (seed, epoch).

    Returns:
        int64 tensor (count,), a permutation of 0 .. count - 1 (the identity when ``shuffle`` is False).
    """
    import tensorflow as tf
    order = tf.range(count, dtype=tf.int64)
    if shuffle:
        order = tf.random.experimental.stateless_shuffle(order, seed=tf.constant([seed, epoch], tf.int64))
    return order


def make_dataset(samples, uv, *, batch_size, input_size=None, augment=None, seed=0, epoch=0, shuffle=True,
                 drop_remainder=True):
    """The ``tf.data`` pipeline of one epoch.

    Files are read and decoded by TensorFlow (JPEG exactly as OpenCV decodes it); ``augment_sample`` runs per
    sample inside parallel ``tf.numpy_function`` calls. Its random numbers come from stateless generators keyed by
    (seed, epoch, sample index) (``augment_params``) and the sample order from a stateless shuffle keyed by
    (seed, epoch) (``epoch_order``).

    Args:
        samples: FileSamples or H5Samples.
        uv: ``face3d.trainset.uv_layout.UVData`` of the maps (resolution R); its weight mask at S
            (``uv_weights.resize_uv_data``, ``uv_weights.loss_weights``) becomes the per-pixel weight.
        batch_size: samples per batch.
        input_size: S (default: the samples' resolution R).
        augment: AugmentConfig, or None for no augmentation (validation).
        seed: int, base seed of the shuffle and of the augmentation.
        epoch: int, the epoch whose order and augmentation are produced.
        shuffle: shuffle the sample order (stateless, keyed by seed and epoch).
        drop_remainder: drop the last incomplete batch.
    Returns:
        tf.data.Dataset of (image (B, S, S, 3), target (B, S, S, 3), weight (B, S, S)) float32 tensors: image in
        [0, 1]; target the map / (1.1 R) (the official model's normalisation, so the network's sigmoid output times
        1.1 R is a position map in crop pixels); weight the UV weight mask scaled to a maximum of 1
        (``uv_weights.loss_weights``), used by Keras as a per-pixel sample weight. S is R unless training at a
        reduced input size.
    """
    import tensorflow as tf
    size = int(input_size or samples.resolution)
    if uv.resolution != samples.resolution:
        raise ValueError(f"uv data resolution {uv.resolution} differs from the maps' {samples.resolution}: pass the "
                         "maps' own UV data (not resize_uv_data's), whatever the input size")
    if len(samples) == 0:
        raise ValueError("samples is empty")
    augment = augment or AugmentConfig.off()
    n = len(samples)
    order = epoch_order(n, seed, epoch, shuffle)
    load = samples.loader()
    epoch_key = tf.constant(int(epoch) * n, tf.int64)
    seed_value = tf.constant(int(seed), tf.int64)

    keys = ("angle", "shift", "scale", "color", "occlude", "rect", "coarse", "fine")

    def transform(image, posmap, *values):
        return augment_sample(image, posmap, dict(zip(keys, values)), size, augment, uv.uv_kpt_ind)

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

    weight = tf.constant(loss_weights(resize_uv_data(uv, size)), tf.float32)
    scale = map_scale(samples.resolution)

    def finish(images, posmaps):
        return images, posmaps / scale, tf.broadcast_to(weight, tf.shape(posmaps)[:3])

    dataset = tf.data.Dataset.from_tensor_slices(order)
    dataset = dataset.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
