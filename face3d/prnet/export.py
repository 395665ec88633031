"""Export a Keras PRNet to a frozen TensorFlow GraphDef (``.pb``, ATC ``--framework=3``) and to ONNX
(``--framework=5``) for Huawei Ascend's ATC, each export reloaded and checked against the Keras model.

Graph contract (both formats): one float32 input ``input`` NHWC [B, S, S, 3] (an image in [0, 1], the training
normalisation) and one float32 output ``output`` NHWC [B, S, S, 3] (the position map in crop pixels / (1.1 x R),
R the UV map resolution: the training normalisation, ``contract.POSMAP_SCALE``); B and S are fixed (ATC needs static
shapes). The steps live in ``layer_graph`` (Keras walk, batch-norm folding), ``tf_graph``, ``onnx_graph`` and
``atc``; their public names are importable from here too.
"""
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from face3d.prnet.atc import (ATC_SUPPORTED_ONNX_OPS, ATC_SUPPORTED_TF_OPS, UnsupportedOpError, atc_command,
                              check_atc_ops, check_onnx_ops, run_atc_command, shell_line, write_fusion_switch)
from face3d.prnet.layer_graph import LayerNode, fold_batch_norms, model_to_nodes
from face3d.prnet.onnx_graph import build_onnx_model, onnx_to_float16
from face3d.prnet.predictor import load_keras_model, load_predictor
from face3d.prnet.tf_graph import BATCH_NORM_OP_TYPES, build_graph_def, graph_op_types

__all__ = [
    "ATC_SUPPORTED_TF_OPS", "ATC_SUPPORTED_ONNX_OPS", "BATCH_NORM_OP_TYPES", "UnsupportedOpError", "LayerNode",
    "model_to_nodes", "fold_batch_norms", "build_graph_def", "build_onnx_model", "onnx_to_float16",
    "graph_op_types", "check_atc_ops", "check_onnx_ops", "reference_images",
    "atc_command", "shell_line", "write_fusion_switch", "ExportResult", "export_model", "load_keras_model",
]

