"""The status rule (features/status.py, docs/status.md) on hand-made feature rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.status import ACTIVE, AT_RISK, LAPSED, customer_status, inactive_days, is_lapsed


def _frame(rows: list[dict[str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        rows,
        columns=[
            "days_since_last_purchase",
            "days_since_last_interaction",
            "interpurchase_days_mean",
            "tenure_days",
        ],
    ).astype(float)


def test_inactive_days_is_the_latest_activity_of_any_kind_else_tenure():
    frame = _frame(
        [
            {"days_since_last_purchase": 200, "days_since_last_interaction": 12},
            {"days_since_last_purchase": 30},
            {"tenure_days": 500},
            {},
        ]
    )
    idle = inactive_days(frame)
    assert idle[:3].tolist() == [12, 30, 500]
    assert np.isnan(idle[3])


def test_lapsed_past_the_ceiling_or_far_past_the_customers_own_gap():
    frame = _frame(
        [
            {"days_since_last_purchase": 400},  # past the ceiling
            {"days_since_last_purchase": 170, "interpurchase_days_mean": 40},  # > 4 x 40
            {"days_since_last_purchase": 150, "interpurchase_days_mean": 40},  # < 4 x 40
            {"days_since_last_purchase": 60, "interpurchase_days_mean": 7},  # < 90-day floor
            {"days_since_last_purchase": 300},  # no usual gap, under the ceiling
            {"days_since_last_purchase": 400, "days_since_last_interaction": 3},  # still talks
            {},  # nothing known
        ]
    )
    assert is_lapsed(frame).tolist() == [True, True, False, False, False, False, False]
    assert is_lapsed(frame, ceiling_days=250).tolist()[4] is True


def test_status_puts_lapsed_before_the_risk_flag():
    frame = _frame(
        [
            {"days_since_last_purchase": 400},
            {"days_since_last_purchase": 20},
            {"days_since_last_purchase": 20},
        ]
    )
    status = customer_status(frame, np.array([True, True, False]))
    assert status.tolist() == [LAPSED, AT_RISK, ACTIVE]
    assert customer_status(frame).tolist() == [LAPSED, ACTIVE, ACTIVE]
