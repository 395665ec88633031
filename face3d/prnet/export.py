"""Export a Keras PRNet to a frozen TensorFlow GraphDef (``.pb``, ATC ``--framework=3``) and to ONNX
(``--framework=5``) for Huawei Ascend's ATC, to TFLite (float32, float16, int8) for phones and to an int8 QDQ ONNX
model, each export reloaded and checked against the Keras model.

Graph contract (both formats): one float32 input ``input`` NHWC [B, S, S, 3] (an image in [0, 1], the training
normalisation) and one float32 output ``output`` NHWC [B, S, S, 3] (the position map in crop pixels / (1.1 x R),
R the UV map resolution: the training normalisation, ``contract.POSMAP_SCALE``); B and S are fixed (ATC needs static
shapes). The steps live in ``layer_graph`` (Keras walk, batch-norm folding), ``tf_graph``, ``onnx_graph``,
``atc``, ``tflite`` and ``quantize``; the graph-building names are importable from here too.
"""
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from face3d.prnet.atc import (
    ATC_SUPPORTED_ONNX_OPS,
    ATC_SUPPORTED_TF_OPS,
    UnsupportedOpError,
    atc_command,
    check_atc_ops,
    check_onnx_ops,
    run_atc_command,
    shell_line,
    write_fusion_switch,
)
from face3d.prnet.layer_graph import LayerNode, fold_batch_norms, model_to_nodes
from face3d.prnet.onnx_graph import build_onnx_model, onnx_to_float16
from face3d.prnet.predictor import load_keras_model, load_predictor, square_side
from face3d.prnet.prnet_checkpoint import uv_data_for_model
from face3d.prnet.quantize import calibration_for_batches, refuse_calibration_without_int8
from face3d.prnet.tf_graph import BATCH_NORM_OP_TYPES, build_graph_def, graph_op_types
from face3d.prnet.tflite import build_tflite
from face3d.trainset.uv_layout import UVData, load_uv_data
from face3d.utils.atomic import atomic_write_bytes, output_lock, staging_folder

__all__ = [
    "ATC_SUPPORTED_TF_OPS", "ATC_SUPPORTED_ONNX_OPS", "BATCH_NORM_OP_TYPES", "UnsupportedOpError", "LayerNode",
    "model_to_nodes", "fold_batch_norms", "build_graph_def", "build_onnx_model", "onnx_to_float16",
    "graph_op_types", "check_atc_ops", "check_onnx_ops", "reference_images",
    "atc_command", "shell_line", "write_fusion_switch", "ExportResult", "export_model", "load_keras_model",
    "compare_files", "EXPORT_FILES",
]

logger = logging.getLogger(__name__)

# every file an export writes, ATC's outputs (``_write_atc_files``' names) included: an export removes those of an
# earlier one that it does not rewrite, which would otherwise be taken for its own
EXPORT_FILES = ("prnet.pb", "prnet.onnx", "prnet.tflite", "prnet_fp16.tflite", "prnet_int8.tflite", "prnet_int8.onnx",
                "fusion_switch.cfg", "export.json") + tuple(
    name for fmt in ("pb", "onnx") for name in (f"atc_{fmt}.sh", f"atc_{fmt}.log", f"prnet_{fmt}.om"))


