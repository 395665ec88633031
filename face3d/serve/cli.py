"""``face3d serve``: the HTTP service on uvicorn (``add_serve_arguments`` builds its options, ``run_serve`` runs).

Also runnable as ``python -m face3d.serve``. With ``--workers 1`` the model is loaded before the port opens (a bad
``--model`` is a one-line error, exit status 2); with ``--workers N`` uvicorn starts N processes that each load
the model (their config travels in ``$FACE3D_SERVE_CONFIG``).
"""
import argparse
import logging
import os
import signal
import sys
from pathlib import Path

__all__ = ["DESCRIPTION", "add_serve_arguments", "run_serve", "build_parser", "main"]

DESCRIPTION = ("Serve 3D face reconstruction over HTTP: POST an image to /v1/reconstruct and get the 68 "
                "landmarks, the head pose and, on request, the dense mesh (OBJ, PLY, .mat) and UV texture. "
                "GET /health, /metrics; OpenAPI docs at /docs. Needs the 'serve' extra: "
                "pip install -e \".[serve]\".")


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _non_negative_float(text):
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def add_serve_arguments(parser):
    """Add ``face3d serve``'s options to an argparse parser."""
    from face3d.serve.limits import Limits

    defaults = Limits()
    parser.add_argument("--model", required=True, metavar="PATH",
                        help="trained network: .onnx (ONNX Runtime, no TensorFlow needed), .keras/.h5, SavedModel "
                             "folder or frozen .pb")
    parser.add_argument("--uv-data", metavar="DIR", help="UV data the network was trained with (default: the "
                                                         "package's)")
    parser.add_argument("--bfm", metavar="BFM.mat", help="morphable model of the UV data, for the pose's canonical "
                                                         "face (default: the embedded default model)")
    parser.add_argument("--host", default="127.0.0.1", metavar="ADDRESS",
                        help="address to bind (default: %(default)s, this machine only)")
    parser.add_argument("--port", type=int, metavar="N", default=8000, help="TCP port (default: %(default)s)")
    parser.add_argument("--workers", type=_positive_int, metavar="N", default=1,
                        help="server processes, each with its own model (default: %(default)s)")
    parser.add_argument("--max-batch", type=_positive_int, metavar="B", default=8,
                        help="largest batch of concurrent requests run as one network call (default: %(default)s)")
    parser.add_argument("--max-delay-ms", type=_non_negative_float, metavar="MS", default=5.0,
                        help="longest wait for more requests to join a batch, while some are on their way "
                             "(default: %(default)s)")
    parser.add_argument("--threads", type=_positive_int, metavar="N", default=2,
                        help="threads for decoding, cropping and post-processing (default: %(default)s)")
    parser.add_argument("--model-threads", type=_positive_int, metavar="N",
                        help="ONNX Runtime intra-op threads (default: all cores)")
    parser.add_argument("--detector", choices=("auto", "cnn", "hog"), default="auto",
                        help="dlib detector for requests without box or landmarks, when dlib is installed "
                             "(default: %(default)s)")
    parser.add_argument("--max-bytes", type=_positive_int, metavar="BYTES", default=defaults.max_bytes,
                        help="largest request body in bytes (default: %(default)s)")
    parser.add_argument("--max-pixels", type=_positive_int, metavar="PIXELS", default=defaults.max_pixels,
                        help="largest image, width x height, checked on the file header (default: %(default)s)")
    parser.add_argument("--timeout-s", type=_positive_float, metavar="S", default=defaults.timeout_s,
                        help="seconds a request may take, upload included (default: %(default)s)")
    parser.add_argument("--max-in-flight", type=_positive_int, metavar="N", default=defaults.max_in_flight,
                        help="reconstructions handled at once per worker; more get 503 (default: %(default)s)")
    parser.add_argument("--access-log", action="store_true", help="log every request (uvicorn's access log)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info",
                        help="log level (default: %(default)s)")
    return parser


def _config(args):
    from face3d.serve.app import ServeConfig
    from face3d.serve.limits import Limits

    return ServeConfig(model=str(args.model), uv_data=args.uv_data, bfm=args.bfm, max_batch=args.max_batch,
                       max_delay_ms=args.max_delay_ms, threads=args.threads, model_threads=args.model_threads,
                       detector=args.detector,
                       limits=Limits(max_bytes=args.max_bytes, max_pixels=args.max_pixels, timeout_s=args.timeout_s,
                                     max_in_flight=args.max_in_flight))


def run_serve(args):
    """Run the service until SIGINT/SIGTERM (then drain); returns the exit status (2 on a bad model or options)."""
    try:
        import uvicorn

        from face3d.serve.app import (CONFIG_ENVIRONMENT, LOG_FORMAT, LOG_LEVEL_ENVIRONMENT, create_app,
                                      load_reconstructor)
    except ImportError as exc:
        print(f"face3d serve: error: {exc.name or exc} is not installed: pip install -e \".[serve]\"", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT)
    config = _config(args)
    options = {"host": args.host, "port": args.port, "log_level": args.log_level, "access_log": args.access_log,
               "timeout_graceful_shutdown": int(config.limits.timeout_s) + 5, "lifespan": "on"}
    if args.workers == 1:
        try:
            reconstructor = load_reconstructor(config)
        except (FileNotFoundError, ValueError, ImportError) as exc:
            print(f"face3d serve: error: {exc}", file=sys.stderr)
            return 2
        target, extra = create_app(config, reconstructor), {}
    else:
        if not Path(config.model).exists():
            print(f"face3d serve: error: model not found: {config.model}", file=sys.stderr)
            return 2
        os.environ[CONFIG_ENVIRONMENT] = config.to_json()
        os.environ[LOG_LEVEL_ENVIRONMENT] = args.log_level.upper()
        target, extra = "face3d.serve.app:app_from_environment", {"factory": True, "workers": args.workers}
    # uvicorn drains on SIGINT/SIGTERM, then raises the signal again for the previous handler; with this one the
    # drained server exits with status 0 instead of dying of the signal
    previous = {sig: signal.signal(sig, _drained) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        uvicorn.run(target, **options, **extra)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _drained(signum, frame):
    """Signal handler left for uvicorn to call once it has drained (nothing left to do)."""


def build_parser(prog="face3d serve"):
    """The parser of ``face3d serve`` alone."""
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    return add_serve_arguments(parser)


def main(argv=None):
    """``python -m face3d.serve``; returns the exit status."""
    return run_serve(build_parser("python -m face3d.serve").parse_args(argv))
