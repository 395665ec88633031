"""PRNet training loop: configuration, resumable epochs, validation NME, checkpoints and logs.

``TrainConfig`` holds the settings; its defaults are the paper's recipe (Feng et al. 2018): Adam, learning rate
1e-4 halved every 5 epochs (``learning_rate_at``, 0-based epochs), batch 16. The loss is ``metrics.weighted_mse``
of the normalised map (Keras's built-in MSE with the weight mask as per-pixel sample weight). ``train`` lists the
files written to ``output`` and how a killed run resumes; README "Training PRNet" gives the command line.
"""
import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from face3d.contract import check_input_size, map_scale
from face3d.prnet import metrics
from face3d.prnet.data import AugmentConfig, epoch_order, make_dataset
from face3d.prnet.predictor import load_keras_model, save_keras_model
from face3d.prnet.run_records import STATE_ENTRY, ScalarLog, read_csv_rows, read_state, write_csv, write_json
from face3d.prnet.samples import H5Samples, check_samples, open_h5, split_train_val
from face3d.prnet.uv_weights import reduced_indices
from face3d.resources import default_uv_data_dir
from face3d.trainset.pack import read_label_file
from face3d.trainset.uv_layout import load_uv_data
from face3d.utils.atomic import output_lock
from face3d.utils.errors import InputFileError
from face3d.utils.progress import Progress

__all__ = ["TrainConfig", "NonFiniteLossError", "learning_rate_at", "load_samples", "evaluate", "train"]

logger = logging.getLogger(__name__)

# config.json's mark of a run whose targets below the data's resolution hold each keypoint's own value at its pixel
# (uv_weights.resample_map); an earlier release's run there learnt, and measured, most keypoints one UV pixel off
TARGETS_VERSION = 2
# settings a resumed run must share with the run it continues
_RESUME_KEYS = ("train_list", "h5", "val_list", "val_fraction", "uv_data", "batch_size", "lr", "lr_decay_epochs",
                "lr_decay", "width", "input_size", "seed", "augment", "bn_momentum")
# settings naming files or folders: recorded and compared as resolved paths, however they were spelled
_PATH_KEYS = ("train_list", "h5", "val_list", "uv_data")


