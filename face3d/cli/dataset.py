"""``face3d pack | preview | synthesize | uv-data``: tools around a generated training set."""
import argparse
import json
import logging
import os
import sys
from pathlib import Path

from face3d.cli._common import Command, error_text, int_at_least, non_negative_int, positive_int, setup_logging
from face3d.cli.generate import SYNTHETIC_DIR
from face3d.contract import RESOLUTION

__all__ = ["PACK", "PREVIEW", "SYNTHESIZE", "UV_DATA"]


def _pack_arguments(parser):
    parser.add_argument("label", help="trainDataLabel.txt")
    parser.add_argument("output", help="output .h5 file")
    parser.add_argument("--base-dir", metavar="DIR",
                        help="folder relative label paths are resolved against (default: the label file's folder)")
    parser.add_argument("--compression", choices=("none", "lzf", "gzip"), default="none",
                        help="HDF5 compression (default: %(default)s)")
    parser.add_argument("--float32", action="store_true", help="store position maps as float32 (default float16)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--verbose", action="store_true", help="debug logging")


def _run_pack(args):
    setup_logging(args.verbose)
    from face3d.trainset.pack import pack_label_file

    try:
        n = pack_label_file(args.label, args.output, base_dir=args.base_dir,
                            posmap_dtype="float32" if args.float32 else "float16", compression=args.compression,
                            progress=not args.quiet)
    except (FileNotFoundError, ValueError) as error:  # InputFileError is a ValueError
        print(f"{args.prog}: error: {error_text(error)}", file=sys.stderr)
        return 2
    print(f"packed {n} samples into {args.output}")
    return 0


def _preview_arguments(parser):
    parser.add_argument("npy", help="position map <name>.npy written by generate")
    parser.add_argument("--image", metavar="JPG", help="the crop (default: <name>.jpg next to the map)")
    parser.add_argument("--uv-data", metavar="DIR",
                        help="folder with uv_kpt_ind.txt (default: the nearest uv-data/ above the map)")
    parser.add_argument("--output", metavar="PNG", type=_picture_path,
                        help="output picture, .png or .jpg, in an existing folder (default: <name>_preview.png)")
    parser.add_argument("--verbose", action="store_true", help="debug logging")


def _picture_path(text):
    """argparse type of preview's --output: a path whose extension OpenCV writes, in a folder that exists."""
    import cv2

    path = Path(text)
    if not cv2.haveImageWriter(str(path)):
        raise argparse.ArgumentTypeError(f"{text}: no image format for its extension {path.suffix!r}; give .png or "
                                         f".jpg")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: folder {str(path.parent)!r} not found")
    return path


def _find_uv_data(npy_path):
    for folder in Path(npy_path).resolve().parents:
        if (folder / "uv-data" / "uv_kpt_ind.txt").is_file():
            return folder / "uv-data"
    return None


def _run_preview(args):
    setup_logging(args.verbose)
    import numpy as np

    from face3d.trainset.outputs import write_image
    from face3d.trainset.posmap import posmap_value_problem
    from face3d.trainset.preview import draw_preview, keypoints_drawn

    npy = Path(args.npy)
    image, posmap, uv_kpt_ind = _preview_inputs(npy, args.image, args.uv_data)
    problem = posmap_value_problem(posmap, posmap.shape[0])
    if problem is not None:  # a broken map is what one previews to see where it breaks: drawn, with a warning
        left_out = uv_kpt_ind.shape[1] - len(keypoints_drawn(posmap, uv_kpt_ind, posmap.shape[0]))
        notes = [] if np.isfinite(posmap).all() else ["map pixels with NaN or inf in magenta"]
        notes += [f"{left_out} of {uv_kpt_ind.shape[1]} keypoints not drawn"] if left_out else []
        logging.getLogger(__name__).warning("%s: %s; previewed anyway%s", npy, problem,
                                            f": {', '.join(notes)}" if notes else "")
    picture = draw_preview(image, posmap, uv_kpt_ind)
    output = args.output or npy.with_name(npy.stem + "_preview.png")
    write_image(output, picture)
    print(f"wrote {output}")
    return 0


def _preview_inputs(npy, image_path, uv_data):
    """The crop (r, r, 3) uint8 RGB, the map (r, r, 3) float32 and uv_kpt_ind (2, 68) int64 of ``face3d preview``,
    each checked against the map: InputFileError naming the crop of another size, or the uv_kpt_ind.txt that is not
    68 pixels of the map; FileNotFoundError for a missing file."""
    import numpy as np

    from face3d.trainset.posmap import load_posmap
    from face3d.trainset.sample_io import read_image
    from face3d.trainset.uv_layout import read_uv_kpt_ind
    from face3d.utils.errors import InputFileError

    posmap = load_posmap(npy).astype(np.float32)
    if posmap.ndim != 3 or posmap.shape[2] != 3 or posmap.shape[0] != posmap.shape[1]:
        raise InputFileError(npy, f"not a .npy position map: expected shape (R, R, 3), got {posmap.shape}")
    r = posmap.shape[0]
    image_path = Path(image_path) if image_path else npy.with_suffix(".jpg")
    image = read_image(image_path)
    if image.shape[:2] != (r, r):
        raise InputFileError(image_path, f"the image is {image.shape[1]}x{image.shape[0]}, the map {npy} is {r}x{r}: "
                                         f"give the crop it was made from")
    if uv_data:
        kpt_file = Path(uv_data) / "uv_kpt_ind.txt"
    else:
        found = _find_uv_data(npy)
        if found is None:
            raise FileNotFoundError(f"no uv-data/uv_kpt_ind.txt found above {str(npy)!r}; give the folder with "
                                    f"--uv-data")
        kpt_file = found / "uv_kpt_ind.txt"
    uv_kpt_ind = read_uv_kpt_ind(kpt_file)
    low, high = int(uv_kpt_ind.min()), int(uv_kpt_ind.max())
    if low < 0 or high >= r:
        raise InputFileError(kpt_file, f"keypoint pixels {low}..{high} do not fit the {r}x{r} map {npy}: give the "
                                       f"uv-data folder of its resolution")
    return image, posmap, uv_kpt_ind


