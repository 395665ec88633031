"""PRNet's official TF1 checkpoint (``Data/net-data/256_256_resfcn256_weight``) as our Keras ``resfcn256``.

Tensors map one to one by name onto the Keras layers (``checkpoint_names``, checked by ``match_checkpoint``);
optimizer entries are ignored (``network_tensors``). A converted ``.keras`` file is marked as giving maps in
PRNet's UV layout (``PRNET_UV_LAYOUT_ENTRY``), so that it is not read with the packaged uv-data.
"""
import logging
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from face3d.contract import INPUT_SIZE
from face3d.utils.errors import InputFileError, first_line

__all__ = ["CHECKPOINT_SCOPE", "BATCH_NORM_LEAVES", "PRNET_UV_LAYOUT_ENTRY", "find_checkpoint", "checkpoint_prefix",
           "has_prnet_uv_layout", "uv_data_for_model", "checkpoint_names",
           "network_tensors", "match_checkpoint", "load_prnet_checkpoint", "convert_checkpoint"]

logger = logging.getLogger(__name__)

CHECKPOINT_SCOPE = "resfcn256"
# tf.contrib.layers.batch_norm's variables, in the order of Keras's BatchNormalization weights
BATCH_NORM_LEAVES = ("gamma", "beta", "moving_mean", "moving_variance")
# the archive entry (Keras ignores names it does not know) marking a .keras file converted from PRNet's checkpoint
PRNET_UV_LAYOUT_ENTRY = "face3d_prnet_uv_layout.txt"
_CHECKPOINT_LINE = re.compile(r'^model_checkpoint_path:\s*"(.*)"\s*$', re.MULTILINE)


def find_checkpoint(path):
    """The prefix of the TF1 checkpoint ``path`` names, or None when ``path`` is no checkpoint.

    Accepted: the prefix itself (``.../256_256_resfcn256_weight``), its ``.index`` or ``.data-*`` file, or a
    folder holding one checkpoint (the one its ``checkpoint`` file names, else its only ``*.index``). A folder
    with ``saved_model.pb`` is a SavedModel, not a checkpoint. Needs no TensorFlow.

    Returns:
        str prefix (``prefix + '.index'`` exists) or None.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return None
        state = path / "checkpoint"
        named = _CHECKPOINT_LINE.search(state.read_text()) if state.is_file() else None
        if named:
            prefix = Path(named.group(1))
            prefix = prefix if prefix.is_absolute() else path / prefix
        else:
            indexes = sorted(path.glob("*.index"))
            if len(indexes) > 1:
                raise ValueError(f"{path}: several checkpoints ({', '.join(p.name for p in indexes)}); "
                                 "give the prefix of one")
            if not indexes:
                return None
            prefix = indexes[0].with_suffix("")
    elif path.suffix == ".index":
        prefix = path.with_suffix("")
    elif ".data-" in path.name:
        prefix = path.with_name(path.name.split(".data-")[0])
    else:
        prefix = path
    return str(prefix) if prefix.with_name(prefix.name + ".index").is_file() else None


def checkpoint_prefix(path):
    """``find_checkpoint`` that raises FileNotFoundError naming ``path`` when it is no checkpoint."""
    prefix = find_checkpoint(path)
    if prefix is None:
        raise FileNotFoundError(f"no TF1 checkpoint at {path} (expected PREFIX, PREFIX.index or a folder holding "
                                "PREFIX.index and PREFIX.data-00000-of-00001)")
    return prefix


def has_prnet_uv_layout(path):
    """Whether ``path`` is a ``.keras`` file ``convert_checkpoint`` wrote (its archive holds
    ``PRNET_UV_LAYOUT_ENTRY``): a model giving maps in PRNet's UV layout. False for any other path, a missing file
    and a file that is no zip archive (loading the model reports those)."""
    path = Path(path)
    if path.suffix.lower() != ".keras":
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return PRNET_UV_LAYOUT_ENTRY in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def uv_data_for_model(model, uv_data=None):
    """The uv-data that reads a model's maps: ``uv_data`` when given; for PRNet's released checkpoint (a path
    ``find_checkpoint`` recognises), PRNet's ``Data/uv-data`` beside its ``Data/net-data`` folder, since its maps
    are in PRNet's UV layout, which the packaged keypoint and face indices misread; none for a ``.keras`` file
    converted from it (``has_prnet_uv_layout``: no folder to look beside); otherwise the packaged uv-data of the
    embedded default model (``face3d.resources.default_uv_data_dir``).

    Args:
        model: a model path (or any object ``predictor.load_predictor`` takes). uv_data: a folder, a UVData or None.
    Returns:
        ``uv_data`` as given, or a Path.
    Raises:
        ValueError: PRNet's checkpoint without a ``uv-data`` folder beside its folder, or a converted ``.keras``
        file, without ``uv_data``.
    """
    from face3d.resources import default_uv_data_dir

    if uv_data is not None:
        return uv_data
    is_path = isinstance(model, (str, os.PathLike))
    if is_path and has_prnet_uv_layout(model):
        raise ValueError(f"{model}: converted from PRNet's checkpoint, it gives maps in PRNet's UV layout: give "
                         "PRNet's uv-data (--uv-data DIR)")
    prefix = find_checkpoint(model) if is_path else None
    if prefix is None:
        return default_uv_data_dir()
    beside = Path(prefix).parent.parent / "uv-data"
    if not beside.is_dir():
        raise ValueError(f"{model}: PRNet's checkpoint gives maps in PRNet's UV layout, and no uv-data folder lies "
                         f"beside {Path(prefix).parent} (as Data/uv-data beside Data/net-data): give PRNet's "
                         "uv-data (--uv-data DIR)")
    return beside


def _unique_scope(base, index):
    """TF1's uniquified scope name of the ``index``-th (0-based) scope called ``base``: base, base_1, base_2..."""
    return base if index == 0 else f"{base}_{index}"


