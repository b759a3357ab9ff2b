"""Reasons from the whole model (models/reasons.py), relative risk (models/distribution.py)
and the catalogue texts they are written in (features/catalogue.py), on real fitted models."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import features.build  # noqa: F401  (registers every feature in the catalogue)
from features.catalogue import (
    CONCEPTS,
    MISSING_TEXT,
    TEXT,
    catalogue,
    concept_of,
    example_value,
    reason_text,
)
from models.bundle import Bundle
from models.churn import ChurnModel
from models.contract import REASON_KEYS
from models.distribution import (
    BandRule,
    Reference,
    band_thresholds,
    percentile,
    quantile_grid,
    risk_band,
)
from models.reasons import base_offset, explain_batch, explain_rows
from models.scoring import score_population

FIXED = {"medium": 0.3, "high": 0.6}


def _frame(seed: int, n: int, *, shift: float = 0.0) -> tuple[pd.DataFrame, pd.Series]:
    """Customers with BG/NBD outputs, purchase and contact recency, effort and a plan; churn
    driven by P(alive), contact recency and effort (``shift``: log-odds added to everyone,
    for a high base rate)."""
    rng = np.random.default_rng(seed)
    alive = rng.uniform(0.05, 1, n)
    expected = alive * rng.gamma(2, 1, n)
    gap = rng.gamma(3, 15, n)
    since_purchase = gap * rng.gamma(1.5, 1.0, n)
    since_contact = rng.gamma(2, 15, n)
    effort = rng.uniform(1, 7, n)
    plan = rng.choice(["basic", "pro"], n)
    logit = (
        -2.0 * (alive - 0.5)
        + 0.03 * (since_contact - 30)
        + 0.5 * (effort - 4)
        + np.where(plan == "pro", -0.5, 0.0)
        + shift
    )
    y = pd.Series((rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int))
    frame = pd.DataFrame(
        {
            "bgnbd_p_alive": alive,
            "bgnbd_expected_purchases": expected,
            "days_since_last_purchase": since_purchase,
            "interpurchase_days_mean": gap,
            "days_since_last_interaction": since_contact,
            "days_since_last_usage": since_contact + rng.gamma(1, 3, n),
            "effort_score_mean_90d": effort,
            "plan": pd.Categorical(plan),
        },
        index=pd.Index([f"C{i:05d}" for i in range(n)], name="customer_id"),
    )
    return frame, y


def _bundle(*, shift: float = 0.0, keep_trees: bool = True) -> tuple[Bundle, pd.DataFrame]:
    frame, y = _frame(11, 4000, shift=shift)
    train, valid, calib = slice(0, 2000), slice(2000, 3000), slice(3000, 4000)
    model = ChurnModel(
        params={"min_data_in_leaf": 40},
        num_boost_round=150,
        min_gain_z=-np.inf if keep_trees else np.inf,
    ).fit(frame[train], y[train], X_valid=frame[valid], y_valid=y[valid])
    model.calibrate(frame[calib], y[calib])
    return Bundle(model, None, meta={"horizon_days": 90}), frame


@pytest.fixture(scope="module")
def cases() -> dict[str, tuple[Bundle, pd.DataFrame]]:
    return {
        "trees": _bundle(),
        "prior alone": _bundle(keep_trees=False),
        "high base rate": _bundle(shift=2.5),
    }


@pytest.mark.parametrize("case", ["trees", "prior alone", "high base rate"])
def test_a_customer_above_the_base_rate_always_has_a_reason(case, cases) -> None:
    bundle, frame = cases[case]
    assert (bundle.churn.best_iteration_ > 0) == (case != "prior alone")
    scores, reference = score_population(bundle, frame, rule=BandRule(), reasons=50)
    prob = scores["churn_probability"].to_numpy()
    above = prob > reference.base_rate
    assert 0 < above.sum() < len(prob)
    if case == "high base rate":
        assert reference.base_rate > 0.8
    for is_above, reasons in zip(above, scores["top_reasons"], strict=True):
        if is_above:
            assert reasons, "above the base rate without a reason"
        directions = {r["direction"] for r in reasons}
        assert directions <= {"raises" if is_above else "lowers"}
        # all concepts in the reason's direction: their shares add up to the whole
        if reasons:
            assert sum(r["share"] for r in reasons) == pytest.approx(1.0, abs=2e-3)
        codes = [r["code"] for r in reasons]
        assert len(codes) == len(set(codes)), "one reason per concept"
        assert [r["share"] for r in reasons] == sorted((r["share"] for r in reasons), reverse=True)


def test_the_prior_alone_is_explained_by_purchase_reasons_in_plain_words(cases) -> None:
    bundle, frame = cases["prior alone"]
    scores, _ = score_population(bundle, frame, rule=BandRule())
    codes = {r["code"] for reasons in scores["top_reasons"] for r in reasons}
    # only the prior moves the score: its inputs are P(alive) and expected purchases
    assert codes <= {"purchase_recency", "purchase_frequency"}
    first = scores.sort_values("churn_probability")["top_reasons"].iloc[-1][0]
    assert first["code"] == "purchase_recency"
    # the observed feature leads the text, not the BG/NBD output
    assert first["feature"] == "days_since_last_purchase"
    assert re.fullmatch(r"No purchase for [\d,]+ days?; usually every [\d,]+ days?", first["text"])


def test_reasons_have_the_contract_keys_and_the_customers_values(cases) -> None:
    bundle, frame = cases["trees"]
    scores, reference = score_population(bundle, frame, rule=BandRule())
    seen = set()
    for cid, reasons in scores["top_reasons"].items():
        for r in reasons:
            assert tuple(r) == REASON_KEYS
            assert r["code"] == concept_of(r["feature"])
            value = frame.loc[cid, r["feature"]]
            if isinstance(r["value"], str):
                assert r["value"] == str(value)
                assert r["percentile"] is None
            else:
                assert r["value"] == pytest.approx(float(value), abs=1e-4)
                grid = reference.feature_grids[r["feature"]]
                assert r["percentile"] == pytest.approx(
                    percentile(np.array([float(value)]), grid)[0], abs=0.05
                )
            seen.add(r["code"])
    # contact recency and usage recency are one concept, not two reasons
    assert concept_of("days_since_last_interaction") == concept_of("days_since_last_usage")
    assert {"contact_recency", "effort", "purchase_recency"} <= seen


def test_top_customers_do_not_all_share_one_first_reason(cases) -> None:
    bundle, frame = cases["trees"]
    scores, _ = score_population(bundle, frame, rule=BandRule())
    top = scores.sort_values("churn_probability", ascending=False).head(50)
    firsts = pd.Series([r[0]["code"] for r in top["top_reasons"]]).value_counts()
    assert firsts.iloc[0] < 45, firsts.to_dict()


def test_bands_are_drawn_from_the_distribution_or_fixed(cases) -> None:
    bundle, frame = cases["high base rate"]
    scores, reference = score_population(bundle, frame, rule=BandRule())
    counts = scores["risk_band"].value_counts()
    n = len(scores)
    assert reference.mode == "distribution"
    assert 0.10 * n <= counts["high"] < 0.15 * n
    assert 0.30 * n <= counts["high"] + counts["medium"] < 0.35 * n
    fixed, ref_fixed = score_population(
        Bundle(bundle.churn, None, meta={**bundle.meta, "risk_thresholds": FIXED}),
        frame,
        rule=BandRule(mode="fixed"),
    )
    assert ref_fixed.thresholds == FIXED
    expected = np.where(fixed["churn_probability"] >= 0.6, "high", "low")
    expected = np.where(
        (fixed["churn_probability"] >= 0.3) & (fixed["churn_probability"] < 0.6),
        "medium",
        expected,
    )
    assert (fixed["risk_band"].to_numpy() == expected).all()
    # with an 85%+ base rate, fixed thresholds put most customers in "high"
    assert (fixed["risk_band"] == "high").mean() > 0.5


def test_bands_are_set_among_customers_who_can_still_be_kept(cases) -> None:
    """Where the riskiest customers are long gone, the bands (and so the worklist) are drawn
    from the customers who are not lapsed, not emptied by the lapsed ones."""
    bundle, frame = cases["trees"]
    first, _ = score_population(bundle, frame, rule=BandRule())
    riskiest = first["churn_probability"].rank(ascending=False, method="first") <= 0.4 * len(frame)
    gone = frame.copy()
    for column in (
        "days_since_last_purchase",
        "days_since_last_interaction",
        "days_since_last_usage",
    ):
        gone.loc[riskiest.to_numpy(), column] = 400.0  # over the 365-day ceiling: lapsed
    scores, reference = score_population(bundle, gone, rule=BandRule())
    lapsed = scores["status"] == "lapsed"
    assert lapsed.sum() >= riskiest.sum()
    kept = scores.loc[~lapsed]
    flagged = kept["risk_band"].isin(["high", "medium"]).mean()
    assert 0.28 <= flagged <= 0.35  # the default 10% + 20%, among the customers not lapsed
    assert (
        (kept["status"] == "at_risk").sum() == kept["risk_band"].isin(["high", "medium"]).sum() > 0
    )
    assert reference.base_rate == pytest.approx(kept["churn_probability"].mean())


def test_percentiles_and_thresholds_on_known_values() -> None:
    values = np.arange(1.0, 101.0)  # 1..100
    grid = quantile_grid(values, 101)
    assert grid is not None
    pct = percentile(np.array([1.0, 50.5, 100.0, 1000.0, -5.0, np.nan]), grid)
    np.testing.assert_allclose(pct[:5], [0.0, 50.0, 100.0, 100.0, 0.0])
    assert np.isnan(pct[5])
    # a value most customers share sits in the middle of its run
    zeros = quantile_grid(np.r_[np.zeros(80), np.arange(1.0, 21.0)], 101)
    assert percentile(np.array([0.0]), zeros)[0] == pytest.approx(40.0, abs=1.0)
    thresholds = band_thresholds(values, BandRule(high_share=0.1, medium_share=0.2))
    assert thresholds == {"high": 91.0, "medium": 71.0}
    bands = risk_band(values, thresholds)
    assert (bands == "high").sum() == 10 and (bands == "medium").sum() == 20
    with pytest.raises(ValueError):
        BandRule(high_share=0.8, medium_share=0.5)


def test_reference_round_trips_and_refuses_malformed_input(cases) -> None:
    bundle, frame = cases["trees"]
    _, reference = score_population(bundle, frame, rule=BandRule())
    again = Reference.from_dict(reference.to_dict())
    assert again.thresholds == reference.thresholds and again.base_rate == reference.base_rate
    assert again.feature_grids.keys() == reference.feature_grids.keys()
    probe = frame["effort_score_mean_90d"].to_numpy()
    np.testing.assert_allclose(
        percentile(probe, again.feature_grids["effort_score_mean_90d"]),
        percentile(probe, reference.feature_grids["effort_score_mean_90d"]),
        atol=1e-3,
    )
    broken = reference.to_dict()
    broken["features"]["effort_score_mean_90d"] = [3.0, 1.0]
    with pytest.raises(ValueError, match="ascending"):
        Reference.from_dict(broken)
    with pytest.raises(ValueError, match="malformed"):
        Reference.from_dict({"base_rate": 0.5})


# -- the catalogue's texts ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(catalogue()))
def test_every_catalogue_feature_renders_as_a_reason(name: str) -> None:
    assert concept_of(name) in CONCEPTS, "every catalogue feature belongs to a concept"
    text = reason_text(name, example_value(name), {})
    assert text and not text[0].islower() and "{" not in text
    missing = reason_text(name, np.nan, {})
    assert missing and "{" not in missing and "nan" not in missing.lower()
    # with every other feature known, the optional clauses render too
    others = {other: example_value(other) for other in catalogue()}
    full = reason_text(name, example_value(name), others)
    assert full.startswith(text) and "{" not in full


def test_text_tables_name_only_catalogue_features() -> None:
    names = set(catalogue())
    assert set(TEXT) <= names and set(MISSING_TEXT) <= names
    for template in TEXT.values():
        fields = set(re.findall(r"\{(\w+)\}", template)) - {"value", "signed", "percent"}
        assert fields <= names, template


def test_attribute_columns_render_with_their_value() -> None:
    assert concept_of("plan") == "attribute_plan"
    assert reason_text("plan", "basic", {}) == "Plan: basic"
    assert reason_text("days_since_last_purchase", 143.0, {"interpurchase_days_mean": 40.2}) == (
        "No purchase for 143 days; usually every 40 days"
    )
    assert reason_text("days_since_last_purchase", 1.0, {}) == "No purchase for 1 day"


@pytest.mark.parametrize("case", ["trees", "prior alone", "high base rate"])
def test_scoring_probability_from_the_contributions_is_the_models(case, cases) -> None:
    """Scoring asks LightGBM once (``proba_and_contributions``): the probability from the
    SHAP values' sum is ``predict_proba``'s, the contributions are ``contributions``'."""
    bundle, frame = cases[case]
    churn = bundle.churn
    matrix = churn.encode(frame.iloc[:500])
    proba, contrib = churn.proba_and_contributions(matrix)
    np.testing.assert_allclose(proba, churn.predict_proba(matrix), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(contrib, churn.contributions(matrix))
    assert proba.std() > 0.01  # a real spread of probabilities, not a constant


@pytest.mark.parametrize("case", ["trees", "prior alone", "high base rate"])
@pytest.mark.parametrize("k", [3, 50])
def test_batch_reasons_are_those_of_the_per_customer_path(case, k, cases) -> None:
    """``make score`` explains every customer on whole columns (explain_batch), a request
    row by row (explain_rows): the same reasons, to the last digit, with missing values."""
    bundle, frame = cases[case]
    frame = frame.iloc[:400].copy()
    rng = np.random.default_rng(3)
    for name in ("days_since_last_purchase", "effort_score_mean_90d", "bgnbd_p_alive"):
        frame.loc[rng.random(len(frame)) < 0.2, name] = np.nan
    frame.loc[rng.random(len(frame)) < 0.1, "plan"] = np.nan
    churn = bundle.churn
    _, reference = score_population(bundle, frame, rule=BandRule())
    contributions = churn.contributions(frame[churn.features_])
    kwargs = {
        "offset": base_offset(churn, reference.base_rate),
        "feature_grids": reference.feature_grids,
        "k": k,
    }
    # a feature the frame lacks has no value and no percentile
    features = [*churn.features_, "unresolved_90d"]
    contributions = np.column_stack([contributions, rng.normal(0, 0.3, len(frame))])
    batch = explain_batch(frame, contributions, features, **kwargs)
    rows = explain_rows(frame, contributions, features, **kwargs)
    assert sum(map(len, batch)) >= len(frame)
    assert any(r["value"] is None for reasons in rows for r in reasons)
    assert batch == rows


def test_whole_array_rounding_is_pythons() -> None:
    """Reasons round values, percentiles and shares on whole arrays: the result is Python's
    ``round`` to the bit (and the sign of zero), at halves, ties and the edges too."""
    from models.reasons import _rounded

    rng = np.random.default_rng(8)
    values = np.concatenate(
        [
            rng.normal(0, 1, 20_000),
            rng.lognormal(0, 4, 20_000) * rng.choice([-1, 1], 20_000),
            np.arange(-20_000, 20_000) / 1e4 + 0.00005,  # next to a half of the last digit
            np.arange(-2_000, 2_000) / 20,  # ties at one digit
            [0.0, -0.0, -1e-9, 1e300, -np.inf, np.inf, np.nan, 2.0**53 + 2, 0.05, 0.15, 0.25],
        ]
    )
    for digits in (1, 4):
        got = _rounded(values, digits)
        want = [round(v, digits) for v in values.tolist()]
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert (g == w and np.copysign(1, g) == np.copysign(1, w)) or (g != g and w != w)


def test_equal_reason_keys_give_equal_texts() -> None:
    """``make score`` renders each text once per key of the values it reads (reason_key,
    field_key): customers with equal keys must get equal texts, whatever the raw values."""
    from features.catalogue import field_key, reason_key

    rng = np.random.default_rng(9)
    values = [
        *[round(v, d) for v, d in zip(rng.gamma(2, 30, 400), rng.integers(0, 4, 400), strict=True)],
        *(np.arange(-40, 40) / 8).tolist(),  # halves and quarters: rounding boundaries
        *rng.uniform(-1, 1, 200).tolist(),
        0.0,
        -0.0,
        np.nan,
        None,
        "detractor",
    ]
    others = {name: 12.5 for name in catalogue()}
    for name in [*catalogue(), "plan"]:
        texts: dict = {}
        for v in values:
            texts.setdefault(reason_key(name, v), set()).add(reason_text(name, v, others))
        assert all(len(t) == 1 for t in texts.values()), name
        assert len(texts) > 3  # the values do tell customers apart
    # another feature a text names: by its formatted value
    name = "days_since_last_purchase"
    texts = {}
    for v in values:
        text = reason_text(name, 40.0, {"interpurchase_days_mean": v})
        texts.setdefault(field_key("interpurchase_days_mean", v), set()).add(text)
    assert all(len(t) == 1 for t in texts.values()) and len(texts) > 3
