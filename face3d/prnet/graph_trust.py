"""Models are code: the op types a TensorFlow graph may hold before face3d runs it without ``--trust-model``.

A frozen ``.pb`` or a SavedModel runs every op of its graph, file writes included. Before one is loaded its op
types (top-level nodes and every function of its library) are checked against ``INFERENCE_TF_OPS``: the ops ATC
converts (``atc.ATC_SUPPORTED_TF_OPS``, the exporter's table) plus those our own exports hold (a Keras
``model.export`` SavedModel: variables, calls, the dynamic batch's shape ops, the checkpoint restore). A
SavedModel's checkpoint *save* function also holds ``SAVER_TF_OPS``; they are accepted only in functions the saver
node reaches and nothing a load can run does (the other nodes, the object graph's functions: TF2's load runs those).
"""
from pathlib import Path

from face3d.prnet.atc import ATC_SUPPORTED_TF_OPS

__all__ = ["INFERENCE_TF_OPS", "SAVER_TF_OPS", "UntrustedModelError", "check_graph_def", "check_saved_model"]

INFERENCE_TF_OPS = ATC_SUPPORTED_TF_OPS | frozenset({
    "IdentityN", "Shape", "Pack",  # a Keras export's transposed convolutions for a dynamic batch
    "PartitionedCall", "StatefulPartitionedCall",  # calls of the graph's own functions
    "VarHandleOp", "ReadVariableOp", "AssignVariableOp", "VarIsInitializedOp", "RestoreV2",  # weights, restored
})
SAVER_TF_OPS = frozenset({"SaveV2", "MergeV2Checkpoints", "ShardedFilename", "StringJoin", "StaticRegexFullMatch",
                          "Select", "DisableCopyOnRead"})


class UntrustedModelError(ValueError):
    """A model graph holds op types outside the inference list (the message names them and ``--trust-model``)."""


def _called_functions(nodes, internal_attrs=True):
    """Names of the library functions the nodes' attributes refer to (``f`` of calls, branches, bodies); with
    ``internal_attrs`` False, those of ``_``-prefixed attributes (TensorFlow's own bookkeeping, never called) left
    out."""
    names = set()
    for node in nodes:
        for key, value in node.attr.items():
            if not internal_attrs and key.startswith("_"):
                continue
            if value.func.name:
                names.add(value.func.name)
            names.update(f.name for f in value.list.func)
    return names


def _closure(roots, functions, internal_attrs=True):
    """``roots`` and every function they call, transitively (names present in ``functions``; ``internal_attrs`` as
    for ``_called_functions``)."""
    seen, stack = set(), [name for name in roots if name in functions]
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(n for n in _called_functions(functions[name].node_def, internal_attrs) if n in functions)
    return seen


def _refuse_unknown_ops(path, op_nodes):
    """Raise UntrustedModelError naming the op types of ``op_nodes`` (op type -> first node name), if any."""
    if op_nodes:
        detail = ", ".join(f"{op} (node {name})" for op, name in sorted(op_nodes.items()))
        raise UntrustedModelError(f"{path}: the graph holds op types outside face3d's inference list: {detail}; "
                                  "pass --trust-model (trust_model=True) to run it anyway")


def _unknown_ops(nodes, allowed, found, functions):
    """Record in ``found`` (op type -> first node name) the nodes' op types outside ``allowed``, and the names of
    the functions they call that ``functions`` (the library) does not define: TensorFlow would resolve such a name
    elsewhere (a call naming the primitive ``WriteFile``)."""
    for node in nodes:
        if node.op not in allowed:
            found.setdefault(node.op, node.name)
        for name in _called_functions([node], internal_attrs=False) - functions.keys():
            found.setdefault(name, node.name)


