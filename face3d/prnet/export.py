"""Export a Keras PRNet to a frozen TensorFlow GraphDef (``.pb``, ATC ``--framework=3``) and to ONNX
(``--framework=5``) for Huawei Ascend's ATC, with every export reloaded and checked against the Keras model.

Graph contract (both formats): one float32 input ``input`` NHWC ``[B, S, S, 3]`` (an image in [0, 1], the
training normalisation) and one float32 output ``output`` NHWC ``[B, S, S, 3]`` (the normalised position map,
crop pixels / (1.1 x R), R the UV map resolution: the training normalisation, ``data.POSMAP_SCALE``); B and S are
fixed (ATC needs static shapes).

Batch norm folding (default). An Ascend port of PRNet reported wrong outputs from ATC's ConvBatchnormFusionPass,
so the default graph carries no batch norm at all: each inference-mode batch norm
y = gamma * (x - mean) / sqrt(var + eps) + beta = scale * x + shift, with scale = gamma / sqrt(var + eps) and
shift = beta - mean * scale (computed in float64), is folded into the convolution that feeds it:
kernel' = kernel * scale along the output-channel axis, bias' = bias * scale + shift (a ``BiasAdd``). A batch
norm after a residual ``Add`` scales both branches: convolution branches absorb ``scale`` in their kernels, an
identity shortcut gets one constant ``Mul``, and ``shift`` becomes the bias of the first convolution branch; a
batch norm no convolution feeds becomes ``Mul`` + ``BiasAdd`` with constants. Keras 3 lowers batch norm to Rsqrt/Mul/Sub/AddV2, which TensorFlow's optimize_for_inference does not fold; the
folded graph has no ``FusedBatchNorm*`` and no ``Rsqrt``. ``fold_bn=False`` keeps each batch norm as one
``FusedBatchNormV3`` (ONNX ``BatchNormalization``), the pattern ATC's fusion pass matches; ATC must then run with
the fusion-switch file this module writes (``ConvBatchnormFusionPass`` off).

The graph is rebuilt from the Keras layers with ``tf.nn`` ops (Conv2D, Conv2DBackpropInput, BiasAdd, Relu,
MaxPool, AddV2, Mul, Sigmoid); any other Keras layer is called as it is and its variables frozen, and the op check
then decides whether ATC can take the result. Attributes at their default value that TensorFlow 1.15 (the IR ATC's
parser documents) does not know are stripped. The ONNX graph is NCHW inside, between two Transposes that keep the
NHWC contract; its stride-1 transposed convolutions are written as the equivalent Conv (flipped kernel), which
ONNX Runtime runs several times faster.
"""
import dataclasses
import json
import logging
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from face3d.prnet.predictor import load_keras_model, load_predictor

__all__ = [
    "ATC_SUPPORTED_TF_OPS", "ATC_SUPPORTED_ONNX_OPS", "BATCH_NORM_OP_TYPES", "UnsupportedOpError", "LayerNode",
    "model_to_nodes", "fold_batch_norms", "build_graph_def", "build_onnx_model", "onnx_to_float16",
    "graph_op_types", "check_atc_ops", "check_onnx_ops", "reference_images",
    "atc_command", "shell_line", "write_fusion_switch", "ExportResult", "export_model", "load_keras_model",
]

logger = logging.getLogger(__name__)

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
# op types a folded graph must not contain (Keras 3 lowers batch norm to Rsqrt/Mul/Sub/AddV2)
BATCH_NORM_OP_TYPES = frozenset({"FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3", "Rsqrt"})
# ONNX Runtime reads IR versions up to 10 safely; each opset's minimum IR version is taken from onnx's table
_MAX_IR_VERSION = 10


class UnsupportedOpError(ValueError):
    """The exported graph contains op types outside the ATC support table (the message names them)."""


