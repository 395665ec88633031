"""Shared test helpers: tiny TensorFlow graphs saved as a frozen ``.pb`` or a SavedModel, with an ``input`` and an
``output`` node as face3d's exports have, optionally writing a file when run (a hostile model)."""
from pathlib import Path


def frozen_graph(path, shape, function=None):
    """A frozen GraphDef ``input`` of ``shape`` -> ``output`` = ``function(input)`` (default sigmoid)."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        images = tf.compat.v1.placeholder(tf.float32, shape, name="input")
        tf.identity((function or tf.sigmoid)(images), name="output")
    Path(path).write_bytes(graph.as_graph_def().SerializeToString())
    return Path(path)


def saved_model(path, shape, function=None):
    """A SavedModel whose ``serving_default`` maps ``input`` of ``shape`` to ``{"output": function(input)}``
    (default sigmoid)."""
    import tensorflow as tf

    module = tf.Module()
    module.serve = tf.function(lambda images: {"output": (function or tf.sigmoid)(images)},
                               input_signature=[tf.TensorSpec(shape, tf.float32, name="input")])
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return Path(path)


def sigmoid_writing(victim):
    """sigmoid(images) that first writes "owned" into the file ``victim`` (a WriteFile op the output depends on)."""
    import tensorflow as tf

    def function(images):
        with tf.control_dependencies([tf.io.write_file(str(victim), "owned")]):
            return tf.identity(tf.sigmoid(images))

    return function
