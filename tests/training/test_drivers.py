"""What drives churn here (training/drivers.py): bands, counts, Wilson intervals and verdicts
on frames built by the real feature builder and on hand-made frames."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.labels import churn_labels
from features.validation import validate_tables
from training.demo_data import generate_demo_data
from training.drivers import DRIVERS, Z95, churn_drivers, wilson_interval

AS_OF = pd.Timestamp("2026-04-02", tz="UTC")


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (41, 1000), (500, 1000)])
def test_wilson_bounds_solve_the_score_equation(k: int, n: int) -> None:
    low, high = wilson_interval(k, n)
    p = k / n
    assert 0.0 <= low <= p <= high <= 1.0
    # each bound b solves n (p - b)^2 = z^2 b (1 - b): where the score test rejects at 5%
    for b in (low, high):
        assert n * (p - b) ** 2 == pytest.approx(Z95**2 * b * (1 - b), abs=1e-9)


def test_wilson_narrows_with_more_customers_and_is_nan_for_none() -> None:
    small, large = wilson_interval(30, 100), wilson_interval(300, 1000)
    assert large[1] - large[0] < small[1] - small[0]
    assert all(np.isnan(wilson_interval(0, 0)))


def _frame(n: int, *, effort_raises_churn: bool, seed: int = 0) -> pd.DataFrame:
    """A feature frame with the driver columns, churn tied to the effort score."""
    rng = np.random.default_rng(seed)
    effort = rng.integers(1, 8, n).astype(float)
    effort[rng.random(n) < 0.1] = np.nan
    p = np.where(effort >= 5, 0.6, 0.2) if effort_raises_churn else np.where(effort >= 5, 0.2, 0.6)
    nps = pd.Categorical(
        rng.choice(["detractor", "passive", "promoter", None], n),
        categories=["detractor", "passive", "promoter"],
    )
    return pd.DataFrame(
        {
            "effort_score_last": effort,
            "value_enhancement_last": rng.integers(1, 8, n).astype(float),
            "unresolved_365d": rng.poisson(0.5, n).astype(float),
            "interactions_365d": rng.poisson(3, n).astype(float),
            "elements_high_count": rng.integers(0, 8, n).astype(float),
            "elements_answered": rng.choice([0.0, 30.0], n),
            "nps_class": nps,
            "churned": (rng.random(n) < np.nan_to_num(p, nan=0.5)).astype(float),
        },
        index=pd.Index([f"C{i}" for i in range(n)], name="customer_id"),
    )


def test_rows_count_every_customer_and_match_a_groupby() -> None:
    frame = _frame(3000, effort_raises_churn=True)

    out = churn_drivers(frame, as_of=AS_OF, horizon_days=90)

    assert [d["key"] for d in out["drivers"]] == [d.key for d in DRIVERS]
    assert out["customers"] == 3000 and out["churn_rate"] == pytest.approx(frame.churned.mean())
    for d in out["drivers"]:
        assert d["available"] and sum(r["customers"] for r in d["rows"]) == 3000, d["key"]
    effort = {r["band"]: r for r in out["drivers"][0]["rows"]}
    e = frame["effort_score_last"]
    expected = frame.groupby(pd.cut(e, [0, 3, 4, 7]), observed=True)["churned"].agg(["size", "sum"])
    got = [effort[b] for b in ("low effort (1-3)", "middle (4)", "high effort (5-7)")]
    assert [r["customers"] for r in got] == expected["size"].tolist()
    assert [r["churned"] for r in got] == expected["sum"].astype(int).tolist()
    assert effort["not scored"]["customers"] == e.isna().sum()
    for r in got:
        assert r["low"] <= r["churn_rate"] <= r["high"]
    nps = {r["band"]: r["customers"] for r in out["drivers"][3]["rows"]}
    assert nps["no NPS answer"] == frame["nps_class"].isna().sum()


def test_verdict_follows_the_data() -> None:
    holds = churn_drivers(_frame(3000, effort_raises_churn=True), as_of=AS_OF, horizon_days=90)
    reversed_ = churn_drivers(_frame(3000, effort_raises_churn=False), as_of=AS_OF, horizon_days=90)

    assert holds["drivers"][0]["verdict"] == "holds"
    assert reversed_["drivers"][0]["verdict"] == "reversed"
    assert "low effort (1-3)" in holds["drivers"][0]["finding"]
    # value enhancement is noise here: intervals overlap (or, rarely, not), never an error
    assert holds["drivers"][1]["verdict"] in {"unclear", "holds", "reversed"}
    assert "source: 82%" in holds["drivers"][1]["finding"]


def test_absent_tables_say_so_and_the_result_is_strict_json() -> None:
    demo = generate_demo_data(n_customers=400, seed=3)
    no_surveys, _ = validate_tables(
        {n: getattr(demo, n) for n in ("customers", "transactions", "interactions")}
    )
    frame = build_features(no_surveys, as_of=AS_OF)
    labels = churn_labels(no_surveys, as_of=AS_OF, horizon_days=90, population=frame.index)
    frame = frame.assign(churned=labels).loc[labels.notna()]

    out = churn_drivers(frame, as_of=AS_OF, horizon_days=90)

    by_key = {d["key"]: d for d in out["drivers"]}
    for key in ("elements_of_value", "nps"):
        assert not by_key[key]["available"] and by_key[key]["verdict"] == "absent"
        assert "surveys" in by_key[key]["note"] and by_key[key]["rows"] == []
    for key in ("effort", "value_enhancement", "unresolved"):
        assert by_key[key]["available"]
        assert sum(r["customers"] for r in by_key[key]["rows"]) == len(frame)
    assert json.loads(json.dumps(out, allow_nan=False)) == out
