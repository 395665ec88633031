"""``face3d generate``: a PRNet training set from 300W-LP-style samples (example 9 takes the same words).

The flags that set a ``GenerationConfig`` field (``CONFIG_FIELDS``) take their default from it (``--max-pixels``:
from ``add_max_pixels_argument``, the same ``DEFAULT_MAX_PIXELS``) and store under the field's name, so
``generation_config(args)`` builds the config from the parsed arguments field by field.
"""
import argparse
import contextlib
import math
import os
import sys

from face3d.cli._common import (
    Command,
    add_max_pixels_argument,
    blas_threads_limited,
    field_default,
    int_at_least,
    non_negative_int,
    positive_int,
    setup_logging,
    write_item_lines,
)

__all__ = ["GENERATE", "add_generate_arguments", "build_generate_parser", "generate_main", "run_generate",
           "generation_config", "DEFAULT_OUTPUT", "SYNTHETIC_DIR", "CONFIG_FIELDS"]

DEFAULT_OUTPUT = "prnet_trainset"
SYNTHETIC_DIR = "synthetic_300W_LP"
CONFIG_FIELDS = ("angles", "refit", "preview", "perturb", "posmap_dtype", "resolution", "neck_zeroed",
                 "allow_short_params", "max_pixels")

_DESCRIPTION = """\
Generate a PRNet training set (crops and UV position maps, 256x256 unless --resolution, rotated copies and
trainDataLabel.txt) from 300W-LP-style samples. Resumable: rerunning the same command skips finished samples; a
rerun with other settings redoes them, removing their files those settings do not write. Outputs mirror the input
folders: <name>.jpg, <name>.npy, [<name>_preview.png]; plus trainDataLabel.txt (one '<jpg> <npy>' line per
output, sorted), summary.json (written / skipped / failed with reasons) and uv-data/ (PRNet's UV files).
"""


def _angle(text):
    """argparse type of --angles: a finite number of degrees, an int when whole (15, not 15.0)."""
    value = float(text)
    if not math.isfinite(value):  # a NaN or infinite rotation gives an all-NaN map and a black crop
        raise argparse.ArgumentTypeError(f"expected a finite number of degrees, got {text!r}")
    return int(value) if value.is_integer() else value


