"""The offline-inference flow around an Ascend ``.om`` (msame), runnable and testable without a board.

``face3d offline pre_process`` crops a test folder into msame's input files (``pre_process``), ``run`` feeds them
to an ONNX or TensorFlow model as msame feeds the ``.om`` (``run_offline``), and ``post_process`` turns the
outputs into landmarks and the evaluation report (``post_process``). Every ``.bin`` is raw little-endian float32
NHWC ``[B, S, S, 3]``: crops as RGB / 255, outputs as normalised maps. README "Deploying on Ascend" (steps 3-5)
gives the commands.
"""
import io
import json
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from face3d.contract import INPUT_SIZE
from face3d.prnet.evaluation_report import OFFLINE_FILES, REPORT_FILES
from face3d.trainset.sample_io import DEFAULT_MAX_PIXELS
from face3d.utils.atomic import atomic_write_bytes, output_lock, staging_folder, write_file_set
from face3d.utils.errors import InputFileError
from face3d.utils.output_names import refuse_output_in, refuse_shared_stems

__all__ = ["MANIFEST", "INPUTS", "TIMING", "read_boxes", "pre_process", "read_manifest", "run_offline", "read_timing",
           "latency_summary", "post_process"]

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
INPUTS = "bin"  # pre_process's folder of model inputs, beside its manifest: msame runs every file in it
TIMING = "timing.json"
_MSAME_TIME = re.compile(r"Inference time\s*:\s*([0-9.]+)\s*ms")


def read_boxes(path, folder=None):
    """Read a boxes file: one ``<image file name> x0 y0 x1 y1`` line per face, one face per image (image pixels).
    The last four fields are the box and the text before them the name, which may hold spaces and ``#``; blanks
    around a line are not part of it. A line whose first non-blank character is ``#`` is a comment, as is the text
    from a word starting with ``#`` after the box (``_boxes_entry``): an image whose name starts with ``#`` is
    named ``./#name``. A comment line that reads as the box of an existing image of ``folder`` is logged
    (WARNING), naming that way to box it.

    Args:
        path: the boxes file.
        folder: the images' folder; every name must lie inside it (no ``..`` or absolute path leading out),
            judged on the normalised path text: a link inside it to an image elsewhere is an image inside it.
    Returns:
        dict image name -> (4,) float64 box.
    Raises:
        InputFileError: naming the file (and line): not UTF-8 text, a line that is no name and four numbers, a name
        outside ``folder``, or an image named on two lines (one face per image).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"boxes file not found: {path}")
    boxes, first_line = {}, {}
    root = None if folder is None else Path(os.path.normpath(os.path.abspath(folder)))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InputFileError(path, f"not a text file (no UTF-8 at byte {error.start})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        entry = _boxes_entry(line)
        if entry is None:
            commented = _name_and_box(_without_trailing_comment(line.strip()))
            if root is not None and commented is not None and (root / commented[0]).is_file():
                logger.warning("%s:%d: a comment line, though %r is an image of %s: name it './%s' to box it",
                               path, number, commented[0], folder, commented[0])
            continue
        name_and_box = _name_and_box(entry)
        if name_and_box is None:
            raise InputFileError(path, f"expected '<image> x0 y0 x1 y1' (four numbers), got {entry!r}", number)
        name, box = name_and_box
        # the name's own text decides (an image may be a link to a file elsewhere): normalised, not resolved
        image = Path(os.path.normpath(name if folder is None else root / name))
        if folder is not None and not image.is_relative_to(root):
            raise InputFileError(path, f"{name!r} lies outside the image folder {folder}", number)
        if _fifth_number(name, image):  # a detector's score after the box
            raise InputFileError(path, f"expected '<image> x0 y0 x1 y1' (four numbers), got {entry!r}", number)
        if image in first_line:  # one face per image: its crop is named after the image
            raise InputFileError(path, f"{name!r} already has a box on line {first_line[image]} (one face per "
                                       "image)", number)
        first_line[image] = number
        boxes[name] = box
    if not boxes:
        raise InputFileError(path, "no box in the file")
    return boxes


def _is_number(text):
    """Whether ``float`` reads ``text``."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _boxes_entry(line):
    """A boxes-file line's entry: the line without blanks around it and without a comment after the box
    (``_without_trailing_comment``); None for a blank line or one whose first non-blank character is ``#``. Any
    other ``#`` is part of the name (``photo #3.jpg``)."""
    line = line.strip()
    return None if not line or line.startswith("#") else _without_trailing_comment(line)


def _without_trailing_comment(text):
    """``text`` (no blanks around it) without a comment after its box: the text from a word starting with ``#``
    that follows four numbers, and the blanks before it."""
    words = list(re.finditer(r"\S+", text))
    for k in range(5, len(words)):  # a name, then four numbers, then the comment
        if words[k].group().startswith("#") and all(_is_number(w.group()) for w in words[k - 4:k]):
            return text[:words[k].start()].rstrip()
    return text


