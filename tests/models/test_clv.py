"""CLV model: published CDNOW parameters, the four count models, convergence errors, the T
convention, JSON round trip (both formats), sane outputs."""

import json
from importlib.resources import files

import numpy as np
import pandas as pd
import pytest
from autograd import hessian
from lifetimes import BetaGeoFitter

from models import btyd
from models.clv import (
    COUNT_MODELS,
    FORMAT,
    CLVModel,
    CLVModelError,
    fit_purchases,
    purchase_log_likelihood,
    summary_counts,
)


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    """The published CDNOW calibration summary (Fader, Hardie & Lee 2005), shipped in lifetimes,
    in weeks; converted to the feature builder's day columns. Its T already runs to the last
    day observed (1997-09-30), so models read it with ``observation_end="as_of"``."""
    path = files("lifetimes") / "datasets" / "cdnow_customers_summary_with_transactions.csv"
    raw = pd.read_csv(str(path))
    return pd.DataFrame(
        {
            "frequency": raw["x"],
            "recency_days": raw["t_x"] * 7,
            "T_days": raw["T"] * 7,
            "monetary_repeat_mean": raw["zbar"],
        }
    ).set_index(pd.Index(raw["ID"].astype(str), name="customer_id"))


@pytest.fixture(scope="module")
def fitted(cdnow) -> CLVModel:
    return CLVModel(time_unit_days=7, observation_end="as_of").fit(cdnow)


def test_bgnbd_reproduces_published_cdnow_parameters(fitted):
    p = fitted.params_
    # Fader, Hardie & Lee (2005a), BG/NBD on CDNOW: r .243, alpha 4.414, a .793, b 2.426, LL -9582.4
    assert p["r"] == pytest.approx(0.243, abs=5e-4)
    assert p["alpha"] == pytest.approx(4.414, abs=5e-4)
    assert p["a"] == pytest.approx(0.793, abs=5e-4)
    assert p["b"] == pytest.approx(2.426, abs=5e-4)
    assert fitted.log_likelihood_ == pytest.approx(-9582.4, abs=0.05)
    # compressed fit: far fewer rows than customers
    assert fitted.n_customers_ == 2357 and fitted.n_rows_fitted_ < 2357


def test_gamma_gamma_reproduces_published_cdnow_parameters(fitted):
    # Fader, Hardie & Lee (2005b) / lifetimes' docs, on the published summary: p 6.25, q 3.74,
    # gamma 15.44
    p = fitted.params_
    assert p["p"] == pytest.approx(6.25, abs=0.01)
    assert p["q"] == pytest.approx(3.74, abs=0.01)
    assert p["v"] == pytest.approx(15.44, abs=0.01)
    # the assumption Gamma-Gamma rests on, reported: frequency and spend nearly uncorrelated
    assert 0 < fitted.spend_frequency_corr_ < 0.2
    assert fitted.n_spend_customers_ == 946 and fitted.n_spend_excluded_ == 0


def test_pareto_nbd_reproduces_published_cdnow_parameters(cdnow):
    # Fader, Hardie & Lee (2005), note 008: r .5533, alpha 10.5776, s .6061, beta 11.6650, LL -9595.0
    model = CLVModel(model="pareto_nbd", observation_end="as_of").fit(cdnow)
    p = model.params_
    assert p["r"] == pytest.approx(0.5533, abs=1e-3)
    assert p["alpha"] == pytest.approx(10.5776, abs=0.01)
    assert p["s"] == pytest.approx(0.6061, abs=1e-3)
    assert p["beta"] == pytest.approx(11.665, abs=0.01)
    assert model.log_likelihood_ == pytest.approx(-9595.0, abs=0.05)


def test_nbd_reproduces_published_cdnow_parameters(cdnow):
    # Fader, Hardie & Lee (2005a), the NBD benchmark on CDNOW: r .385, alpha 12.072, LL -9763.7
    model = CLVModel(model="nbd", observation_end="as_of").fit(cdnow)
    assert model.params_["r"] == pytest.approx(0.385, abs=5e-4)
    assert model.params_["alpha"] == pytest.approx(12.072, abs=5e-4)
    assert model.log_likelihood_ == pytest.approx(-9763.7, abs=0.05)


