"""Run the service on uvicorn: one process with the model loaded first, or N worker processes.

The model is loaded before the port opens, so a bad model or UV data is an exception here, not a server that fails
after binding. With N workers it is loaded once here to check it, then dropped, and uvicorn starts N processes that
each load their own (the config travels in ``$FACE3D_SERVE_CONFIG``). SIGINT/SIGTERM drain: uvicorn stops
accepting, finishes the requests in progress, then the application's shutdown runs the queued batches.
"""
import dataclasses
import logging
import os
import signal

__all__ = ["run_server"]


def run_server(config, host="127.0.0.1", port=8000, workers=1, log_level="info", access_log=False):
    """Serve ``config`` until SIGINT/SIGTERM, then drain.

    Args:
        config: ServeConfig. host, port: where to listen. workers: processes, each with its own model.
        log_level: 'debug', 'info', 'warning' or 'error'. access_log: log every request.
    Returns:
        0 once drained.
    Raises:
        FileNotFoundError, ValueError, ImportError: the model or UV data cannot be loaded.
    """
    import uvicorn

    from face3d.serve.app import CONFIG_ENVIRONMENT, LOG_FORMAT, LOG_LEVEL_ENVIRONMENT, create_app, load_reconstructor

    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    options = {"host": host, "port": int(port), "log_level": log_level, "access_log": access_log,
               "timeout_graceful_shutdown": int(config.limits.timeout_s) + 5, "lifespan": "on"}
    if workers == 1:
        target = create_app(config, load_reconstructor(config))
    else:
        # a worker that fails to load only prints its traceback, and uvicorn's supervisor then exits with status 0
        if load_reconstructor(config).prn.uv.canonical_vertices is not None:
            # a --bfm the uv-data leaves unread was warned about by this load: the workers get none, not to repeat it
            config = dataclasses.replace(config, bfm=None)
        os.environ[CONFIG_ENVIRONMENT] = config.to_json()
        os.environ[LOG_LEVEL_ENVIRONMENT] = log_level.upper()
        target, options = "face3d.serve.app:app_from_environment", {**options, "factory": True, "workers": workers}
    # uvicorn drains on SIGINT/SIGTERM, then raises the signal again for the previous handler; with this one the
    # drained server returns (status 0) instead of dying of the signal
    previous = {sig: signal.signal(sig, _drained) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        uvicorn.run(target, **options)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _drained(signum, frame):
    """Signal handler left for uvicorn to call once it has drained (nothing left to do)."""
