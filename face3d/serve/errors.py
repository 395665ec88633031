"""JSON errors of the HTTP service: one body for every error answer.

Every error is ``{"error": CODE, "detail": MESSAGE}``: a stable code clients can branch on and a one-line message
naming the field, the limit or the missing package. FastAPI's own validation errors (bad query parameters), unknown
routes and unexpected exceptions are converted to the same body, so no answer is ever HTML or a bare string.
FastAPI is imported by the functions that need it, so the input checks (``limits``, ``codecs``) run without it.
"""
import logging

__all__ = ["ApiError", "error_response", "install_error_handlers"]

log = logging.getLogger("face3d.serve")

_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}


class ApiError(Exception):
    """An error answer: HTTP ``status``, machine-readable ``code``, one-line ``detail``."""

    def __init__(self, status, code, detail):
        super().__init__(detail)
        self.status, self.code, self.detail = int(status), str(code), str(detail)


def error_response(status, code, detail):
    """The JSONResponse ``{"error": code, "detail": detail}`` with HTTP ``status``."""
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def _validation_detail(exc):
    """'mesh: Input should be 'obj', 'ply' or 'mat'' from FastAPI's list of validation errors (the first one)."""
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
    return f"{where}: {first.get('msg', 'invalid value')}"


def install_error_handlers(app, on_error=None):
    """Answer ApiError, FastAPI validation errors, Starlette HTTP errors and any other exception as JSON.

    Args:
        app: the FastAPI application.
        on_error: optional callable ``(code)`` told of every error answer (the metrics' error counter).
    """
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    def answer(status, code, detail):
        if on_error is not None:
            on_error(code)
        return error_response(status, code, detail)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return answer(exc.status, exc.code, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return answer(422, "invalid_parameter", _validation_detail(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return answer(exc.status_code, _HTTP_CODES.get(exc.status_code, "http_error"), str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return answer(500, "internal", f"{type(exc).__name__}: {exc}")
