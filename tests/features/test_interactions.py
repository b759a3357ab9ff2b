"""Interaction and engagement features by hand on a tiny history."""

import math

import pandas as pd
import pytest

from features.engagement import engagement_features, engagement_index
from features.interactions import interaction_features

AS_OF = pd.Timestamp("2025-01-01", tz="UTC")


def at(days_before: float) -> pd.Timestamp:
    return AS_OF - pd.Timedelta(days=days_before)


@pytest.fixture
def interactions() -> pd.DataFrame:
    rows = [
        # customer, days before as_of, channel, type, effort, csat, resolved, value_enh
        ("A", 10, "phone", "complaint", 6.0, 2.0, False, None),
        ("A", 40, "chat", "support_ticket", 4.0, None, True, 5.0),
        ("A", 100, "email", "education", 2.0, 4.0, None, 6.0),
        ("A", 200, "sms", "onboarding", 2.0, None, None, None),  # unknown channel: other
        ("A", 400, "web", "usage", None, None, None, None),  # older than every window
        ("A", -1, "phone", "complaint", 7.0, 1.0, False, 1.0),  # after as_of: ignored
        ("B", 5, "in_app", "usage", None, None, None, None),
        ("B", 5, "in_app", "webinar", None, 5.0, None, None),  # unknown type: other
    ]
    df = pd.DataFrame(
        rows,
        columns=[
            "customer_id",
            "days",
            "channel",
            "interaction_type",
            "effort_score",
            "csat",
            "resolved",
            "value_enhancement",
        ],
    )
    df["timestamp"] = [at(d) for d in df.pop("days")]
    df["resolved"] = df["resolved"].astype("boolean")
    return df


def test_counts_per_window_channel_and_type(interactions):
    f = interaction_features(interactions, as_of=AS_OF)
    a = f.loc["A"]
    assert (a["interactions_30d"], a["interactions_90d"], a["interactions_365d"]) == (1, 2, 4)
    assert a["phone_contacts_30d"] == 1 and a["chat_contacts_30d"] == 0
    assert a["chat_contacts_90d"] == 1 and a["email_contacts_365d"] == 1
    assert a["other_contacts_365d"] == 1 and a["web_contacts_365d"] == 0
    assert a["complaints_30d"] == 1 and a["complaints_90d"] == 1
    assert a["support_tickets_90d"] == 1 and a["education_sessions_365d"] == 1
    assert a["onboarding_sessions_365d"] == 1 and a["onboarding_sessions_90d"] == 0
    assert a["unresolved_90d"] == 1 and a["unresolved_365d"] == 1
    b = f.loc["B"]
    assert b["usage_events_30d"] == 1 and b["other_interactions_30d"] == 1
    assert b["in_app_contacts_30d"] == 2


def test_scores_last_trend_and_recency(interactions):
    a = interaction_features(interactions, as_of=AS_OF).loc["A"]
    assert a["effort_score_mean_90d"] == pytest.approx(5.0)  # (6 + 4) / 2
    assert a["effort_score_last"] == 6.0
    assert a["effort_score_trend_90d"] == pytest.approx(5.0 - 2.0)  # vs days 90-365
    assert a["csat_mean_90d"] == 2.0 and a["csat_last"] == 2.0
    assert a["value_enhancement_mean_90d"] == 5.0 and a["value_enhancement_last"] == 5.0
    assert a["days_since_last_interaction"] == pytest.approx(10)
    assert a["days_since_last_complaint"] == pytest.approx(10)
    b = interaction_features(interactions, as_of=AS_OF).loc["B"]
    assert math.isnan(b["days_since_last_complaint"]) and math.isnan(b["effort_score_last"])


def test_engagement_by_hand(interactions):
    f = engagement_features(interactions, as_of=AS_OF)
    a = f.loc["A"]
    assert a["channels_used_365d"] == 4  # phone, chat, email, other
    assert a["education_onboarding_365d"] == 2
    assert a["two_way_contacts_365d"] == 3 and a["one_way_contacts_365d"] == 1
    assert a["two_way_share_365d"] == pytest.approx(0.75)
    expected = (1.0 + 1.0 + 0.75 + math.exp(-10 / 90)) / 4
    assert a["engagement_index"] == pytest.approx(expected)
    b = f.loc["B"]
    assert b["two_way_share_365d"] == 0.0 and b["channels_used_365d"] == 1


def test_engagement_index_bounds_and_missing_parts():
    import numpy as np

    idx = engagement_index(
        np.array([0.0, 10.0]),
        np.array([0.0, 10.0]),
        np.array([np.nan, 1.0]),
        np.array([np.nan, 0.0]),
    )
    assert idx[0] == 0.0 and idx[1] == pytest.approx(1.0)
