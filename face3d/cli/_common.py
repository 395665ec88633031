"""Pieces every ``face3d`` command shares: the ``Command`` record, argument types, flags read from config
dataclasses, logging set-up, the one-line report of a missing optional dependency or of a file the system refuses
(``os_error_text``; ``os_errors_end_program`` for the examples), and the check of an output folder run before any
work (``output_folder_problem``; ``refuses_output_folder`` for a command's run function, ``check_output_folder``
for scripts reporting through ``parser.error``, the examples)."""
import argparse
import contextlib
import dataclasses
import logging
import math
import os
import select
import signal
import sys
import threading
import typing
from dataclasses import dataclass
from pathlib import Path

from face3d.utils.errors import install_command

# top-level module of a missing optional dependency -> the extra of pyproject.toml that installs it
EXTRAS = {"tensorflow": "train", "keras": "train", "tensorboard": "train", "onnx": "export", "onnxruntime": "infer",
          "matplotlib": "vis", "fastapi": "serve", "starlette": "serve", "uvicorn": "serve", "multipart": "serve",
          "python_multipart": "serve"}


@dataclass(frozen=True)
class Command:
    """One ``face3d`` subcommand.

    Attributes:
        name: the word after ``face3d``.
        help: one line for ``face3d --help``.
        description: the paragraph heading the command's own ``--help``.
        add_arguments: function(parser) adding the command's arguments; may import light modules (never TensorFlow).
        run: function(parsed args) -> exit status.
        formatter: the help formatter class of the command's parser.
        one_blas_thread: set one BLAS thread per process before parsing (commands whose parallelism is worker
            processes); training and inference keep the libraries' own threading.
        stop_hint: what the line of a command stopped by Ctrl-C or SIGTERM adds (that a rerun resumes), or "".
    """
    name: str
    help: str
    description: str
    add_arguments: typing.Callable
    run: typing.Callable
    formatter: type = argparse.HelpFormatter
    one_blas_thread: bool = False
    stop_hint: str = ""

    def parser(self, prog):
        """A stand-alone parser for the command (the root scripts ``train.py`` ... use it)."""
        parser = argparse.ArgumentParser(prog=prog, description=self.description, formatter_class=self.formatter)
        self.add_arguments(parser)
        parser.set_defaults(run=self.run, prog=parser.prog, stop_hint=self.stop_hint)
        return parser

    def main(self, argv=None, prog=None):
        """Parse ``argv`` (default ``sys.argv[1:]``) with the stand-alone parser and run; returns the exit status.

        ``prog`` names the program in usage and error lines (default: the running script's file name)."""
        with blas_threads_limited() if self.one_blas_thread else contextlib.nullcontext():  # before numpy loads
            return run_parsed(self.parser(prog).parse_args(argv))


class CommandParser(argparse.ArgumentParser):
    """The parser of a subcommand: an argument it does not know is its own error, with its own usage (argparse
    otherwise leaves unknown arguments to the top-level parser, whose message shows ``face3d``'s usage)."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's ArgumentDefaultsHelpFormatter, but an argument's help gets no ``(default: ...)`` when its text
    states the default itself ("default: ...") or when the default is None or False (an unset option, a switch)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "default:" in (action.help or "").lower():
            return action.help
        return super()._get_help_string(action)


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM (a cluster scheduler, ``timeout``, ``kill``) while ``run_parsed`` runs a
    command: the command unwinds as on Ctrl-C, so that its temporary files are removed (``face3d.utils.atomic``)."""


# The process that installed ``_raise_terminated``: a child forked from it (a pool worker before its own handler is
# set) inherits the handler but has no command to unwind.
_HANDLER_PID = None


def _raise_terminated(signum, frame):
    """SIGTERM handler of ``run_parsed``: raise ``Terminated``, leaving the default action for a second SIGTERM,
    which then ends the process at once should the first be lost (Python ignores an exception raised in a
    ``__del__``, where the handler may happen to run). In a forked child it ends that child at once."""
    if os.getpid() != _HANDLER_PID:
        os._exit(128 + signum)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated


