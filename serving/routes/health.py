"""Liveness and readiness probes (no API key: load balancers and orchestrators call them)."""

from __future__ import annotations

from fastapi import APIRouter

from serving.errors import ApiError
from serving.schemas import ErrorResponse, HealthResponse, ReadyResponse
from serving.state import State

router = APIRouter(tags=["health"])


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
async def readyz(state: State) -> ReadyResponse:
    """200 when the champion model and the scored snapshot are loaded; else 503 with
    ``error: not_ready`` and the code of what is missing under ``checks``."""
    if not state.ready:
        raise ApiError(
            503,
            "not_ready",
            "the model or the scored snapshot is not loaded; see the server log",
            extra={"checks": state.checks()},
        )
    return ReadyResponse(checks=state.checks())
