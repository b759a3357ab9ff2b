"""The learned ranking CLV as served: refitted on the latest window of the CDNOW sample, stored
in the bundle as LightGBM text + JSON (sha256 checked before parsing), and used by scoring --
batch and the one-customer live path alike -- when training chose it; BG/NBD otherwise."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.schema import Tables
from models.bundle import (
    LEARNED_META_FILE,
    Bundle,
    BundleError,
    learned_file,
    read_bundle,
    write_bundle,
)
from models.churn import ChurnModel
from models.clv import CLVModel
from models.clv_evaluation import LEARNED, LEARNED_BTYD_TOTAL, CandidatesEvaluation, spearman
from models.clv_learned import PARTS, LearnedCLV, learning_window_days
from models.contractual import ContractualCLV
from models.scoring import score_columns, score_frame
from training.cdnow import HOLDOUT_DAYS, HOLDOUT_END, read_cdnow
from training.clv_fit import fit_ranking_clv, ranking_clv

CLV_HORIZON = 365
META = {"horizon_days": 90, "risk_thresholds": {"medium": 0.3, "high": 0.6}}


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return read_cdnow("sample")


@pytest.fixture(scope="module")
def frame(sample) -> pd.DataFrame:
    """Every sample customer's features at the end of the file, as make score builds them."""
    return build_features(Tables(transactions=sample), as_of=HOLDOUT_END)


@pytest.fixture(scope="module")
def btyd(frame) -> CLVModel:
    return CLVModel().fit(frame.dropna(subset=["T_days"]), as_of=HOLDOUT_END)


@pytest.fixture(scope="module")
def churn(frame) -> ChurnModel:
    x = frame[["frequency", "recency_days"]]
    y = (x["recency_days"].fillna(0) < 120).astype(int)
    return ChurnModel(num_boost_round=10).fit(x, y)


def _served(sample, btyd, *, rescale: bool) -> LearnedCLV:
    evaluated = LearnedCLV(feature_set="all", n_trees=50)
    return fit_ranking_clv(
        sample,
        evaluated=evaluated,
        btyd=btyd,
        rescale=rescale,
        data_end=HOLDOUT_END,
        horizon_days=HOLDOUT_DAYS,
        clv_horizon_days=CLV_HORIZON,
    )


@pytest.fixture(scope="module")
def learned(sample, btyd) -> LearnedCLV:
    return _served(sample, btyd, rescale=True)


@pytest.fixture(scope="module")
def scores(churn, btyd, learned, frame) -> dict[str, pd.DataFrame]:
    out = {}
    for name, model in (("bgnbd", None), ("learned", learned)):
        bundle = Bundle(churn, btyd, meta=dict(META), clv_learned=model)
        out[name] = score_frame(bundle, frame, clv_horizon_days=CLV_HORIZON)
    return out


def test_served_model_is_refitted_on_the_latest_window(sample, learned):
    first = sample["timestamp"].min().floor("D")
    assert learned.window_days == learning_window_days(first, HOLDOUT_END, HOLDOUT_DAYS)
    assert (learned.feature_set, learned.n_trees) == ("all", 50)
    assert set(learned.boosters_) == set(PARTS)
    # rescaled: the factors are the BTYD total over the learned one, not 1
    assert learned.scale_spend != 1.0 and learned.scale_purchases != 1.0


def test_bundle_round_trip_with_the_learned_model(tmp_path, churn, btyd, learned, frame):
    bundle = Bundle(churn, btyd, meta=dict(META), clv_learned=learned)
    digest = write_bundle(tmp_path, bundle)
    again = read_bundle(tmp_path, expected_manifest_sha256=digest)
    assert again.clv_model == LEARNED and bundle.clv_model == LEARNED
    assert again.clv_learned.meta() == learned.meta()
    assert again.clv_learned.booster_texts() == learned.booster_texts()
    pd.testing.assert_frame_equal(
        score_frame(again, frame, clv_horizon_days=CLV_HORIZON),
        score_frame(bundle, frame, clv_horizon_days=CLV_HORIZON),
    )


@pytest.mark.parametrize("victim", [LEARNED_META_FILE, *(learned_file(p) for p in PARTS)])
def test_a_tampered_learned_file_is_refused(tmp_path, churn, btyd, learned, victim):
    digest = write_bundle(tmp_path, Bundle(churn, btyd, meta=dict(META), clv_learned=learned))
    path = tmp_path / victim
    path.write_text(path.read_text() + " ", encoding="utf-8")
    with pytest.raises(BundleError, match="sha256 differs"):
        read_bundle(tmp_path, expected_manifest_sha256=digest)


def test_scoring_ranks_by_the_learned_model_and_keeps_the_btyd_total(scores, frame):
    ours, theirs = scores["learned"], scores["bgnbd"]
    bought = theirs["clv"].notna()
    assert bought.sum() == frame["T_days"].notna().sum()
    # another ranking: not BG/NBD's (nor a monotone transform of it)
    rho = spearman(ours.loc[bought, "clv"], theirs.loc[bought, "clv"])
    assert 0.5 < rho < 0.999
    # the BTYD total was closer on the holdout: the served totals are BG/NBD's (same
    # customers and horizon as the factors were set on)
    assert ours["clv"].sum() == pytest.approx(theirs["clv"].sum(), rel=1e-9)
    assert ours["expected_purchases"].sum() == pytest.approx(
        theirs["expected_purchases"].sum(), rel=1e-9
    )
    # P(alive) and the order value stay BG/NBD's; the interval is BG/NBD's scaled per customer
    pd.testing.assert_series_equal(ours["p_alive"], theirs["p_alive"])
    pd.testing.assert_series_equal(ours["expected_order_value"], theirs["expected_order_value"])
    has = theirs["clv_high"].notna() & (theirs["clv"] > 0)
    assert has.any()
    rel = (ours["clv_high"] / ours["clv"])[has]
    np.testing.assert_allclose(rel, (theirs["clv_high"] / theirs["clv"])[has], rtol=1e-9)
    assert (ours.loc[has, "clv_low"] <= ours.loc[has, "clv"] * (1 + 1e-9)).all()
    np.testing.assert_allclose(ours["value_at_risk"], ours["churn_probability"] * ours["clv"])