def _gamma_poisson(n: int, r: float, alpha: float, *, seed: int, horizon: float = 0.0):
    """Customers of the NBD process (rate gamma(r, alpha), weeks, no dropout), each observed
    for a T of 20 to 100 weeks after a first purchase: (frequency, recency, T) and the
    purchases in the ``horizon`` weeks after T."""
    rng = np.random.default_rng(seed)
    T = rng.uniform(20, 100, n)
    rate = rng.gamma(r, 1 / alpha, n)
    x = rng.poisson(rate * T)
    recency = np.where(x > 0, T * rng.random(n) ** (1 / np.maximum(x, 1)), 0.0)  # last event
    return x, recency, T, rng.poisson(rate * horizon)


def test_nbd_mle_recovers_known_parameters_within_its_standard_error():
    r, alpha, n = 2.0, 40.0, 20_000
    x, recency, T, _ = _gamma_poisson(n, r, alpha, seed=11)
    fit = fit_purchases(x, recency, T, model="nbd")

    # standard errors of (log r, log alpha) from the observed information of n customers
    def total_nll(log_params):
        return n * btyd.count_negative_log_likelihood(
            "nbd", log_params, x, recency, T, np.ones(n), 0
        )

    estimate = np.log([fit.params["r"], fit.params["alpha"]])
    se = np.sqrt(np.diag(np.linalg.inv(hessian(total_nll)(estimate))))
    assert 0 < se.max() < 0.1  # ~1 / sqrt(n): the sample pins the parameters down
    error = np.abs(estimate - np.log([r, alpha]))
    assert (error < 4 * se).all(), (fit.params, se)
    assert fit.n_customers == n


def test_nbd_expected_purchases_match_the_simulated_mean():
    r, alpha, horizon_weeks = 0.8, 12.0, 26.0
    x, recency, T, future = _gamma_poisson(200_000, r, alpha, seed=12, horizon=horizon_weeks)
    frame = _summary(x.astype(float), recency * 7, T * 7, np.nan)
    model = CLVModel(model="nbd", observation_end="as_of", spend=False).fit(frame)
    out = model.predict(frame, horizon_days=horizon_weeks * 7)
    assert (out["p_alive"] == 1).all()
    p = model.params_
    np.testing.assert_allclose(
        out["expected_purchases"], (p["r"] + x) / (p["alpha"] + T) * horizon_weeks
    )
    # the model's conditional expectation against the process's own future, by frequency
    sim = pd.DataFrame(
        {"x": np.minimum(x, 6), "future": future, "expected": out["expected_purchases"]}
    )
    groups = sim.groupby("x").agg(
        actual=("future", "mean"),
        sd=("future", "std"),
        n=("future", "size"),
        expected=("expected", "mean"),
    )
    se = groups["sd"] / np.sqrt(groups["n"])
    assert (np.abs(groups["actual"] - groups["expected"]) < 4 * se).all(), groups
    assert abs(sim["future"].mean() / sim["expected"].mean() - 1) < 0.02


def test_compressed_fit_matches_plain_lifetimes_fit(cdnow):
    x, r, t = cdnow["frequency"], cdnow["recency_days"] / 7, cdnow["T_days"] / 7
    ours = fit_purchases(x, r, t, model="bgnbd")
    plain = BetaGeoFitter().fit(x, r, t)
    for k, v in plain.params_.items():
        assert ours.params[k] == pytest.approx(v, rel=1e-4)
    assert ours.n_rows < ours.n_customers == 2357


@pytest.mark.parametrize("model", list(COUNT_MODELS))
def test_warm_start_from_the_coarse_grid_changes_nothing(cdnow, model, monkeypatch):
    x, r, t = cdnow["frequency"], cdnow["recency_days"] / 7, cdnow["T_days"] / 7
    cold = fit_purchases(x, r, t, model=model)
    monkeypatch.setattr("models.clv.WARM_START_ROWS", 0)
    warm = fit_purchases(x, r, t, model=model)
    for k, v in cold.params.items():
        assert warm.params[k] == pytest.approx(v, rel=1e-4)


@pytest.mark.parametrize("model", list(COUNT_MODELS))
def test_each_count_model_fits_and_round_trips(cdnow, model):
    fitted = CLVModel(model=model, observation_end="as_of").fit(cdnow)
    assert fitted.model_ == model
    assert set(fitted.params_) == {*COUNT_MODELS[model], "p", "q", "v"}
    assert fitted.log_likelihood_ == pytest.approx(
        purchase_log_likelihood(
            model,
            fitted.params_,
            cdnow["frequency"],
            cdnow["recency_days"] / 7,
            cdnow["T_days"] / 7,
        )
    )
    again = CLVModel.from_dict(json.loads(json.dumps(fitted.to_dict(), allow_nan=False)))
    a = fitted.predict(cdnow, horizon_days=273)
    pd.testing.assert_frame_equal(a, again.predict(cdnow, horizon_days=273))
    assert np.isfinite(a.to_numpy()).all() and a["p_alive"].between(0, 1).all()
    if model == "nbd":  # no dropout: everybody alive, so more purchases than the others
        assert (a["p_alive"] == 1).all() and a["expected_purchases"].sum() > 1650 * 1.5
    else:  # the three dropout models agree on the holdout purchases within a few percent
        assert a["expected_purchases"].sum() == pytest.approx(1650, rel=0.05)


