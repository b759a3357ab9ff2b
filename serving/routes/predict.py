"""``POST /v1/predict``: features from posted raw histories, then scores (serving/predict.py)."""

# No ``from __future__ import annotations``: FastAPI must see the request model built in
# ``build_router`` (a local name) as a real annotation.

import logging
import time
from collections.abc import Sequence
from typing import Annotated, cast

import anyio.to_thread
from fastapi import APIRouter, Depends, Response

from serving import schemas
from serving.auth import Client
from serving.config import Settings
from serving.errors import ApiError, reject_unknown_query
from serving.predict import predict
from serving.schemas import (
    ErrorResponse,
    PredictResponse,
    ValidationErrorResponse,
    predict_request_model,
)
from serving.snapshot import _json
from serving.state import Current, ServedModel

log = logging.getLogger(__name__)

#: Largest request, in rows (customers plus their posted transactions, interactions and
#: survey answers), that is scored on the event loop itself rather than in a worker thread.
#: Such a request takes a few milliseconds of Python that holds the GIL throughout, so a
#: thread would not let the event loop answer anyone meanwhile (the interpreter hands the GIL
#: over every 5 ms at most) and its two thread switches would cost the request itself up to
#: milliseconds on a busy machine; a bigger one runs in a thread, where the event loop gets
#: its turns while the pandas and LightGBM work goes on.
INLINE_ROWS = 64


def request_rows(customers: Sequence[schemas.PredictCustomer]) -> int:
    """Customers plus their posted event rows: the size :data:`INLINE_ROWS` is compared with."""
    return sum(1 + len(c.transactions) + len(c.interactions) + len(c.surveys) for c in customers)


async def _arrived() -> float:
    """Clock (``time.perf_counter``) when FastAPI starts on the route's dependencies: the
    body is read and JSON-decoded, nothing of the route has run."""
    return time.perf_counter()


async def _authorized() -> float:
    """Clock after the key check and the model look-up, before the body is validated
    (FastAPI validates the body after every dependency)."""
    return time.perf_counter()


def server_timing(stages: dict[str, float]) -> str:
    """The ``Server-Timing`` header value of ``stages`` (name: seconds), in milliseconds."""
    return ", ".join(f"{name};dur={seconds * 1000:.3f}" for name, seconds in stages.items())


def build_router(settings: Settings) -> APIRouter:
    """The predict route, with request limits taken from ``settings``."""
    PredictRequest = predict_request_model(
        settings.max_predict_customers, settings.max_events_per_customer
    )
    router = APIRouter(tags=["predict"], dependencies=[Depends(reject_unknown_query)])

    @router.post(
        "/v1/predict",
        response_model=PredictResponse,
        summary="Scores from posted raw histories",
        responses={
            400: {
                "model": ErrorResponse,
                "description": "body could not be read (not UTF-8 JSON)",
            },
            401: {"model": ErrorResponse, "description": "missing or wrong API key"},
            413: {"model": ErrorResponse, "description": "request body too large"},
            422: {
                "model": ValidationErrorResponse,
                "description": "body does not match the schema, or customer ids repeat",
            },
            503: {"model": ErrorResponse, "description": "no model loaded"},
        },
    )
    # mypy cannot read a model built at run time as a type; it is a schemas.PredictRequest
    async def post_predict(
        arrived: Annotated[float, Depends(_arrived)],
        client: Client,
        model: ServedModel,
        current: Current,
        authorized: Annotated[float, Depends(_authorized)],
        body: PredictRequest,  # type: ignore[valid-type]
    ) -> Response:
        """Each customer's posted history (the input tables' columns, docs/data-contract.md)
        is validated, turned into features at its ``as_of`` (default: now) and scored with
        the served model, by the same code as training and batch scoring. Rows the
        validation refuses (unreadable timestamp, score out of range, unknown element,
        exact duplicate, ...) are listed under the customer's ``quarantined`` and not used;
        the request still succeeds.

        The ``Server-Timing`` header gives the time of each stage in milliseconds
        (docs/http-api.md, "Server-Timing")."""
        started = time.perf_counter()
        seen: dict[str, int] = {}
        customers = cast(schemas.PredictRequest, body).customers
        for i, customer in enumerate(customers):
            if customer.customer_id in seen:
                raise ApiError(
                    422,
                    "invalid_request",
                    "customer ids must be distinct within a request",
                    extra={
                        "details": [
                            {
                                "loc": ["body", "customers", i, "customer_id"],
                                "message": f"same customer_id as customers[{seen[customer.customer_id]}]",
                                "type": "duplicate",
                            }
                        ]
                    },
                )
            seen[customer.customer_id] = i
        # Percentiles and bands against the served snapshot's customers, when that snapshot
        # was scored by this model version (docs/http-api.md, "Relative risk").
        snapshot = current.snapshot
        reference = (
            snapshot.reference
            if snapshot is not None and snapshot.model_version == model.version
            else None
        )
        timings: dict[str, float] = {}
        in_thread: list[float] = []  # wall clock when predict starts and ends
        cpu: list[float] = []  # the CPU time of the thread running it, likewise

        def run() -> list[dict[str, object]]:
            in_thread.append(time.perf_counter())
            cpu.append(time.thread_time())
            try:
                return predict(
                    model.bundle,
                    customers,
                    model_version=model.version,
                    clv_horizon_days=settings.clv_horizon_days,
                    reference=reference,
                    timings=timings,
                )
            finally:
                in_thread.append(time.perf_counter())
                cpu.append(time.thread_time())

        checked = time.perf_counter()
        try:
            if request_rows(customers) <= INLINE_ROWS:
                results = run()
            else:
                # pandas work: off the event loop, so snapshot look-ups keep being answered.
                results = await anyio.to_thread.run_sync(run)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("predict: history not usable (%s)", type(exc).__name__)
            raise ApiError(
                422,
                "unusable_history",
                "the posted history could not be turned into features; check attribute names "
                "and types against GET /v1/model, and timestamps for years 1678-2261",
                # The documented 422 shape; the failing row is not located, so no paths.
                extra={"details": []},
            ) from exc
        predicted = time.perf_counter()
        content = b"".join(
            (b'{"results":', _json(results), b',"model_version":', _json(model.version), b"}")
        )
        done = time.perf_counter()
        hop = (predicted - checked) - (in_thread[1] - in_thread[0])
        stages = {
            "auth": authorized - arrived,
            "parse": started - authorized,
            "check": checked - started,
            "hop": hop,
            **timings,
            "encode": done - predicted,
            "total": done - arrived,
            # not a stage: the CPU time predict took (its steps' wall time, less the time this
            # thread waited for a core or the GIL), the figure to read on a busy machine
            "predict_cpu": cpu[1] - cpu[0],
        }
        return Response(
            content, media_type="application/json", headers={"Server-Timing": server_timing(stages)}
        )

    return router