@dataclass
class LayerNode:
    """One layer of the inference graph in a framework-neutral form.

    Attributes:
        name: unique name (the Keras layer's; inserted nodes get ``<layer>/<role>``).
        kind: "input", "conv", "deconv", "bn", "relu", "sigmoid", "tanh", "maxpool", "add", "mul" (per-channel
            constant scale), "affine" (per-channel scale and shift), "identity" or "keras" (any other layer, run as
            is in TensorFlow only).
        inputs: names of the nodes feeding it.
        params: kind-specific values: conv/deconv ``kernel`` (Keras layout: conv (kh, kw, in, out), deconv
            (kh, kw, out, in)), ``bias`` ((out,) or None), ``strides``, ``padding`` ("same"/"valid"),
            ``dilation``; bn ``gamma``, ``beta``, ``mean``, ``var``, ``epsilon``; maxpool ``pool_size``,
            ``strides``, ``padding``; mul ``scale``; affine ``scale``, ``shift``; keras ``layer``.
        shape: static output shape (H, W, C) without the batch axis.
    """
    name: str
    kind: str
    inputs: list
    params: dict = field(default_factory=dict)
    shape: tuple = ()


def _inbound_names(layer):
    nodes = layer._inbound_nodes
    if len(nodes) != 1:
        raise ValueError(f"layer {layer.name!r} is used {len(nodes)} times; the exporter needs each layer once")
    return [t._keras_history.operation.name for t in nodes[0].input_tensors]


def _pair(value):
    """(a, b) ints from a Keras int-or-pair argument."""
    return tuple(int(v) for v in (value if isinstance(value, (tuple, list)) else (value, value)))


def model_to_nodes(model):
    """Translate a functional Keras model into ``LayerNode`` records in topological order.

    Args:
        model: keras.Model with one input of shape (None, H, W, C) and one output (channels_last).
    Returns:
        (nodes, input_name, output_name).
    """
    from keras import layers

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"model must have one input and one output, got {len(model.inputs)} and "
                         f"{len(model.outputs)}")
    nodes = []
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer):
            nodes.append(LayerNode(layer.name, "input", [], shape=tuple(int(d) for d in model.inputs[0].shape[1:])))
            continue
        shape = tuple(int(d) for d in layer.output.shape[1:])
        inputs = _inbound_names(layer)
        cfg = layer.get_config()
        activation = cfg.get("activation", "linear")
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            kind = "keras"
        elif isinstance(layer, (layers.Conv2DTranspose, layers.Conv2D)) \
                and activation in ("linear", "relu", "sigmoid", "tanh") \
                and cfg.get("groups", 1) == 1 and cfg.get("output_padding") is None \
                and not (isinstance(layer, layers.Conv2DTranspose) and _pair(cfg["dilation_rate"]) != (1, 1)):
            kind = "deconv" if isinstance(layer, layers.Conv2DTranspose) else "conv"
        elif isinstance(layer, layers.BatchNormalization) and layer.axis in (-1, len(shape)):
            kind = "bn"
        elif isinstance(layer, layers.ReLU) and layer.max_value is None and float(layer.negative_slope) == 0 \
                and float(layer.threshold) == 0:
            kind = "relu"
        elif isinstance(layer, layers.Activation) and activation in ("relu", "sigmoid", "tanh", "linear"):
            kind = {"linear": "identity"}.get(activation, activation)
        elif isinstance(layer, layers.MaxPooling2D):
            kind = "maxpool"
        elif isinstance(layer, layers.Add):
            kind = "add"
        else:
            kind = "keras"
        params = {}
        if kind in ("conv", "deconv"):
            params = {"kernel": np.asarray(layer.kernel.numpy(), dtype=np.float32),
                      "bias": np.asarray(layer.bias.numpy(), dtype=np.float32) if layer.use_bias else None,
                      "strides": _pair(cfg["strides"]), "padding": cfg["padding"],
                      "dilation": _pair(cfg["dilation_rate"])}
        elif kind == "bn":
            channels = shape[-1]
            params = {"gamma": layer.gamma.numpy() if layer.scale else np.ones(channels, np.float32),
                      "beta": layer.beta.numpy() if layer.center else np.zeros(channels, np.float32),
                      "mean": layer.moving_mean.numpy(), "var": layer.moving_variance.numpy(),
                      "epsilon": float(layer.epsilon)}
        elif kind == "maxpool":
            params = {"pool_size": _pair(cfg["pool_size"]), "strides": _pair(cfg["strides"]),
                      "padding": cfg["padding"]}
        elif kind == "keras":
            params = {"layer": layer}
        if kind in ("conv", "deconv") and activation != "linear":
            # a fused activation becomes its own node under the layer's name, so consumers still find it
            nodes.append(LayerNode(f"{layer.name}/linear", kind, inputs, params, shape))
            nodes.append(LayerNode(layer.name, activation, [f"{layer.name}/linear"], shape=shape))
        else:
            nodes.append(LayerNode(layer.name, kind, inputs, params, shape))
    input_name = model.inputs[0]._keras_history.operation.name
    output_name = model.outputs[0]._keras_history.operation.name
    return nodes, input_name, output_name


