"""Churn model: learns, round-trips through model text, encodes categories safely."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from models.churn import ChurnModel


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n = 3000
    effort = rng.uniform(1, 7, n)
    plan = rng.choice(["basic", "plus", "premium"], n)
    logit = 0.8 * (effort - 4) + np.where(plan == "premium", -1.5, 0.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    X = pd.DataFrame(
        {
            "effort_score_mean_90d": effort,
            "noise": rng.normal(size=n),
            "plan": pd.Categorical(plan),
        }
    )
    return X, pd.Series(y)


@pytest.fixture(scope="module")
def model(data):
    X, y = data
    return ChurnModel(num_boost_round=200).fit(
        X[:2000], y[:2000], X_valid=X[2000:], y_valid=y[2000:]
    )


def test_learns_the_signal(model, data):
    X, y = data
    assert roc_auc_score(y[2000:], model.predict_proba(X[2000:])) > 0.75


def test_text_round_trip_is_exact(model, data):
    X, _ = data
    again = ChurnModel.from_text(model.model_text(), model.to_dict())
    np.testing.assert_array_equal(model.predict_proba(X), again.predict_proba(X))


def test_training_is_deterministic(data):
    X, y = data
    a = ChurnModel(num_boost_round=50).fit(X, y).model_text()
    b = ChurnModel(num_boost_round=50).fit(X, y).model_text()
    assert a == b


def test_unseen_category_and_missing_column_are_missing_values(model):
    X = pd.DataFrame({"effort_score_mean_90d": [6.0], "plan": ["platinum"]})
    m = model.encode(X)
    assert np.isnan(m[0, model.features_.index("plan")])
    assert np.isnan(m[0, model.features_.index("noise")])
    assert 0 <= model.predict_proba(X)[0] <= 1


def test_contributions_sum_to_the_logit(model, data):
    X, _ = data
    m = model.encode(X[:50])
    full = model.booster_.predict(m, num_iteration=model.best_iteration_, pred_contrib=True)
    raw = model.booster_.predict(m, num_iteration=model.best_iteration_, raw_score=True)
    np.testing.assert_allclose(full.sum(axis=1), raw, rtol=1e-6, atol=1e-9)
    assert model.contributions(m).shape == (50, 3)


def test_bgnbd_prior_is_the_starting_point_and_round_trips():
    rng = np.random.default_rng(4)
    n = 3000
    alive = rng.uniform(0.05, 1, n)
    expected = alive * rng.gamma(2, 1, n)
    p0 = 1 - alive + alive * np.exp(-expected / alive)
    y = pd.Series((rng.random(n) < p0).astype(int))
    X = pd.DataFrame(
        {"bgnbd_p_alive": alive, "bgnbd_expected_purchases": expected, "noise": rng.normal(size=n)}
    )
    model = ChurnModel(num_boost_round=30).fit(
        X[:2000], y[:2000], X_valid=X[2000:], y_valid=y[2000:]
    )
    assert model.prior_ is not None and model.prior_["kind"] == "bgnbd"
    # Trees correct the prior; with a prior that is the truth they add little.
    assert roc_auc_score(y[2000:], model.predict_raw(X[2000:])) > 0.95 * roc_auc_score(
        y[2000:], p0[2000:]
    )
    again = ChurnModel.from_text(model.model_text(), model.to_dict())
    np.testing.assert_allclose(again.predict_raw(X), model.predict_raw(X))
    # Contributions (prior counted on expected purchases) still sum to the model's log-odds.
    m = model.encode(X[:20])
    expected_value = model.booster_.predict(
        m, num_iteration=model.best_iteration_, pred_contrib=True
    )[:, -1]
    logit = np.log(model.predict_raw(m) / (1 - model.predict_raw(m)))
    total = model.contributions(m).sum(axis=1) + expected_value + model.prior_["fallback_logit"]
    np.testing.assert_allclose(total, logit, rtol=1e-6)
    unprimed = ChurnModel(num_boost_round=30, prior="none").fit(X, y)
    assert unprimed.prior_ is None
