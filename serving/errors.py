"""Error responses: JSON with a stable ``error`` code and a human ``message``, nothing else.

Clients branch on ``error``; ``message`` is for people. No response ever contains a traceback
or a value the client submitted: FastAPI's default 422 handler echoes the offending ``input``
(which may be a customer id or worse), so it is replaced here by one that reports field
paths and messages only.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, Literal, get_args, get_origin

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

#: Codes for the errors Starlette and FastAPI raise themselves (routing, body limit, ...).
HTTP_ERROR_CODES: dict[int, tuple[str, str]] = {
    400: ("bad_request", "the request could not be read"),
    401: ("unauthorized", "a valid API key is required in the X-API-Key header"),
    403: ("forbidden", "this API key may not use this route"),
    404: ("not_found", "no such route"),
    405: ("method_not_allowed", "this route does not accept that method"),
    408: ("request_timeout", "the request came too slowly"),
    413: ("payload_too_large", "the request body is too large"),
    415: ("unsupported_media_type", "send the body as application/json"),
    429: ("too_many_requests", "too many requests; retry later"),
    431: ("header_too_large", "the request head is too large"),
}


#: Request fields whose keys the client chooses; their keys are never repeated in errors.
FREE_FORM_FIELDS = frozenset({"attributes"})


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
    headers = exc.headers
    if exc.status_code == 405 and (allowed := _allowed_methods(request)):
        headers = {**(headers or {}), "Allow": allowed}
    return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=headers)


def _allowed_methods(request: Request) -> str:
    """Every method the app answers on this path, from its OpenAPI schema (cached by FastAPI):
    Starlette's 405 names only those of the first route matching the path, and
    ``/v1/outcomes`` has a GET and a POST. Empty for a path the schema does not describe."""
    template = getattr(request.scope.get("route"), "path", None)
    operations = request.app.openapi().get("paths", {}).get(template, {}) if template else {}
    methods = {m.upper() for m in operations}
    if "GET" in methods:
        methods.add("HEAD")  # Starlette answers HEAD on every GET route
    return ", ".join(sorted(methods))


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
            unexpected = "<unexpected parameter>" if loc[0] == "query" else "<unexpected field>"
            loc = [*loc[:-1], unexpected]
        # Keys of free-form objects (customer attributes) are client data, not field names.
        loc = [
            "<key>" if i > 0 and (loc[i - 1] in FREE_FORM_FIELDS or nxt == "[key]") else part
            for i, (part, nxt) in enumerate(zip(loc, [*loc[1:], None], strict=True))
        ]
        message = err.get("msg", "")
        if err.get("type") == "extra_forbidden" and loc and loc[0] == "body":
            message = "unexpected field"  # pydantic's wording says "inputs"
        details.append({"loc": loc, "message": message, "type": err.get("type", "")})
    return details


def _validation_error(
    before: Callable[[Request], None] | None,
) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    """The 422 handler; ``before(request)`` runs first and may raise :class:`ApiError`,
    which is answered instead (the API-key check: see :func:`install_error_handlers`)."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        if before is not None:
            try:
                before(request)
            except ApiError as err:
                return await _api_error(request, err)
        return JSONResponse(
            error_body(
                "invalid_request",
                "the request does not match the API schema; see details",
                details=validation_details(exc.errors()),
            ),
            status_code=422,
        )

    return handler


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled %s on %s %s", type(exc).__name__, request.method, _route(request))
    return JSONResponse(
        error_body("internal_error", "an unexpected error occurred; it has been logged"),
        status_code=500,
    )


def _route(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", "-")


def install_error_handlers(
    app: FastAPI, *, before_validation_error: Callable[[Request], None] | None = None
) -> None:
    """Register the JSON error handlers on ``app``.

    FastAPI validates a body before the route (and its key check) runs, so a request without
    a valid key would learn the schema from the 422. ``before_validation_error`` is called
    with such a request first; an :class:`ApiError` it raises (the app passes
    :func:`serving.auth.authenticate_unless_public`: a 401) is the answer instead. Who may
    call what is decided in :mod:`serving.auth`, which imports this module, never the reverse.
    """
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error(before_validation_error))
    app.add_exception_handler(Exception, _unexpected)


async def reject_unknown_query(request: Request) -> None:
    """App-wide dependency: a query parameter the route does not declare, or a parameter
    given twice that the route does not declare as a list, is a 422, not silently ignored (a
    misspelt ``risk_bnad=high`` would return unfiltered results; in ``limit=1&limit=2`` the
    last would win unseen). The names come from the route's own declared parameters, so a
    parameter a route adds is known here without a list to keep in step.

    Raised as a validation error, so the API-key check of :func:`install_error_handlers`
    answers first: a caller without a key cannot probe parameter names. An unknown name is
    client data and is not repeated; a repeated one is the route's own and is named.
    """
    if not request.query_params:
        return
    known, multiple = _query_names(request.scope.get("route"))
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():  # a repeated name comes once each time
        if name not in known:
            errors.append(
                {
                    "loc": ("query", name),
                    "msg": "unknown query parameter",
                    "type": "extra_forbidden",
                }
            )
        elif name in seen and name not in multiple:
            errors.append(
                {
                    "loc": ("query", name),
                    "msg": "query parameter given more than once",
                    "type": "repeated_parameter",
                }
            )
        seen.add(name)
    if errors:
        raise RequestValidationError(errors)


_QUERY_NAMES: dict[int, tuple[frozenset[str], frozenset[str]]] = {}


def _query_names(route: Any) -> tuple[frozenset[str], frozenset[str]]:
    """The query parameter names (aliases) a route declares, and those of them declared as
    lists (which may be repeated), cached per route."""
    key = id(route)
    names = _QUERY_NAMES.get(key)
    if names is None:
        found: set[str] = set()
        lists: set[str] = set()
        stack = [getattr(route, "dependant", None)]
        while stack:  # the route's own parameters and those of its dependencies
            dependant = stack.pop()
            if dependant is None:
                continue
            for param in dependant.query_params:
                found.add(param.alias)
                if _is_sequence(param.field_info.annotation):
                    lists.add(param.alias)
            stack.extend(dependant.dependencies)
        names = _QUERY_NAMES[key] = (frozenset(found), frozenset(lists))
    return names


def _is_sequence(annotation: Any) -> bool:
    """Whether a parameter annotation is a list-like type (``list[str] | None`` included)."""
    origin = get_origin(annotation)
    if origin in (list, tuple, set, frozenset) or annotation in (list, tuple, set, frozenset):
        return True
    if origin is not None and origin is not Literal:
        return any(_is_sequence(arg) for arg in get_args(annotation))
    return False


class CatchAllMiddleware:
    """Answer an unexpected exception with the JSON 500 and keep it from reaching uvicorn.

    Starlette's own last-resort handler sends the 500 and then re-raises, after which uvicorn
    closes the keep-alive connection: the client's *next* request on it fails with a reset.
    Caught here (the outermost layer), the error is logged once, without a traceback in the
    response, and the connection stays usable.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception:
            route = getattr(scope.get("route"), "path", "-")
            log.exception("unhandled error on %s %s", scope.get("method"), route)
            if started:
                raise  # half a response is out: only closing the connection is honest
            body = error_body("internal_error", "an unexpected error occurred; it has been logged")
            await JSONResponse(body, status_code=500)(scope, receive, send)
