"""The ``face3d`` command line: ``fit``, ``generate``, ``pack``, ``preview``, ``synthesize``, ``uv-data`` (``--help``).

Also runnable as ``python -m face3d``. ``examples/9_generate_prnet_trainset.py`` takes exactly the words of
``face3d generate``: both build their parser with ``add_generate_arguments`` and run ``run_generate``.
Heavy modules (numpy, OpenCV, the generator) are imported inside the commands, after the BLAS thread
limit is set, so ``--help`` is instant and worker processes do not oversubscribe the cores.
"""
import argparse
import json
import logging
import os
import sys
from pathlib import Path

__all__ = ["main", "build_parser", "add_generate_arguments", "build_generate_parser", "generate_main", "run_generate",
           "DEFAULT_OUTPUT", "DEFAULT_ANGLES", "SYNTHETIC_DIR"]

DEFAULT_OUTPUT = "prnet_trainset"
DEFAULT_ANGLES = (15, -15, 30, -30, 45, -45, 60, -60)
SYNTHETIC_DIR = "synthetic_300W_LP"


def _angle(text):
    value = float(text)
    return int(value) if value.is_integer() else value


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _shard(text):
    from face3d.trainset.dataset import parse_shard  # light: no numpy work at import

    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _limit_blas_threads():
    """One BLAS thread per process: the parallelism is the worker processes (set before numpy loads)."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")


def _setup_logging(verbose):
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


# ---------------------------------------------------------------------------------------------------------
# generate


def add_generate_arguments(parser):
    """Add the arguments of ``face3d generate`` (and of example 9) to ``parser``; returns it."""
    parser.add_argument("--root", metavar="DIR",
                        help="input: the 300W-LP folder (AFW, HELEN, IBUG, LFPW and their _Flip folders; landmarks/ "
                             "is skipped) or any folder of image + .mat pairs. Default: render the embedded sample "
                             f"set into OUTPUT/{SYNTHETIC_DIR} first and use it")
    parser.add_argument("--bfm", metavar="BFM.mat",
                        help="the real Basel Face Model (BFM_info.mat and BFM_UV.mat are looked up next to it); "
                             "default: the embedded default model")
    parser.add_argument("--output", metavar="DIR", default=DEFAULT_OUTPUT,
                        help="output folder (created); receives the crops, maps, trainDataLabel.txt, summary.json "
                             "and uv-data/ (default: %(default)s)")
    parser.add_argument("--angles", metavar="DEG", nargs="*", type=_angle, default=list(DEFAULT_ANGLES),
                        help="in-plane rotations added per sample, in degrees; '--angles' alone disables them "
                             "(default: %(default)s)")
    parser.add_argument("--workers", metavar="N", type=_positive_int, default=None,
                        help="worker processes (default: all usable cores)")
    parser.add_argument("--shard", metavar="K/N", type=_shard, default=None,
                        help="process only the K-th of N contiguous blocks of the sorted sample list (1 <= K <= N); "
                             "writes trainDataLabel.part-KK-of-N.txt, concatenate them in K order")
    parser.add_argument("--limit", metavar="N", type=_non_negative_int, default=None,
                        help="use only the first N samples in sorted order (applied before --shard)")
    parser.add_argument("--seed", metavar="S", type=int, default=0,
                        help="base seed of the crop perturbation (and of the synthesized set); the per-sample seed "
                             "is derived from it and the sample's relative path (default: %(default)s)")
    parser.add_argument("--refit", action="store_true",
                        help="rotated copies refit the model to the rotated 68 landmarks instead of composing "
                             "the rotation into the pose exactly")
    parser.add_argument("--preview", action="store_true", help="also write <name>_preview.png per output")
    parser.add_argument("--no-perturb", action="store_true",
                        help="centre the crop exactly (no random shift/scale of the crop box)")
    parser.add_argument("--float32", action="store_true", help="save position maps as float32 (default float16)")
    parser.add_argument("--resolution", metavar="R", type=_positive_int, default=256,
                        help="side of the crops and position maps in pixels (default: %(default)s)")
    parser.add_argument("--neck-zeroed", action="store_true",
                        help="uv-data/uv_weight_mask.png with the neck at weight 0 (the PRNet paper) instead of "
                             "PRNet's shipped mask, which weights the neck as the rest of the face (default)")
    parser.add_argument("--label-paths", choices=("absolute", "relative"), default="absolute",
                        help="paths in the label file: absolute, or relative to --output (default: %(default)s)")
    parser.add_argument("--synthetic-count", metavar="N", type=_positive_int, default=24,
                        help="samples rendered when --root is not given (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser


def build_generate_parser(prog=None):
    """A stand-alone parser for the generate command (used by example 9)."""
    return add_generate_arguments(argparse.ArgumentParser(
        prog=prog, description=_GENERATE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter))


_GENERATE_DESCRIPTION = """\
Generate a PRNet training set (256x256 crops, UV position maps, rotated copies and trainDataLabel.txt) from
300W-LP-style samples. Resumable: rerunning the same command skips finished samples. Outputs mirror the input
folders: <name>.jpg, <name>.npy, [<name>_preview.png]; plus trainDataLabel.txt (one '<jpg> <npy>' line per
output, sorted), summary.json (written / skipped / failed with reasons) and uv-data/ (PRNet's UV files).
"""


def generate_main(argv=None, prog=None):
    """Parse ``argv`` with the generate parser and run it (the whole of example 9); returns the exit status."""
    _limit_blas_threads()  # before the parser's types import numpy
    return run_generate(build_generate_parser(prog=prog).parse_args(argv))


def _generation_config(args):
    from face3d.trainset.sample import GenerationConfig

    return GenerationConfig(resolution=args.resolution, perturb=not args.no_perturb, angles=tuple(args.angles),
                            refit=args.refit, posmap_dtype="float32" if args.float32 else "float16",
                            preview=args.preview, neck_zeroed=args.neck_zeroed)


def _print_summary(summary, stream):
    stream.write(f"samples {summary['samples']}: written {summary['written']}, skipped {summary['skipped']} "
                 f"(already done), failed {summary['failed']}; {summary['label_lines']} label lines in "
                 f"{summary['label_file']} ({summary['elapsed_s']:.1f} s, {summary['samples_per_s']:.2f} samples/s)\n")
    for failure in summary["failures"]:
        stream.write(f"  failed {failure['sample']}: {failure['reason']}\n")


def run_generate(args):
    """Run the generate command from parsed ``args``; returns the exit status (0 when the run completed)."""
    _limit_blas_threads()
    _setup_logging(args.verbose)
    from face3d.trainset.dataset import generate_dataset

    root = args.root
    if root is None:
        from face3d.trainset.synthetic import synthesize_dataset

        root = os.path.join(args.output, SYNTHETIC_DIR)
        synthesize_dataset(root, count=args.synthetic_count, seed=args.seed, model_path=args.bfm)
    try:
        summary = generate_dataset(root, args.output, _generation_config(args), model_path=args.bfm,
                                   workers=args.workers, shard=args.shard, limit=args.limit, seed=args.seed,
                                   relative_paths=args.label_paths == "relative", progress=not args.quiet)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: finished samples are kept; rerun the same command to resume\n")
        return 130
    _print_summary(summary, sys.stdout)
    return 0


# ---------------------------------------------------------------------------------------------------------
# pack, preview, synthesize


def _run_pack(args):
    _setup_logging(args.verbose)
    from face3d.trainset.pack import pack_label_file

    n = pack_label_file(args.label, args.output, base_dir=args.base_dir,
                        posmap_dtype="float32" if args.float32 else "float16", compression=args.compression,
                        progress=not args.quiet)
    print(f"packed {n} samples into {args.output}")
    return 0


def _find_uv_data(npy_path):
    for folder in Path(npy_path).resolve().parents:
        if (folder / "uv-data" / "uv_kpt_ind.txt").is_file():
            return folder / "uv-data"
    return None


def _run_preview(args):
    _setup_logging(args.verbose)
    import cv2
    import numpy as np

    from face3d.trainset.sample import draw_preview

    npy = Path(args.npy)
    posmap = np.load(npy, allow_pickle=False).astype(np.float32)
    if posmap.ndim != 3 or posmap.shape[2] != 3:
        raise ValueError(f"{str(npy)!r} must hold an (R, R, 3) position map, got shape {posmap.shape}")
    image_path = Path(args.image) if args.image else npy.with_suffix(".jpg")
    image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read the crop {str(image_path)!r} (give it with --image)")
    uv_dir = Path(args.uv_data) if args.uv_data else _find_uv_data(npy)
    if uv_dir is None or not (uv_dir / "uv_kpt_ind.txt").is_file():
        raise FileNotFoundError(f"no uv-data/uv_kpt_ind.txt found above {str(npy)!r}; give the folder with --uv-data")
    uv_kpt_ind = np.loadtxt(uv_dir / "uv_kpt_ind.txt", ndmin=2).astype(np.int64)  # (2, 68): x row, y row
    picture = draw_preview(image[..., ::-1], posmap, uv_kpt_ind)
    output = Path(args.output) if args.output else npy.with_name(npy.stem + "_preview.png")
    if not cv2.imwrite(str(output), np.ascontiguousarray(picture[..., ::-1])):
        raise ValueError(f"cannot write {str(output)!r}")
    print(f"wrote {output}")
    return 0


def _run_synthesize(args):
    _setup_logging(args.verbose)
    from face3d.trainset.synthetic import synthesize_dataset

    paths = synthesize_dataset(args.output, count=args.count, seed=args.seed, model_path=args.bfm, size=args.size)
    print(json.dumps({"output": os.path.abspath(args.output), "samples": len(paths)}))
    return 0


def _run_uv_data(args):
    _setup_logging(args.verbose)
    from face3d.morphable_model import MorphableModel
    from face3d.trainset.uv_data import build_uv_data, write_uv_data

    uv_data = build_uv_data(MorphableModel(args.bfm), resolution=args.resolution, neck_zeroed=args.neck_zeroed)
    write_uv_data(uv_data, args.output)
    print(f"wrote PRNet's UV files ({args.resolution}x{args.resolution}) to {args.output}")
    return 0


def add_fit_arguments(parser):
    """Add the arguments of ``face3d fit`` to ``parser`` (``face3d.fitting.command.add_fit_arguments``)."""
    from face3d.fitting.command import add_fit_arguments as add

    return add(parser)


def _run_fit(args):
    from face3d.fitting.command import run_fit

    return run_fit(args)


def build_parser():
    """The ``face3d`` parser with its subcommands."""
    parser = argparse.ArgumentParser(prog="face3d", description="3D-face ground truth and PRNet training sets.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = sub.add_parser("generate", help="generate a PRNet training set (resumable, sharded, parallel)",
                         description=_GENERATE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generate_arguments(gen)
    gen.set_defaults(func=run_generate)

    fit = sub.add_parser("fit", help="fit the morphable model to your photos' 68 landmarks: 300W-LP samples",
                         description="Fit the morphable model (contour-aware) to the 68 landmarks of every photo "
                                     "and write the photo and a 300W-LP .mat (Pose_Para, Shape_Para, Exp_Para, "
                                     "pt2d, roi, fit_nme) per photo, mirroring the input folders: the --root of "
                                     "face3d generate. Resumable, parallel; summary.json lists each fit's error.")
    add_fit_arguments(fit)
    fit.set_defaults(func=_run_fit)

    pack = sub.add_parser("pack", help="pack a trainDataLabel.txt into one chunked HDF5 file",
                          description="Pack the crops and position maps listed in a label file into one HDF5 file "
                                      "(datasets images uint8, posmaps float16, names), read by "
                                      "face3d.trainset.pack.PackedTrainset.")
    pack.add_argument("label", help="trainDataLabel.txt")
    pack.add_argument("output", help="output .h5 file")
    pack.add_argument("--base-dir", metavar="DIR",
                      help="folder relative label paths are resolved against (default: the label file's folder)")
    pack.add_argument("--compression", choices=("none", "lzf", "gzip"), default="none",
                      help="HDF5 compression (default: %(default)s)")
    pack.add_argument("--float32", action="store_true", help="store position maps as float32 (default float16)")
    pack.add_argument("--quiet", action="store_true", help="no progress bar")
    pack.add_argument("--verbose", action="store_true", help="debug logging")
    pack.set_defaults(func=_run_pack)

    prev = sub.add_parser("preview", help="draw a position map's points and 68 keypoints on its crop",
                          description="Draw a sparse grid of a position map's points (cyan) and the 68 keypoints "
                                      "read from it (green) onto its crop, next to the map as an RGB picture, and "
                                      "save a PNG (the same picture as generate --preview).")
    prev.add_argument("npy", help="position map <name>.npy written by generate")
    prev.add_argument("--image", metavar="JPG", help="the crop (default: <name>.jpg next to the map)")
    prev.add_argument("--uv-data", metavar="DIR",
                      help="folder with uv_kpt_ind.txt (default: the nearest uv-data/ above the map)")
    prev.add_argument("--output", metavar="PNG", help="output picture (default: <name>_preview.png)")
    prev.add_argument("--verbose", action="store_true", help="debug logging")
    prev.set_defaults(func=_run_preview)

    syn = sub.add_parser("synthesize", help="render a small 300W-LP-format sample set from the morphable model",
                         description="Render faces with random identity, expression, texture, lighting and pose "
                                     "(yaw up to +-90 degrees) on varied backgrounds, saved as 300W-LP samples "
                                     "(.jpg + .mat with Pose_Para, Shape_Para, Exp_Para, Tex_Para, pt2d, roi).")
    syn.add_argument("--output", metavar="DIR", default=SYNTHETIC_DIR, help="output folder (default: %(default)s)")
    syn.add_argument("--count", metavar="N", type=_positive_int, default=24, help="samples (default: %(default)s)")
    syn.add_argument("--seed", metavar="S", type=int, default=0, help="random seed (default: %(default)s)")
    syn.add_argument("--size", metavar="PX", type=_positive_int, default=450,
                     help="image side in pixels (default: %(default)s)")
    syn.add_argument("--bfm", metavar="BFM.mat", help="the real Basel Face Model (default: the embedded model)")
    syn.add_argument("--verbose", action="store_true", help="debug logging")
    syn.set_defaults(func=_run_synthesize)

    uvd = sub.add_parser("uv-data", help="write PRNet's UV files (uv_kpt_ind.txt, face_ind.txt, masks) for a model",
                         description="Write uv_kpt_ind.txt, face_ind.txt, triangles.txt, uv_face_mask.png, "
                                     "uv_weight_mask.png and uv_face_eyes.png for the model in use, as PRNet's "
                                     "Data/uv-data ships them.")
    uvd.add_argument("--output", metavar="DIR", default=os.path.join("Data", "uv-data"),
                     help="output folder (default: %(default)s)")
    uvd.add_argument("--bfm", metavar="BFM.mat", help="the real Basel Face Model (default: the embedded model)")
    uvd.add_argument("--resolution", metavar="R", type=_positive_int, default=256,
                     help="UV map side in pixels (default: %(default)s)")
    uvd.add_argument("--neck-zeroed", action="store_true",
                     help="the paper's weight mask with the neck at 0 (default: PRNet's shipped mask)")
    uvd.add_argument("--verbose", action="store_true", help="debug logging")
    uvd.set_defaults(func=_run_uv_data)
    return parser


def main(argv=None):
    """Entry point of the ``face3d`` console script; returns the exit status."""
    _limit_blas_threads()
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
