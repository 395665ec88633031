"""Run a trained PRNet in any of its saved forms: Keras file, PRNet's TF1 checkpoint, SavedModel, frozen GraphDef,
ONNX or TFLite.

``load_predictor(path)`` picks the backend from the path, one ``Predictor`` subclass each. Every predictor maps
NHWC RGB crops in [0, 1] (image / 255, as in training) to normalised position maps in [0, 1] (the position map in
crop pixels divided by 1.1 x the map resolution; ``Predictor.predict``). TensorFlow and ONNX Runtime are imported
only by their own backend, so an ONNX-only installation never needs TensorFlow.
"""
import logging
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np

from face3d.prnet.graph_trust import UntrustedModelError, check_graph_def, check_saved_model
from face3d.utils.atomic import names_no_file_but
from face3d.utils.errors import InputFileError, first_line, os_error_at

__all__ = ["Predictor", "KerasPredictor", "SavedModelPredictor", "FrozenGraphPredictor", "OnnxPredictor",
           "TFLitePredictor", "UntrustedModelError", "load_keras_model", "save_keras_model", "load_predictor",
           "square_side"]

logger = logging.getLogger(__name__)

# the delegate node TFLite names in allocate_tensors()'s RuntimeError when XNNPACK refuses a model it should run
_XNNPACK_DELEGATE = "TfLiteXNNPackDelegate"


def load_keras_model(path, compile=False):
    """Load a Keras model (``.keras`` / ``.h5``) or PRNet's TF1 checkpoint (prefix, ``.index`` file or folder;
    ``prnet_checkpoint.load_prnet_checkpoint``); ``path`` may be a model.

    Args:
        path: the file, checkpoint, or a keras.Model (returned as is).
        compile: also restore a Keras file's training configuration and optimizer (False: for inference).
    Raises:
        FileNotFoundError: no such file. InputFileError: a truncated or corrupt file (Keras itself reports a
        ``.keras`` file that is not a zip archive as "File not found").
    """
    import keras

    from face3d.prnet.prnet_checkpoint import find_checkpoint, load_prnet_checkpoint

    if isinstance(path, keras.Model):
        return path
    path = Path(path)
    if path.suffix.lower() not in (".keras", ".h5") and find_checkpoint(path) is not None:
        return load_prnet_checkpoint(path)
    if not path.is_file():
        raise FileNotFoundError(f"Keras model file not found: {path}")
    if path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):
        raise InputFileError(path, "truncated or corrupt .keras file (not a zip archive)")
    try:
        return keras.saving.load_model(path, compile=compile)
    except Exception as error:  # h5py, zipfile and Keras's deserialisation raise many types
        raise InputFileError(path, f"not a loadable Keras model ({type(error).__name__}: "
                                   f"{first_line(error)})") from None


def save_keras_model(model, path, extra_entries=None):
    """Save a Keras model to ``path`` (``.keras``) through a hidden ``.<stem>.partial.keras`` twin renamed onto it,
    so a reader never sees half a file (Keras picks the format from the suffix, hence not ``face3d.utils.atomic``'s
    ``.partial`` name). ``extra_entries`` (dict archive name -> str or bytes; Keras ignores other names) go into the
    archive before the rename, committed with the weights (training's state). Returns the Path.

    An OSError naming no file (a failed write or close: a full disk) or the twin is raised naming ``path``, as
    ``face3d.utils.atomic.atomic_file`` does."""
    path = Path(path)
    temp = path.with_name(f".{path.stem}.partial.keras")
    try:
        model.save(temp)
        if extra_entries:
            with zipfile.ZipFile(temp, "a") as archive:
                for name, data in extra_entries.items():
                    archive.writestr(name, data)
        os.replace(temp, path)
    except OSError as error:
        if names_no_file_but(error, temp):
            raise os_error_at(error, path) from error
        raise
    finally:
        temp.unlink(missing_ok=True)
    return path


def _static_dim(value):
    """An int for a fixed dimension, None for a dynamic one (None, -1, 0 or a symbolic name)."""
    return int(value) if isinstance(value, (int, np.integer)) and int(value) > 0 else None


def square_side(shape):
    """S of an NHWC image shape (batch, S, S, 3) with a fixed S (any batch); None for another rank or channel
    count, unequal sides or a dynamic one."""
    if len(shape) != 4 or _static_dim(shape[3]) != 3 or _static_dim(shape[1]) is None or shape[1] != shape[2]:
        return None
    return _static_dim(shape[1])


