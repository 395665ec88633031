"""Shared test fixtures: where the real-format samples of ../shared/fixtures live (tests that use them skip when
absent), folders that cannot be listed, a lock held as another process holds it, a parser's subcommands, and
Ctrl-C's handler."""
import argparse
import contextlib
import fcntl
import os
import signal
from pathlib import Path


def fixtures_dir() -> Path:
    """``$FACE3D_FIXTURES``, else ``shared/fixtures`` beside the repository (the folder may not exist)."""
    env = os.environ.get("FACE3D_FIXTURES")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "fixtures"


def deny_listing(monkeypatch, folder_name):
    """Make every folder named ``folder_name`` unlistable, as a folder without read permission is (tests may run
    as root, for whom permissions do not apply): ``os.scandir`` on it raises PermissionError."""
    real_scandir = os.scandir

    def scandir(path="."):
        # a descriptor (shutil.rmtree lists folders by theirs) names no folder: listed as usual
        if not isinstance(path, int) and os.path.basename(os.fspath(path)) == folder_name:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)


@contextlib.contextmanager
def held_lock(path, shared=False):
    """Hold an ``fcntl.flock`` lock on ``path`` (created, with its folder, if missing), exclusive or ``shared``, for
    the block through an open file description of its own: it conflicts with the locks of face3d's functions in this
    process as another process's would."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


def subcommands(parser):
    """{name: parser} of an ``argparse`` parser's subcommands ({} for a command without any)."""
    return next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})


# Put first in a script a test runs: SIGINT handled as in a terminal's foreground job (see ``ctrl_c_raises``).
CTRL_C_RAISES = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"


@contextlib.contextmanager
def ctrl_c_raises():
    """SIGINT raising KeyboardInterrupt (Python's default handler, as in a terminal's foreground job) for the body,
    then the handler found before. A suite started in the background (``pytest &`` from a script) inherits SIGINT
    ignored, and Python keeps it so, as the commands do."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
