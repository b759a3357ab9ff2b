"""A learned CLV for ranking: LightGBM predicts each customer's purchases and spend over the
next window from the point-in-time transaction features, the BG/NBD outputs among them.

Why: the BTYD models forecast the aggregate well but rank customers less well than a model
fitted to the outcome (Sun et al. 2021; Valendin et al. 2022; Wang et al. 2019, ZILN). The
learned model is fitted on an *earlier* calibration/holdout split -- features at ``cutoff -
window``, outcomes in ``[cutoff - window, cutoff)`` -- and predicts from the features at
``cutoff``, so it never sees an outcome after the cutoff it predicts from
(:func:`models.clv_evaluation.evaluate_candidates` compares it with the BTYD models there).

Spend is two-part (a zero-inflated outcome: most customers buy nothing in the window):
``P(any purchase)`` (binary) times ``E[spend | a purchase]`` (gamma); purchases are Poisson.
The window is the horizon when the history allows, else shorter (half the history before the
cutoff); predictions are then scaled to the horizon (by the caller,
:func:`models.clv_evaluation.evaluate_candidates`) with the BTYD model's own ratio of expected
spend (purchases) over the horizon to that over the window, which keeps its time profile
(dropout) instead of a straight line. Feature set and number of trees are chosen by k-fold
cross-validation on the earlier split's customers (mean of Spearman and normalised Gini).
Boosters persist as LightGBM model text; nothing is pickled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.clv import CLVModel

#: BTYD outputs added to the transaction features (over the learning window).
BTYD_FEATURES = ("btyd_p_alive", "btyd_purchases", "btyd_spend")
#: Derived ratios the trees cannot build from splits: the naive rate and its spend.
RATE_FEATURES = ("purchase_rate", "naive_spend")
#: The RFM core; the other candidate set adds every numeric transaction feature.
CORE_FEATURES = (
    "frequency",
    "recency_days",
    "T_days",
    "days_since_last_purchase",
    "monetary_repeat_mean",
    *RATE_FEATURES,
    *BTYD_FEATURES,
)
FEATURE_SETS = ("core", "all")
N_TREES = (50, 150)
N_FOLDS = 3
PARAMS: dict[str, Any] = {
    "learning_rate": 0.03,
    "num_leaves": 7,
    "min_data_in_leaf": 80,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "verbose": -1,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 2,
    "seed": 7,
}


def learning_window_days(first_day: pd.Timestamp, cutoff: pd.Timestamp, horizon_days: int) -> int:
    """The outcome window of the earlier split: the horizon, or half the history before
    ``cutoff`` when that is shorter (the earlier split needs history before it too)."""
    return int(max(1, min(horizon_days, (cutoff - first_day).days // 2)))


def learned_features(summary: pd.DataFrame, btyd: CLVModel, *, window_days: float) -> pd.DataFrame:
    """The model's inputs: ``summary``'s numeric transaction features, the naive rate and
    spend, and the BTYD model's P(alive), expected purchases and spend over ``window_days``."""
    x = summary.select_dtypes("number").astype("float64")
    t = x["T_days"].clip(lower=1.0)
    x["purchase_rate"] = x["frequency"].fillna(0) / t
    x["naive_spend"] = x["purchase_rate"] * x["monetary_repeat_mean"].fillna(0).clip(lower=0)
    pred = btyd.predict(summary, horizon_days=window_days)
    x["btyd_p_alive"] = pred["p_alive"].to_numpy()
    x["btyd_purchases"] = pred["expected_purchases"].to_numpy()
    x["btyd_spend"] = (pred["expected_purchases"] * pred["expected_order_value"]).to_numpy()
    return x


def _columns(x: pd.DataFrame, feature_set: str) -> list[str]:
    return list(CORE_FEATURES) if feature_set == "core" else list(x.columns)


def _train(x: pd.DataFrame, y: np.ndarray, objective: str, n_trees: int) -> lgb.Booster:
    data = lgb.Dataset(x.to_numpy(dtype=float), y, feature_name=list(x.columns), free_raw_data=True)
    return lgb.train({**PARAMS, "objective": objective}, data, num_boost_round=n_trees)


