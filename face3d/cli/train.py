"""``face3d train`` (and the root ``train.py``): train PRNet's resfcn256 on a generated training set.

One flag per ``TrainConfig`` field, ``--<field-name>`` with the field's type and default (``_HELP`` holds only the
help text), and one ``--no-<name>`` per AugmentConfig switch, so the flags follow the config. TensorFlow is imported
only once training starts: ``--help`` and bad input never load it.
"""
import dataclasses
import sys

from face3d.cli._common import (
    Command,
    DefaultsHelpFormatter,
    add_field_argument,
    field_default,
    refuses_output_folder,
    setup_logging,
)

__all__ = ["TRAIN", "add_train_arguments", "train_config", "run_train", "main"]

_DESCRIPTION = (
    "Train PRNet's resfcn256 (Feng et al. 2018) with Keras 3 on TensorFlow. Inputs are crops and position maps from "
    "face3d's generator; images are divided by 255 and maps by 1.1 x the map resolution. Loss: MSE weighted by "
    "uv_weight_mask.png. Adam, lr halved every 5 epochs. Uses MirroredStrategy when several GPUs are visible; CPU "
    "works too.")

_SOURCES = ("train_list", "h5")  # exactly one is required
# TrainConfig field -> (metavar, help text, extra add_argument keywords)
_HELP = {
    "train_list": ("FILE", "trainDataLabel.txt: one '<image path> <npy path>' line per sample (relative paths are "
                           "taken relative to the file's folder)", {}),
    "h5": ("FILE", "HDF5 pack (datasets images, posmaps, names) instead of a list", {}),
    "val_list": ("FILE", "validation label file or HDF5 pack, told apart by the file's contents (default: a split "
                         "of the training data, see --val-fraction)", {}),
    "val_fraction": ("F", "share of source faces held out for validation when no --val-list is given; a face's "
                          "samples stay together (rotated copies <stem>_angle_<deg>, views <image>_<k>_<view>, "
                          "_Flip copies); 0 disables validation", {}),
    "uv_data": ("DIR", "PRNet's uv-data folder for the model that made the maps (uv_kpt_ind.txt, face_ind.txt, "
                       "triangles.txt, uv_face_mask.png, uv_weight_mask.png, uv_face_eyes.png; default: uv-data "
                       "next to the label file or pack, else next to the label file the pack was made from, else the "
                       "embedded default model's, with a warning); --resume keeps the run's folder", {}),
    "output": ("DIR", "receives checkpoints/ (last.keras: the model after the last epoch), best.keras (lowest val "
                      "NME; only with validation), log.csv (loss, learning rate, val NME), TensorBoard logs/ and "
                      "config.json", {}),
    "epochs": ("N", "total number of epochs", {}),
    "batch_size": ("N", "global batch size", {}),
    "lr": ("F", "initial Adam learning rate", {}),
    "lr_decay": ("F", "learning-rate factor applied every --lr-decay-epochs epochs", {}),
    "lr_decay_epochs": ("N", "epochs between learning-rate decays", {}),
    "width": ("W", "base channel count of the network (16 = the paper's resfcn256, 13.4 M parameters)", {}),
    "input_size": ("S", "network input side, a multiple of 32 and at most the data's resolution (default: the "
                        "data's resolution, 256); smaller sizes resample crops and maps", {}),
    "bn_momentum": ("F", "batch-normalisation moving-average momentum, in [0, 1)", {}),
    "seed": ("S", "seeds the weights, the validation split, the sample order and the augmentation (0 to "
                  "2**32 - 1)", {}),
    "resume": (None, "continue the run in --output at its next epoch (same learning-rate schedule, order and "
                     "augmentation)", {}),
    "init_from": ("MODEL_OR_PREFIX", "start from these weights instead of random ones: a .keras model or PRNet's "
                                     "released TF1 checkpoint (its prefix, .index file or folder); same --width "
                                     "(16 for PRNet's), any --input-size; ignored with --resume", {}),
    "skip_bad": (None, "skip missing or corrupt samples with a warning (default: stop before training, naming the "
                       "file)", {}),
    "mixed_precision": (None, "float16 compute on GPU (ignored on CPU)", {}),
    "deterministic": (None, "TensorFlow op determinism: bitwise reproducible runs and resumes, somewhat slower", {}),
    "keep_checkpoints": (None, "keep checkpoints/epoch_NNN.keras for every epoch (checkpoints/last.keras is always "
                               "written)", {}),
    "run_eagerly": (None, "run the training step eagerly, without graph compilation (debugging, tiny runs)", {}),
    "verbose": (None, "0 silent; 1 a progress bar over each epoch's steps (steps/s, ETA, running loss) on stderr, "
                      "redrawn in place on a terminal, else a plain line every 30 s and one at the epoch's end; 2 "
                      "Keras's one line per epoch on stdout instead; 1 and 2 also show a bar over the sample check",
                {"choices": (0, 1, 2)}),
}
# AugmentConfig switch -> help of its --no-<name> flag, formatted with the AugmentConfig defaults
_AUGMENT_HELP = {
    "rotation": "disable the rotation (-{max_rotation:g}..{max_rotation:g} degrees)",
    "translation": "disable the translation (+-{translation_percent:g}%% of the crop)",
    "scale": "disable the scaling ({scale_range[0]:g}..{scale_range[1]:g})",
    "color": "disable the per-channel colour scaling ({color_range[0]:g}..{color_range[1]:g})",
    "occlusion": "disable the synthetic textured occlusion",
}


