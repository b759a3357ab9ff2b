"""``/v1/predict``: scores from posted raw histories, with the training code end to end.

The posted customers become the canonical input tables (docs/data-contract.md), which go
through the same three functions as training and batch scoring:
:func:`features.validation.validate_tables` (bad rows are quarantined and reported per
customer, never dropped silently), :func:`features.build.build_features` (point in time: only
events strictly before ``as_of``) and :func:`models.scoring.score_columns` (the columns of
:func:`~models.scoring.score_frame`). Nothing here computes a feature or a score itself.
"""

from __future__ import annotations

import functools
import time
import typing
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from features.build import build_features
from features.groups import arrays_frame, column_labels
from features.validation import TableError, validate_tables
from models.bundle import Bundle
from models.distribution import Reference
from models.scoring import score_columns
from serving.errors import ApiError
from serving.schemas import PredictCustomer
from serving.snapshot import SCORE_FIELDS, scored_row

#: Event tables and the fields of their posted rows, in table column order.
EVENT_TABLES = ("transactions", "interactions", "surveys")
#: pandas' text dtype (``dtype="str"``), of the customer ids the features are indexed by.
_STR = pd.StringDtype(na_value=np.nan)


def _iso(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def scoring_time(customer: PredictCustomer, *, now: datetime) -> pd.Timestamp:
    """The customer's ``as_of`` in UTC (naive = UTC), or ``now``."""
    ts = pd.Timestamp(customer.as_of or now)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


@functools.cache
def _number_fields(row_model: type[BaseModel]) -> frozenset[str]:
    """The fields of a posted row model typed as numbers (``float`` or ``float | None``)."""
    out = set()
    for name, info in row_model.model_fields.items():
        kinds = set()
        for arg in typing.get_args(info.annotation) or (info.annotation,):
            if typing.get_origin(arg) is typing.Annotated:
                arg = typing.get_args(arg)[0]
            kinds.add(arg)
        if kinds - {type(None)} == {float}:
            out.add(name)
    return frozenset(out)


def raw_tables(
    customers: Sequence[PredictCustomer],
) -> tuple[dict[str, pd.DataFrame], dict[str, list[tuple[str, int]]]]:
    """The posted histories as raw input tables, and for every table row the customer and
    the row's position in that customer's posted list (to report quarantined rows).

    A table no customer posted a row of is absent; an attribute a customer lacks is missing
    (NaN). Event columns are typed by the request schema: a number field is float64 (NaN
    where absent), any other an object array of the posted values, for validation to parse.
    Attribute columns are typed as ``pd.DataFrame`` types a column of values (text, numbers,
    booleans or a mix): they reach the features as posted. The frames are built from the
    arrays as they are (:func:`features.groups.arrays_frame`): ``pd.DataFrame`` infers every
    column, tens of microseconds each whatever the number of rows."""
    origin: dict[str, list[tuple[str, int]]] = {
        "customers": [(c.customer_id, 0) for c in customers]
    }
    attributes: dict[str, list[Any]] = {}
    for i, c in enumerate(customers):
        for name, value in c.attributes.items():
            # first seen at customer i: missing (NaN) for the customers before
            attributes.setdefault(name, [np.nan] * i).append(value)
        for column in attributes.values():
            if len(column) <= i:
                column.append(np.nan)
    signup = [c.signup_date for c in customers]
    columns: dict[str, Any] = {"customer_id": _objects([c.customer_id for c in customers])}
    if any(s is not None for s in signup):
        columns["signup_date"] = _objects(signup)
    for name, values in attributes.items():
        columns[name] = pd.Series(values).array  # pandas' type of the column
    raw = {"customers": _frame(columns, len(customers))}
    for table in EVENT_TABLES:
        rows = [
            (c.customer_id, i, row) for c in customers for i, row in enumerate(getattr(c, table))
        ]
        if not rows:
            continue
        model: type[BaseModel] = type(rows[0][2])
        numbers = _number_fields(model)
        columns = {"customer_id": _objects([cid for cid, _, _ in rows])}
        for field in model.model_fields:
            values = [getattr(row, field) for _, _, row in rows]
            if field in numbers:
                columns[field] = np.array(
                    [np.nan if v is None else v for v in values], dtype="float64"
                )
            else:
                columns[field] = _objects(values)
        raw[table] = _frame(columns, len(rows))
        origin[table] = [(cid, i) for cid, i, _ in rows]
    return raw, origin


def _objects(values: list[Any]) -> np.ndarray:
    """``values`` as a 1-D object array (``np.array`` would make a list of lists 2-D)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _frame(columns: dict[str, Any], n: int) -> pd.DataFrame:
    return arrays_frame(
        list(columns.values()), index=pd.RangeIndex(n), columns=column_labels(list(columns))
    )


def predict(
    bundle: Bundle,
    customers: Sequence[PredictCustomer],
    *,
    model_version: str,
    now: datetime | None = None,
    clv_horizon_days: int | None = None,
    reference: Reference | None = None,
    timings: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Scored customers (API field order, plus ``quarantined``) in request order.

    ``reference`` (the served snapshot's scored customers) gives percentiles and bands; without
    it percentiles are null and bands use the bundle's fixed thresholds.

    Customers are grouped by ``as_of`` and each group's features are built at its cutoff;
    a customer's features depend on that customer's rows alone (docs/data-contract.md, "Time").

    ``timings``, when given, receives the wall seconds of each step, added up over the
    ``as_of`` groups: ``raw_tables``, ``validate`` (:func:`validate_tables` and the
    quarantine report), ``features`` (:func:`build_features`), ``score``
    (:func:`score_columns`) and ``rows`` (the answer's dicts); the route reports them in its
    ``Server-Timing`` header.
    """
    clock = _Clock(timings)
    now = now or datetime.now(UTC)
    raw, origin = raw_tables(customers)
    clock.lap("raw_tables")
    try:
        tables, results = validate_tables(raw, now=pd.Timestamp(now))
    except TableError as exc:  # cannot happen with the columns built above; never a 500
        raise ApiError(422, "invalid_history", str(exc)) from exc
    quarantined: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for table, result in results.items():
        if not len(result.quarantine):  # the usual case: no pandas columns read
            continue
        for position, reason in zip(
            result.quarantine.index, result.quarantine["reason"], strict=True
        ):
            cid, index = origin[table][int(position)]
            quarantined[cid].append({"table": table, "index": index, "reason": str(reason)})
    clock.lap("validate")

    by_time: dict[pd.Timestamp, list[str]] = defaultdict(list)
    for c in customers:
        by_time[scoring_time(c, now=now)].append(c.customer_id)
    rows: dict[str, dict[str, Any]] = {}
    for as_of, ids in by_time.items():
        # the Index from a text array: from a list, pd.Index costs twice as much
        customer_ids = pd.Index(pd.array(ids, dtype=_STR))
        frame = build_features(tables, as_of=as_of, customer_ids=customer_ids)
        clock.lap("features")
        scores = score_columns(
            bundle, frame, reference=reference, clv_horizon_days=clv_horizon_days
        )
        clock.lap("score")
        columns = {
            f: scores[f] if isinstance(scores[f], list) else scores[f].tolist()
            for f in SCORE_FIELDS
            if f in scores
        }
        for i, cid in enumerate(frame.index):
            values = {f: columns[f][i] for f in columns}
            values.update(customer_id=str(cid), as_of=_iso(as_of), model_version=model_version)
            values["risk_band"] = str(values["risk_band"])
            values["status"] = str(values["status"])
            rows[str(cid)] = scored_row(values)
        clock.lap("rows")
    out = []
    for c in customers:
        row = rows[c.customer_id]
        row["quarantined"] = quarantined.get(c.customer_id, [])
        out.append(row)
    clock.lap("rows")
    return out


class _Clock:
    """Adds the wall seconds since the previous lap to ``timings[step]`` (nothing without
    ``timings``): the steps of :func:`predict`, two clock reads each."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, step: str) -> None:
        if self.timings is None:
            return
        now = time.perf_counter()
        self.timings[step] = self.timings.get(step, 0.0) + now - self.last
        self.last = now
