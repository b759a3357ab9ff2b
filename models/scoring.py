"""Scores from a bundle and a feature frame: the one implementation behind batch scoring and
the server's on-demand predictions.

Output per customer (docs/http-api.md): ``churn_probability``, ``risk_band``,
``p_alive``, ``expected_purchases``, ``expected_order_value``, ``clv`` (discounted, over the
horizon), ``value_at_risk = churn_probability * clv`` and ``top_reasons``: the features that
push this customer's churn risk up most (LightGBM SHAP contributions, log-odds).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.catalogue import describe
from models.bundle import Bundle
from models.clv_features import clv_feature_columns

RISK_BANDS = ("low", "medium", "high")
DEFAULT_THRESHOLDS = {"medium": 0.3, "high": 0.6}


def risk_band(prob: np.ndarray, thresholds: dict[str, float]) -> np.ndarray:
    """``low`` / ``medium`` / ``high`` from the bundle's probability thresholds."""
    return np.select(
        [prob >= thresholds["high"], prob >= thresholds["medium"]], ["high", "medium"], "low"
    )


def _reason_value(value: Any) -> float | str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, int | float | np.integer | np.floating):
        return round(float(value), 4)
    return str(value)


def top_reasons(
    frame: pd.DataFrame, contributions: np.ndarray, features: list[str], *, k: int = 3
) -> list[list[dict[str, Any]]]:
    """Per row, the ``k`` features with the largest positive contribution to churn risk."""
    k = min(k, contributions.shape[1])
    order = np.argsort(-contributions, axis=1)[:, :k]
    columns = {name: frame[name].to_numpy(dtype=object) for name in features if name in frame}
    out: list[list[dict[str, Any]]] = []
    for i, idx in enumerate(order):
        reasons = []
        for j in idx:
            c = float(contributions[i, j])
            if c <= 0:
                break
            name = features[j]
            value = columns[name][i] if name in columns else None
            reasons.append(
                {
                    "feature": name,
                    "description": describe(name),
                    "value": _reason_value(value),
                    "contribution": round(c, 4),
                }
            )
        out.append(reasons)
    return out


def score_frame(
    bundle: Bundle, frame: pd.DataFrame, *, horizon_days: int | None = None, reasons: int = 3
) -> pd.DataFrame:
    """Churn and CLV scores for every row of a feature frame (index ``customer_id``)."""
    model_horizon = int(bundle.meta["horizon_days"])
    horizon = int(horizon_days or model_horizon)
    clv = None
    if bundle.clv is not None and "frequency" in frame.columns:
        # The churn model's BG/NBD features are over the horizon it was trained for; the CLV
        # outputs are over the horizon asked for.
        clv = bundle.clv.predict(frame, horizon_days=model_horizon)
        frame = frame.assign(**clv_feature_columns(clv))
        if horizon != model_horizon:
            clv = bundle.clv.predict(frame, horizon_days=horizon)
    matrix = bundle.churn.encode(frame)
    prob = bundle.churn.predict_proba(matrix)
    out = pd.DataFrame(index=frame.index)
    out["churn_probability"] = prob
    thresholds = bundle.meta.get("risk_thresholds", DEFAULT_THRESHOLDS)
    out["risk_band"] = risk_band(prob, thresholds)
    if clv is not None:
        out = out.join(clv)
        out["value_at_risk"] = out["churn_probability"] * out["clv"]
    else:
        for col in (
            "p_alive",
            "expected_purchases",
            "expected_order_value",
            "clv",
            "value_at_risk",
        ):
            out[col] = np.nan
    # one Python list per row (an object column); pandas-stubs do not type lists of lists
    out["top_reasons"] = top_reasons(  # type: ignore[assignment]
        frame, bundle.churn.contributions(matrix), bundle.churn.features_, k=reasons
    )
    return out
