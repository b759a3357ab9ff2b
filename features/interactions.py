"""Service-interaction features: contact volume per channel and type, customer effort, CSAT,
resolution, value enhancement, and days since the last contact and complaint.

Why: low-effort service cuts disloyalty (Dixon, Freeman & Toman, HBR 2010) and interactions
that leave the customer able to do more ("value enhancement") raise loyalty (Dixon, Toman &
DeLisi, *The Effortless Experience*, 2013). Scores are means over the interactions that carry
them; a blank score is "not asked" and is skipped. Channels and types outside the canonical
lists in :mod:`features.schema` are counted under ``other``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.catalogue import register
from features.groups import Columns, Groups, frame
from features.schema import CHANNELS, INTERACTION_TYPES, OTHER

F = "interactions"
WINDOWS = (30, 90, 365)
#: Trend windows: the last 90 days against the 275 days before them.
RECENT, EARLIER = 90, 365

#: Column stem per interaction type (``complaints_90d``, ``support_tickets_30d``, ...).
TYPE_STEMS = {
    "support_ticket": "support_tickets",
    "complaint": "complaints",
    "onboarding": "onboarding_sessions",
    "education": "education_sessions",
    "usage": "usage_events",
    OTHER: "other_interactions",
}


def _register_counts() -> tuple[
    dict[int, str], dict[tuple[str, int], str], dict[tuple[str, int], str]
]:
    total = {
        w: register(
            f"interactions_{w}d", F, "count", f"{w}d", f"service interactions, last {w} days"
        )
        for w in WINDOWS
    }
    by_channel = {
        (c, w): register(
            f"{c}_contacts_{w}d",
            F,
            "count",
            f"{w}d",
            f"interactions over the {c} channel, last {w} days"
            if c != OTHER
            else f"interactions over any other channel, last {w} days",
        )
        for c in (*CHANNELS, OTHER)
        for w in WINDOWS
    }
    by_type = {
        (t, w): register(
            f"{TYPE_STEMS[t]}_{w}d",
            F,
            "count",
            f"{w}d",
            f"{t.replace('_', ' ')} interactions, last {w} days"
            if t != OTHER
            else f"interactions of any other type, last {w} days",
        )
        for t in (*INTERACTION_TYPES, OTHER)
        for w in WINDOWS
    }
    return total, by_channel, by_type


TOTAL, BY_CHANNEL, BY_TYPE = _register_counts()
COUNT_90 = TOTAL[90]
COMPLAINTS_90 = BY_TYPE[("complaint", 90)]
UNRESOLVED_90 = register(
    "unresolved_90d",
    F,
    "count",
    "90d",
    "support tickets or complaints left unresolved, last 90 days",
)
UNRESOLVED_365 = register(
    "unresolved_365d", F, "count", "365d", "interactions left unresolved, last 365 days"
)
EFFORT_90 = register(
    "effort_score_mean_90d",
    F,
    "score 1-7",
    "90d",
    "mean customer effort score, last 90 days (7 = hardest)",
)
EFFORT_LAST = register(
    "effort_score_last", F, "score 1-7", "all history", "latest customer effort score"
)
EFFORT_TREND = register(
    "effort_score_trend_90d",
    F,
    "score difference",
    "90d vs prior 275d",
    "mean effort score of the last 90 days minus that of the 275 days before (>0: harder)",
)
CSAT_90 = register("csat_mean_90d", F, "score 1-5", "90d", "mean CSAT, last 90 days")
CSAT_LAST = register("csat_last", F, "score 1-5", "all history", "latest CSAT answer")
VALUE_ENH_90 = register(
    "value_enhancement_mean_90d",
    F,
    "score 1-7",
    "90d",
    "mean value-enhancement score of interactions, last 90 days",
)
VALUE_ENH_LAST = register(
    "value_enhancement_last",
    F,
    "score 1-7",
    "all history",
    "latest value-enhancement score ('I can do more with the product now')",
)
SINCE_LAST = register(
    "days_since_last_interaction",
    F,
    "days",
    "all history",
    "days since the last service interaction",
)
SINCE_COMPLAINT = register(
    "days_since_last_complaint", F, "days", "all history", "days since the last complaint"
)

COUNT_COLUMNS = (
    *TOTAL.values(),
    *BY_CHANNEL.values(),
    *BY_TYPE.values(),
    UNRESOLVED_90,
    UNRESOLVED_365,
)
COLUMNS = (
    *COUNT_COLUMNS,
    EFFORT_90,
    EFFORT_LAST,
    EFFORT_TREND,
    CSAT_90,
    CSAT_LAST,
    VALUE_ENH_90,
    VALUE_ENH_LAST,
    SINCE_LAST,
    SINCE_COMPLAINT,
)


def counts_by(groups: Groups, category: np.ndarray, k: int, mask: np.ndarray) -> np.ndarray:
    """Rows per customer and category (``n x k``), where ``mask``."""
    key = groups.codes[mask].astype("int64") * k + category[mask]
    return np.bincount(key, minlength=groups.n * k).reshape(groups.n, k).astype("float64")


def interaction_features(interactions: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.DataFrame:
    """Interaction features as of ``as_of``, indexed by ``customer_id``.

    Only interactions strictly before ``as_of`` are read; a ``Nd`` window is
    ``[as_of - N days, as_of)``. Customers without an interaction before ``as_of`` are absent
    (the builder fills their counts with zero and leaves scores missing).
    """
    g = Groups(interactions, as_of=as_of)
    return frame(g, interaction_columns(g))


def interaction_columns(g: Groups) -> Columns:
    """:func:`interaction_features` as arrays aligned with ``g.ids`` (the builder's form)."""
    channel = g.codes_of("channel", CHANNELS)
    itype = g.codes_of("interaction_type", INTERACTION_TYPES)
    out: dict[str, np.ndarray] = {}
    for w in WINDOWS:
        in_w = g.window(w)
        out[TOTAL[w]] = g.count(in_w)
        per_channel = counts_by(g, channel, len(CHANNELS) + 1, in_w)
        for j, c in enumerate((*CHANNELS, OTHER)):
            out[BY_CHANNEL[(c, w)]] = per_channel[:, j]
        per_type = counts_by(g, itype, len(INTERACTION_TYPES) + 1, in_w)
        for j, t in enumerate((*INTERACTION_TYPES, OTHER)):
            out[BY_TYPE[(t, w)]] = per_type[:, j]
    unresolved = g.is_false("resolved")
    out[UNRESOLVED_90] = g.count(unresolved & g.window(90))
    out[UNRESOLVED_365] = g.count(unresolved & g.window(365))
    effort = g.values("effort_score")
    out[EFFORT_90] = g.mean(effort, g.window(90))
    out[EFFORT_LAST] = g.last(effort)
    out[EFFORT_TREND] = out[EFFORT_90] - g.mean(effort, g.window(EARLIER, older_than=RECENT))
    csat = g.values("csat")
    out[CSAT_90] = g.mean(csat, g.window(90))
    out[CSAT_LAST] = g.last(csat)
    value_enh = g.values("value_enhancement")
    out[VALUE_ENH_90] = g.mean(value_enh, g.window(90))
    out[VALUE_ENH_LAST] = g.last(value_enh)
    out[SINCE_LAST] = g.min_age()
    out[SINCE_COMPLAINT] = g.min_age(itype == INTERACTION_TYPES.index("complaint"))
    return {c: out[c] for c in COLUMNS}
