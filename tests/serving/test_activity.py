"""The recent activity a snapshot keeps per customer (models.contract.ACTIVITY_FIELD) and how
the workspace's customer page lists it (docs/workspace.md)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from models.contract import ACTIVITY_FEATURES
from serving.workspace import activity_items
from training.batch import activity_texts


def _features() -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "days_since_last_purchase": [12.0, np.nan, 400.0],
            "effort_score_last": [6.0, 2.0, np.nan],
            "csat_mean_90d": [2.5, np.nan, np.nan],
            "unresolved_90d": [1, 0, 3],
            "nps_last": [np.nan, np.nan, np.nan],
            "not_activity": [1.0, 2.0, 3.0],
        },
        index=pd.Index(["A", "B", "C"], name="customer_id"),
    )
    return frame


def test_activity_texts_keep_the_known_activity_features_in_customer_order() -> None:
    ids = pd.Series(["C", "A", "B", "nobody"])
    texts = activity_texts(_features(), ids)
    assert list(texts.index) == list(ids.index)
    c, a, b, nobody = (None if pd.isna(t) else json.loads(t) for t in texts)
    assert a == {
        "days_since_last_purchase": 12.0,
        "effort_score_last": 6.0,
        "csat_mean_90d": 2.5,
        "unresolved_90d": 1,
    }
    assert c == {"days_since_last_purchase": 400.0, "unresolved_90d": 3}  # NaN left out
    assert b == {"effort_score_last": 2.0, "unresolved_90d": 0}  # a zero is activity
    assert nobody is None  # not in the frame: nothing known
    assert all("not_activity" not in (json.loads(t) if t else {}) for t in texts.dropna())


def test_the_customer_page_lists_the_reasons_features_first_then_the_rest_once() -> None:
    row = {
        "top_reasons": [
            {"feature": "unresolved_90d", "value": 1},
            {"feature": "bgnbd_p_alive", "value": None},
        ]
    }
    text = activity_texts(_features(), pd.Series(["A"])).iloc[0]
    items = activity_items(row, text)
    labels = [i["label"] for i in items]
    assert len(labels) == len(set(labels)) == 4  # unresolved once, p_alive without a value
    assert labels[0].lower().startswith("support tickets or complaints left un")
    order = [f for f in ACTIVITY_FEATURES if f in json.loads(text)]
    assert order.index("days_since_last_purchase") < order.index("csat_mean_90d")
    # unreadable activity text shows the reasons' values alone, never fails the page
    assert [i["label"] for i in activity_items(row, "{not json")] == labels[:1]
    assert [i["label"] for i in activity_items(row, None)] == labels[:1]