def _shard(text):
    from face3d.trainset.discovery import parse_shard  # light: no numpy at import

    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_generate_arguments(parser):
    """Add the arguments of ``face3d generate`` (and of example 9) to ``parser``; returns it."""
    from face3d.trainset.sample import MIN_RESOLUTION, GenerationConfig

    def default(name):
        return field_default(GenerationConfig, name)

    parser.add_argument("--root", metavar="DIR",
                        help="input: the 300W-LP folder (AFW, HELEN, IBUG, LFPW and their _Flip folders; landmarks/ "
                             "is skipped) or any folder of image + .mat pairs. Default: render the embedded sample "
                             f"set into OUTPUT/{SYNTHETIC_DIR} first and use it")
    parser.add_argument("--bfm", metavar="BFM.mat",
                        help="the real Basel Face Model (BFM_info.mat and BFM_UV.mat are looked up next to it); "
                             "default: the embedded default model")
    parser.add_argument("--uv-data", metavar="DIR",
                        help="an existing uv-data folder to build the set on (e.g. PRNet's Data/uv-data with --bfm "
                             "the real BFM): checked against the model and copied as it is into OUTPUT/uv-data, so "
                             "training uses its masks and keypoints; default: built for the model")
    parser.add_argument("--output", metavar="DIR", default=DEFAULT_OUTPUT,
                        help="output folder (created); receives the crops, maps, trainDataLabel.txt, summary.json "
                             "and uv-data/ (default: %(default)s)")
    parser.add_argument("--angles", metavar="DEG", nargs="*", type=_angle, default=list(default("angles")),
                        help="in-plane rotations added per sample, in degrees; '--angles' alone disables them "
                             "(default: %(default)s)")
    parser.add_argument("--workers", metavar="N", type=positive_int, default=None,
                        help="worker processes (default: all usable cores)")
    parser.add_argument("--shard", metavar="K/N", type=_shard, default=None,
                        help="process only the K-th of N contiguous blocks of the sorted sample list (1 <= K <= N); "
                             "writes trainDataLabel.part-KK-of-N.txt, concatenate them in K order")
    parser.add_argument("--limit", metavar="N", type=non_negative_int, default=None,
                        help="use only the first N samples in sorted order (applied before --shard)")
    parser.add_argument("--seed", metavar="S", type=non_negative_int, default=0,
                        help="base seed of the crop perturbation (and of the synthesized set); the per-sample seed "
                             "is derived from it and the sample's relative path (default: %(default)s)")
    parser.add_argument("--refit", action="store_true", default=default("refit"),
                        help="rotated copies refit the model to the rotated 68 landmarks instead of composing "
                             "the rotation into the pose exactly")
    parser.add_argument("--preview", action="store_true", default=default("preview"),
                        help="also write <name>_preview.png per output")
    parser.add_argument("--no-perturb", dest="perturb", action="store_false", default=default("perturb"),
                        help="centre the crop exactly (no random shift/scale of the crop box)")
    parser.add_argument("--float32", dest="posmap_dtype", action="store_const", const="float32",
                        default=default("posmap_dtype"),
                        help="save position maps as float32 (default %(default)s)")
    parser.add_argument("--resolution", metavar="R", type=int_at_least(MIN_RESOLUTION, "pixels"),
                        default=default("resolution"),
                        help="side of the crops and position maps in pixels (default: %(default)s)")
    parser.add_argument("--neck-zeroed", action="store_true", default=default("neck_zeroed"),
                        help="uv-data/uv_weight_mask.png with the neck at weight 0 (the PRNet paper) instead of "
                             "48 like the rest of the covered area (default)")
    parser.add_argument("--allow-short-params", action="store_true", default=default("allow_short_params"),
                        help="zero-pad Shape_Para / Exp_Para shorter than the model's bases (a data set that "
                             "truncates them on purpose); by default such a sample fails, as 300W-LP has them all")
    add_max_pixels_argument(parser)
    parser.add_argument("--max-failures", metavar="N", type=non_negative_int, default=0,
                        help="exit status 0 with up to N failed samples (a data set with known bad files); more "
                             "failures, or an unreadable folder counted as one, exit with status 1 "
                             "(default: %(default)s)")
    parser.add_argument("--label-paths", choices=("absolute", "relative"), default="absolute",
                        help="paths in the label file: absolute, or relative to --output (default: %(default)s)")
    parser.add_argument("--synthetic-count", metavar="N", type=positive_int, default=24,
                        help="samples rendered when --root is not given (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser


def generation_config(args):
    """The GenerationConfig of parsed generate arguments: the CONFIG_FIELDS set by flags, the rest their defaults."""
    from face3d.trainset.sample import GenerationConfig

    values = {name: getattr(args, name) for name in CONFIG_FIELDS}
    values["angles"] = tuple(values["angles"])
    return GenerationConfig(**values)


def _print_summary(summary, summary_path, stream):
    """Write the summary line of a run and under it the folders that could not be listed (first: each stands for
    its samples) and the failed samples, at most ``LISTED_ITEMS`` lines (``summary_path`` lists them all)."""
    stream.write(f"samples {summary['samples']}: written {summary['written']}, skipped {summary['skipped']} "
                 f"(already done), failed {summary['failed']}; {summary['label_lines']} label lines in "
                 f"{summary['label_file']} ({summary['elapsed_s']:.1f} s, {summary['samples_per_s']:.2f} samples/s)\n")
    write_item_lines(stream, [f"cannot list folder {folder['folder']}: {folder['reason']}"
                              for folder in summary["unreadable_folders"]] +
                     [f"failed {failure['sample']}: {failure['reason']}" for failure in summary["failures"]],
                     summary_path)


def run_generate(args):
    """Run the generate command from parsed ``args``; returns the exit status: 0 when the run completed with at
    most ``--max-failures`` failed samples and unreadable folders, 1 with more, 2 for options ``GenerationConfig``
    refuses (and, through ``run_parsed``, for unusable inputs and a write refused for good: a full disk, and 130 or
    143 when interrupted or terminated, with ``stop_hint``). One BLAS thread per process while it runs."""
    with blas_threads_limited():
        return _generate(args)


def _generate(args):
    """``run_generate``'s work."""
    setup_logging(args.verbose)
    from face3d.trainset.dataset import generate_dataset, summary_file_name

    try:
        config = generation_config(args)
    except ValueError as error:  # values the parser cannot judge one by one, e.g. --angles 15 15.0
        print(f"{args.prog}: error: {error}", file=sys.stderr)
        return 2
    root = args.root
    with contextlib.ExitStack() as held:
        if root is None:
            from face3d.trainset.synthetic import synthesize_dataset
            from face3d.utils.atomic import output_lock

            def hold_output():
                # the set is written into the output: the run holds it from then to its end, generate_dataset's lock
                # being this hold (a complete set reused is left to generate_dataset's lock)
                held.enter_context(output_lock(args.output, "face3d generate", args.shard))

            root = os.path.join(args.output, SYNTHETIC_DIR)
            synthesize_dataset(root, count=args.synthetic_count, seed=args.seed, model_path=args.bfm,
                               before_writing=hold_output)
        summary = generate_dataset(root, args.output, config, model_path=args.bfm,
                                   workers=args.workers, shard=args.shard, limit=args.limit, seed=args.seed,
                                   relative_paths=args.label_paths == "relative", progress=not args.quiet,
                                   uv_data=args.uv_data)
    _print_summary(summary, os.path.join(summary["output"], summary_file_name(args.shard)), sys.stdout)
    problems = [f"{summary['failed']} samples failed"] * bool(summary["failed"]) + \
        [f"{len(summary['unreadable_folders'])} folders could not be listed"] * bool(summary["unreadable_folders"])
    if summary["failed"] + len(summary["unreadable_folders"]) > args.max_failures:
        sys.stderr.write(f"{args.prog}: {' and '.join(problems)} (more than --max-failures {args.max_failures})\n")
        return 1
    return 0


GENERATE = Command("generate", "generate a PRNet training set (resumable, sharded, parallel)", _DESCRIPTION,
                   add_generate_arguments, run_generate, argparse.RawDescriptionHelpFormatter, one_blas_thread=True,
                   stop_hint="finished samples are kept: rerun the same command to resume")


def build_generate_parser(prog=None):
    """A stand-alone parser for the generate command (used by example 9)."""
    return GENERATE.parser(prog)


def generate_main(argv=None, prog=None):
    """Parse ``argv`` with the generate parser and run it (the whole of example 9); returns the exit status."""
    return GENERATE.main(argv, prog)
