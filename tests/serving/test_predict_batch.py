"""``serving.predict.predict`` for posted histories equals batch scoring of the same histories.

One demo base, one real LightGBM + lifetimes bundle: the batch path (validate the tables,
build the features of every customer, :func:`models.scoring.score_population`) against
``predict`` given each customer's own rows as a ``/v1/predict`` request (its raw tables,
one-customer validation and feature build, the one-row scoring path), to 1e-9.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.labels import churn_labels
from features.validation import validate_tables
from models.bundle import Bundle
from models.churn import ChurnModel
from models.clv import SUMMARY_COLUMNS, CLVModel
from models.contract import SCORE_FIELDS
from models.distribution import BandRule
from models.scoring import score_population
from serving.predict import EVENT_TABLES, predict, raw_tables
from serving.schemas import predict_request_model
from training.demo_data import generate_demo_data

HORIZON = 90
#: Fields compared as numbers (to 1e-9); the rest exactly.
NUMBERS = {"churn_probability", "churn_percentile", "p_alive", "expected_purchases", "clv"}


def _iso(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _item(raw: dict[str, pd.DataFrame], cid: str, as_of: pd.Timestamp) -> dict[str, Any]:
    """Customer ``cid``'s raw rows as a ``/v1/predict`` item (events at or after ``as_of``
    too: the point-in-time cut is the feature code's job on both paths)."""
    customer = raw["customers"].set_index("customer_id").loc[cid]
    item: dict[str, Any] = {
        "customer_id": cid,
        "as_of": _iso(as_of),
        "signup_date": _iso(customer["signup_date"]),
        "attributes": {
            k: (v.item() if hasattr(v, "item") else v)
            for k, v in customer.items()
            if k not in ("signup_date", "churn_date")
        },
    }
    for table in EVENT_TABLES:
        rows = raw[table][raw[table]["customer_id"] == cid].drop(columns="customer_id")
        item[table] = [
            {
                k: _iso(v) if k == "timestamp" else (None if pd.isna(v) else v)
                for k, v in row.items()
            }
            for row in rows.to_dict("records")
        ]
    return item


@pytest.fixture(scope="module")
def fitted() -> dict[str, Any]:
    demo = generate_demo_data(400, seed=3, horizon_days=HORIZON)
    raw = {n: getattr(demo, n) for n in ("customers", *EVENT_TABLES)}
    tables, _ = validate_tables(raw)
    as_of = pd.Timestamp(demo.ground_truth["as_of"].iloc[0])
    frame = build_features(tables, as_of=as_of)
    labels = churn_labels(tables, as_of=as_of, horizon_days=HORIZON, population=frame.index)
    churn = ChurnModel(num_boost_round=40).fit(frame, labels)
    clv = CLVModel(penalizer=0.001).fit(frame[list(SUMMARY_COLUMNS)])
    bundle = Bundle(churn, clv, meta={"horizon_days": HORIZON})
    scores, reference = score_population(bundle, frame, rule=BandRule())
    return {"raw": raw, "as_of": as_of, "bundle": bundle, "scores": scores, "ref": reference}


