"""``face3d import-prnet``: PRNet's released TF1 checkpoint (``Data/net-data/256_256_resfcn256_weight``) as a Keras
``.keras`` model, its tensors matched by name (``face3d.prnet.prnet_checkpoint``).
"""
import sys

from face3d.cli._common import Command, DefaultsHelpFormatter, setup_logging
from face3d.contract import INPUT_SIZE

__all__ = ["IMPORT_PRNET", "run_import"]


def _add_arguments(parser):
    parser.add_argument("--checkpoint", required=True, metavar="PREFIX",
                        help="PRNet's checkpoint: its prefix (Data/net-data/256_256_resfcn256_weight), .index file "
                             "or folder; the .data-00000-of-00001 file must be beside the index")
    parser.add_argument("--output", default="prnet.keras", metavar="FILE.keras", help="the Keras model written")
    parser.add_argument("--input-size", type=int, default=INPUT_SIZE, metavar="S",
                        help="input side of the built model (a multiple of 32; the weights do not depend on it)")


def run_import(args):
    """Convert the checkpoint; returns the exit status (2 with a one-line message naming the problem: no
    checkpoint, a truncated or corrupt file, tensors that do not fit resfcn256, an output that is no .keras)."""
    setup_logging(format="%(levelname)s %(message)s")
    from face3d.prnet.prnet_checkpoint import convert_checkpoint

    try:
        output, model = convert_checkpoint(args.checkpoint, args.output, args.input_size)
    except (FileNotFoundError, ValueError) as exc:
        print(f"import-prnet failed: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {output}: resfcn256, input {args.input_size}, {model.count_params():,} parameters; its maps are "
          "in PRNet's UV layout: use it with --uv-data <PRNet's Data/uv-data>")
    return 0


IMPORT_PRNET = Command("import-prnet", "convert PRNet's released TF1 checkpoint to a Keras model (needs face3d[train])",
                       "Convert PRNet's released TF1 checkpoint to our Keras resfcn256 by tensor name (Adam slots "
                       "ignored; a missing, extra or misshaped network tensor is an error naming it).",
                       _add_arguments, run_import, DefaultsHelpFormatter)