def _synthesize_arguments(parser):
    from face3d.trainset.synthetic import MIN_SIZE

    parser.add_argument("--output", metavar="DIR", default=SYNTHETIC_DIR, help="output folder (default: %(default)s)")
    parser.add_argument("--count", metavar="N", type=positive_int, default=24, help="samples (default: %(default)s)")
    parser.add_argument("--seed", metavar="S", type=non_negative_int, default=0,
                        help="random seed, 0 or more (default: %(default)s)")
    parser.add_argument("--size", metavar="PX", type=int_at_least(MIN_SIZE, "pixels"), default=450,
                        help=f"image side in pixels, {MIN_SIZE} or more (default: %(default)s)")
    parser.add_argument("--bfm", metavar="BFM.mat", help="the real Basel Face Model (default: the embedded model)")
    parser.add_argument("--views", metavar="V", type=positive_int,
                        help="profiled views per face, sharing Shape_Para and Exp_Para (default: "
                             "face3d.trainset.synthetic.VIEWS, 4)")
    parser.add_argument("--no-flip", action="store_true", help="no _Flip copies (default: one per view)")
    parser.add_argument("--verbose", action="store_true", help="debug logging")


def _run_synthesize(args):
    setup_logging(args.verbose)
    from face3d.trainset.discovery import printable_path
    from face3d.trainset.synthetic import synthesize_dataset

    views = {} if args.views is None else {"views": args.views}
    paths = synthesize_dataset(args.output, count=args.count, seed=args.seed, model_path=args.bfm, size=args.size,
                               flip=not args.no_flip, **views)
    # the path in its own characters (ensure_ascii=False); the bytes of a name that is not UTF-8 as \xNN, which a
    # UTF-8 stdout could not print
    output = printable_path(os.path.abspath(args.output))
    print(json.dumps({"output": output, "samples": len(paths)}, ensure_ascii=False))
    return 0


def _uv_data_arguments(parser):
    from face3d.trainset.sample import MIN_RESOLUTION  # generate's minimum

    parser.add_argument("--output", metavar="DIR", default="uv-data",
                        help="output folder (default: %(default)s in the current directory)")
    parser.add_argument("--bfm", metavar="BFM.mat", help="the real Basel Face Model (default: the embedded model)")
    parser.add_argument("--resolution", metavar="R", type=int_at_least(MIN_RESOLUTION, "pixels"), default=RESOLUTION,
                        help=f"UV map side in pixels, {MIN_RESOLUTION} or more (default: %(default)s)")
    parser.add_argument("--neck-zeroed", action="store_true",
                        help="the paper's weight mask with the neck at 0 (default: the neck weighted 48 like the "
                             "rest of the covered area)")
    parser.add_argument("--verbose", action="store_true", help="debug logging")


def _run_uv_data(args):
    setup_logging(args.verbose)
    from face3d.trainset.uv_layout import load_uv_model, write_model_uv_data

    # all seven files replace the folder's, or none does
    write_model_uv_data(load_uv_model(args.bfm), args.output, args.resolution, args.neck_zeroed, args.bfm)
    print(f"wrote PRNet's UV files ({args.resolution}x{args.resolution}) to {args.output}")
    return 0


PACK = Command(
    "pack", "pack a trainDataLabel.txt into one chunked HDF5 file",
    "Pack the crops and position maps listed in a label file into one HDF5 file (datasets images uint8, posmaps "
    "float16, names), read by face3d.trainset.pack.PackedTrainset.",
    _pack_arguments, _run_pack, one_blas_thread=True)
PREVIEW = Command(
    "preview", "draw a position map's points and 68 keypoints on its crop",
    "Draw a sparse grid of a position map's points (cyan) and the 68 keypoints read from it (green) onto its crop, "
    "next to the map as an RGB picture, and save a PNG (the same picture as generate --preview).",
    _preview_arguments, _run_preview, one_blas_thread=True)
SYNTHESIZE = Command(
    "synthesize", "render a small 300W-LP-format sample set from the morphable model",
    "Render faces with random identity, expression, texture, lighting and pose (yaw up to +-90 degrees) on varied "
    "backgrounds, saved as 300W-LP samples (.jpg + .mat with Pose_Para, Shape_Para, Exp_Para, Tex_Para, pt2d, roi).",
    _synthesize_arguments, _run_synthesize, one_blas_thread=True)
UV_DATA = Command(
    "uv-data", "write PRNet's UV files (uv_kpt_ind.txt, face_ind.txt, masks) for a model",
    "Write uv_kpt_ind.txt, face_ind.txt, triangles.txt, uv_face_mask.png, uv_weight_mask.png, uv_face_eyes.png and "
    "canonical_vertices.npy (the mean face at the face pixels, position-map axes: PRNet's pose reference) for the "
    "model in use, in the formats of PRNet's Data/uv-data.",
    _uv_data_arguments, _run_uv_data, one_blas_thread=True)