def _bn_scale_shift(params):
    """Per-channel (scale, shift) of an inference batch norm, float64 (formula in the module docstring)."""
    gamma, beta, mean, var = (np.asarray(params[k], dtype=np.float64) for k in ("gamma", "beta", "mean", "var"))
    scale = gamma / np.sqrt(var + params["epsilon"])
    return scale, beta - mean * scale


def _scale_conv(node, scale, shift=None):
    """Multiply a conv/deconv node's output channels by ``scale`` and add ``shift`` (both float64 (out,))."""
    kernel = node.params["kernel"].astype(np.float64)
    if node.kind == "conv":
        kernel = kernel * scale  # (kh, kw, in, out)
    else:
        kernel = kernel * scale[None, None, :, None]  # (kh, kw, out, in)
    bias = node.params["bias"]
    bias = np.zeros_like(scale) if bias is None else bias.astype(np.float64) * scale
    if shift is not None:
        bias = bias + shift
    node.params = dict(node.params, kernel=kernel.astype(np.float32), bias=bias.astype(np.float32))


def fold_batch_norms(nodes, output_name):
    """Fold every batch norm into the convolutions feeding it (see the module docstring).

    Args:
        nodes: LayerNode list from ``model_to_nodes`` (not modified).
        output_name: the graph output's node name.
    Returns:
        (nodes, output_name): new list without "bn" nodes; a batch norm that no convolution feeds becomes an
        "affine" node (Mul + Add with constants).
    """
    nodes = [dataclasses.replace(n, inputs=list(n.inputs), params=dict(n.params)) for n in nodes]
    uses = {}
    for node in nodes:
        for name in node.inputs:
            uses[name] = uses.get(name, 0) + 1
    uses[output_name] = uses.get(output_name, 0) + 1
    by_name = {n.name: n for n in nodes}
    alias, result = {}, []

    def foldable(name):
        return by_name[name].kind in ("conv", "deconv") and uses.get(name, 0) == 1

    for node in nodes:
        node.inputs = [alias.get(name, name) for name in node.inputs]
        if node.kind != "bn":
            result.append(node)
            continue
        scale, shift = _bn_scale_shift(node.params)
        source = by_name[node.inputs[0]]
        if foldable(source.name):
            _scale_conv(source, scale, shift)
            alias[node.name] = source.name
        elif source.kind == "add" and uses.get(source.name, 0) == 1:
            shift_done = False
            for k, name in enumerate(list(source.inputs)):
                if foldable(name):
                    _scale_conv(by_name[name], scale, None if shift_done else shift)
                    shift_done = True
                else:
                    mul = LayerNode(f"{node.name}/scale{k}", "mul", [name],
                                    {"scale": scale.astype(np.float32)}, by_name[name].shape)
                    result.insert(result.index(source), mul)
                    by_name[mul.name] = mul
                    source.inputs[k] = mul.name
            if shift_done:
                alias[node.name] = source.name
            else:
                result.append(LayerNode(node.name, "affine", [source.name],
                                        {"scale": np.ones_like(scale, dtype=np.float32),
                                         "shift": shift.astype(np.float32)}, node.shape))
        else:
            result.append(LayerNode(node.name, "affine", node.inputs,
                                    {"scale": scale.astype(np.float32), "shift": shift.astype(np.float32)},
                                    node.shape))
    return result, alias.get(output_name, output_name)


# ----------------------------------------------------------------------------------------------- TensorFlow