def test_without_rescaling_the_learned_total_is_its_own(
    sample, btyd, churn, frame, scores, learned
):
    own = _served(sample, btyd, rescale=False)
    assert own.scale_spend == own.scale_purchases == 1.0
    bundle = Bundle(churn, btyd, meta=dict(META), clv_learned=own)
    unscaled = score_frame(bundle, frame, clv_horizon_days=CLV_HORIZON)
    # the same boosters (deterministic): the rescaled scores are these times the factor
    np.testing.assert_allclose(scores["learned"]["clv"], learned.scale_spend * unscaled["clv"])
    assert unscaled["clv"].sum() != pytest.approx(scores["bgnbd"]["clv"].sum(), rel=1e-3)


def test_one_customer_live_path_equals_the_batch_row(churn, btyd, learned, frame, scores):
    bundle = Bundle(churn, btyd, meta=dict(META), clv_learned=learned)
    batch = scores["learned"]
    for customer in (batch["clv"].idxmax(), batch["clv"].idxmin()):
        live = score_columns(bundle, frame.loc[[customer]], clv_horizon_days=CLV_HORIZON)
        for col in ("clv", "expected_purchases", "value_at_risk"):
            assert live[col][0] == pytest.approx(batch.loc[customer, col], rel=1e-9)
        # the BG/NBD interval itself moves by ~1e-4 between one customer and a population
        # (its quadrature, models/clv.py); the learned scaling adds nothing to that
        for col in ("clv_low", "clv_high"):
            assert live[col][0] == pytest.approx(batch.loc[customer, col], rel=1e-3, nan_ok=True)


def _comparison(chosen: str, learned: LearnedCLV | None, notes=None) -> CandidatesEvaluation:
    return CandidatesEvaluation(pd.DataFrame(), pd.DataFrame(), chosen, notes or {}, learned)


def test_btyd_serves_when_the_learned_model_does_not_win(sample, btyd, churn, frame, scores):
    kwargs = {
        "btyd": btyd,
        "data_end": HOLDOUT_END,
        "horizon_days": HOLDOUT_DAYS,
        "clv_horizon_days": CLV_HORIZON,
    }
    served, why = ranking_clv(sample, _comparison("bgnbd", LearnedCLV()), **kwargs)
    assert served is None and "did not win" in why
    bundle = Bundle(churn, btyd, meta=dict(META))
    assert bundle.clv_model == "bgnbd"
    pd.testing.assert_frame_equal(
        score_frame(bundle, frame, clv_horizon_days=CLV_HORIZON), scores["bgnbd"]
    )
    chosen, why = ranking_clv(
        sample, _comparison(LEARNED_BTYD_TOTAL, LearnedCLV(feature_set="core")), **kwargs
    )
    assert chosen is not None and chosen.scale_spend != 1.0 and why.startswith("learned")


def test_one_period_of_history_degrades_with_one_warning(sample, btyd, caplog):
    # a single day of purchases: no earlier window to learn from
    one_day = sample.loc[sample["timestamp"] == sample["timestamp"].min()]
    end = one_day["timestamp"].max() + pd.Timedelta(days=1)
    with caplog.at_level(logging.WARNING):
        served, why = ranking_clv(
            one_day,
            _comparison(LEARNED, LearnedCLV()),
            btyd=btyd,
            data_end=end,
            horizon_days=HOLDOUT_DAYS,
            clv_horizon_days=CLV_HORIZON,
        )
    assert served is None and "did not refit" in why
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "serving bgnbd" in warnings[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        served, _ = ranking_clv(
            one_day,
            _comparison("bgnbd", None, {LEARNED: "too little history"}),
            btyd=btyd,
            data_end=end,
            horizon_days=HOLDOUT_DAYS,
            clv_horizon_days=CLV_HORIZON,
        )
    assert served is None
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "CLV learned ranking model not fitted (too little history); serving bgnbd"
    ]


def test_contractual_bundle_reports_sbg():
    # heterogeneous churn rates (the sBG's beta mixture), observed for eight periods
    rng = np.random.default_rng(0)
    life = rng.geometric(rng.beta(0.7, 1.2, 2000))
    tenure, churned = np.minimum(life - 1, 8).astype(float), life <= 8
    model = ContractualCLV(period_days=30).fit(tenure, churned=churned)
    bundle = Bundle(ChurnModel(), model, meta=dict(META))
    assert bundle.clv_model == model.model_ == "sbg"
    assert dataclasses.replace(bundle, clv=None).clv_model is None


def test_residual_value_has_no_horizon(churn, btyd, learned, frame, scores):
    bundle = Bundle(churn, btyd, meta=dict(META), clv_learned=learned)
    half = score_frame(bundle, frame, clv_horizon_days=180)
    year = scores["learned"]
    pd.testing.assert_series_equal(half["residual_clv"], year["residual_clv"])
    bought = year["clv"].notna()
    assert (half.loc[bought, "clv"] <= year.loc[bought, "clv"] + 1e-9).all()
    assert half.loc[bought, "clv"].sum() < year.loc[bought, "clv"].sum()
