"""models/btyd.py against lifetimes' public outputs on the published CDNOW summary (Fader,
Hardie & Lee 2005a), shipped with lifetimes: fitted ``params_``, ``conditional_probability_
alive``, ``conditional_expected_number_of_purchases_up_to_time`` and Gamma-Gamma's
``conditional_expected_average_profit``.

Tolerance: relative 1e-12 (``RTOL``). The formulas are the published ones, in the same order
of floating-point operations as lifetimes' own, so the values agree to the last bit in
practice; 1e-12 leaves room for a NumPy or SciPy build whose elementwise functions round
differently between the two call sites, and is still ~1e8 times tighter than any model
difference. The likelihoods have no public counterpart in lifetimes: they are checked by
what a fit makes of them (the same optimiser on our objective lands on lifetimes' fitted
parameters), by P(alive), which is one term of the likelihood over the whole, and by
Gamma-Gamma's density integrating to one."""

from importlib.resources import files

import numpy as np
import pandas as pd
import pytest
from autograd import value_and_grad
from lifetimes import BetaGeoFitter, GammaGammaFitter, ModifiedBetaGeoFitter, ParetoNBDFitter
from scipy.integrate import quad
from scipy.optimize import minimize
from scipy.special import gammaln

from models import btyd

RTOL = 1e-12
FITTERS = {"bgnbd": BetaGeoFitter, "mbgnbd": ModifiedBetaGeoFitter, "pareto_nbd": ParetoNBDFitter}
HORIZONS = (1.0, 39.0, 52.0, 520.0)


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    """Published CDNOW calibration summary, weeks: x, t_x, T, zbar (mean repeat spend)."""
    path = files("lifetimes") / "datasets" / "cdnow_customers_summary_with_transactions.csv"
    return pd.read_csv(str(path))


@pytest.fixture(scope="module")
def fitted(cdnow) -> dict[str, object]:
    x, tx, T = cdnow["x"].to_numpy(), cdnow["t_x"].to_numpy(), cdnow["T"].to_numpy()
    out: dict[str, object] = {}
    for name, cls in FITTERS.items():
        # Pareto/NBD's Nelder-Mead starts from a random point: seeded for a repeatable fit
        np.random.seed(0)
        out[name] = cls().fit(x, tx, T)
    return out


def _params(fitter: object, model: str) -> dict[str, float]:
    values = fitter.params_  # type: ignore[attr-defined]
    return {k: float(values[k]) for k in btyd.COUNT_PARAMS[model]}


def _history(cdnow: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        cdnow["x"].to_numpy(dtype=float),
        cdnow["t_x"].to_numpy(dtype=float),
        cdnow["T"].to_numpy(dtype=float),
    )


@pytest.mark.parametrize("model", list(FITTERS))
def test_p_alive_equals_lifetimes(cdnow, fitted, model):
    fitter = fitted[model]
    x, tx, T = _history(cdnow)
    ours = btyd.probability_alive(model, _params(fitter, model), x, tx, T)
    theirs = np.asarray(fitter.conditional_probability_alive(x, tx, T), dtype=float)
    assert ours.shape == (len(cdnow),)
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=0)
    assert ((ours > 0) & (ours <= 1)).all() and ours.min() < 0.05  # a real spread


@pytest.mark.parametrize("model", list(FITTERS))
@pytest.mark.parametrize("t", HORIZONS)
def test_expected_purchases_equal_lifetimes(cdnow, fitted, model, t):
    fitter = fitted[model]
    x, tx, T = _history(cdnow)
    ours = btyd.expected_purchases(model, _params(fitter, model), t, x, tx, T)
    theirs = fitter.conditional_expected_number_of_purchases_up_to_time(t, x, tx, T)
    np.testing.assert_allclose(ours, np.asarray(theirs, dtype=float), rtol=RTOL, atol=0)
    assert (ours > 0).all()


