"""PRNet demo: 3D faces from images, the files ``face3d demo`` (and the root ``demo.py``) writes.

Per image ``<stem>`` it writes into the output folder: ``<stem>_landmarks.jpg`` (the 68 landmarks drawn),
``<stem>_mesh.jpg`` (the mesh over the image), ``<stem>_depth.png`` (the depth image), ``<stem>.obj`` (per-vertex
colours, or with ``texture`` a texture map: ``.mtl`` + ``_texture.png``), ``<stem>_kpt.txt`` (68 x 3 landmarks)
and ``<stem>_pose.json`` (head pose, visible vertices).
"""
import json
import sys
from pathlib import Path

import numpy as np

from face3d.trainset.landmark_files import find_landmark_file, read_landmarks
from face3d.utils.image_header import IMAGE_SUFFIXES

__all__ = ["list_images", "read_landmarks", "write_outputs", "run_demo"]


def list_images(inputs):
    """Image paths from files and folders (folders: their images, sorted)."""
    images = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            images.append(path)
        else:
            raise FileNotFoundError(f"input not found: {path}")
    if not images:
        raise FileNotFoundError(f"no image in {', '.join(map(str, inputs))}")
    return images


def _landmarks_for(source, image_path):
    source = Path(source)
    if source.is_dir():
        candidate = find_landmark_file(image_path, image_path.parent, source)
        if candidate is None:
            raise FileNotFoundError(f"no landmarks for {image_path.name} in {source} (<stem>.pts/.txt/.npy/.mat)")
        return read_landmarks(candidate)
    return read_landmarks(source)


def write_outputs(prn, image, pos, output, stem, texture=False):
    """Write the demo's files for one face; returns their paths."""
    import cv2

    from face3d.prnet import inference

    h, w = image.shape[:2]
    landmarks = prn.get_landmarks(pos)
    vertices = prn.get_vertices(pos)
    paths = {"landmarks": output / f"{stem}_landmarks.jpg", "mesh": output / f"{stem}_mesh.jpg",
             "depth": output / f"{stem}_depth.png", "kpt": output / f"{stem}_kpt.txt",
             "pose": output / f"{stem}_pose.json"}
    cv2.imwrite(str(paths["landmarks"]), inference.draw_landmarks(image, landmarks)[..., ::-1])
    cv2.imwrite(str(paths["mesh"]), inference.mesh_overlay(image, vertices, prn.triangles)[..., ::-1])
    depth = prn.get_depth_image(vertices, h, w)
    cv2.imwrite(str(paths["depth"]), np.round(depth * 255.0).astype(np.uint8))
    np.savetxt(paths["kpt"], landmarks, fmt="%.4f")
    colors = prn.get_colors(image, vertices)
    if texture:
        paths["obj"] = prn.save_obj(output / f"{stem}.obj", vertices, h, texture=prn.get_texture(image, pos))
    else:
        paths["obj"] = prn.save_obj(output / f"{stem}.obj", vertices, h, colors=colors)
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


def run_demo(inputs, output, model, uv_data=None, bfm=None, box=None, landmarks=None, texture=False,
             detector="auto", trust_model=False):
    """Reconstruct every face image of ``inputs`` and write the demo's files into ``output``.

    Args:
        inputs: image paths and/or folders of images.
        output: output folder (created).
        model: trained network (``.keras``/``.h5``, SavedModel folder, frozen ``.pb`` or ``.onnx``).
        uv_data: UV data the network was trained with (None: the default).
        bfm: morphable model of the UV data, for the pose's canonical face (None: the embedded default model).
        box: (4,) face box x0, y0, x1, y1 in image pixels for every image; or
        landmarks: a 68-landmark file (``read_landmarks``), or a folder with one ``<stem>.pts/.txt/.npy/.mat`` per
            image; neither: dlib's ``detector`` ("auto", "cnn" or "hog") finds the face.
        texture: OBJ with a UV texture map instead of vertex colours.
        trust_model: run a ``.pb`` / SavedModel whatever its ops (``predictor.load_predictor``).
    Prints one line per image (its files, or why it was skipped).
    """
    from face3d.prnet.inference import PRN
    from face3d.trainset.sample_io import read_image

    images = list_images(inputs)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    face_detector = None
    if box is None and landmarks is None:
        from face3d.prnet.detect import DlibDetector
        face_detector = DlibDetector(detector)
    prn = PRN(model, uv_data=uv_data, bfm=bfm, trust_model=trust_model)
    for image_path in images:
        image = read_image(image_path)
        if box is not None:
            pos = prn.process(image, box=box)
        elif landmarks is not None:
            pos = prn.process(image, landmarks=_landmarks_for(landmarks, image_path))
        else:
            boxes, _ = face_detector.detect(image)
            if not len(boxes):
                print(f"{image_path}: no face found, skipped", file=sys.stderr)
                continue
            pos = prn.process(image, box=boxes[0])
        written = write_outputs(prn, image, pos, output, image_path.stem, texture=texture)
        print(f"{image_path}: " + ", ".join(str(p) for p in written.values()))
