"""The FastAPI application: ``/health``, ``/metrics``, ``POST /v1/reconstruct`` (OpenAPI docs at ``/docs``).

One process holds one model. Requests are read on the event loop, decoded and cropped in a thread pool, run
through the network in dynamic batches (``batching.DynamicBatcher``) and post-processed in the pool again, so the
loop only moves bytes. Limits (``limits.Limits``) bound the body, the image, the time and the requests in flight;
every failure is a JSON error of its own request (``errors``), and a client that disconnects cancels its request.
On shutdown uvicorn stops accepting connections and waits for the requests in progress; then the batcher runs what
is queued and the threads stop.
"""
import asyncio
import contextlib
import dataclasses
import inspect
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, Query, Request
from fastapi.responses import PlainTextResponse
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from face3d.serve.batching import BatcherClosed, DynamicBatcher
from face3d.serve.codecs import decode_base64, decode_image, parse_box, parse_landmarks
from face3d.serve.config import ServeConfig
from face3d.serve.errors import ApiError, error_response, install_error_handlers
from face3d.serve.metrics import ServiceMetrics
from face3d.serve.pipeline import Detector, Reconstructor

__all__ = ["load_reconstructor", "create_app", "app_from_environment", "CONFIG_ENVIRONMENT", "LOG_LEVEL_ENVIRONMENT",
           "LOG_FORMAT"]

log = logging.getLogger("face3d.serve")

CONFIG_ENVIRONMENT = "FACE3D_SERVE_CONFIG"  # JSON ServeConfig for the worker processes of ``--workers N``
LOG_LEVEL_ENVIRONMENT = "FACE3D_SERVE_LOG_LEVEL"  # and their log level
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
_ROUTES = ("/health", "/metrics", "/v1/reconstruct", "/docs", "/openapi.json")
_FIELDS = ("image", "box", "landmarks")  # of a multipart form and of a JSON body alike

_REQUEST_BODY = {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
        "image": {"type": "string", "format": "binary", "description": "PNG, JPEG, BMP or WebP file"},
        "box": {"type": "string", "example": "175 76 265 166", "description": "face box x0 y0 x1 y1 (pixels)"},
        "landmarks": {"type": "string", "description": "68 points: 68 rows 'x y' (or 'x y z'), pixels"}}}},
    "application/json": {"schema": {"type": "object", "required": ["image"], "properties": {
        "image": {"type": "string", "format": "byte", "description": "the image file, base64"},
        "box": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
        "landmarks": {"type": "array", "items": {"type": "array", "items": {"type": "number"}},
                      "description": "(68, 2) or (68, 3) pixels"}}}}}}
_ERRORS = {400: {"description": "bad_request, bad_image"}, 408: {"description": "timeout (body not received)"},
           413: {"description": "too_large, too_many_pixels"}, 415: {"description": "unsupported_image, "
                                                                                    "unsupported_media_type"},
           422: {"description": "invalid_box, invalid_landmarks, invalid_parameter, face_locator_missing, no_face"},
           500: {"description": "internal (an unexpected failure, the model's included)"},
           503: {"description": "busy, shutting_down"}, 504: {"description": "timeout (processing)"}}


def load_reconstructor(config):
    """The model, its UV data, canonical face and the face detector ``config.detector``; with 'auto', none (a
    WARNING saying why) when dlib cannot be used.

    Raises:
        FileNotFoundError, ValueError, ImportError: the model or UV data cannot be loaded (message names it).
        DetectorUnavailable (an ImportError): the detector asked for by name ('cnn', 'hog') cannot be built.
    """
    from face3d.prnet.detect import DetectorUnavailable, DlibDetector
    from face3d.prnet.inference import PRN

    options = {}
    if Path(config.model).suffix.lower() == ".onnx":
        # the model thread shares the cores with decoding and post-processing: its idle threads must not spin;
        # batches come in every size up to max_batch: no memory plan kept per size
        options = {"threads": config.model_threads, "spinning": False, "memory_pattern": False}
    prn = PRN(config.model, uv_data=config.uv_data, bfm=config.bfm, trust_model=config.trust_model, **options)
    try:
        detector = Detector(DlibDetector(config.detector))
    except DetectorUnavailable as exc:
        if config.detector != "auto":
            raise
        log.warning("no face detector, requests need a box or landmarks: %s", exc)
        return Reconstructor(prn, None, f"the server has no face detector: {exc}")
    return Reconstructor(prn, detector)


