"""``python -m face3d.serve``: the HTTP service (see ``face3d.serve.cli``)."""
import sys

from face3d.serve.cli import main

sys.exit(main())
