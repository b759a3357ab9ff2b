"""``POST /v1/scores``: look customers up in the latest scored snapshot.

The route is the API's hot path (a CRM asks for one customer at a time). It is an ordinary
FastAPI route behind every middleware of the app (catch-all, access log and metrics, body
limit): the plain route meets the latency target (README, "Serving"), so there is no second,
faster copy of it to keep in step.
"""

# No ``from __future__ import annotations`` here: FastAPI must see the request model built in
# ``build_router`` (a local name) as a real annotation, not a string.

from typing import Any, cast

from fastapi import APIRouter, Request, Response

from serving import schemas
from serving.auth import HEADER, authenticate
from serving.config import Settings
from serving.errors import reject_unknown_query
from serving.schemas import (
    ErrorResponse,
    ScoresResponse,
    ValidationErrorResponse,
    scores_request_model,
)
from serving.state import get_snapshot

PATH = "/v1/scores"

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