def _tf_op(tf, node, x, batch):
    """Emit the TensorFlow ops of one node on input tensor(s) ``x`` (a list); returns the output tensor."""
    name, p = node.name, node.params
    if node.kind == "conv":
        y = tf.nn.conv2d(x[0], tf.constant(p["kernel"], name=f"{name}/kernel"), strides=[1, *p["strides"], 1],
                         padding=p["padding"].upper(), dilations=[1, *p["dilation"], 1], name=f"{name}/Conv2D")
    elif node.kind == "deconv":
        y = tf.nn.conv2d_transpose(x[0], tf.constant(p["kernel"], name=f"{name}/kernel"),
                                   output_shape=[batch, *node.shape], strides=[1, *p["strides"], 1],
                                   padding=p["padding"].upper(), name=f"{name}/conv2d_transpose")
    elif node.kind == "bn":
        y = tf.compat.v1.nn.fused_batch_norm(
            x[0], tf.constant(p["gamma"], name=f"{name}/gamma"), tf.constant(p["beta"], name=f"{name}/beta"),
            mean=tf.constant(p["mean"], name=f"{name}/mean"), variance=tf.constant(p["var"], name=f"{name}/var"),
            epsilon=p["epsilon"], is_training=False, name=f"{name}/FusedBatchNormV3")[0]
        return y
    elif node.kind in ("relu", "sigmoid", "tanh", "identity"):
        op = {"relu": tf.nn.relu, "sigmoid": tf.math.sigmoid, "tanh": tf.math.tanh, "identity": tf.identity}
        return op[node.kind](x[0], name=f"{name}/{node.kind}")
    elif node.kind == "maxpool":
        return tf.nn.max_pool2d(x[0], ksize=list(p["pool_size"]), strides=list(p["strides"]),
                                padding=p["padding"].upper(), name=f"{name}/MaxPool")
    elif node.kind == "add":
        y = x[0]
        for k, other in enumerate(x[1:]):
            y = tf.math.add(y, other, name=f"{name}/add{k}")
        return y
    elif node.kind == "mul":
        return tf.math.multiply(x[0], tf.constant(p["scale"], name=f"{name}/scale"), name=f"{name}/Mul")
    elif node.kind == "affine":
        y = tf.math.multiply(x[0], tf.constant(p["scale"], name=f"{name}/scale"), name=f"{name}/Mul")
        return tf.nn.bias_add(y, tf.constant(p["shift"], name=f"{name}/shift"), name=f"{name}/BiasAdd")
    elif node.kind == "keras":
        return p["layer"](x[0] if len(x) == 1 else x)
    else:
        raise ValueError(f"node {name!r}: unknown kind {node.kind!r}")
    if p.get("bias") is not None:
        y = tf.nn.bias_add(y, tf.constant(p["bias"], name=f"{name}/bias"), name=f"{name}/BiasAdd")
    return y


