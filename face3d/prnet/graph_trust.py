"""Models are code: the op types a TensorFlow graph may hold before face3d runs it without ``--trust-model``.

A frozen ``.pb`` or a SavedModel runs every op of its graph, file writes included. Before one is loaded its op
types (top-level nodes and every function of its library) are checked against ``INFERENCE_TF_OPS``: the ops ATC
converts (``atc.ATC_SUPPORTED_TF_OPS``, the exporter's table) plus those our own exports hold (a Keras
``model.export`` SavedModel: variables, calls, the dynamic batch's shape ops, the checkpoint restore). A
SavedModel's checkpoint *save* function also holds ``SAVER_TF_OPS``; they are accepted only in functions nothing
but the saver reaches.
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


def _called_functions(nodes):
    """Names of the library functions the nodes' attributes refer to (``f`` of calls, branches, bodies)."""
    names = set()
    for node in nodes:
        for value in node.attr.values():
            if value.func.name:
                names.add(value.func.name)
            names.update(f.name for f in value.list.func)
    return names


def _closure(roots, functions):
    """``roots`` and every function they call, transitively (names present in ``functions``)."""
    seen, stack = set(), [name for name in roots if name in functions]
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(n for n in _called_functions(functions[name].node_def) if n in functions)
    return seen


def _refuse_unknown_ops(path, op_nodes):
    """Raise UntrustedModelError naming the op types of ``op_nodes`` (op type -> first node name), if any."""
    if op_nodes:
        detail = ", ".join(f"{op} (node {name})" for op, name in sorted(op_nodes.items()))
        raise UntrustedModelError(f"{path}: the graph holds op types outside face3d's inference list: {detail}; "
                                  "pass --trust-model (trust_model=True) to run it anyway")


def _unknown_ops(nodes, allowed, found):
    for node in nodes:
        if node.op not in allowed:
            found.setdefault(node.op, node.name)


def check_graph_def(graph_def, path, saver_node=None):
    """Check a GraphDef's op types: top-level nodes and library functions against ``INFERENCE_TF_OPS``; the
    functions only ``saver_node`` (a top-level node name) reaches may also hold ``SAVER_TF_OPS``.

    Raises:
        UntrustedModelError naming ``path``, each op type outside the lists and one node holding it.
    """
    functions = {f.signature.name: f for f in graph_def.library.function}
    others = [node for node in graph_def.node if node.name != saver_node]
    saver_only = (_closure(_called_functions(n for n in graph_def.node if n.name == saver_node), functions)
                  - _closure(_called_functions(others), functions))
    found = {}
    _unknown_ops(others, INFERENCE_TF_OPS, found)
    for name, function in functions.items():
        allowed = INFERENCE_TF_OPS | SAVER_TF_OPS if name in saver_only else INFERENCE_TF_OPS
        _unknown_ops(function.node_def, allowed, found)
    _refuse_unknown_ops(path, found)


def check_saved_model(path):
    """Check every meta graph of a SavedModel folder (``saved_model.pb``) with ``check_graph_def``, its saver's
    save node as ``saver_node``. Raises UntrustedModelError (or ValueError for an unreadable file)."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = Path(path)
    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString((path / "saved_model.pb").read_bytes())
    except Exception as error:  # protobuf's DecodeError is not importable without protobuf internals
        raise ValueError(f"{path / 'saved_model.pb'}: not a SavedModel ({type(error).__name__}: {error})") from None
    for meta_graph in saved.meta_graphs:
        save_tensor = meta_graph.saver_def.save_tensor_name
        check_graph_def(meta_graph.graph_def, path, save_tensor.split(":")[0] if save_tensor else None)
