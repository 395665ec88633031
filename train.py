"""``face3d train`` for the original PRNet layout: ``python train.py --help``."""
import sys

from face3d.cli.train import main

if __name__ == "__main__":
    sys.exit(main(prog="train.py"))
