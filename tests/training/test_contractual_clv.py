"""A subscription business -- a telecom customers table with tenure in months, plan, contract,
monthly charge and a churn flag, and no purchase history -- gets the contractual (sBG) CLV:
trained and scored through the command line, stored in the bundle as JSON, and ranked by value
at risk over HTTP (``/v1/at-risk``). Real LightGBM, MLflow (sqlite in a temp folder), uvicorn."""

from __future__ import annotations

import json

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest

from features.schema import Tables
from models import registry
from models.contractual import ContractualCLV, per_period_rate, residual_lifetime
from serving.snapshot import load_snapshot
from tests.server import run_server, workspace_env
from tests.training.test_one_snapshot import create_api_key, run, telecom_export
from training.clv_fit import fit_contractual_clv
from training.tracking import SCORING_KIND

N = 1500


@pytest.fixture(scope="module")
def subscription(tmp_path_factory):
    root = tmp_path_factory.mktemp("subscription")
    data = root / "data"
    telecom_export(data, n=N, seed=23)
    customers = pd.read_csv(data / "customers.csv").rename(
        columns={"tenure_months": "tenure_periods", "monthly_charge": "recurring_revenue"}
    )
    customers.to_csv(data / "customers.csv", index=False)
    env = workspace_env(root) | {"CHURN_CONTRACT_SEGMENT_COLUMN": "contract"}
    trained = run(["train", "--data", str(data)], env, root)
    assert trained.returncode == 0, trained.stderr[-3000:]
    scored = run(["score", "--data", str(data)], env, root)
    assert scored.returncode == 0, scored.stderr[-3000:]
    return root, env, customers.set_index("customer_id"), trained


@pytest.mark.slow  # trains end to end (make test, not test-fast)
def test_subscription_customers_get_contractual_clv(subscription):
    root, _, customers, trained = subscription
    assert "CLV not fitted" not in trained.stderr
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("churn-clv").experiment_id])
    (info,) = [r for r in runs if r.data.tags.get("kind") != SCORING_KIND]  # the training run
    assert info.data.params["clv.model"] == "sbg"
    assert info.data.tags["clv.status"].startswith("fitted: sbg (contractual)")

    bundle = registry.load_model_version(
        f"sqlite:///{root / 'mlflow.db'}", "churn-clv", version="1"
    ).bundle
    clv = bundle.clv
    assert isinstance(clv, ContractualCLV)
    # the export's churn follows the contract: month-to-month churns most, two-year least
    betas = {k: v["beta"] / v["alpha"] for k, v in clv.segments_.items()}
    assert set(betas) == {"month-to-month", "one_year", "two_year"}
    assert betas["month-to-month"] < betas["one_year"] < betas["two_year"]
    json.dumps(clv.to_dict())  # stored as JSON parameters

    snapshot = load_snapshot(root / "scores")
    scores = pd.DataFrame.from_dict(snapshot.scores, orient="index")
    assert scores["clv"].notna().all() and scores["value_at_risk"].notna().all()
    assert np.allclose(scores["value_at_risk"], scores["churn_probability"] * scores["clv"])
    # one customer's CLV by hand: charge x discounted expected renewals in the CLV horizon
    cid = scores.index[0]
    row = customers.loc[cid]
    seg = clv.segments_[row["contract"]]
    periods = round(int(scores.loc[cid, "clv_horizon_days"]) / clv.period_days)
    renewals = residual_lifetime(
        seg["alpha"],
        seg["beta"],
        np.array([float(row["tenure_periods"])]),
        d=per_period_rate(clv.annual_discount_rate, clv.period_days),
        periods=periods,
    )[0]
    assert scores.loc[cid, "clv"] == pytest.approx(row["recurring_revenue"] * renewals)


@pytest.mark.slow
def test_at_risk_ranks_subscription_customers_by_value(subscription):
    root, env, customers, _ = subscription
    api_key = create_api_key(env, root)
    with run_server(root, env) as server:
        r = httpx.get(
            f"{server.url}/v1/at-risk", params={"limit": 5}, headers={"X-API-Key": api_key}
        )
        assert r.status_code == 200, r.text
        top = r.json()["results"]
    values = [c["value_at_risk"] for c in top]
    assert len(top) == 5 and all(v is not None for v in values)
    assert values == sorted(values, reverse=True)
    snapshot = load_snapshot(root / "scores")
    best = max(s["value_at_risk"] for s in snapshot.scores.values())
    assert values[0] == pytest.approx(best)
    table = pd.DataFrame(top).set_index("customer_id")
    shown = table[["churn_probability", "clv", "value_at_risk"]].join(
        customers[["plan", "contract", "tenure_periods", "recurring_revenue"]]
    )
    print("\ntop 5 by value at risk\n" + shown.round(3).to_string())


def _customers(n: int, *, churn_dates: bool) -> pd.DataFrame:
    rng = np.random.default_rng(4)
    t = rng.geometric(rng.beta(0.8, 2.5, n))
    age = rng.integers(1, 48, n)
    churned = t <= age
    frame = pd.DataFrame(
        {
            "customer_id": [f"S{i}" for i in range(n)],
            "tenure_periods": np.where(churned, t - 1, age).astype(float),
            "recurring_revenue": 30.0,
        }
    )
    if churn_dates:
        frame["churn_date"] = pd.Series(
            np.where(churned, pd.Timestamp("2025-01-01", tz="UTC"), pd.NaT)
        ).astype("datetime64[ns, UTC]")
    return frame


def test_training_picks_the_contractual_model_only_without_purchases():
    end = pd.Timestamp("2025-06-01", tz="UTC")
    kwargs = {"horizon_days": 90, "data_end": end, "period_days": 30.4375}
    fit = fit_contractual_clv(Tables(customers=_customers(3000, churn_dates=True)), **kwargs)
    assert fit is not None and fit.contractual and isinstance(fit.model, ContractualCLV)
    assert fit.model.params_["alpha"] == pytest.approx(0.8, rel=0.25)
    assert "churn_date" in fit.describe()
    # purchases present: the BTYD ladder's job, not this one
    purchases = pd.DataFrame({"customer_id": ["S1"], "timestamp": [end], "amount": [1.0]})
    tables = Tables(customers=_customers(50, churn_dates=True), transactions=purchases)
    assert fit_contractual_clv(tables, **kwargs) is None
    # no churn evidence at all: not fitted, with the reason and the fix
    none = fit_contractual_clv(Tables(customers=_customers(50, churn_dates=False)), **kwargs)
    assert none is not None and none.model is None and none.status == "not fitted"
    assert "no churn_date and no labels" in none.reason
