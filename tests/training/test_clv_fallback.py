"""The CLV fit never stops training (training/clv_fit.py): purchases with no visible dropout
(BG/NBD's ``a`` runs to 0) go through the stated fallbacks and, when none fits, the churn
model trains without BG/NBD features, with ONE warning and ``clv.status`` in MLflow; a spend
model that cannot be fitted leaves expected purchases without CLV. Real lifetimes, LightGBM
and MLflow (sqlite in a temp folder)."""

from __future__ import annotations

import logging

import mlflow
import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.model_outputs import EXPECTED_PURCHASES, P_ALIVE
from features.schema import Tables
from models.clv import CLVModel, CLVModelError, summary_counts
from serving.snapshot import load_snapshot
from training import tracking
from training.batch import score
from training.clv_fit import (
    LAST_MODEL,
    OTHER_MODELS,
    PENALIZERS,
    _ranked_others,
    fit_clv_with_fallback,
    holdout_split,
)
from training.frames import plan_cutoffs
from training.pipeline import train

START = pd.Timestamp("2024-01-01", tz="UTC")
DAYS = 730


def poisson_purchases(n: int, *, seed: int, dropout: float = 0.0) -> pd.DataFrame:
    """Purchases as a Poisson process per customer (Gamma-distributed rates, about one a month
    on average) over two years; a ``dropout`` share of customers stops for good at a uniform
    time, the rest never drop out."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(2.0, 1 / 60, n)  # per day
    stop = np.where(rng.random(n) < dropout, rng.uniform(0, DAYS, n), DAYS)
    counts = rng.poisson(rate * stop)
    owner = np.repeat(np.arange(n), counts)
    day = rng.uniform(0, 1, counts.sum()) * stop[owner]
    return pd.DataFrame(
        {
            "customer_id": [f"P{i:05d}" for i in owner],
            "timestamp": START + pd.to_timedelta(day, unit="D"),
            "amount": np.round(rng.gamma(4.0, 10.0, counts.sum()), 2),
        }
    ).sort_values("timestamp", ignore_index=True)


def summary(tx: pd.DataFrame) -> pd.DataFrame:
    return build_features(Tables(transactions=tx), as_of=START + pd.Timedelta(days=DAYS))


@pytest.mark.slow  # fits every CLV model of the ladder (make test, not test-fast)
def test_no_dropout_walks_the_stated_order_and_ends_with_nbd(caplog):
    frame = summary(poisson_purchases(1500, seed=1))
    with pytest.raises(CLVModelError, match="boundary"):
        CLVModel().fit(frame)  # the library keeps its strict error
    with caplog.at_level(logging.DEBUG, logger="training.clv_fit"):
        fit = fit_clv_with_fallback(frame, where="test")
    assert fit.status == "fitted" and fit.model.model_ == LAST_MODEL == "nbd"
    assert fit.model.penalizer == 0
    bgnbd = [t for t in fit.tried if t.startswith("bgnbd ")]
    assert [t.split(":")[0] for t in bgnbd] == [f"bgnbd penalizer {p:g}" for p in PENALIZERS]
    assert any(t.startswith("pareto_nbd") for t in fit.tried)
    assert any(t.startswith("mbgnbd") for t in fit.tried)
    assert not any(t.startswith("nbd") for t in fit.tried)
    assert "pareto_nbd, mbgnbd did not fit either" in fit.reason
    assert fit.mlflow_params() == {"clv.model": "nbd", "clv.penalizer": 0.0, "clv.spend": True}
    assert fit.mlflow_tags()["clv.status"].startswith("fitted: nbd, penalizer 0 (bgnbd did not")
    ours = [r for r in caplog.records if r.name == "training.clv_fit"]
    final = [r for r in ours if r.levelno == logging.INFO]
    assert len(final) == 1 and final[0].getMessage().startswith("CLV fit (test): nbd, penalizer 0")
    assert len([r for r in ours if r.levelno == logging.DEBUG]) == len(fit.tried)
    out = fit.model.predict(frame, horizon_days=90)
    assert (out["p_alive"] == 1).all()  # no dropout in the model
    # E[purchases in t | x, T] = (r + x) / (alpha + T) * t, in the model's weeks
    r, alpha = fit.model.params_["r"], fit.model.params_["alpha"]
    weeks = np.maximum(np.ceil(frame["T_days"] - 1e-9) - 1, 0) / 7
    np.testing.assert_allclose(
        out["expected_purchases"], (r + frame["frequency"]) / (alpha + weeks) * (90 / 7)
    )


def test_nothing_fits_one_time_buyers_and_says_why():
    tx = poisson_purchases(1500, seed=1).drop_duplicates("customer_id")
    fit = fit_clv_with_fallback(summary(tx), where="test")
    assert fit.model is None and fit.status == "not fitted"
    assert [t.split(" penalizer")[0] for t in fit.tried][-len(PENALIZERS) :] == [LAST_MODEL] * 4
    tag = fit.mlflow_tags()["clv.status"]
    assert tag.startswith("not fitted: no purchase model fitted (bgnbd, pareto_nbd, mbgnbd, nbd")
    assert "no customer has a repeat purchase" in tag
    assert fit.mlflow_params() == {"clv.model": "none"}


def test_data_with_dropout_fits_bgnbd_first_as_the_library_does():
    frame = summary(poisson_purchases(1500, seed=2, dropout=0.4))
    fit = fit_clv_with_fallback(frame)
    assert fit.status == "fitted" and fit.reason == "" and fit.tried == ()
    assert fit.model.model_ == "bgnbd" and fit.model.penalizer == 0
    assert fit.model.params_ == CLVModel().fit(frame).params_  # condensed fit, same numbers
    assert fit.mlflow_params() == {"clv.model": "bgnbd", "clv.penalizer": 0.0, "clv.spend": True}


def test_spend_that_cannot_be_modelled_keeps_expected_purchases():
    tx = poisson_purchases(1500, seed=2, dropout=0.4).assign(amount=0.0)
    frame = summary(tx)
    fit = fit_clv_with_fallback(frame)
    assert fit.status == "fitted without spend" and "Gamma-Gamma" in fit.reason
    assert fit.model.spend is False and fit.mlflow_params()["clv.spend"] is False
    out = fit.model.predict(frame, horizon_days=90)
    assert out["p_alive"].between(0, 1).all() and np.isfinite(out["expected_purchases"]).all()
    assert out["clv"].isna().all() and out["expected_order_value"].isna().all()
    again = CLVModel.from_dict(fit.model.to_dict())  # the bundle's JSON keeps "no spend"
    assert again.spend is False and again.to_dict()["kind"] == "bgnbd"
    pd.testing.assert_frame_equal(again.predict(frame, horizon_days=90), out)


def test_holdout_split_keeps_every_customer_and_ignores_row_order():
    frame = summary(poisson_purchases(800, seed=4, dropout=0.3))
    table = summary_counts(frame)
    fit_part, held = holdout_split(table)
    total = table["weight"].sum()
    assert fit_part["weight"].sum() + held["weight"].sum() == total
    assert abs(held["weight"].sum() / total - 0.2) < 0.05
    again = holdout_split(table.sample(frac=1, random_state=0))
    for a, b in zip((fit_part, held), again, strict=True):
        cols = list(a.columns)
        pd.testing.assert_frame_equal(
            a.sort_values(cols).reset_index(drop=True), b.sort_values(cols).reset_index(drop=True)
        )


def _train_on(root, make_settings, tx: pd.DataFrame, labels: pd.DataFrame | None = None):
    data = root / "data"
    data.mkdir()
    tx.assign(timestamp=tx["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(
        data / "transactions.csv", index=False
    )
    if labels is not None:
        labels.to_csv(data / "labels.csv", index=False)
    return make_settings(root, data, n_training_cutoffs=2)


@pytest.mark.slow  # trains end to end (make test, not test-fast)
def test_no_dropout_purchases_train_with_nbd_clv(tmp_path, make_settings, caplog):
    settings = _train_on(tmp_path, make_settings, poisson_purchases(1200, seed=5))
    with caplog.at_level(logging.INFO):
        result = train(settings)
    assert result.promoted and 0.5 < result.metrics["valid.roc_auc"] <= 1
    warnings = [
        r for r in caplog.records if r.levelno >= logging.WARNING and "CLV" in r.getMessage()
    ]
    assert warnings == [], [r.getMessage() for r in warnings]
    chosen = [r.getMessage() for r in caplog.records if r.name == "training.clv_fit"]
    assert any(m.startswith("CLV fit (final model): nbd, penalizer 0") for m in chosen), chosen
    assert any("failed attempts (DEBUG lists them)" in m for m in chosen)

    client = mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    run = client.get_run(result.run_id)
    assert run.data.params["clv.model"] == "nbd"
    assert run.data.tags["clv.status"].startswith("fitted: nbd, penalizer 0")
    assert "clv_features.status" not in run.data.tags

    bundle = tracking.load_version(settings, result.version)
    assert bundle.clv.model_ == "nbd" and set(bundle.clv.params_) == {"r", "alpha", "p", "q", "v"}
    assert {P_ALIVE, EXPECTED_PURCHASES} <= set(bundle.churn.features_)

    scored = score(settings)
    snap = pd.read_parquet(scored.path)
    buyers = snap["expected_purchases"].notna()
    assert buyers.mean() > 0.9
    # no dropout: P(alive) would be 1 for every buyer, so it is null with the reason code;
    # CLV and value at risk from expected purchases
    assert snap.loc[buyers, "p_alive"].isna().all()
    assert (snap.loc[buyers, "p_alive_note"] == "no_dropout_model").all()
    assert (snap.loc[buyers, "clv"] > 0).all()
    served = load_snapshot(settings.scores_dir)  # what the server loads, verified
    row = served.scores[snap.loc[buyers, "customer_id"].iloc[0]]
    assert row["p_alive"] is None and row["p_alive_note"] == "no_dropout_model"
    assert row["clv"] > 0 and 0 <= row["churn_probability"] <= 1


@pytest.mark.slow  # fits the CLV ladder (make test, not test-fast)
def test_one_time_buyers_train_without_clv_features(tmp_path, make_settings, caplog):
    """Nobody bought twice: no purchase model fits, the churn model trains on the labels
    without BG/NBD features, with ONE warning."""
    tx = poisson_purchases(1200, seed=5).drop_duplicates("customer_id")
    rng = np.random.default_rng(5)
    late = tx["timestamp"] > START + pd.Timedelta(days=DAYS / 2)
    labels = pd.DataFrame(
        {
            "customer_id": tx["customer_id"],
            "as_of": (START + pd.Timedelta(days=DAYS)).strftime("%Y-%m-%d"),
            "churned": (rng.random(len(tx)) < np.where(late, 0.2, 0.7)).astype(int),
        }
    )
    settings = _train_on(tmp_path, make_settings, tx, labels)
    with caplog.at_level(logging.INFO):
        result = train(settings)
    assert result.promoted and 0.5 < result.metrics["valid.roc_auc"] <= 1
    warnings = [
        r for r in caplog.records if r.levelno >= logging.WARNING and "CLV" in r.getMessage()
    ]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].getMessage().startswith("CLV not fitted, so the churn model is trained")
    assert "\n" not in warnings[0].getMessage()
    chosen = [r.getMessage() for r in caplog.records if r.name == "training.clv_fit"]
    assert any(m.startswith("CLV fit (final model): not fitted") for m in chosen), chosen

    client = mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    run = client.get_run(result.run_id)
    assert run.data.params["clv.model"] == "none"
    assert run.data.tags["clv.status"].startswith("not fitted: no purchase model fitted")
    assert run.data.tags["clv_features.status"] == "dropped: no final CLV model"
    assert not any(k.startswith("clv_holdout.") for k in run.data.metrics)

    bundle = tracking.load_version(settings, result.version)
    assert bundle.clv is None
    assert not {P_ALIVE, EXPECTED_PURCHASES} & set(bundle.churn.features_)

    scored = score(settings)
    snap = pd.read_parquet(scored.path)
    assert snap["clv"].isna().all() and snap["p_alive"].isna().all()
    served = load_snapshot(settings.scores_dir)  # what the server loads, verified
    row = served.scores[snap["customer_id"].iloc[0]]
    assert row["clv"] is None and 0 <= row["churn_probability"] <= 1


@pytest.mark.slow  # fits every CLV model of the ladder (make test, not test-fast)
def test_other_models_are_ranked_by_held_out_likelihood():
    table = summary_counts(summary(poisson_purchases(1200, seed=2, dropout=0.4)))
    tried: list[str] = []
    pairs, note = _ranked_others(table, tried)
    fit_part, held = holdout_split(table)
    scores = {
        m: CLVModel(model=m, spend=False)
        .fit(fit_part, weight_column="weight")
        .score(held, weight_column="weight")
        for m in OTHER_MODELS
    }
    assert tried == [] and pairs[0] == (max(scores, key=scores.__getitem__), 0.0)
    assert {m for m, _ in pairs} == set(OTHER_MODELS)
    assert note.startswith("held-out log-likelihood per customer: ")


@pytest.mark.slow  # trains end to end (make test, not test-fast)
def test_a_chosen_model_predicts_every_customer_of_its_cutoff():
    # Seed 5 once chose a Pareto/NBD fit at one cutoff whose P(alive) was not finite for
    # customers with no repeat purchase, which stopped training at the first prediction:
    # a candidate now has to predict such histories before it is chosen.
    tables = Tables(transactions=poisson_purchases(1200, seed=5))
    plan = plan_cutoffs(tables, horizon_days=90, n_training=4, spacing_days=30)
    for cutoff in (*plan.training, plan.validation):
        frame = build_features(tables, as_of=cutoff)
        fit = fit_clv_with_fallback(frame.dropna(subset=["T_days"]), as_of=cutoff)
        assert fit.model is not None, cutoff
        out = fit.model.predict(frame, horizon_days=90)
        assert np.isfinite(out[["p_alive", "expected_purchases"]].to_numpy()).all(), cutoff