def build_graph_def(nodes, input_name, output_name, batch_size=1):
    """Build the frozen TensorFlow GraphDef of a node list.

    Args:
        nodes: LayerNode list (``model_to_nodes``, optionally ``fold_batch_norms``).
        input_name, output_name: the graph's input and output nodes.
        batch_size: fixed batch size B of the placeholder.
    Returns:
        tf.compat.v1.GraphDef with the Placeholder ``input`` float32 [B, H, W, C] and the Identity ``output``;
        variables (from "keras" nodes) frozen, constant subgraphs folded, nodes not feeding ``output`` removed.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    batch_size = int(batch_size)
    by_name = {n.name: n for n in nodes}
    spec = tf.TensorSpec([batch_size, *by_name[input_name].shape], tf.float32, name="input")

    @tf.function(input_signature=[spec], autograph=False)
    def forward(image):
        values = {input_name: image}
        for node in nodes:
            if node.kind != "input":
                values[node.name] = _tf_op(tf, node, [values[i] for i in node.inputs], batch_size)
        return tf.identity(values[output_name], name="output")

    frozen = convert_variables_to_constants_v2(forward.get_concrete_function())
    graph_def = frozen.graph.as_graph_def()
    graph_def = _strip_default_attrs(_prune(_fold_constants(graph_def, ["output"]), ["output"]))
    names = {n.name for n in graph_def.node}
    if "input" not in names or "output" not in names:
        raise RuntimeError(f"frozen graph lacks the input/output nodes (has {sorted(names)[:10]}...)")
    for node in graph_def.node:
        node.device = ""
    return graph_def


def _fold_constants(graph_def, outputs):
    """Run Grappler's constant folding alone (no layout or remapper passes, which would introduce fused ops
    that ATC does not know) over a frozen graph."""
    from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, rewriter_config_pb2
    from tensorflow.python.grappler import tf_optimizer

    if not any(_foldable_nodes(graph_def)):
        return graph_def
    meta = meta_graph_pb2.MetaGraphDef()
    meta.graph_def.CopyFrom(graph_def)
    fetch = meta_graph_pb2.CollectionDef()
    fetch.node_list.value.extend(outputs)
    meta.collection_def["train_op"].CopyFrom(fetch)
    config = config_pb2.ConfigProto()
    rewriter = config.graph_options.rewrite_options
    rewriter.optimizers[:] = ["constfold"]
    rewriter.meta_optimizer_iterations = rewriter_config_pb2.RewriterConfig.ONE
    return tf_optimizer.OptimizeGraph(config, meta)


# attributes kept even at their default value: ATC infers layouts from data_format, and these are old
_KEPT_ATTRS = frozenset({"T", "U", "dtype", "shape", "data_format", "dilations", "strides", "padding", "ksize"})


def _strip_default_attrs(graph_def):
    """Remove node attributes that hold their op's default value (except ``_KEPT_ATTRS``), in place.

    Attributes added to an op after TensorFlow 1.15 (``FusedBatchNormV3.exponential_avg_factor``,
    ``MaxPool.explicit_paddings``) always have defaults; without them the graph is a valid TensorFlow 1.15
    GraphDef, the IR version ATC's parser documents."""
    from tensorflow.python.framework import op_def_registry

    for node in graph_def.node:
        op_def = op_def_registry.get(node.op)
        if op_def is None:
            continue
        for attr in op_def.attr:
            if attr.name in node.attr and attr.name not in _KEPT_ATTRS and attr.HasField("default_value") \
                    and node.attr[attr.name] == attr.default_value:
                del node.attr[attr.name]
    return graph_def


def _prune(graph_def, outputs):
    """Copy of a GraphDef keeping only the nodes ``outputs`` depend on (in their original order)."""
    inputs = {n.name: [i.split(":")[0].lstrip("^") for i in n.input] for n in graph_def.node}
    keep, stack = set(), list(outputs)
    while stack:
        name = stack.pop()
        if name not in keep:
            keep.add(name)
            stack.extend(inputs[name])
    pruned = type(graph_def)()
    pruned.versions.CopyFrom(graph_def.versions)
    pruned.node.extend(n for n in graph_def.node if n.name in keep)
    return pruned


def _foldable_nodes(graph_def):
    """Names of non-Const nodes all of whose data inputs are constants (a folded graph has none)."""
    kinds = {n.name: n.op for n in graph_def.node}
    constant = {name for name, op in kinds.items() if op == "Const"}
    changed = True
    while changed:
        changed = False
        for node in graph_def.node:
            data = [i.split(":")[0].lstrip("^") for i in node.input if not i.startswith("^")]
            if node.name not in constant and node.op not in ("Placeholder", "NoOp") and data \
                    and all(d in constant for d in data):
                constant.add(node.name)
                changed = True
    return sorted(constant - {name for name, op in kinds.items() if op == "Const"})


def graph_op_types(graph_def):
    """Op type -> count over a GraphDef (dict, sorted by op type)."""
    counts = {}
    for node in graph_def.node:
        counts[node.op] = counts.get(node.op, 0) + 1
    return dict(sorted(counts.items()))


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


# --------------------------------------------------------------------------------------------------- ONNX


def _same_pads(size, kernel, stride, dilation=1):
    """TensorFlow SAME padding of one axis: (begin, end) with the extra pixel at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _onnx_pads(node, in_shape):
    """ONNX ``pads`` [top, left, bottom, right] reproducing Keras's padding for conv/deconv/maxpool nodes."""
    p = node.params
    if p["padding"] == "valid":
        return [0, 0, 0, 0]
    if node.kind == "deconv":
        # a SAME transposed conv is the adjoint of the SAME conv from its output back to its input
        kernel = p["kernel"].shape[:2]
        pads = [_same_pads(node.shape[a], kernel[a], p["strides"][a]) for a in (0, 1)]
        for a in (0, 1):
            produced = (in_shape[a] - 1) * p["strides"][a] + kernel[a] - sum(pads[a])
            if produced != node.shape[a]:
                raise ValueError(f"layer {node.name!r}: SAME transposed conv of {in_shape[a]} gives {produced}, "
                                 f"Keras gives {node.shape[a]} (kernel smaller than stride?)")
    else:
        kernel = p["kernel"].shape[:2] if node.kind == "conv" else p["pool_size"]
        dilation = p.get("dilation", (1, 1))
        pads = [_same_pads(in_shape[a], kernel[a], p["strides"][a], dilation[a]) for a in (0, 1)]
    return [pads[0][0], pads[1][0], pads[0][1], pads[1][1]]


