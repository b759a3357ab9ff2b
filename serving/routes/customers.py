"""``GET /v1/customers/{customer_id}`` and ``GET /v1/at-risk``: reading the scored snapshot."""

# No ``from __future__ import annotations``: the page-size limit is a local name that FastAPI
# must see in real annotations.

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response

from serving.at_risk import page_json
from serving.auth import Client
from serving.config import Settings
from serving.errors import ApiError, reject_unknown_query
from serving.schemas import (
    MAX_CUSTOMER_ID_LENGTH,
    AtRiskResponse,
    ErrorResponse,
    ScoredCustomer,
    ValidationErrorResponse,
)
from serving.state import LoadedRanking, LoadedSnapshot

#: Statuses ``/v1/at-risk`` lists without a ``status`` filter: lapsed customers are left out.
WORKLIST_STATUSES = ("active", "at_risk")

COMMON: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "missing or wrong API key"},
    422: {"model": ValidationErrorResponse, "description": "parameters do not match the schema"},
    503: {"model": ErrorResponse, "description": "no scored snapshot loaded"},
}


def build_router(settings: Settings) -> APIRouter:
    """The snapshot-reading routes, with the page-size limit taken from ``settings``."""
    router = APIRouter(tags=["scores"], dependencies=[Depends(reject_unknown_query)])
    max_limit = settings.max_page_size

    @router.get(
        "/v1/customers/{customer_id}",
        response_model=ScoredCustomer,
        summary="One customer's latest scores",
        responses={
            **COMMON,
            404: {"model": ErrorResponse, "description": "the snapshot has no such customer"},
        },
    )
    async def get_customer(
        customer_id: Annotated[
            str,
            Path(
                min_length=1,
                max_length=MAX_CUSTOMER_ID_LENGTH,
                pattern=r"^[^\x00-\x1f\x7f]+$",
                description="customer id, as in the input tables",
                examples=["C000123"],
            ),
        ],
        client: Client,
        snapshot: LoadedSnapshot,
    ) -> Response:
        """The customer's row of the latest scored snapshot; 404 ``unknown_customer`` when
        the snapshot does not hold the id (the id is not repeated in the answer)."""
        body = snapshot.encoded.get(customer_id)
        if body is None:
            raise ApiError(404, "unknown_customer", "the scored snapshot has no such customer")
        return Response(body, media_type="application/json")

    @router.get(
        "/v1/at-risk",
        response_model=AtRiskResponse,
        summary="Customers ranked by value at risk",
        responses={
            **COMMON,
            409: {
                "model": ErrorResponse,
                "description": "segment filter on a snapshot without segments",
            },
        },
    )
    async def get_at_risk(
        client: Client,
        snapshot: LoadedSnapshot,
        ranking: LoadedRanking,
        limit: Annotated[int, Query(ge=1, le=max_limit, description="page size")] = 50,
        offset: Annotated[
            int, Query(ge=0, le=10_000_000, description="customers to skip (paging)")
        ] = 0,
        segment: Annotated[
            str | None,
            Query(min_length=1, max_length=128, description="only this CRM segment"),
        ] = None,
        min_clv: Annotated[
            float | None,
            Query(allow_inf_nan=False, description="only customers with at least this CLV"),
        ] = None,
        risk_band: Annotated[
            Literal["low", "medium", "high"] | None, Query(description="only this risk band")
        ] = None,
        status: Annotated[
            Literal["active", "at_risk", "lapsed", "all"] | None,
            Query(
                description="only this customer status (docs/status.md); 'all' for every "
                "status; default: active and at_risk (lapsed customers left out)"
            ),
        ] = None,
    ) -> Response:
        """Customers of the latest snapshot, highest value at risk (``churn_probability *
        clv``) first; customers without a CLV come last, by churn probability. ``total`` is
        the number matching the filters across all pages. ``segment`` needs a snapshot with
        a ``segment`` column (409 ``segment_unavailable`` otherwise). Lapsed customers (no
        activity for far longer than usual, docs/status.md) are left out unless ``status``
        asks for them (``status=lapsed`` or ``status=all``)."""
        if segment is not None and not ranking.has_segments:
            raise ApiError(
                409,
                "segment_unavailable",
                "the scored snapshot has no segment column; filter by risk_band or min_clv",
            )
        statuses = WORKLIST_STATUSES if status is None else None if status == "all" else (status,)
        page = ranking.page(
            limit=limit,
            offset=offset,
            segment=segment,
            min_clv=min_clv,
            risk_band=risk_band,
            statuses=statuses,
        )
        return Response(
            page_json(page, limit=limit, offset=offset, snapshot=snapshot),
            media_type="application/json",
        )

    return router
