"""``GET /v1/customers/{customer_id}``, its ``/history`` and ``GET /v1/at-risk``: reading the
scored snapshots."""

# No ``from __future__ import annotations``: the page-size limit is a local name that FastAPI
# must see in real annotations.

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from serving.at_risk import page_csv, page_json, rebased_rows
from serving.auth import Client
from serving.config import Settings
from serving.errors import ApiError, reject_unknown_query
from serving.schemas import (
    MAX_CUSTOMER_ID_LENGTH,
    AtRiskResponse,
    CustomerHistory,
    ErrorResponse,
    ScoredCustomer,
    ValidationErrorResponse,
)
from serving.state import LoadedHistory, LoadedRanking, LoadedSnapshot

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
    customer_id_path = Path(
        min_length=1,
        max_length=MAX_CUSTOMER_ID_LENGTH,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="customer id, as in the input tables",
        examples=["C000123"],
    )

    @router.get(
        "/v1/customers/{customer_id}/history",
        response_model=CustomerHistory,
        summary="One customer's scores in every kept snapshot",
        responses={
            **COMMON,
            404: {
                "model": ErrorResponse,
                "description": "the latest snapshot has no such customer",
            },
        },
    )
    async def get_customer_history(
        customer_id: Annotated[str, customer_id_path],
        client: Client,
        history: LoadedHistory,
    ) -> Response:
        """The customer's churn probability, risk band, CLV and value at risk in each kept
        snapshot that holds them (``make score`` keeps the last ``CHURN_KEEP_SNAPSHOTS``),
        newest first; 404 ``unknown_customer`` when the latest snapshot does not hold the id."""
        body = history.customer_json(customer_id)
        if body is None:
            raise ApiError(404, "unknown_customer", "the scored snapshot has no such customer")
        return Response(body, media_type="application/json")

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
        customer_id: Annotated[str, customer_id_path],
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
            200: {"content": {"text/csv": {}}, "description": "JSON, or CSV when asked"},
            409: {
                "model": ErrorResponse,
                "description": "segment filter on a snapshot without segments, or "
                "changed_since before every kept snapshot",
            },
        },
    )
    async def get_at_risk(
        request: Request,
        client: Client,
        snapshot: LoadedSnapshot,
        ranking: LoadedRanking,
        history: LoadedHistory,
        limit: Annotated[
            int | None,
            Query(
                ge=1,
                le=max_limit,
                description="page size; default 50, and for CSV every matching customer",
            ),
        ] = None,
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
        changed_since: Annotated[
            dt.date | None,
            Query(
                description="risers since this date (YYYY-MM-DD): change is measured against "
                "the newest kept snapshot scored on or before it"
            ),
        ] = None,
        min_change: Annotated[
            float | None,
            Query(
                ge=-1,
                le=1,
                allow_inf_nan=False,
                description="only customers whose churn probability rose by at least this "
                "(since the previous snapshot, or since changed_since)",
            ),
        ] = None,
        format: Annotated[
            Literal["json", "csv"] | None,
            Query(description="csv: the same rows as CSV (also with Accept: text/csv)"),
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
        a ``segment`` column (409 ``segment_unavailable`` otherwise). ``changed_since``
        without ``min_change`` lists every customer whose risk rose since then; before the
        oldest kept snapshot it is 409 ``history_unavailable``. CSV (``format=csv`` or
        ``Accept: text/csv``) is streamed, with the segment and customer attributes. Lapsed
        customers (no activity for far longer than usual, docs/status.md) are left out
        unless ``status`` asks for them (``status=lapsed`` or ``status=all``)."""
        if segment is not None and not ranking.has_segments:
            raise ApiError(
                409,
                "segment_unavailable",
                "the scored snapshot has no segment column; filter by risk_band or min_clv",
            )
        baseline = None
        baseline_as_of = snapshot.previous_as_of
        if changed_since is not None:
            k = history.baseline(changed_since.isoformat())
            if k is None:
                oldest = history.as_of[-1][:10] if len(history.as_of) > 1 else None
                raise ApiError(
                    409,
                    "history_unavailable",
                    "no kept snapshot older than the latest was scored on or before that "
                    + (
                        f"date; the oldest kept is {oldest}" if oldest else "date; only one is kept"
                    ),
                )
            baseline = ranking.in_rank_order(history.churn_probability[k])
            baseline_as_of = history.as_of[k]
        csv = format == "csv" or (
            format is None and "text/csv" in request.headers.get("accept", "")
        )
        statuses = WORKLIST_STATUSES if status is None else None if status == "all" else (status,)
        page = ranking.page(
            limit=limit if limit is not None or csv else 50,
            offset=offset,
            segment=segment,
            min_clv=min_clv,
            risk_band=risk_band,
            min_change=min_change,
            baseline=baseline,
            statuses=statuses,
        )
        if csv:
            return StreamingResponse(
                page_csv(page, ranking, snapshot, baseline),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": 'attachment; filename="at-risk.csv"'},
            )
        rows = None if baseline is None else rebased_rows(page, ranking, snapshot, baseline)
        return Response(
            page_json(
                page,
                limit=limit or 50,
                offset=offset,
                snapshot=snapshot,
                baseline_as_of=baseline_as_of,
                rows=rows,
            ),
            media_type="application/json",
        )

    return router