def build_onnx_model(nodes, input_name, output_name, batch_size=1, opset=11):
    """Build the ONNX model of a node list: NHWC ``input`` -> Transpose -> NCHW network -> Transpose ->
    NHWC ``output``, both float32 [B, H, W, C].

    Args:
        nodes, input_name, output_name, batch_size: as for ``build_graph_def``; "keras" nodes are not allowed.
        opset: ONNX opset (>= 9; ATC documents opsets 9..18, 11 is its most tested).
    Returns:
        onnx.ModelProto (checked by ``onnx.checker``).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if int(opset) != opset or not 9 <= opset <= 21:
        raise ValueError(f"opset must be an integer in [9, 21], got {opset}")
    by_name = {n.name: n for n in nodes}
    keras_nodes = [n.name for n in nodes if n.kind == "keras"]
    if keras_nodes:
        raise ValueError(f"ONNX export cannot translate layers {keras_nodes}: supported are Conv2D, "
                         "Conv2DTranspose, BatchNormalization, ReLU, MaxPooling2D, Add and sigmoid/tanh/relu "
                         "activations")
    initializers, onnx_nodes = [], []

    def const(name, array):
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def channel_const(name, vector):
        return const(name, np.asarray(vector, np.float32).reshape(1, -1, 1, 1))

    out = {input_name: f"{input_name}/nchw"}
    onnx_nodes.append(helper.make_node("Transpose", ["input"], [out[input_name]], perm=[0, 3, 1, 2],
                                       name=f"{input_name}/to_nchw"))
    for node in nodes:
        if node.kind == "input":
            continue
        name, p = node.name, node.params
        x = [out[i] for i in node.inputs]
        y = f"{name}/out"
        if node.kind in ("conv", "deconv"):
            # Keras conv kernel (kh, kw, in, out) and deconv kernel (kh, kw, out, in) both become ONNX's
            # (dim0, dim1, kh, kw) = (out, in) for Conv and (in, out) for ConvTranspose: the same transpose
            kernel = p["kernel"].transpose(3, 2, 0, 1)
            pads = _onnx_pads(node, by_name[node.inputs[0]].shape)
            op = "Conv" if node.kind == "conv" else "ConvTranspose"
            if node.kind == "deconv" and tuple(p["strides"]) == (1, 1):
                # a stride-1 transposed conv is the conv with the spatially flipped kernel, in/out swapped and
                # padding k - 1 - p per side; ONNX Runtime runs Conv several times faster than ConvTranspose
                kernel = kernel.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
                kh, kw = kernel.shape[2:]
                pads = [kh - 1 - pads[0], kw - 1 - pads[1], kh - 1 - pads[2], kw - 1 - pads[3]]
                op = "Conv"
            args = [x[0], const(f"{name}/kernel", kernel)]
            if p["bias"] is not None:
                args.append(const(f"{name}/bias", p["bias"]))
            attrs = {"kernel_shape": list(p["kernel"].shape[:2]), "strides": list(p["strides"]), "pads": pads}
            if node.kind == "conv":
                attrs["dilations"] = list(p["dilation"])
            onnx_nodes.append(helper.make_node(op, args, [y], name=name, **attrs))
        elif node.kind == "bn":
            args = [x[0]] + [const(f"{name}/{k}", p[k]) for k in ("gamma", "beta", "mean", "var")]
            onnx_nodes.append(helper.make_node("BatchNormalization", args, [y], name=name, epsilon=p["epsilon"]))
        elif node.kind in ("relu", "sigmoid", "tanh", "identity"):
            op = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "identity": "Identity"}[node.kind]
            onnx_nodes.append(helper.make_node(op, x, [y], name=name))
        elif node.kind == "maxpool":
            onnx_nodes.append(helper.make_node("MaxPool", x, [y], name=name, kernel_shape=list(p["pool_size"]),
                                               strides=list(p["strides"]),
                                               pads=_onnx_pads(node, by_name[node.inputs[0]].shape)))
        elif node.kind == "add":
            current = x[0]
            for k, other in enumerate(x[1:]):
                target = y if k == len(x) - 2 else f"{name}/add{k}"
                onnx_nodes.append(helper.make_node("Add", [current, other], [target], name=target))
                current = target
        elif node.kind in ("mul", "affine"):
            target = y if node.kind == "mul" else f"{name}/mul"
            onnx_nodes.append(helper.make_node("Mul", [x[0], channel_const(f"{name}/scale", p["scale"])],
                                               [target], name=target))
            if node.kind == "affine":
                onnx_nodes.append(helper.make_node("Add", [target, channel_const(f"{name}/shift", p["shift"])],
                                                   [y], name=f"{name}/add"))
        else:
            raise ValueError(f"node {name!r}: unknown kind {node.kind!r}")
        out[name] = y
    onnx_nodes.append(helper.make_node("Transpose", [out[output_name]], ["output"], perm=[0, 2, 3, 1],
                                       name=f"{output_name}/to_nhwc"))
    in_shape = [batch_size, *by_name[input_name].shape]
    out_shape = [batch_size, *by_name[output_name].shape]
    graph = helper.make_graph(onnx_nodes, "prnet",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)],
                              initializers)
    opset_id = helper.make_opsetid("", int(opset))
    model = helper.make_model(graph, opset_imports=[opset_id], producer_name="face3d.prnet.export")
    model.ir_version = min(helper.find_min_ir_version_for([opset_id]), _MAX_IR_VERSION)
    onnx.checker.check_model(model)
    return model


def onnx_to_float16(model):
    """Convert a float32 ONNX model to float16 computation with a float32 interface (as ATC's
    ``--precision_mode=force_fp16`` with ``--output_type=FP32``): float initializers become float16, a Cast to
    float16 follows each float32 graph input and a Cast to float32 precedes each graph output.

    Args:
        model: onnx.ModelProto (not modified).
    Returns:
        onnx.ModelProto.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model16 = onnx.ModelProto()
    model16.CopyFrom(model)
    graph = model16.graph
    for k, tensor in enumerate(graph.initializer):
        if tensor.data_type == TensorProto.FLOAT:
            graph.initializer[k].CopyFrom(numpy_helper.from_array(
                numpy_helper.to_array(tensor).astype(np.float16), tensor.name))
    del graph.value_info[:]
    renamed_inputs = {}
    casts_in = []
    for value in graph.input:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT and \
                value.name not in {t.name for t in graph.initializer}:
            renamed_inputs[value.name] = f"{value.name}/fp16"
            casts_in.append(helper.make_node("Cast", [value.name], [renamed_inputs[value.name]],
                                             name=f"{value.name}/to_fp16", to=TensorProto.FLOAT16))
    for node in graph.node:
        node.input[:] = [renamed_inputs.get(i, i) for i in node.input]
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == TensorProto.FLOAT:
                    attr.i = TensorProto.FLOAT16
    casts_out = []
    for value in graph.output:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            internal = f"{value.name}/fp16"
            for node in graph.node:
                node.output[:] = [internal if o == value.name else o for o in node.output]
                node.input[:] = [internal if i == value.name else i for i in node.input]
            casts_out.append(helper.make_node("Cast", [internal], [value.name], name=f"{value.name}/to_fp32",
                                              to=TensorProto.FLOAT))
    nodes = casts_in + list(graph.node) + casts_out
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model16)
    return model16


