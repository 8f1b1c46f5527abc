"""One JSON error shape for every failure: `{"error": CODE, "message": TEXT, "details": [...]}`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from parley.logging import get_logger

log = get_logger(__name__)


class ApiError(Exception):
    """Raise from a route to answer `status` with a JSON error body."""

    def __init__(self, status: int, code: str, message: str, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []


def error_body(code: str, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    """The JSON error body."""
    return {"error": code, "message": message, "details": details or []}


class ErrorDetail(BaseModel):
    """One problem with a request: the field it is about and what is wrong."""

    field: str | None = None
    message: str | None = None


class ErrorBody(BaseModel):
    """The body of every error answer."""

    error: str = Field(description="Machine-readable code, e.g. not_found, validation_error, unauthorized.")
    message: str = Field(description="What went wrong, in words.")
    details: list[ErrorDetail] = Field(default_factory=list, description="Per-field problems (may be empty).")


_MEANING = {
    400: "The body could not be parsed, or the input is unusable (the message says why).",
    401: "Missing or invalid X-API-Key.",
    404: "The resource (or one the request names) does not exist.",
    409: "The resource is in a state that does not allow this.",
    413: "The request body is larger than this route accepts.",
    422: "Invalid input; `details` names each field.",
    503: "A part this route needs is not running.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` declaring these error statuses with the `ErrorBody` shape."""
    return {s: {"model": ErrorBody, "description": _MEANING.get(s, "Error.")} for s in statuses}


def allowed_methods(app: Any, path: str) -> list[str]:
    """Every method some route of `app` serves at `path` (for a correct `Allow` header on 405)."""
    methods: set[str] = set()
    for route in iter_route_contexts(app.routes):
        regex = getattr(route, "path_regex", None)
        if regex is not None and route.methods and regex.match(path):
            methods |= set(route.methods)
    return sorted(methods)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    """Register handlers so every error, including validation and 404, has the same JSON shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "APIKey"} if exc.status == 401 else None
        return JSONResponse(error_body(exc.code, exc.message, exc.details), exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"field": _field(tuple(e["loc"])), "message": e["msg"].removeprefix("Value error, ")}
            for e in exc.errors()
        ]
        message = "; ".join(f"{d['field']}: {d['message']}" for d in details) or "invalid request"
        return JSONResponse(error_body("validation_error", message, details), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the first matching route's methods (PUT for PUT+DELETE on one path).
            headers["Allow"] = ", ".join(allowed_methods(request.app, request.url.path))
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return JSONResponse(error_body("internal_error", "internal server error; see the server log"), 500)
