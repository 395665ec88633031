"""The records a training run keeps: its state (committed inside ``checkpoints/last.keras``), ``log.csv``, JSON
files, and TensorBoard scalars."""
import csv
import errno
import io
import json
import os
import zipfile

from face3d.utils.atomic import atomic_write_bytes
from face3d.utils.errors import InputFileError

__all__ = ["CSV_FIELDS", "STATE_ENTRY", "read_state", "write_json", "read_csv_rows", "write_csv", "ScalarLog"]

CSV_FIELDS = ("epoch", "loss", "learning_rate", "val_loss", "val_nme")
STATE_ENTRY = "face3d_state.json"  # the run's state inside checkpoints/last.keras (a zip archive)


def read_state(last_path, state_path):
    """The state committed with checkpoint ``last_path`` (dict with ``epoch``, ``best_nme``, ``best_epoch`` and,
    when the checkpoint holds it, ``rows``); a checkpoint written without an embedded state is paired with
    ``state_path``.

    Raises:
        InputFileError naming a truncated or corrupt checkpoint, or a state file that is not a training state.
    """
    try:
        with zipfile.ZipFile(last_path) as archive:
            text = archive.read(STATE_ENTRY) if STATE_ENTRY in archive.namelist() else None
    except (zipfile.BadZipFile, OSError) as error:
        raise InputFileError(last_path, f"truncated or corrupt checkpoint ({error})") from None
    source = last_path
    if text is None:
        source = state_path
        if not state_path.is_file():
            raise InputFileError(last_path, f"the checkpoint holds no training state and {state_path.name} is "
                                            "missing")
        text = state_path.read_bytes()
    try:
        state = json.loads(text)
        int(state["epoch"])
    except (ValueError, KeyError, TypeError) as error:
        raise InputFileError(source, f"not a training state ({type(error).__name__}: {error})") from None
    return state


def write_json(path, values):
    """Write ``values`` as indented, key-sorted JSON, atomically."""
    atomic_write_bytes(path, json.dumps(values, indent=2, sort_keys=True).encode("utf-8"))


def read_csv_rows(path, last_epoch):
    """The rows of ``log.csv`` up to ``last_epoch`` (dicts of strings); [] when the file is absent."""
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [row for row in csv.DictReader(handle) if int(row["epoch"]) <= last_epoch]


def write_csv(path, rows):
    """Write the epoch rows as ``log.csv`` (CSV_FIELDS columns), atomically."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, text.getvalue().encode("utf-8"))


class ScalarLog:
    """TensorBoard scalars written with TensorFlow's core summary ops (the ``tensorboard`` package, which
    ``tf.summary.scalar`` needs and TensorFlow >= 2.21 no longer installs, is only needed to view them)."""

    def __init__(self, tf, log_dir):
        from tensorflow.core.framework import summary_pb2
        self._tf = tf
        self._writers = {}
        self._log_dir = log_dir
        self._metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))

    def write(self, run, tag, value, step):
        """Log ``value`` as scalar ``tag`` of ``run`` ('train' or 'validation') at ``step`` (the epoch).

        Raises:
            OSError naming the run's folder ``<log_dir>/<run>`` for a write TensorFlow fails (an OpError such as
            ResourceExhaustedError on a full disk), with the errno its message names (``_errno_in``), so that a
            full disk reads as any other refused write.
        """
        folder = self._log_dir / run
        try:
            if run not in self._writers:
                self._writers[run] = self._tf.summary.create_file_writer(str(folder))
            with self._writers[run].as_default():
                self._tf.summary.write(tag, self._tf.constant(value, self._tf.float32), step=step,
                                       metadata=self._metadata)
            self._writers[run].flush()
        except self._tf.errors.OpError as error:
            number = _errno_in(error.message)
            raise OSError(number, os.strerror(number), str(folder)) from error


def _errno_in(message):
    """The errno whose ``os.strerror`` text TensorFlow's error ``message`` holds ("...: No space left on device" ->
    ENOSPC; TensorFlow reports a failed system call with that text), else EIO."""
    return next((number for number in sorted(errno.errorcode) if os.strerror(number) in message), errno.EIO)