def check_onnx_ops(model, supported=ATC_SUPPORTED_ONNX_OPS):
    """ONNX counterpart of ``check_atc_ops``: op type -> count, or UnsupportedOpError naming the others."""
    counts = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    bad = sorted(set(counts) - set(supported))
    if bad:
        raise UnsupportedOpError(f"the ONNX graph has op types ATC does not support: {', '.join(bad)}")
    return dict(sorted(counts.items()))


# --------------------------------------------------------------------------------------------------- checks


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


def _keras_predict(model, images):
    return np.asarray(model(images, training=False), dtype=np.float32)


# ------------------------------------------------------------------------------------------------------ ATC


def atc_command(model_path, output_prefix, framework, batch_size=1, input_size=256, soc_version="Ascend310",
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


def _run_atc(command, log_path):
    """Run ``atc`` in the log's folder (the command's paths are relative to it) when it is on PATH; returns its
    exit status, or None when it is not installed."""
    if shutil.which(command[0]) is None:
        return None
    with open(log_path, "w") as log:
        status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False,
                                cwd=Path(log_path).parent).returncode
    if status != 0:
        tail = Path(log_path).read_text()[-2000:]
        raise RuntimeError(f"atc failed with status {status} (log {log_path}):\n{tail}")
    return status


# ---------------------------------------------------------------------------------------------------- export


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


