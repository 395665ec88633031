"""PRNet demo: 3D faces from images, the files ``face3d demo`` (and the root ``demo.py``) writes.

Per image ``<stem>`` it writes into the output folder: ``<stem>_landmarks.jpg`` (the 68 landmarks drawn),
``<stem>_mesh.jpg`` (the mesh over the image), ``<stem>_depth.png`` (the depth image), ``<stem>.obj`` (per-vertex
colours, or with ``texture`` a texture map: ``.mtl`` + ``_texture.png``), ``<stem>_kpt.txt`` (68 x 3 landmarks)
and ``<stem>_pose.json`` (head pose, visible vertices). An image that fails is reported and skipped; none of its
files is left behind. A write the file system refuses for good (full, over quota, read-only) stops the run.
"""
import json
import os
import sys
from pathlib import Path

import numpy as np

from face3d.trainset.landmark_files import find_landmark_file, read_landmarks
from face3d.trainset.outputs import write_image
from face3d.trainset.sample_io import DEFAULT_MAX_PIXELS
from face3d.utils.atomic import staging_folder
from face3d.utils.errors import InputFileError, refuses_storage
from face3d.utils.image_header import is_listed_image, warn_unread_images
from face3d.utils.output_names import refuse_output_in, refuse_shared_stems

__all__ = ["list_images", "read_landmarks", "write_outputs", "run_demo", "counts_line"]

JPEG_MAX_SIDE = 65_500  # libjpeg's JPEG_MAX_DIMENSION: OpenCV writes no JPEG with a longer side


def list_images(inputs):
    """Image paths from files and folders (folders: their images, sorted, hidden files such as macOS's ``._*``
    companions left out; files of image formats not read, ``.webp``, ``.tif`` ..., counted in one warning per
    folder: ``warn_unread_images``); a file named twice is listed once."""
    images = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(path.iterdir())
            images += [p for p in files if is_listed_image(p)]
            warn_unread_images(files, path)
        elif path.is_file():
            images.append(path)
        else:
            raise FileNotFoundError(f"input not found: {path}")
    if not images:
        raise FileNotFoundError(f"no image in {', '.join(map(str, inputs))}")
    unique = {}
    for path in images:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _landmarks_in(folder, image_path):
    """The 68 landmarks of ``image_path`` from its ``<stem>.pts/.txt/.npy/.mat`` in ``folder``."""
    candidate = find_landmark_file(image_path, image_path.parent, folder)
    if candidate is None:
        raise FileNotFoundError(f"no landmarks for {image_path.name} in {folder} (<stem>.pts/.txt/.npy/.mat)")
    return read_landmarks(candidate)


def _write_image(path, rgb, output):
    """Write an (h, w, 3) RGB or (h, w) grey uint8 image to ``path`` (``outputs.write_image``: a failed write, a full
    disk's included, raises an OSError naming it); OSError naming the file in ``output`` (the folder it goes to)
    when a side is over JPEG's 65,500 pixels, ValueError naming it there when OpenCV cannot encode it."""
    h, w = rgb.shape[:2]
    shown_as = Path(output) / path.name
    if path.suffix.lower() in (".jpg", ".jpeg") and max(h, w) > JPEG_MAX_SIDE:
        raise OSError(f"{shown_as}: the image is {w} x {h} pixels; JPEG takes at most {JPEG_MAX_SIDE:,} a side")
    try:
        write_image(path, rgb)
    except ValueError as error:  # OpenCV cannot encode it
        raise ValueError(f"{shown_as}: {error}") from error


