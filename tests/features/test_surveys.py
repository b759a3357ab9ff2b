"""Elements-of-value survey features by hand: latest answer per element, pyramid levels, NPS."""

import math

import pandas as pd
import pytest

from features.surveys import nps_class, survey_features

AS_OF = pd.Timestamp("2025-01-01", tz="UTC")


def at(days_before: float) -> pd.Timestamp:
    return AS_OF - pd.Timedelta(days=days_before)


@pytest.fixture
def surveys() -> pd.DataFrame:
    rows = [
        ("A", 300, "quality", 4.0),
        ("A", 20, "quality", 9.0),  # latest quality answer
        ("A", 20, "saves_time", 8.0),
        ("A", 400, "wellness", 6.0),  # emotional
        ("A", 30, "self_transcendence", 10.0),  # social impact
        ("A", 30, "nps", 3.0),
        ("A", 10, "nps", 9.0),  # latest NPS: promoter
        ("A", -5, "nps", 0.0),  # after as_of: ignored
        ("B", 50, "nps", 7.0),
    ]
    df = pd.DataFrame(rows, columns=["customer_id", "days", "element", "score"])
    df["timestamp"] = [at(d) for d in df.pop("days")]
    return df


def test_survey_features_by_hand(surveys):
    f = survey_features(surveys, as_of=AS_OF)
    a = f.loc["A"]
    assert a["elements_answered"] == 4
    assert a["elements_high_count"] == 3  # quality 9, saves_time 8, self_transcendence 10
    assert a["element_score_mean"] == pytest.approx((9 + 8 + 6 + 10) / 4)
    assert a["value_functional_mean"] == pytest.approx(8.5)
    assert a["value_emotional_mean"] == 6.0
    assert math.isnan(a["value_life_changing_mean"])
    assert a["value_social_impact_mean"] == 10.0
    assert a["nps_last"] == 9.0 and a["nps_class"] == "promoter"
    # answers in the last 180 days: 9, 8, 10; before: 4, 6
    assert a["element_score_trend_180d"] == pytest.approx(9.0 - 5.0)
    assert a["days_since_last_survey"] == pytest.approx(10)
    b = f.loc["B"]
    assert b["elements_answered"] == 0 and math.isnan(b["element_score_mean"])
    assert b["nps_class"] == "passive" and math.isnan(b["element_score_trend_180d"])


def test_nps_class_has_fixed_categories():
    cls = nps_class(pd.Series([0.0, 6.0, 7.0, 8.0, 9.0, 10.0, float("nan")]))
    assert list(cls.cat.categories) == ["detractor", "passive", "promoter"]
    assert cls.astype("string").tolist()[:6] == [
        "detractor",
        "detractor",
        "passive",
        "passive",
        "promoter",
        "promoter",
    ]
    assert pd.isna(cls.iloc[6])
