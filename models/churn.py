"""Churn classifier: a LightGBM booster over the feature frame, persisted as model text + JSON.

Probabilities are calibrated on held-out customers (:mod:`models.calibration`) after the fit;
reasons stay in the booster's log-odds (SHAP values). The frame is encoded to a float matrix with a fixed column order; categorical attributes
become their code in the category list stored at fit time (an unseen category is missing),
and LightGBM splits on them natively. The same encoding runs in training, batch scoring and
the server, so a single customer is scored without pandas overhead on the hot path.
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.model_outputs import EXPECTED_PURCHASES, P_ALIVE
from models.calibration import Calibrator, choose_calibrator

#: Below this share of the minority class, classes are reweighted (calibration undoes the
#: shift in probabilities afterwards).
IMBALANCE_SHARE = 0.2

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.9,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 2,
    "seed": 7,
}


def _logit(p: float | np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    return np.log(p / (1 - p))


class ChurnModel:
    """LightGBM churn classifier (scikit-learn style).

    Parameters
    ----------
    params : LightGBM parameters, merged over :data:`DEFAULT_PARAMS`.
    num_boost_round : maximum boosting rounds.
    early_stopping_rounds : rounds without validation improvement before stopping.
    balance : ``auto`` reweights the positive class when either class is rarer than
        :data:`IMBALANCE_SHARE`; ``none`` never does.
    prior : ``bgnbd`` boosts from the BG/NBD probability of no purchase in the horizon (as
        LightGBM ``init_score``) when the frame has the BG/NBD features, so trees learn
        corrections to the purchase model rather than relearning it; ``none`` boosts from the
        base rate. On small data (CDNOW, 2,357 customers) this keeps the model from falling
        below its own BG/NBD input.
    """

    def __init__(
        self,
        *,
        params: dict[str, Any] | None = None,
        num_boost_round: int = 1000,
        early_stopping_rounds: int = 50,
        balance: str = "auto",
        prior: str = "bgnbd",
    ) -> None:
        self.params = params
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.balance = balance
        self.prior = prior

    def fit(
        self,
        X: pd.DataFrame,
        y: pd.Series,
        *,
        X_valid: pd.DataFrame | None = None,
        y_valid: pd.Series | None = None,
    ) -> ChurnModel:
        """Fit on ``X`` (feature frame) and ``y`` (0/1); early stopping on the validation pair."""
        share = float(np.mean(np.asarray(y, dtype=float)))
        known = float(X[EXPECTED_PURCHASES].notna().mean()) if EXPECTED_PURCHASES in X else 0.0
        params = self.start_fit(X.dtypes, positive_share=share, prior_known_share=known)
        matrix = self.encode(X)
        train = lgb.Dataset(
            matrix,
            init_score=self._prior_margin(matrix),
            label=np.asarray(y, dtype=float),
            feature_name=self.features_,
            categorical_feature=list(self.categories_),
            free_raw_data=True,
        )
        callbacks, valid_sets = [], []
        if X_valid is not None and y_valid is not None:
            valid_matrix = self.encode(X_valid)
            valid_sets = [
                lgb.Dataset(
                    valid_matrix,
                    init_score=self._prior_margin(valid_matrix),
                    label=np.asarray(y_valid, dtype=float),
                    reference=train,
                )
            ]
            callbacks = [lgb.early_stopping(self.early_stopping_rounds, verbose=False)]
        self.booster_ = lgb.train(
            params,
            train,
            num_boost_round=self.num_boost_round,
            valid_sets=valid_sets,
            callbacks=callbacks,
        )
        self.best_iteration_ = int(
            self.booster_.best_iteration or self.booster_.current_iteration()
        )
        return self

    def start_fit(
        self, dtypes: pd.Series, *, positive_share: float, prior_known_share: float
    ) -> dict[str, Any]:
        """What :meth:`fit` decides before boosting, from the frame's columns and dtypes, the
        share of positive labels and the share of rows with BG/NBD features: feature list,
        category lists, LightGBM parameters (class weights) and the prior; returns the
        parameters. Public so a distributed trainer (training/dask_engine.py) makes the same
        decisions from statistics gathered over partitions."""
        self.features_ = [str(c) for c in dtypes.index]
        self.categories_ = {
            str(c): [str(v) for v in dtype.categories]
            for c, dtype in dtypes.items()
            if isinstance(dtype, pd.CategoricalDtype)
        }
        params = {**DEFAULT_PARAMS, **(self.params or {})}
        share = positive_share
        if self.balance == "auto" and min(share, 1 - share) < IMBALANCE_SHARE and 0 < share < 1:
            params["scale_pos_weight"] = (1 - share) / share
        self.params_ = params
        self.calibrator_: Calibrator | None = None
        self.prior_: dict[str, Any] | None = None
        uses_prior = {P_ALIVE, EXPECTED_PURCHASES} <= set(self.features_)
        if self.prior == "bgnbd" and uses_prior and prior_known_share > 0.5:
            base = float(_logit(np.clip(share, 1e-4, 1 - 1e-4)))
            self.prior_ = {"kind": "bgnbd", "fallback_logit": base}
        return params

    def encode(self, X: pd.DataFrame) -> np.ndarray:
        """The frame as a float64 matrix in :attr:`features_` order (missing columns are NaN)."""
        out = np.full((len(X), len(self.features_)), np.nan)
        for j, name in enumerate(self.features_):
            if name not in X.columns:
                continue
            col = X[name]
            if name in self.categories_:
                codes = pd.Index(self.categories_[name]).get_indexer(col.astype("string"))
                out[:, j] = np.where(codes >= 0, codes, np.nan)
            else:
                out[:, j] = pd.to_numeric(col, errors="coerce").to_numpy(
                    dtype=float, na_value=np.nan
                )
        return out

    def _prior_margin(self, matrix: np.ndarray) -> np.ndarray | None:
        """Log-odds of no purchase in the horizon under BG/NBD, per row, or ``None``.

        P(no purchase) = 1 - P(alive) + P(alive) exp(-E[N | alive]) with
        E[N | alive] = E[N] / P(alive): the Poisson approximation to the BG/NBD expression
        (Fader, Hardie & Lee 2005); the trees correct what it misses. Rows without the
        BG/NBD features start from the training base rate.
        """
        if self.prior_ is None:
            return None
        alive = matrix[:, self.features_.index(P_ALIVE)]
        expected = matrix[:, self.features_.index(EXPECTED_PURCHASES)]
        with np.errstate(divide="ignore", invalid="ignore"):
            p0 = 1 - alive + alive * np.exp(-expected / np.maximum(alive, 1e-9))
        margin = _logit(np.clip(p0, 1e-4, 1 - 1e-4))
        return np.where(np.isfinite(margin), margin, self.prior_["fallback_logit"])

    def predict_raw(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The model's probability per row before calibration (prior plus trees)."""
        matrix = X if isinstance(X, np.ndarray) else self.encode(X)
        if self.prior_ is None:
            return self.booster_.predict(matrix, num_iteration=self.best_iteration_)
        score = self.booster_.predict(matrix, num_iteration=self.best_iteration_, raw_score=True)
        return 1.0 / (1.0 + np.exp(-(score + self._prior_margin(matrix))))

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Churn probability per row, calibrated when :meth:`calibrate` has been run."""
        raw = self.predict_raw(X)
        return raw if self.calibrator_ is None else self.calibrator_.transform(raw)

    def calibrate(self, X: pd.DataFrame, y: pd.Series) -> dict[str, float]:
        """Choose and fit the calibration on held-out customers; returns each method's
        cross-fitted log loss."""
        self.calibrator_, losses = choose_calibrator(self.predict_raw(X), np.asarray(y, dtype=int))
        return losses

    def contributions(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Per-feature SHAP contributions in log-odds, shape (n, n_features); LightGBM's
        ``pred_contrib`` (the last column, the expected value, is dropped). With the BG/NBD
        prior, its log-odds relative to the base rate count towards the BG/NBD
        expected-purchases feature."""
        matrix = X if isinstance(X, np.ndarray) else self.encode(X)
        contrib = self.booster_.predict(
            matrix, num_iteration=self.best_iteration_, pred_contrib=True
        )[:, :-1]
        if self.prior_ is not None:
            j = self.features_.index(EXPECTED_PURCHASES)
            contrib[:, j] += self._prior_margin(matrix) - self.prior_["fallback_logit"]
        return contrib

    def model_text(self) -> str:
        """The booster in LightGBM's native text format."""
        return self.booster_.model_to_string(num_iteration=self.best_iteration_)

    def to_dict(self) -> dict[str, Any]:
        """Everything but the booster, JSON-ready."""
        return {
            "features": self.features_,
            "categories": self.categories_,
            "best_iteration": self.best_iteration_,
            "calibration": self.calibrator_.to_dict() if self.calibrator_ is not None else None,
            "prior": self.prior_,
        }

    @classmethod
    def from_text(cls, model_text: str, meta: dict[str, Any]) -> ChurnModel:
        """Rebuild from :meth:`model_text` and :meth:`to_dict` output; parses text only."""
        model = cls()
        model.booster_ = lgb.Booster(model_str=model_text)
        model.features_ = list(meta["features"])
        model.categories_ = {k: list(v) for k, v in meta["categories"].items()}
        model.best_iteration_ = int(meta["best_iteration"])
        calibration = meta.get("calibration")
        model.calibrator_ = Calibrator.from_dict(calibration) if calibration else None
        model.prior_ = meta.get("prior")
        if model.booster_.feature_name() != model.features_:
            raise ValueError("model text and feature list disagree")
        return model