def test_auto_chooses_by_holdout_log_likelihood(cdnow):
    model = CLVModel(model="auto", observation_end="as_of").fit(cdnow)
    scores = model.selection_
    assert set(scores) == set(COUNT_MODELS)
    assert model.model_ == max(scores, key=scores.get)
    assert model.to_dict()["model_requested"] == "auto"
    # deterministic: the held-out customers are chosen by a hash of their ids
    assert CLVModel(model="auto", observation_end="as_of").fit(cdnow).selection_ == scores


def test_json_round_trip_predicts_identically(fitted, cdnow):
    data = fitted.to_dict()
    assert data["format"] == FORMAT and data["kind"] == "bgnbd+gammagamma"
    assert data["time_unit"] == "weeks" and data["time_unit_days"] == 7
    assert data["observation_end"] == "as_of" and data["model_requested"] == "bgnbd"
    again = CLVModel.from_dict(json.loads(json.dumps(data)))
    a = fitted.predict(cdnow, horizon_days=90)
    b = again.predict(cdnow, horizon_days=90)
    pd.testing.assert_frame_equal(a, b)
    assert again.to_dict() == data


def test_first_format_still_loads_and_predicts_as_before(fitted, cdnow):
    """A format-1 dict (no ``format`` key) took ``T_days`` as given."""
    old = {
        "kind": "bgnbd+gammagamma",
        "time_unit_days": 7.0,
        "penalizer": 0.0,
        "annual_discount_rate": 0.1,
        "params": fitted.params_,
        "n_customers": 2357,
    }
    loaded = CLVModel.from_dict(old)
    assert loaded.observation_end == "as_of" and loaded.model_ == "bgnbd"
    pd.testing.assert_frame_equal(
        loaded.predict(cdnow, horizon_days=90), fitted.predict(cdnow, horizon_days=90)
    )
    # and saves in the current format, keeping what it was fitted with
    again = CLVModel.from_dict(json.loads(json.dumps(loaded.to_dict(), allow_nan=False)))
    assert again.to_dict()["format"] == FORMAT and again.observation_end == "as_of"
    pd.testing.assert_frame_equal(
        again.predict(cdnow, horizon_days=90), fitted.predict(cdnow, horizon_days=90)
    )
    with pytest.raises(ValueError, match="reads formats"):
        CLVModel.from_dict({**fitted.to_dict(), "format": FORMAT + 1})


def test_fit_window_recorded(cdnow):
    model = CLVModel(observation_end="as_of").fit(cdnow, as_of=pd.Timestamp("1997-10-01", tz="UTC"))
    window = model.to_dict()["fit_window"]
    assert window["end"] == "1997-10-01T00:00:00+00:00"
    assert pd.Timestamp(window["start"]) < pd.Timestamp("1997-01-02", tz="UTC")


def test_last_day_convention_counts_T_to_the_day_before_as_of(fitted, cdnow):
    """The feature frame's T runs to as_of (midnight after the last day observed); the model's
    T to the last day observed, as in the papers: T_days 273 reads as T 272 days."""
    as_features = cdnow.assign(T_days=np.round(cdnow["T_days"]) + 1)
    last_day = CLVModel.from_dict({**fitted.to_dict(), "observation_end": "last_day"})
    pd.testing.assert_frame_equal(
        last_day.predict(as_features, horizon_days=90),
        fitted.predict(cdnow.assign(T_days=np.round(cdnow["T_days"])), horizon_days=90),
    )


def test_time_unit_does_not_change_predictions(cdnow):
    weeks = CLVModel(time_unit="weeks", observation_end="as_of").fit(cdnow)
    days = CLVModel(time_unit="days", observation_end="as_of").fit(cdnow)
    assert days.params_["alpha"] == pytest.approx(7 * weeks.params_["alpha"], rel=1e-3)
    assert days.params_["r"] == pytest.approx(weeks.params_["r"], rel=1e-3)
    a = weeks.predict(cdnow, horizon_days=180)
    b = days.predict(cdnow, horizon_days=180)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=2e-3, atol=1e-6)


