"""Elements-of-value survey features.

Why: customers who score a brand high (8+) on several of the 30 elements of value are far
more loyal (Almquist, Senior & Bloch, HBR 2016). For each element the customer's latest answer
before ``as_of`` counts.
"""

from __future__ import annotations

import pandas as pd

from features.catalogue import register
from features.schema import HIGH_SCORE, NPS_ELEMENT
from features.time import DAY, events_before

F = "surveys"
HIGH_COUNT = register(
    "elements_high_count",
    F,
    "count (0-30)",
    "all history",
    "elements of value scored 8 or more (latest answer per element)",
)
ELEMENT_MEAN = register(
    "element_score_mean",
    F,
    "score 0-10",
    "all history",
    "mean latest score over the elements of value answered",
)
ANSWERED = register(
    "elements_answered",
    F,
    "count (0-30)",
    "all history",
    "elements of value the customer has answered",
)
NPS_LAST = register(
    "nps_last", F, "score 0-10", "all history", "latest likelihood-to-recommend (NPS) answer"
)
SINCE_LAST = register(
    "days_since_last_survey", F, "days", "all history", "days since the last survey answer"
)

COLUMNS = (HIGH_COUNT, ELEMENT_MEAN, ANSWERED, NPS_LAST, SINCE_LAST)


def survey_features(surveys: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.DataFrame:
    """Survey features as of ``as_of``, indexed by ``customer_id``; answers before ``as_of`` only."""
    past = events_before(surveys, as_of)
    ids = pd.Index(past["customer_id"].unique(), name="customer_id")
    latest = past.sort_values("timestamp", kind="stable").drop_duplicates(
        ["customer_id", "element"], keep="last"
    )
    elements = latest.loc[latest["element"] != NPS_ELEMENT]
    ge = elements.groupby("customer_id")["score"]
    out = pd.DataFrame(index=ids)
    out[HIGH_COUNT] = (
        elements.loc[elements["score"] >= HIGH_SCORE]
        .groupby("customer_id")
        .size()
        .reindex(ids, fill_value=0)
    )
    out[ELEMENT_MEAN] = ge.mean().reindex(ids)
    out[ANSWERED] = ge.size().reindex(ids, fill_value=0)
    nps = latest.loc[latest["element"] == NPS_ELEMENT].set_index("customer_id")["score"]
    out[NPS_LAST] = nps.reindex(ids)
    out[SINCE_LAST] = (as_of - past.groupby("customer_id")["timestamp"].max().reindex(ids)) / DAY
    return out[list(COLUMNS)].astype("float64")