@pytest.mark.parametrize("model", ["bgnbd", "mbgnbd"])
def test_expected_purchases_broadcast_over_horizons(cdnow, fitted, model):
    """A ``(horizons, 1)`` ``t`` gives one row per horizon, each the scalar call's values."""
    fitter = fitted[model]
    x, tx, T = _history(cdnow)
    times = np.array(HORIZONS)[:, None]
    grid = btyd.expected_purchases(model, _params(fitter, model), times, x, tx, T)
    assert grid.shape == (len(HORIZONS), len(cdnow))
    for row, t in zip(grid, HORIZONS, strict=True):
        theirs = fitter.conditional_expected_number_of_purchases_up_to_time(t, x, tx, T)
        np.testing.assert_allclose(row, theirs, rtol=RTOL, atol=0)
    assert (np.diff(grid, axis=0) > 0).all()  # more purchases over a longer horizon


def _our_fit(model: str, x, tx, T) -> dict[str, float]:
    """lifetimes' fit (``BaseFitter._fit``: scipy's default minimiser with autograd's gradient
    from log-parameters 0.1, tol 1e-7, time scaled so the oldest T is 1) on our objective."""
    scale = 1.0 / T.max()
    out = minimize(
        value_and_grad(lambda lp, *a: btyd.count_negative_log_likelihood(model, lp, *a)),
        x0=0.1 * np.ones(4),
        jac=True,
        tol=1e-7,
        args=(x.astype(int), tx * scale, T * scale, np.ones(len(x), dtype=int), 0.0),
    )
    assert out.success
    params = dict(zip(btyd.COUNT_PARAMS[model], np.exp(out.x), strict=True))
    params["alpha"] /= scale
    return params


@pytest.mark.parametrize("model", ["bgnbd", "mbgnbd"])
def test_likelihood_fitted_by_lifetimes_optimiser_gives_lifetimes_parameters(cdnow, fitted, model):
    """The optimiser's path depends on every value and gradient of the objective: landing on
    lifetimes' parameters means our likelihood and its autograd gradient are lifetimes'."""
    ours = _our_fit(model, *_history(cdnow))
    theirs = _params(fitted[model], model)
    for k, v in theirs.items():
        assert ours[k] == pytest.approx(v, rel=RTOL, abs=0), k
    if model == "bgnbd":  # and the published BG/NBD estimates (FHL 2005a)
        rounded = tuple(round(ours[k], 3) for k in ("r", "alpha", "a", "b"))
        assert rounded == (0.243, 4.414, 0.793, 2.426)


@pytest.mark.parametrize("model", list(FITTERS))
def test_likelihood_over_its_alive_term_is_p_alive(cdnow, fitted, model):
    """P(alive) is the likelihood's term for "alive at T" over the whole likelihood
    (note 021, note 009 eq. 36): so ``ln L = ln(alive term) - ln P(alive)``, with lifetimes'
    P(alive)."""
    fitter = fitted[model]
    x, tx, T = _history(cdnow)
    p = _params(fitter, model)
    names = btyd.COUNT_PARAMS[model]
    ll = btyd.COUNT_LOG_LIKELIHOODS[model](np.array([p[k] for k in names]), x, tx, T)
    r, alpha = p["r"], p["alpha"]
    gamma_part = gammaln(r + x) - gammaln(r) + r * np.log(alpha) - (r + x) * np.log(alpha + T)
    if model == "pareto_nbd":
        alive = gamma_part + p["s"] * (np.log(p["beta"]) - np.log(p["beta"] + T))
    else:
        a, b = p["a"], p["b"]
        shift = 1 if model == "mbgnbd" else 0  # MBG/NBD tosses the dropout coin at time 0 too
        beta_part = (
            gammaln(a + b) + gammaln(b + x + shift) - gammaln(b) - gammaln(a + b + x + shift)
        )
        alive = gamma_part + beta_part
    p_alive = np.asarray(fitter.conditional_probability_alive(x, tx, T), dtype=float)
    np.testing.assert_allclose(ll, alive - np.log(p_alive), rtol=1e-10, atol=0)
    assert (ll < 0).all()


def test_nbd_likelihood_is_the_gamma_poisson_mixture():
    """NBD: the probability of ``x`` repeat purchases in ``T`` under gamma(r, alpha) Poisson
    rates, summed over x, is one (and independent of recency)."""
    r, alpha, T = 0.7, 3.0, 20.0
    x = np.arange(0, 2000, dtype=float)
    ll = btyd.nbd_log_likelihood(np.array([r, alpha]), x, np.zeros_like(x), np.full_like(x, T))
    # the likelihood is the density of the purchase times: times T^x / x! the count's PMF
    assert np.exp(ll + x * np.log(T) - gammaln(x + 1)).sum() == pytest.approx(1.0, rel=1e-9)
    other = btyd.nbd_log_likelihood(np.array([r, alpha]), x, x / 2, np.full_like(x, T))
    np.testing.assert_array_equal(ll, other)