class _Service:
    """The state one application shares between its requests."""

    def __init__(self, config, reconstructor, metrics):
        self.config, self.reconstructor, self.metrics = config, reconstructor, metrics
        self.pool = ThreadPoolExecutor(config.threads, thread_name_prefix="face3d-worker")
        self.batcher = DynamicBatcher(reconstructor.prn.predictor.predict, config.max_batch,
                                      config.max_delay_ms / 1e3, on_batch=self.metrics.record_batch)

    async def in_pool(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, function, *args)

    async def close(self):
        await self.batcher.close()
        self.pool.shutdown(wait=True)


async def _read_fields(request, max_bytes):
    """(image bytes, box value, landmarks value) of a multipart or JSON request (400/415/422 otherwise) whose body
    holds at most ``max_bytes`` bytes (``_BodyLimit``)."""
    try:
        return await _read_body_fields(request, max_bytes)
    except ClientDisconnect:  # nobody is left to read the answer; counted as an error, not logged as a crash
        raise ApiError(499, "client_closed", "the client disconnected before sending the whole body") from None


async def _read_body_fields(request, max_bytes):
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        # a text field may take the whole body (Starlette's own limit, 1 MiB, would answer an image sent as a
        # text field with its own message instead of the one below)
        form = await request.form(max_files=2, max_fields=8, max_part_size=max_bytes)
        unknown = sorted(set(form.keys()) - set(_FIELDS))
        if unknown:
            raise ApiError(422, "invalid_parameter", f"unknown form field {unknown[0]!r} (expected {_FIELDS})")
        image = form.get("image")
        if isinstance(image, str):  # curl -F image=<photo.jpg: the file's bytes as text, without a filename
            raise ApiError(400, "bad_request", "image: sent as a text field; upload it as a file "
                                               "(curl -F image=@photo.jpg)")
        if image is None:
            raise ApiError(400, "bad_request", "image: missing; upload the file as the multipart field 'image'")
        values = {}
        for name in ("box", "landmarks"):
            value = form.get(name)
            values[name] = (await value.read()).decode("utf-8", "replace") if isinstance(value, UploadFile) else value
        return await image.read(), values["box"], values["landmarks"]
    if media == "application/json":
        try:
            body = json.loads(await request.body())
        except (UnicodeDecodeError, ValueError) as exc:
            raise ApiError(400, "bad_request", f"body: not valid JSON ({exc})") from None
        except RecursionError:  # arrays or objects nested deeper than the parser's stack
            raise ApiError(400, "bad_request", "body: not valid JSON (nested too deeply)") from None
        if not isinstance(body, dict):
            raise ApiError(400, "bad_request", "body: expected a JSON object with 'image' (base64)")
        unknown = sorted(set(body) - set(_FIELDS))
        if unknown:
            raise ApiError(422, "invalid_parameter", f"unknown field {unknown[0]!r} (expected {_FIELDS})")
        if "image" not in body:
            raise ApiError(400, "bad_request", "image: missing; send the image file base64-encoded as 'image'")
        return decode_base64(body["image"], "image"), body.get("box"), body.get("landmarks")
    raise ApiError(415, "unsupported_media_type", f"content-type {media or 'missing'!r}: send multipart/form-data "
                                                  "(field 'image') or application/json (base64 'image')")


def _decode_and_prepare(service, data, box, landmarks):
    """Worker-thread step: decode the image, check the box or landmarks, crop the face."""
    image = decode_image(data, service.config.limits)
    h, w = image.shape[:2]
    box = None if box is None else parse_box(box, w, h)
    landmarks = None if landmarks is None else parse_landmarks(landmarks, w, h)
    return image, service.reconstructor.prepare(image, box=box, landmarks=landmarks)


