#!/usr/bin/env python
"""Train PRNet (resfcn256) on position maps made by face3d's generator. See ``python train.py --help``."""
import argparse
import logging
import sys

from face3d.prnet.data import AugmentConfig
from face3d.utils.errors import InputFileError
from face3d.prnet.training import TrainConfig


def build_parser():
    """The command line; defaults are the paper's recipe (TrainConfig)."""
    d = TrainConfig()
    p = argparse.ArgumentParser(
        description="Train PRNet's resfcn256 (Feng et al. 2018) with Keras 3 on TensorFlow. Inputs are crops and "
                    "position maps from face3d's generator; images are divided by 255 and maps by 1.1 x the map "
                    "resolution. Loss: MSE weighted by uv_weight_mask.png. Adam, lr halved every 5 epochs. "
                    "Uses MirroredStrategy when several GPUs are visible; CPU works too.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--train-list", metavar="FILE",
                     help="trainDataLabel.txt: one '<image path> <npy path>' line per sample (relative paths are "
                          "taken relative to the file's folder)")
    src.add_argument("--h5", metavar="FILE", help="HDF5 pack (datasets images, posmaps, names) instead of a list")
    p.add_argument("--val-list", metavar="FILE", help="validation label file or HDF5 pack (default: a split of "
                                                      "the training data, see --val-fraction)")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction, metavar="F",
                   help="share of source samples held out for validation when no --val-list is given; rotated "
                        "copies (<stem>_angle_<deg>) stay with their source; 0 disables validation")
    p.add_argument("--uv-data", metavar="DIR",
                   help="PRNet's uv-data folder for the model that made the maps (uv_kpt_ind.txt, face_ind.txt, "
                        "triangles.txt, uv_face_mask.png, uv_weight_mask.png, uv_face_eyes.png; default: uv-data "
                        "next to the label file or pack, else Data/uv-data)")
    p.add_argument("--output", metavar="DIR", default=d.output,
                   help="receives checkpoints/, best.keras, log.csv (loss, learning rate, val NME), TensorBoard "
                        "logs/ and config.json")
    p.add_argument("--epochs", type=int, default=d.epochs, metavar="N", help="total number of epochs")
    p.add_argument("--batch-size", type=int, default=d.batch_size, metavar="N", help="global batch size")
    p.add_argument("--lr", type=float, default=d.lr, metavar="F", help="initial Adam learning rate")
    p.add_argument("--lr-decay", type=float, default=d.lr_decay, metavar="F",
                   help="learning-rate factor applied every --lr-decay-epochs epochs")
    p.add_argument("--lr-decay-epochs", type=int, default=d.lr_decay_epochs, metavar="N",
                   help="epochs between learning-rate decays")
    p.add_argument("--width", type=int, default=d.width, metavar="W",
                   help="base channel count of the network (16 = the paper's resfcn256, 13.4 M parameters)")
    p.add_argument("--input-size", type=int, default=None, metavar="S",
                   help="network input side, a multiple of 32 (default: the data's resolution, 256); smaller sizes "
                        "resample crops and maps")
    p.add_argument("--bn-momentum", type=float, default=d.bn_momentum, metavar="F",
                   help="batch-normalisation moving-average momentum")
    p.add_argument("--seed", type=int, default=d.seed, metavar="S",
                   help="seeds the weights, the validation split, the sample order and the augmentation")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --output at its next epoch (same learning-rate schedule, order and "
                        "augmentation)")
    p.add_argument("--no-augment", action="store_true", help="disable every augmentation")
    p.add_argument("--no-rotation", action="store_true", help="disable the rotation (-45..45 degrees)")
    p.add_argument("--no-translation", action="store_true", help="disable the translation (+-10%% of the crop)")
    p.add_argument("--no-scale", action="store_true", help="disable the scaling (0.9..1.2)")
    p.add_argument("--no-color", action="store_true", help="disable the per-channel colour scaling (0.6..1.4)")
    p.add_argument("--no-occlusion", action="store_true", help="disable the synthetic textured occlusion")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip missing or corrupt samples with a warning (default: stop before training, naming "
                        "the file)")
    p.add_argument("--mixed-precision", action="store_true", help="float16 compute on GPU (ignored on CPU)")
    p.add_argument("--deterministic", action="store_true",
                   help="TensorFlow op determinism: bitwise reproducible runs and resumes, somewhat slower")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep checkpoints/epoch_NNN.keras for every epoch (checkpoints/last.keras is always written)")
    p.add_argument("--run-eagerly", action="store_true",
                   help="run the training step eagerly, without graph compilation (debugging, tiny runs)")
    p.add_argument("--verbose", type=int, default=d.verbose, choices=(0, 1, 2),
                   help="0 silent, 1 a progress bar per epoch, 2 one line per epoch")
    return p


def config_from_args(args):
    """TrainConfig from parsed arguments."""
    if args.no_augment:
        augment = AugmentConfig.off()
    else:
        augment = AugmentConfig(rotation=not args.no_rotation, translation=not args.no_translation,
                                scale=not args.no_scale, color=not args.no_color, occlusion=not args.no_occlusion)
    return TrainConfig(
        train_list=args.train_list, h5=args.h5, val_list=args.val_list, val_fraction=args.val_fraction,
        uv_data=args.uv_data, output=args.output, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        lr_decay=args.lr_decay, lr_decay_epochs=args.lr_decay_epochs, width=args.width, input_size=args.input_size,
        bn_momentum=args.bn_momentum, seed=args.seed, augment=augment, resume=args.resume, skip_bad=args.skip_bad,
        mixed_precision=args.mixed_precision, deterministic=args.deterministic,
        keep_checkpoints=args.keep_checkpoints, run_eagerly=args.run_eagerly, verbose=args.verbose)


def main(argv=None):
    """Parse arguments and train; bad input stops with exit status 2 and a message naming the file."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from face3d.prnet.training import train
    try:
        summary = train(config_from_args(args))
    except (InputFileError, FileNotFoundError, ValueError) as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 2
    print(f"finished {len(summary['history'])} epochs; best val NME {summary['best_nme']} "
          f"(epoch {summary['best_epoch']}); outputs in {summary['output']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
