"""CLV over a stated horizon on CDNOW from the raw transactions: the closed-form purchase
distribution against the conditional expectation and lifetimes' unconditional PMF, the 80% intervals' coverage on the 39-week holdout, the
residual value against a direct sum, and the P(alive) notes."""

import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter

from models import btyd
from models.clv import (
    NO_DROPOUT_MODEL,
    NO_REPEAT_PURCHASE,
    CLVModel,
    parameter_covariance,
    parameter_points,
    purchase_distribution,
    residual_purchases,
)
from models.clv_evaluation import calibration_holdout, interval_coverage
from training.cdnow import CALIBRATION_CUTOFF, HOLDOUT_DAYS, HOLDOUT_END, read_cdnow

WEEKS = HOLDOUT_DAYS / 7


@pytest.fixture(scope="module")
def split() -> tuple[pd.DataFrame, pd.DataFrame]:
    return calibration_holdout(read_cdnow("sample"), cutoff=CALIBRATION_CUTOFF, end=HOLDOUT_END)


@pytest.fixture(scope="module")
def models(split) -> dict[str, CLVModel]:
    summary, _ = split
    return {name: CLVModel(model=name).fit(summary) for name in ("bgnbd", "mbgnbd", "nbd")}


def _clock(model: CLVModel, summary: pd.DataFrame) -> tuple[np.ndarray, ...]:
    return model._clock(summary, summary["T_days"])


def _params(model: CLVModel) -> dict[str, float]:
    from models.clv import COUNT_MODELS

    return {k: model.params_[k] for k in COUNT_MODELS[model.model_]}


@pytest.mark.parametrize("name", ["bgnbd", "mbgnbd", "nbd"])
def test_distribution_mean_is_the_conditional_expectation(models, split, name):
    """The mean of the closed-form distribution is the conditional expectation (FHL 2005a
    eq. 10 for BG/NBD; lifetimes' to 1e-12, tests/models/test_btyd.py)."""
    model, (summary, _) = models[name], split
    f, r, t = _clock(model, summary)
    dist = purchase_distribution(name, [_params(model)], f, r, t, t=WEEKS)
    expected = btyd.expected_purchases(name, _params(model), WEEKS, f, r, t)
    # summed until 1e-3 of the probability is left: the mean misses at most that tail's share
    np.testing.assert_allclose(dist.mean, expected, rtol=0.02, atol=0.01)
    assert abs(dist.mean.sum() / np.sum(expected) - 1) < 0.005
    assert ((dist.low <= dist.high) & (dist.low >= 0)).all()


def test_new_customer_distribution_is_lifetimes_unconditional_pmf(models):
    """A customer observed for no time has learnt nothing: the conditional distribution is the
    model's unconditional one, which lifetimes gives per n."""
    model = models["bgnbd"]
    zero = np.zeros(1)
    fitter = BetaGeoFitter()
    fitter.params_ = pd.Series(_params(model))  # lifetimes' fitted attribute, our parameters
    for level in (0.5, 0.8, 0.95):
        dist = purchase_distribution(
            "bgnbd", [_params(model)], zero, zero, zero, t=WEEKS, level=level
        )
        p0 = float(fitter.probability_of_n_purchases_up_to_time(WEEKS, 0))
        assert dist.p_zero[0] == pytest.approx(p0, rel=1e-9)
        cdf = np.cumsum(
            [float(fitter.probability_of_n_purchases_up_to_time(WEEKS, n)) for n in range(40)]
        )
        hi = (1 + level) / 2 if p0 < (1 - level) / 2 else level
        # the upper end is the count whose cumulative probability is nearest the level
        n = int(dist.high[0])
        before = cdf[n - 1] if n > 0 else 0.0
        assert abs(cdf[n] - hi) <= abs(before - hi) + 1e-12 or n == 0
        assert abs(cdf[n] - hi) <= abs(cdf[n + 1] - hi) + 1e-12


def test_parameter_points_carry_the_likelihood_curvature(models, split):
    model, (summary, _) = models["bgnbd"], split
    f, r, t = _clock(model, summary)
    cov = parameter_covariance("bgnbd", _params(model), f, r, t)
    np.testing.assert_allclose(cov, model.params_cov_, rtol=1e-6)
    se = np.sqrt(np.diag(cov))
    assert (se > 0.01).all() and (se < 1).all()  # 2,357 customers pin the parameters loosely
    points = np.log([list(p.values()) for p in parameter_points("bgnbd", _params(model), cov)])
    np.testing.assert_allclose(points.mean(axis=0), np.log(list(_params(model).values())))
    np.testing.assert_allclose(np.cov(points.T, bias=True), cov, rtol=1e-8, atol=1e-12)
    # and the covariance survives the JSON round trip
    again = CLVModel.from_dict(model.to_dict())
    np.testing.assert_allclose(np.asarray(again.params_cov_), cov, rtol=1e-12)