class Predictor:
    """Base class: batching and input checks around a backend's ``_run``.

    Attributes:
        backend: short name of the runtime ('keras', 'saved_model', 'frozen_graph', 'onnx').
        input_size: S, the side of the square input and output (pixels).
        batch_size: the model's fixed batch size, or None when it takes any batch.
    """

    backend = "base"

    def __init__(self, input_size, batch_size=None):
        self.input_size = int(input_size)
        self.batch_size = None if batch_size is None else int(batch_size)

    def _run(self, images):
        """Backend call on one (B, S, S, 3) float32 C-contiguous batch; returns an array-like (B, S, S, 3)."""
        raise NotImplementedError

    def predict(self, images):
        """Normalised position maps of normalised crops.

        A model with a fixed batch size (a ``.pb`` exported for batch 1) is fed in chunks of that size, the last
        one padded.

        Args:
            images: (N, S, S, 3) or (S, S, 3) float array in [0, 1] (RGB, image / 255 as in training).
        Returns:
            float32 (N, S, S, 3) (or (S, S, 3) for a single image) in [0, 1]: the position map in crop pixels
            divided by 1.1 x the map resolution.
        """
        images = np.asarray(images, dtype=np.float32)
        single = images.ndim == 3
        if single:
            images = images[None]
        s = self.input_size
        if images.ndim != 4 or images.shape[1:] != (s, s, 3):
            raise ValueError(f"images must have shape (N, {s}, {s}, 3) for this {self.backend} model, "
                             f"got {images.shape}")
        images = np.ascontiguousarray(images)
        b = self.batch_size
        if b is None or len(images) == b:
            out = np.asarray(self._run(images), dtype=np.float32)
        else:
            parts = []
            for start in range(0, len(images), b):
                chunk = images[start:start + b]
                n = len(chunk)
                if n < b:  # a fixed-batch graph accepts only full batches
                    chunk = np.concatenate([chunk, np.zeros((b - n, s, s, 3), np.float32)])
                parts.append(np.asarray(self._run(chunk), dtype=np.float32)[:n])
            out = np.concatenate(parts)
        if out.shape != images.shape:
            raise ValueError(f"the {self.backend} model returned shape {out.shape} for input {images.shape}")
        return out[0] if single else out

    def _check_output(self, path, shape):
        """Refuse, at load, a model whose output is not (batch, S, S, 3).

        Args:
            path: the model file, named by the error (None for an in-memory model).
            shape: the output's static shape as the model declares it (a dynamic dimension None, -1 or a name), or
                None for an unknown rank. With a dynamic rank, height, width or channel count, one call on a batch
                of zeros gives the shape instead.
        Raises:
            InputFileError: another output shape (a fixed batch other than the input's included), or that call
            failing.
        """
        s, batch = self.input_size, self.batch_size
        if shape is None or len(shape) == 4 and any(_static_dim(d) is None for d in shape[1:]):
            zeros = np.zeros((batch or 1, s, s, 3), np.float32)
            try:
                shape = np.shape(self._run(zeros))
            except Exception as error:  # whatever the runtime raises on a graph that cannot run
                raise InputFileError(path, f"fails on a batch of zeros ({type(error).__name__}: "
                                           f"{first_line(error)})") from None
            batch = len(zeros)
        dims = tuple(_static_dim(d) for d in shape)
        if len(dims) != 4 or dims[0] not in (None, batch) or dims[1:] != (s, s, 3):
            raise InputFileError(path, f"output has shape {dims}, expected (batch, {s}, {s}, 3) as its input")

    def __repr__(self):
        return f"{type(self).__name__}(input_size={self.input_size}, batch_size={self.batch_size})"


class KerasPredictor(Predictor):
    """A Keras 3 model (an in-memory ``keras.Model``, a ``.keras``/``.h5`` file such as ``train.py``'s
    ``best.keras``, or PRNet's TF1 checkpoint converted to it by name, as ``load_keras_model`` reads them), called
    in inference mode inside a ``tf.function`` traced once for a dynamic batch."""

    backend = "keras"

    def __init__(self, model):
        import tensorflow as tf
        path = Path(model) if isinstance(model, (str, Path)) else None
        if path is not None:
            model = load_keras_model(path)
        shape = tuple(model.inputs[0].shape)
        if square_side(shape) is None:
            raise InputFileError(path, f"input has shape {shape}, expected (batch, S, S, 3)")
        if len(model.outputs) != 1:
            raise InputFileError(path, f"the model has {len(model.outputs)} outputs, expected one")
        super().__init__(shape[1], _static_dim(shape[0]))
        self.model = model
        spec = tf.TensorSpec((self.batch_size, self.input_size, self.input_size, 3), tf.float32)
        self._function = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        self._check_output(path, tuple(model.outputs[0].shape))

    def _run(self, images):
        return self._function(images).numpy()


