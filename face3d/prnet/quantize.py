"""int8 post-training quantization of the exported ONNX model, and the calibration images it needs.

``quantize_onnx`` writes a static QDQ model in the scheme of Ascend's AMCT, so that ONNX Runtime on it estimates on
the host what an int8 board deployment costs in accuracy. ``calibration_images`` reads a folder (AFLW2000-3D format
or face crops) as network inputs: float32 crops in [0, 1], RGB / 255.
"""
import logging
from pathlib import Path

import numpy as np

from face3d.contract import RESOLUTION
from face3d.utils.image_header import IMAGE_SUFFIXES

__all__ = ["QDQ_MIN_OPSET", "refuse_calibration_without_int8", "calibration_images", "calibration_for_batches",
           "calibration_batches", "quantize_onnx"]

logger = logging.getLogger(__name__)

QDQ_MIN_OPSET = 13  # per-channel DequantizeLinear (its axis attribute) needs opset 13; older models are upgraded


def refuse_calibration_without_int8(calibration, int8):
    """ValueError when calibration images (a folder, or an array) are given without int8 mode, which alone reads
    them: ``"a calibration folder (<folder>) is for int8 mode only (--int8)"``, or ``"calibration images are ..."``
    for an array."""
    if calibration is not None and not int8:
        given = f"a calibration folder ({calibration}) is" if isinstance(calibration, (str, Path)) else \
            "calibration images are"
        raise ValueError(f"{given} for int8 mode only (--int8)")


def calibration_images(folder, size, limit=None, resolution=RESOLUTION):
    """Network inputs from a calibration folder.

    Args:
        folder: AFLW2000-3D-format folder (any image with a ``.mat`` beside it holding ``pt3d_68``; those images
            are cropped as evaluation crops them, ``crop_face(image, landmark_crop(landmarks), S, R)``, and the
            others skipped with one warning), else a folder of face crops (every image resized to S x S with area
            interpolation). Listed as evaluation lists them (``evaluation.data_images``: links to folders
            followed, hidden files and folders such as macOS's ``._*`` companions and a report's ``ced.png`` left
            out); unreadable files are logged and skipped.
        size: S, the network's input side.
        limit: at most this many images (sorted by path).
        resolution: R, the model's uv-data resolution (the crop its maps refer to; S <= R), which frames the
            AFLW2000-3D crops.
    Returns:
        float32 (N, S, S, 3) in [0, 1] (RGB / 255).
    Raises:
        FileNotFoundError: no folder or no image in it. ValueError: no image could be read.
    """
    import cv2

    from face3d.prnet import evaluation
    from face3d.prnet.face_crop import crop_face, landmark_crop
    from face3d.trainset.sample_io import read_image

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"calibration folder not found: {folder}")
    images = evaluation.data_images(folder)
    if not images:
        raise FileNotFoundError(f"{folder}: no image ({', '.join(IMAGE_SUFFIXES)}) for calibration")
    pairs = evaluation.image_mat_pairs(images)  # as evaluation pairs them
    with_truth = any(mat is not None for _, mat in pairs)
    if with_truth:  # only image + .mat pairs are cropped; the others are counted in one warning
        pairs, _ = evaluation.split_pairs(pairs, folder)
    crops = []
    for path, mat in pairs[:limit]:
        try:
            if with_truth:
                image, truth = evaluation.read_sample(path, mat)
                crops.append(crop_face(image, landmark_crop(truth.landmarks), size, resolution).image)
            else:
                image = read_image(path)
                crops.append(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
                             / np.float32(255.0))
        except (OSError, ValueError) as exc:
            logger.warning("calibration: skipping %s: %s", path, exc)
    if not crops:
        raise ValueError(f"{folder}: none of {len(pairs)} images could be read for calibration")
    logger.info("calibration: %d %s from %s", len(crops), "landmark crops" if with_truth else "face crops", folder)
    return np.stack(crops).astype(np.float32)