def test_predict_equals_batch_scoring_of_the_same_history(fitted: dict[str, Any]) -> None:
    scores: pd.DataFrame = fitted["scores"]
    ids = [str(c) for c in scores.index[:: max(1, len(scores) // 12)][:12]]
    items = [_item(fitted["raw"], cid, fitted["as_of"]) for cid in ids]
    request = predict_request_model(1000, 100_000).model_validate({"customers": items})
    one_by_one = [
        predict(fitted["bundle"], [c], model_version="t", reference=fitted["ref"])[0]
        for c in request.customers
    ]
    together = predict(
        fitted["bundle"], request.customers, model_version="t", reference=fitted["ref"]
    )
    assert [r["customer_id"] for r in together] == ids
    for got in (one_by_one, together):
        for row, cid in zip(got, ids, strict=True):
            batch = scores.loc[cid]
            assert row["quarantined"] == []
            for field in SCORE_FIELDS:
                if field not in batch.index:
                    continue
                want, have = batch[field], row[field]
                if field == "top_reasons":
                    assert [r["code"] for r in have] == [r["code"] for r in want]
                elif field in NUMBERS and have is not None:
                    assert have == pytest.approx(
                        float(want), rel=1e-9, abs=1e-9 if field != "churn_percentile" else 0.05
                    ), field
                elif isinstance(have, float) and math.isnan(have):
                    assert pd.isna(want), field
                elif field not in ("as_of", "model_version") and not isinstance(want, float):
                    assert str(have) == str(want), field
                elif isinstance(want, float) and not pd.isna(want) and have is not None:
                    assert have == pytest.approx(want, rel=1e-9, abs=1e-9), field


def test_raw_tables_by_column_equal_a_frame_of_row_records() -> None:
    """The column-by-column tables validate to what ``DataFrame.from_records`` of the rows
    (the plain way) validates to: the same clean tables, quarantined rows and blanked values,
    also for customers with different attributes, missing values, bad rows and empty tables.
    (The raw event columns are typed by the request schema, not inferred as from_records
    does: numbers are float64, the rest objects, which validation reads alike.)"""
    a = {
        "customer_id": "A",
        "signup_date": "2024-01-02",
        "attributes": {"plan": "pro", "seats": 3.0},
        "transactions": [{"timestamp": "2024-02-01", "amount": 5.0}],
        "interactions": [
            {"timestamp": "2024-03-01", "channel": "web", "interaction_type": "usage"},
            {
                "timestamp": "2024-03-02",
                "channel": "phone",
                "interaction_type": "complaint",
                "effort_score": 6,
                "resolved": False,
            },
        ],
    }
    b = {"customer_id": "B", "attributes": {"region": "x", "seats": None}}
    c = {"customer_id": "C", "surveys": [{"timestamp": "2024-01-01", "element": "nps", "score": 3}]}
    d = {
        "customer_id": "D",
        "attributes": {"plan": "N/A", "seats": "2"},
        "transactions": [{"timestamp": "2024-02-30", "amount": 1.0}] * 2,
        "interactions": [
            {"timestamp": "2024-03-01", "channel": "web", "interaction_type": "usage", "csat": 9}
        ],
        "surveys": [{"timestamp": "2024-01-01", "element": "bogus", "score": 11}],
    }
    model = predict_request_model(10, 100)
    for case in ([a], [b], [c], [d], [a, b, c], [c, b, a], [b, c], [d, a]):
        customers = model.model_validate({"customers": case}).customers
        got, origin = raw_tables(customers)
        want: dict[str, pd.DataFrame] = {}
        rows: dict[str, list[dict[str, Any]]] = {}
        for cust in customers:
            rows.setdefault("customers", []).append(
                {
                    "customer_id": cust.customer_id,
                    "signup_date": cust.signup_date,
                    **cust.attributes,
                }
            )
            for table in EVENT_TABLES:
                for row in getattr(cust, table):
                    rows.setdefault(table, []).append(
                        {"customer_id": cust.customer_id, **row.model_dump()}
                    )
        for table, records in rows.items():
            frame = pd.DataFrame.from_records(records)
            if table == "customers" and frame["signup_date"].isna().all():
                frame = frame.drop(columns="signup_date")
            want[table] = frame
        assert set(got) == set(want)
        now = pd.Timestamp("2025-01-01", tz="UTC")
        got_tables, got_results = validate_tables(got, now=now)
        want_tables, want_results = validate_tables(want, now=now)
        for table in want:
            assert list(got[table].columns) == list(want[table].columns)
            assert len(origin[table]) == len(got[table]) == len(want[table])
            pd.testing.assert_frame_equal(
                getattr(got_tables, table), getattr(want_tables, table), check_exact=True
            )
            g, w = got_results[table], want_results[table]
            assert g.quarantine.index.tolist() == w.quarantine.index.tolist()
            assert g.quarantine["reason"].tolist() == w.quarantine["reason"].tolist()
            pd.testing.assert_frame_equal(g.fields, w.fields, check_exact=True)
        assert np.all([cid for cid, _ in origin["customers"]] == [x.customer_id for x in customers])
