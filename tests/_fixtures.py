"""Where the real-format samples of ../shared/fixtures live, for the tests that use them (they skip when absent)."""
import os
from pathlib import Path


def fixtures_dir() -> Path:
    """``$FACE3D_FIXTURES``, else ``shared/fixtures`` beside the repository (the folder may not exist)."""
    env = os.environ.get("FACE3D_FIXTURES")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "fixtures"
