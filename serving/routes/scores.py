"""``POST /v1/scores``: look customers up in the latest scored snapshot.

The route is the API's hot path (a CRM asks for one customer at a time), so it comes in two
layers that give the same answers. The FastAPI route below is the reference: it is what the
OpenAPI schema documents, and it produces every answer, including every error.
:class:`ScoresFastPath`, an ASGI middleware just inside the app's own middlewares (body limit,
access log, metrics, catch-all), answers the *successful* requests itself: when the request
carries no query string, a JSON body that the same request model accepts, a key with the
scores scope and a snapshot is loaded, it returns the same bytes the route would, without
FastAPI's routing, dependency and body-parsing machinery (about two thirds of the server's
time per request). Anything else is handed to the route untouched, body included.
"""

# No ``from __future__ import annotations`` here: FastAPI must see the request model built in
# ``build_router`` (a local name) as a real annotation, not a string.

import json

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
_KEY_HEADER = HEADER.lower().encode()
_JSON_HEADERS = (b"content-type", b"application/json")

ERROR_RESPONSES = {
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
    async def post_scores(body: ScoresRequest, request: Request) -> Response:
        """Churn and CLV scores from the latest scored snapshot, in request order. An id the
        snapshot does not hold is reported in its place as ``{"customer_id": ...,
        "error": "unknown_customer"}``; the request still succeeds."""
        # The checks the other routes get from dependencies, called directly: this is the
        # hot path, and FastAPI's dependency resolution would cost more than the look-up.
        await reject_unknown_query(request)
        authenticate(request, request.headers.get(HEADER))
        snapshot = await get_snapshot(request.app.state.serving.current)
        return Response(snapshot.scores_json(body.customer_ids), media_type="application/json")

    return router


class ScoresFastPath:
    """ASGI middleware: answer a well-formed, authorised ``POST /v1/scores`` directly.

    ``route`` is the app's FastAPI route of ``/v1/scores``: it is put in the scope, as
    FastAPI's router does, so the access log and the metrics see the same route template.
    The body is validated exactly as FastAPI does it (``json.loads``, then the request model
    built from the same settings, in Python mode). Every request this layer does not answer
    with a 200 goes to the route, with the messages already read replayed: errors have one
    implementation.
    """

    def __init__(self, app: ASGIApp, *, state: ServingState, route: APIRoute) -> None:
        self.app = app
        self.state = state
        self.route = route
        self.model = scores_request_model(state.settings.max_customers_per_request)

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
            elif name == _KEY_HEADER and key is None:
                key = value
        if content_type != b"application/json" or key is None:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        try:
            answer = await self._answer(key, receive, messages)
        except Exception as exc:  # reading failed (the body limit): the route meets it too
            await self.app(scope, _replay(messages, receive, exc), send)
            return
        if answer is None:
            await self.app(scope, _replay(messages, receive), send)
            return
        scope["route"] = self.route
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(answer)).encode()), _JSON_HEADERS],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    async def _answer(self, key: bytes, receive: Receive, messages: list[Message]) -> bytes | None:
        """The 200 response body, or ``None`` when the route must answer. Every message read
        from ``receive`` is appended to ``messages``; an error reading them propagates."""
        chunks = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return None
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        snapshot = self.state.current.snapshot
        if snapshot is None:
            return None
        try:
            if scores_key(self.state.key_store, key.decode("latin-1")) is None:
                return None
            body = self.model.model_validate(json.loads(b"".join(chunks)))
        except Exception:  # an unreadable key store or body, or a body the model refuses
            return None
        return snapshot.scores_json(body.customer_ids)  # type: ignore[attr-defined]


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
