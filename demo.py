"""``face3d demo`` for the original PRNet layout: ``python demo.py --help``."""
import sys

from face3d.cli.demo import main

if __name__ == "__main__":
    sys.exit(main(prog="demo.py"))
