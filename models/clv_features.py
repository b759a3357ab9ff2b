"""BG/NBD outputs as churn features, computed point-in-time.

At a cutoff, a CLV model fitted on purchases strictly before that cutoff turns each
customer's (frequency, recency, T) into P(alive) and expected purchases over the horizon.
Training fits one such model per cutoff; scoring and serving use the bundle's CLV model, fitted
on all purchases before the scoring time, so the feature means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from features.model_outputs import EXPECTED_PURCHASES, P_ALIVE
from models.clv import CLVModel

COLUMNS = (P_ALIVE, EXPECTED_PURCHASES)


def clv_feature_columns(prediction: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The churn-feature columns from :meth:`CLVModel.predict` output, its frame or the arrays
    of :meth:`CLVModel.predict_columns` / :meth:`CLVModel.count_columns` (one mapping, used by
    training and scoring alike)."""
    return {
        P_ALIVE: np.asarray(prediction["p_alive"], dtype=float),
        EXPECTED_PURCHASES: np.asarray(prediction["expected_purchases"], dtype=float),
    }


def add_clv_features(
    frame: pd.DataFrame, clv: CLVModel | None, *, horizon_days: int
) -> pd.DataFrame:
    """``frame`` with :data:`COLUMNS` added (NaN without a CLV model or transaction features)."""
    if clv is None or "frequency" not in frame.columns:
        return frame.assign(**{col: np.nan for col in COLUMNS})
    # assign gives a new frame without copying ``frame``'s values (copy-on-write): a copy
    # costs a second feature frame (0.5 GiB at a million customers)
    return frame.assign(**clv_feature_columns(clv.count_columns(frame, horizon_days=horizon_days)))
