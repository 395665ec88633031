"""``face3d serve`` (and ``python -m face3d.serve``): 3D face reconstruction over HTTP (``face3d.serve``)."""
import sys

from face3d.cli._common import (
    MODEL_TYPES,
    Command,
    add_trust_model_argument,
    error_text,
    field_default,
    finite_float_above,
    int_at_least,
    positive_int,
)
from face3d.utils.errors import install_command

__all__ = ["SERVE", "add_serve_arguments", "run_serve", "main"]

DESCRIPTION = ("Serve 3D face reconstruction over HTTP: POST an image to /v1/reconstruct and get the 68 landmarks, "
               "the head pose and, on request, the dense mesh (OBJ, PLY, .mat) and UV texture. GET /health, "
               f"/metrics; OpenAPI docs at /docs. Needs the 'serve' extra: {install_command('serve')}.")


def add_serve_arguments(parser):
    """Add ``face3d serve``'s options (defaults from ``ServeConfig`` and ``Limits``) to an argparse parser."""
    from face3d.serve.config import ServeConfig
    from face3d.serve.limits import Limits

    def default(name):
        return field_default(ServeConfig, name)

    def limit(name):
        return field_default(Limits, name)

    parser.add_argument("--model", required=True, metavar="PATH",
                        help=f"trained network: {MODEL_TYPES}; an .onnx runs on ONNX Runtime, no TensorFlow needed")
    add_trust_model_argument(parser)
    parser.add_argument("--uv-data", metavar="DIR", help="UV data the network was trained with (default: PRNet's "
                                                         "Data/uv-data beside its released checkpoint, else the "
                                                         "packaged uv-data of the embedded default model; "
                                                         "needed for a .keras file import-prnet wrote)")
    parser.add_argument("--bfm", metavar="BFM.mat", help="morphable model of the UV data, for the pose's canonical "
                                                         "face (default: the embedded default model; not read when "
                                                         "the uv-data has its own canonical_vertices.npy: a warning "
                                                         "says so, a missing file is still an error)")
    parser.add_argument("--host", default="127.0.0.1", metavar="ADDRESS",
                        help="address to bind (default: %(default)s, this machine only)")
    parser.add_argument("--port", type=int_at_least(0, maximum=65535), default=8000, metavar="N",
                        help="TCP port (default: %(default)s)")
    parser.add_argument("--workers", type=positive_int, default=1, metavar="N",
                        help="server processes, each with its own model (default: %(default)s)")
    parser.add_argument("--max-batch", type=positive_int, default=default("max_batch"), metavar="B",
                        help="largest batch of concurrent requests run as one network call (default: %(default)s)")
    parser.add_argument("--max-delay-ms", type=finite_float_above(0, inclusive=True), default=default("max_delay_ms"),
                        metavar="MS",
                        help="longest wait for more requests to join a batch, while some are on their way "
                             "(default: %(default)s)")
    parser.add_argument("--threads", type=positive_int, default=default("threads"), metavar="N",
                        help="threads for decoding, cropping and post-processing (default: %(default)s)")
    parser.add_argument("--model-threads", type=positive_int, metavar="N",
                        help="ONNX Runtime intra-op threads (default: all cores)")
    parser.add_argument("--detector", choices=("auto", "cnn", "hog"), default=default("detector"),
                        help="dlib detector for requests without box or landmarks (default: %(default)s: the CNN "
                             "when face_recognition_models has it, else HOG, else none; cnn or hog that cannot be "
                             "built stops the server)")
    parser.add_argument("--max-bytes", type=positive_int, default=limit("max_bytes"), metavar="BYTES",
                        help="largest request body in bytes (default: %(default)s)")
    parser.add_argument("--max-pixels", type=positive_int, default=limit("max_pixels"), metavar="PIXELS",
                        help="largest image, width x height, checked on the file header (default: %(default)s)")
    parser.add_argument("--timeout-s", type=finite_float_above(0), default=limit("timeout_s"), metavar="S",
                        help="seconds a request may take, upload included (default: %(default)s)")
    parser.add_argument("--max-in-flight", type=positive_int, default=limit("max_in_flight"), metavar="N",
                        help="reconstructions handled at once per worker; more get 503 (default: %(default)s)")
    parser.add_argument("--access-log", action="store_true", help="log every request (uvicorn's access log)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info",
                        help="log level (default: %(default)s)")
    return parser


def run_serve(args):
    """Run the service until SIGINT/SIGTERM (then drain); returns the exit status (2 on a bad model)."""
    from face3d.serve.config import ServeConfig
    from face3d.serve.limits import Limits
    from face3d.serve.server import run_server

    config = ServeConfig(model=str(args.model), uv_data=args.uv_data, bfm=args.bfm, max_batch=args.max_batch,
                         max_delay_ms=args.max_delay_ms, threads=args.threads, model_threads=args.model_threads,
                         detector=args.detector, trust_model=args.trust_model,
                         limits=Limits(max_bytes=args.max_bytes, max_pixels=args.max_pixels,
                                       timeout_s=args.timeout_s, max_in_flight=args.max_in_flight))
    try:
        return run_server(config, host=args.host, port=args.port, workers=args.workers, log_level=args.log_level,
                          access_log=args.access_log)
    except (FileNotFoundError, ValueError, ImportError) as error:
        print(f"{args.prog}: error: {error_text(error)}", file=sys.stderr)
        return 2


SERVE = Command("serve", "serve 3D face reconstruction over HTTP (FastAPI + uvicorn, dynamic batching)",
                DESCRIPTION, add_serve_arguments, run_serve)


def main(argv=None, prog=None):
    """``face3d serve`` as a program of its own (``python -m face3d.serve``); returns the exit status."""
    return SERVE.main(argv, prog)