class SavedModelPredictor(Predictor):
    """A TensorFlow SavedModel folder (holding ``saved_model.pb``, as Keras 3's ``model.export`` writes); runs its
    ``serving_default`` signature (one image input, the output named ``output`` or the only one). Unless
    ``trust_model``, its op types are checked before it is loaded (``graph_trust.check_saved_model``)."""

    backend = "saved_model"

    def __init__(self, path, trust_model=False):
        path = Path(path)
        if not (path / "saved_model.pb").is_file():  # told before TensorFlow is needed: it may not be installed
            raise FileNotFoundError(f"not a SavedModel folder (no saved_model.pb): {path}")
        import tensorflow as tf
        if not trust_model:
            check_saved_model(path)
        try:
            self._loaded = tf.saved_model.load(str(path))
        except Exception as error:  # TensorFlow's loader: IndexError for truncated variables, NotFoundError, ...
            raise InputFileError(path, f"not a loadable SavedModel ({type(error).__name__}: "
                                       f"{first_line(error)})") from None
        signatures = getattr(self._loaded, "signatures", {})
        if "serving_default" not in signatures:
            raise InputFileError(path, f"the SavedModel has no 'serving_default' signature (has {sorted(signatures)})")
        function = signatures["serving_default"]
        inputs = function.structured_input_signature[1]
        if len(inputs) != 1:
            raise InputFileError(path, f"expected one input in 'serving_default', got {sorted(inputs)}")
        (self._input_name, spec), = inputs.items()
        outputs = function.structured_outputs
        self._output_name = "output" if "output" in outputs else (next(iter(outputs)) if len(outputs) == 1
                                                                    else None)
        if self._output_name is None:
            raise InputFileError(path, f"several outputs {sorted(outputs)} and none named 'output'")
        shape = tuple(spec.shape)
        if square_side(shape) is None:
            raise InputFileError(path, f"input {self._input_name!r} has shape {shape}, expected (batch, S, S, 3)")
        super().__init__(shape[1], _static_dim(shape[0]))
        self._function = function
        output = function.structured_outputs[self._output_name].shape
        self._check_output(path, None if output.rank is None else tuple(output))

    def _run(self, images):
        return self._function(**{self._input_name: images})[self._output_name].numpy()


class FrozenGraphPredictor(Predictor):
    """A frozen GraphDef (``.pb``) pruned to ``input_name:0 -> output_name:0``: one float32 placeholder (``input``)
    and one output node (``output``), the form ``face3d.prnet.export`` writes for Ascend ATC. Unless
    ``trust_model``, its op types are checked before it is imported (``graph_trust.check_graph_def``)."""

    backend = "frozen_graph"

    def __init__(self, path, input_name="input", output_name="output", trust_model=False):
        import tensorflow as tf
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"frozen graph not found: {path}")
        graph_def = tf.compat.v1.GraphDef()
        try:
            graph_def.ParseFromString(path.read_bytes())
        except Exception as exc:  # protobuf's DecodeError is not importable without protobuf internals
            raise InputFileError(path, f"not a binary GraphDef ({type(exc).__name__}: {first_line(exc)})") from None
        if not trust_model:
            check_graph_def(graph_def, path)
        nodes = {node.name: node for node in graph_def.node}
        for role, name in (("input", input_name), ("output", output_name)):
            if name not in nodes:
                raise InputFileError(path, f"no {role} node named {name!r} in the graph")
        dims = [d.size for d in nodes[input_name].attr["shape"].shape.dim]
        if square_side(dims) is None:
            raise InputFileError(path, f"input node {input_name!r} has shape {dims}, expected (batch, S, S, 3)")

        def import_graph():
            tf.compat.v1.import_graph_def(graph_def, name="")

        wrapped = tf.compat.v1.wrap_function(import_graph, [])
        output = wrapped.graph.as_graph_element(f"{output_name}:0")
        self._function = wrapped.prune(wrapped.graph.as_graph_element(f"{input_name}:0"), output)
        self._to_tensor = tf.convert_to_tensor  # a pruned function takes tensors only
        super().__init__(dims[1], _static_dim(dims[0]))
        self._check_output(path, None if output.shape.rank is None else tuple(output.shape))

    def _run(self, images):
        return self._function(self._to_tensor(images)).numpy()


