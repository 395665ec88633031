"""``face3d fit``: your photos and their 68 landmarks as 300W-LP samples (``face3d.fitting.photos``)."""
import os
import sys

from face3d.cli._common import (
    Command,
    add_field_argument,
    add_max_pixels_argument,
    error_text,
    positive_int,
    setup_logging,
    write_item_lines,
)
from face3d.utils.errors import install_command

__all__ = ["FIT", "add_fit_arguments", "run_fit"]

_DESCRIPTION = (
    "Fit the morphable model (contour-aware, but for AFLW2000-3D's pt3d_68) to the 68 landmarks of every photo and "
    "write the photo and a 300W-LP .mat (Pose_Para, Shape_Para, Exp_Para, pt2d, roi, fit_nme) per photo, mirroring "
    "the input folders: the --root of face3d generate. Resumable, parallel; summary.json lists each fit's error, the "
    "dropped fits and the failures.")


def add_fit_arguments(parser):
    """Add the arguments of ``face3d fit`` to ``parser``; returns it."""
    from face3d.fitting.photos import FitConfig
    from face3d.utils.image_header import IMAGE_SUFFIXES

    parser.add_argument("--images", required=True, metavar="DIR",
                        help=f"folder of face photos ({', '.join(IMAGE_SUFFIXES)}; nested folders are mirrored)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--landmarks", metavar="DIR",
                        help="folder of the 68-landmark files at the images' relative paths and stems (default: "
                             "beside each image): iBUG .pts (1-based), .txt (68 lines 'x y'), .npy (68, 2), .mat "
                             "with pt2d (2, 68) or pt3d_68 (3, 68) (projected vertices: fitted without jaw marching)")
    source.add_argument("--detect", nargs="?", const="auto", choices=("auto", "cnn", "hog"), metavar="KIND",
                        help=f"find the landmarks with dlib instead ({install_command('detect')}): the face "
                             "detector (auto: the CNN when face_recognition_models has it, else HOG) and its "
                             "68-point shape predictor")
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="output folder: <stem> image (hard link, else copy) + <stem>.mat per photo, "
                             "summary.json; the --root of face3d generate")
    parser.add_argument("--bfm", metavar="BFM.mat", help="the real Basel Face Model (default: the embedded model)")
    parser.add_argument("--workers", metavar="N", type=positive_int, default=None,
                        help="worker processes (default: all usable cores)")
    add_field_argument(parser, FitConfig, "max_fit_error", metavar="E",
                       help="drop fits whose landmark NME (mean distance / sqrt(w*h) of the landmarks' box) is "
                            "above E, a fraction (default: %(default)s)")
    add_field_argument(parser, FitConfig, "landmark_noise", metavar="PX",
                       help="expected error of the landmarks in pixels (default: %(default)s, a detector's); "
                            "smaller for exact landmarks lets the fit follow them more closely")
    add_max_pixels_argument(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser


def run_fit(args):
    """Run ``face3d fit`` from parsed ``args``; returns the exit status (1 when an image failed or a folder could
    not be listed, 2 on bad input)."""
    setup_logging(args.verbose)
    from face3d.fitting.photos import FitConfig, fit_photos
    from face3d.prnet.detect import DetectorUnavailable
    from face3d.trainset.dataset import SUMMARY_FILE

    try:
        config = FitConfig(max_fit_error=args.max_fit_error, landmark_noise=args.landmark_noise, detect=args.detect,
                           landmarks=None if args.landmarks is None else os.path.abspath(args.landmarks),
                           max_pixels=args.max_pixels)
        summary = fit_photos(args.images, args.output, model_path=args.bfm, config=config, workers=args.workers,
                             progress=not args.quiet)
    except DetectorUnavailable as error:  # dlib or one of its model files missing: the message says which
        print(f"{args.prog}: error: {error}; or give the photos' 68-landmark files (--landmarks DIR, default: beside "
              "each image)", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, ImportError) as error:
        print(f"{args.prog}: error: {error_text(error)}", file=sys.stderr)
        return 2
    mean = "-" if summary["fit_nme_mean"] is None else f"{100 * summary['fit_nme_mean']:.2f} %"
    print(f"photos {summary['photos']}: written {summary['written']}, skipped {summary['skipped']} (already done), "
          f"dropped {summary['dropped']} (fit NME > {100 * args.max_fit_error:g} %), failed {summary['failed']}; "
          f"mean fit NME {mean}; {summary['samples']} samples in {summary['output']}")
    # the folders first (each stands for its photos), then the failures (the exit status) and the dropped fits
    write_item_lines(sys.stdout, [f"cannot list {folder['folder']}: {folder['reason']}"
                                  for folder in summary["unreadable_folders"]] +
                     [f"failed {failure['image']}: {failure['reason']}" for failure in summary["failures"]] +
                     [f"dropped {item['image']}: fit NME {100 * item['fit_nme']:.2f} %"
                      for item in summary["dropped_images"]],
                     os.path.join(summary["output"], SUMMARY_FILE))
    return 1 if summary["failed"] or summary["unreadable_folders"] else 0


FIT = Command("fit", "fit the morphable model to your photos' 68 landmarks: 300W-LP samples for generate",
              _DESCRIPTION, add_fit_arguments, run_fit, one_blas_thread=True,
              stop_hint="finished images are kept: rerun the same command to resume")
