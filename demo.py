#!/usr/bin/env python
"""PRNet demo: 3D face from images. See ``python demo.py --help``.

Per image ``<stem>`` it writes into the output folder: ``<stem>_landmarks.jpg`` (the 68 landmarks drawn),
``<stem>_mesh.jpg`` (the mesh over the image), ``<stem>_depth.png`` (the depth image), ``<stem>.obj`` (per-vertex
colours, or with ``--texture`` a texture map: ``.mtl`` + ``_texture.png``), ``<stem>_kpt.txt`` (68 x 3 landmarks)
and ``<stem>_pose.json`` (head pose, visible vertices).
"""
import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

DEFAULT_MODEL = "output/prnet_train/best.keras"  # train.py's default --output
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def build_parser():
    """The command line."""
    p = argparse.ArgumentParser(
        description="Reconstruct the 3D face in images with a trained PRNet (Keras, SavedModel, frozen .pb or "
                    "ONNX). The face comes from --box, from --landmarks, or from dlib's detector when it is "
                    "installed (pip install dlib-bin face_recognition_models).",
)
    p.add_argument("-i", "--input", nargs="+", required=True, metavar="PATH",
                   help="images and/or folders of images")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--model", default=DEFAULT_MODEL, metavar="PATH",
                   help=f"trained network: .keras/.h5, SavedModel folder, frozen .pb or .onnx ({DEFAULT_MODEL})")
    p.add_argument("--uv-data", metavar="DIR", help="UV data the network was trained with (default Data/uv-data)")
    p.add_argument("--bfm", metavar="BFM.mat", help="morphable model of the UV data, for the pose's canonical "
                                                    "face (default: the embedded default model)")
    face = p.add_mutually_exclusive_group()
    face.add_argument("--box", nargs=4, type=float, metavar=("X0", "Y0", "X1", "Y1"),
                      help="face box in image pixels, for every input image (PRNet's crop: 1.58 x its mean side)")
    face.add_argument("--landmarks", metavar="FILE|DIR",
                      help="68 landmarks (iBUG .pts, .txt/.npy (68, 2|3) or (2|3, 68), or .mat with pt3d_68/pt2d); "
                           "a folder holds one <stem>.pts/.txt/.npy/.mat per image")
    p.add_argument("--texture", action="store_true", help="OBJ with a UV texture map instead of vertex colours")
    p.add_argument("--detector", choices=("auto", "cnn", "hog"), default="auto",
                   help="dlib detector used when neither --box nor --landmarks is given (auto: the CNN when "
                        "face_recognition_models is installed, else HOG)")
    return p


def list_images(inputs):
    """Image paths from files and folders (folders: their images, sorted)."""
    images = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images += sorted(p for p in path.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        elif path.is_file():
            images.append(path)
        else:
            raise FileNotFoundError(f"input not found: {path}")
    if not images:
        raise FileNotFoundError(f"no image in {', '.join(map(str, inputs))}")
    return images


def _landmarks_for(source, image_path):
    from face3d.fitting.landmark_files import find_landmark_file, read_landmarks

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


def main(argv=None):
    """Run the demo; returns the exit status (2 on bad input, with a message naming it)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        from face3d.prnet.inference import PRN
        from face3d.trainset.sample import read_image

        images = list_images(args.input)
        output = Path(args.output)
        output.mkdir(parents=True, exist_ok=True)
        detector = None
        if args.box is None and args.landmarks is None:
            from face3d.prnet.detect import DlibDetector
            detector = DlibDetector(args.detector)
        prn = PRN(args.model, uv_data=args.uv_data, bfm=args.bfm)
        for image_path in images:
            image = read_image(image_path)
            if args.box is not None:
                pos = prn.process(image, box=args.box)
            elif args.landmarks is not None:
                pos = prn.process(image, landmarks=_landmarks_for(args.landmarks, image_path))
            else:
                boxes, _ = detector.detect(image)
                if not len(boxes):
                    print(f"{image_path}: no face found, skipped", file=sys.stderr)
                    continue
                pos = prn.process(image, box=boxes[0])
            written = write_outputs(prn, image, pos, output, image_path.stem, texture=args.texture)
            print(f"{image_path}: " + ", ".join(str(p) for p in written.values()))
    except (FileNotFoundError, ValueError, ImportError) as error:
        print(f"demo.py: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