class OnnxPredictor(Predictor):
    """An ONNX model run by ONNX Runtime on the CPU (or ``providers``); its input and output are taken by name when
    they are ``input`` and ``output``, else the model's first ones.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (None: ONNX Runtime's default, all cores).
        providers: execution providers (default: CPUExecutionProvider).
        spinning: idle intra-op threads spin waiting for the next operator (ONNX Runtime's default: the lowest
            latency when the cores are the model's alone). False puts them to sleep, which leaves the cycles to
            the other threads of a process that shares its cores with the model, such as ``face3d serve``'s
            decoding and post-processing.
        memory_pattern: let ONNX Runtime plan the memory of each input shape it meets and keep the plan
            (its default, for a fixed shape). False for calls of varying batch sizes, such as ``face3d serve``'s
            dynamic batches: every new size would keep another plan's worth of memory (about 230 MiB more on
            resfcn256 width 16 over batch sizes 1-8, at the same speed).
    """

    backend = "onnx"

    def __init__(self, path, threads=None, providers=None, spinning=True, memory_pattern=True):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ImportError("running an .onnx model needs ONNX Runtime: pip install onnxruntime") from exc
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.enable_mem_pattern = bool(memory_pattern)
        try:
            self._session = ort.InferenceSession(str(path), options,
                                                 providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as error:  # ONNX Runtime's errors (InvalidProtobuf, Fail, ...) derive from Exception only
            raise InputFileError(path, f"not a loadable ONNX model ({first_line(error)})") from None
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        self._input = next((i for i in inputs if i.name == "input"), inputs[0])
        output = next((o for o in outputs if o.name == "output"), outputs[0])
        self._output = output.name
        shape = list(self._input.shape)  # a dynamic dimension is a name or None
        if square_side(shape) is None:  # channels-first (a PyTorch export) and a dynamic side included
            raise InputFileError(path, f"input {self._input.name!r} has shape {shape}, expected NHWC (batch, S, S, 3)")
        super().__init__(shape[1], _static_dim(shape[0]))
        self._check_output(path, output.shape)

    def _run(self, images):
        return self._session.run([self._output], {self._input.name: images})[0]


def _builtin_resolver(interpreter_class):
    """The op resolver of ``interpreter_class``'s module that applies no default delegate (XNNPACK)."""
    import importlib

    module = importlib.import_module(interpreter_class.__module__)
    return module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES


class TFLitePredictor(Predictor):
    """A TensorFlow Lite model (``.tflite``: float32, float16 or full-integer int8) run by LiteRT's interpreter
    (``ai_edge_litert``) when installed, else by ``tf.lite.Interpreter`` (the same runtime, deprecated in
    TensorFlow).

    An int8/uint8 input is quantized as q = clip(round(x / scale) + zero_point) and an integer output dequantized
    as (q - zero_point) * scale, with the model's own parameters, so every variant takes and returns floats.

    The file is read once and its bytes given to the interpreter, which verifies a model given as bytes (every offset
    of its flatbuffer within them: ``FlatBufferModel::VerifyAndBuildFromBuffer``) but not one it maps from a path
    (TensorFlow's; LiteRT's does): a truncated file is one error, not a read past its end that crashes the process.
    The bytes stay in the process's private memory, the model's size (53 MB for the float32 PRNet), where a mapped
    file's pages could be shared and dropped.

    Args:
        path: the ``.tflite`` file.
        threads: interpreter threads (None: its default).
    """

    backend = "tflite"

    def __init__(self, path, threads=None):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"TFLite model not found: {path}")
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            import tensorflow as tf
            Interpreter = tf.lite.Interpreter  # noqa: N806 (a class)
        model = path.read_bytes()
        if model[4:8] != b"TFL3":  # the flatbuffer's file identifier, after the root table's offset
            raise InputFileError(path, f"not a TFLite model (bytes 4-7 are {model[4:8]!r}, not its identifier b'TFL3')")
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
                self._interpreter = Interpreter(model_content=model, num_threads=threads)
                try:
                    self._interpreter.allocate_tensors()
                except RuntimeError as exc:
                    # XNNPACK (the default CPU delegate) refuses int8 layers whose requantization scale is out of
                    # its range (a near-constant activation); the built-in kernels run them
                    if _XNNPACK_DELEGATE not in str(exc):
                        raise
                    logger.warning("%s: %s; running without the XNNPACK delegate", path, first_line(exc))
                    self._interpreter = Interpreter(model_content=model, num_threads=threads,
                                                    experimental_op_resolver_type=_builtin_resolver(Interpreter))
                    self._interpreter.allocate_tensors()
        except ValueError as exc:  # the verifier or the reader refuses the flatbuffer
            raise InputFileError(path, f"truncated or corrupt .tflite file ({first_line(exc)})") from None
        except RuntimeError as exc:  # the interpreter has no kernel for an op (TensorFlow's, Flex), or one fails
            raise InputFileError(path, f"not a TFLite model this interpreter runs ({first_line(exc)})") from None
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        shape = tuple(_static_dim(d) for d in self._input["shape_signature"])  # -1 for a dynamic dimension: None
        if square_side(shape) is None:
            raise InputFileError(path, f"input has shape {shape}, expected (batch, S, S, 3) with a fixed S")
        super().__init__(shape[1], self._input["shape"][0])  # a dynamic batch is allocated, and run, as batch 1
        self._check_output(path, [int(d) for d in self._output["shape_signature"]])

    def _run(self, images):
        scale, zero_point = self._input["quantization"]
        dtype = np.dtype(self._input["dtype"])
        if dtype.kind in "iu":
            limits = np.iinfo(dtype)
            images = np.clip(np.round(images / scale) + zero_point, limits.min, limits.max).astype(dtype)
        self._interpreter.set_tensor(self._input["index"], images)
        self._interpreter.invoke()
        out = self._interpreter.get_tensor(self._output["index"])
        scale, zero_point = self._output["quantization"]
        if out.dtype.kind in "iu":
            out = (out.astype(np.float32) - zero_point) * np.float32(scale)
        return out