async def _reconstruct(service, request, mesh, texture, phase):
    """The whole request; ``phase[0]`` says whether the body is still being read (for the timeout's status)."""
    started = time.perf_counter()
    with service.batcher.expect() as ticket:
        data, box, landmarks = await _read_fields(request, service.config.limits.max_bytes)
        if box is not None and landmarks is not None:
            raise ApiError(422, "invalid_parameter", "give box or landmarks, not both")
        phase[0] = "process"
        return await _unless_the_client_leaves(
            request, _process(service, ticket, data, box, landmarks, mesh, texture, started))


async def _process(service, ticket, data, box, landmarks, mesh, texture, started):
    """Decode and crop, the network (through ``ticket``), post-processing: the answer of a request whose body was
    read from ``started`` (``time.perf_counter()``) until now."""
    read = time.perf_counter()
    image, prepared = await service.in_pool(_decode_and_prepare, service, data, box, landmarks)
    ready = time.perf_counter()
    try:
        prediction = await ticket.submit(prepared.crop.image)
    except BatcherClosed as exc:
        raise ApiError(503, "shutting_down", str(exc)) from None
    predicted = time.perf_counter()
    answer = await service.in_pool(service.reconstructor.describe, image, prepared, prediction.output, mesh, texture)
    done = time.perf_counter()
    answer["image"] = {"width": int(image.shape[1]), "height": int(image.shape[0])}
    answer["timing_ms"] = {"read": 1e3 * (read - started), "decode_and_crop": 1e3 * (ready - read),
                           "queue": 1e3 * prediction.queued_s, "network": 1e3 * prediction.network_s,
                           "batch_size": prediction.batch_size, "postprocess": 1e3 * (done - predicted),
                           "total": 1e3 * (done - started)}
    service.metrics.record_latency(done - started)
    return answer