def _write_files(prn, image, pos, folder, stem, texture, output):
    """Write the demo's files for one face into ``folder`` (messages name them in ``output``, where they go);
    returns their paths (dict kind -> Path)."""
    from face3d.prnet import inference

    h, w = image.shape[:2]
    landmarks = prn.get_landmarks(pos)
    vertices = prn.get_vertices(pos)
    paths = {"landmarks": folder / f"{stem}_landmarks.jpg", "mesh": folder / f"{stem}_mesh.jpg",
             "depth": folder / f"{stem}_depth.png", "kpt": folder / f"{stem}_kpt.txt",
             "pose": folder / f"{stem}_pose.json"}
    _write_image(paths["landmarks"], inference.draw_landmarks(image, landmarks), output)
    _write_image(paths["mesh"], inference.mesh_overlay(image, vertices, prn.triangles), output)
    # scaled in place, and dropped once written: the float depth image is as large as the photo
    depth = prn.get_depth_image(vertices, h, w)
    np.round(np.multiply(depth, 255.0, out=depth), out=depth)
    _write_image(paths["depth"], depth.astype(np.uint8), output)
    del depth
    np.savetxt(paths["kpt"], landmarks, fmt="%.4f")
    if texture:
        paths["obj"] = prn.save_obj(folder / f"{stem}.obj", vertices, h, texture=prn.get_texture(image, pos))
    else:
        paths["obj"] = prn.save_obj(folder / f"{stem}.obj", vertices, h, colors=prn.get_colors(image, vertices))
    visible = prn.get_visibility(vertices, h, w)
    summary = {"visible_vertices": int(visible.sum()), "vertices": int(len(vertices))}
    try:
        pose = prn.estimate_pose(vertices)
        summary.update(angles_deg_pitch_yaw_roll=list(pose.angles), angles_3ddfa_rad=list(pose.angles_3ddfa),
                       scale=pose.scale)
    except ValueError as error:  # a collapsed prediction (an untrained network) has no pose
        summary["pose_error"] = str(error)
    paths["pose"].write_text(json.dumps(summary, indent=2))
    return paths


def write_outputs(prn, image, pos, output, stem, texture=False):
    """Write the demo's files for one face into ``output``; returns their paths (dict kind -> Path; the OBJ's
    ``.mtl`` and ``_texture.png`` lie beside it).

    The files are written into the hidden folder ``output/.<stem>.partial`` (``atomic.staging_folder``) and moved into
    ``output`` once every one is written, so a failure (an exception) leaves none of them there; an OSError naming
    a file of the staging folder names that file in ``output``.
    """
    output = Path(output)
    with staging_folder(output / stem) as staging:
        paths = _write_files(prn, image, pos, staging, stem, texture, output)
        names = sorted(p.name for p in staging.iterdir())
        try:
            for name in names:
                os.replace(staging / name, output / name)
        except BaseException:
            for name in names:
                (output / name).unlink(missing_ok=True)
            raise
    return {kind: output / path.name for kind, path in paths.items()}


def counts_line(summary):
    """``run_demo``'s counts in one line: ``3 images: written 2, no face 0, failed 1``, ending in ``, not done N``
    when a stopped run left N images."""
    count, no_face, failed = summary["images"], len(summary["no_face"]), len(summary["failures"])
    not_done = count - summary["written"] - no_face - failed
    return (f"{count} image{'s' * (count != 1)}: written {summary['written']}, no face {no_face}, failed {failed}"
            + f", not done {not_done}" * bool(not_done))


def _skip_reason(error, image_path):
    """One line for a failed image: the error's message, without the image's path when it names just that."""
    if isinstance(error, InputFileError) and error.line is None and str(error.path) == str(image_path):
        return error.problem
    return str(error)


