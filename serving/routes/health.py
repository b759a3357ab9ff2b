"""Liveness, readiness and metrics (no API key: load balancers, orchestrators and Prometheus
call them)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from serving.errors import ApiError, reject_unknown_query
from serving.metrics import CONTENT_TYPE
from serving.schemas import ErrorResponse, HealthResponse, ReadyResponse
from serving.state import Current, State

router = APIRouter(tags=["health"], dependencies=[Depends(reject_unknown_query)])


@router.get("/healthz", response_model=HealthResponse, summary="Liveness")
async def healthz() -> HealthResponse:
    """200 whenever the process answers, whether or not a model is loaded."""
    return HealthResponse()


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    summary="Readiness",
    responses={503: {"model": ErrorResponse, "description": "model or snapshot not loaded"}},
)
async def readyz(current: Current) -> ReadyResponse:
    """200 when the champion model and the scored snapshot are loaded; else 503 with
    ``error: not_ready`` and the code of what is missing under ``checks``."""
    if not current.ready:
        raise ApiError(
            503,
            "not_ready",
            "the model or the scored snapshot is not loaded; see the server log",
            extra={"checks": current.checks()},
        )
    return ReadyResponse(checks=current.checks())


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "content": {
                "text/plain": {
                    "example": 'churn_http_requests_total{method="POST",route="/v1/scores",'
                    'status="200"} 1234.0\nchurn_model_info{name="churn-clv",version="3"} 1.0\n'
                }
            },
            "description": "Prometheus text format",
        }
    },
)
async def metrics(state: State) -> Response:
    """Requests by route and status (``churn_http_requests_total``), latency histograms
    (``churn_http_request_duration_seconds``), the served model version
    (``churn_model_info``), reloads by outcome (``churn_model_reloads_total``), the scored
    snapshot's age (``churn_snapshot_age_seconds``) and size (``churn_snapshot_customers``)."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)