async def _client_gone(request):
    """Return when the client disconnects: once the whole body is read, the next ASGI message is
    ``http.disconnect``, sent when the connection closes (or after the answer)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_the_client_leaves(request, work):
    """The result of the coroutine ``work``, run as a task while the connection is watched.

    A client that disconnects first cancels the work (ApiError 499 ``client_closed``): its request leaves the
    batcher's queue and the thread pool's queue. A step already running in a pool thread cannot be stopped; it runs
    to its end there and its result is dropped.
    """
    task, watcher = asyncio.ensure_future(work), asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when the timeout cancels this request
        task.cancel()
        watcher.cancel()
        await asyncio.wait((task, watcher))
    if not task.cancelled():
        return task.result()
    raise ApiError(499, "client_closed", "the client disconnected before the answer")


class _BodyLimit:
    """ASGI middleware: 413 for a declared Content-Length over ``max_bytes``; a body that turns out longer while
    it is read raises ApiError 413 inside the request (answered by the error handlers)."""

    def __init__(self, app, max_bytes, on_error):
        self.app, self.max_bytes, self.on_error = app, int(max_bytes), on_error

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.max_bytes:
            self.on_error("too_large")
            return await error_response(413, "too_large", self._message(declared))(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise ApiError(413, "too_large", self._message(f"more than {self.max_bytes}"))
            return message

        await self.app(scope, limited_receive, send)

    def _message(self, size):
        return f"request body: {size} bytes, the limit is {self.max_bytes} (--max-bytes)"


class _CountRequests:
    """ASGI middleware: count every answered request by method, route and status.

    An unexpected exception passes through it before Starlette's outermost middleware answers 500 (``errors``), so
    an exception raised before the answer started is counted here as that 500."""

    def __init__(self, app, metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"] if scope["path"] in _ROUTES else "other"
        started = False

        async def counting_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                self.metrics.record_request(scope["method"], path, message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except Exception:
            if not started:
                self.metrics.record_request(scope["method"], path, 500)
            raise


def create_app(config, reconstructor=None):
    """The FastAPI application for ``config``.

    Args:
        config: ServeConfig.
        reconstructor: a loaded Reconstructor (``load_reconstructor``); None loads it at startup.
    Returns:
        FastAPI (serve it with uvicorn; its lifespan starts and drains the batcher).
    """
    import face3d

    metrics = ServiceMetrics()
    services = []  # the one _Service, created by the lifespan

    @contextlib.asynccontextmanager
    async def lifespan(app):
        loaded = reconstructor or await asyncio.to_thread(load_reconstructor, config)
        service = _Service(config, loaded, metrics)
        services.append(service)
        service.batcher.start()
        predictor = loaded.prn.predictor
        log.info("serving %s (%s, input %d, batch <= %d within %g ms), detector: %s", config.model,
                 predictor.backend, predictor.input_size, config.max_batch, config.max_delay_ms,
                 loaded.detector.kind if loaded.detector else "none")
        yield
        await service.close()
        log.info("drained: %d reconstructions answered", metrics.requests[("POST", "/v1/reconstruct", 200)])

    app = FastAPI(title="face3d", version=face3d.__version__, lifespan=lifespan,
                  description="3D face reconstruction (PRNet) over HTTP: 68 landmarks, head pose, dense mesh.")
    install_error_handlers(app, on_error=metrics.record_error)

    @app.get("/health", summary="model, input size, backend")
    async def health():
        prn, detector = services[0].reconstructor.prn, services[0].reconstructor.detector
        return {"status": "ok", "model": str(config.model), "backend": prn.predictor.backend,
                "input_size": prn.input_size, "model_batch_size": prn.predictor.batch_size,
                "resolution": prn.resolution, "vertices": len(prn.uv.face_ind), "max_batch": config.max_batch,
                "max_delay_ms": config.max_delay_ms, "detector": detector.kind if detector else None,
                "limits": dataclasses.asdict(config.limits), "pid": os.getpid(), "version": face3d.__version__}

    @app.get("/metrics", summary="requests, errors, latency quantiles, batch sizes")
    async def metrics_route(exposition: Literal["json", "prometheus"] = Query(
            "json", alias="format", description="'prometheus': Prometheus' text exposition format")):
        if exposition == "prometheus":
            return PlainTextResponse(metrics.prometheus(), media_type="text/plain; version=0.0.4")
        return metrics.snapshot()

    @app.post("/v1/reconstruct", summary="3D face of an uploaded image", responses=_ERRORS,
              openapi_extra={"requestBody": _REQUEST_BODY})
    async def reconstruct(request: Request,
                          mesh: Literal["obj", "ply", "mat"] | None = Query(
                              None, description="add the dense mesh in this format (base64 in 'mesh')"),
                          texture: bool = Query(False, description="add the UV texture as a PNG (base64)")):
        service, limits = services[0], config.limits
        unknown = sorted(set(request.query_params) - set(query_names))
        if unknown:  # a misspelt option would silently drop the mesh or texture it asked for
            raise ApiError(422, "invalid_parameter", f"unknown query parameter{'s' if len(unknown) > 1 else ''} "
                                                     f"{', '.join(map(repr, unknown))} (expected {query_names})")
        if metrics.in_flight >= limits.max_in_flight:
            raise ApiError(503, "busy", f"{metrics.in_flight} requests in flight, the limit is "
                                        f"{limits.max_in_flight} (--max-in-flight); retry later")
        metrics.in_flight += 1
        phase = ["read"]
        try:
            return await asyncio.wait_for(_reconstruct(service, request, mesh, texture, phase), limits.timeout_s)
        except asyncio.TimeoutError:
            if phase[0] == "read":
                raise ApiError(408, "timeout", f"request body not received within {limits.timeout_s:g} s") from None
            raise ApiError(504, "timeout", f"reconstruction took longer than {limits.timeout_s:g} s") from None
        finally:
            metrics.in_flight -= 1

    # the query parameters reconstruct takes, read from its signature so that the check follows it
    query_names = tuple(name for name in inspect.signature(reconstruct).parameters if name != "request")
    app.add_middleware(_BodyLimit, max_bytes=config.limits.max_bytes, on_error=metrics.record_error)
    app.add_middleware(_CountRequests, metrics=metrics)  # outermost: counts the body limit's answers too
    return app


def app_from_environment():
    """The application of the ServeConfig in ``$FACE3D_SERVE_CONFIG`` (uvicorn's factory for ``--workers N``:
    every worker process loads its own model), logging at ``$FACE3D_SERVE_LOG_LEVEL`` (default INFO)."""
    logging.basicConfig(level=os.environ.get(LOG_LEVEL_ENVIRONMENT, "INFO"), format=LOG_FORMAT)
    return create_app(ServeConfig.from_json(os.environ[CONFIG_ENVIRONMENT]))