def _name_and_box(entry):
    """(name, (4,) float64 box) of a boxes-file entry ``"<name> x0 y0 x1 y1"``, or None when it is not that."""
    words = entry.rsplit(None, 4)  # split from the right: the name before the four numbers keeps its own spaces
    if len(words) != 5 or not all(map(_is_number, words[1:])):
        return None
    return words[0], np.array([float(v) for v in words[1:]], dtype=np.float64)


def _fifth_number(name, image):
    """Whether the name ``name`` read from a boxes line (``image``: its path) is an image name and the first of
    five numbers (``"a.jpg 10"``): its last word reads as a number, and without that word it names an existing
    file while with it it names none."""
    words = name.rsplit(None, 1)
    return (len(words) == 2 and _is_number(words[1]) and not image.exists()
            and (image.parent / Path(words[0]).name).is_file())


def _crop_sample(image_path, mat_path, box, input_size, resolution, data_dir, max_pixels):
    """One face's network input and manifest record.

    Args:
        image_path: the image. mat_path: its AFLW2000-3D ``.mat`` (crop from the ground-truth landmarks), or None
            with ``box``: the detector box (x0, y0, x1, y1) in image pixels. input_size: S. resolution: R.
        data_dir: the folder the image was found in, for its name.
        max_pixels: largest image (width * height) decoded (``sample_io.read_image``).
    Returns:
        ((S, S, 3) float32 crop, RGB / 255; record {"name": ``evaluation.sample_name`` (its path in ``data_dir``
        without suffix, as ``face3d evaluate`` names it), "image", "image_size": [h, w],
        "matrix": the image -> map affine (2, 3), "crop_box": [cx, cy, side], and with ground truth "mat", "yaw_deg",
        "landmarks": (68, 3)}).
    Raises:
        OSError, ValueError: an image or ``.mat`` that cannot be read or cropped, or a box outside the image.
    """
    from face3d.prnet import evaluation
    from face3d.prnet.face_crop import crop_face, face_crop_box, landmark_crop
    from face3d.trainset.sample_io import read_image

    if mat_path is not None:
        image, truth = evaluation.read_sample(image_path, mat_path, max_pixels=max_pixels,
                                              limit_flag="--max-pixels")
        crop = crop_face(image, landmark_crop(truth.landmarks), input_size, resolution)
    else:
        image, truth = read_image(image_path, max_pixels, limit_flag="--max-pixels"), None
        crop = crop_face(image, face_crop_box(image.shape[1], image.shape[0], box=box), input_size, resolution)
    record = {"name": evaluation.sample_name(image_path, data_dir), "image": str(image_path.resolve()),
              "image_size": list(image.shape[:2]),
              "matrix": crop.matrix.tolist(), "crop_box": [crop.box.cx, crop.box.cy, crop.box.size]}
    if truth is not None:
        record.update(mat=str(Path(mat_path).resolve()), yaw_deg=truth.yaw_deg, landmarks=truth.landmarks.tolist())
    return crop.image, record


def _write_bin(path, array):
    np.ascontiguousarray(array, dtype="<f4").tofile(path)


