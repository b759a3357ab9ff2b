"""Relationship and engagement features: breadth of channels, education and onboarding,
two-way versus one-way contact, and an engagement index.

Why: customers who use more of a firm's channels, who were taught to use the product and who
are in a dialogue with the firm (not only receiving mail) are harder to lose (customer
engagement: Kumar & Pansari, J. Marketing Research 2016; onboarding and education are the
"value enhancement" of Dixon, Toman & DeLisi 2013). Tenure is ``tenure_days`` (customers) and
``T_days`` (transactions).

Product usage (logins, sessions: ``usage`` interactions) is the densest sign of life a
service has: its rate per week says how engaged a customer is, and a silence since the last
usage event says more about dropout than a silence since the last purchase (usage and churn
move together: Ascarza & Hardie, "A joint model of usage and churn in contractual settings",
Marketing Science 32(4), 2013). The rates are per
week over the window, or over the span since the customer's first interaction when that is
shorter, so new customers are not counted as idle.

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
from features.groups import Columns, Groups, frame
from features.interactions import counts_by
from features.schema import CHANNELS, INTERACTION_TYPES, TWO_WAY_CHANNELS

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
USAGE_RATE_90 = register(
    "usage_per_week_90d",
    F,
    "events per week",
    "90d",
    "usage events per week over the last 90 days (or since the first interaction, if later)",
)
USAGE_RATE_365 = register(
    "usage_per_week_365d",
    F,
    "events per week",
    "365d",
    "usage events per week over the last 365 days (or since the first interaction, if later)",
)
SINCE_USAGE = register(
    "days_since_last_usage", F, "days", "all history", "days since the last usage event"
)
#: Features that are zero (not missing) for a customer without interactions.
ZERO_WHEN_ABSENT = (CHANNELS_USED, LEARNING, TWO_WAY, ONE_WAY, INDEX, USAGE_RATE_90, USAGE_RATE_365)
COLUMNS = (
    CHANNELS_USED,
    LEARNING,
    TWO_WAY,
    ONE_WAY,
    TWO_WAY_SHARE,
    INDEX,
    USAGE_RATE_90,
    USAGE_RATE_365,
    SINCE_USAGE,
)
#: Shortest span (days) a usage rate is measured over, so a customer first seen yesterday
#: does not get a rate of seven events a week from one event.
_MIN_RATE_SPAN_DAYS = 7.0
_LEARNING_TYPES = ("education", "onboarding")
#: Which channel codes (``other`` last) are two-way, which type codes are learning.
_TWO_WAY = np.array([c in TWO_WAY_CHANNELS for c in (*CHANNELS, None)])
_IS_LEARNING = np.array([t in _LEARNING_TYPES for t in (*INTERACTION_TYPES, None)])


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
    return np.asarray(sum(parts) / len(parts), dtype=float)


def _per_week(count: np.ndarray, observed_days: np.ndarray, window: int) -> np.ndarray:
    """Events per week over the window, or over the customer's observed span when shorter."""
    span = np.clip(observed_days, _MIN_RATE_SPAN_DAYS, window)
    rate: np.ndarray = count / span * 7.0
    return rate


def engagement_features(interactions: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.DataFrame:
    """Engagement features as of ``as_of`` from interactions strictly before it, indexed by
    ``customer_id``; windows are ``[as_of - 365 days, as_of)``."""
    g = Groups(interactions, as_of=as_of)
    return frame(g, engagement_columns(g))


def engagement_columns(g: Groups) -> Columns:
    """:func:`engagement_features` as arrays aligned with ``g.ids`` (the builder's form)."""
    in_year = g.window(WINDOW)
    channel = g.codes_of("channel", CHANNELS)
    itype = g.codes_of("interaction_type", INTERACTION_TYPES)
    per_channel = counts_by(g, channel, len(CHANNELS) + 1, in_year)
    two_way = per_channel[:, _TWO_WAY].sum(axis=1)
    total = per_channel.sum(axis=1)
    learning = g.count(in_year & _IS_LEARNING[itype])
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, two_way / total, np.nan)
    channels_used = (per_channel > 0).sum(axis=1).astype("float64")
    usage = itype == INTERACTION_TYPES.index("usage")
    observed = g.max_age()
    return {
        CHANNELS_USED: channels_used,
        LEARNING: learning,
        TWO_WAY: two_way,
        ONE_WAY: total - two_way,
        TWO_WAY_SHARE: share,
        INDEX: engagement_index(channels_used, learning, share, g.min_age()),
        USAGE_RATE_90: _per_week(g.count(usage & g.window(90)), observed, 90),
        USAGE_RATE_365: _per_week(g.count(usage & in_year), observed, WINDOW),
        SINCE_USAGE: g.min_age(usage),
    }
