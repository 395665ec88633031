"""``python -m face3d``: the ``face3d`` command line (see ``face3d.cli``)."""
import sys

from face3d.cli import main

sys.exit(main())
