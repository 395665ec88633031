"""``face3d evaluate`` (and the root ``evaluate.py``): a trained PRNet on an AFLW2000-3D-format folder.

The protocol (NME normalised by the ground-truth box, yaw buckets, balanced mean, CED/AUC) and its sources are
documented in ``face3d/prnet/evaluation.py``.
"""
import sys

from face3d.cli._common import (
    MODEL_TYPES,
    Command,
    add_trust_model_argument,
    error_text,
    positive_int,
    refuses_output_folder,
    setup_logging,
)

__all__ = ["EVALUATE", "run_evaluate", "main"]

_DESCRIPTION = (
    "AFLW2000-3D evaluation following PRNet / 3DDFA's benchmark: 68-landmark NME (2D and 3D) normalised by "
    "sqrt(w*h) of the ground-truth box (3D also by the box diagonal), by |yaw| bucket [0,30], (30,60], (60,90] and "
    "their balanced mean; CED curves, AUC at 7% and 10%, failure rate at 10%; with --dense, dense NME and the 3D "
    "reconstruction NME (symmetric Chamfer distance after rigid ICP). Writes report.json (with each metric's CED "
    "curve), report.md, ced.png and predictions.npz. An image without a .mat, unreadable, or whose predicted map "
    "holds NaN or inf is logged, listed in the report and skipped; the last line counts them and the exit status is "
    "then 1 (2 when none is left).")


def _add_arguments(parser):
    parser.add_argument("--model", required=True, metavar="PATH",
                        help=f"trained network: {MODEL_TYPES}")
    add_trust_model_argument(parser)
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="folder of image + .mat pairs (.mat with pt3d_68 (3, 68) and Pose_Para), searched "
                             "recursively (links to folders followed); hidden files and folders and a report's "
                             "ced.png are left out")
    parser.add_argument("--output", required=True, metavar="DIR", help="report folder (created)")
    parser.add_argument("--uv-data", metavar="DIR",
                        help="UV data the network was trained with (default: PRNet's Data/uv-data beside its "
                             "released checkpoint, else the embedded default model's; needed for a .keras file "
                             "import-prnet wrote)")
    parser.add_argument("--dense", metavar="MODEL",
                        help="dense ground truth from the .mat's Shape_Para/Exp_Para with this morphable model: "
                             "'default' (the embedded model) or a BFM.mat; the UV data must be that model's")
    parser.add_argument("--batch-size", type=positive_int, default=8, metavar="N", help="crops per network call (8)")
    parser.add_argument("--limit", type=positive_int, metavar="N",
                        help="evaluate only the first N images (sorted; one without a .mat is skipped)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_evaluate(args):
    """Run the evaluation; returns the exit status: 0, 1 when an image was skipped (the report covers fewer images
    than the folder holds; each is logged and listed in the report), 2 on bad input (a message naming it)."""
    setup_logging()
    if refuses_output_folder(args):  # before the model loads and every image is predicted
        return 2
    try:
        from face3d.prnet.evaluation import counts_line, evaluate_model
        from face3d.prnet.inference import PRN

        prn = PRN(args.model, uv_data=args.uv_data, trust_model=args.trust_model)
        dense_model = None
        if args.dense:
            from face3d.trainset.uv_layout import load_uv_model
            dense_model = load_uv_model(None if args.dense == "default" else args.dense)
        report = evaluate_model(prn, args.data, args.output, dense_model=dense_model, batch_size=args.batch_size,
                                limit=args.limit, progress=not args.quiet)
    except (FileNotFoundError, ValueError, ImportError) as error:
        print(f"{args.prog}: error: {error_text(error)}", file=sys.stderr)
        return 2
    print(f"{counts_line(report)}; report in {report['files']['markdown']}")
    return 1 if report["skipped"] else 0


EVALUATE = Command("evaluate", "AFLW2000-3D evaluation of a trained PRNet (NME, yaw buckets, CED)", _DESCRIPTION,
                   _add_arguments, run_evaluate)


def main(argv=None, prog=None):
    """``face3d evaluate`` as a program of its own (the root ``evaluate.py``); returns the exit status."""
    return EVALUATE.main(argv, prog)
