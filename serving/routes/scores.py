"""``POST /v1/scores``: look customers up in the latest scored snapshot.

The route is the API's hot path (a CRM asks for one customer at a time), so it comes in
layers that give the same answers. The FastAPI route below is the reference: it is what the
OpenAPI schema documents, and it produces every answer, including every error.
:class:`ScoresAnswerer` decides the *successful* requests on its own: given the key header and
the whole body, it returns the bytes the route would return, or ``None`` when the route must
answer (any error, a missing snapshot). Two layers ask it before the route does, so that a
successful request skips FastAPI's routing, dependency and body-parsing machinery:
:class:`ScoresFastPath`, an ASGI middleware inside the app's own middlewares (body limit,
access log, metrics, catch-all), and, under ``python -m serving``, the HTTP protocol of
:mod:`serving.http_protocol`, which answers before uvicorn builds an ASGI request at all.
"""

# No ``from __future__ import annotations`` here: FastAPI must see the request model built in
# ``build_router`` (a local name) as a real annotation, not a string.

from typing import Any, cast

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving import schemas
from serving.auth import HEADER, authenticate, scores_key
from serving.config import Settings
from serving.errors import reject_unknown_query
from serving.schemas import (
    ErrorResponse,
    ScoresResponse,
    ValidationErrorResponse,
    scores_request_model,
)
from serving.state import ServingState, get_snapshot

PATH = "/v1/scores"
#: The API-key header as it appears in ASGI scopes and parsed requests (lower case).
KEY_HEADER = HEADER.lower().encode()
#: The only content type the layers before the route accept; anything else goes to the route.
JSON = b"application/json"

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "body could not be read (not UTF-8 JSON)"},
    401: {"model": ErrorResponse, "description": "missing or wrong API key"},
    413: {"model": ErrorResponse, "description": "request body too large"},
    422: {"model": ValidationErrorResponse, "description": "body does not match the schema"},
    503: {"model": ErrorResponse, "description": "no scored snapshot loaded"},
}


def build_router(settings: Settings) -> APIRouter:
    """The scores routes, with the request limit taken from ``settings``."""
    ScoresRequest = scores_request_model(settings.max_customers_per_request)
    router = APIRouter(tags=["scores"])

    @router.post(
        PATH,
        # Documented like the routes that take the key through a dependency.
        openapi_extra={"security": [{"APIKeyHeader": []}]},
        response_model=ScoresResponse,
        summary="Scores of known customers",
        responses=ERROR_RESPONSES,
    )
    # mypy cannot read a model built at run time as a type; it is a schemas.ScoresRequest
    async def post_scores(body: ScoresRequest, request: Request) -> Response:  # type: ignore[valid-type]
        """Churn and CLV scores from the latest scored snapshot, in request order. An id the
        snapshot does not hold is reported in its place as ``{"customer_id": ...,
        "error": "unknown_customer"}``; the request still succeeds."""
        # The checks the other routes get from dependencies, called directly: this is the
        # hot path, and FastAPI's dependency resolution would cost more than the look-up.
        await reject_unknown_query(request)
        authenticate(request, request.headers.get(HEADER))
        snapshot = await get_snapshot(request.app.state.serving.current)
        ids = cast(schemas.ScoresRequest, body).customer_ids
        return Response(snapshot.scores_json(ids), media_type="application/json")

    return router


class ScoresAnswerer:
    """The successful ``POST /v1/scores`` answer, decided without FastAPI.

    The body is validated by the request model built from the same settings, parsed by
    pydantic in JSON mode: for every body that ``json.loads`` reads, it takes the same
    decisions as the route (which parses with ``json.loads`` and validates in Python mode), and
    a body it refuses that the route would take (one starting with a UTF-8 byte-order mark) is
    simply left to the route. The key is checked by the same :func:`serving.auth.scores_key`;
    the snapshot is the one being served when the call is made.
    """

    def __init__(self, state: ServingState) -> None:
        self.state = state
        self.model = scores_request_model(state.settings.max_customers_per_request)

    def answer(self, key: bytes, body: bytes) -> bytes | None:
        """The 200 response body for a request with API-key header ``key`` and JSON ``body``,
        or ``None`` when the route must answer (an error of any kind, or no snapshot)."""
        snapshot = self.state.current.snapshot
        if snapshot is None:
            return None
        try:
            if scores_key(self.state.key_store, key.decode("latin-1")) is None:
                return None
            request = self.model.model_validate_json(body)
        except Exception:  # an unreadable key store or body, or a body the model refuses
            return None
        return snapshot.scores_json(request.customer_ids)  # type: ignore[attr-defined]


class ScoresFastPath:
    """ASGI middleware: answer a well-formed, authorised ``POST /v1/scores`` directly.

    ``route`` is the app's FastAPI route of ``/v1/scores``: it is put in the scope, as
    FastAPI's router does, so the access log and the metrics see the same route template.
    Every request ``answerer`` does not answer with a 200 goes to the route, with the messages
    already read replayed: errors have one implementation.
    """

    def __init__(self, app: ASGIApp, *, answerer: ScoresAnswerer, route: APIRoute) -> None:
        self.app = app
        self.answerer = answerer
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or scope["query_string"]
        ):
            await self.app(scope, receive, send)
            return
        content_type = key = None
        for name, value in scope["headers"]:
            if name == b"content-type" and content_type is None:
                content_type = value
            elif name == KEY_HEADER and key is None:
                key = value
        if content_type != JSON or key is None:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        try:
            body = await _read_body(receive, messages)
        except Exception as exc:  # reading failed (the body limit): the route meets it too
            await self.app(scope, _replay(messages, receive, exc), send)
            return
        answer = None if body is None else self.answerer.answer(key, body)
        if answer is None:
            await self.app(scope, _replay(messages, receive), send)
            return
        scope["route"] = self.route
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": response_headers(answer),
            }
        )
        await send({"type": "http.response.body", "body": answer})


def response_headers(answer: bytes) -> list[tuple[bytes, bytes]]:
    """The headers of a 200 answer, in the order the route's ``Response`` sends them."""
    return [(b"content-length", str(len(answer)).encode()), (b"content-type", JSON)]


async def _read_body(receive: Receive, messages: list[Message]) -> bytes | None:
    """The whole request body, or ``None`` when the client disconnected first. Every message
    read from ``receive`` is appended to ``messages``; an error reading them propagates."""
    chunks = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(messages: list[Message], receive: Receive, error: Exception | None = None) -> Receive:
    """``receive`` that gives back ``messages`` (already read), then raises ``error`` if
    reading had failed, else reads on."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        if error is not None:
            raise error
        return await receive()

    return replayed
