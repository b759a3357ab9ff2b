"""``POST /v1/scores``: look customers up in the latest scored snapshot."""

# No ``from __future__ import annotations`` here: FastAPI must see the request model built in
# ``build_router`` (a local name) as a real annotation, not a string.

from fastapi import APIRouter, Response

from serving.auth import Client
from serving.config import Settings
from serving.schemas import (
    ErrorResponse,
    ScoresResponse,
    ValidationErrorResponse,
    scores_request_model,
)
from serving.state import LoadedSnapshot

ERROR_RESPONSES = {
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
        "/v1/scores",
        response_model=ScoresResponse,
        summary="Scores of known customers",
        responses=ERROR_RESPONSES,
    )
    async def post_scores(
        body: ScoresRequest, client: Client, snapshot: LoadedSnapshot
    ) -> Response:
        """Churn and CLV scores from the latest scored snapshot, in request order. An id the
        snapshot does not hold is reported in its place as ``{"customer_id": ...,
        "error": "unknown_customer"}``; the request still succeeds."""
        return Response(snapshot.scores_json(body.customer_ids), media_type="application/json")

    return router
