"""A ``LayerNode`` list as an ONNX model for ATC (``--framework=5``) and ONNX Runtime.

The network runs NCHW inside, between two Transposes that keep the NHWC ``input``/``output`` contract; Keras's SAME
padding becomes explicit ``pads``. Stride-1 transposed convolutions are written as the equivalent Conv (flipped
kernel), which ONNX Runtime runs several times faster. ``onnx_to_float16`` gives the float16 model ATC's
``--precision_mode=force_fp16`` computes, to measure its error on the CPU.
"""
import numpy as np

__all__ = ["build_onnx_model", "onnx_to_float16"]

# ONNX Runtime reads IR versions up to 10 safely; each opset's minimum IR version is taken from onnx's table
_MAX_IR_VERSION = 10


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




class _OnnxGraph:
    """The nodes and initializers of an ONNX graph under construction, in the order they are added."""

    def __init__(self):
        self.nodes, self.initializers = [], []

    def const(self, name, array):
        """Add a float32 initializer ``name``; returns its name."""
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def channel_const(self, name, vector):
        """Add a per-channel (C,) vector as a (1, C, 1, 1) initializer that broadcasts over NCHW."""
        return self.const(name, np.asarray(vector, np.float32).reshape(1, -1, 1, 1))

    def add(self, op, inputs, output, name, **attrs):
        """Add one node of type ``op`` with one output."""
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [output], name=name, **attrs))


def _emit_conv(graph, node, x, y, in_shape):
    """Conv / ConvTranspose of a conv or deconv node (a stride-1 deconv as the equivalent Conv)."""
    name, p = node.name, node.params
    # Keras conv kernel (kh, kw, in, out) and deconv kernel (kh, kw, out, in) both become ONNX's
    # (dim0, dim1, kh, kw) = (out, in) for Conv and (in, out) for ConvTranspose: the same transpose
    kernel = p["kernel"].transpose(3, 2, 0, 1)
    pads = _onnx_pads(node, in_shape)
    op = "Conv" if node.kind == "conv" else "ConvTranspose"
    if node.kind == "deconv" and tuple(p["strides"]) == (1, 1):
        # a stride-1 transposed conv is the conv with the spatially flipped kernel, in/out swapped and
        # padding k - 1 - p per side; ONNX Runtime runs Conv several times faster than ConvTranspose
        kernel = kernel.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
        kh, kw = kernel.shape[2:]
        pads = [kh - 1 - pads[0], kw - 1 - pads[1], kh - 1 - pads[2], kw - 1 - pads[3]]
        op = "Conv"
    args = [x[0], graph.const(f"{name}/kernel", kernel)]
    if p["bias"] is not None:
        args.append(graph.const(f"{name}/bias", p["bias"]))
    attrs = {"kernel_shape": list(p["kernel"].shape[:2]), "strides": list(p["strides"]), "pads": pads}
    if node.kind == "conv":
        attrs["dilations"] = list(p["dilation"])
    graph.add(op, args, y, name, **attrs)


def _emit_batch_norm(graph, node, x, y, in_shape):
    """BatchNormalization (inference form) of a bn node."""
    name, p = node.name, node.params
    args = [x[0]] + [graph.const(f"{name}/{k}", p[k]) for k in ("gamma", "beta", "mean", "var")]
    graph.add("BatchNormalization", args, y, name, epsilon=p["epsilon"])


def _emit_activation(graph, node, x, y, in_shape):
    """Relu / Sigmoid / Tanh / Identity."""
    op = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "identity": "Identity"}[node.kind]
    graph.add(op, x, y, node.name)


def _emit_max_pool(graph, node, x, y, in_shape):
    """MaxPool with Keras's padding."""
    p = node.params
    graph.add("MaxPool", x, y, node.name, kernel_shape=list(p["pool_size"]), strides=list(p["strides"]),
              pads=_onnx_pads(node, in_shape))


def _emit_add(graph, node, x, y, in_shape):
    """A chain of binary Adds (``<name>/add<k>``) summing every input."""
    current = x[0]
    for k, other in enumerate(x[1:]):
        target = y if k == len(x) - 2 else f"{node.name}/add{k}"
        graph.add("Add", [current, other], target, target)
        current = target


def _emit_scale(graph, node, x, y, in_shape):
    """Per-channel constant Mul (mul node), followed by a constant Add for an affine node."""
    name, p = node.name, node.params
    target = y if node.kind == "mul" else f"{name}/mul"
    graph.add("Mul", [x[0], graph.channel_const(f"{name}/scale", p["scale"])], target, target)
    if node.kind == "affine":
        graph.add("Add", [target, graph.channel_const(f"{name}/shift", p["shift"])], y, f"{name}/add")


# node kind -> emitter(graph, node, input names, output name, first input's (H, W, C))
_EMITTERS = {"conv": _emit_conv, "deconv": _emit_conv, "bn": _emit_batch_norm, "relu": _emit_activation,
             "sigmoid": _emit_activation, "tanh": _emit_activation, "identity": _emit_activation,
             "maxpool": _emit_max_pool, "add": _emit_add, "mul": _emit_scale, "affine": _emit_scale}


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
    from onnx import TensorProto, helper

    if int(opset) != opset or not 9 <= opset <= 21:
        raise ValueError(f"opset must be an integer in [9, 21], got {opset}")
    by_name = {n.name: n for n in nodes}
    keras_nodes = [n.name for n in nodes if n.kind == "keras"]
    if keras_nodes:
        raise ValueError(f"ONNX export cannot translate layers {keras_nodes}: supported are Conv2D, "
                         "Conv2DTranspose, BatchNormalization, ReLU, MaxPooling2D, Add and sigmoid/tanh/relu "
                         "activations")
    graph = _OnnxGraph()
    out = {input_name: f"{input_name}/nchw"}
    graph.add("Transpose", ["input"], out[input_name], f"{input_name}/to_nchw", perm=[0, 3, 1, 2])
    for node in nodes:
        if node.kind == "input":
            continue
        if node.kind not in _EMITTERS:
            raise ValueError(f"node {node.name!r}: unknown kind {node.kind!r}")
        out[node.name] = f"{node.name}/out"
        _EMITTERS[node.kind](graph, node, [out[i] for i in node.inputs], out[node.name],
                             by_name[node.inputs[0]].shape)
    graph.add("Transpose", [out[output_name]], "output", f"{output_name}/to_nhwc", perm=[0, 2, 3, 1])
    in_shape = [batch_size, *by_name[input_name].shape]
    out_shape = [batch_size, *by_name[output_name].shape]
    onnx_graph = helper.make_graph(graph.nodes, "prnet",
                                   [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
                                   [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)],
                                   graph.initializers)
    opset_id = helper.make_opsetid("", int(opset))
    # the producer is the package's export entry point, whichever module builds the graph
    model = helper.make_model(onnx_graph, opset_imports=[opset_id], producer_name="face3d.prnet.export")
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