def reference_images(size, count):
    """Real photographs shipped with scikit-image, as network inputs.

    Args:
        size: side S in pixels.
        count: number of images N (the list cycles, every second pass mirrored).
    Returns:
        float32 (N, S, S, 3) in [0, 1] (RGB / 255, the training normalisation); the first is the face of
        ``skimage.data.astronaut()`` cropped as a face detector would.
    """
    import cv2
    from skimage import data

    photos = [data.astronaut()[20:260, 140:380], data.chelsea(), data.coffee(), data.rocket()]
    out = []
    for k in range(int(count)):
        photo = cv2.resize(photos[k % len(photos)], (size, size), interpolation=cv2.INTER_AREA)
        out.append(photo[:, ::-1] if (k // len(photos)) % 2 else photo)
    return np.stack(out).astype(np.float32) / np.float32(255.0)


@dataclass
class ExportResult:
    """What ``export_model`` wrote and measured.

    Attributes:
        pb_path: the frozen graph; onnx_path: the ONNX model or None.
        op_types: op type -> count of the ``.pb``; onnx_op_types: of the ONNX model (or None).
        max_abs_diff: format ("pb", "onnx") -> max |exported - Keras| over the check images (normalised map).
        atc_commands: format -> shell line; atc_status: format -> exit status, None when atc did not run (not
            installed, or ``run_atc`` False).
        fusion_switch_path: the fusion switch config (unfolded graphs) or None.
        files: file name -> {"path", "size_mb", "max_abs_diff", "keypoint_shift_px", "nme_vs_float32"} for every
            written model (``compare_files``; TFLite and int8 files included).
        checked_on, compared_on: the images ``max_abs_diff`` and ``files`` were measured on ("1 check images",
            "8 calibration images": with int8 the files are compared on the calibration images).
    """
    pb_path: Path
    onnx_path: Path = None
    op_types: dict = None
    onnx_op_types: dict = None
    max_abs_diff: dict = field(default_factory=dict)
    atc_commands: dict = field(default_factory=dict)
    atc_status: dict = field(default_factory=dict)
    fusion_switch_path: Path = None
    files: dict = field(default_factory=dict)
    checked_on: str = ""
    compared_on: str = ""


def _compare_with_keras(folder, model, images, tolerance, table=None):
    """Reload ``prnet.pb`` (``prnet.onnx``, ``prnet.tflite`` when written) of ``folder`` with ``load_predictor``;
    returns format -> max |exported - Keras model| over ``images`` (float32 (B, S, S, 3), the normalised map);
    RuntimeError when one is not below ``tolerance``. ``table``: ``compare_files``' over the same images, whose
    ``max_abs_diff`` are the same numbers (the files are then not run again)."""
    formats = (("tflite", "prnet.tflite"), ("pb", "prnet.pb"), ("onnx", "prnet.onnx"))
    if table is None:
        expected = np.asarray(model(images, training=False), dtype=np.float32)
        diffs = {fmt: float(np.abs(load_predictor(folder / name).predict(images) - expected).max())
                 for fmt, name in formats if (folder / name).is_file()}
    else:
        diffs = {fmt: table[name]["max_abs_diff"] for fmt, name in formats if name in table}
    bad = {k: v for k, v in diffs.items() if not v < tolerance}
    if bad:
        raise RuntimeError(f"exported graph differs from the Keras model by {bad} (tolerance {tolerance})")
    return diffs


def _replace_export_files(staging, output_dir):
    """Remove every ``EXPORT_FILES`` name from ``output_dir`` (an earlier export's, maybe of another model or
    format set, that would otherwise be taken for this one's), then move the files of ``staging`` in."""
    for name in EXPORT_FILES:
        (output_dir / name).unlink(missing_ok=True)
    for path in staging.iterdir():
        os.replace(path, output_dir / path.name)


def _write_atc_files(result, output_dir, batch_size, size, fold_bn, soc_version, precision_mode):
    """Write ``fusion_switch.cfg`` (unfolded graphs) and ``atc_<fmt>.sh`` per written format; fills
    ``result.atc_commands`` and returns format -> argv."""
    if not fold_bn:
        result.fusion_switch_path = write_fusion_switch(output_dir / "fusion_switch.cfg")
    formats = {"pb": (result.pb_path, 3)}
    if result.onnx_path is not None:
        formats["onnx"] = (result.onnx_path, 5)
    commands = {}
    for fmt, (path, framework) in formats.items():
        commands[fmt] = atc_command(path.name, f"prnet_{fmt}", framework, batch_size, size, soc_version,
                                    precision_mode, None if fold_bn else result.fusion_switch_path.name)
        result.atc_commands[fmt] = shell_line(commands[fmt])
        script = output_dir / f"atc_{fmt}.sh"
        script.write_text("#!/bin/sh\n# run in this folder on a machine with the Ascend CANN toolkit\n"
                          f"cd \"$(dirname \"$0\")\" && {result.atc_commands[fmt]}\n")
        script.chmod(0o755)
    return commands


def _run_atc(result, output_dir, commands, run_atc):
    """Run each ``atc`` command (format -> argv) into ``atc_<fmt>.log`` when ``run_atc`` and ``atc`` is installed,
    every one even after a failure; fills ``result.atc_status`` (None: not run) and returns the failures, one
    "status N (log PATH)" text each (empty when none failed)."""
    failures = []
    for fmt, command in commands.items():
        log = output_dir / f"atc_{fmt}.log"
        result.atc_status[fmt] = run_atc_command(command, log) if run_atc else None
        if result.atc_status[fmt] is None:
            logger.info("atc not run for %s; command in %s", fmt, output_dir / f"atc_{fmt}.sh")
        elif result.atc_status[fmt] != 0:
            failures.append(f"status {result.atc_status[fmt]} (log {log})")
    return failures


def _keypoint_indices(size, uv_data=None):
    """(2, 68) keypoint pixels of an S x S map: the ``uv_kpt_ind`` of ``uv_data`` (a UVData; default: the packaged
    uv-data) moved to S (``uv_weights.reduced_indices``)."""
    from face3d.prnet.uv_weights import reduced_indices
    from face3d.resources import default_uv_data_dir

    uv = load_uv_data(default_uv_data_dir()) if uv_data is None else uv_data
    return reduced_indices(uv.uv_kpt_ind, uv.resolution, size)


def compare_files(model, paths, images, uv_kpt_ind=None):
    """Reload exported models and compare each with the float32 Keras model on the same images.

    The 68 keypoints are read at ``uv_kpt_ind`` from both maps in crop pixels (normalised map x 1.1 x S). The
    keypoint shift is their mean 2D distance; NME vs float32 is ``metrics.nme`` with the Keras model's maps as the
    ground truth (shift / sqrt(w h) of the float32 keypoints' box), averaged over the images, and None when a box
    is under one pixel (an untrained network, whose map is nearly constant, has no face to normalise by).

    Args:
        model: keras.Model (the float32 reference).
        paths: list of exported model files (anything ``load_predictor`` runs).
        images: float32 (N, S, S, 3) in [0, 1].
        uv_kpt_ind: (2, 68) keypoint pixels of an S x S map (default: the default UV data's, resized to S).
    Returns:
        dict file name -> {"path": str, "size_mb": float (10^6 bytes), "max_abs_diff": float (normalised map),
        "keypoint_shift_px": float, "nme_vs_float32": float or None}.
    """
    from face3d.contract import map_scale
    from face3d.prnet import metrics

    images = np.asarray(images, dtype=np.float32)
    size = images.shape[1]
    kpt = _keypoint_indices(size) if uv_kpt_ind is None else uv_kpt_ind
    to_pixels = np.float32(map_scale(size))
    reference = np.asarray(model(images, training=False), dtype=np.float32)
    reference_kpt = metrics.keypoints_from_map(reference * to_pixels, kpt)
    faces = bool(np.all(metrics.bbox_size(reference_kpt) >= 1.0))
    table = {}
    for path in map(Path, paths):
        maps = load_predictor(path).predict(images)
        shift = np.linalg.norm(metrics.keypoints_from_map(maps * to_pixels, kpt)[..., :2] - reference_kpt[..., :2],
                               axis=-1)
        table[path.name] = {
            "path": str(path), "size_mb": path.stat().st_size / 1e6,
            "max_abs_diff": float(np.abs(maps - reference).max()), "keypoint_shift_px": float(shift.mean()),
            "nme_vs_float32": float(np.mean(metrics.nme(maps * to_pixels, reference * to_pixels, kpt)))
            if faces else None}
    return table


def _write_models(output_dir, graph_def, nodes, input_name, output_name, onnx_model, batch_size, opset, tflite,
                  calibration):
    """Write ``prnet.pb``, ``prnet.onnx`` (``onnx_model`` given), ``prnet.tflite`` and ``prnet_fp16.tflite``
    (``tflite``) and ``prnet_int8.tflite`` and ``prnet_int8.onnx`` (``calibration`` given: float32 (N, S, S, 3), N a
    multiple of ``batch_size``); returns the written paths."""
    from face3d.prnet.quantize import quantize_onnx

    # deterministic: protobuf writes attribute maps in hash order otherwise, so two exports would differ in bytes
    (output_dir / "prnet.pb").write_bytes(graph_def.SerializeToString(deterministic=True))
    written = [output_dir / "prnet.pb"]
    if onnx_model is not None:
        (output_dir / "prnet.onnx").write_bytes(onnx_model.SerializeToString())
        written.append(output_dir / "prnet.onnx")
    variants = ([("prnet.tflite", "float32"), ("prnet_fp16.tflite", "float16")] if tflite else []) + \
        ([("prnet_int8.tflite", "int8")] if calibration is not None else [])
    for name, mode in variants:
        data = build_tflite(nodes, input_name, output_name, batch_size, mode,
                            calibration if mode == "int8" else None)
        (output_dir / name).write_bytes(data)
        written.append(output_dir / name)
    if calibration is not None:
        if onnx_model is None:
            onnx_model = build_onnx_model(nodes, input_name, output_name, batch_size, opset)
        written.append(quantize_onnx(onnx_model, output_dir / "prnet_int8.onnx", calibration, batch_size))
    return written


def export_model(model, output_dir, batch_size=1, fold_bn=True, onnx=False, opset=11, soc_version="Ascend310",
                 precision_mode="force_fp16", check_images=None, tolerance=1e-3, run_atc=True, tflite=False,
                 int8=False, calibration=None, uv_data=None):
    """Export a Keras PRNet to ``output_dir/prnet.pb`` (and ``prnet.onnx``, TFLite, int8), verify, and write the
    ATC files.

    Steps (the written files are run by ``predictor.load_predictor``, the loader inference uses): translate the
    layers (``model_to_nodes``), fold batch norms (unless ``fold_bn`` is False; ATC must then run with the
    ``fusion_switch.cfg`` written here, ConvBatchnormFusionPass off), build the frozen graph, check its op types
    against ``ATC_SUPPORTED_TF_OPS`` (UnsupportedOpError before anything is written), write it and the other
    models into the hidden staging folder ``output_dir/.export.partial``, run every written file there for the drift
    table (per file its size, max |difference| and NME against the float32 model on the int8 calibration images,
    else the check images; ``compare_files``: a file no runtime can run leaves ``output_dir`` as it was), and compare
    the frozen graph, the ONNX model (ONNX Runtime) and the float32 TFLite model with the Keras model on
    ``check_images`` (max |difference| of the normalised map < ``tolerance``, else RuntimeError and ``output_dir``
    is left as it was). Only then remove the ``EXPORT_FILES`` of an earlier export from ``output_dir`` and move the
    models in. Then write ``atc_pb.sh`` / ``atc_onnx.sh`` (the exact command) and ``fusion_switch.cfg`` for
    unfolded graphs, run ``atc`` when it is on PATH (each command, even after another failed) and write
    ``export.json`` (op types, differences, commands, atc's exit statuses and the drift table); a failed ``atc``
    run then raises RuntimeError naming its log, the export's files all written. One export at a time writes
    ``output_dir`` (``utils.atomic.output_lock``, whose hidden ``.export.lock`` stays there): another is refused with
    a BlockingIOError naming it.

    Args:
        model: keras.Model, the path of a ``.keras`` file or PRNet's TF1 checkpoint (prefix, ``.index``, folder).
        output_dir: folder (created).
        batch_size: the graph's fixed batch B.
        fold_bn: fold batch norms into the convolutions (True) or keep FusedBatchNormV3.
        onnx: also export ONNX.
        opset: ONNX opset.
        soc_version, precision_mode: ATC ``--soc_version`` / ``--precision_mode``.
        check_images: float32 (B, S, S, 3) in [0, 1]; None -> ``reference_images(S, B)``.
        tolerance: largest accepted difference (float32 rounding of the 17 transposed convs is about 3e-4).
        run_atc: run ``atc`` when it is installed.
        tflite: also write ``prnet.tflite`` (float32) and ``prnet_fp16.tflite`` (float16 weights).
        int8: also write ``prnet_int8.tflite`` (full integer) and ``prnet_int8.onnx`` (QDQ), calibrated on
            ``calibration``.
        calibration: float32 (N, S, S, 3) images in [0, 1] or a folder (``quantize.calibration_images``);
            required by ``int8`` and refused without it (ValueError); N is cut to a multiple of B.
        uv_data: the model's uv-data (folder or UVData), whose keypoints ``compare_files`` reads and whose
            resolution frames AFLW2000-3D calibration crops (default: ``prnet_checkpoint.uv_data_for_model``).
    Returns:
        ExportResult.
    """
    if int8 and calibration is None:
        raise ValueError("int8 export needs calibration images (a folder of face crops or an AFLW2000-3D folder)")
    refuse_calibration_without_int8(calibration, int8)
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"{output_dir}: exists and is not a folder (--output names the folder of the exports)")
    name = model if isinstance(model, (str, Path)) else model.name
    uv_data = uv_data_for_model(model, uv_data)
    uv = uv_data if isinstance(uv_data, UVData) else load_uv_data(uv_data)
    model = load_keras_model(model)
    shape = tuple(model.inputs[0].shape)
    if square_side(shape) is None:
        raise ValueError(f"{name}: input shape {shape}; the export needs a static input size, square and RGB: "
                         "(batch, S, S, 3)")
    nodes, input_name, output_name = model_to_nodes(model)
    if fold_bn:
        nodes, output_name = fold_batch_norms(nodes, output_name)
    size = int(shape[1])
    images = reference_images(size, batch_size) if check_images is None else \
        np.asarray(check_images, dtype=np.float32)
    if images.shape[0] != batch_size:
        raise ValueError(f"check_images must hold batch_size={batch_size} images, got {images.shape[0]}")
    calibration = calibration_for_batches(calibration, size, batch_size, uv.resolution) if int8 else None

    graph_def = build_graph_def(nodes, input_name, output_name, batch_size)
    op_types = check_atc_ops(graph_def)
    if fold_bn and BATCH_NORM_OP_TYPES & set(op_types):
        raise RuntimeError(f"batch norm left in the folded graph: {sorted(BATCH_NORM_OP_TYPES & set(op_types))}")
    onnx_model = build_onnx_model(nodes, input_name, output_name, batch_size, opset) if onnx else None
    onnx_op_types = check_onnx_ops(onnx_model) if onnx else None

    with output_lock(output_dir, "face3d export"):
        # the models wait in a hidden staging folder until every check passed: a failed export leaves the folder as
        # it was (also the drift table: a file that no runtime can load, or one that crashes it, never replaces a
        # working one)
        with staging_folder(output_dir / "export") as staging:
            staged = _write_models(staging, graph_def, nodes, input_name, output_name, onnx_model, batch_size, opset,
                                   tflite, calibration)
            compared = images if calibration is None else calibration
            files = compare_files(model, staged, compared, _keypoint_indices(size, uv))
            # on the check images the table's differences are the tolerance check's own: the files need not run again
            max_abs_diff = _compare_with_keras(staging, model, images, tolerance, files if compared is images else None)
            _replace_export_files(staging, output_dir)
        for name, entry in files.items():
            entry["path"] = str(output_dir / name)
        result = ExportResult(pb_path=output_dir / "prnet.pb", onnx_path=output_dir / "prnet.onnx" if onnx else None,
                              op_types=op_types, onnx_op_types=onnx_op_types, max_abs_diff=max_abs_diff, files=files,
                              checked_on=f"{len(images)} check images",
                              compared_on=f"{len(compared)} " + ("check images" if compared is images
                                                                 else "calibration images"))
        commands = _write_atc_files(result, output_dir, batch_size, size, fold_bn, soc_version, precision_mode)
        # atc runs once every file of the export is in place: a failed run leaves the set complete, export.json says so
        atc_failures = _run_atc(result, output_dir, commands, run_atc)
        summary = {"batch_size": batch_size, "input_size": size, "fold_bn": fold_bn, "opset": opset if onnx else None,
                   "op_types": op_types, "onnx_op_types": onnx_op_types, "max_abs_diff": result.max_abs_diff,
                   "checked_on": result.checked_on, "tolerance": tolerance, "atc_commands": result.atc_commands,
                   "atc_status": result.atc_status, "files": result.files, "compared_on": result.compared_on}
        atomic_write_bytes(output_dir / "export.json", (json.dumps(summary, indent=2) + "\n").encode())
        if atc_failures:
            raise RuntimeError(f"atc failed with {'; '.join(atc_failures)}")
        return result