def test_outputs_are_sane(fitted, cdnow):
    out = fitted.predict(cdnow, horizon_days=90)
    assert out["p_alive"].between(0, 1).all()
    assert (out["clv"] >= 0).all() and (out["expected_purchases"] >= 0).all()
    longer = fitted.predict(cdnow, horizon_days=365)
    assert (longer["clv"] >= out["clv"] - 1e-9).all()
    # discounting: zero discount gives more value than 10% a year
    undiscounted = CLVModel.from_dict({**fitted.to_dict(), "annual_discount_rate": 0.0})
    assert undiscounted.predict(cdnow, horizon_days=365)["clv"].sum() > longer["clv"].sum()
    # with no discount, CLV is expected purchases times expected order value
    flat = undiscounted.predict(cdnow, horizon_days=365)
    np.testing.assert_allclose(
        flat["clv"], flat["expected_purchases"] * flat["expected_order_value"], rtol=1e-9
    )


def test_customers_without_purchases_get_finite_scores(fitted):
    new = pd.DataFrame(
        {
            "frequency": [0.0],
            "recency_days": [np.nan],
            "T_days": [np.nan],
            "monetary_repeat_mean": [np.nan],
            "tenure_days": [10.0],
        }
    )
    out = fitted.predict(new, horizon_days=90)
    assert np.isfinite(out.to_numpy()).all()


def _summary(frequency, recency, T, monetary) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "frequency": frequency,
            "recency_days": recency,
            "T_days": T,
            "monetary_repeat_mean": monetary,
        }
    )


def test_non_positive_spend_is_excluded_and_counted(cdnow):
    spoiled = cdnow.copy()
    repeat = spoiled.index[spoiled["frequency"] > 0][:7]
    spoiled.loc[repeat[:4], "monetary_repeat_mean"] = 0.0
    spoiled.loc[repeat[4:], "monetary_repeat_mean"] = -5.0
    model = CLVModel(observation_end="as_of").fit(spoiled)
    assert model.n_spend_excluded_ == 7 and model.n_spend_customers_ == 946 - 7
    assert model.to_dict()["diagnostics"]["n_spend_excluded"] == 7


def _homogeneous(n: int = 300) -> pd.DataFrame:
    """Repeat purchases spread evenly: no heterogeneity in dropout for BG/NBD to find."""
    rng = np.random.default_rng(3)
    freq = rng.integers(1, 6, n).astype(float)
    T = rng.integers(100, 300, n).astype(float)
    rec = np.minimum(np.floor(T * rng.random(n)) + 1, T - 1)
    return _summary(freq, rec, T, rng.gamma(4.0, 10.0, n))


def test_boundary_parameters_raise_a_clear_error_and_the_penalizer_helps():
    # Unidentified parameters either run to the boundary or stop BFGS on precision loss,
    # depending on the summation order of the condensed table; both name the penalizer.
    unidentified = r"bgnbd: (parameters .* ran to the boundary|the optimiser failed).*penalizer"
    with pytest.raises(CLVModelError, match=unidentified):
        CLVModel().fit(_homogeneous())
    model = CLVModel(penalizer=0.001).fit(_homogeneous())
    assert all(np.isfinite(v) for v in model.params_.values())


def test_no_repeat_purchases_raise_a_clear_error():
    n = 200
    summary = _summary(np.zeros(n), np.zeros(n), np.linspace(30, 300, n), np.nan)
    with pytest.raises(CLVModelError, match="no customer has a repeat purchase"):
        CLVModel().fit(summary)


def test_degenerate_spend_raises_a_clear_error(cdnow):
    """Every repeat buyer spends exactly the same: Gamma-Gamma's shape runs off."""
    same = cdnow.assign(
        monetary_repeat_mean=cdnow["monetary_repeat_mean"].where(cdnow["frequency"] == 0, 20.0)
    )
    with pytest.raises(CLVModelError, match=r"Gamma-Gamma: .*penalizer"):
        CLVModel(observation_end="as_of").fit(same)


def test_non_finite_predictions_raise_instead_of_nan(fitted, cdnow):
    broken = CLVModel.from_dict(
        {**fitted.to_dict(), "params": {**fitted.params_, "a": 1.0}}  # (a-1) divides eq. (10)
    )
    with pytest.raises(CLVModelError, match="non-finite"):
        broken.predict(cdnow, horizon_days=90)


