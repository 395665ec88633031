"""``face3d export`` for the original PRNet layout: ``python export.py --help``."""
import sys

from _source_checkout import prefer_built_checkout

prefer_built_checkout()  # this checkout's face3d when its extension is built, else an installed one
from face3d.cli.export import main  # noqa: E402  (after the path set-up)

if __name__ == "__main__":
    sys.exit(main(prog="export.py"))
