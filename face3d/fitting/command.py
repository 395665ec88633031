"""The ``face3d fit`` command: its arguments and its run (the work is ``face3d.fitting.photos``).

Light to import (argparse only), so that building the ``face3d`` parser stays instant.
"""
import logging
import os
import sys

__all__ = ["add_fit_arguments", "run_fit", "DEFAULT_MAX_FIT_ERROR"]

DEFAULT_MAX_FIT_ERROR = 0.05



def _fraction(text):
    value = float(text)
    if not value > 0:
        raise ValueError(f"expected a positive fraction, got {text!r}")
    return value


def add_fit_arguments(parser):
    """Add the arguments of ``face3d fit`` to ``parser``; returns it."""
    parser.add_argument("--images", required=True, metavar="DIR",
                        help="folder of face photos (.jpg, .jpeg, .png; nested folders are mirrored)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--landmarks", metavar="DIR",
                        help="folder of the 68-landmark files at the images' relative paths and stems (default: "
                             "beside each image): iBUG .pts (1-based), .txt (68 lines 'x y'), .npy (68, 2), .mat "
                             "with pt2d (2, 68) or pt3d_68 (3, 68)")
    source.add_argument("--detect", nargs="?", const="auto", choices=("auto", "cnn", "hog"), metavar="KIND",
                        help="find the landmarks with dlib instead (pip install -e '.[detect]'): the face detector "
                             "(auto: the CNN when face_recognition_models has it, else HOG) and its 68-point "
                             "shape predictor")
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="output folder: <stem> image (hard link, else copy) + <stem>.mat per photo, "
                             "summary.json; the --root of face3d generate")
    parser.add_argument("--bfm", metavar="BFM.mat", help="the real Basel Face Model (default: the embedded model)")
    parser.add_argument("--workers", metavar="N", type=int, default=None,
                        help="worker processes (default: all usable cores)")
    parser.add_argument("--max-fit-error", metavar="E", type=_fraction, default=DEFAULT_MAX_FIT_ERROR,
                        help="drop fits whose landmark NME (mean distance / sqrt(w*h) of the landmarks' box) is "
                             "above E, a fraction (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser


def run_fit(args):
    """Run ``face3d fit`` from parsed ``args``; returns the exit status (1 when an image failed, 2 on bad input)."""
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from face3d.fitting.photos import FitConfig, fit_photos

    try:
        config = FitConfig(max_fit_error=args.max_fit_error, detect=args.detect,
                           landmarks=None if args.landmarks is None else os.path.abspath(args.landmarks))
        summary = fit_photos(args.images, args.output, model_path=args.bfm, config=config, workers=args.workers,
                             progress=not args.quiet)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        sys.stderr.write(f"face3d fit: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: finished images are kept; rerun the same command to resume\n")
        return 130
    mean = "-" if summary["fit_nme_mean"] is None else f"{100 * summary['fit_nme_mean']:.2f} %"
    sys.stdout.write(f"photos {summary['photos']}: written {summary['written']}, skipped {summary['skipped']} "
                     f"(already done), dropped {summary['dropped']} (fit NME > {100 * args.max_fit_error:g} %), "
                     f"failed {summary['failed']}; mean fit NME {mean}; {summary['samples']} samples in "
                     f"{summary['output']}\n")
    for item in summary["dropped_images"]:
        sys.stdout.write(f"  dropped {item['image']}: fit NME {100 * item['fit_nme']:.2f} %\n")
    for failure in summary["failures"]:
        sys.stdout.write(f"  failed {failure['image']}: {failure['reason']}\n")
    return 1 if summary["failed"] else 0