def test_too_few_customers():
    with pytest.raises(CLVModelError, match="too few"):
        CLVModel().fit(_summary([1, 2], [10, 20], [30, 40], [5.0, 6.0]))


def test_condensed_summaries_of_shuffled_parts_fit_the_same_parameters(cdnow):
    """What a cluster sends: each partition's condensed summary, in any order, condensed
    again; the fit is the per-customer fit to the last bit."""
    whole = CLVModel().fit(cdnow)
    shuffled = cdnow.sample(frac=1.0, random_state=5)
    parts = [summary_counts(shuffled.iloc[i::3]) for i in range(3)]
    gathered = summary_counts(pd.concat(parts[::-1]))
    assert len(gathered) < len(cdnow)
    assert gathered["weight"].sum() == cdnow["T_days"].notna().sum()
    condensed = CLVModel().fit(gathered, weight_column="weight")
    assert condensed.params_ == whole.params_
    assert condensed.n_customers_ == whole.n_customers_
    assert condensed.n_spend_customers_ == whole.n_spend_customers_
    assert condensed.log_likelihood_ == whole.log_likelihood_


def test_value_of_a_customer_alone_is_its_row_of_the_whole_summary(fitted, cdnow):
    """The intervals and residual value are summed per customer to that customer's own tail
    (in blocks of counts for a few customers, count by count for many), so scoring one
    customer alone, as ``/v1/predict`` does, gives its row of the batch."""
    sample = cdnow.iloc[::50]  # 48 customers, repeat buyers and one-time buyers
    whole = fitted.predict_value(sample, fitted.predict(sample, horizon_days=365), horizon_days=365)
    assert whole["clv_high"].notna().sum() > 20
    for i in range(0, len(sample), 7):
        one = sample.iloc[[i]]
        alone = fitted.predict_value(one, fitted.predict(one, horizon_days=365), horizon_days=365)
        for col in ("purchases_low", "purchases_high", "clv_low", "clv_high", "residual_clv"):
            assert alone[col].iloc[0] == pytest.approx(whole[col].iloc[i], rel=1e-12, nan_ok=True)


@pytest.mark.parametrize("horizon", [30, 90, 365])
def test_count_columns_are_predicts_values(fitted, cdnow, horizon):
    """The churn features' P(alive) and expected purchases without the spend model are
    exactly :meth:`CLVModel.predict`'s columns."""
    full = fitted.predict(cdnow, horizon_days=horizon)
    counts = fitted.count_columns(cdnow, horizon_days=horizon)
    assert list(counts) == ["p_alive", "expected_purchases"]
    for col, values in counts.items():
        np.testing.assert_array_equal(values, full[col].to_numpy(), strict=True)


@pytest.mark.parametrize("rows", [slice(None), [3], [0]])
def test_array_columns_are_the_frames_values(fitted, cdnow, rows):
    """``inputs`` / ``predict_columns`` / ``count_columns`` / ``value_columns`` (the scoring
    path, no frames) give :meth:`CLVModel.predict`'s and
    ``predict_value``'s values to the last bit, for a batch and for one customer; the note
    stays an object array of None and reason codes."""
    summary = cdnow.iloc[rows]
    inputs = fitted.inputs(summary)
    assert set(inputs) == {"frequency", "recency_days", "T_days", "monetary_repeat_mean"}
    assert all(v.dtype == np.float64 and len(v) == len(summary) for v in inputs.values())
    for source in (inputs, summary):
        predicted = fitted.predict_columns(source, horizon_days=365)
        frame = fitted.predict(summary, horizon_days=365)
        assert list(predicted) == list(frame.columns)
        for col, values in predicted.items():
            np.testing.assert_array_equal(values, frame[col].to_numpy(), strict=True)
        counts = fitted.count_columns(source, horizon_days=90)
        counts_frame = fitted.predict(summary, horizon_days=90)
        for col, values in counts.items():
            np.testing.assert_array_equal(values, counts_frame[col].to_numpy(), strict=True)
        value = fitted.value_columns(source, predicted, horizon_days=365)
        value_frame = fitted.predict_value(summary, frame, horizon_days=365)
        assert list(value) == list(value_frame.columns)
        for col, values in value.items():
            if col != "p_alive_note":
                np.testing.assert_array_equal(values, value_frame[col].to_numpy(), strict=True)
        note = value["p_alive_note"]
        assert note.dtype == object
        expected = np.where(inputs["frequency"] == 0, "no_repeat_purchase", None)
        assert note.tolist() == expected.tolist()
