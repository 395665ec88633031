"""``python -m face3d.serve``: the HTTP service (``face3d serve``, see ``face3d.cli.serve``)."""
import sys

from face3d.cli.serve import main

sys.exit(main(prog="python -m face3d.serve"))
