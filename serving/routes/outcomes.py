"""``POST /v1/outcomes`` and ``GET /v1/outcomes``: what the retention team did, recorded and
read back (JSON, or CSV for an uplift analysis).

An outcome is stamped with the serving snapshot's ``as_of`` and ``model_version`` and the
customer's ``churn_probability`` and ``risk_band`` in it, at the moment it is recorded; it
never changes a score. The database calls run in FastAPI's worker threads (these are plain
``def`` routes), so a slow database never holds up the event loop and the score routes.
"""

# No ``from __future__ import annotations``: FastAPI must see the real annotations.

import datetime as dt
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from models.worklist import csv_chunks
from serving.auth import Client
from serving.errors import ApiError, reject_unknown_query
from serving.outcomes import MAX_NOTE_LENGTH, OUTCOME_FIELDS, OUTCOMES, Outcome, OutcomeStore
from serving.schemas import (
    MAX_CUSTOMER_ID_LENGTH,
    CustomerId,
    ErrorResponse,
    ValidationErrorResponse,
)
from serving.state import LoadedSnapshot

PATH = "/v1/outcomes"
OutcomeName = Literal["contacted", "no_answer", "saved", "lost", "do_not_contact"]
assert OutcomeName.__args__ == OUTCOMES, "keep the API's outcomes those of the store"  # type: ignore[attr-defined]


def _not_a_number(value: Any) -> Any:
    """``since`` must be written as a date: pydantic's lax datetime would also read a bare
    number as a Unix time, which nobody means here."""
    if isinstance(value, str) and not re.match(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("write a date (YYYY-MM-DD) or an ISO-8601 date and time")
    return value


Since = Annotated[dt.datetime, BeforeValidator(_not_a_number)]
#: Cells starting with these are formulas to a spreadsheet: a note is prefixed with ``'``.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class OutcomeRequest(BaseModel):
    """An outcome to record for one customer of the served snapshot."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"customer_id": "C000123", "outcome": "contacted", "note": "called, will renew"}
            ]
        },
    )

    customer_id: CustomerId
    outcome: OutcomeName = Field(description="what happened: " + ", ".join(OUTCOMES))
    note: str = Field(
        "",
        max_length=MAX_NOTE_LENGTH,
        # No NUL: PostgreSQL text cannot hold it. Line breaks are fine.
        pattern=r"^[^\x00]*$",
        description=f"free text, at most {MAX_NOTE_LENGTH} characters",
    )


class OutcomeRecord(BaseModel):
    """One recorded outcome, with the scores the customer had when it was recorded."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 17,
                    "customer_id": "C000123",
                    "outcome": "contacted",
                    "note": "called, will renew",
                    "recorded_by": "anna",
                    "recorded_at": "2026-12-02T09:14:03.120000Z",
                    "as_of": "2026-12-01T00:00:00Z",
                    "model_version": "3",
                    "churn_probability": 0.71,
                    "risk_band": "high",
                }
            ]
        }
    )

    id: int
    customer_id: str
    outcome: OutcomeName
    note: str
    recorded_by: str = Field(description="name of the API key it was recorded with")
    recorded_at: str = Field(description="ISO-8601 UTC")
    as_of: str | None = Field(description="as_of of the snapshot served at recording time")
    model_version: str | None = Field(description="model version of that snapshot")
    churn_probability: float | None = Field(description="the customer's, in that snapshot")
    risk_band: Literal["low", "medium", "high"] | None = Field(
        description="the customer's, in that snapshot"
    )


class OutcomesResponse(BaseModel):
    """Recorded outcomes, newest first."""

    count: int
    results: list[OutcomeRecord]


def get_outcomes(request: Request) -> OutcomeStore:
    """FastAPI dependency: the app's outcomes store (``app.state.outcomes``), or 503
    ``outcomes_unavailable`` when it could not be opened at start-up (see the server log)."""
    store = getattr(request.app.state, "outcomes", None)
    if store is None:
        raise ApiError(
            503, "outcomes_unavailable", "the outcomes database is not available; see the log"
        )
    return store