@dataclass
class LearnedCLV:
    """Two-part spend and Poisson purchases over ``window_days``, fitted by :meth:`fit`."""

    window_days: float = 0.0
    feature_set: str = "core"
    n_trees: int = 50
    boosters_: dict[str, lgb.Booster] = field(default_factory=dict)
    cv_: dict[str, float] = field(default_factory=dict)

    def fit(
        self,
        x: pd.DataFrame,
        purchases: np.ndarray,
        spend: np.ndarray,
        *,
        window_days: float,
        score: Callable[[np.ndarray, np.ndarray], float],
    ) -> LearnedCLV:
        """Fit on features at the earlier cutoff and the outcomes in the window after it.

        Feature set (:data:`FEATURE_SETS`) and trees (:data:`N_TREES`) are chosen first by
        :data:`N_FOLDS`-fold cross-validation over these customers: ``score(predicted,
        actual)`` of the out-of-fold spend, higher is better (the evaluation's ranking
        metrics); the scores are kept in ``cv_``."""
        self.window_days = float(window_days)
        purchases, spend = np.asarray(purchases, float), np.asarray(spend, float)
        folds = np.arange(len(x)) % N_FOLDS
        folds = np.random.default_rng(PARAMS["seed"]).permutation(folds)
        for feature_set in FEATURE_SETS:
            for n_trees in N_TREES:
                cols = _columns(x, feature_set)
                pred = np.zeros(len(x))
                for k in range(N_FOLDS):
                    inner = self._fit_parts(
                        x.loc[folds != k, cols],
                        purchases[folds != k],
                        spend[folds != k],
                        n_trees,
                        purchases_model=False,
                    )
                    pred[folds == k] = _spend(inner, x.loc[folds == k, cols])
                self.cv_[f"{feature_set}/{n_trees}"] = float(score(pred, spend))
        best = max(self.cv_, key=self.cv_.__getitem__)
        self.feature_set, trees = best.split("/")
        self.n_trees = int(trees)
        cols = _columns(x, self.feature_set)
        self.boosters_ = self._fit_parts(x[cols], purchases, spend, self.n_trees)
        return self

    @staticmethod
    def _fit_parts(
        x: pd.DataFrame,
        purchases: np.ndarray,
        spend: np.ndarray,
        n_trees: int,
        *,
        purchases_model: bool = True,
    ) -> dict[str, lgb.Booster]:
        buy = (spend > 0).astype(float)
        parts = {
            "buy": _train(x, buy, "binary", n_trees),
            "spend_if_buy": _train(x.loc[buy > 0], spend[buy > 0], "gamma", n_trees),
        }
        if purchases_model:
            parts["purchases"] = _train(x, purchases, "poisson", n_trees)
        return parts

    def predict_window(self, x: pd.DataFrame) -> pd.DataFrame:
        """Expected purchases and spend over :attr:`window_days`, indexed like ``x``."""
        cols = self.boosters_["buy"].feature_name()
        matrix = x[cols]
        return pd.DataFrame(
            {
                "purchases": self.boosters_["purchases"].predict(matrix.to_numpy(dtype=float)),
                "spend": _spend(self.boosters_, matrix),
            },
            index=x.index,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: settings, the cross-validation scores and each booster's model text."""
        return {
            "kind": "learned",
            "window_days": self.window_days,
            "feature_set": self.feature_set,
            "n_trees": self.n_trees,
            "cv": self.cv_,
            "boosters": {k: b.model_to_string() for k, b in self.boosters_.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LearnedCLV:
        """Rebuild from :meth:`to_dict` output (LightGBM text; nothing unpickled)."""
        return cls(
            window_days=float(data["window_days"]),
            feature_set=str(data["feature_set"]),
            n_trees=int(data["n_trees"]),
            boosters_={k: lgb.Booster(model_str=v) for k, v in data["boosters"].items()},
            cv_={k: float(v) for k, v in data.get("cv", {}).items()},
        )


def _spend(parts: dict[str, lgb.Booster], x: pd.DataFrame) -> np.ndarray:
    """``P(any purchase) * E[spend | a purchase]``."""
    m = x.to_numpy(dtype=float)
    buy: np.ndarray = np.asarray(parts["buy"].predict(m), dtype=float)
    amount: np.ndarray = np.asarray(parts["spend_if_buy"].predict(m), dtype=float)
    out: np.ndarray = np.multiply(buy, amount)
    return out
