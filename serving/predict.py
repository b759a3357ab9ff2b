"""``/v1/predict``: scores from posted raw histories, with the training code end to end.

The posted customers become the canonical input tables (docs/data-contract.md), which go
through the same three functions as training and batch scoring:
:func:`features.validation.validate_tables` (bad rows are quarantined and reported per
customer, never dropped silently), :func:`features.build.build_features` (point in time: only
events strictly before ``as_of``) and :func:`models.scoring.score_columns` (the columns of
:func:`~models.scoring.score_frame`). Nothing here computes a feature or a score itself.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from features.build import build_features
from features.validation import TableError, validate_tables
from models.bundle import Bundle
from models.distribution import Reference
from models.scoring import score_columns
from serving.errors import ApiError
from serving.schemas import PredictCustomer
from serving.snapshot import SCORE_FIELDS, scored_row

#: Event tables and the fields of their posted rows, in table column order.
EVENT_TABLES = ("transactions", "interactions", "surveys")


def _iso(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def scoring_time(customer: PredictCustomer, *, now: datetime) -> pd.Timestamp:
    """The customer's ``as_of`` in UTC (naive = UTC), or ``now``."""
    ts = pd.Timestamp(customer.as_of or now)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def raw_tables(
    customers: Sequence[PredictCustomer],
) -> tuple[dict[str, pd.DataFrame], dict[str, list[tuple[str, int]]]]:
    """The posted histories as raw input tables, and for every table row the customer and
    the row's position in that customer's posted list (to report quarantined rows).

    Built column by column (a list per column, one frame per table): a frame from a list of
    row dicts costs pandas' per-row work, most of this step for one customer. A table no
    customer posted a row of is absent; an attribute a customer lacks is missing (NaN)."""
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
    raw = {
        "customers": pd.DataFrame(
            {
                "customer_id": [c.customer_id for c in customers],
                **({"signup_date": signup} if any(s is not None for s in signup) else {}),
                **attributes,
            }
        )
    }
    for table in EVENT_TABLES:
        rows = [
            (c.customer_id, i, row) for c in customers for i, row in enumerate(getattr(c, table))
        ]
        if not rows:
            continue
        fields = list(type(rows[0][2]).model_fields)
        columns: dict[str, list[Any]] = {"customer_id": [cid for cid, _, _ in rows]}
        for field in fields:
            columns[field] = [getattr(row, field) for _, _, row in rows]
        raw[table] = pd.DataFrame(columns)
        origin[table] = [(cid, i) for cid, i, _ in rows]
    return raw, origin


def predict(
    bundle: Bundle,
    customers: Sequence[PredictCustomer],
    *,
    model_version: str,
    now: datetime | None = None,
    clv_horizon_days: int | None = None,
    reference: Reference | None = None,
) -> list[dict[str, Any]]:
    """Scored customers (API field order, plus ``quarantined``) in request order.

    ``reference`` (the served snapshot's scored customers) gives percentiles and bands; without
    it percentiles are null and bands use the bundle's fixed thresholds.

    Customers are grouped by ``as_of`` and each group's features are built at its cutoff;
    a customer's features depend on that customer's rows alone (docs/data-contract.md, "Time").
    """
    now = now or datetime.now(UTC)
    raw, origin = raw_tables(customers)
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

    by_time: dict[pd.Timestamp, list[str]] = defaultdict(list)
    for c in customers:
        by_time[scoring_time(c, now=now)].append(c.customer_id)
    rows: dict[str, dict[str, Any]] = {}
    for as_of, ids in by_time.items():
        frame = build_features(tables, as_of=as_of, customer_ids=pd.Index(ids, dtype="str"))
        scores = score_columns(
            bundle, frame, reference=reference, clv_horizon_days=clv_horizon_days
        )
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
    out = []
    for c in customers:
        row = rows[c.customer_id]
        row["quarantined"] = quarantined.get(c.customer_id, [])
        out.append(row)
    return out
