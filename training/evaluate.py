"""Validation metrics of the churn model (and the oracle, where the demo generator knows it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

TRUTH_FILE = Path("truth") / "ground_truth.parquet"


def classification_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC, log loss, Brier score and the base rate on one labelled set."""
    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "churn_rate": float(y.mean()),
        "n": float(len(y)),
    }


def oracle_metrics(
    data_dir: Path, *, cutoff: pd.Timestamp, labels: pd.Series, predicted: pd.Series
) -> dict[str, float]:
    """AUC of the generator's true churn probability on the validation customers, next to the
    model's AUC on exactly the same customers; empty when no ground truth for ``cutoff``."""
    path = Path(data_dir) / TRUTH_FILE
    if not path.is_file():
        return {}
    truth = pd.read_parquet(path)
    truth = truth.loc[pd.to_datetime(truth["as_of"], utc=True) == cutoff]
    truth = truth.set_index("customer_id")["p_churn_true"]
    common = labels.index.intersection(truth.index)
    if len(common) == 0 or labels.loc[common].nunique() < 2:
        return {}
    y = labels.loc[common].to_numpy(dtype=int)
    return {
        "oracle_roc_auc": float(roc_auc_score(y, truth.loc[common])),
        "model_roc_auc_on_oracle_set": float(roc_auc_score(y, predicted.loc[common])),
        "oracle_n": float(len(common)),
    }
