"""Simple baselines the churn model must beat, on the same validation customers.

- ``bgnbd``: the BG/NBD expected number of purchases over the horizon alone (fewer expected
  purchases = more likely to churn); a ranking, so only ranking metrics are reported.
- ``logistic``: a logistic regression on the same features (median-imputed with missing
  indicators, standardised; categories one-hot encoded), fitted on at most
  :data:`LOGISTIC_MAX_ROWS` training rows (a stratified random sample beyond that).
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

#: Training rows the logistic baseline is fitted on at most: a baseline is a comparison, not
#: the product, and beyond ~100k rows its metrics move in the third decimal while its fit
#: time grows with the rows (lbfgs over 760k rows x ~180 columns took over 2 minutes at
#: 200,000 customers).
LOGISTIC_MAX_ROWS = 100_000


def stratified_rows(y: np.ndarray, max_rows: int, *, seed: int = 0) -> np.ndarray:
    """Positions of at most ``max_rows`` rows of ``y``, each class in its share (rounded,
    at least one row of a class present), drawn at random with ``seed``, in their order;
    every position when there are no more rows than that."""
    y = np.asarray(y)
    if len(y) <= max_rows:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    picked = []
    for value in np.unique(y):
        members = np.flatnonzero(y == value)
        take = max(1, round(max_rows * len(members) / len(y)))
        picked.append(rng.choice(members, size=min(take, len(members)), replace=False))
    return np.sort(np.concatenate(picked))


def logistic_baseline(
    train: pd.DataFrame,
    y_train: pd.Series,
    test: pd.DataFrame,
    *,
    seed: int = 0,
    max_rows: int = LOGISTIC_MAX_ROWS,
) -> np.ndarray:
    """Churn probabilities of a logistic regression fitted on ``train`` (at most ``max_rows``
    of its rows, :func:`stratified_rows`) for ``test`` rows."""
    rows = stratified_rows(np.asarray(y_train, dtype=int), max_rows, seed=seed)
    train, y_train = train.iloc[rows], pd.Series(np.asarray(y_train, dtype=int)[rows])
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