def run_parsed(args):
    """Run parsed ``args`` (``args.run``, ``args.prog``); a missing optional dependency, a missing input file or
    folder, an unusable input file (``InputFileError``) and a file or folder the system refuses (read-only, a file
    where a folder is needed, ...) are one line on stderr and status 2. Ctrl-C is one line ``<prog>: interrupted``
    and status 130, SIGTERM one line ``<prog>: terminated`` and status 143 (128 + the signal's number, as a shell
    reports a process a signal ends), both after the command has unwound (removing its temporary files); the
    SIGTERM handler is this process's only while the command runs (a SIGTERM its parent made it ignore stays
    ignored). Standard output closed by its reader (``| head``) ends the command silently with status 141, as
    SIGPIPE ends other programs, or with the failure status the command had returned when its last lines could not
    be written."""
    from face3d.utils.errors import InputFileError

    global _HANDLER_PID
    # only the main thread may set handlers; a SIGTERM ignored by the parent's choice stays ignored
    handles = threading.current_thread() is threading.main_thread() and \
        signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN
    if handles:
        _HANDLER_PID = os.getpid()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if handles else None
    status = None
    try:
        # TensorFlow's C++ INFO lines (a SavedModel read from a temporary folder, the CPU's features) are no
        # command's output, as other libraries' INFO records are not (setup_logging)
        with logging_restored(), environment_defaults({"TF_CPP_MIN_LOG_LEVEL": "1"}):
            status = args.run(args)
            if sys.stdout is not None:  # None where the program was started without a standard output
                sys.stdout.flush()  # here, where a reader gone is caught, not at exit
            return status
    except BrokenPipeError:
        if not _stdout_reader_gone():  # another pipe (a worker's): not the reader of the command's output
            raise
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the exit's flush then writes nowhere
        os.close(devnull)
        return status or 128 + signal.SIGPIPE  # a failure the command reported before its last lines went
    except KeyboardInterrupt:
        return _stopped(args, "interrupted", signal.SIGINT)
    except Terminated:
        return _stopped(args, "terminated", signal.SIGTERM)
    except SystemError as error:  # TensorFlow wraps an exception a handler raised inside its C++ calls
        causes = _causes(error)
        if any(isinstance(cause, Terminated) for cause in causes):
            return _stopped(args, "terminated", signal.SIGTERM)
        if any(isinstance(cause, KeyboardInterrupt) for cause in causes):
            return _stopped(args, "interrupted", signal.SIGINT)
        raise
    except ModuleNotFoundError as error:
        if missing_extra(error) is None:
            raise
        print(f"{args.prog}: error: {error_text(error)}", file=sys.stderr)
        return 2
    except (FileNotFoundError, NotADirectoryError, InputFileError) as error:
        print(f"{args.prog}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.filename is None:
            raise
        print(f"{args.prog}: error: {os_error_text(error)}", file=sys.stderr)
        return 2
    finally:
        if handles:  # a handler set outside Python reads as None: the default is the nearest one to restore
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _stdout_reader_gone():
    """Whether standard output is a pipe whose reader has closed it (``| head`` after its lines): polling its write
    end reports an error."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no file descriptor (a program's own stdout object), no poll
        return False


def _stopped(args, what, signum):
    """Print ``<prog>: <what>`` on stderr, with the command's ``stop_hint`` after a semicolon when it has one;
    returns the status of a program ended by signal ``signum``."""
    hint = getattr(args, "stop_hint", "")
    print(f"{args.prog}: {what}" + (f"; {hint}" if hint else ""), file=sys.stderr)
    return 128 + signum


def _causes(error):
    """``error`` and the exceptions it was raised from or while handling (``__cause__``, ``__context__``)."""
    seen = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def os_error_text(error):
    """One line for an OSError naming its file: ``"<path>: <problem>"`` (``"out/a.jpg: No space left on device"``)."""
    return f"{error.filename}: {error.strerror or error}"


@contextlib.contextmanager
def os_errors_end_program():
    """End the program as ``run_parsed`` ends a command when the body raises an OSError naming its file (a failed
    write: a full disk, a read-only folder): one line ``<prog>: error: <path>: <problem>`` on stderr and status 2,
    ``<prog>`` the running script's file name, as argparse's. Other errors pass through."""
    try:
        yield
    except OSError as error:
        if error.filename is None:
            raise
        print(f"{os.path.basename(sys.argv[0])}: error: {os_error_text(error)}", file=sys.stderr)
        sys.exit(2)


# items a batch command names under its summary line (failures, dropped photos, ...); its summary file lists them all
LISTED_ITEMS = 20


def write_item_lines(stream, lines, summary_path):
    """Write ``lines`` (one per failed or dropped item) under a batch command's summary line, indented by two
    spaces: the first ``LISTED_ITEMS``, then ``  ... and N more: see <summary_path>`` (the summary file that lists
    them all) for the rest."""
    for line in lines[:LISTED_ITEMS]:
        stream.write(f"  {line}\n")
    if len(lines) > LISTED_ITEMS:
        stream.write(f"  ... and {len(lines) - LISTED_ITEMS} more: see {summary_path}\n")


def missing_extra(error):
    """The extra (``face3d[<extra>]``) providing the module a ModuleNotFoundError names, or None."""
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return None
    return EXTRAS.get(error.name.partition(".")[0])


def error_text(error):
    """One line for ``error``: its message, or for a missing optional dependency the pip command installing it."""
    extra = missing_extra(error)
    if extra is None:
        return str(error)
    return f"{error.name} is not installed: {install_command(extra)}"


def field_default(config_class, name):
    """The default value of dataclass field ``name`` of ``config_class`` (its default_factory called)."""
    field = next(f for f in dataclasses.fields(config_class) if f.name == name)
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def add_field_argument(parser, config_class, name, help, metavar=None, **options):
    """Add ``--<name with dashes>`` for dataclass field ``name`` of ``config_class``, with dest ``name``.

    The type and default are the field's: a bool field (default False) becomes a store_true switch; any other field
    takes one value of its annotated type. ``options`` go to ``add_argument`` (e.g. ``choices``).
    """
    kind = typing.get_type_hints(config_class)[name]
    default = field_default(config_class, name)
    flag = "--" + name.replace("_", "-")
    if kind is bool:
        if default is not False:
            raise ValueError(f"{config_class.__name__}.{name} defaults to {default!r}: a switch must default to False")
        return parser.add_argument(flag, action="store_true", help=help, **options)
    return parser.add_argument(flag, type=kind, default=default, metavar=metavar, help=help, **options)


# what --model takes wherever a trained PRNet is run (face3d.prnet.predictor.load_predictor): every help text names it
MODEL_TYPES = (".keras/.h5, PRNet's TF1 checkpoint (prefix, .index or folder), SavedModel folder, frozen .pb, .onnx "
               "or .tflite")


def add_trust_model_argument(parser):
    """Add ``--trust-model``: run a frozen .pb or SavedModel whatever op types its graph holds."""
    parser.add_argument("--trust-model", action="store_true",
                        help="run a frozen .pb or SavedModel even when its graph holds op types outside face3d's "
                             "inference list (file writes, ...): a model is code, pass it only for models you trust")


def add_max_pixels_argument(parser):
    """Add ``--max-pixels N`` (dest ``max_pixels``): the largest image a command decodes, refused from its header
    (``sample_io.read_image``, whose message names the flag); default ``sample_io.DEFAULT_MAX_PIXELS``."""
    from face3d.trainset.sample_io import DEFAULT_MAX_PIXELS

    parser.add_argument("--max-pixels", metavar="N", type=positive_int, default=DEFAULT_MAX_PIXELS,
                        help="refuse an image above N pixels (width * height, read from its header before "
                             "decoding) (default: %(default)s)")


def int_at_least(minimum, unit=None, maximum=None):
    """argparse type: an integer >= ``minimum`` (and <= ``maximum`` when given); ``unit`` (e.g. "pixels") is named
    in the error line."""
    bound = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
    bound += f" ({unit})" if unit else ""

    def parse(text):
        value = int(text)
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected an integer {bound}, got {text!r}")
        return value

    parse.__name__ = "int"  # argparse's line for a non-integer: "invalid int value: 'x'"
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def finite_float_above(minimum, inclusive=False):
    """argparse type: a finite number > ``minimum`` (>= when ``inclusive``)."""
    relation = ">=" if inclusive else ">"

    def parse(text):
        value = float(text)
        if not (value >= minimum if inclusive else value > minimum) or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number {relation} {minimum}, got {text!r}")
        return value

    parse.__name__ = "float"  # argparse's line for a non-number: "invalid float value: 'x'"
    return parse


def output_folder_problem(folder):
    """Why outputs cannot go into ``folder`` (``"<path>: <problem>"``), or None: the nearest existing path of
    ``folder`` and its parents (itself, or the folder it would be made in) is a file, or a folder that cannot be
    written (read-only, no permission). Makes nothing."""
    folder = Path(folder)
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    if not existing.is_dir():
        return f"{existing}: is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing}: folder not writable (read-only or no permission)"
    return None


def refuses_output_folder(args):
    """Whether ``args.output`` cannot take outputs (``output_folder_problem``), having then printed the one line
    ``<prog>: error: <path>: <problem>``: a command's run function returns status 2 on True, before any work."""
    problem = output_folder_problem(args.output)
    if problem is not None:
        print(f"{args.prog}: error: {problem}", file=sys.stderr)
    return problem is not None


def check_output_folder(parser, folder):
    """End the program as ``parser.error`` does (one line ``<prog>: error: <path>: <problem>``, status 2) when
    ``output_folder_problem`` finds one. Makes nothing."""
    problem = output_folder_problem(folder)
    if problem is not None:
        parser.error(problem)


def make_output_folder(parser, folder):
    """``check_output_folder``, then make ``folder`` and its parents; a refusal the check could not foresee ends the
    program the same way, naming the path the system refused."""
    check_output_folder(parser, folder)
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        parser.error(f"{error.filename or folder}: {error.strerror or error}")


@contextlib.contextmanager
def environment_defaults(defaults):
    """The environment variables ``defaults`` ({name: value}) set where unset while the block runs, and those it set
    removed afterwards, so that a program calling ``main`` keeps its environment (its later child processes too)."""
    added = [name for name in defaults if name not in os.environ]
    for name in added:
        os.environ[name] = defaults[name]
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def blas_threads_limited():
    """One BLAS thread per process while the block runs (``environment_defaults`` of ``OMP_NUM_THREADS``,
    ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS``; entered before numpy loads, for this process too): the
    parallelism is the worker processes."""
    return environment_defaults(dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "1"))


@contextlib.contextmanager
def logging_restored():
    """The root logger's handlers and level and the ``face3d`` logger's level as they were before the block, once
    it ends: ``setup_logging`` configures logging for a command, and a program calling ``main`` keeps its own."""
    root, ours = logging.getLogger(), logging.getLogger("face3d")
    handlers, root_level, our_level = list(root.handlers), root.level, ours.level
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
            handler.close()  # a StreamHandler leaves its stream open
        root.setLevel(root_level)
        ours.setLevel(our_level)


def setup_logging(verbose=False, format="%(levelname)s %(name)s: %(message)s"):
    """Log to stderr face3d's records at INFO and above (DEBUG when ``verbose``) and other libraries' at WARNING and
    above: their INFO records (TensorFlow's ``Assets written to: <temporary folder>``) are not a command's output."""
    # the handler is the root's, so that other libraries' warnings reach stderr too; basicConfig does nothing where
    # the root logger has handlers (a program calling main), whose level then stays the program's
    logging.basicConfig(level=logging.WARNING, format=format, stream=sys.stderr)
    logging.getLogger("face3d").setLevel(logging.DEBUG if verbose else logging.INFO)
