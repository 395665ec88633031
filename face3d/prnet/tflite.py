"""A ``LayerNode`` list as TensorFlow Lite models for phones: float32, float16 weights, full-integer int8.

The converter (``tf.lite.TFLiteConverter``) reads the same concrete function the frozen ``.pb`` is made from
(``tf_graph.graph_function``: batch norms folded, fixed batch), so the three files (``prnet.tflite``,
``prnet_fp16.tflite``, ``prnet_int8.tflite``) hold one graph; ``build_tflite`` describes each mode.
"""
from face3d.prnet.quantize import calibration_batches
from face3d.prnet.tf_graph import graph_function

__all__ = ["TFLITE_MODES", "build_tflite"]

TFLITE_MODES = ("float32", "float16", "int8")


def build_tflite(nodes, input_name, output_name, batch_size=1, mode="float32", calibration=None):
    """Convert a node list to a TFLite flatbuffer.

    Args:
        nodes, input_name, output_name, batch_size: as for ``tf_graph.build_graph_def``.
        mode: one of ``TFLITE_MODES``: "float32" the graph as is; "float16" weights stored as float16 and dequantized
            at load, computation in float32 (about half the size); "int8" full-integer post-training quantization
            calibrated on representative images: int8 weights (symmetric, per output channel), int8 activations
            (asymmetric, ranges from the calibration images), int8 input and output (``predictor.TFLitePredictor``
            converts with the model's scale and zero point).
        calibration: float32 (N, H, W, C) images in [0, 1] whose activation ranges set the int8 scales (int8 only;
            ``quantize.calibration_batches``: N a multiple of ``batch_size``, each batch one calibration step).
    Returns:
        bytes of the ``.tflite`` model.
    """
    import tensorflow as tf

    if mode not in TFLITE_MODES:
        raise ValueError(f"mode must be one of {TFLITE_MODES}, got {mode!r}")
    function = graph_function(nodes, input_name, output_name, batch_size)
    # the graph holds constants only; an empty module as the trackable object selects the current converter path
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], tf.Module())
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        batches = calibration_batches(calibration, batch_size)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([batch] for batch in batches)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()