@dataclass
class TrainConfig:
    """Every setting of a training run (defaults: the paper's recipe; ``train.py --help`` documents each).

    Attributes:
        train_list: ``trainDataLabel.txt`` (exclusive with h5); an HDF5 pack is also read, told by its signature.
        h5: HDF5 pack (exclusive with train_list).
        val_list: validation label file or HDF5 pack (told by its signature, not its name); None -> a split of
            val_fraction of the training sources.
        val_fraction: share of source faces held out for validation, in [0, 1) (0: none); a face's views, rotated
            and mirrored copies stay on its side (``samples.group_key``).
        uv_data: PRNet's ``uv-data`` folder (``face3d.trainset.uv_layout.load_uv_data``); None -> ``uv-data`` next to
            the label file or pack, else next to the label file a pack was made from, else the packaged default
            (``face3d.resources.default_uv_data_dir``); the run's ``config.json`` records the folder used.
        output: folder for checkpoints, the best model, the CSV and TensorBoard logs.
        epochs: total number of epochs (a resumed run stops at the same total).
        batch_size: global batch size (split across GPUs under MirroredStrategy).
        lr, lr_decay, lr_decay_epochs: lr(e) = lr * lr_decay ** (e // lr_decay_epochs).
        width: the network's base channel count (16 = the paper).
        input_size: network input side S (multiple of 32, at most the data's resolution R); None -> R.
        bn_momentum: batch-normalisation moving-average momentum.
        seed: seeds weights, split, order and augmentation; in [0, 2**32).
        augment: AugmentConfig.
        resume: continue the run in output.
        init_from: start from these weights instead of random ones (a ``.keras`` model or PRNet's TF1 checkpoint
            prefix / ``.index`` / folder, ``predictor.load_keras_model``); same width, any input size. Ignored on
            resume (the run continues from its own last epoch).
        skip_bad: drop bad samples with a warning instead of stopping.
        mixed_precision: float16 compute on GPU (ignored with a warning on CPU).
        deterministic: enable TensorFlow op determinism (bitwise reproducible, somewhat slower).
        keep_checkpoints: also keep ``checkpoints/epoch_NNN.keras`` for every epoch.
        run_eagerly: run the training step eagerly instead of as a compiled graph (debugging; also the fastest
            choice for a handful of steps, since tracing the 160-layer network takes longer than a few steps).
        verbose: 0 silent; 1 a progress bar over each epoch's steps (``face3d.utils.progress.Progress`` on
            stderr: redrawn in place on a terminal, else a plain line every 30 s and one at the end); 2 Keras's one
            line per epoch on stdout instead; 1 and 2 also show a bar over the sample check.
    """
    train_list: str = None
    h5: str = None
    val_list: str = None
    val_fraction: float = 0.05
    uv_data: str = None
    output: str = "output/prnet_train"
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-4
    lr_decay: float = 0.5
    lr_decay_epochs: int = 5
    width: int = 16
    input_size: int = None
    bn_momentum: float = 0.99
    seed: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    resume: bool = False
    init_from: str = None
    skip_bad: bool = False
    mixed_precision: bool = False
    deterministic: bool = False
    keep_checkpoints: bool = False
    run_eagerly: bool = False
    verbose: int = 1

    def to_json(self):
        """The config as a JSON-compatible dict (augment nested)."""
        values = dataclasses.asdict(self)
        values["augment"] = {k: list(v) if isinstance(v, tuple) else v for k, v in values["augment"].items()}
        return values


class NonFiniteLossError(ValueError):
    """Training produced a non-finite loss or non-finite weights; the message names the epoch, the batch and its
    samples. Nothing of that epoch was written."""