def checkpoint_names(layer_names):
    """The TF1 checkpoint name of every weight of a ``resfcn256`` (``model.build_resfcn256``).

    The authors' graph (``tf.contrib.layers`` inside ``variable_scope('resfcn256')``) names its tensors
    ``resfcn256/<scope>/weights`` and ``.../BatchNorm/{gamma,beta,moving_mean,moving_variance}``; the scopes are
    uniquified in creation order (``Conv``, ``resBlock``, ``resBlock_1`` ... ``resBlock_9``, ``Conv2d_transpose``
    ... ``Conv2d_transpose_16``), and inside a block ``shortcut`` (when present), ``Conv``, ``Conv_1``, ``Conv_2``
    (no batch norm) and the block's ``BatchNorm``. Conv kernels are HWIO and transposed-conv kernels
    (h, w, out, in), the layouts of Keras's Conv2D / Conv2DTranspose, so tensors map one to one.

    Args:
        layer_names: the Keras model's layer names (decide which blocks have a projection shortcut).
    Returns:
        dict TF1 name -> (Keras layer name, weight attribute: ``kernel`` or one of ``BATCH_NORM_LEAVES``).
    """
    from face3d.prnet.model import DECODER_WIDTHS, ENCODER_WIDTHS

    layer_names = set(layer_names)
    names = {}

    def conv(scope, conv_layer, bn_layer=None):
        names[f"{scope}/weights"] = (conv_layer, "kernel")
        if bn_layer is not None:
            batch_norm(f"{scope}/BatchNorm", bn_layer)

    def batch_norm(scope, bn_layer):
        for leaf in BATCH_NORM_LEAVES:
            names[f"{scope}/{leaf}"] = (bn_layer, leaf)

    conv(f"{CHECKPOINT_SCOPE}/Conv", "conv0", "conv0_bn")
    for k in range(1, len(ENCODER_WIDTHS) + 1):
        scope, block = f"{CHECKPOINT_SCOPE}/{_unique_scope('resBlock', k - 1)}", f"block{k}"
        if f"{block}_shortcut" in layer_names:
            conv(f"{scope}/shortcut", f"{block}_shortcut")
        conv(f"{scope}/Conv", f"{block}_conv1", f"{block}_bn1")
        conv(f"{scope}/Conv_1", f"{block}_conv2", f"{block}_bn2")
        conv(f"{scope}/Conv_2", f"{block}_conv3")
        batch_norm(f"{scope}/BatchNorm", f"{block}_bn")
    for k in range(1, len(DECODER_WIDTHS) + 1):
        conv(f"{CHECKPOINT_SCOPE}/{_unique_scope('Conv2d_transpose', k - 1)}", f"deconv{k}", f"deconv{k}_bn")
    return names


def network_tensors(shapes):
    """The network's entries of a checkpoint listing, without the optimizer's.

    An optimizer entry is outside the ``resfcn256/`` scope (``beta1_power``, ``global_step``) or a slot
    ``<tensor>/<slot>`` of another entry (Adam's ``.../weights/Adam`` and ``Adam_1``, Momentum's ...).

    Args:
        shapes: dict name -> shape (``tf.train.list_variables`` as a dict).
    Returns:
        dict name -> tuple shape, sorted by name.
    """
    names = set(shapes)
    network = {}
    for name, shape in shapes.items():
        if name.startswith(f"{CHECKPOINT_SCOPE}/") and name.rsplit("/", 1)[0] not in names:
            network[name] = tuple(int(d) for d in shape)
    return dict(sorted(network.items()))


