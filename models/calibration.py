"""Probability calibration of the churn booster, fitted on held-out data, stored as JSON.

Two methods (Niculescu-Mizil & Caruana 2005, "Predicting good probabilities with supervised
learning"): Platt scaling, a logistic regression on the booster's log-odds, and isotonic
regression, a monotone step function. Which one is used is chosen on held-out data by
cross-fitted log loss. Both are plain numbers in JSON: nothing is pickled.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

METHODS = ("platt", "isotonic")
_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    logit: np.ndarray = np.log(p / (1 - p))
    return logit


class Calibrator:
    """Maps raw booster probabilities to calibrated ones.

    Parameters
    ----------
    method : ``platt`` or ``isotonic``.
    """

    def __init__(self, method: str = "platt") -> None:
        if method not in METHODS:
            raise ValueError(f"unknown calibration method {method!r}; use one of {METHODS}")
        self.method = method

    def fit(self, raw: np.ndarray, y: np.ndarray) -> Calibrator:
        """Fit on raw probabilities ``raw`` and 0/1 outcomes ``y`` of held-out customers."""
        y = np.asarray(y, dtype=int)
        if self.method == "platt":
            lr = LogisticRegression(C=1e6, max_iter=1000)  # (almost) unpenalised, as Platt's
            lr.fit(_logit(raw).reshape(-1, 1), y)
            self.params_: dict[str, Any] = {
                "a": float(lr.coef_[0, 0]),
                "b": float(lr.intercept_[0]),
            }
        else:
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            iso.fit(np.asarray(raw, dtype=float), y)
            self.params_ = {
                "x": [float(v) for v in iso.X_thresholds_],
                "y": [float(v) for v in iso.y_thresholds_],
            }
        return self

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, clipped away from exact 0 and 1."""
        raw = np.asarray(raw, dtype=float)
        if self.method == "platt":
            z = self.params_["a"] * _logit(raw) + self.params_["b"]
            out = 1.0 / (1.0 + np.exp(-z))
        else:
            out = np.interp(raw, self.params_["x"], self.params_["y"])
        clipped: np.ndarray = np.clip(out, _EPS, 1 - _EPS)
        return clipped

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.params_}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibrator:
        cal = cls(str(data["method"]))
        cal.params_ = dict(data["params"])
        return cal


def choose_calibrator(
    raw: np.ndarray, y: np.ndarray, *, seed: int = 0
) -> tuple[Calibrator, dict[str, float]]:
    """Fit Platt and isotonic on ``raw``/``y`` and keep the one with the lower 2-fold
    cross-fitted log loss; returns it (refitted on all rows) and the losses per method."""
    raw, y = np.asarray(raw, dtype=float), np.asarray(y, dtype=int)
    fold = np.random.default_rng(seed).permutation(len(y)) % 2 == 0
    losses: dict[str, float] = {}
    for method in METHODS:
        pred = np.empty(len(y))
        for part in (fold, ~fold):
            pred[~part] = Calibrator(method).fit(raw[part], y[part]).transform(raw[~part])
        losses[method] = float(log_loss(y, pred, labels=[0, 1]))
    best = min(losses, key=losses.__getitem__)
    return Calibrator(best).fit(raw, y), losses
