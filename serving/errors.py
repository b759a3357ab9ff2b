"""Error responses: JSON with a stable ``error`` code and a human ``message``, nothing else.

Clients branch on ``error``; ``message`` is for people. No response ever contains a traceback
or a value the client submitted: FastAPI's default 422 handler echoes the offending ``input``
(which may be a customer id or worse), so it is replaced here by one that reports field
paths and messages only.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

#: Codes for the errors Starlette and FastAPI raise themselves (routing, body limit, ...).
HTTP_ERROR_CODES: dict[int, tuple[str, str]] = {
    400: ("bad_request", "the request could not be read"),
    401: ("unauthorized", "a valid API key is required in the X-API-Key header"),
    403: ("forbidden", "this API key may not use this route"),
    404: ("not_found", "no such route"),
    405: ("method_not_allowed", "this route does not accept that method"),
    413: ("payload_too_large", "the request body is too large"),
    415: ("unsupported_media_type", "send the body as application/json"),
    429: ("too_many_requests", "too many requests; retry later"),
}


class ApiError(Exception):
    """An error the API reports on purpose, with its status, code and message.

    ``extra`` adds fields to the body (for example ``checks`` on ``/readyz``); it must never
    hold data the client submitted.
    """

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.extra = extra or {}
        self.headers = headers


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON body of every error response."""
    return {"error": code, "message": message, **extra}


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(
        error_body(exc.code, exc.message, **exc.extra),
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code, message = HTTP_ERROR_CODES.get(exc.status_code) or ("http_error", _phrase(exc))
    return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=exc.headers)


def _phrase(exc: StarletteHTTPException) -> str:
    try:
        return HTTPStatus(exc.status_code).phrase.lower()
    except ValueError:
        return "the request failed"


def validation_details(errors: Any) -> list[dict[str, Any]]:
    """Field path, message and type of each validation error; never the submitted input."""
    details = []
    for err in errors:
        loc = list(err.get("loc", ()))
        if err.get("type") == "extra_forbidden" and loc:
            # The last element of the path is the client's own (unexpected) key.
            loc = [*loc[:-1], "<unexpected field>"]
        details.append({"loc": loc, "message": err.get("msg", ""), "type": err.get("type", "")})
    return details


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(
        error_body(
            "invalid_request",
            "the request does not match the API schema; see details",
            details=validation_details(exc.errors()),
        ),
        status_code=422,
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled %s on %s %s", type(exc).__name__, request.method, _route(request))
    return JSONResponse(
        error_body("internal_error", "an unexpected error occurred; it has been logged"),
        status_code=500,
    )


def _route(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", "-")


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON error handlers on ``app``."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
