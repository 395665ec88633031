"""``face3d export`` (and the root ``export.py``): a trained PRNet (Keras ``.keras`` or PRNet's TF1 checkpoint) for
Huawei Ascend ATC, phones (TFLite) and int8.

Writes ``DIR/prnet.pb`` (``DIR/prnet.onnx``), ``DIR/atc_pb.sh`` (``atc_onnx.sh``) with the exact ``atc`` command,
``DIR/fusion_switch.cfg`` for ``--no-fold-bn``, ``prnet.tflite`` / ``prnet_fp16.tflite`` (``--tflite``),
``prnet_int8.tflite`` / ``prnet_int8.onnx`` (``--int8``) and ``DIR/export.json``; every file is reloaded and
compared with the Keras model before it replaces an earlier export's files in DIR (which are removed, written or
not), and ``atc`` runs when it is on PATH. See ``face3d/prnet/export.py`` and the README section "Deploying on
Ascend".
"""
import sys

from face3d.cli._common import Command, DefaultsHelpFormatter, positive_int, setup_logging

__all__ = ["EXPORT", "run_export", "main"]

_PRECISION_MODES = ("force_fp16", "allow_fp32_to_fp16", "force_fp32", "must_keep_origin_dtype", "allow_mix_precision")


def _add_arguments(parser):
    parser.add_argument("--model", required=True,
                        help="trained Keras model file (.keras, e.g. best.keras) or PRNet's TF1 checkpoint (prefix, "
                             ".index or folder)")
    parser.add_argument("--output", required=True,
                        help="output folder for prnet.pb / prnet.onnx and the ATC files (an earlier export's files in "
                             "it are replaced or removed once the new ones pass their checks)")
    parser.add_argument("--batch", type=positive_int, default=1,
                        help="fixed batch size B of the exported input [B,S,S,3]")
    parser.add_argument("--no-fold-bn", action="store_true",
                        help="keep batch norm as FusedBatchNormV3 (then ATC needs fusion_switch.cfg, written too)")
    parser.add_argument("--onnx", action="store_true", help="also export DIR/prnet.onnx (checked with ONNX Runtime)")
    parser.add_argument("--opset", type=int, default=11, help="ONNX opset")
    parser.add_argument("--soc-version", default="Ascend310", help="ATC --soc_version (Ascend310, Ascend310P3, ...)")
    parser.add_argument("--precision-mode", default="force_fp16", choices=_PRECISION_MODES,
                        help="ATC --precision_mode")
    parser.add_argument("--tolerance", type=float, default=1e-3,
                        help="largest accepted |exported - Keras| of the normalised map on the check images")
    parser.add_argument("--no-atc", action="store_true", help="do not run atc even when it is on PATH")
    parser.add_argument("--tflite", action="store_true",
                        help="also write DIR/prnet.tflite (float32) and DIR/prnet_fp16.tflite (float16 weights)")
    parser.add_argument("--int8", action="store_true",
                        help="also write DIR/prnet_int8.tflite (full integer) and DIR/prnet_int8.onnx (QDQ), "
                             "calibrated on --calibration")
    parser.add_argument("--calibration", metavar="DIR", default=None,
                        help="int8 calibration images (with --int8 only): a folder of face crops or an AFLW2000-3D "
                             "folder")
    parser.add_argument("--uv-data", metavar="DIR", default=None,
                        help="the model's uv-data, whose keypoints give export.json's NME and whose resolution "
                             "frames AFLW2000-3D calibration crops (default: PRNet's "
                             "Data/uv-data beside its released checkpoint, else the embedded default model's; "
                             "needed for a .keras file import-prnet wrote)")


def run_export(args):
    """Run the export; prints the files, op types, differences and ATC commands. Returns the exit status: 2 for
    bad input (one line naming it), 1 when the exported graph or ``atc`` fails."""
    setup_logging(format="%(levelname)s %(message)s")
    from face3d.prnet.export import UnsupportedOpError, export_model

    try:
        result = export_model(args.model, args.output, batch_size=args.batch, fold_bn=not args.no_fold_bn,
                              onnx=args.onnx, opset=args.opset, soc_version=args.soc_version,
                              precision_mode=args.precision_mode, tolerance=args.tolerance, run_atc=not args.no_atc,
                              tflite=args.tflite, int8=args.int8, calibration=args.calibration,
                              uv_data=args.uv_data)
    except (UnsupportedOpError, FileNotFoundError, ValueError) as exc:
        print(f"{args.prog}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    print("wrote " + ", ".join(row["path"] for row in result.files.values()))
    print("op types (.pb): " + ", ".join(f"{k} x{v}" for k, v in result.op_types.items()))
    for fmt, diff in result.max_abs_diff.items():
        print(f"max |{fmt} - keras| = {diff:.3g} (on {result.checked_on})")
    print(f"each file against the Keras model, on {result.compared_on}:")
    for name, row in result.files.items():
        nme = "n/a" if row["nme_vs_float32"] is None else f"{100 * row['nme_vs_float32']:.3f} %"
        print(f"{name}: {row['size_mb']:.2f} MB, max |diff| {row['max_abs_diff']:.3g}, keypoint shift "
              f"{row['keypoint_shift_px']:.3f} px, NME vs float32 {nme}")
    for fmt, command in result.atc_commands.items():
        status = result.atc_status.get(fmt)
        if status is not None:
            outcome = f"atc exit status {status}"
        else:
            outcome = "atc not run (--no-atc)" if args.no_atc else "atc not on PATH: run it on the Ascend host"
        print(f"{command}\n  -> {outcome}")
    return 0


EXPORT = Command("export", "export a trained PRNet to a frozen .pb (and ONNX, TFLite, int8) for Ascend ATC and phones",
                 "Export a trained PRNet (Keras .keras file or PRNet's TF1 checkpoint) for Huawei Ascend ATC: a frozen "
                 ".pb and optionally ONNX, TFLite (float32, float16) and int8 (TFLite, ONNX QDQ).",
                 _add_arguments, run_export, DefaultsHelpFormatter)


def main(argv=None, prog=None):
    """``face3d export`` as a program of its own (the root ``export.py``); returns the exit status."""
    return EXPORT.main(argv, prog)
