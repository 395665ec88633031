"""Huawei Ascend ATC tooling: the op tables ATC converts, the op checks, the ``atc`` command and its fusion switch.

``check_atc_ops`` / ``check_onnx_ops`` reject a graph with an op outside the tables before anything is written;
``atc_command`` and ``shell_line`` give the exact conversion command, ``write_fusion_switch`` the config that
turns ATC's ConvBatchnormFusionPass off for graphs that keep their batch norms, and ``run_atc_command`` runs
``atc`` when it is installed.
"""
import json
import shlex
import shutil
import subprocess
from pathlib import Path

from face3d.contract import INPUT_SIZE
from face3d.prnet.tf_graph import graph_op_types

__all__ = ["ATC_SUPPORTED_TF_OPS", "ATC_SUPPORTED_ONNX_OPS", "UnsupportedOpError", "check_atc_ops",
           "check_onnx_ops", "atc_command", "shell_line", "write_fusion_switch", "run_atc_command"]

# TensorFlow ops ATC converts, a subset of Huawei Ascend CANN's "Supported TensorFlow Operators" list
# (CANN 8.0 operator reference, "TensorFlow operator support list", TensorFlow 1.15 / 2.6.5 native IR:
# https://www.hiascend.com/document/detail/en/canncommercial/800/apiref/aolapi/operatorlist_00097.html).
# Kept to the inference ops a convolutional network like this one is built from; an op missing here is reported
# even if a later CANN release supports it (extend the table after checking that list).
ATC_SUPPORTED_TF_OPS = frozenset({
    "Placeholder", "Const", "Identity", "NoOp",
    "Conv2D", "Conv2DBackpropInput", "DepthwiseConv2dNative", "BiasAdd", "MatMul",
    "FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3",
    "Relu", "Relu6", "LeakyRelu", "Elu", "Sigmoid", "Tanh", "Softmax",
    "MaxPool", "AvgPool", "Mean",
    "Add", "AddV2", "AddN", "Sub", "Mul", "RealDiv", "Maximum", "Minimum", "Neg", "Square", "Sqrt", "Rsqrt",
    "Reshape", "Transpose", "ConcatV2", "Pad", "Squeeze", "ExpandDims", "Cast", "StridedSlice",
})
# ONNX ops ATC converts (same reference, "Supported ONNX Operators"), restricted to this network's needs.
ATC_SUPPORTED_ONNX_OPS = frozenset({
    "Conv", "ConvTranspose", "BatchNormalization", "Relu", "Sigmoid", "Tanh", "MaxPool", "Add", "Mul", "Transpose",
    "Cast", "Identity",
})


class UnsupportedOpError(ValueError):
    """The exported graph contains op types outside the ATC support table (the message names them)."""


def check_atc_ops(graph_def, supported=ATC_SUPPORTED_TF_OPS):
    """Check a GraphDef's op types against the ATC table.

    Returns:
        dict op type -> count.
    Raises:
        UnsupportedOpError naming each unsupported op type and up to three of its nodes.
    """
    counts = graph_op_types(graph_def)
    bad = sorted(set(counts) - set(supported))
    if bad:
        where = {op: [n.name for n in graph_def.node if n.op == op][:3] for op in bad}
        detail = "; ".join(f"{op} (nodes {', '.join(where[op])})" for op in bad)
        raise UnsupportedOpError(f"the graph has op types ATC does not support: {detail}. Supported: "
                                 f"{', '.join(sorted(supported))}")
    return counts


def check_onnx_ops(model, supported=ATC_SUPPORTED_ONNX_OPS):
    """ONNX counterpart of ``check_atc_ops``: op type -> count, or UnsupportedOpError naming the others."""
    counts = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    bad = sorted(set(counts) - set(supported))
    if bad:
        raise UnsupportedOpError(f"the ONNX graph has op types ATC does not support: {', '.join(bad)}")
    return dict(sorted(counts.items()))


def atc_command(model_path, output_prefix, framework, batch_size=1, input_size=INPUT_SIZE, soc_version="Ascend310",
                precision_mode="force_fp16", fusion_switch_file=None):
    """The ``atc`` command converting an exported model to an Ascend ``.om``.

    Args:
        model_path: the ``.pb`` (framework 3) or ``.onnx`` (framework 5).
        output_prefix: ``--output`` (ATC appends ``.om``).
        framework: 3 (TensorFlow) or 5 (ONNX).
        batch_size, input_size: the graph's static input shape [B, S, S, 3].
        soc_version: target chip (Ascend310, Ascend310P3, Ascend910...).
        precision_mode: force_fp16 (ATC's default on inference chips), allow_fp32_to_fp16, force_fp32,
            must_keep_origin_dtype or allow_mix_precision.
        fusion_switch_file: a fusion switch config (for graphs with batch norm) or None.
    Returns:
        list of str (argv; ``shell_line`` gives the shell line).
    """
    if framework not in (3, 5):
        raise ValueError(f"framework must be 3 (TensorFlow .pb) or 5 (ONNX), got {framework}")
    modes = ("force_fp16", "allow_fp32_to_fp16", "force_fp32", "must_keep_origin_dtype", "allow_mix_precision")
    if precision_mode not in modes:
        raise ValueError(f"precision_mode must be one of {modes}, got {precision_mode!r}")
    # ATC's ONNX parser accepts only NCHW/NCDHW/ND input formats; the graph transposes itself, so ND
    input_format = "NHWC" if framework == 3 else "ND"
    command = ["atc", f"--model={model_path}", f"--framework={framework}", f"--output={output_prefix}",
               f"--soc_version={soc_version}", f"--input_shape=input:{batch_size},{input_size},{input_size},3",
               f"--input_format={input_format}", "--output_type=FP32", f"--precision_mode={precision_mode}",
               "--log=error"]
    if fusion_switch_file is not None:
        command.append(f"--fusion_switch_file={fusion_switch_file}")
    return command


def shell_line(command):
    """A POSIX shell line for an argv list; ``--input_shape`` keeps its value in double quotes as the ATC
    documentation writes it."""
    parts = []
    for arg in command:
        if arg.startswith("--input_shape=") and all(c.isalnum() or c in ":,_-/." for c in arg[14:]):
            parts.append(f'--input_shape="{arg[14:]}"')
        else:
            parts.append(shlex.quote(arg))
    return " ".join(parts)


def write_fusion_switch(path, passes=("ConvBatchnormFusionPass",)):
    """Write ATC's fusion switch config (CANN "Disabling Fusion Patterns": JSON ``Switch`` ->
    ``GraphFusion`` / ``UBFusion`` -> pattern: "off") switching the given graph fusion passes off."""
    config = {"Switch": {"GraphFusion": {name: "off" for name in passes}, "UBFusion": {}}}
    Path(path).write_text(json.dumps(config, indent=4) + "\n")
    return Path(path)


def run_atc_command(command, log_path):
    """Run ``atc`` in the log's folder (the command's paths are relative to it) when it is on PATH, its output
    into ``log_path``; returns its exit status (non-zero when it failed: the caller reports it), or None when it is
    not installed."""
    if shutil.which(command[0]) is None:
        return None
    with open(log_path, "w") as log:
        return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False,
                              cwd=Path(log_path).parent).returncode