def add_train_arguments(parser):
    """Add the arguments of ``face3d train`` to ``parser`` (one per TrainConfig field); returns it."""
    from face3d.prnet.data import AugmentConfig
    from face3d.prnet.training import TrainConfig

    source = parser.add_mutually_exclusive_group(required=True)
    for field in dataclasses.fields(TrainConfig):
        if field.name == "augment":
            _add_augment_arguments(parser, AugmentConfig)
            continue
        metavar, text, options = _HELP[field.name]
        add_field_argument(source if field.name in _SOURCES else parser, TrainConfig, field.name, text, metavar,
                           **options)
    return parser


def _add_augment_arguments(parser, augment_class):
    parser.add_argument("--no-augment", action="store_true", help="disable every augmentation")
    ranges = {f.name: field_default(augment_class, f.name) for f in dataclasses.fields(augment_class)}
    ranges["translation_percent"] = 100 * ranges["max_translation"]
    for name, text in _AUGMENT_HELP.items():
        parser.add_argument(f"--no-{name}", action="store_true", help=text.format(**ranges))


def train_config(args):
    """The TrainConfig of parsed train arguments (every field is a flag; AugmentConfig from the --no-* switches)."""
    from face3d.prnet.data import AugmentConfig
    from face3d.prnet.training import TrainConfig

    if args.no_augment:
        augment = AugmentConfig.off()
    else:
        augment = AugmentConfig(**{name: not getattr(args, f"no_{name}") for name in _AUGMENT_HELP})
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if f.name != "augment"}
    return TrainConfig(augment=augment, **values)


def run_train(args):
    """Train with the parsed arguments; bad input stops with exit status 2 and a message naming the file, as does
    (through ``run_parsed``) a write the file system refuses: a full disk while saving a model or log."""
    setup_logging()
    if refuses_output_folder(args):  # before every sample is decoded and checked
        return 2
    from face3d.prnet.training import train
    from face3d.utils.errors import InputFileError

    try:
        summary = train(train_config(args))
    except (InputFileError, FileNotFoundError, ValueError) as error:
        print(f"{args.prog}: error: {error}", file=sys.stderr)
        return 2
    if summary["val_samples"]:
        result = f"best val NME {summary['best_nme']} (epoch {summary['best_epoch']})"
    else:
        result = f"no validation (--val-fraction 0 and no --val-list), so no best.keras: the model is {summary['last']}"
    epochs = len(summary["history"])
    print(f"finished {epochs} epoch{'s' * (epochs != 1)}; {result}; outputs in {summary['output']}")
    return 0


TRAIN = Command("train", "train PRNet (resfcn256) on a generated training set (needs face3d[train])", _DESCRIPTION,
                add_train_arguments, run_train, DefaultsHelpFormatter)


def main(argv=None, prog=None):
    """``face3d train`` as a program of its own (the root ``train.py``); returns the exit status."""
    return TRAIN.main(argv, prog)