def load_predictor(model, trust_model=False, **options):
    """A predictor for a saved model, the backend chosen by the path: ``*.keras`` / ``*.h5`` and PRNet's TF1
    checkpoint (``KerasPredictor``), a folder holding ``saved_model.pb`` (``SavedModelPredictor``), ``*.pb``
    (``FrozenGraphPredictor``), ``*.onnx`` (``OnnxPredictor``), ``*.tflite`` (``TFLitePredictor``). Each backend
    checks the input and output shapes when it loads the model.

    Args:
        model: path (str or Path) to a ``.keras``/``.h5`` file, PRNet's TF1 checkpoint (prefix, ``.index`` or its
            folder), a SavedModel folder, a ``.pb`` frozen graph, an ``.onnx`` or a ``.tflite`` file; an in-memory
            ``keras.Model``; or a Predictor (returned as is).
        trust_model: run a ``.pb`` or SavedModel whatever ops its graph holds (default: refuse op types outside
            ``graph_trust.INFERENCE_TF_OPS``, such as file writes). Keras files load in Keras's safe mode, and
            checkpoints, ONNX and TFLite runtimes have no file ops, so they need no check.
        options: backend options (``input_name``/``output_name`` for ``.pb``, ``threads``/``providers``/
            ``spinning``/``memory_pattern`` for ONNX, ``threads`` for TFLite).
    Returns:
        Predictor.
    Raises:
        FileNotFoundError: the path does not exist. ValueError: unknown file type; InputFileError: an unreadable
        model file, or one whose input or output is not (batch, S, S, 3); UntrustedModelError: a graph with ops
        outside the list.
    """
    if isinstance(model, Predictor):
        return model
    if not isinstance(model, (str, Path)):
        if hasattr(model, "inputs") and callable(model):
            return KerasPredictor(model)
        raise ValueError(f"model must be a path, a keras.Model or a Predictor, got {type(model).__name__}")
    from face3d.prnet.prnet_checkpoint import find_checkpoint

    path = Path(model)
    suffix = path.suffix.lower()
    if suffix not in (".keras", ".h5", ".pb", ".onnx", ".tflite") and find_checkpoint(path) is not None:
        return KerasPredictor(path)
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    if path.is_dir():
        return SavedModelPredictor(path, trust_model=trust_model)
    if suffix in (".keras", ".h5"):
        return KerasPredictor(path)
    if suffix == ".pb":
        return FrozenGraphPredictor(path, trust_model=trust_model, **options)
    if suffix == ".onnx":
        return OnnxPredictor(path, **options)
    if suffix == ".tflite":
        return TFLitePredictor(path, **options)
    raise ValueError(f"{path}: unknown model type {suffix!r}; expected .keras, .h5, .pb, .onnx, .tflite, a "
                     "SavedModel folder or a TF1 checkpoint (PREFIX.index)")