def run_demo(inputs, output, model, uv_data=None, bfm=None, box=None, landmarks=None, texture=False,
             detector="auto", trust_model=False, max_pixels=DEFAULT_MAX_PIXELS):
    """Reconstruct every face image of ``inputs`` and write the demo's files into ``output``.

    Args:
        inputs: image paths and/or folders of images (``list_images``); no two may share a stem.
        output: output folder (created); not one of the input folders, whose listing would take its images.
        model: trained network (``.keras``/``.h5``, SavedModel folder, frozen ``.pb`` or ``.onnx``).
        uv_data: UV data the network was trained with (None: the default).
        bfm: morphable model of the UV data, for the pose's canonical face (None: the embedded default model); read
            once, before any image, unless the UV data has its own canonical face.
        box: (4,) face box x0, y0, x1, y1 in image pixels for every image (an image it does not overlap fails:
            its crop would be all black); or
        landmarks: a 68-landmark file (``read_landmarks``) for every image, or a folder with one
            ``<stem>.pts/.txt/.npy/.mat`` per image; neither: dlib's ``detector`` ("auto", "cnn" or "hog") finds
            the face.
        texture: OBJ with a UV texture map instead of vertex colours.
        trust_model: run a ``.pb`` / SavedModel whatever its ops (``predictor.load_predictor``).
        max_pixels: largest image (width * height) decoded; a larger one fails, refused from its header
            (``sample_io.read_image``).
    Prints one line per image: its files (stdout), or why it was skipped (stderr): no face found, or a failure
    (an unreadable or too large image or landmark file, a box outside the image, a write that failed: none of the
    image's files is left).
    Returns:
        dict: ``images`` (count), ``written`` (count), ``no_face`` (list of Paths), ``failures`` (list of dicts
        ``image``, ``reason``).
    Raises:
        FileNotFoundError / ValueError (InputFileError) before any image is read, for what fits no image: a
        missing input, an ``output`` that is one of the input folders (``refuse_output_in``), two images sharing a
        stem, a bad box, an unusable single landmark file, model or bfm (missing,
        or not the model the UV data was built for).
        OSError naming ``output``: a write the file system refuses for good (``STORAGE_REFUSED``: full, over quota,
        read-only) stops the run at that image, since every later one would fail alike; its message ends with the
        image and the counts so far (``counts_line``). That image leaves no file; the images written before stay.
    """
    from face3d.prnet.face_crop import box_crop, landmark_crop
    from face3d.prnet.inference import PRN
    from face3d.trainset.sample_io import read_image

    images = list_images(inputs)
    # a folder is listed without its subfolders: an output inside one is never read back
    for folder in filter(os.path.isdir, map(str, inputs)):
        refuse_output_in(output, folder, "the input folder",
                         "the next run would read its <stem>_landmarks.jpg, _mesh.jpg and _depth.png as images",
                         inside=False)
    refuse_shared_stems(images, "the output files (<stem>_kpt.txt, ...; theirs would overwrite each other)",
                        remedy="rename one, or run each into its own output folder")
    if box is not None:
        box_crop(box)  # a bad box is refused before any image is read
    landmark_folder = fixed_landmarks = None
    if landmarks is not None and Path(landmarks).is_dir():
        landmark_folder = Path(landmarks)
    elif landmarks is not None:
        fixed_landmarks = read_landmarks(landmarks)
        landmark_crop(fixed_landmarks)  # landmarks spanning no area are refused before any image is read
    face_detector = None
    if box is None and landmarks is None:
        from face3d.prnet.detect import DlibDetector
        face_detector = DlibDetector(detector)
    prn = PRN(model, uv_data=uv_data, bfm=bfm, trust_model=trust_model)
    _ = prn.canonical  # the pose's canonical face, once: a missing bfm or one the uv-data does not fit is refused
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)  # after the models loaded: a bad one leaves no empty folder
    summary = {"images": len(images), "written": 0, "no_face": [], "failures": []}
    for image_path in images:
        try:
            image = read_image(image_path, max_pixels, limit_flag="--max-pixels")
            if box is not None:  # a box outside this image is refused by the crop (PRN.crop): the image is skipped
                pos = prn.process(image, box=box)
            elif landmark_folder is not None:
                pos = prn.process(image, landmarks=_landmarks_in(landmark_folder, image_path))
            elif fixed_landmarks is not None:
                pos = prn.process(image, landmarks=fixed_landmarks)
            else:
                boxes, _ = face_detector.detect(image)
                if not len(boxes):
                    print(f"{image_path}: no face found, skipped", file=sys.stderr)
                    summary["no_face"].append(image_path)
                    continue
                pos = prn.process(image, box=boxes[0])
            written = write_outputs(prn, image, pos, output, image_path.stem, texture=texture)
        except (OSError, ValueError) as error:  # this image's problem: the others go on
            if refuses_storage(error):  # the output takes no more bytes: every later image would fail alike
                raise OSError(error.errno, f"{error.strerror}; stopped at {image_path} ({counts_line(summary)})",
                              str(output)) from error
            reason = _skip_reason(error, image_path)
            print(f"{image_path}: skipped: {reason}", file=sys.stderr)
            summary["failures"].append({"image": image_path, "reason": reason})
            continue
        summary["written"] += 1
        print(f"{image_path}: " + ", ".join(str(p) for p in written.values()))
    return summary
