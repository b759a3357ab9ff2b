"""CLV holdout evaluation: the metrics' definitions on tiny data, and a whole evaluation on a
seeded synthetic cohort."""

import numpy as np
import pandas as pd
import pytest

from models.clv import CLVModel
from models.clv_evaluation import (
    MAX_FREQUENCY,
    calibration_holdout,
    conditional_expectation_table,
    decile_table,
    evaluate_holdout,
    holdout_actuals,
    naive_forecast,
    normalised_gini,
    plots,
    spearman,
)

UTC = "UTC"
CUTOFF = pd.Timestamp("2024-07-01", tz=UTC)
END = pd.Timestamp("2024-12-30", tz=UTC)


def tx(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "timestamp": pd.to_datetime([r[1] for r in rows], utc=True, format="ISO8601"),
            "amount": [float(r[2]) for r in rows],
        }
    )


def test_holdout_actuals_merge_days_skip_refunds_and_respect_the_window():
    t = tx(
        [
            ("A", "2024-06-30 23:00", 10),  # calibration: not counted
            ("A", "2024-07-01 00:00", 5),  # first holdout instant
            ("A", "2024-07-01 18:00", 7),  # same day: merged
            ("A", "2024-07-03", 0),  # zero-value purchase counts
            ("A", "2024-07-04", -4),  # refund: neither a purchase nor negative spend
            ("B", "2024-12-30", 9),  # the window's end is excluded
        ]
    )
    a = holdout_actuals(t, start=CUTOFF, end=END)
    assert a.to_dict("index") == {"A": {"purchases": 2, "spend": 12.0}}


def test_naive_forecast_carries_the_historical_rate_forward():
    summary = pd.DataFrame(
        {
            "frequency": [2.0, 0.0],
            "recency_days": [50.0, 0.0],
            "T_days": [100.0, 40.0],
            "monetary_repeat_mean": [30.0, np.nan],
        },
        index=["A", "B"],
    )
    naive = naive_forecast(summary, horizon_days=50)
    assert naive.loc["A"].tolist() == [1.0, 30.0]
    assert naive.loc["B"].tolist() == [0.0, 0.0]


def test_normalised_gini():
    actual = np.array([0.0, 0.0, 10.0, 30.0])
    assert normalised_gini(actual, actual) == pytest.approx(1.0)
    assert normalised_gini(actual, -actual) < 0
    # a constant prediction ranks nobody: no better than chance
    assert normalised_gini(actual, np.ones(4)) == pytest.approx(0.0)
    # ties share their gain: row order does not matter
    pred = np.array([1.0, 2.0, 2.0, 3.0])
    flipped = [0, 2, 1, 3]
    assert normalised_gini(actual, pred) == pytest.approx(
        normalised_gini(actual[flipped], pred[flipped])
    )
    assert np.isnan(normalised_gini(np.zeros(4), pred))


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_conditional_expectation_table_groups_from_seven_up():
    freq = pd.Series([0, 0, 1, 7, 12])
    actual = pd.Series([0.0, 1.0, 2.0, 5.0, 9.0])
    table = conditional_expectation_table(freq, actual, {"model": actual + 1})
    assert list(table.index) == [*map(str, range(MAX_FREQUENCY)), "7+"]
    assert table.loc["0", "actual"] == 0.5 and table.loc["7+", "actual"] == 7.0
    assert table.loc["7+", "model"] == 8.0
    assert table["n_customers"].tolist() == [2, 1, 0, 0, 0, 0, 0, 2]


def test_decile_table_orders_by_rank_and_shares_sum_to_one():
    n = 100
    rank_by = pd.Series(np.arange(n, dtype=float))
    actual = pd.Series(np.arange(n, dtype=float))
    table = decile_table(rank_by * 2, actual, rank_by=rank_by)
    assert table["n_customers"].tolist() == [10] * 10
    assert table.index.tolist() == list(range(1, 11))
    assert table["actual_mean"].is_monotonic_decreasing
    assert table["actual_share"].sum() == pytest.approx(1.0)
    assert table.loc[1, "predicted_mean"] == pytest.approx(2 * table.loc[1, "actual_mean"])


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    """2,000 customers acquired in the first quarter of 2024 who buy at heterogeneous rates and
    drop out after any repeat purchase (the BG/NBD story), with gamma-distributed spend."""
    rng = np.random.default_rng(7)
    start = pd.Timestamp("2024-01-01", tz=UTC)
    horizon = (END - start).days
    ids, days, amounts = [], [], []
    for i in range(2000):
        rate, p_drop, spend = rng.gamma(0.5, 1 / 20), rng.beta(1.0, 3.0), rng.gamma(4.0, 10.0)
        t = float(rng.integers(0, 90))
        while t < horizon:
            ids.append(f"C{i:04d}")
            days.append(t)
            amounts.append(round(float(rng.gamma(5.0, spend / 5)), 2))
            if len(days) > 1 and ids[-2] == ids[-1] and rng.random() < p_drop:
                break
            t += rng.exponential(1 / rate)
    return pd.DataFrame(
        {
            "customer_id": ids,
            "timestamp": start + pd.to_timedelta(np.array(days), unit="D"),
            "amount": amounts,
        }
    )


@pytest.fixture(scope="module")
def evaluation(cohort):
    summary, actuals = calibration_holdout(cohort, cutoff=CUTOFF, end=END)
    model = CLVModel().fit(summary, as_of=CUTOFF)
    horizon = (END - CUTOFF).days
    return evaluate_holdout(model, summary, actuals, horizon_days=horizon), summary, actuals


def test_evaluation_totals_agree_with_the_customer_table(evaluation):
    ev, summary, actuals = evaluation
    m, c = ev.metrics, ev.customers
    assert m["n_customers"] == len(c) == len(summary)
    # every holdout purchase of the cohort is counted; new customers are not predicted
    assert m["purchases_actual"] == actuals["purchases"].reindex(summary.index).sum()
    assert m["purchases_predicted"] == pytest.approx(c["purchases_predicted"].sum())
    assert m["spend_actual"] == pytest.approx(
        ev.deciles["actual_mean"].mul(ev.deciles["n_customers"]).sum()
    )
    assert ev.conditional_expectation["n_customers"].sum() == len(c)
    # discounting makes CLV a little smaller than the undiscounted expected spend
    assert 0.9 * m["spend_predicted"] < m["clv_predicted"] < m["spend_predicted"]
    assert all(np.isfinite(v) for v in m.values())


def test_evaluation_is_informative_on_a_bgnbd_like_cohort(evaluation):
    ev, _, _ = evaluation
    m = ev.metrics
    assert abs(m["purchases_error_pct"]) < 25
    assert m["purchases_mae"] < m["purchases_mae_naive"]
    assert m["clv_spearman"] > 0.3 and m["clv_gini"] > 0.3
    table = ev.conditional_expectation
    # more calibration purchases, more holdout purchases: for actuals and the model alike
    assert table["actual"].iloc[0] < table["actual"].iloc[-1]
    assert table["model"].is_monotonic_increasing


def test_plots_are_png(evaluation):
    ev, _, _ = evaluation
    images = plots(ev)
    assert set(images) == {"clv_conditional_expectation.png", "clv_deciles.png"}
    for data in images.values():
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