def calibration_for_batches(calibration, size, batch_size, resolution=RESOLUTION, batch_origin="--batch"):
    """Calibration images for a model of input (B, S, S, 3), cut to a multiple of B with a warning saying how many
    are used.

    Args:
        calibration: a folder (``calibration_images`` at ``size`` S and uv-data ``resolution`` R) or float32
            (N, S, S, 3) images in [0, 1]. size: S. batch_size: B.
        batch_origin: what set B, named with it in the messages ("--batch 3", "prnet.onnx's input batch 3").
    Returns:
        float32 (k B, S, S, 3), the first k B images.
    Raises:
        ValueError: images of another shape, or fewer than B (naming the folder when one was given).
    """
    if isinstance(calibration, (str, Path)):
        images = calibration_images(calibration, size, resolution=resolution)
    else:
        images = np.asarray(calibration, dtype=np.float32)
    if images.ndim != 4 or images.shape[1:] != (size, size, 3):
        raise ValueError(f"calibration images must be (N, {size}, {size}, 3), got {images.shape}")
    usable = len(images) // batch_size * batch_size
    if usable == 0:
        where = f"{calibration}: " if isinstance(calibration, (str, Path)) else ""
        raise ValueError(f"{where}{len(images)} calibration images are fewer than one batch ({batch_origin} "
                         f"{batch_size})")
    if usable < len(images):
        logger.warning("calibration: using %d of %d images (a multiple of %s %d)", usable, len(images), batch_origin,
                       batch_size)
    return images[:usable]


def calibration_batches(calibration, batch_size):
    """Calibration images cut into model inputs (one calibration step each).

    Args:
        calibration: float32 (N, S, S, 3) images in [0, 1], N a positive multiple of ``batch_size``.
        batch_size: B of the model's input.
    Returns:
        list of N / B float32 (B, S, S, 3) arrays.
    Raises:
        ValueError: no images, not 4-D, or N not a positive multiple of B.
    """
    images = None if calibration is None else np.asarray(calibration, dtype=np.float32)
    if images is None or images.ndim != 4 or len(images) < batch_size or len(images) % batch_size:
        raise ValueError(f"calibration must be (N, S, S, 3) images with N a positive multiple of the batch "
                         f"{batch_size}, got {None if images is None else images.shape}")
    return [images[start:start + batch_size] for start in range(0, len(images), batch_size)]


def quantize_onnx(model, output, calibration, batch_size=1):
    """Write the static int8 QDQ model of a float32 ONNX model with ONNX Runtime's ``quantize_static``.

    int8 weights, symmetric per output channel, and int8 activations, asymmetric, their ranges the min-max over the
    calibration images. This is the scheme of Ascend's AMCT (int8 data with an offset, symmetric per-channel int8
    weights); the board's kernels and calibration differ, so the accuracy ONNX Runtime gives is an estimate.

    Args:
        model: float32 onnx.ModelProto or ``.onnx`` path (one input ``input`` [B, S, S, 3]); a model below
            ``QDQ_MIN_OPSET`` is converted to it first (``onnx.version_converter``).
        output: the ``.onnx`` file written.
        calibration: float32 (N, S, S, 3) images in [0, 1], N a positive multiple of ``batch_size``.
        batch_size: B of the model's input.
    Returns:
        Path of ``output``.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    batches = calibration_batches(calibration, batch_size)

    class Batches(CalibrationDataReader):
        """The calibration images, one model input at a time."""

        def __init__(self):
            self._batches = iter(batches)

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {"input": batch}

    import onnx
    from onnx import version_converter

    # a copy: quantize_static rewrites a ModelProto in place (its weights become external data)
    model = onnx.load(str(model)) if isinstance(model, (str, Path)) else \
        onnx.ModelProto.FromString(model.SerializeToString())
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < QDQ_MIN_OPSET:
        model = version_converter.convert_version(model, QDQ_MIN_OPSET)
    output = Path(output)
    # quantize_static advises (twice, through the root logger) running ONNX Runtime's pre-processing first, which
    # skipping is on purpose: the QDQ model must quantize the graph ATC converts, node for node. Pre-processing
    # fuses the batch norms of an export with --no-fold-bn, which fusion_switch.cfg keeps apart on the board, and
    # leaves a folded export's nodes as they are (quantize_static infers the shapes itself)
    root = logging.getLogger()
    root.addFilter(_not_pre_processing_advice)
    try:
        quantize_static(model, output, Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    finally:
        root.removeFilter(_not_pre_processing_advice)
    return output


def _not_pre_processing_advice(record):
    """Logging filter: False for ONNX Runtime's advice to pre-process a model before quantizing it."""
    return "pre-processing before quantization" not in record.getMessage()
