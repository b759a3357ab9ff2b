"""Churn model: learns, round-trips through model text, encodes categories safely."""

import lightgbm as lgb
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


def test_encoding_converts_each_dtype_like_to_numeric(model):
    # Numeric and boolean columns are converted as one block, others one by one: every
    # dtype a feature frame can carry must come out as ``pd.to_numeric`` would give it.
    model = ChurnModel.from_text(model.model_text(), model.to_dict())
    model.features_ = ["f", "i", "b", "nb", "text", "plan", "absent"]
    X = pd.DataFrame(
        {
            "f": [1.5, np.nan, 3.0],
            "i": pd.array([1, None, 3], dtype="Int64"),
            "b": [True, False, True],
            "nb": pd.array([True, None, False], dtype="boolean"),
            "text": ["2.5", "not a number", None],
            "plan": pd.Categorical(["plus", "platinum", None]),
        }
    )

    m = model.encode(X)

    plus = float(model.categories_["plan"].index("plus"))
    expected = [
        [1.5, 1, 1, 1, 2.5, plus, np.nan],
        [np.nan, np.nan, 0, np.nan, np.nan, np.nan, np.nan],
        [3.0, 3, 1, 0, np.nan, np.nan, np.nan],
    ]
    np.testing.assert_array_equal(m, np.array(expected, dtype=float))


def test_contributions_sum_to_the_logit(model, data):
    X, _ = data
    m = model.encode(X[:50])
    full = model.booster_.predict(m, num_iteration=model.best_iteration_, pred_contrib=True)
    raw = model.booster_.predict(m, num_iteration=model.best_iteration_, raw_score=True)
    np.testing.assert_allclose(full.sum(axis=1), raw, rtol=1e-6, atol=1e-9)
    assert model.contributions(m).shape == (50, 3)


def _bgnbd_data(seed: int, n: int = 3000, signal: float = 0.0) -> tuple[pd.DataFrame, pd.Series]:
    """BG/NBD-like outputs whose Poisson P(no purchase) is the churn probability, plus a
    ``signal`` column that moves the log-odds by ``signal`` per unit (0: pure noise)."""
    rng = np.random.default_rng(seed)
    alive = rng.uniform(0.05, 1, n)
    expected = alive * rng.gamma(2, 1, n)
    p0 = 1 - alive + alive * np.exp(-expected / alive)
    extra = rng.normal(size=n)
    logit = np.log(p0 / (1 - p0)) + signal * extra
    y = pd.Series((rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int))
    X = pd.DataFrame({"bgnbd_p_alive": alive, "bgnbd_expected_purchases": expected, "extra": extra})
    return X, y


def _assert_contributions_sum_to_logit(model: ChurnModel, X: pd.DataFrame) -> None:
    m = model.encode(X)
    m[:3, model.features_.index("bgnbd_p_alive")] = np.nan  # rows without BG/NBD features
    p = model.predict_raw(m)
    total = (
        model.contributions(m).sum(axis=1)
        + model.trees_expected_value()
        + model.prior_expected_logit()
    )
    np.testing.assert_allclose(total, np.log(p / (1 - p)), rtol=1e-6, atol=1e-9)


def test_bgnbd_prior_is_fitted_and_trees_that_do_not_help_are_dropped():
    X, y = _bgnbd_data(4)
    model = ChurnModel(num_boost_round=30).fit(
        X[:2000], y[:2000], X_valid=X[2000:], y_valid=y[2000:]
    )
    assert model.prior_ is not None and model.prior_["kind"] == "bgnbd_logistic"
    # More expected purchases: less churn.
    assert model.prior_["coef"][0] < 0
    # The label is the prior plus noise: the trees do not beat it on validation, so the model
    # is the prior alone, and predicts from it.
    assert model.tree_gain_["z"] <= model.min_gain_z and model.best_iteration_ == 0
    prior = 1 / (1 + np.exp(-model._prior_margin(model.encode(X))))
    np.testing.assert_allclose(model.predict_raw(X), prior)
    again = ChurnModel.from_text(model.model_text(), model.to_dict())
    np.testing.assert_allclose(again.predict_raw(X), model.predict_raw(X))
    _assert_contributions_sum_to_logit(model, X[:20])
    unprimed = ChurnModel(num_boost_round=30, prior="none").fit(X, y)
    assert unprimed.prior_ is None


