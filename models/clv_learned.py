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
cutoff); predictions are then carried to any horizon by :func:`to_horizon`: each customer's
learned/BTYD ratio over the window times the BTYD model's own output over the horizon, which
keeps the BTYD time profile (dropout, discounting, intervals) and takes the learned model's
level and ranking. The holdout evaluation (:func:`models.clv_evaluation.evaluate_candidates`)
and scoring (:func:`learned_scores`, used by :mod:`models.scoring`) share it, so what was
evaluated is what is served. Feature set and number of trees are chosen by k-fold
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

from models.clv import SUMMARY_COLUMNS, CLVModel

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
#: The boosters: P(any purchase), spend given a purchase, purchases.
PARTS = ("buy", "purchases", "spend_if_buy")
#: ``kind`` of the JSON meta, and the ``clv_model`` a bundle serving it reports.
KIND = "learned"
#: Below this BTYD expectation over the window a customer's learned/BTYD ratio is not formed
#: (0/0 for customers the BTYD model calls gone); :func:`to_horizon` then scales linearly.
MIN_BTYD_EXPECTATION = 1e-12
N_TREES = (50, 150)
N_FOLDS = 3
#: Customers the cross-validation draws its folds from, at most (a seeded sample above it).
CV_MAX_ROWS = 50_000
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
    #: Factors on every purchases / spend output: 1, or the BTYD total over the learned total
    #: on the customers at the end of the training data (set by training when the BTYD
    #: total was closer on the holdout: docs/clv.md, "Which CLV model serves").
    scale_purchases: float = 1.0
    scale_spend: float = 1.0

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
        rng = np.random.default_rng(PARAMS["seed"])
        # the choice of feature set and trees needs a ranking, not every customer: above
        # CV_MAX_ROWS the folds are drawn from a seeded sample (the final fit uses all rows)
        chosen = np.arange(len(x))
        if len(x) > CV_MAX_ROWS:
            chosen = np.sort(rng.choice(len(x), CV_MAX_ROWS, replace=False))
        xs, ps, ss = x.iloc[chosen], purchases[chosen], spend[chosen]
        folds = rng.permutation(np.arange(len(xs)) % N_FOLDS)
        for feature_set in FEATURE_SETS:
            cols = _columns(xs, feature_set)
            preds = {n: np.zeros(len(xs)) for n in N_TREES}
            for k in range(N_FOLDS):
                # one fit of the most trees per fold: boosting is sequential, so its first
                # n trees are the n-tree model, read with num_iteration=n
                inner = self._fit_parts(
                    xs.loc[folds != k, cols],
                    ps[folds != k],
                    ss[folds != k],
                    max(N_TREES),
                    purchases_model=False,
                )
                for n_trees in N_TREES:
                    preds[n_trees][folds == k] = _spend(
                        inner, xs.loc[folds == k, cols], num_iteration=n_trees
                    )
            for n_trees in N_TREES:
                self.cv_[f"{feature_set}/{n_trees}"] = float(score(preds[n_trees], ss))
        best = max(self.cv_, key=self.cv_.__getitem__)
        self.feature_set, trees = best.split("/")
        self.n_trees = int(trees)
        cols = _columns(x, self.feature_set)
        self.boosters_ = self._fit_parts(x[cols], purchases, spend, self.n_trees)
        return self

    def refit(
        self, x: pd.DataFrame, purchases: np.ndarray, spend: np.ndarray, *, window_days: float
    ) -> LearnedCLV:
        """A new model with this one's feature set and trees (no cross-validation), fitted on
        another split: training refits the evaluated model on the latest window to serve it."""
        cols = _columns(x, self.feature_set)
        boosters = self._fit_parts(
            x[cols], np.asarray(purchases, float), np.asarray(spend, float), self.n_trees
        )
        return LearnedCLV(
            window_days=float(window_days),
            feature_set=self.feature_set,
            n_trees=self.n_trees,
            boosters_=boosters,
            cv_=dict(self.cv_),
        )

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

    def meta(self) -> dict[str, Any]:
        """JSON-ready settings without the boosters: window, feature set, trees, the
        cross-validation scores, the total factors, the parts and their input features."""
        return {
            "kind": KIND,
            "window_days": self.window_days,
            "feature_set": self.feature_set,
            "n_trees": self.n_trees,
            "cv": self.cv_,
            "scale_purchases": self.scale_purchases,
            "scale_spend": self.scale_spend,
            "parts": sorted(self.boosters_),
            "features": self.feature_names(),
        }

    def feature_names(self) -> list[str]:
        """The boosters' input columns (:func:`learned_features` names)."""
        return list(self.boosters_["buy"].feature_name()) if self.boosters_ else []

    def booster_texts(self) -> dict[str, str]:
        """Each part's booster in LightGBM's model text format, by part name."""
        return {k: b.model_to_string() for k, b in sorted(self.boosters_.items())}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: :meth:`meta` and each booster's model text (one MLflow artifact)."""
        return {**self.meta(), "boosters": self.booster_texts()}

    @classmethod
    def from_parts(cls, meta: dict[str, Any], texts: dict[str, str]) -> LearnedCLV:
        """Rebuild from :meth:`meta` and :meth:`booster_texts` (LightGBM text; nothing
        unpickled). Raises ``ValueError`` when a part of ``meta["parts"]`` has no text."""
        parts = [str(p) for p in meta.get("parts", sorted(texts))]
        missing = sorted(set(parts) - set(texts))
        if missing or set(parts) != set(PARTS):
            raise ValueError(f"learned CLV: parts {parts} given, {list(PARTS)} needed")
        return cls(
            window_days=float(meta["window_days"]),
            feature_set=str(meta["feature_set"]),
            n_trees=int(meta["n_trees"]),
            boosters_={k: lgb.Booster(model_str=texts[k]) for k in parts},
            cv_={k: float(v) for k, v in meta.get("cv", {}).items()},
            scale_purchases=float(meta.get("scale_purchases", 1.0)),
            scale_spend=float(meta.get("scale_spend", 1.0)),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LearnedCLV:
        """Rebuild from :meth:`to_dict` output."""
        return cls.from_parts(data, data["boosters"])


def _spend(
    parts: dict[str, lgb.Booster], x: pd.DataFrame, num_iteration: int | None = None
) -> np.ndarray:
    """``P(any purchase) * E[spend | a purchase]`` (from the first ``num_iteration`` trees of
    each part; all of them by default)."""
    m = x.to_numpy(dtype=float)
    buy: np.ndarray = np.asarray(parts["buy"].predict(m, num_iteration=num_iteration), dtype=float)
    amount: np.ndarray = np.asarray(
        parts["spend_if_buy"].predict(m, num_iteration=num_iteration), dtype=float
    )
    out: np.ndarray = np.multiply(buy, amount)
    return out


def to_horizon(
    window: pd.DataFrame,
    btyd_window: pd.DataFrame,
    *,
    window_days: float,
    horizon_days: float,
) -> pd.DataFrame:
    """Each customer's learned/BTYD ratio over the learning window: ``purchases`` (expected
    purchases) and ``spend`` (expected spend), indexed like ``window``.

    The learned model's outputs over a horizon are the BTYD model's outputs over that horizon
    times these ratios: the BTYD model gives the time profile (its ratio of horizon to window
    is the customer's own, bent by dropout), the learned model the level. Where the BTYD
    expectation over the window is below :data:`MIN_BTYD_EXPECTATION` the ratio is formed
    with a straight-line BTYD profile instead (``horizon_days / window_days``), returned as
    NaN in ``purchases``/``spend`` and the straight-line value in ``*_linear``.

    Parameters
    ----------
    window : :meth:`LearnedCLV.predict_window` output (``purchases``, ``spend`` over
        ``window_days``).
    btyd_window : :meth:`models.clv.CLVModel.predict` over ``window_days`` for the same rows.
    """
    bp = btyd_window["expected_purchases"].to_numpy(dtype=float)
    bs = bp * btyd_window["expected_order_value"].to_numpy(dtype=float)
    lp, ls = window["purchases"].to_numpy(dtype=float), window["spend"].to_numpy(dtype=float)
    ok_p, ok_s = bp > MIN_BTYD_EXPECTATION, bs > MIN_BTYD_EXPECTATION
    line = horizon_days / max(window_days, 1.0)
    return pd.DataFrame(
        {
            "purchases": np.divide(lp, bp, out=np.full(len(lp), np.nan), where=ok_p),
            "spend": np.divide(ls, bs, out=np.full(len(ls), np.nan), where=ok_s),
            "purchases_linear": lp * line,
            "spend_linear": ls * line,
        },
        index=window.index,
    )


def _inputs(summary: pd.DataFrame, learned: LearnedCLV) -> pd.DataFrame:
    """The columns of ``summary`` the learned features are built from (a scoring frame holds
    many more; only these are converted)."""
    wanted = {*learned.feature_names(), *SUMMARY_COLUMNS}
    return summary[[c for c in summary.columns if c in wanted]]


def learned_scores(
    learned: LearnedCLV,
    btyd: CLVModel,
    summary: pd.DataFrame,
    predicted: pd.DataFrame,
    value: pd.DataFrame,
    *,
    horizon_days: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The BTYD scoring outputs with the learned model's per-customer level: the one
    implementation behind batch scoring, the Dask engine and ``/v1/predict``.

    ``predicted`` (:meth:`CLVModel.predict` over ``horizon_days``) and ``value``
    (:meth:`CLVModel.predict_value`) come back with ``expected_purchases`` times the
    purchases ratio of :func:`to_horizon`, and ``clv``, ``clv_low``, ``clv_high`` and
    ``residual_clv`` times the spend ratio, each times the model's total factor
    (``scale_purchases``, ``scale_spend``). So the interval is the BTYD interval scaled by the
    customer's served/BTYD ``clv`` ratio (same relative width; NaN where the BTYD ``clv`` is
    0), and ``p_alive``, its note and
    ``expected_order_value`` (Gamma-Gamma) stay the BTYD model's.
    """
    w = learned.window_days
    window = learned.predict_window(
        learned_features(_inputs(summary, learned), btyd, window_days=w)
    )
    btyd_window = btyd.predict(summary, horizon_days=w)
    ratio = to_horizon(window, btyd_window, window_days=w, horizon_days=horizon_days)
    rp, rs = ratio["purchases"].to_numpy(), ratio["spend"].to_numpy()
    out = predicted.copy()
    purchases = out["expected_purchases"].to_numpy(dtype=float) * rp
    out["expected_purchases"] = learned.scale_purchases * np.where(
        np.isfinite(rp), purchases, ratio["purchases_linear"].to_numpy()
    )
    clv = out["clv"].to_numpy(dtype=float)
    # where the BTYD spend is ~0 its discount factor is unknown: the undiscounted line
    ours = learned.scale_spend * np.where(
        np.isfinite(rs), clv * rs, ratio["spend_linear"].to_numpy()
    )
    out["clv"] = ours
    # the customer's served/BTYD ratio of clv (so the fallback rows keep an interval too)
    factor = np.divide(ours, clv, out=np.full(len(clv), np.nan), where=clv > 0)
    scaled = value.copy()
    for col in ("clv_low", "clv_high"):
        if col in scaled.columns:
            scaled[col] = scaled[col].to_numpy(dtype=float) * factor
    if "residual_clv" in scaled.columns:  # no horizon: the ratio alone (NaN on fallback rows)
        scaled["residual_clv"] = learned.scale_spend * scaled["residual_clv"].to_numpy() * rs
    return out, scaled
