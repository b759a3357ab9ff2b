"""``GET /v1/model`` and ``POST /v1/admin/reload``: the served model, and replacing it."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from features.catalogue import describe
from serving.auth import AdminClient, Client
from serving.errors import reject_unknown_query
from serving.schemas import (
    ErrorResponse,
    FeatureInfo,
    ModelResponse,
    ReloadFailedResponse,
    ReloadResponse,
    SnapshotInfo,
)
from serving.state import Current, ServedModel, State

router = APIRouter(tags=["model"], dependencies=[Depends(reject_unknown_query)])


@router.get(
    "/v1/model",
    response_model=ModelResponse,
    summary="The model being served",
    responses={
        401: {"model": ErrorResponse, "description": "missing or wrong API key"},
        503: {"model": ErrorResponse, "description": "no model loaded"},
    },
)
async def get_model(client: Client, model: ServedModel, current: Current) -> ModelResponse:
    """Registered name and version, training window, validation metrics, risk thresholds,
    the churn model's features, the scored snapshot being served, and what drives churn in
    the training data (stored in the bundle at training)."""
    bundle = model.bundle
    churn = bundle.churn
    features = [
        FeatureInfo(
            name=name,
            dtype="categorical" if name in churn.categories_ else "numeric",
            description=describe(name),
            categories=[str(c) for c in churn.categories_[name]]
            if name in churn.categories_
            else None,
        )
        for name in churn.features_
    ]
    snapshot = current.snapshot
    return ModelResponse(
        name=model.name,
        version=model.version,
        loaded_at=model.loaded_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        horizon_days=int(bundle.meta.get("horizon_days", 0)),
        risk_thresholds=dict(bundle.meta.get("risk_thresholds", {})),
        training=dict(bundle.meta.get("training", {})),
        metrics=dict(bundle.meta.get("metrics", {})),
        features=features,
        snapshot=None
        if snapshot is None
        else SnapshotInfo(
            model_version=snapshot.model_version,
            as_of=snapshot.as_of,
            created_at=snapshot.created_at,
            customers=len(snapshot),
            horizon_days=snapshot.horizon_days,
            risk_bands=None if snapshot.risk_bands is None else dict(snapshot.risk_bands),
        ),
        clv_model=bundle.clv_model,
        drivers=bundle.meta.get("drivers"),
    )


@router.post(
    "/v1/admin/reload",
    response_model=ReloadResponse,
    summary="Load the current champion and snapshot (admin)",
    responses={
        401: {"model": ErrorResponse, "description": "missing or wrong API key"},
        403: {"model": ErrorResponse, "description": "the key lacks the admin scope"},
        503: {
            "model": ReloadFailedResponse,
            "description": "the new model or snapshot failed to load; the old one keeps serving",
        },
    },
)
async def reload(client: AdminClient, state: State) -> ReloadResponse:
    """Download and verify the current champion (sha256 of every file against the
    registered manifest) and the current scored snapshot, then swap both in at once.
    Requests in flight finish on the model they started with. On failure nothing changes:
    503 ``reload_failed`` says which part failed and which version keeps serving."""
    previous = state.current.model
    fresh = await state.reload()
    assert fresh.model is not None and fresh.snapshot is not None
    return ReloadResponse(
        previous_model_version=previous.version if previous else None,
        model_version=fresh.model.version,
        snapshot_model_version=fresh.snapshot.model_version,
    )
