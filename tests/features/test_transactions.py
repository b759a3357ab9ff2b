"""RFM by hand on a tiny history: same-day merging, refunds, zero-value orders, windows."""

import math

import pandas as pd
import pytest

from features.labels import churn_labels
from features.schema import Tables
from features.transactions import purchase_days, rfm_features, transaction_features

AS_OF = pd.Timestamp("2024-07-01", tz="UTC")


@pytest.fixture
def tx() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["A", "A", "A", "A", "A", "B", "C"],
            "timestamp": pd.to_datetime(
                [
                    "2024-01-01T09:00Z",
                    "2024-01-01T18:00Z",  # same day: one purchase day
                    "2024-03-01T12:00Z",
                    "2024-06-01T12:00Z",
                    "2024-06-03T12:00Z",  # refund
                    "2024-06-20T00:00Z",  # zero-value order
                    "2024-08-01T00:00Z",  # after as_of
                ],
                utc=True,
            ),
            "amount": [10.0, 20.0, 40.0, 60.0, -15.0, 0.0, 99.0],
        }
    )


def test_rfm_by_hand(tx):
    f = transaction_features(tx, as_of=AS_OF)
    a = f.loc["A"]
    assert a["frequency"] == 2  # three purchase days
    assert a["recency_days"] == (pd.Timestamp("2024-06-01") - pd.Timestamp("2024-01-01")).days
    assert a["T_days"] == (pd.Timestamp("2024-07-01") - pd.Timestamp("2024-01-01")).days
    assert a["days_since_last_purchase"] == pytest.approx(29.5)
    assert a["monetary_repeat_mean"] == pytest.approx(50.0)  # (40 + 60) / 2
    assert a["order_value_mean"] == pytest.approx(130 / 3)
    assert a["spend_total"] == pytest.approx(115.0)
    assert a["spend_90d"] == pytest.approx(45.0)
    assert a["purchases_90d"] == 1 and a["purchases_365d"] == 3
    assert a["refunds_365d"] == 1
    b = f.loc["B"]
    assert b["frequency"] == 0 and b["order_value_mean"] == 0.0
    assert "C" not in f.index


def test_non_contractual_labels_read_only_the_horizon(tx):
    tables = Tables(transactions=tx)
    pop = pd.Index(["A", "B", "C"])
    y = churn_labels(tables, as_of=AS_OF, horizon_days=90, population=pop)
    assert y.to_dict() == {"A": 1, "B": 1, "C": 0}
    y30 = churn_labels(tables, as_of=AS_OF, horizon_days=30, population=pop)
    assert y30["C"] == 1


def test_contractual_labels_from_churn_date():
    customers = pd.DataFrame(
        {
            "customer_id": ["A", "B", "C"],
            "churn_date": pd.to_datetime(["2024-07-15", "2024-12-01", None], utc=True),
        }
    )
    y = churn_labels(
        Tables(customers=customers),
        as_of=AS_OF,
        horizon_days=90,
        population=pd.Index(["A", "B", "C"]),
    )
    assert y.to_dict() == {"A": 1, "B": 0, "C": 0}


def test_dynamics_gaps_and_refunds_by_hand(tx):
    a = transaction_features(tx, as_of=AS_OF).loc["A"]
    # purchase days 2024-01-01, 03-01, 06-01: gaps of 60 and 92 days
    assert a["interpurchase_days_mean"] == pytest.approx(76.0)
    assert a["interpurchase_days_std"] == pytest.approx(16.0)
    assert a["purchase_overdue_ratio"] == pytest.approx(29.5 / 76.0)
    # last 90 days: the June day; the 90 days before: the March day
    assert a["purchases_trend_90d"] == 0
    assert a["spend_trend_90d"] == pytest.approx((60.0 - 15.0) - 40.0)
    assert a["refund_amount_365d"] == pytest.approx(15.0)
    assert a["refund_share"] == pytest.approx(15.0 / 130.0)
    b = transaction_features(tx, as_of=AS_OF).loc["B"]
    assert math.isnan(b["interpurchase_days_mean"]) and math.isnan(b["refund_share"])


def test_refund_only_customer_has_spend_but_no_rfm():
    refunds = pd.DataFrame(
        {
            "customer_id": ["R"],
            "timestamp": pd.to_datetime(["2024-06-01"], utc=True),
            "amount": [-20.0],
        }
    )
    r = transaction_features(refunds, as_of=AS_OF).loc["R"]
    assert r["spend_total"] == -20.0 and r["refunds_365d"] == 1
    assert math.isnan(r["frequency"]) and math.isnan(r["T_days"])


def test_rfm_features_match_purchase_days(tx):
    days = purchase_days(tx.loc[tx["timestamp"] < AS_OF])
    assert days.groupby("customer_id").size().to_dict() == {"A": 3, "B": 1}
    assert days.loc[days["customer_id"] == "A", "amount"].tolist() == [30.0, 40.0, 60.0]
    rfm = rfm_features(tx, as_of=AS_OF)
    assert rfm.loc["A", "monetary_repeat_mean"] == pytest.approx(50.0)
    assert list(rfm.columns) == ["frequency", "recency_days", "T_days", "monetary_repeat_mean"]