def check_graph_def(graph_def, path, saver_node=None, loadable_functions=()):
    """Check a GraphDef's op types: top-level nodes and library functions against ``INFERENCE_TF_OPS``. The
    functions ``saver_node`` (a top-level node name) reaches, through attributes other than ``_``-prefixed ones, may
    also hold ``SAVER_TF_OPS`` when neither another top-level node nor ``loadable_functions`` (function names a load
    may call directly) reaches them.

    Raises:
        UntrustedModelError naming ``path``, each op type outside the lists and one node holding it.
    """
    functions = {f.signature.name: f for f in graph_def.library.function}
    others = [node for node in graph_def.node if node.name != saver_node]
    saver = [node for node in graph_def.node if node.name == saver_node]
    saver_only = (_closure(_called_functions(saver, internal_attrs=False), functions, internal_attrs=False)
                  - _closure(_called_functions(others) | set(loadable_functions), functions))
    found = {}
    _unknown_ops(others, INFERENCE_TF_OPS, found, functions)
    _unknown_ops(saver, INFERENCE_TF_OPS | SAVER_TF_OPS, found, functions)
    for name, function in functions.items():
        allowed = INFERENCE_TF_OPS | SAVER_TF_OPS if name in saver_only else INFERENCE_TF_OPS
        _unknown_ops(function.node_def, allowed, found, functions)
    _refuse_unknown_ops(path, found)


def _object_graph_functions(object_graph):
    """Names of the functions a SavedModel's object graph holds (every concrete function, those of its function,
    signature and captured-tensor objects): TF2's ``tf.saved_model.load`` may call any of them."""
    names = set(object_graph.concrete_functions)
    for obj in object_graph.nodes:
        names.update(obj.function.concrete_functions)
        names.update({obj.bare_concrete_function.concrete_function_name, obj.captured_tensor.concrete_function})
    return names - {""}


def _tensor_nodes(tensor_info):
    """Graph node names a signature's TensorInfo refers to (a dense tensor, a sparse one's three, a composite's)."""
    sparse = tensor_info.coo_sparse
    names = {tensor_info.name, sparse.values_tensor_name, sparse.indices_tensor_name, sparse.dense_shape_tensor_name}
    nodes = {name.split(":")[0] for name in names if name}
    for component in tensor_info.composite_tensor.components:
        nodes |= _tensor_nodes(component)
    return nodes


def _loaders_run(meta_graph, node_name):
    """Whether a load may run top-level node ``node_name`` other than as the checkpoint save: another node takes it
    as an input, a signature's tensor or a collection names it, or it is the saver's restore or filename node."""
    referred = {meta_graph.saver_def.restore_op_name, meta_graph.saver_def.filename_tensor_name.split(":")[0]}
    for node in meta_graph.graph_def.node:
        if node.name != node_name:
            referred.update(name.lstrip("^").split(":")[0] for name in node.input)
    for signature in meta_graph.signature_def.values():
        for tensor_info in [*signature.inputs.values(), *signature.outputs.values()]:
            referred |= _tensor_nodes(tensor_info)
    for collection in meta_graph.collection_def.values():
        referred.update(name.split(":")[0] for name in collection.node_list.value)
    return node_name in referred


def check_saved_model(path):
    """Check every meta graph of a SavedModel folder (``saved_model.pb``) with ``check_graph_def``: its saver's
    save node as ``saver_node`` unless a load may run that node otherwise (``_loaders_run``), the object graph's
    functions as ``loadable_functions``. Raises UntrustedModelError (or ValueError for an unreadable file)."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = Path(path)
    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString((path / "saved_model.pb").read_bytes())
    except Exception as error:  # protobuf's DecodeError is not importable without protobuf internals
        raise ValueError(f"{path / 'saved_model.pb'}: not a SavedModel ({type(error).__name__}: {error})") from None
    for meta_graph in saved.meta_graphs:
        save_node = meta_graph.saver_def.save_tensor_name.split(":")[0] or None
        if save_node is not None and _loaders_run(meta_graph, save_node):
            save_node = None
        check_graph_def(meta_graph.graph_def, path, save_node, _object_graph_functions(meta_graph.object_graph_def))
