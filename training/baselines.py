"""Simple baselines the churn model must beat, on the same validation customers.

- ``bgnbd``: the BG/NBD expected number of purchases over the horizon alone (fewer expected
  purchases = more likely to churn); a ranking, so only ranking metrics are reported.
- ``logistic``: a logistic regression on the same features (median-imputed with missing
  indicators, standardised; categories one-hot encoded).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from features.model_outputs import EXPECTED_PURCHASES
from training.evaluate import classification_metrics, ranking_metrics


def logistic_baseline(
    train: pd.DataFrame, y_train: pd.Series, test: pd.DataFrame, *, seed: int = 0
) -> np.ndarray:
    """Churn probabilities of a logistic regression fitted on ``train`` for ``test`` rows."""
    categorical = [c for c in train.columns if isinstance(train[c].dtype, pd.CategoricalDtype)]
    numeric = [c for c in train.columns if c not in categorical and train[c].notna().any()]
    prep = ColumnTransformer(
        [
            (
                "num",
                make_pipeline(
                    SimpleImputer(strategy="median", add_indicator=True), StandardScaler()
                ),
                numeric,
            ),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="missing"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                categorical,
            ),
        ]
    )
    to_str = {c: "str" for c in categorical}
    model = make_pipeline(prep, LogisticRegression(max_iter=2000, random_state=seed))
    model.fit(train.astype(to_str), np.asarray(y_train, dtype=int))
    return model.predict_proba(test.astype(to_str))[:, 1]


#: Baselines whose score is a ranking, not a probability: ranking metrics only.
RANKING_ONLY = frozenset({"bgnbd"})


def baseline_scores(
    train: pd.DataFrame, y_train: pd.Series, test: pd.DataFrame
) -> dict[str, np.ndarray]:
    """Each baseline's score for the ``test`` rows, higher = more likely to churn (the
    report plots them next to the model); a baseline whose inputs are absent is left out."""
    out: dict[str, np.ndarray] = {}
    if EXPECTED_PURCHASES in test.columns and test[EXPECTED_PURCHASES].notna().all():
        out["bgnbd"] = -test[EXPECTED_PURCHASES].to_numpy(dtype=float)
    out["logistic"] = logistic_baseline(train, y_train, test)
    return out


def baseline_metrics(
    train: pd.DataFrame,
    y_train: pd.Series,
    test: pd.DataFrame,
    y_test: pd.Series,
    *,
    scores: dict[str, np.ndarray] | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics of each baseline on ``test`` (``scores``: :func:`baseline_scores`, computed
    when not given); a baseline whose inputs are absent is left out."""
    scores = baseline_scores(train, y_train, test) if scores is None else scores
    return {
        name: (ranking_metrics if name in RANKING_ONLY else classification_metrics)(y_test, s)
        for name, s in scores.items()
    }
