"""The ``face3d`` command line: one console for the whole pipeline (each subcommand with ``--help``).

    face3d fit | generate | pack | preview | synthesize | uv-data   # training data (never imports TensorFlow)
    face3d train | evaluate | demo | export | offline               # PRNet (TensorFlow loaded only when one runs)
    face3d serve                                                    # reconstruction over HTTP (FastAPI + uvicorn)
    face3d import-prnet                                             # PRNet's released checkpoint -> .keras

Also ``python -m face3d``; the root scripts (``train.py``, ``evaluate.py``, ``demo.py``, ``export.py``) and
``examples/9_generate_prnet_trainset.py`` run the same commands. One module per command group builds its arguments.
"""
import argparse
import contextlib
import sys

from face3d import __version__
from face3d.cli._common import CommandParser, blas_threads_limited, run_parsed
from face3d.cli.dataset import PACK, PREVIEW, SYNTHESIZE, UV_DATA
from face3d.cli.demo import DEMO
from face3d.cli.evaluate import EVALUATE
from face3d.cli.export import EXPORT
from face3d.cli.fit import FIT
from face3d.cli.generate import (
    DEFAULT_OUTPUT,
    GENERATE,
    SYNTHETIC_DIR,
    add_generate_arguments,
    build_generate_parser,
    generate_main,
    run_generate,
)
from face3d.cli.offline import OFFLINE
from face3d.cli.prnet_import import IMPORT_PRNET
from face3d.cli.serve import SERVE
from face3d.cli.train import TRAIN

__all__ = ["main", "build_parser", "COMMANDS", "add_generate_arguments", "build_generate_parser", "generate_main",
           "run_generate", "DEFAULT_OUTPUT", "SYNTHETIC_DIR"]

COMMANDS = (FIT, GENERATE, PACK, PREVIEW, SYNTHESIZE, UV_DATA, TRAIN, EVALUATE, DEMO, EXPORT, OFFLINE, SERVE,
            IMPORT_PRNET)


def build_parser(commands=None):
    """The ``face3d`` parser with its subcommands; ``commands``: names whose arguments are built (None: all).

    Each command's arguments come from its command group's module (``face3d.cli._common.Command``); building only
    the chosen command's means ``face3d --help`` loads no command module's dependencies."""
    parser = argparse.ArgumentParser(prog="face3d", description="3D-face ground truth, PRNet training sets, and "
                                                                "PRNet training, evaluation, inference and export.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)
    for command in COMMANDS:
        command_parser = sub.add_parser(command.name, help=command.help, description=command.description,
                                        formatter_class=command.formatter)
        if commands is None or command.name in commands:
            command.add_arguments(command_parser)
        command_parser.set_defaults(run=command.run, prog=command_parser.prog, stop_hint=command.stop_hint)
    return parser


def main(argv=None):
    """Entry point of the ``face3d`` console script; returns the exit status. The BLAS thread limit of the data
    commands is set first; heavy modules are imported inside the commands, after it."""
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = [command for command in COMMANDS if argv[:1] == [command.name]]  # top-level options take no value
    limited = blas_threads_limited() if any(command.one_blas_thread for command in chosen) else contextlib.nullcontext()
    with limited:  # before the parser imports numpy
        return run_parsed(build_parser(commands=[command.name for command in chosen]).parse_args(argv))
