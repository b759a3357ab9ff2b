"""The demo generator's injected drift: only rows at or after its date change, the truth holds."""

from __future__ import annotations

import pandas as pd
import pytest

from training.demo_data import Drift, generate_demo_data

START = "2025-12-01"


@pytest.fixture(scope="module")
def clean():
    return generate_demo_data(300, seed=11)


@pytest.mark.parametrize(
    ("spec", "table", "column"),
    [
        (f"effort_shift:{START}:phone:3", "interactions", "effort_score"),
        (f"drop_column:{START}:interactions.csat", "interactions", "csat"),
        (f"rename:{START}:interactions.channel:in_app=mobile", "interactions", "channel"),
    ],
)
def test_a_drift_changes_only_the_rows_from_its_date_on(clean, spec, table, column) -> None:
    drifted = generate_demo_data(300, seed=11, drift=Drift.parse(spec))
    before, after = getattr(clean, table), getattr(drifted, table)
    assert len(before) == len(after)
    late = before["timestamp"] >= pd.Timestamp(START, tz="UTC")
    pd.testing.assert_frame_equal(before.loc[~late], after.loc[~late])
    changed = before.loc[late, column].astype("object") != after.loc[late, column].astype("object")
    assert changed.fillna(True).any()
    pd.testing.assert_frame_equal(clean.ground_truth, drifted.ground_truth)
    pd.testing.assert_frame_equal(clean.customers, drifted.customers)


def test_each_drift_kind_does_what_it_says(clean) -> None:
    late = clean.interactions["timestamp"] >= pd.Timestamp(START, tz="UTC")
    shifted = Drift.parse(f"effort_shift:{START}:phone:3").apply(clean).interactions
    phone = late & (clean.interactions["channel"] == "phone")
    expected = (clean.interactions.loc[phone, "effort_score"] + 3).clip(1, 7)
    assert shifted.loc[phone, "effort_score"].tolist() == expected.tolist()
    dropped = Drift.parse(f"drop_column:{START}").apply(clean).interactions
    assert dropped.loc[late, "effort_score"].isna().all()
    renamed = Drift.parse(f"rename:{START}").apply(clean).interactions
    assert not (renamed.loc[late, "channel"] == "in_app").any()
    assert (renamed.loc[late, "channel"] == "mobile").sum() == (
        clean.interactions.loc[late, "channel"] == "in_app"
    ).sum()


@pytest.mark.parametrize(
    "spec", ["tilt:2025-01-01", "effort_shift:", "effort_shift:2025-01-01:fax", "rename:x"]
)
def test_a_bad_drift_is_refused_with_its_text(spec) -> None:
    with pytest.raises(ValueError, match="drift"):
        Drift.parse(spec)