def learning_rate_at(config, epoch):
    """Learning rate of 0-based ``epoch``: lr * lr_decay ** (epoch // lr_decay_epochs)."""
    return float(config.lr * config.lr_decay ** (epoch // config.lr_decay_epochs))


def _resolved(path):
    """``path`` (str or Path) resolved from the current folder, as a str; None stays None."""
    return None if path is None else str(Path(path).resolve())


def _check_config(config):
    if (config.train_list is None) == (config.h5 is None):
        raise ValueError("give exactly one of train_list (trainDataLabel.txt) and h5 (HDF5 pack)")
    for name in ("epochs", "batch_size", "lr_decay_epochs", "width"):
        if int(getattr(config, name)) < 1:
            raise ValueError(f"{name} must be a positive integer, got {getattr(config, name)}")
    if not (math.isfinite(config.lr) and config.lr > 0) or not 0 < config.lr_decay <= 1:
        raise ValueError(f"lr must be finite and > 0 and lr_decay in (0, 1], got {config.lr} and {config.lr_decay}")
    if not 0 <= config.bn_momentum < 1:  # outside, the moving variance turns negative: a network answering NaN
        raise ValueError(f"bn_momentum must be in [0, 1), got {config.bn_momentum}")
    if not 0 <= config.val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1) (0: no validation), got {config.val_fraction}")
    if not 0 <= config.seed < 2 ** 32:  # what numpy's global seed (keras.utils.set_random_seed) takes
        raise ValueError(f"seed must be in [0, 2**32), got {config.seed}")
    if config.input_size is not None:
        check_input_size(config.input_size)


def _open_source(path, skip_bad, progress):
    """The samples of a ``train_list`` / ``val_list`` file: an HDF5 pack (``open_h5``) when the file holds HDF5's
    signature b"\\x89HDF\\r\\n\\x1a\\n" (``h5py.is_hdf5``), whatever its name ends with, else a label file
    (``check_samples``, with a progress bar when ``progress``)."""
    import h5py
    if h5py.is_hdf5(path):
        return open_h5(path, skip_bad=skip_bad)
    pairs = read_label_file(path)
    if not pairs:
        raise InputFileError(path, "no samples listed")
    return check_samples(pairs, skip_bad=skip_bad, progress=progress, source=path)


def _uv_data_folder(config, samples):
    """The run's uv-data folder: ``config.uv_data`` when given; else ``uv-data/`` beside the label file or pack,
    else beside the label file the pack was made from (``H5Samples.label_file``), else the packaged default
    (``default_uv_data_dir``, the embedded default model's, with a warning: maps of another model, or made with
    other masks, would train with the wrong loss weights and validate with the wrong keypoints). The folder used
    is logged at INFO.

    Args:
        config: TrainConfig.
        samples: the training source's FileSamples or H5Samples (before the validation split).
    Returns:
        absolute Path.
    """
    if config.uv_data is not None:
        folder = Path(config.uv_data).resolve()
        logger.info("uv-data: %s", folder)
        return folder
    sources = [Path(config.train_list or config.h5).resolve()]
    if isinstance(samples, H5Samples) and samples.label_file is not None:
        sources.append(Path(samples.label_file))
    for source in sources:
        folder = source.parent / "uv-data"
        if folder.is_dir():
            logger.info("uv-data: %s (beside %s)", folder, source)
            return folder
    folder = Path(default_uv_data_dir())
    logger.warning("no uv-data folder beside %s: using the packaged one (%s), which fits only maps of the embedded "
                   "default model; pass --uv-data for others", " or ".join(map(str, sources)), folder)
    return folder


def load_samples(config):
    """Read and check the training and validation samples (before any TensorFlow work).

    Returns:
        (train samples, val samples or None, the uv-data folder: an absolute Path, ``_uv_data_folder``).
    Raises:
        InputFileError / FileNotFoundError naming the offending file.
    """
    if config.h5 is not None:
        samples = open_h5(config.h5, skip_bad=config.skip_bad)
    else:
        samples = _open_source(config.train_list, config.skip_bad, config.verbose > 0)
    if config.val_list:
        train, val = samples, _open_source(config.val_list, config.skip_bad, config.verbose > 0)
        if val.resolution != train.resolution:
            raise ValueError(f"{config.val_list}: resolution {val.resolution}, training data has {train.resolution}")
    elif config.val_fraction > 0:
        train_idx, val_idx = split_train_val(samples.names, config.val_fraction, config.seed)
        train, val = samples.subset(train_idx), samples.subset(val_idx)
    else:
        train, val = samples, None
    if len(train) < config.batch_size:
        raise ValueError(f"{len(train)} training samples is fewer than one batch of {config.batch_size}")
    return train, val, _uv_data_folder(config, samples)


def evaluate(predict, samples, uv, batch_size, input_size):
    """Validation loss and NME of a model on ``samples`` (no augmentation).

    Args:
        predict: callable images (B, S, S, 3) float32 tensor -> normalised maps (B, S, S, 3) tensor (the model in
            inference mode).
        samples, uv, batch_size, input_size: as for ``make_dataset``.
    Returns:
        (weighted MSE of the normalised maps, mean 2D NME of the 68 keypoints read at their pixels of the S maps,
        ``uv_weights.reduced_indices``), floats.
    """
    kpt_ind = reduced_indices(uv.uv_kpt_ind, uv.resolution, input_size or samples.resolution)
    dataset = make_dataset(samples, uv, batch_size=batch_size, input_size=input_size, augment=None,
                           shuffle=False, drop_remainder=False)
    scale = map_scale(samples.resolution)
    errors, losses, counts = [], [], []
    for images, targets, weights in dataset:
        pred = predict(images).numpy().astype(np.float64)
        targets = targets.numpy()
        losses.append(metrics.weighted_mse(pred, targets, weights.numpy()))
        counts.append(len(pred))
        errors.append(metrics.nme(pred * scale, targets * scale, kpt_ind))
    return float(np.average(losses, weights=counts)), float(np.mean(np.concatenate(errors)))


def _previous_run(config, output, state_path, last_path, resolution):
    """The saved state of the run in ``output`` when resuming it (None for a fresh run, ``read_state``), after
    checking that ``config`` (its input size resolved) may continue it; then writes the run's ``config.json``.
    ``resolution`` is the data's R: the input size of a run recorded without one.

    Raises:
        ValueError: ``output`` holds a run and ``resume`` is off, a setting of ``_RESUME_KEYS`` changed (the
            files and folders of ``_PATH_KEYS`` compared as resolved paths), or the run has more epochs than
            ``config.epochs`` (its config.json is left as it is);
        InputFileError: the run's checkpoint or state cannot be read.
    """
    state = None
    if last_path.is_file():
        state = read_state(last_path, state_path)
        if not config.resume:
            raise ValueError(f"{output} already holds a run (epoch {state['epoch']}); pass --resume to continue it "
                             "or choose another --output")
        try:
            saved = json.loads((output / "config.json").read_text())
        except ValueError as error:
            raise InputFileError(output / "config.json", f"not a run configuration ({error})") from None
        current = config.to_json()
        # earlier releases recorded paths as given, maybe relative: they are resolved from here; and the uv-data
        # folder only when it was given: a run without one is taken to have used the folder found now
        if saved.get("uv_data") is None:
            saved["uv_data"] = current["uv_data"]
        if saved.get("input_size") is None:  # earlier releases recorded it as given: None was the data's R
            saved["input_size"] = resolution
        if saved.get("targets_version") is None and int(saved["input_size"]) < resolution:
            raise ValueError(f"cannot resume {output}: an earlier release trained it at input size "
                             f"{saved['input_size']}, whose targets put most keypoints one UV pixel off and whose val "
                             "NME is not comparable with today's; start it again in another --output")
        saved.update({key: _resolved(saved.get(key)) for key in _PATH_KEYS})
        changed = [k for k in _RESUME_KEYS if saved.get(k) != current.get(k)]
        if changed:
            raise ValueError(f"cannot resume {output}: settings differ from the saved run: "
                             + ", ".join(f"{k} {saved.get(k)!r} -> {current.get(k)!r}" for k in changed))
        if int(state["epoch"]) > config.epochs:
            raise ValueError(f"cannot resume {output}: the run already has {state['epoch']} epochs, more than "
                             f"--epochs {config.epochs}; give --epochs {state['epoch']} or more")
    elif config.resume:
        logger.warning("nothing to resume in %s; starting at epoch 1", output)
    last_path.parent.mkdir(parents=True, exist_ok=True)
    write_json(output / "config.json", {**config.to_json(), "targets_version": TARGETS_VERSION})
    return state


def _set_up_tensorflow(config):
    """Seeds, op determinism, mixed precision and the distribution strategy (all GPUs, else the default one).
    Returns (keras, tf, strategy)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    gpus = tf.config.list_physical_devices("GPU")
    if config.mixed_precision:
        if gpus:
            keras.mixed_precision.set_global_policy("mixed_float16")
        else:
            logger.warning("--mixed-precision needs a GPU; training in float32 on the CPU")
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    return keras, tf, strategy


def _copy_weights(source, model):
    """Copy every layer's weights from the model at ``source`` (``predictor.load_keras_model``) into ``model``
    by layer name; ValueError naming the first layer missing or of another shape (a different width)."""
    source_model = load_keras_model(source)
    for layer in model.layers:
        if not layer.weights:
            continue
        try:
            values = source_model.get_layer(layer.name).get_weights()
        except ValueError:
            raise ValueError(f"{source}: has no layer {layer.name!r} to initialise from") from None
        shapes = [tuple(w.shape) for w in layer.weights]
        if [v.shape for v in values] != shapes:
            raise ValueError(f"{source}: layer {layer.name!r} has weights {[v.shape for v in values]}, the model "
                             f"{shapes} (another --width?)")
        layer.set_weights(values)
    logger.info("initialised the weights from %s", source)


def _model_for(config, keras, strategy, state, last_path, input_size):
    """The compiled resfcn256: reloaded from ``last_path`` (weights, Adam state) when resuming, else new."""
    from face3d.prnet.model import build_resfcn256
    with strategy.scope():
        if state is not None:
            model = load_keras_model(last_path, compile=True)
            model.run_eagerly = config.run_eagerly
        else:
            model = build_resfcn256(input_size, config.width, bn_momentum=config.bn_momentum)
            if config.init_from is not None:
                _copy_weights(config.init_from, model)
            model.compile(optimizer=keras.optimizers.Adam(learning_rate=config.lr), loss="mean_squared_error",
                          jit_compile=False, run_eagerly=config.run_eagerly)
    return model


def _loss_guard():
    """A Keras callback stopping ``fit`` after the first batch whose running mean loss is not finite (the mean
    stays non-finite from there on, so that batch is the first bad one); ``batch`` (0-based) and ``loss`` say
    which, None while every loss is finite."""
    import keras

    class LossGuard(keras.callbacks.Callback):
        batch = loss = None

        def on_train_batch_end(self, batch, logs=None):
            loss = float(logs["loss"])
            if self.batch is None and not math.isfinite(loss):
                self.batch, self.loss = batch, loss
                self.model.stop_training = True

    return LossGuard()


def _progress_callback(bar):
    """A Keras callback advancing ``bar`` (a ``Progress`` over the epoch's steps) by one step per training batch,
    with the running mean loss after the rate."""
    import keras

    class StepProgress(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            bar.update(1, postfix=f"loss {float(logs['loss']):.4g}")

    return StepProgress()


def _fit_epoch(model, predict, config, epoch, train_samples, val_samples, uv, input_size):
    """Trains one epoch (0-based ``epoch``) at its learning rate, then validates. Returns the epoch's CSV row:
    epoch (1-based), loss, learning_rate, val_loss, val_nme ('' without validation samples).

    Raises:
        NonFiniteLossError: a batch's loss or the weights after the epoch are not finite (the message names the
        batch's samples, ``sources`` of the samples).
    """
    lr = learning_rate_at(config, epoch)
    model.optimizer.learning_rate = lr
    dataset = make_dataset(train_samples, uv, batch_size=config.batch_size, input_size=input_size,
                           augment=config.augment, seed=config.seed, epoch=epoch, shuffle=True)
    guard = _loss_guard()
    # face3d's bar rather than Keras's: Keras redraws its bar with backspaces, \r and colour codes on stdout even
    # when that is a log file
    steps = int(dataset.cardinality())
    with Progress(steps, desc=f"epoch {epoch + 1}/{config.epochs} steps", enabled=config.verbose == 1) as bar:
        history = model.fit(dataset, epochs=epoch + 1, initial_epoch=epoch, verbose=2 if config.verbose == 2 else 0,
                            shuffle=False, callbacks=[guard, _progress_callback(bar)])
    if guard.batch is not None:
        order = epoch_order(len(train_samples), config.seed, epoch).numpy()
        batch = order[guard.batch * config.batch_size:(guard.batch + 1) * config.batch_size]
        raise NonFiniteLossError(f"epoch {epoch + 1}, batch {guard.batch + 1}: non-finite loss {guard.loss}; "
                                 "stopped before writing the epoch; the batch's samples: "
                                 + ", ".join(train_samples.sources(batch)))
    if not all(np.isfinite(weights).all() for weights in model.get_weights()):
        raise NonFiniteLossError(f"epoch {epoch + 1}: non-finite weights; stopped before writing the epoch")
    val_loss = val_nme = ""
    if val_samples:
        val_loss, val_nme = evaluate(predict, val_samples, uv, config.batch_size, input_size)
    return {"epoch": epoch + 1, "loss": float(history.history["loss"][-1]), "learning_rate": lr,
            "val_loss": val_loss, "val_nme": val_nme}


def _save_best(model, output, epoch, nme):
    """Write ``best.keras``, then ``best.json`` ({"epoch": 1-based ``epoch``, "val_nme": ``nme``})."""
    save_keras_model(model, output / "best.keras")
    write_json(output / "best.json", {"epoch": epoch, "val_nme": nme})


def _best_written(output, epoch):
    """Whether ``best.json`` (written after ``best.keras``) names 1-based ``epoch``; False when it is absent or
    unreadable."""
    try:
        best = json.loads((output / "best.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(best, dict) and best.get("epoch") == epoch


def _log_scalars(scalars, row):
    """The epoch's loss, learning rate and (when validated) validation loss and NME as TensorBoard scalars."""
    scalars.write("train", "loss", row["loss"], row["epoch"])
    scalars.write("train", "learning_rate", row["learning_rate"], row["epoch"])
    if row["val_nme"] != "":
        scalars.write("validation", "loss", row["val_loss"], row["epoch"])
        scalars.write("validation", "nme", row["val_nme"], row["epoch"])


def train(config):
    """Train PRNet's resfcn256 as ``config`` says.

    ``config.output`` receives:

    * ``checkpoints/last.keras``: model + optimizer state after the last finished epoch, with the run's state
      (finished epochs, best NME, the CSV rows) inside it (``face3d_state.json``), committed by one rename at the
      end of every epoch, so weights and state never disagree; ``checkpoints/state.json`` is a readable copy of
      that state written after it; ``keep_checkpoints`` also keeps ``checkpoints/epoch_NNN.keras``;
    * ``best.keras`` (+ ``best.json``): the model with the lowest validation NME so far, written after the
      checkpoint of its epoch, so that they never describe an epoch a resumed run redoes; none without validation
      samples;
    * ``log.csv``: epoch, loss, learning_rate, val_loss, val_nme per epoch; ``logs/``: TensorBoard event files;
    * ``config.json``: the run's configuration, with the uv-data folder (``uv_data``) and the input size
      (``input_size``) used and every path resolved;
    * ``.train.lock``: hidden, held while a run writes ``output`` (``utils.atomic.output_lock``): a second run
      into it is refused with a BlockingIOError naming ``output``.

    Every other file of an epoch is written before its checkpoint, so a run killed at any moment resumes from the
    last committed epoch and rewrites them as the uninterrupted run did (TensorBoard may then hold an epoch's
    scalars twice); a run killed between a new best epoch's checkpoint and its best files gets them from that
    checkpoint on resume. A non-finite training loss stops the run at its first such batch (``NonFiniteLossError``
    naming the batch's samples) before anything of that epoch is written, and a checkpoint is only committed with
    finite weights.

    ``resume`` reloads ``last.keras`` (weights, Adam moments and iteration count), sets the epoch counter to the
    finished epochs and recomputes the same learning rate; since each epoch's sample order and augmentation depend
    only on (seed, epoch) (``data.make_dataset``), the resumed run sees exactly the batches the uninterrupted run
    sees. With ``deterministic`` (TensorFlow op determinism) its weights are bitwise equal to the uninterrupted
    run's.

    Args:
        config: TrainConfig.
    Returns:
        dict: ``history`` (list of CSV rows as dicts of floats, every finished epoch including earlier runs),
        ``best_nme``, ``best_epoch``, ``output``, ``last`` (the last epoch's ``checkpoints/last.keras``), ``params``
        (parameter count), ``train_samples``, ``val_samples``.
    """
    _check_config(config)
    train_samples, val_samples, uv_dir = load_samples(config)
    resolution = train_samples.resolution
    input_size = resolution if config.input_size is None else int(config.input_size)
    if input_size > resolution:  # the contract: the network reads the R x R crop, resampled to S <= R
        raise ValueError(f"input_size {input_size} is larger than the data's resolution {resolution}: the network "
                         f"input must be at most the crop side ({resolution})")
    # recorded in config.json as used: a resume keeps the masks and the input size, given or not; paths resolved,
    # so that a resume may spell them otherwise
    paths = {key: _resolved(getattr(config, key)) for key in _PATH_KEYS}
    config = dataclasses.replace(config, **{**paths, "uv_data": _resolved(uv_dir), "input_size": input_size})
    uv = load_uv_data(uv_dir)
    if uv.resolution != resolution:
        raise ValueError(f"{uv_dir}: UV resolution {uv.resolution} differs from the maps' {resolution}")

    output = Path(config.output)
    ckpt_dir = output / "checkpoints"
    state_path, last_path = ckpt_dir / "state.json", ckpt_dir / "last.keras"
    with output_lock(output, "face3d train"):
        state = _previous_run(config, output, state_path, last_path, resolution)
        if state is not None:  # the readable copy, in case the run was killed between the checkpoint and it
            write_json(state_path, state)
        keras, tf, strategy = _set_up_tensorflow(config)
        model = _model_for(config, keras, strategy, state, last_path, input_size)
        start = int(state["epoch"]) if state else 0
        best_nme = float(state["best_nme"]) if state and state.get("best_nme") is not None else math.inf
        best_epoch = state.get("best_epoch") if state else None
        if best_epoch == start and not _best_written(output, best_epoch):
            _save_best(model, output, best_epoch, best_nme)  # killed after the checkpoint, which holds the best model
        rows = state["rows"] if state and "rows" in state else read_csv_rows(output / "log.csv", start)
        scalars = ScalarLog(tf, output / "logs")
        predict = lambda images: model(images, training=False)  # noqa: E731
        if not config.run_eagerly:
            predict = tf.function(predict, reduce_retracing=True)

        for epoch in range(start, config.epochs):
            row = _fit_epoch(model, predict, config, epoch, train_samples, val_samples, uv, input_size)
            # the checkpoint with its state after the epoch's other files: a kill before that rename redoes the epoch
            if config.keep_checkpoints:
                save_keras_model(model, ckpt_dir / f"epoch_{epoch + 1:03d}.keras")
            if row["val_nme"] != "" and row["val_nme"] < best_nme:
                best_nme, best_epoch = row["val_nme"], epoch + 1
            _log_scalars(scalars, row)
            rows.append(row)
            write_csv(output / "log.csv", rows)
            state = {"epoch": epoch + 1, "best_nme": None if math.isinf(best_nme) else best_nme,
                     "best_epoch": best_epoch, "rows": rows}
            save_keras_model(model, last_path, {STATE_ENTRY: json.dumps(state, sort_keys=True)})
            write_json(state_path, state)
            if best_epoch == epoch + 1:  # after the checkpoint: a kill before it redoes the epoch, maybe not as well
                _save_best(model, output, best_epoch, best_nme)
            validated = "" if row["val_nme"] == "" else f", val NME {row['val_nme']}"
            logger.info("epoch %d/%d: loss %.6g, lr %.3g%s", epoch + 1, config.epochs, row["loss"],
                        row["learning_rate"], validated)
        history_rows = [{k: (int(v) if k == "epoch" else float(v) if v not in ("", None) else None)
                         for k, v in r.items()} for r in rows]
        return {"history": history_rows, "best_nme": None if math.isinf(best_nme) else best_nme,
                "best_epoch": best_epoch, "output": str(output), "last": str(last_path),
                "params": int(model.count_params()),
                "train_samples": len(train_samples), "val_samples": len(val_samples) if val_samples else 0}