Outcomes = Annotated[OutcomeStore, Depends(get_outcomes)]

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "missing or wrong API key"},
    422: {"model": ValidationErrorResponse, "description": "parameters do not match the schema"},
    503: {"model": ErrorResponse, "description": "outcomes database or snapshot not available"},
}


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value  # a note is text, never a spreadsheet formula
    return value


def outcomes_csv(outcomes: list[Outcome]) -> Iterator[str]:
    """The outcomes as CSV text in pieces (header: :data:`serving.outcomes.OUTCOME_FIELDS`)."""
    rows = ([_csv_cell(v) for v in o.to_dict().values()] for o in outcomes)
    return csv_chunks(OUTCOME_FIELDS, rows)


def build_router() -> APIRouter:
    """The outcomes routes."""
    router = APIRouter(tags=["outcomes"], dependencies=[Depends(reject_unknown_query)])

    @router.post(
        PATH,
        status_code=201,
        response_model=OutcomeRecord,
        summary="Record what was done about a customer",
        responses={
            **ERRORS,
            400: {"model": ErrorResponse, "description": "body could not be read (not UTF-8 JSON)"},
            404: {"model": ErrorResponse, "description": "the snapshot has no such customer"},
            413: {"model": ErrorResponse, "description": "request body too large"},
        },
    )
    def post_outcome(
        body: OutcomeRequest, client: Client, snapshot: LoadedSnapshot, store: Outcomes
    ) -> Response:
        """Store an outcome for a customer of the served snapshot, recorded by the API key's
        name, with the snapshot's ``as_of`` and ``model_version`` and the customer's churn
        probability and risk band in it. 404 ``unknown_customer`` when the snapshot does not
        hold the id. Outcomes never change scores."""
        try:
            outcome = store.record_scored(
                snapshot, body.customer_id, body.outcome, body.note, client.name
            )
        except KeyError:
            raise ApiError(
                404, "unknown_customer", "the scored snapshot has no such customer"
            ) from None
        return Response(
            OutcomeRecord(**outcome.to_dict()).model_dump_json(),
            status_code=201,
            media_type="application/json",
        )

    @router.get(
        PATH,
        response_model=OutcomesResponse,
        summary="Recorded outcomes (JSON or CSV)",
        responses={**ERRORS, 200: {"content": {"text/csv": {}}, "description": "JSON or CSV"}},
    )
    def get_outcome_list(
        request: Request,
        client: Client,
        store: Outcomes,
        customer_id: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=MAX_CUSTOMER_ID_LENGTH,
                pattern=r"^[^\x00-\x1f\x7f]+$",
                description="only this customer's outcomes",
            ),
        ] = None,
        since: Annotated[
            Since | None,
            Query(
                description="only outcomes recorded at or after this time: ISO-8601 date or "
                "date and time (UTC when it has no offset), e.g. 2026-12-01T09:00:00Z",
            ),
        ] = None,
        format: Annotated[
            Literal["json", "csv"] | None,
            Query(description="csv: the same rows as CSV (also with Accept: text/csv)"),
        ] = None,
    ) -> Response:
        """Every recorded outcome, newest first, with the scores each customer had when it
        was recorded (for an uplift analysis: compare saved rates at equal risk). CSV with
        ``format=csv`` or ``Accept: text/csv``; a note starting like a spreadsheet formula
        (``=``, ``+``, ``-``, ``@``) is prefixed with ``'`` in the CSV."""
        outcomes = store.query(customer_id=customer_id, since=since)
        csv = format == "csv" or (
            format is None and "text/csv" in request.headers.get("accept", "")
        )
        if csv:
            return StreamingResponse(
                outcomes_csv(outcomes),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": 'attachment; filename="outcomes.csv"'},
            )
        body = OutcomesResponse(
            count=len(outcomes), results=[OutcomeRecord(**o.to_dict()) for o in outcomes]
        )
        return Response(body.model_dump_json(), media_type="application/json")

    return router
