"""``face3d train`` for the original PRNet layout: ``python train.py --help``."""
import sys

from _source_checkout import prefer_built_checkout

prefer_built_checkout()  # this checkout's face3d when its extension is built, else an installed one
from face3d.cli.train import main  # noqa: E402  (after the path set-up)

if __name__ == "__main__":
    sys.exit(main(prog="train.py"))