logger = logging.getLogger(__name__)


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
        atc_commands: format -> shell line; atc_status: format -> exit status, None when atc is not installed.
        fusion_switch_path: the fusion switch config (unfolded graphs) or None.
    """
    pb_path: Path
    onnx_path: Path = None
    op_types: dict = None
    onnx_op_types: dict = None
    max_abs_diff: dict = field(default_factory=dict)
    atc_commands: dict = field(default_factory=dict)
    atc_status: dict = field(default_factory=dict)
    fusion_switch_path: Path = None


def _write_and_compare(result, output_dir, graph_def, onnx_model, model, images, tolerance):
    """Write ``prnet.pb`` (and ``prnet.onnx``), reload each with ``load_predictor`` and record
    max |exported - Keras model| over ``images`` (float32 (B, S, S, 3)) in ``result.max_abs_diff``; RuntimeError
    when one is not below ``tolerance``."""
    # deterministic: protobuf writes attribute maps in hash order otherwise, so two exports would differ in bytes
    result.pb_path.write_bytes(graph_def.SerializeToString(deterministic=True))
    expected = np.asarray(model(images, training=False), dtype=np.float32)
    result.max_abs_diff["pb"] = float(np.abs(load_predictor(result.pb_path).predict(images) - expected).max())
    if onnx_model is not None:
        result.onnx_path = output_dir / "prnet.onnx"
        result.onnx_path.write_bytes(onnx_model.SerializeToString())
        result.max_abs_diff["onnx"] = float(np.abs(load_predictor(result.onnx_path).predict(images)
                                                   - expected).max())
    bad = {k: v for k, v in result.max_abs_diff.items() if not v < tolerance}
    if bad:
        raise RuntimeError(f"exported graph differs from the Keras model by {bad} (tolerance {tolerance})")


def _write_atc_files(result, output_dir, batch_size, size, fold_bn, soc_version, precision_mode, run_atc):
    """Write ``fusion_switch.cfg`` (unfolded graphs) and ``atc_<fmt>.sh`` per written format, and run each
    command when ``run_atc`` and ``atc`` is installed; fills ``result.atc_commands`` / ``atc_status``."""
    if not fold_bn:
        result.fusion_switch_path = write_fusion_switch(output_dir / "fusion_switch.cfg")
    formats = {"pb": (result.pb_path, 3)}
    if result.onnx_path is not None:
        formats["onnx"] = (result.onnx_path, 5)
    for fmt, (path, framework) in formats.items():
        command = atc_command(path.name, f"prnet_{fmt}", framework, batch_size, size, soc_version,
                              precision_mode, None if fold_bn else result.fusion_switch_path.name)
        result.atc_commands[fmt] = shell_line(command)
        script = output_dir / f"atc_{fmt}.sh"
        script.write_text("#!/bin/sh\n# run in this folder on a machine with the Ascend CANN toolkit\n"
                          f"cd \"$(dirname \"$0\")\" && {result.atc_commands[fmt]}\n")
        script.chmod(0o755)
        result.atc_status[fmt] = run_atc_command(command, output_dir / f"atc_{fmt}.log") if run_atc else None
        if result.atc_status[fmt] is None:
            logger.info("atc not run for %s; command in %s", fmt, script)


def export_model(model, output_dir, batch_size=1, fold_bn=True, onnx=False, opset=11, soc_version="Ascend310",
                 precision_mode="force_fp16", check_images=None, tolerance=1e-3, run_atc=True):
    """Export a Keras PRNet to ``output_dir/prnet.pb`` (and ``prnet.onnx``), verify, and write the ATC files.

    Steps (the written files are run by ``predictor.load_predictor``, the loader inference uses): translate the
    layers (``model_to_nodes``), fold batch norms (unless ``fold_bn`` is False; ATC must then run with the
    ``fusion_switch.cfg`` written here, ConvBatchnormFusionPass off), build the frozen graph, check its op types
    against ``ATC_SUPPORTED_TF_OPS`` (UnsupportedOpError before anything is written), write it, reload the
    written file and compare it with the Keras model on ``check_images`` (max |difference| of the normalised map
    < ``tolerance``, else RuntimeError); the same for ONNX with ONNX Runtime. Then write ``atc_pb.sh`` /
    ``atc_onnx.sh`` (the exact command), ``fusion_switch.cfg`` for unfolded graphs and ``export.json`` (op types,
    differences, commands), and run ``atc`` when it is on PATH.

    Args:
        model: keras.Model or the path of a ``.keras`` file.
        output_dir: folder (created).
        batch_size: the graph's fixed batch B.
        fold_bn: fold batch norms into the convolutions (True) or keep FusedBatchNormV3.
        onnx: also export ONNX.
        opset: ONNX opset.
        soc_version, precision_mode: ATC ``--soc_version`` / ``--precision_mode``.
        check_images: float32 (B, S, S, 3) in [0, 1]; None -> ``reference_images(S, B)``.
        tolerance: largest accepted difference (float32 rounding of the 17 transposed convs is about 3e-4).
        run_atc: run ``atc`` when it is installed.
    Returns:
        ExportResult.
    """
    model = load_keras_model(model)
    output_dir = Path(output_dir)
    nodes, input_name, output_name = model_to_nodes(model)
    if fold_bn:
        nodes, output_name = fold_batch_norms(nodes, output_name)
    size = int(model.inputs[0].shape[1])
    images = reference_images(size, batch_size) if check_images is None else \
        np.asarray(check_images, dtype=np.float32)
    if images.shape[0] != batch_size:
        raise ValueError(f"check_images must hold batch_size={batch_size} images, got {images.shape[0]}")

    graph_def = build_graph_def(nodes, input_name, output_name, batch_size)
    op_types = check_atc_ops(graph_def)
    if fold_bn and BATCH_NORM_OP_TYPES & set(op_types):
        raise RuntimeError(f"batch norm left in the folded graph: {sorted(BATCH_NORM_OP_TYPES & set(op_types))}")
    onnx_model = build_onnx_model(nodes, input_name, output_name, batch_size, opset) if onnx else None
    onnx_op_types = check_onnx_ops(onnx_model) if onnx else None

    output_dir.mkdir(parents=True, exist_ok=True)
    result = ExportResult(pb_path=output_dir / "prnet.pb", op_types=op_types, onnx_op_types=onnx_op_types)
    _write_and_compare(result, output_dir, graph_def, onnx_model, model, images, tolerance)
    _write_atc_files(result, output_dir, batch_size, size, fold_bn, soc_version, precision_mode, run_atc)
    summary = {"batch_size": batch_size, "input_size": size, "fold_bn": fold_bn, "opset": opset if onnx else None,
               "op_types": op_types, "onnx_op_types": onnx_op_types, "max_abs_diff": result.max_abs_diff,
               "tolerance": tolerance, "atc_commands": result.atc_commands, "atc_status": result.atc_status}
    (output_dir / "export.json").write_text(json.dumps(summary, indent=2) + "\n")
    return result