def export_model(model, output_dir, batch_size=1, fold_bn=True, onnx=False, opset=11, soc_version="Ascend310",
                 precision_mode="force_fp16", check_images=None, tolerance=1e-3, run_atc=True):
    """Export a Keras PRNet to ``output_dir/prnet.pb`` (and ``prnet.onnx``), verify, and write the ATC files.

    Steps (the written files are run by ``predictor.load_predictor``, the loader inference uses): translate the layers (``model_to_nodes``), fold batch norms (unless ``fold_bn`` is False), build the
    frozen graph, check its op types against ``ATC_SUPPORTED_TF_OPS`` (UnsupportedOpError before anything is
    written), write it, reload the written file and compare it with the Keras model on ``check_images``
    (max |difference| of the normalised map < ``tolerance``, else RuntimeError); the same for ONNX with ONNX
    Runtime. Then write ``atc_pb.sh`` / ``atc_onnx.sh`` (the exact command), ``fusion_switch.cfg`` for unfolded
    graphs and ``export.json`` (op types, differences, commands), and run ``atc`` when it is on PATH.

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
    result.pb_path.write_bytes(graph_def.SerializeToString())
    expected = _keras_predict(model, images)
    result.max_abs_diff["pb"] = float(np.abs(load_predictor(result.pb_path).predict(images) - expected).max())
    if onnx:
        result.onnx_path = output_dir / "prnet.onnx"
        result.onnx_path.write_bytes(onnx_model.SerializeToString())
        result.max_abs_diff["onnx"] = float(np.abs(load_predictor(result.onnx_path).predict(images)
                                                   - expected).max())
    bad = {k: v for k, v in result.max_abs_diff.items() if not v < tolerance}
    if bad:
        raise RuntimeError(f"exported graph differs from the Keras model by {bad} (tolerance {tolerance})")

    if not fold_bn:
        result.fusion_switch_path = write_fusion_switch(output_dir / "fusion_switch.cfg")
    formats = {"pb": (result.pb_path, 3)}
    if onnx:
        formats["onnx"] = (result.onnx_path, 5)
    for fmt, (path, framework) in formats.items():
        command = atc_command(path.name, f"prnet_{fmt}", framework, batch_size, size, soc_version,
                              precision_mode, None if fold_bn else result.fusion_switch_path.name)
        result.atc_commands[fmt] = shell_line(command)
        script = output_dir / f"atc_{fmt}.sh"
        script.write_text("#!/bin/sh\n# run in this folder on a machine with the Ascend CANN toolkit\n"
                          f"cd \"$(dirname \"$0\")\" && {result.atc_commands[fmt]}\n")
        script.chmod(0o755)
        result.atc_status[fmt] = _run_atc(command, output_dir / f"atc_{fmt}.log") if run_atc else None
        if result.atc_status[fmt] is None:
            logger.info("atc not run for %s; command in %s", fmt, script)
    summary = {"batch_size": batch_size, "input_size": size, "fold_bn": fold_bn, "opset": opset if onnx else None,
               "op_types": op_types, "onnx_op_types": onnx_op_types, "max_abs_diff": result.max_abs_diff,
               "tolerance": tolerance, "atc_commands": result.atc_commands, "atc_status": result.atc_status}
    (output_dir / "export.json").write_text(json.dumps(summary, indent=2) + "\n")
    return result
