"""Relationship and engagement features: breadth of channels, education and onboarding,
two-way versus one-way contact, and an engagement index.

Why: customers who use more of a firm's channels, who were taught to use the product and who
are in a dialogue with the firm (not only receiving mail) are harder to lose (customer
engagement: Kumar & Pansari, J. Marketing Research 2016; onboarding and education are the
"value enhancement" of Dixon, Toman & DeLisi 2013). Tenure is ``tenure_days`` (customers) and
``T_days`` (transactions).

The engagement index is a fixed, documented formula (no statistic across customers, so a
customer's index depends on that customer's rows alone), in ``[0, 1]``, the mean of:

* breadth: channels used in the last 365 days / 3, capped at 1;
* learning: education and onboarding interactions in the last 365 days / 2, capped at 1;
* dialogue: share of the last 365 days' interactions that were two-way (0 without any);
* recency: ``exp(-days_since_last_interaction / 90)`` (0 without any interaction).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.catalogue import register
from features.groups import Groups, frame
from features.interactions import category_codes, counts_by
from features.schema import CHANNELS, TWO_WAY_CHANNELS
from features.time import events_before

F = "engagement"
WINDOW = 365
CHANNELS_USED = register(
    "channels_used_365d", F, "count", "365d", "distinct contact channels used, last 365 days"
)
LEARNING = register(
    "education_onboarding_365d",
    F,
    "count",
    "365d",
    "education and onboarding interactions, last 365 days",
)
TWO_WAY = register(
    "two_way_contacts_365d",
    F,
    "count",
    "365d",
    "two-way contacts (phone, chat, email: a person answers), last 365 days",
)
ONE_WAY = register(
    "one_way_contacts_365d",
    F,
    "count",
    "365d",
    "one-way contacts (web, in-app, other: self-service or usage), last 365 days",
)
TWO_WAY_SHARE = register(
    "two_way_share_365d",
    F,
    "ratio 0-1",
    "365d",
    "share of the last 365 days' interactions that were two-way",
)
INDEX = register(
    "engagement_index",
    F,
    "index 0-1",
    "365d",
    "mean of channel breadth, education, two-way share and contact recency (see docs)",
)
#: Features that are zero (not missing) for a customer without interactions.
ZERO_WHEN_ABSENT = (CHANNELS_USED, LEARNING, TWO_WAY, ONE_WAY, INDEX)
COLUMNS = (CHANNELS_USED, LEARNING, TWO_WAY, ONE_WAY, TWO_WAY_SHARE, INDEX)
_LEARNING_TYPES = ("education", "onboarding")


def engagement_index(
    channels_used: np.ndarray,
    learning: np.ndarray,
    two_way_share: np.ndarray,
    days_since_last: np.ndarray,
) -> np.ndarray:
    """The engagement index in ``[0, 1]`` (module docstring); missing parts count as 0."""
    parts = (
        np.minimum(channels_used / 3.0, 1.0),
        np.minimum(learning / 2.0, 1.0),
        np.nan_to_num(two_way_share, nan=0.0),
        np.nan_to_num(np.exp(-days_since_last / 90.0), nan=0.0),
    )
    return sum(parts) / len(parts)


def engagement_features(interactions: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.DataFrame:
    """Engagement features as of ``as_of`` from interactions strictly before it, indexed by
    ``customer_id``; windows are ``[as_of - 365 days, as_of)``."""
    past = events_before(interactions, as_of)
    g = Groups(past, as_of=as_of)
    in_year = g.window(WINDOW)
    channel = category_codes(past["channel"], CHANNELS)
    per_channel = counts_by(g, channel, len(CHANNELS) + 1, in_year)
    two_way_mask = np.isin(
        np.arange(len(CHANNELS) + 1), [CHANNELS.index(c) for c in TWO_WAY_CHANNELS]
    )
    two_way = per_channel[:, two_way_mask].sum(axis=1)
    total = per_channel.sum(axis=1)
    learning = g.count(in_year & past["interaction_type"].isin(_LEARNING_TYPES).to_numpy(bool))
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, two_way / total, np.nan)
    channels_used = (per_channel > 0).sum(axis=1).astype("float64")
    out = {
        CHANNELS_USED: channels_used,
        LEARNING: learning,
        TWO_WAY: two_way,
        ONE_WAY: total - two_way,
        TWO_WAY_SHARE: share,
        INDEX: engagement_index(channels_used, learning, share, g.min_age()),
    }
    return frame(g, out)
