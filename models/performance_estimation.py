"""Expected performance before the labels arrive: confidence-based estimation (CBPE).

A churn label is known one horizon after scoring (90 days by default). Until then, if the
churn probabilities are calibrated -- a customer given 0.3 churns three times in ten -- each
customer is a *fractional* churner: ``p`` of a positive and ``1 - p`` of a negative. Counting
them that way gives the expected confusion matrix at every threshold, and so the expected ROC
curve and its area (the method of NannyML's CBPE, after Kivimäki et al., "Confidence-based
performance estimation", 2023):

    E[TPR(t)] = sum_{s_i >= t} p_i / sum_i p_i,   E[FPR(t)] = sum_{s_i >= t} (1 - p_i) / sum_i (1 - p_i)

and the area under ``(E[FPR], E[TPR])`` (trapezoids, so tied scores count half, as in
ROC-AUC). It is a ratio of expectations, unbiased as the sample grows. What it can see: a
change in *who* is scored (covariate shift: the probabilities bunch together, and the
expected AUC falls). What it cannot see: the same customers churning for new reasons
(concept drift), which leaves the probabilities unchanged; only the realized figure shows
that, once the labels are in. NannyML itself pulls cloud-storage clients, XGBoost, FLAML and
Plotly and pins an older LightGBM, for these few lines; docs/monitoring.md says so.

All functions are pure (numpy in, floats out).
"""

from __future__ import annotations

import numpy as np


def _clean(p: np.ndarray) -> np.ndarray:
    prob = np.asarray(p, dtype=float)
    out: np.ndarray = np.clip(prob[np.isfinite(prob)], 0.0, 1.0)
    return out


def expected_roc_auc(p: np.ndarray, score: np.ndarray | None = None) -> float:
    """Expected ROC-AUC of ranking by ``score`` (default: the probabilities themselves) when
    each customer churns with their calibrated probability ``p``; NaN when the expected
    counts of churners or stayers are zero (every ``p`` 0 or 1 on one side)."""
    prob = np.asarray(p, dtype=float)
    s = prob if score is None else np.asarray(score, dtype=float)
    keep = np.isfinite(prob) & np.isfinite(s)
    prob, s = np.clip(prob[keep], 0.0, 1.0), s[keep]
    pos, neg = prob.sum(), (1.0 - prob).sum()
    if pos <= 0 or neg <= 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s, prob = s[order], prob[order]
    # one ROC point per distinct score (ties move together, so they count half)
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    tpr = np.r_[0.0, np.cumsum(prob)[last] / pos]
    fpr = np.r_[0.0, np.cumsum(1.0 - prob)[last] / neg]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def expected_churn_rate(p: np.ndarray) -> float:
    """Expected share of churners: the mean calibrated probability (NaN when empty)."""
    prob = _clean(p)
    return float(prob.mean()) if len(prob) else float("nan")


def expected_lift(p: np.ndarray, *, share: float = 0.10) -> float:
    """Expected lift in the top ``share`` ranked by ``p``: the expected churn rate there over
    the expected overall rate (the realized lift of training/evaluate.py, in expectation)."""
    prob = _clean(p)
    if len(prob) == 0 or prob.mean() <= 0:
        return float("nan")
    n_top = max(1, round(share * len(prob)))
    top = np.sort(prob)[::-1][:n_top]
    return float(top.mean() / prob.mean())