@pytest.fixture(scope="module")
def spend(cdnow) -> tuple[GammaGammaFitter, np.ndarray, np.ndarray]:
    repeat = cdnow[(cdnow["x"] > 0) & (cdnow["zbar"] > 0)]
    x, m = repeat["x"].to_numpy(dtype=float), repeat["zbar"].to_numpy(dtype=float)
    return GammaGammaFitter().fit(x, m), x, m


def test_gamma_gamma_expected_spend_equals_lifetimes(spend, cdnow):
    fitter, _, _ = spend
    x, m = cdnow["x"].to_numpy(dtype=float), cdnow["zbar"].to_numpy(dtype=float)
    p = {k: float(fitter.params_[k]) for k in btyd.SPEND_PARAMS}
    ours = btyd.expected_average_spend(p, x, m)
    theirs = np.asarray(fitter.conditional_expected_average_profit(x, m), dtype=float)
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=0)
    # one-time buyers get the population mean, v p / (q - 1)
    assert ours[x == 0] == pytest.approx(p["v"] * p["p"] / (p["q"] - 1), rel=1e-14)


def test_gamma_gamma_likelihood_fitted_by_lifetimes_optimiser_gives_lifetimes_parameters(spend):
    fitter, x, m = spend
    out = minimize(
        value_and_grad(btyd.gamma_gamma_negative_log_likelihood),
        x0=0.1 * np.ones(3),
        jac=True,
        tol=1e-7,
        args=(x, m, np.ones(len(x), dtype=int), 0.0),
    )
    assert out.success
    for k, v in zip(btyd.SPEND_PARAMS, np.exp(out.x), strict=True):
        assert v == pytest.approx(float(fitter.params_[k]), rel=RTOL, abs=0), k
    # and the published estimates (FHL 2005b): p 6.25, q 3.74, gamma 15.44
    np.testing.assert_allclose(np.exp(out.x), [6.25, 3.74, 15.44], atol=0.01)


def test_gamma_gamma_density_integrates_to_one(spend):
    """exp(log-likelihood) is a density of the mean spend m given x: it integrates to one."""
    fitter, _, _ = spend
    params = np.array([float(fitter.params_[k]) for k in btyd.SPEND_PARAMS])
    for x in (1.0, 3.0, 10.0):
        total, _ = quad(
            lambda m, x=x: float(np.exp(btyd.gamma_gamma_log_likelihood(params, x, m))),
            0,
            np.inf,
        )
        assert total == pytest.approx(1.0, rel=1e-7)


def test_penalty_and_weights_in_the_mean_objective(cdnow):
    """Weights count customers: a table with each row twice at weight 1 is the same objective
    as weight 2, and the penalty adds penalizer * sum(params^2)."""
    x, tx, T = _history(cdnow)
    log_params = np.log([0.25, 4.4, 0.8, 2.4])
    for model in ("bgnbd", "mbgnbd", "nbd", "pareto_nbd"):
        lp = log_params[: len(btyd.COUNT_PARAMS[model])]
        one = btyd.count_negative_log_likelihood(model, lp, x, tx, T, np.ones(len(x)), 0.0)
        doubled = btyd.count_negative_log_likelihood(
            model, lp, np.r_[x, x], np.r_[tx, tx], np.r_[T, T], np.ones(2 * len(x)), 0.0
        )
        assert one == pytest.approx(doubled, rel=1e-13)
        penalised = btyd.count_negative_log_likelihood(model, lp, x, tx, T, np.ones(len(x)), 0.5)
        assert penalised - one == pytest.approx(0.5 * (np.exp(lp) ** 2).sum(), rel=1e-12)


def test_unknown_model_is_named():
    with pytest.raises(ValueError, match="gompertz"):
        btyd.probability_alive("gompertz", {"r": 1.0, "alpha": 1.0}, [1.0], [1.0], [2.0])
    with pytest.raises(ValueError, match="gompertz"):
        btyd.expected_purchases("gompertz", {"r": 1.0, "alpha": 1.0}, 1.0, [1.0], [1.0], [2.0])
