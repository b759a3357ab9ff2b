"""The CLV fields of a score, through the real server: the stated horizon and discount rate,
the 80% interval, the residual value and the P(alive) note, in the snapshot and /v1/predict."""

from __future__ import annotations

import math

import httpx
import pytest

from models.contract import DEFAULT_CLV_HORIZON_DAYS, P_ALIVE_NOTES, SCORE_FIELDS
from serving.snapshot import scored_row
from tests.serving.conftest import ScoresDir
from tests.serving.test_routes import history_of

pytestmark = pytest.mark.slow


def _check_clv_fields(body: dict) -> None:  # type: ignore[type-arg]
    assert list(body)[: len(SCORE_FIELDS)] == list(SCORE_FIELDS)
    assert body["clv_horizon_days"] == DEFAULT_CLV_HORIZON_DAYS
    assert body["discount_rate"] == pytest.approx(0.10)
    # p_alive is null exactly when a note says why
    assert (body["p_alive"] is None) == (body["p_alive_note"] is not None)
    assert body["p_alive_note"] in (None, *P_ALIVE_NOTES)
    assert 0 <= body["clv_low"] <= body["clv_high"]
    assert body["residual_clv"] >= body["clv"] - 1e-9


def test_snapshot_scores_state_the_clv_horizon_interval_and_note(
    client: httpx.Client, scores_dir: ScoresDir
) -> None:
    rows = scores_dir.rows
    one_purchase = rows.index[rows["p_alive_note"].notna()]
    repeat = rows.index[rows["p_alive_note"].isna()]
    assert len(one_purchase) and len(repeat)
    for cid in (one_purchase[0], repeat[0]):
        body = client.get(f"/v1/customers/{cid}").json()
        _check_clv_fields(body)
        assert body["clv"] == pytest.approx(rows.loc[cid, "clv"])
        assert body["clv_high"] == pytest.approx(rows.loc[cid, "clv_high"])
    assert client.get(f"/v1/customers/{one_purchase[0]}").json()["p_alive_note"] == (
        "no_repeat_purchase"
    )


def test_predict_returns_the_same_clv_fields(client: httpx.Client, scores_dir: ScoresDir) -> None:
    ids = ["C00010", "C00042"]
    response = client.post("/v1/predict", json={"customers": [history_of(c) for c in ids]})
    assert response.status_code == 200, response.text
    for item, cid in zip(response.json()["results"], ids, strict=True):
        _check_clv_fields(item)
        expected = scores_dir.rows.loc[cid]
        assert item["clv_low"] == pytest.approx(expected["clv_low"])
        assert item["residual_clv"] == pytest.approx(expected["residual_clv"])


def _row(**changes: object) -> dict:  # type: ignore[type-arg]
    row = {
        "customer_id": "C1",
        "as_of": "2026-01-01T00:00:00Z",
        "status": "at_risk",
        "churn_probability": 0.5,
        "churn_percentile": 50.0,
        "risk_band": "medium",
        "p_alive": None,
        "p_alive_note": "no_repeat_purchase",
        "expected_purchases": 1.0,
        "expected_order_value": 10.0,
        "clv": 9.0,
        "clv_low": 0.0,
        "clv_high": 20.0,
        "clv_horizon_days": 365,
        "discount_rate": 0.1,
        "residual_clv": 30.0,
        "value_at_risk": 4.5,
        "top_reasons": "[]",
        "model_version": "1",
    }
    return {**row, **changes}


def test_snapshot_validation_refuses_inconsistent_clv_fields() -> None:
    assert scored_row(_row())["p_alive_note"] == "no_repeat_purchase"
    assert scored_row(_row(p_alive=0.4, p_alive_note=None))["p_alive"] == 0.4
    assert scored_row(_row(clv_low=math.nan))["clv_low"] is None
    for bad in (
        {"p_alive": 0.4},  # a note next to a value
        {"p_alive_note": "dead"},  # not a reason code
        {"clv_horizon_days": 0},
        {"clv_horizon_days": 36.5},
        {"clv_horizon_days": None},
    ):
        with pytest.raises(ValueError):
            scored_row(_row(**bad))