def pre_process(data_dir, output_dir, input_size=INPUT_SIZE, uv_data=None, boxes=None, batch_size=1, limit=None,
                max_pixels=DEFAULT_MAX_PIXELS):
    """Crop every face of a test folder into msame input files and write the manifest.

    Faces of an AFLW2000-3D-format folder (image + ``.mat`` with ``pt3d_68``) are cropped from the ground-truth
    landmarks exactly as ``evaluation.evaluate_model`` crops; plain images with a boxes file by PRNet's
    detector-box crop (``face_crop.face_crop_box``). ``DIR/bin/`` then holds only one ``.bin`` per network call
    (raw little-endian float32 NHWC ``[B, S, S, 3]``, RGB / 255 as in training, ``face_crop.crop_face``), and
    ``DIR/manifest.json`` beside it (``read_manifest``) a new ``run_id``, each crop's image -> map affine, crop box
    (cx, cy, side) and the ground truth.

    Each batch is written as soon as it is full, into the hidden staging folder ``DIR/bin/.bin.partial`` (msame
    skips hidden entries: a killed run's leftover is never run, and the next run clears it); once all are written,
    the ``.bin`` files the earlier manifest listed are removed and then that manifest, the new ones moved in and the
    manifest written last. A run that fails (or is stopped) before then leaves the earlier run's files as they were;
    one stopped in between leaves no manifest, never one describing other ``.bin`` files. One run at a time writes
    DIR (``utils.atomic.output_lock``, whose hidden ``DIR/.pre_process.lock`` stays): another is refused with a
    BlockingIOError naming DIR.

    Args:
        data_dir: AFLW2000-3D-format folder, or a folder of images when ``boxes`` is given.
        output_dir: DIR (created): the ``.bin`` files go to ``DIR/bin/`` (msame's ``--input``, holding nothing
            else), the manifest to ``DIR/manifest.json``.
        input_size: S, the exported network's input side, 1 <= S <= R.
        uv_data: UV-data folder (its resolution R is the crop the maps refer to; default: the packaged
            ``face3d.resources.default_uv_data_dir()``).
        boxes: boxes file (``read_boxes``) for plain images; None for AFLW2000-3D ground truth.
        batch_size: B, images per ``.bin`` (the ``.om``'s batch); the last file is padded with black crops.
        limit: only the first ``limit`` images (sorted; with ground truth, one without a ``.mat`` is skipped,
            as ``evaluation.split_pairs`` says) or boxes file entries (sorted by name).
        max_pixels: largest image (width * height) decoded; a larger one is skipped, refused from its header.
    Returns:
        the manifest dict (also written to ``output_dir/manifest.json``); its ``files`` name the ``.bin`` files of
        ``output_dir/bin``.
    """
    from face3d.prnet import evaluation
    from face3d.resources import default_uv_data_dir
    from face3d.trainset.uv_layout import load_uv_data

    uv_dir = Path(default_uv_data_dir() if uv_data is None else uv_data).resolve()
    resolution = load_uv_data(uv_dir).resolution
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    if not 1 <= int(input_size) <= resolution:  # a crop never has more pixels than the map it is read into
        raise ValueError(f"input_size must be in [1, {resolution}] (the resolution of the UV data {uv_dir}), got "
                         f"{input_size}")
    data_dir, output_dir = Path(data_dir), Path(output_dir)
    if boxes is None:
        pairs, skipped = evaluation.listed_pairs(data_dir, limit)
        items = [(image, mat, None) for image, mat in pairs]
    else:
        # a missing image is skipped with the reason (read_image's), as an unreadable one is
        items, skipped = [(data_dir / name, None, box) for name, box in sorted(read_boxes(boxes, data_dir).items())], []
        if limit is not None:
            items = items[:int(limit)]
    b, s = int(batch_size), int(input_size)
    if b == 1:  # <stem>.bin
        refuse_shared_stems([image for image, _, _ in items], "the .bin file", data_dir)
    else:  # batch_<k>.bin, each sample named by its path in data_dir without its suffix
        refuse_shared_stems([image for image, _, _ in items], "a sample of the manifest", data_dir, per_folder=True)
    with output_lock(output_dir, "face3d offline pre_process"):
        (output_dir / INPUTS).mkdir(parents=True, exist_ok=True)
        samples, files, crops = [], [], []  # crops: those of the batch being filled, written once it is full
        with staging_folder(output_dir / INPUTS / INPUTS) as staging:
            def write_batch():
                names = [record["name"] for record in samples[-len(crops):]]
                stem = Path(names[0]).name if b == 1 else f"batch_{len(files):05d}"  # stems are unique: checked
                batch = np.zeros((b, s, s, 3), np.float32)
                batch[:len(crops)] = np.stack(crops)
                _write_bin(staging / f"{stem}.bin", batch)
                files.append({"bin": f"{stem}.bin", "samples": names})
                crops.clear()

            for image_path, mat_path, box in items:
                try:
                    crop, record = _crop_sample(image_path, mat_path, box, input_size, resolution, data_dir, max_pixels)
                except (OSError, ValueError) as exc:
                    logger.warning("skipping %s: %s", image_path, exc)
                    skipped.append({"image": str(image_path), "reason": str(exc)})
                    continue
                samples.append(record)
                crops.append(crop)
                if len(crops) == b:
                    write_batch()
            if crops:  # the last batch, padded with black crops
                write_batch()
            if not samples:
                raise ValueError(f"{data_dir}: no sample could be pre-processed ({len(skipped)} skipped)")
            _remove_listed_inputs(output_dir)
            for entry in files:
                os.replace(staging / entry["bin"], output_dir / INPUTS / entry["bin"])
        manifest = {"run_id": uuid.uuid4().hex, "format": "float32 little-endian NHWC [B, S, S, 3], RGB / 255",
                    "input_size": s, "batch_size": b, "resolution": int(resolution), "uv_data": str(uv_dir),
                    "ground_truth": boxes is None, "files": files, "samples": samples, "skipped": skipped,
                    "data": str(data_dir.resolve())}
        atomic_write_bytes(output_dir / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
        _warn_unlisted_inputs(output_dir, files)
        return manifest


# the fields post_process reads, and their types (run_id is checked against the results when the manifest has one)
_MANIFEST_FIELDS = {"input_size": int, "batch_size": int, "resolution": int, "uv_data": str, "ground_truth": bool,
                    "files": list, "samples": list, "skipped": list, "data": str}


def _manifest_problem(info):
    """What makes a parsed JSON value not a manifest ``pre_process`` writes (a short phrase), or None."""
    if not isinstance(info, dict):
        return f"a JSON {type(info).__name__}, not an object"
    missing = [key for key in _MANIFEST_FIELDS if key not in info]
    if missing:
        return "no " + ", ".join(missing)
    wrong = [key for key, kind in _MANIFEST_FIELDS.items() if not isinstance(info[key], kind)]
    if wrong:
        return "wrong type of " + ", ".join(wrong)
    needed = {"name", "image", "matrix"} | ({"landmarks", "yaw_deg"} if info["ground_truth"] else set())
    if not all(isinstance(record, dict) and needed <= set(record) for record in info["samples"]):
        return f"a sample without {', '.join(sorted(needed))}"
    names = {record["name"] for record in info["samples"]}
    for entry in info["files"]:
        if not (isinstance(entry, dict) and isinstance(entry.get("bin"), str)
                and isinstance(entry.get("samples"), list)):
            return f"a files entry without bin and samples: {entry!r}"
        if Path(entry["bin"]).name != entry["bin"] or not entry["bin"].endswith(".bin"):  # never a path elsewhere
            return f"{entry['bin']!r} is not a .bin file name"
        if not set(entry["samples"]) <= names:
            return f"{entry['bin']} lists samples the manifest does not have"
    return None


def read_manifest(path):
    """Read a ``manifest.json`` that ``pre_process`` wrote, checking the fields ``run_offline`` and
    ``post_process`` read.

    Returns:
        dict: ``files`` -> [{"bin": plain ``.bin`` name, "samples": names}], ``samples`` -> records {"name",
        "image", "matrix" (the image -> map affine), "crop_box" ([cx, cy, side]), with ground truth "landmarks",
        "yaw_deg", ...}, ``input_size`` S, ``batch_size`` B, ``resolution`` R, ``run_id`` (new at every
        ``pre_process``), ...
    Raises:
        FileNotFoundError: no such file.
        InputFileError: naming the file, when it is not JSON or not a face3d manifest (a ``timing.json``, say).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    try:
        info = json.loads(path.read_text())
    except ValueError as error:  # UnicodeDecodeError included
        raise InputFileError(path, f"not a face3d {MANIFEST} ({error})") from None
    problem = _manifest_problem(info)
    if problem is not None:
        raise InputFileError(path, f"not a face3d {MANIFEST} ({problem})")
    return info


def _remove_listed_inputs(output_dir):
    """Remove the ``.bin`` files of ``output_dir/bin`` that an earlier ``pre_process`` listed in its manifest:
    ``output_dir/manifest.json``, or ``output_dir/bin/manifest.json`` where earlier releases wrote it, then that
    manifest. msame runs every file of its input folder, so a rerun with fewer or other batches must not leave the
    old ones to be run (and calibrated on); and the manifest goes before the new ``.bin`` files come, which it would
    describe wrongly should the run stop before writing its own. Other files are left alone; an unreadable manifest
    removes nothing."""
    inputs = Path(output_dir) / INPUTS
    for manifest in (Path(output_dir) / MANIFEST, inputs / MANIFEST):
        if not manifest.is_file():
            continue
        try:
            entries = read_manifest(manifest)["files"]
        except InputFileError as error:
            logger.warning("%s: no earlier .bin file removed", error)
            continue
        for entry in entries:
            (inputs / entry["bin"]).unlink(missing_ok=True)
        manifest.unlink()


def _warn_unlisted_inputs(output_dir, files):
    """Warn about the entries of ``output_dir/bin`` that the new manifest's ``files`` do not list: msame would feed
    them to the model too."""
    listed = {entry["bin"] for entry in files}
    others = [path.name for path in _msame_entries(Path(output_dir) / INPUTS) if path.name not in listed]
    if others:
        logger.warning("%s also holds %s, not listed in %s: msame runs every file of its input folder, remove them",
                       Path(output_dir) / INPUTS, ", ".join(others), Path(output_dir) / MANIFEST)


def _msame_entries(input_dir):
    """What msame runs from ``--input``, in its order: every entry of the folder whose name does not start with
    ``.`` (msame's ``Utils::ScanFiles``), sorted; [] for a missing folder."""
    input_dir = Path(input_dir)
    return sorted(p for p in input_dir.iterdir() if not p.name.startswith(".")) if input_dir.is_dir() else []


def _msame_inputs(input_dir):
    """The files msame runs from ``--input`` (``_msame_entries``).

    Raises:
        InputFileError: an entry that is not a file (msame would read it as a model input too).
    """
    entries = _msame_entries(input_dir)
    for path in entries:
        if not path.is_file():
            raise InputFileError(path, "not a file: msame runs every entry of its input folder")
    return entries


def _check_input_size(path, size, batch):
    """InputFileError naming ``path`` unless its size in bytes is that of the model's float32 input
    [batch, size, size, 3] (a positive multiple of one image for a model with a free batch, ``batch`` None)."""
    image = size * size * 3 * 4
    found = Path(path).stat().st_size
    if batch is not None and found != batch * image:
        raise InputFileError(path, f"{found} bytes, not the model's input [{batch}, {size}, {size}, 3] of float32 "
                                   f"({batch * image} bytes)")
    if batch is None and (found == 0 or found % image):
        raise InputFileError(path, f"{found} bytes, not a whole number of the model's [{size}, {size}, 3] float32 "
                                   f"images ({image} bytes each)")


def _timestamp_folder(output_dir):
    """A new folder ``output_dir/<YYYYMMDD_HHMMSS>``, ``_1``, ``_2`` ... appended to the name another run made
    within the same second: each run, even two at once, gets a folder of its own."""
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)  # outside the loop, which takes FileExistsError for a rival run
    except FileExistsError:
        raise InputFileError(output_dir, "not a folder (a file, or a link to a missing folder)") from None
    stamp = time.strftime("%Y%m%d_%H%M%S")
    folder, k = output_dir / stamp, 1
    while True:
        try:
            folder.mkdir()  # the name is this run's only if this mkdir makes it
            return folder
        except FileExistsError:
            folder, k = output_dir / f"{stamp}_{k}", k + 1


def _recorded_run_id(path):
    """The ``run_id`` a ``timing.json`` records; None when the file is absent (msame writes none) or records
    none."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text()).get("run_id")
    except (ValueError, AttributeError) as error:
        raise InputFileError(path, f"not a face3d {path.name} ({error})") from None


def _input_crops(input_files, size, manifest):
    """The face crops of pre_process's ``.bin`` files, without the black crops that pad the last batch.

    Args:
        input_files: ``.bin`` paths, each float32 [n, S, S, 3] (InputFileError naming one that is not; the run
            checks n against the model's batch).
        size: S.
        manifest: the ``read_manifest`` dict of their folder: only as many leading crops of a file as it lists
            samples for it are faces (all of them for a file it does not list).
    Returns:
        float32 (N, S, S, 3).
    """
    counts = {entry["bin"]: len(entry["samples"]) for entry in manifest["files"]}
    for path in input_files:
        _check_input_size(path, size, None)
    return np.concatenate([np.fromfile(f, dtype="<f4").reshape(-1, size, size, 3)[:counts.get(Path(f).name)]
                           for f in input_files])


def _load_runner(model, scratch, fp16, int8, calibration, input_files, manifest, options):
    """The predictor ``run_offline`` uses: the model as is, its float16 conversion or its int8 QDQ quantization
    (calibrated on ``calibration`` or, without it, on the input crops that ``manifest`` lists: ``_input_crops``),
    written into ``scratch``."""
    from face3d.prnet.predictor import load_predictor

    if not (fp16 or int8):
        return load_predictor(model, **options)
    if fp16 and int8:
        raise ValueError("choose one of fp16 and int8")
    if model.suffix.lower() != ".onnx":
        raise ValueError(f"{'fp16' if fp16 else 'int8'} mode needs an .onnx model, got {model}")
    import onnx

    float_model = onnx.load(str(model))
    if fp16:
        from face3d.prnet.onnx_graph import onnx_to_float16
        converted = Path(scratch) / f"{model.stem}_fp16.onnx"
        converted.write_bytes(onnx_to_float16(float_model).SerializeToString())
        return load_predictor(converted, **options)
    from face3d.prnet.quantize import calibration_for_batches, quantize_onnx

    dims = [d.dim_value for d in float_model.graph.input[0].type.tensor_type.shape.dim]
    batch, size = dims[0] or 1, dims[1]
    if calibration is None:
        logger.info("int8: calibrating on the %d input files (pass a calibration folder for an unbiased figure)",
                    len(input_files))
        calibration = _input_crops(input_files, size, manifest)
    images = calibration_for_batches(calibration, size, batch, manifest["resolution"],  # cropped as pre_process
                                     batch_origin=f"{model.name}'s input batch")
    converted = quantize_onnx(float_model, Path(scratch) / f"{model.stem}_int8.onnx", images, batch)
    return load_predictor(converted, **options)


def _refuse_crops_of_another_uv_layout(model, manifest, manifest_path):
    """ValueError naming ``model`` and ``manifest_path`` when the model gives maps in PRNet's UV layout (PRNet's
    checkpoint, or a ``.keras`` file converted from it) but the manifest (its ``read_manifest`` dict) names uv-data
    with other keypoints (``uv_kpt_ind.txt``), which post_process would read at the wrong map pixels.

    The layout's keypoints are those of the uv-data ``prnet_checkpoint.uv_data_for_model`` finds beside PRNet's
    checkpoint; where there is none (a converted ``.keras`` file, a checkpoint without ``Data/uv-data`` beside it),
    only the packaged uv-data's keypoints are known to be others. Keypoints, not paths, are compared: a copy of the
    right folder elsewhere is the right uv-data.
    """
    from face3d.prnet.prnet_checkpoint import find_checkpoint, has_prnet_uv_layout, uv_data_for_model
    from face3d.resources import default_uv_data_dir
    from face3d.trainset.uv_layout import read_uv_kpt_ind

    converted = has_prnet_uv_layout(model)
    if not converted and find_checkpoint(model) is None:  # read with the uv-data it was cropped with
        return
    needed = None
    if not converted:
        try:
            needed = uv_data_for_model(model)
        except ValueError:  # no Data/uv-data beside the checkpoint
            pass

    def keypoints(folder):
        return read_uv_kpt_ind(Path(folder) / "uv_kpt_ind.txt")

    try:
        found = keypoints(manifest["uv_data"])
    except FileNotFoundError:
        raise FileNotFoundError(f"{manifest_path} names the uv-data {manifest['uv_data']}, which has no "
                                f"uv_kpt_ind.txt (moved, or made on another machine): rerun offline pre_process") \
            from None
    if needed is None:
        other = np.array_equal(found, keypoints(default_uv_data_dir()))
    else:
        other = not np.array_equal(found, keypoints(needed))
    if not other:
        return
    lead = ("converted from PRNet's checkpoint, it gives maps in PRNet's UV layout" if converted
            else "PRNet's checkpoint gives maps in PRNet's UV layout")
    raise ValueError(f"{model}: {lead}, but {manifest_path} names the uv-data {manifest['uv_data']}, whose keypoints "
                     f"are not PRNet's: rerun offline pre_process with PRNet's uv-data "
                     f"(--uv-data {'DIR' if needed is None else needed})")


def run_offline(model, input_dir, output_dir, fp16=False, threads=None, quiet=False, int8=False, calibration=None,
                trust_model=False):
    """msame's loop on the host: every entry of ``input_dir`` but hidden ones (sorted) through the model.

    msame's contract: one inference per entry; the outputs are
    ``<output_dir>/<YYYYMMDD_HHMMSS>/<bin stem>_output_0.bin`` (raw float32 ``[B, S, S, 3]``, the normalised map),
    the per-file times and the manifest's ``run_id`` go to ``timing.json`` there, and msame's summary lines to
    stdout. ``fp16`` predicts what ATC's ``--precision_mode=force_fp16`` costs.

    Args:
        model: ``.onnx`` or ``.pb`` path (anything ``predictor.load_predictor`` takes).
        input_dir: ``DIR/bin`` of ``pre_process``: ``.bin`` files, each float32 [B, S, S, 3] (B the model's batch,
            or any multiple of S*S*3 floats for a model with a free batch); ``DIR/manifest.json`` must lie beside
            it.
        output_dir: parent of the timestamped result folder.
        fp16: run the ONNX model converted to float16 (``.onnx`` only; ``export.onnx_to_float16``).
        int8: run the ONNX model quantized to int8 QDQ (``quantize.quantize_onnx``), which predicts what an int8
            (AMCT) board deployment costs.
        calibration: the int8 calibration folder (``quantize.calibration_images``; a ValueError without ``int8``);
            None: the input crops that ``DIR/manifest.json`` lists (pre_process's padding left out).
        threads: ONNX Runtime intra-op threads (None: its default).
        quiet: no per-file lines on stdout.
        trust_model: run a ``.pb`` whatever its ops (``predictor.load_predictor``).
    Returns:
        Path of the result folder ``<output_dir>/<YYYYMMDD_HHMMSS>``; its ``timing.json`` carries the ``run_id``
        of ``DIR/manifest.json``.
    Raises:
        FileNotFoundError: no input, or no ``DIR/manifest.json``; InputFileError naming ``output_dir`` when it is
        ``input_dir`` or lies inside it (``refuse_output_in``), or an input that is not one (not a file, or not the
        model's input size); ValueError naming the model and the manifest: a model giving
        maps in PRNet's UV layout on crops whose manifest names other uv-data
        (``_refuse_crops_of_another_uv_layout``). Each is checked before the result folder is created, and a
        failure during the run removes that folder.
    """
    from face3d.prnet.quantize import refuse_calibration_without_int8

    refuse_calibration_without_int8(calibration, int8)
    input_dir = Path(input_dir)
    refuse_output_in(output_dir, input_dir, "the input folder",
                     "msame runs every entry of its input folder: the next run would take the results for an input")
    files = _msame_inputs(input_dir)
    if not files:
        raise FileNotFoundError(f"no .bin file in {input_dir}")
    manifest_path = Path(os.path.abspath(input_dir)).parent / MANIFEST
    try:
        manifest = read_manifest(manifest_path)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error} (pre_process writes DIR/{MANIFEST} beside the input folder DIR/{INPUTS})") \
            from None
    model = Path(model)
    _refuse_crops_of_another_uv_layout(model, manifest, manifest_path)
    options = {"trust_model": trust_model}
    if threads is not None and model.suffix.lower() == ".onnx":
        options["threads"] = int(threads)
    with tempfile.TemporaryDirectory() as scratch:
        predictor = _load_runner(model, scratch, fp16, int8, calibration, files, manifest, options)
        s = predictor.input_size
        for path in files:  # every input before the result folder exists: a bad one leaves nothing behind
            _check_input_size(path, s, predictor.batch_size)
        folder = _timestamp_folder(output_dir)
        try:
            times = {}
            for path in files:
                images = np.fromfile(path, dtype="<f4").reshape(-1, s, s, 3)
                start = time.perf_counter()
                maps = predictor.predict(images)
                elapsed = (time.perf_counter() - start) * 1000.0
                _write_bin(folder / f"{path.stem}_output_0.bin", maps)
                times[path.stem] = elapsed
                if not quiet:
                    print(f"[INFO] start to process file:{path}\nInference time: {elapsed:.3f}ms")
            values = list(times.values())
            summary = {"run_id": manifest.get("run_id"), "model": str(model), "backend": predictor.backend,
                       "fp16": bool(fp16), "int8": bool(int8), "input": str(input_dir),
                       "batch_size": predictor.batch_size, "files_ms": times, "average_ms": float(np.mean(values)),
                       "average_ms_without_first": float(np.mean(values[1:])) if len(values) > 1 else None}
            (folder / TIMING).write_text(json.dumps(summary, indent=1) + "\n")
        except BaseException:  # no half-written result folder for post_process to read
            shutil.rmtree(folder, ignore_errors=True)
            raise
    if not quiet:
        print(f"Inference average time : {summary['average_ms']:.3f} ms")
        if summary["average_ms_without_first"] is not None:
            print(f"Inference average time without first time: {summary['average_ms_without_first']:.3f} ms")
        print(f"[INFO] output data in {folder}")
    return folder


def read_timing(path, stems=None):
    """Per-file inference times (ms, in run order) from a ``timing.json`` or an msame log (``Inference time``
    lines). Returns a list of floats; InputFileError naming the file when it is neither (a ``manifest.json``, say).

    ``stems``: the ``.bin`` files (names without ``.bin``) whose times are wanted: a ``timing.json``'s times of
    those files, in that order (it may time other files too: an unlisted file in the input folder is run as well),
    an InputFileError when one has none; an msame log's times (which name no file) must be as many.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"timing file not found: {path}")
    text = path.read_text(errors="replace")
    if path.suffix == ".json":
        try:
            files_ms = {str(k): float(v) for k, v in json.loads(text)["files_ms"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            problem = f"no {error.args[0]}" if isinstance(error, KeyError) else str(error)
            raise InputFileError(path, f"not a face3d {TIMING} ({problem})") from None
        if stems is None:
            return list(files_ms.values())
        missing = [stem for stem in stems if stem not in files_ms]
        if missing:
            raise InputFileError(path, f"no time for {missing[0]}.bin ({len(missing)} of the {len(stems)} files "
                                       "lack one): pass the timing of the run on them")
        return [files_ms[stem] for stem in stems]
    times = [float(v) for v in _MSAME_TIME.findall(text)]
    if not times:
        raise ValueError(f"{path}: no 'Inference time: <x> ms' line (an msame log) and not a timing.json")
    if stems is not None and len(times) != len(stems):  # another run's log, or one that ran other files too
        raise InputFileError(path, f"{len(times)} inference times, but {len(stems)} .bin files to time: pass the "
                                   "log of the run on them")
    return times


def _latency_markdown(latency, batch_size):
    """``latency.md``: one paragraph of ``latency_summary``'s figures."""
    lines = ["## Latency (offline runner / msame)", "",
             f"{latency['calls']} calls of batch {batch_size}: first call {latency['first_call_ms']:.2f} ms; then per "
             f"image mean {latency['image_ms_mean']:.2f} ms, median {latency['image_ms_median']:.2f} ms, "
             f"p90 {latency['image_ms_p90']:.2f} ms ({latency['images_per_s']:.1f} images/s)."]
    return "\n".join(lines) + "\n"


def latency_summary(times_ms, batch_size):
    """Latency figures of per-file times: per call and per image (call / B), mean, median, p90, min, max, the
    mean without the first (warm-up) call, and images/s (B / mean call time without the first)."""
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size == 0:
        raise ValueError("latency_summary needs at least one time")
    steady = t[1:] if t.size > 1 else t
    per_image = steady / batch_size
    return {"calls": int(t.size), "batch_size": int(batch_size), "first_call_ms": float(t[0]),
            "call_ms_mean": float(steady.mean()), "image_ms_mean": float(per_image.mean()),
            "image_ms_median": float(np.median(per_image)), "image_ms_p90": float(np.percentile(per_image, 90)),
            "image_ms_min": float(per_image.min()), "image_ms_max": float(per_image.max()),
            "images_per_s": float(1000.0 * batch_size / steady.mean())}


def post_process(result_dir, manifest, output_dir, timing=None):
    """Turn runner (or msame) outputs into landmarks and the evaluation report.

    Each output is brought back to a position map in image coordinates (``face_crop.restore_map``), its 68
    landmarks read, and the report built as ``face3d evaluate`` builds it (``evaluation.evaluate_predictions``,
    ``write_reports``), with the per-image latency from ``timing.json`` or an msame log's ``Inference time`` lines
    (``read_timing``). A sample whose map holds NaN or inf is skipped as ``face3d evaluate`` skips it; the other
    samples of its file are post-processed.

    Args:
        result_dir: folder with ``<bin stem>_output_0.bin`` files (the runner's timestamped folder).
        manifest: ``manifest.json`` path written by ``pre_process``.
        output_dir: report folder (created).
        timing: ``timing.json`` or msame log; None -> ``result_dir/timing.json`` when present.
    Returns:
        dict: the evaluation report (``evaluation.evaluate_predictions`` plus ``run_id``, ``data``, ``skipped``,
        ``latency`` and ``files``) when the manifest has ground truth; else {"run_id", "landmarks": (N, 68, 3) list,
        "names", "latency", "skipped", "files"}, written to ``landmarks.json`` (but ``files``) and
        ``landmarks.npz`` (names, landmarks). ``skipped``: the manifest's images that could not be cropped, then
        the samples whose output map holds NaN or inf (``evaluation.non_finite_map_problem``; logged, the reason
        naming the output file and the sample's place in its batch: ``"<file>, sample k of B (<name>): ..."``),
        each {"image", "reason"}; the padding crops of a last batch are no samples and are not looked at.
    Raises:
        ValueError (InputFileError naming the file) before anything is written: the manifest or the timing file is
        not one (``read_manifest``, ``read_timing``), the results' ``timing.json`` names another run than the
        manifest, an output is missing or has the wrong size, no sample is left, the timing file has another count
        of inference times than the manifest has ``.bin`` files.
    """
    from face3d.prnet import evaluation
    from face3d.prnet.face_crop import restore_map
    from face3d.trainset.posmap import keypoints_from_map
    from face3d.trainset.uv_layout import load_uv_data

    result_dir, output_dir = Path(result_dir), Path(output_dir)
    manifest_path = Path(manifest)
    info = read_manifest(manifest_path)
    results_run = _recorded_run_id(result_dir / TIMING)
    if results_run is None:
        logger.warning("%s has no run id (msame output?): cannot check that it belongs to %s", result_dir,
                       manifest_path)
    elif results_run != info.get("run_id"):
        raise InputFileError(result_dir, f"results of run {results_run}, but {manifest_path} is of run "
                                         f"{info.get('run_id')}: pass the manifest of the run's input folder")
    uv = load_uv_data(info["uv_data"])
    if uv.resolution != info["resolution"]:
        raise ValueError(f"UV data {info['uv_data']} has resolution {uv.resolution}, manifest says "
                         f"{info['resolution']}")
    records = {s["name"]: s for s in info["samples"]}
    s, b = info["input_size"], info["batch_size"]
    names, landmarks, skipped = [], [], []
    for entry in info["files"]:
        path = result_dir / f"{Path(entry['bin']).stem}_output_0.bin"
        if not path.is_file():
            text = path.with_suffix(".txt")  # what msame --outfmt TXT writes
            hint = (f", but msame wrote its text output {text.name}: rerun msame without --outfmt TXT (BIN is its "
                    "default)" if text.is_file() else f" (run the model on {entry['bin']} first)")
            raise FileNotFoundError(f"output file not found: {path}{hint}")
        data = np.fromfile(path, dtype="<f4")
        if data.size != b * s * s * 3:
            raise ValueError(f"{path}: {data.size} floats, expected [{b}, {s}, {s}, 3]")
        maps = data.reshape(b, s, s, 3)
        for k, (name, output) in enumerate(zip(entry["samples"], maps)):  # the padding crops are no samples
            record = records[name]
            problem = evaluation.non_finite_map_problem(output)
            if problem is not None:  # a diverged network on this face: the batch's others are still measured
                reason = f"{path}, sample {k + 1} of {b} ({name}): {problem}"
                logger.warning("skipping %s: %s", record["image"], reason)
                skipped.append({"image": record["image"], "reason": reason})
                continue
            pos = restore_map(output, np.asarray(record["matrix"]), info["resolution"])
            names.append(name)
            landmarks.append(keypoints_from_map(pos, uv.uv_kpt_ind))
    skipped = info["skipped"] + skipped
    if not names:  # a manifest pre_process wrote lists a sample; one edited by hand may list none
        first = f"; first: {skipped[0]['image']}: {skipped[0]['reason']}" if skipped else ""
        raise ValueError(f"{result_dir}: no sample could be post-processed ({len(skipped)} skipped{first})")
    timing = result_dir / TIMING if timing is None and (result_dir / TIMING).is_file() else timing
    latency = None
    if timing is not None:
        latency = latency_summary(read_timing(timing, [Path(entry["bin"]).stem for entry in info["files"]]), b)
    output_dir.mkdir(parents=True, exist_ok=True)
    pred = np.stack(landmarks)
    latency_md = None if latency is None else _latency_markdown(latency, b).encode("utf-8")
    if info["ground_truth"]:
        gt = np.stack([np.asarray(records[n]["landmarks"], dtype=np.float64) for n in names])
        yaw = np.array([records[n]["yaw_deg"] for n in names])
        report = evaluation.evaluate_predictions(pred, gt, yaw, names)
        report["run_id"] = info.get("run_id")
        report["data"] = info["data"]
        report["skipped"] = skipped
        report["latency"] = latency
        # an earlier --boxes run's landmark files there would not match the report: write_reports removes them
        report["files"] = evaluation.write_reports(report, output_dir, predictions=(pred, gt),
                                                    extra={"latency": (OFFLINE_FILES["latency"], latency_md)})
    else:
        report = {"run_id": info.get("run_id"), "names": names, "landmarks": pred.tolist(), "latency": latency,
                  "skipped": skipped}
        npz = io.BytesIO()
        np.savez(npz, names=np.array(names), landmarks=pred)
        contents = {"landmarks": npz.getvalue(), "landmarks_json": (json.dumps(report) + "\n").encode("utf-8"),
                    "latency": latency_md, **{f"stale_{kind}": None for kind in REPORT_FILES}}
        paths = {**{kind: output_dir / name for kind, name in OFFLINE_FILES.items()},
                 **{f"stale_{kind}": output_dir / name for kind, name in REPORT_FILES.items()}}
        # an earlier run's latency.md goes without timing, and a ground-truth run's report files with this run
        report["files"] = write_file_set(paths, contents)
    return report

