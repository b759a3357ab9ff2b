"""The sBG contractual model: Fader & Hardie (2007)'s published fits from their survivor
counts, the residual lifetime against a direct sum, censoring, segments and the JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from models.contractual import (
    MONTH_DAYS,
    ContractualCLV,
    ContractualModelError,
    cohort_intervals,
    fit_sbg,
    per_period_rate,
    residual_lifetime,
    survivor,
)

#: FH 2007, Table 1: customers still active at the start of years 0..7.
REGULAR = [1000, 631, 468, 382, 326, 289, 262, 241]
HIGH_END = [1000, 869, 743, 653, 593, 551, 517, 491]


@pytest.mark.parametrize(
    ("counts", "alpha", "beta", "ll"),
    [(REGULAR, 0.704, 1.182, -1680.27), (HIGH_END, 0.668, 3.806, -1611.16)],
)
def test_reproduces_fader_hardie_2007(counts, alpha, beta, ll):
    lo, hi, w = cohort_intervals(counts)
    a, b, fitted_ll = fit_sbg(lo, hi, w)
    assert round(a, 3) == alpha and round(b, 3) == beta
    assert round(fitted_ll, 2) == ll
    # the fitted survivor curve follows the counts it was fitted to (FH 2007, Figure 3)
    projected = 1000 * survivor(a, b, np.arange(8))
    assert np.abs(projected - np.array(counts)).max() < 25


@pytest.mark.parametrize("n", [0, 1, 4, 12, 40])
def test_residual_lifetime_matches_a_direct_sum(n):
    alpha, beta, d = 0.704, 1.182, 0.10
    k = np.arange(1, 2_001)  # the tail beyond is below 1e-80
    # sum_k S(n + k) / S(n) / (1 + d)^(k - 1), from the survivor function itself
    direct = (survivor(alpha, beta, n + k) / survivor(alpha, beta, n) / (1 + d) ** (k - 1)).sum()
    closed = float(residual_lifetime(alpha, beta, np.array([n]), d=d)[0])
    assert closed == pytest.approx(direct, rel=1e-9)
    twelve = (survivor(alpha, beta, n + k[:12]) / survivor(alpha, beta, n)).sum()
    assert residual_lifetime(alpha, beta, np.array([n]), d=d, periods=12, discounted=False)[
        0
    ] == pytest.approx(twelve, rel=1e-12)


def test_longer_survivors_are_worth_more():
    # heterogeneity: the customers who stayed are the low-churn ones (FH 2010's point)
    values = residual_lifetime(0.704, 1.182, np.arange(10.0), d=0.01)
    assert np.all(np.diff(values) > 0)


def _simulated(n: int, alpha: float, beta: float, seed: int, *, periods: int = 24):
    """Customers acquired over ``periods`` periods, observed at the end: tenure and churned."""
    rng = np.random.default_rng(seed)
    theta = rng.beta(alpha, beta, n)
    t = rng.geometric(theta)  # the period in which each customer churns, 1, 2, ...
    age = rng.integers(1, periods + 1, n)  # periods since acquisition at the snapshot
    churned = t <= age
    tenure = np.where(churned, t - 1, age)
    return tenure, churned


def test_right_censored_fit_recovers_the_parameters():
    tenure, churned = _simulated(20_000, 1.2, 3.0, 5)
    model = ContractualCLV().fit(tenure, churned=churned)
    assert model.params_["alpha"] == pytest.approx(1.2, rel=0.15)
    assert model.params_["beta"] == pytest.approx(3.0, rel=0.15)


def test_forward_labels_fit_recovers_the_parameters():
    # a snapshot of the active customers with a flag "churns within the next 3 periods", as a
    # labels table holds: who churned before the snapshot is not in it (left truncation)
    rng = np.random.default_rng(9)
    theta = rng.beta(1.0, 4.0, 40_000)
    t = rng.geometric(theta)
    age = rng.integers(0, 36, len(t))  # renewals made by the snapshot, had they stayed
    active = t > age
    n, churned = age[active], (t <= age + 3)[active]
    model = ContractualCLV().fit(n, churned=churned, within_periods=3)
    assert model.params_["alpha"] == pytest.approx(1.0, rel=0.2)
    assert model.params_["beta"] == pytest.approx(4.0, rel=0.2)


def test_no_churn_at_all_is_a_clear_error():
    with pytest.raises(ContractualModelError, match="no customer churned"):
        ContractualCLV().fit(np.arange(50), churned=np.zeros(50, bool))


def test_segments_get_their_own_fit_and_clv():
    t1, c1 = _simulated(4000, 0.7, 1.2, 1)  # high churn: monthly contracts
    t2, c2 = _simulated(4000, 0.7, 6.0, 2)  # low churn: yearly contracts
    tenure = np.concatenate([t1, t2])
    churned = np.concatenate([c1, c2])
    segment = np.array(["monthly"] * 4000 + ["yearly"] * 4000)
    model = ContractualCLV(segment_column="contract").fit(tenure, churned=churned, segments=segment)
    assert set(model.segments_) == {"monthly", "yearly"}
    assert model.segments_["yearly"]["beta"] > 2 * model.segments_["monthly"]["beta"]
    frame = pd.DataFrame(
        {"tenure_periods": [3, 3], "recurring_revenue": [50.0, 50.0], "contract": segment[[0, -1]]},
        index=pd.Index(["a", "b"], name="customer_id"),
    )
    out = model.predict(frame, horizon_days=365)
    assert out.loc["b", "clv"] > out.loc["a", "clv"]
    # within one year: at most 12 renewals of 50, discounted
    assert (out["clv"] <= 12 * 50).all() and (out["expected_purchases"] <= 12).all()
    d = per_period_rate(0.10, MONTH_DAYS)
    expected = (
        50
        * residual_lifetime(
            model.segments_["yearly"]["alpha"],
            model.segments_["yearly"]["beta"],
            np.array([3.0]),
            d=d,
            periods=12,
        )[0]
    )
    assert out.loc["b", "clv"] == pytest.approx(expected)

    again = ContractualCLV.from_dict(json.loads(json.dumps(model.to_dict())))
    pd.testing.assert_frame_equal(again.predict(frame, horizon_days=365), out)
    lifetime = again.predict(frame, horizon_days=None)
    assert (lifetime["clv"] > out["clv"]).all()


def test_missing_tenure_or_revenue_scores_nan():
    model = ContractualCLV(params_={"alpha": 0.7, "beta": 1.2})
    frame = pd.DataFrame(
        {"tenure_periods": [np.nan, 2.0, 5.0], "recurring_revenue": [10.0, np.nan, 20.0]}
    )
    out = model.predict(frame, horizon_days=365)
    assert out["clv"].isna().tolist() == [True, True, False]
