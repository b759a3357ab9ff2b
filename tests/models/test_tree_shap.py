"""SHAP values from per-leaf tables, once per distinct decision pattern (models/tree_shap.py),
against LightGBM's own ``pred_contrib``, on a real booster with missing values, zeros and a
categorical."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from models import tree_shap


@pytest.mark.parametrize("zero_as_missing", [False, True])
def test_the_values_are_lightgbms(zero_as_missing: bool) -> None:
    rng = np.random.default_rng(5)
    n = 4000
    x = np.column_stack(
        [
            rng.gamma(2.0, 10.0, n).round(),  # ties: rows share decision patterns
            rng.normal(0, 1, n),
            rng.integers(0, 6, n).astype(float),  # categorical codes
            rng.choice([0.0, 1.0, 2.0], n),
        ]
    )
    x[rng.random(n) < 0.15, 0] = np.nan
    x[rng.random(n) < 0.1, 2] = np.nan
    x[rng.random(n) < 0.2, 1] = 0.0
    x[rng.random(n) < 0.05, 2] = 9.0  # a code no split names
    logit = 0.05 * np.nan_to_num(x[:, 0], nan=40) - 1 + x[:, 1] + (x[:, 2] == 3) - x[:, 3] / 2
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    params = {"objective": "binary", "num_leaves": 15, "verbose": -1, "seed": 1}
    params["zero_as_missing"] = zero_as_missing
    booster = lgb.train(params, lgb.Dataset(x, y, categorical_feature=[2]), num_boost_round=40)
    trees = [tree_shap._tree(t) for t in booster.dump_model()["tree_info"]]
    leaves = booster.predict(x, pred_leaf=True)
    states = tree_shap._States(trees, x)
    # every tree goes through the tables (none computed by LightGBM)
    for t, tree in enumerate(trees):
        found = tree_shap.tree_values(tree, states, leaves[:, t])
        assert found is not None and found[0] is not None
        assert len(found[1]) < n  # rows share patterns
    fast = tree_shap.pred_contrib(booster, x, 40)
    full = booster.predict(x, num_iteration=40, pred_contrib=True)
    assert fast.shape == full.shape
    np.testing.assert_allclose(fast, full, rtol=0, atol=1e-12)
    # fewer rows than MIN_ROWS: LightGBM's call as it is
    assert np.array_equal(tree_shap.pred_contrib(booster, x[:50], 40), full[:50])


def _booster(n: int = 4000) -> tuple[lgb.Booster, np.ndarray]:
    rng = np.random.default_rng(11)
    x = np.column_stack(
        [rng.normal(0, 1, n).round(1), rng.gamma(2.0, 3.0, n).round(), rng.random(n)]
    )
    x[rng.random(n) < 0.1, 1] = np.nan
    y = (rng.random(n) < 1 / (1 + np.exp(-(x[:, 0] + np.nan_to_num(x[:, 1]) / 5 - 1)))).astype(
        float
    )
    params = {"objective": "binary", "num_leaves": 15, "verbose": -1, "seed": 3}
    return lgb.train(params, lgb.Dataset(x, y), num_boost_round=30), x


def test_the_forked_share_adds_up_as_this_process_would(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child's share of the trees gives the very values this process gives for it (a
    system without fork computes both shares here), and a child that meets a tree only
    LightGBM can compute leaves its share to this process: LightGBM's values either way."""
    booster, x = _booster()
    forked = tree_shap.pred_contrib(booster, x, 30)
    full = booster.predict(x, num_iteration=30, pred_contrib=True)
    np.testing.assert_allclose(forked, full, rtol=0, atol=1e-12)

    def no_fork() -> int:
        raise OSError("no fork here")

    with monkeypatch.context() as m:
        m.setattr(tree_shap.os, "fork", no_fork)
        assert np.array_equal(tree_shap.pred_contrib(booster, x, 30), forked)
    # every path too long for the tables: the child stops at its first tree, the parent
    # computes the child's share (LightGBM's values per pattern)
    monkeypatch.setattr(tree_shap, "MAX_TABLE_FEATURES", 0)
    np.testing.assert_allclose(tree_shap.pred_contrib(booster, x, 30), full, rtol=0, atol=1e-12)
