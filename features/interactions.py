"""Service-interaction features: contact volume, customer effort, CSAT, resolution, value
enhancement.

Why: low-effort service cuts disloyalty (Dixon, Freeman & Toman, HBR 2010) and interactions
that leave the customer able to do more ("value enhancement") raise loyalty. Scores are means
over the interactions that carry them; a blank score is "not asked" and is skipped.
"""

from __future__ import annotations

import pandas as pd

from features.catalogue import register
from features.time import DAY, events_before, events_in_window

F = "interactions"
COUNT_90 = register("interactions_90d", F, "count", "90d", "service interactions, last 90 days")
COMPLAINTS_90 = register("complaints_90d", F, "count", "90d", "complaints, last 90 days")
UNRESOLVED_90 = register(
    "unresolved_90d",
    F,
    "count",
    "90d",
    "support tickets or complaints left unresolved, last 90 days",
)
EFFORT_90 = register(
    "effort_score_mean_90d",
    F,
    "score 1-7",
    "90d",
    "mean customer effort score, last 90 days (7 = hardest)",
)
CSAT_90 = register("csat_mean_90d", F, "score 1-5", "90d", "mean CSAT, last 90 days")
VALUE_ENH_90 = register(
    "value_enhancement_mean_90d",
    F,
    "score 1-7",
    "90d",
    "mean value-enhancement score of interactions, last 90 days",
)
SINCE_LAST = register(
    "days_since_last_interaction",
    F,
    "days",
    "all history",
    "days since the last service interaction",
)

COLUMNS = (COUNT_90, COMPLAINTS_90, UNRESOLVED_90, EFFORT_90, CSAT_90, VALUE_ENH_90, SINCE_LAST)
_MEANS = {EFFORT_90: "effort_score", CSAT_90: "csat", VALUE_ENH_90: "value_enhancement"}


def interaction_features(interactions: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.DataFrame:
    """Interaction features as of ``as_of``, indexed by ``customer_id``.

    Only interactions strictly before ``as_of`` are read; windows are ``[as_of - 90d, as_of)``.
    """
    past = events_before(interactions, as_of)
    recent = events_in_window(past, as_of, 90)
    ids = pd.Index(past["customer_id"].unique(), name="customer_id")
    g = recent.groupby("customer_id", sort=False)
    out = pd.DataFrame(index=ids)
    out[COUNT_90] = g.size().reindex(ids, fill_value=0)
    out[COMPLAINTS_90] = (
        recent.loc[recent["interaction_type"] == "complaint"]
        .groupby("customer_id")
        .size()
        .reindex(ids, fill_value=0)
    )
    if "resolved" in recent.columns:
        unresolved = recent["resolved"].eq(False).fillna(False).astype(bool)
        out[UNRESOLVED_90] = (
            recent.loc[unresolved].groupby("customer_id").size().reindex(ids, fill_value=0)
        )
    else:
        out[UNRESOLVED_90] = 0
    for feature, column in _MEANS.items():
        out[feature] = g[column].mean().reindex(ids) if column in recent.columns else float("nan")
    out[SINCE_LAST] = (as_of - past.groupby("customer_id")["timestamp"].max().reindex(ids)) / DAY
    return out[list(COLUMNS)].astype("float64")
