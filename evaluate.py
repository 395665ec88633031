"""``face3d evaluate`` for the original PRNet layout: ``python evaluate.py --help``."""
import sys

from face3d.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main(prog="evaluate.py"))
