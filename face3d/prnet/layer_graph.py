"""A Keras model as a framework-neutral list of layer nodes, and batch-norm folding on that list.

``model_to_nodes`` walks a functional Keras model into ``LayerNode`` records (conv, deconv, bn, activations,
max-pool, add, or "keras" for any other layer); ``fold_batch_norms`` folds every inference batch norm into the
convolutions feeding it, so that the exported graph holds no batch norm (an Ascend port of PRNet reported wrong
outputs from ATC's ConvBatchnormFusionPass). ``tf_graph`` and ``onnx_graph`` build their graphs from these nodes.
"""
import dataclasses
from dataclasses import dataclass, field

import numpy as np

__all__ = ["LayerNode", "model_to_nodes", "fold_batch_norms"]

# activations a LayerNode can carry as its own node (a conv's fused activation becomes one)
_ACTIVATIONS = ("relu", "sigmoid", "tanh")


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


def _node_kind(layer, cfg, shape):
    """The LayerNode kind of a Keras layer (``cfg`` its config, ``shape`` its output (H, W, C)); "keras" for a
    layer (or a variant of one, e.g. channels_first, grouped, dilated transposed) the graph builders do not
    translate."""
    from keras import layers

    activation = cfg.get("activation", "linear")
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return "keras"
    if isinstance(layer, (layers.Conv2DTranspose, layers.Conv2D)) \
            and activation in ("linear", *_ACTIVATIONS) \
            and cfg.get("groups", 1) == 1 and cfg.get("output_padding") is None \
            and not (isinstance(layer, layers.Conv2DTranspose) and _pair(cfg["dilation_rate"]) != (1, 1)):
        return "deconv" if isinstance(layer, layers.Conv2DTranspose) else "conv"
    if isinstance(layer, layers.BatchNormalization) and layer.axis in (-1, len(shape)):
        return "bn"
    if isinstance(layer, layers.ReLU) and layer.max_value is None and float(layer.negative_slope) == 0 \
            and float(layer.threshold) == 0:
        return "relu"
    if isinstance(layer, layers.Activation) and activation in (*_ACTIVATIONS, "linear"):
        return {"linear": "identity"}.get(activation, activation)
    if isinstance(layer, layers.MaxPooling2D):
        return "maxpool"
    if isinstance(layer, layers.Add):
        return "add"
    return "keras"


def _node_params(layer, kind, cfg, shape):
    """The ``LayerNode.params`` of a Keras layer of the given kind (see ``LayerNode``); weights as float32
    numpy arrays."""
    if kind in ("conv", "deconv"):
        return {"kernel": np.asarray(layer.kernel.numpy(), dtype=np.float32),
                "bias": np.asarray(layer.bias.numpy(), dtype=np.float32) if layer.use_bias else None,
                "strides": _pair(cfg["strides"]), "padding": cfg["padding"],
                "dilation": _pair(cfg["dilation_rate"])}
    if kind == "bn":
        channels = shape[-1]
        return {"gamma": layer.gamma.numpy() if layer.scale else np.ones(channels, np.float32),
                "beta": layer.beta.numpy() if layer.center else np.zeros(channels, np.float32),
                "mean": layer.moving_mean.numpy(), "var": layer.moving_variance.numpy(),
                "epsilon": float(layer.epsilon)}
    if kind == "maxpool":
        return {"pool_size": _pair(cfg["pool_size"]), "strides": _pair(cfg["strides"]),
                "padding": cfg["padding"]}
    if kind == "keras":
        return {"layer": layer}
    return {}


def model_to_nodes(model):
    """Translate a functional Keras model into ``LayerNode`` records in topological order.

    A convolution with a fused activation becomes two nodes: ``<layer>/linear`` (the convolution) and the
    activation under the layer's own name, so that its consumers still find it.

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
        kind = _node_kind(layer, cfg, shape)
        params = _node_params(layer, kind, cfg, shape)
        if kind in ("conv", "deconv") and activation != "linear":
            nodes.append(LayerNode(f"{layer.name}/linear", kind, inputs, params, shape))
            nodes.append(LayerNode(layer.name, activation, [f"{layer.name}/linear"], shape=shape))
        else:
            nodes.append(LayerNode(layer.name, kind, inputs, params, shape))
    input_name = model.inputs[0]._keras_history.operation.name
    output_name = model.outputs[0]._keras_history.operation.name
    return nodes, input_name, output_name


def _bn_scale_shift(params):
    """Per-channel (scale, shift) of an inference batch norm, float64 (formula in ``fold_batch_norms``)."""
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


def _fold_into_add(bn_name, add, scale, shift, by_name, foldable):
    """Push a batch norm that follows a residual add into the add's branches, in place: a foldable convolution
    branch absorbs ``scale`` in its kernel (the first one also takes ``shift`` as bias), any other branch (an
    identity shortcut) goes through a new "mul" node ``<bn_name>/scale<k>``.

    Returns:
        (mul nodes to insert before ``add``, whether a convolution took ``shift``).
    """
    muls, shift_done = [], False
    for k, name in enumerate(list(add.inputs)):
        if foldable(name):
            _scale_conv(by_name[name], scale, None if shift_done else shift)
            shift_done = True
        else:
            mul = LayerNode(f"{bn_name}/scale{k}", "mul", [name], {"scale": scale.astype(np.float32)},
                            by_name[name].shape)
            muls.append(mul)
            by_name[mul.name] = mul
            add.inputs[k] = mul.name
    return muls, shift_done


def fold_batch_norms(nodes, output_name):
    """Fold every batch norm into the convolutions feeding it.

    An inference batch norm y = gamma * (x - mean) / sqrt(var + eps) + beta = scale * x + shift, with
    scale = gamma / sqrt(var + eps) and shift = beta - mean * scale (computed in float64), folds into the
    convolution feeding it: kernel' = kernel * scale along the output-channel axis, bias' = bias * scale + shift.
    A batch norm after a residual add scales both branches: convolution branches absorb ``scale`` in their
    kernels, an identity shortcut gets one constant "mul", and ``shift`` becomes the bias of the first
    convolution branch. A batch norm no convolution feeds becomes an "affine" node (Mul + Add with constants).

    Args:
        nodes: LayerNode list from ``model_to_nodes`` (not modified).
        output_name: the graph output's node name.
    Returns:
        (nodes, output_name): new list without "bn" nodes.
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
            muls, shift_done = _fold_into_add(node.name, source, scale, shift, by_name, foldable)
            at = result.index(source)
            result[at:at] = muls
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
