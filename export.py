"""``face3d export`` for the original PRNet layout: ``python export.py --help``."""
import sys

from face3d.cli.export import main

if __name__ == "__main__":
    sys.exit(main(prog="export.py"))
