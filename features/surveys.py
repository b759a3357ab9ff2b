"""Elements-of-value survey features: scores per pyramid level, high scores, NPS and its class,
score trend, survey recency.

Why: customers who score a brand high (8+) on several of the 30 elements of value are far
more loyal, and the higher levels of the pyramid (emotional, life changing, social impact)
carry more weight than the functional ones (Almquist, Senior & Bloch, HBR 2016). For each
element the customer's latest answer before ``as_of`` counts (ties: the later row).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.catalogue import register
from features.groups import Columns, Groups, category_codes, frame
from features.schema import (
    DETRACTOR_MAX,
    ELEMENTS_BY_LEVEL,
    HIGH_SCORE,
    NPS_CLASSES,
    NPS_ELEMENT,
    PROMOTER_MIN,
)

F = "surveys"
#: Score trend: answers of the last 180 days against the answers before them.
TREND_DAYS = 180
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
LEVEL_MEAN = {
    level: register(
        f"value_{level}_mean",
        F,
        "score 0-10",
        "all history",
        f"mean latest score over the {level.replace('_', ' ')} elements of value answered",
    )
    for level in ELEMENTS_BY_LEVEL
}
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
NPS_CLASS = register(
    "nps_class",
    F,
    "category",
    "all history",
    "promoter (9-10), passive (7-8) or detractor (0-6), from the latest NPS answer",
)
TREND = register(
    "element_score_trend_180d",
    F,
    "score difference",
    "180d vs before",
    "mean element score answered in the last 180 days minus the mean of earlier answers",
)
SINCE_LAST = register(
    "days_since_last_survey", F, "days", "all history", "days since the last survey answer"
)

COLUMNS = (
    HIGH_COUNT,
    ELEMENT_MEAN,
    *LEVEL_MEAN.values(),
    ANSWERED,
    NPS_LAST,
    NPS_CLASS,
    TREND,
    SINCE_LAST,
)
#: Survey answers in a fixed order: the 30 elements by level, then NPS.
_ORDER = (*[e for level in ELEMENTS_BY_LEVEL.values() for e in level], NPS_ELEMENT)
_NPS = len(_ORDER) - 1
NPS_DTYPE = pd.CategoricalDtype(list(NPS_CLASSES))


def nps_class(score: pd.Series) -> pd.Series:
    """Promoter (9-10), passive (7-8) or detractor (0-6) (Reichheld, HBR 2003); NaN stays NaN."""
    return pd.Series(_nps_class(score.to_numpy("float64", na_value=np.nan)), index=score.index)


def _nps_class(score: np.ndarray) -> pd.Categorical:
    """:func:`nps_class` of an array (codes in :data:`NPS_CLASSES` order; NaN: missing)."""
    codes = np.select([score >= PROMOTER_MIN, score > DETRACTOR_MAX, score >= 0], [2, 1, 0], -1)
    return pd.Categorical.from_codes(codes, dtype=NPS_DTYPE, validate=False)  # codes -1..2


def survey_features(surveys: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.DataFrame:
    """Survey features as of ``as_of``, indexed by ``customer_id``; answers before ``as_of`` only."""
    g, element = survey_groups(surveys, as_of=as_of)
    return frame(g, survey_columns(g, element))


def survey_groups(surveys: pd.DataFrame, *, as_of: pd.Timestamp) -> tuple[Groups, np.ndarray]:
    """The answers before ``as_of`` grouped by customer, and each one's element code (its
    position in the fixed answer order). Rows with an unknown element are left out:
    validation quarantines them, and here they must never be mis-keyed."""
    element = _element_codes(surveys)
    if (element < 0).any():
        surveys, element = surveys.loc[element >= 0], element[element >= 0]
    g = Groups(surveys, as_of=as_of)
    return g, g.past(element)


def _element_codes(surveys: pd.DataFrame) -> np.ndarray:
    """Position of each row's element in the fixed answer order; -1: unknown."""
    codes = category_codes(surveys["element"], _ORDER)
    return np.where(codes == len(_ORDER), -1, codes)


def survey_columns(g: Groups, element: np.ndarray) -> Columns:
    """:func:`survey_features` as arrays aligned with ``g.ids``, from the past rows' element
    codes (:func:`_element_codes`, all known)."""
    k = len(_ORDER)
    score = g.values("score")
    # Latest answer per (customer, element): sort by key then time (stable), keep each run's last.
    key = g.codes.astype("int64") * k + element
    order = np.lexsort((g.ts_ns, key))
    skey = key[order]
    last = np.r_[skey[1:] != skey[:-1], True] if len(skey) else np.zeros(0, dtype=bool)
    latest_key, latest_score = skey[last], score[order][last]
    cust, elem = latest_key // k, latest_key % k
    is_element = elem != _NPS

    def per_customer(weights: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.bincount(cust[mask], weights=weights[mask], minlength=g.n)

    answered = per_customer(np.ones(len(cust)), is_element)
    out: Columns = {
        HIGH_COUNT: per_customer(np.ones(len(cust)), is_element & (latest_score >= HIGH_SCORE)),
        ANSWERED: answered,
    }
    with np.errstate(invalid="ignore", divide="ignore"):
        out[ELEMENT_MEAN] = np.where(
            answered > 0, per_customer(latest_score, is_element) / answered, np.nan
        )
        start = 0
        for level, names in ELEMENTS_BY_LEVEL.items():
            in_level = (elem >= start) & (elem < start + len(names))
            n = per_customer(np.ones(len(cust)), in_level)
            out[LEVEL_MEAN[level]] = np.where(
                n > 0, per_customer(latest_score, in_level) / n, np.nan
            )
            start += len(names)
    nps = np.full(g.n, np.nan)
    nps[cust[~is_element]] = latest_score[~is_element]
    out[NPS_LAST] = nps
    answers = element != _NPS
    out[TREND] = g.mean(score, answers & g.window(TREND_DAYS)) - g.mean(
        score, answers & (g.age_days > TREND_DAYS)
    )
    out[SINCE_LAST] = g.min_age()
    out[NPS_CLASS] = _nps_class(nps)
    return {c: out[c] for c in COLUMNS}