@pytest.mark.parametrize("name", ["bgnbd", "mbgnbd"])
def test_interval_coverage_on_the_cdnow_holdout_is_80_percent(models, split, name):
    summary, actuals = split
    coverage = interval_coverage(models[name], summary, actuals, horizon_days=HOLDOUT_DAYS)
    assert coverage["n_intervals"] == len(summary)
    assert coverage["purchases_interval_coverage"] == pytest.approx(0.80, abs=0.05)
    assert coverage["spend_interval_coverage"] == pytest.approx(0.80, abs=0.05)


def test_intervals_hold_the_clv_and_follow_the_horizon(models, split):
    model, (summary, _) = models["bgnbd"], split
    year = model.predict(summary, horizon_days=365)
    value = model.predict_value(summary, year, horizon_days=365)
    assert (value["clv_low"] <= year["clv"] + 1e-9).all()
    assert (value["clv_high"] >= value["clv_low"]).all()
    inside = (year["clv"] >= value["clv_low"]) & (year["clv"] <= value["clv_high"])
    # customers sure to buy: the mean lies inside; customers who most likely buy nothing have
    # an interval from 0, mostly [0, 0] (80% of their probability), below their small mean
    assert inside[value["purchases_low"] >= 1].mean() > 0.95
    likely_none = value["purchases_high"] == 0
    assert (value.loc[likely_none, "clv_low"] == 0).all()
    assert (value.loc[likely_none, "clv_high"] < year.loc[likely_none, "clv"]).mean() > 0.95
    quarter = model.predict(summary, horizon_days=90)
    short = model.predict_value(summary, quarter, horizon_days=90)
    assert short["clv_high"].sum() < value["clv_high"].sum()
    assert (short["purchases_high"] <= value["purchases_high"]).all()


def test_residual_value_equals_a_direct_discounted_sum(models, split):
    model, (summary, _) = models["bgnbd"], split
    f, r, t = _clock(model, summary)
    delta = np.log1p(0.10) * 7 / 365
    dert = residual_purchases("bgnbd", _params(model), f, r, t, discount_per_unit=delta)
    rows = np.r_[np.flatnonzero(f == 0)[:5], np.flatnonzero(f == 1)[:5], np.argsort(-f)[:5]]
    # sum over weekly steps for 150 years of the expected purchases' increments, discounted at
    # each step's midpoint (the conditional expectation)
    grid = np.arange(0, 52 * 150 + 1, 1.0)
    cum = btyd.expected_purchases("bgnbd", _params(model), grid[:, None], f[rows], r[rows], t[rows])
    direct = (np.diff(cum, axis=0) * np.exp(-delta * (grid[1:] + grid[:-1]) / 2)[:, None]).sum(0)
    np.testing.assert_allclose(dert[rows], direct, rtol=0.01)
    # the residual value covers more than a year's discounted spend
    year = model.predict(summary, horizon_days=365)
    value = model.predict_value(summary, year, horizon_days=365)
    assert (value["residual_clv"] >= year["clv"] - 1e-9).all()


def test_p_alive_is_null_with_a_reason_where_the_model_makes_it_misleading(models, split):
    summary, actuals = split
    one_purchase = (summary["frequency"] == 0).to_numpy()
    bg = models["bgnbd"]
    raw = bg.predict(summary, horizon_days=HOLDOUT_DAYS)
    value = bg.predict_value(summary, raw, horizon_days=HOLDOUT_DAYS)
    # BG/NBD: 1.0 for every one-purchase customer, whatever happened since ...
    assert (raw.loc[one_purchase, "p_alive"] == 1.0).all()
    bought = actuals["purchases"].reindex(summary.index).fillna(0).to_numpy() > 0
    # ... while fewer of them buy again in the holdout than of the repeat buyers
    assert bought[one_purchase].mean() < bought[~one_purchase].mean()
    assert value["p_alive"][one_purchase].isna().all()
    assert (value["p_alive_note"][one_purchase] == NO_REPEAT_PURCHASE).all()
    assert value["p_alive_note"][~one_purchase].isna().all()
    np.testing.assert_array_equal(value["p_alive"][~one_purchase], raw["p_alive"][~one_purchase])
    # MBG/NBD lets customers drop out before a repeat purchase: its P(alive) is given
    mbg = models["mbgnbd"]
    mvalue = mbg.predict_value(summary, mbg.predict(summary, horizon_days=90), horizon_days=90)
    assert mvalue["p_alive_note"].isna().all()
    assert (mvalue["p_alive"][one_purchase] < 0.9).all()
    # NBD has no dropout at all
    nbd = models["nbd"]
    nvalue = nbd.predict_value(summary, nbd.predict(summary, horizon_days=90), horizon_days=90)
    assert (nvalue["p_alive_note"] == NO_DROPOUT_MODEL).all()
    assert nvalue["residual_clv"].isna().all()


def test_a_model_saved_without_covariance_still_gives_intervals(models, split):
    summary, _ = split
    data = models["bgnbd"].to_dict()
    del data["params_cov"]
    old = CLVModel.from_dict(data)
    pred = old.predict(summary, horizon_days=365)
    value = old.predict_value(summary, pred, horizon_days=365)
    assert value[["clv_low", "clv_high", "residual_clv"]].notna().all().all()