def match_checkpoint(shapes, model):
    """Map a checkpoint's network tensors onto a Keras ``resfcn256`` by name, checking every shape.

    Args:
        shapes: dict checkpoint name -> shape (all entries; optimizer entries are ignored).
        model: keras.Model from ``build_resfcn256``.
    Returns:
        dict TF1 name -> (Keras layer name, weight attribute), one entry per network tensor.
    Raises:
        ValueError naming the tensors missing from the checkpoint, those it has and the model lacks, and those
        of another shape (with both shapes).
    """
    network = network_tensors(shapes)
    names = checkpoint_names(layer.name for layer in model.layers)
    missing = sorted(set(names) - set(network))
    extra = sorted(set(network) - set(names))
    wrong = []
    for name in sorted(set(names) & set(network)):
        layer, attribute = names[name]
        expected = tuple(int(d) for d in getattr(model.get_layer(layer), attribute).shape)
        if network[name] != expected:
            wrong.append(f"{name} {list(network[name])} (model {layer}.{attribute} {list(expected)})")
    problems = [f"{label}: {', '.join(items[:5])}" + (f" and {len(items) - 5} more" if len(items) > 5 else "")
                for label, items in (("missing", missing), ("not in the model", extra), ("shape differs", wrong))
                if items]
    if problems:
        raise ValueError("checkpoint does not fit resfcn256 - " + "; ".join(problems))
    return names


def load_prnet_checkpoint(path, input_size=INPUT_SIZE):
    """Build a Keras ``resfcn256`` holding the weights of a PRNet TF1 checkpoint.

    The base width is read from ``resfcn256/Conv/weights`` (16 in the official model); weights are copied by
    name (``match_checkpoint``), so a missing, extra or misshaped network tensor is an error naming it.

    Args:
        path: checkpoint prefix, its ``.index`` / ``.data-*`` file or its folder (``find_checkpoint``).
        input_size: S of the built model (PRNet: 256; the weights do not depend on it).
    Returns:
        keras.Model (``build_resfcn256(input_size, width)``), weights from the checkpoint.
    Raises:
        FileNotFoundError: no checkpoint, or its data file is missing. InputFileError naming the ``.index`` or
        ``.data-*`` file: a truncated or corrupt one; naming the ``.index`` file: network tensors that do not fit
        (``match_checkpoint``'s message).
    """
    import tensorflow as tf

    from face3d.prnet.model import build_resfcn256

    prefix = checkpoint_prefix(path)
    data_files = sorted(Path(prefix).parent.glob(f"{Path(prefix).name}.data-*"))
    if not data_files:
        raise FileNotFoundError(f"{prefix}.index has no data file beside it ({Path(prefix).name}.data-00000-of-"
                                "00001 holds the weights)")
    try:
        reader = tf.train.load_checkpoint(prefix)
    except tf.errors.OpError as error:
        raise InputFileError(Path(f"{prefix}.index"), "unreadable checkpoint index (truncated or corrupt?): "
                                                      f"{first_line(error)}") from None
    shapes = reader.get_variable_to_shape_map()
    first = f"{CHECKPOINT_SCOPE}/Conv/weights"
    if first not in shapes or len(shapes[first]) != 4:
        raise ValueError(f"{prefix}: no 4-D {first}: not a PRNet resfcn256 checkpoint")
    width = int(shapes[first][3])
    model = build_resfcn256(input_size=input_size, width=width)
    try:
        names = match_checkpoint(shapes, model)
    except ValueError as error:
        raise InputFileError(Path(f"{prefix}.index"), str(error)) from None
    data_name = data_files[0] if len(data_files) == 1 else Path(f"{prefix}.data-*")
    for name, (layer, attribute) in names.items():
        try:  # a short file raises IndexError, changed bytes a checksum OpError
            value = reader.get_tensor(name)
        except (IndexError, tf.errors.OpError) as error:
            raise InputFileError(data_name, f"unreadable checkpoint data (truncated or corrupt?): "
                                            f"{first_line(error)}") from None
        getattr(model.get_layer(layer), attribute).assign(np.asarray(value, dtype=np.float32))
    logger.info("read %d network tensors of %s (width %d; %d optimizer entries ignored)", len(names), prefix,
                width, len(shapes) - len(names))
    return model


def convert_checkpoint(path, output, input_size=INPUT_SIZE):
    """Convert a PRNet TF1 checkpoint to a Keras ``.keras`` file (written atomically), marked with
    ``PRNET_UV_LAYOUT_ENTRY`` (its maps are read with PRNet's uv-data, ``uv_data_for_model``).

    Args:
        path: checkpoint prefix, ``.index`` file or folder. output: the ``.keras`` file.
        input_size: S of the saved model.
    Returns:
        (Path of the written file, the keras.Model).
    """
    from face3d.prnet.predictor import save_keras_model

    output = Path(output)
    if output.suffix != ".keras":
        raise ValueError(f"output must be a .keras file, got {output}")
    model = load_prnet_checkpoint(path, input_size)
    output.parent.mkdir(parents=True, exist_ok=True)
    marker = "maps in PRNet's UV layout: read them with PRNet's Data/uv-data\n"
    return save_keras_model(model, output, {PRNET_UV_LAYOUT_ENTRY: marker}), model
