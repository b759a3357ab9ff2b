"""Validation metrics of the churn model and its baselines, among all and among active
customers, and the demo oracle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from features.status import is_lapsed

TRUTH_FILE = Path("truth") / "ground_truth.parquet"
TOP_SHARE = 0.10


def expected_calibration_error(y: np.ndarray, p: np.ndarray, *, bins: int = 10) -> float:
    """ECE over equal-mass bins: sum_b (n_b / n) |mean(y_b) - mean(p_b)| (Naeini et al. 2015)."""
    order = np.argsort(p, kind="stable")
    total = 0.0
    for idx in np.array_split(order, bins):
        if len(idx):
            total += len(idx) / len(p) * abs(y[idx].mean() - p[idx].mean())
    return float(total)


def lift_and_capture(
    y: np.ndarray, score: np.ndarray, *, share: float = TOP_SHARE
) -> tuple[float, float]:
    """Churn rate in the top ``share`` by score over the overall rate (lift), and the share of
    all churners found there (capture rate): what a retention team calling the top 10% gets."""
    n_top = max(1, round(share * len(y)))
    top = np.argsort(-score, kind="stable")[:n_top]
    rate = y.mean()
    lift = float(y[top].mean() / rate) if rate > 0 else float("nan")
    capture = float(y[top].sum() / y.sum()) if y.sum() > 0 else float("nan")
    return lift, capture


def ranking_metrics(y, score) -> dict[str, float]:
    """Metrics that need only an ordering: ROC-AUC, PR-AUC, lift and capture in the top 10%."""
    y = np.asarray(y, dtype=int)
    score = np.asarray(score, dtype=float)
    lift, capture = lift_and_capture(y, score)
    return {
        "roc_auc": float(roc_auc_score(y, score)),
        "pr_auc": float(average_precision_score(y, score)),
        "lift_top10": lift,
        "capture_top10": capture,
    }


def classification_metrics(y, p) -> dict[str, float]:
    """Ranking metrics plus log loss, Brier score and ECE of probabilities ``p``."""
    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)
    return {
        **ranking_metrics(y, p),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "churn_rate": float(y.mean()),
        "n": float(len(y)),
    }


def active_customers(frame: pd.DataFrame) -> np.ndarray:
    """Which rows of a feature frame are not lapsed at its cutoff (the status rule of
    :mod:`features.status`, docs/status.md): the customers a retention team can still keep."""
    return ~is_lapsed(frame)


def metrics_among_active(
    y,
    active: np.ndarray,
    *,
    probabilities: dict[str, np.ndarray],
    rankings: dict[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """The metrics of each score on the active customers only, as ``<name>.<metric>``, plus
    ``n`` and ``churn_rate`` of the active rows; empty when they hold one class only.

    Lapsed customers are nearly all churners and easy to rank, so over everyone lift and
    capture sit near their ceiling for model and baseline alike; among the active ones they
    show whether the model finds the customers who can still be kept. ``probabilities`` get
    :func:`classification_metrics`, ``rankings`` (scores that are not probabilities, e.g.
    the BG/NBD baseline) :func:`ranking_metrics`."""
    y = np.asarray(y, dtype=int)
    active = np.asarray(active, dtype=bool)
    ya = y[active]
    if len(np.unique(ya)) < 2:
        return {}
    out = {"n": float(active.sum()), "churn_rate": float(ya.mean())}
    for name, p in probabilities.items():
        values = classification_metrics(ya, np.asarray(p)[active])
        out |= {f"{name}.{k}": v for k, v in values.items() if k not in ("n", "churn_rate")}
    for name, score in (rankings or {}).items():
        out |= {f"{name}.{k}": v for k, v in ranking_metrics(ya, np.asarray(score)[active]).items()}
    return out


def oracle_metrics(
    data_dir: Path, *, cutoff: pd.Timestamp, labels: pd.Series, predicted: pd.Series
) -> dict[str, float]:
    """AUC of the generator's true churn probability on the evaluated customers, next to the
    model's AUC on exactly the same customers; empty when there is no ground truth for
    ``cutoff`` (real data)."""
    path = Path(data_dir) / TRUTH_FILE
    if not path.is_file():
        return {}
    rows = pd.read_parquet(path)
    rows = rows.loc[pd.to_datetime(rows["as_of"], utc=True) == cutoff]
    truth = rows.set_index("customer_id")["p_churn_true"]
    common = labels.index.intersection(truth.index)
    if len(common) == 0 or labels.loc[common].nunique() < 2:
        return {}
    y = labels.loc[common].to_numpy(dtype=int)
    return {
        "oracle_roc_auc": float(roc_auc_score(y, truth.loc[common])),
        "oracle_ece": expected_calibration_error(y, truth.loc[common].to_numpy()),
        "model_roc_auc_on_oracle_set": float(roc_auc_score(y, predicted.loc[common])),
        "oracle_n": float(len(common)),
    }
