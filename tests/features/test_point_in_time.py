"""Point-in-time correctness: events at or after ``as_of`` change no feature, and a customer's
features depend on that customer's rows alone."""

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.build import build_features
from features.schema import Tables
from features.validation import validate_tables

AS_OF = pd.Timestamp("2025-01-01", tz="UTC")
IDS = ["A", "B", "C", "D"]
ELEMENTS = ["quality", "saves_time", "wellness", "motivation", "self_transcendence", "nps"]


def random_tables(seed: int, n: int, *, start: str, end: str) -> dict[str, pd.DataFrame]:
    """Raw tables with ``n`` events per event table, timestamps uniform in [start, end)."""
    rng = np.random.default_rng(seed)
    lo, hi = pd.Timestamp(start, tz="UTC").value, pd.Timestamp(end, tz="UTC").value
    ts = lambda: pd.to_datetime(rng.integers(lo, hi, n), utc=True)  # noqa: E731
    ids = lambda: rng.choice(IDS, n)  # noqa: E731
    return {
        "customers": pd.DataFrame(
            {
                "customer_id": IDS,
                "signup_date": pd.to_datetime(
                    ["2023-01-01", "2023-06-01", "2024-05-01", "2024-12-31"], utc=True
                ),
                "plan": ["basic", "plus", "basic", "premium"],
            }
        ),
        "transactions": pd.DataFrame(
            {
                "customer_id": ids(),
                "timestamp": ts(),
                "amount": np.round(rng.normal(40, 30, n), 2),
            }
        ),
        "interactions": pd.DataFrame(
            {
                "customer_id": ids(),
                "timestamp": ts(),
                # "sms" and "webinar" are outside the canonical lists: counted as "other"
                "channel": rng.choice(["phone", "chat", "web", "sms"], n),
                "interaction_type": rng.choice(
                    ["support_ticket", "complaint", "education", "onboarding", "webinar"], n
                ),
                "effort_score": rng.integers(1, 8, n),
                "csat": rng.integers(1, 6, n),
                "resolved": rng.random(n) < 0.7,
                "value_enhancement": rng.integers(1, 8, n),
            }
        ),
        "surveys": pd.DataFrame(
            {
                "customer_id": ids(),
                "timestamp": ts(),
                "element": rng.choice(ELEMENTS, n),
                "score": rng.integers(0, 11, n),
            }
        ),
    }


def features_of(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    tables, _ = validate_tables(raw)
    return build_features(tables, as_of=AS_OF)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n_past=st.integers(1, 60), n_future=st.integers(1, 60))
def test_future_events_change_no_feature(seed, n_past, n_future):
    past = random_tables(seed, n_past, start="2023-01-01", end="2025-01-01")
    future = random_tables(seed + 1, n_future, start="2025-01-01", end="2026-01-01")
    # Events exactly at as_of are "not strictly before" it: they must be ignored too.
    for name in ("transactions", "interactions", "surveys"):
        future[name].loc[future[name].index[0], "timestamp"] = AS_OF
    combined = {
        name: pd.concat([past[name], future[name]], ignore_index=True)
        if name != "customers"
        else past[name]
        for name in past
    }
    pd.testing.assert_frame_equal(features_of(past), features_of(combined))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(5, 80))
def test_customer_features_ignore_other_customers(seed, n):
    tables, _ = validate_tables(random_tables(seed, n, start="2023-01-01", end="2025-01-01"))
    full = build_features(tables, as_of=AS_OF)
    # One customer's partition, as a distributed engine would hand it over (tables may be empty).
    only_a = Tables(**{k: v.loc[v["customer_id"] == "A"] for k, v in tables.present().items()})
    alone = build_features(only_a, as_of=AS_OF)
    assert list(alone.index) == ["A"]
    # categories may differ (fewer customers): compare values, not category sets
    pd.testing.assert_frame_equal(
        alone.astype({"plan": "str"}), full.loc[["A"]].astype({"plan": "str"}), check_names=False
    )
    assert list(alone.columns) == list(full.columns)


def test_absent_table_adds_no_features():
    raw = random_tables(1, 20, start="2024-01-01", end="2025-01-01")
    tables, _ = validate_tables({"transactions": raw["transactions"]})
    frame = build_features(tables, as_of=AS_OF)
    assert "effort_score_mean_90d" not in frame.columns
    assert "frequency" in frame.columns
    assert Tables().present() == {}
