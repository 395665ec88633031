"""``face3d offline pre_process | run | post_process``: the msame flow of ``face3d.prnet.offline`` without a board.

``pre`` and ``post`` are short aliases.
"""
import argparse
import sys
from pathlib import Path

from face3d.cli._common import (
    Command,
    add_max_pixels_argument,
    add_trust_model_argument,
    positive_int,
    setup_logging,
)
from face3d.contract import INPUT_SIZE

__all__ = ["OFFLINE"]

_STEPS = ("pre_process", "run", "post_process")


def _add_arguments(parser):
    from face3d.prnet import offline

    parser.epilog = offline.__doc__
    sub = parser.add_subparsers(dest="step", required=True, metavar="STEP")
    pre = sub.add_parser("pre_process", aliases=["pre"], help="test images -> DIR/bin/*.bin crops + DIR/manifest.json")
    pre.add_argument("--data", required=True, help="AFLW2000-3D-format folder (image + .mat), or images with --boxes")
    pre.add_argument("--output", required=True, metavar="DIR",
                     help="DIR/bin/ gets the .bin files (msame's --input, nothing else in it), DIR/manifest.json the "
                          "crops' records")
    pre.add_argument("--input-size", type=positive_int, default=INPUT_SIZE,
                     help="the exported network's input side S (at most the UV data's resolution)")
    pre.add_argument("--batch", type=positive_int, default=1, help="images per .bin (the .om's batch size)")
    pre.add_argument("--uv-data", default=None,
                     help="UV-data folder of the model's maps, whose keypoints post_process reads (default: the "
                          "embedded default model's; PRNet's Data/uv-data for PRNet's released model)")
    pre.add_argument("--boxes", default=None,
                     help="boxes file: '<image file, relative to --data> x0 y0 x1 y1' per line (no ground truth; "
                          "the name may hold spaces and #; a line starting with # is a comment)")
    pre.add_argument("--limit", type=positive_int, default=None, help="only the first N images (sorted)")
    add_max_pixels_argument(pre)
    run = sub.add_parser("run", help="msame-compatible runner on the host (ONNX Runtime or TensorFlow)")
    run.add_argument("--model", required=True,
                     help="the network: .onnx or .pb from face3d export, a .keras file or PRNet's checkpoint "
                          "(--fp16, --int8: .onnx only)")
    run.add_argument("--input", required=True,
                     help="DIR/bin of pre_process: every file in it but hidden ones, in sorted order, as msame runs "
                          "them; DIR/manifest.json beside it gives the run id and each file's faces")
    run.add_argument("--output", required=True,
                     help="parent folder of the <YYYYMMDD_HHMMSS> result folder, outside --input")
    run.add_argument("--fp16", action="store_true", help="run the ONNX model converted to float16")
    run.add_argument("--int8", action="store_true",
                     help="run the ONNX model quantized to int8 (static QDQ, per-channel weights: the scheme of "
                          "Ascend's AMCT), to estimate an int8 board deployment's accuracy")
    run.add_argument("--calibration", default=None, metavar="DIR",
                     help="--int8 calibration images: face crops or an AFLW2000-3D folder (default: the input .bin "
                          "crops); refused without --int8")
    run.add_argument("--threads", type=positive_int, default=None, help="ONNX Runtime intra-op threads")
    add_trust_model_argument(run)
    post = sub.add_parser("post_process", aliases=["post"], help="outputs + manifest -> landmarks, NME report, latency")
    post.add_argument("--result", required=True, help="folder with <stem>_output_0.bin (runner or msame output)")
    post.add_argument("--manifest", required=True, help="DIR/manifest.json from pre_process")
    post.add_argument("--output", required=True, help="report folder")
    post.add_argument("--timing", default=None, help="timing.json or an msame log (default RESULT/timing.json)")
    for name, step in zip(_STEPS, (pre, run, post)):
        step.set_defaults(step_name=name)


def _run_step(args):
    """Run one step of the flow; returns the exit status: 0; 1 when pre_process or post_process skipped an image or
    sample (each logged with the reason and listed in the manifest's or report's ``skipped``; a printed line counts
    them), as ``face3d evaluate`` does; 2 with a one-line message naming the bad input."""
    setup_logging(format="%(levelname)s %(message)s")
    from face3d.prnet.evaluation import counts_line
    from face3d.prnet.offline import INPUTS, MANIFEST, post_process, pre_process, run_offline

    try:
        skipped = 0
        if args.step_name == "pre_process":
            manifest = pre_process(args.data, args.output, args.input_size, args.uv_data, args.boxes, args.batch,
                                   args.limit, args.max_pixels)
            print(f"wrote {len(manifest['files'])} .bin files for {len(manifest['samples'])} faces to "
                  f"{Path(args.output) / INPUTS} and {Path(args.output) / MANIFEST} ({len(manifest['skipped'])} "
                  "skipped)")
            skipped = len(manifest["skipped"])
        elif args.step_name == "run":
            run_offline(args.model, args.input, args.output, fp16=args.fp16, threads=args.threads, int8=args.int8,
                        calibration=args.calibration, trust_model=args.trust_model)
        else:
            report = post_process(args.result, args.manifest, args.output, args.timing)
            skipped = len(report["skipped"])
            if "nme_2d" in report:
                print(counts_line(report))
            else:
                count = len(report["names"]) + skipped
                print(f"{count} image{'s' * (count != 1)}: {len(report['names'])} with landmarks, {skipped} skipped")
            if report.get("latency"):
                print(f"latency per image {report['latency']['image_ms_mean']:.2f} ms "
                      f"({report['latency']['images_per_s']:.1f} images/s)")
            print(f"report in {args.output}")
    except (FileNotFoundError, ValueError) as exc:
        print(f"{args.step_name} failed: {exc}", file=sys.stderr)
        return 2
    return 1 if skipped else 0


OFFLINE = Command("offline", "the Ascend msame flow on the host: pre_process, run, post_process",
                  "The offline-inference flow around an Ascend .om (msame), runnable and testable without a board.",
                  _add_arguments, _run_step, argparse.RawDescriptionHelpFormatter)
