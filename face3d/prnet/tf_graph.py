"""A ``LayerNode`` list as a frozen TensorFlow GraphDef for ATC (``--framework=3``).

The graph is rebuilt with ``tf.nn`` ops (Conv2D, Conv2DBackpropInput, BiasAdd, Relu, MaxPool, AddV2, Mul, Sigmoid,
FusedBatchNormV3 when batch norms are kept); a "keras" node is called as it is and its variables frozen. Grappler
then folds constant subgraphs (constant folding alone: its layout and remapper passes introduce fused ops ATC does
not know), nodes not feeding ``output`` are pruned, and attributes at their default value that TensorFlow 1.15
(the IR ATC's parser documents) does not know are stripped.
"""

__all__ = ["BATCH_NORM_OP_TYPES", "graph_function", "build_graph_def", "graph_op_types"]

# op types a folded graph must not contain (Keras 3 lowers batch norm to Rsqrt/Mul/Sub/AddV2, which TensorFlow's
# optimize_for_inference does not fold)
BATCH_NORM_OP_TYPES = frozenset({"FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3", "Rsqrt"})
# attributes kept even at their default value: ATC infers layouts from data_format, and these are old
_KEPT_ATTRS = frozenset({"T", "U", "dtype", "shape", "data_format", "dilations", "strides", "padding", "ksize"})


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


def graph_function(nodes, input_name, output_name, batch_size=1):
    """The node list as a TensorFlow concrete function (the graph ``build_graph_def`` freezes and the TFLite
    converter reads).

    Args:
        nodes, input_name, output_name, batch_size: as for ``build_graph_def``.
    Returns:
        tf ConcreteFunction: float32 ``input`` [B, H, W, C] -> the Identity ``output``.
    """
    import tensorflow as tf

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

    return forward.get_concrete_function()


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
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(graph_function(nodes, input_name, output_name, batch_size))
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