def test_trees_are_kept_when_they_beat_the_prior():
    X, y = _bgnbd_data(5, n=6000, signal=1.0)
    model = ChurnModel(num_boost_round=200).fit(
        X[:4000], y[:4000], X_valid=X[4000:], y_valid=y[4000:]
    )
    assert model.tree_gain_["z"] > model.min_gain_z and model.best_iteration_ > 0
    prior = 1 / (1 + np.exp(-model._prior_margin(model.encode(X[4000:]))))
    assert roc_auc_score(y[4000:], model.predict_raw(X[4000:])) > roc_auc_score(y[4000:], prior)
    again = ChurnModel.from_text(model.model_text(), model.to_dict())
    np.testing.assert_allclose(again.predict_raw(X), model.predict_raw(X))
    _assert_contributions_sum_to_logit(model, X[:20])


def test_model_saved_with_the_poisson_prior_still_predicts():
    X, y = _bgnbd_data(6)
    model = ChurnModel(num_boost_round=20).fit(X, y)
    meta = {**model.to_dict(), "prior": {"kind": "bgnbd", "fallback_logit": 1.0}}
    old = ChurnModel.from_text(model.model_text(), meta)
    alive, expected = X["bgnbd_p_alive"], X["bgnbd_expected_purchases"]
    p0 = 1 - alive + alive * np.exp(-expected / alive)
    trees = old.booster_.predict(old.encode(X), num_iteration=old.best_iteration_, raw_score=True)
    np.testing.assert_allclose(
        old.predict_raw(X), 1 / (1 + np.exp(-(trees + np.log(p0 / (1 - p0))))), rtol=1e-9
    )
    _assert_contributions_sum_to_logit(old, X[:20])


def test_a_booster_trained_elsewhere_is_adopted_as_fit_would_keep_it():
    """A booster trained outside :meth:`ChurnModel.fit` (as lightgbm.dask does), from the
    model's own encoding and prior, ends with the trees and predictions ``fit`` gives."""
    X, y = _bgnbd_data(5, n=6000, signal=1.0)
    train, valid = slice(0, 4000), slice(4000, None)
    fitted = ChurnModel(num_boost_round=400).fit(
        X[train], y[train], X_valid=X[valid], y_valid=y[valid]
    )
    other = ChurnModel(num_boost_round=400)
    params = other.start_fit(X.dtypes, positive_share=float(y[train].mean()))
    m = other.encode(X[train])
    other.fit_prior(m[:, 0], m[:, 1], y[train].to_numpy(dtype=float))
    booster = lgb.train(
        params,
        lgb.Dataset(
            m,
            label=y[train].to_numpy(dtype=float),
            init_score=other.prior_margin(m),
            feature_name=other.features_,
        ),
        num_boost_round=fitted.booster_.current_iteration(),
    )

    other.adopt_booster(booster, X[valid], y[valid])

    assert other.best_iteration_ == fitted.best_iteration_ > 0
    np.testing.assert_allclose(other.predict_raw(X), fitted.predict_raw(X))
    np.testing.assert_allclose(other.prior_margin(X), fitted.prior_margin(other.encode(X)))


def test_category_features_match_posted_numbers_by_value():
    """A text column with non-numbers trains as categories ("1", "2", "x"); a value that
    arrives as a number (a JSON 2, or 2.0 in a float column) finds its category."""
    train = pd.DataFrame(
        {
            "code": pd.Categorical(["1", "2", "x"]),
            "tenure_months": [1.0, 2.0, 3.0],
        }
    )
    model = ChurnModel()
    model.start_fit(train.dtypes, positive_share=0.5)
    assert model.categories_ == {"code": ["1", "2", "x"]}
    as_text = model.encode(
        pd.DataFrame({"code": ["2", "1", "y"], "tenure_months": ["27", "", "3"]})
    )
    as_numbers = model.encode(
        pd.DataFrame({"code": [2.0, 1.0, np.nan], "tenure_months": [27, np.nan, 3]})
    )
    np.testing.assert_array_equal(as_text, [[1, 27], [0, np.nan], [np.nan, 3]])
    np.testing.assert_array_equal(as_numbers, [[1, 27], [0, np.nan], [np.nan, 3]])
    ints = model.encode(pd.DataFrame({"code": [2, 5], "tenure_months": [1, 2]}))
    np.testing.assert_array_equal(ints[:, 0], [1, np.nan])  # 5: no such category
