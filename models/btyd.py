"""Buy-till-you-die formulas in NumPy: per-customer log-likelihoods of the purchase-count
models and of Gamma-Gamma spend, conditional P(alive), conditional expected purchases over a
horizon and the conditional expected mean spend per purchase.

Written from the published equations; where lifetimes (0.11) implements the same equation
the arithmetic here is the same sequence of floating-point operations, so the values -- and
fits made with them -- agree with lifetimes' public outputs to the last bit on the CDNOW data
(tests/models/test_btyd.py). :mod:`models.clv` fits and predicts with these functions.

Conventions: ``freq`` (``x``) repeat purchases, ``rec`` (``t_x``) time from the first to the
last purchase, ``T`` time from the first purchase to the end of observation, ``t`` a horizon
after ``T``; all times in one unit, that of the parameters (``alpha`` and ``beta`` are rates
per that unit). Arrays broadcast against each other and against parameters given as arrays
(e.g. ``(points, 1)``: one row per parameter point). The log-likelihoods of BG/NBD, MBG/NBD,
NBD and Gamma-Gamma use ``autograd.numpy`` so autograd can take their gradient and Hessian
(the fit's BFGS, the parameter covariance); Pareto/NBD's needs the Gauss hypergeometric
function, which autograd cannot differentiate (its fit uses Nelder-Mead).

References
----------
BG/NBD -- Fader, Hardie & Lee (2005a), "Counting Your Customers the Easy Way: An Alternative
to the Pareto/NBD Model", Marketing Science 24(2), 275-284: likelihood eq. (6), conditional
expectation eq. (10); Fader, Hardie & Lee (2008), "Computing P(alive) Using the BG/NBD
Model" (Hardie's note 021).
MBG/NBD -- Batislam, Denizel & Filiztekin (2007), "Empirical validation and comparison of
models for customer base analysis", IJRM 24(3), 201-209 (P(alive): appendix A, eq. 5), and
Wagner & Hoppe (2008) for the conditional expectation, as lifetimes implements them.
Pareto/NBD -- Schmittlein, Morrison & Colombo (1987), "Counting Your Customers: Who Are They
and What Will They Do Next?", Management Science 33(1), 1-24; Fader & Hardie (2005),
"A Note on Deriving the Pareto/NBD Model and Related Expressions" (note 009): likelihood
eqs. (18)-(20), P(alive) eqs. (36)-(37), conditional expectation eq. (41).
NBD -- Ehrenberg (1959), "The Pattern of Consumer Purchases", Applied Statistics 8(1); FHL
(2005a), section 2: BG/NBD's limit as ``a -> 0`` (no dropout).
Gamma-Gamma -- Fader & Hardie (2013), "The Gamma-Gamma Model of Monetary Value" (note 025):
likelihood eq. (1a), conditional expected mean spend eq. (5); Fader, Hardie & Lee (2005b),
"RFM and CLV: Using Iso-Value Curves for Customer Base Analysis", JMR 42(4).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from autograd import numpy as anp
from autograd.scipy.special import gammaln
from scipy.special import expit, hyp2f1, logsumexp
from scipy.special import gammaln as np_gammaln

#: Parameter names of each purchase-count model, in the order of the likelihoods' ``params``.
COUNT_PARAMS: dict[str, tuple[str, ...]] = {
    "bgnbd": ("r", "alpha", "a", "b"),
    "pareto_nbd": ("r", "alpha", "s", "beta"),
    "mbgnbd": ("r", "alpha", "a", "b"),
    "nbd": ("r", "alpha"),
}
#: Gamma-Gamma's parameter names, in the order of :func:`gamma_gamma_log_likelihood`'s.
SPEND_PARAMS = ("p", "q", "v")

#: Parameters: a mapping of name to a float, or to an array broadcasting against customers.
Params = Mapping[str, Any]
#: ``params`` of a log-likelihood: the values in :data:`COUNT_PARAMS` order; a NumPy array,
#: or autograd's box of one while it differentiates.
ParamVector = Any


# -- log-likelihoods, one value per customer ---------------------------------------------------


def bgnbd_log_likelihood(params: ParamVector, freq: Any, rec: Any, T: Any) -> Any:
    """BG/NBD log-likelihood of each history (FHL 2005a, eq. 6):

    ``ln[B(a, b + x) / B(a, b) * G(r + x) alpha^r / G(r) * ((alpha + T)^-(r + x)
    + [x > 0] a / (b + x - 1) (alpha + t_x)^-(r + x))]``, the two terms combined in logs
    around their maximum. Autograd-differentiable in ``params`` (r, alpha, a, b)."""
    r, alpha, a, b = params
    A_1 = gammaln(r + freq) - gammaln(r) + r * anp.log(alpha)
    A_2 = gammaln(a + b) + gammaln(b + freq) - gammaln(b) - gammaln(a + b + freq)
    A_3 = -(r + freq) * anp.log(alpha + T)
    A_4 = anp.log(a) - anp.log(b + anp.maximum(freq, 1) - 1) - (r + freq) * anp.log(rec + alpha)
    top = anp.maximum(A_3, A_4)
    return A_1 + A_2 + anp.log(anp.exp(A_3 - top) + anp.exp(A_4 - top) * (freq > 0)) + top


def mbgnbd_log_likelihood(params: ParamVector, freq: Any, rec: Any, T: Any) -> Any:
    """MBG/NBD log-likelihood of each history (Batislam et al. 2007): BG/NBD's with the
    dropout coin also tossed at time 0, so ``b + x + 1`` for ``b + x`` in the beta terms and
    the dropout term present for ``x = 0`` too. Autograd-differentiable in ``params``
    (r, alpha, a, b)."""
    r, alpha, a, b = params
    A_1 = gammaln(r + freq) - gammaln(r) + r * anp.log(alpha)
    A_2 = gammaln(a + b) + gammaln(b + freq + 1) - gammaln(b) - gammaln(a + b + freq + 1)
    A_3 = -(r + freq) * anp.log(alpha + T)
    A_4 = anp.log(a) - anp.log(b + freq) + (r + freq) * (anp.log(alpha + T) - anp.log(alpha + rec))
    return A_1 + A_2 + A_3 + anp.logaddexp(A_4, 0)


def nbd_log_likelihood(params: ParamVector, freq: Any, rec: Any, T: Any) -> Any:
    """NBD log-likelihood of each history: ``ln G(r + x) - ln G(r) + r ln alpha - (r + x)
    ln(alpha + T)``, BG/NBD's eq. (6) at ``a = 0``. Recency carries no information without
    dropout (``rec`` is unused); comparable with the dropout models' likelihoods on the same
    customers. Autograd-differentiable in ``params`` (r, alpha)."""
    r, alpha = params[0], params[1]
    return gammaln(r + freq) - gammaln(r) + r * anp.log(alpha) - (r + freq) * anp.log(alpha + T)


def _pareto_log_a0(params: ParamVector, freq: Any, rec: Any, T: Any) -> Any:
    """``ln A_0`` of Fader & Hardie's note 009, eqs. (19)-(20): the integral over the dropout
    time between ``t_x`` and ``T``, by the Gauss hypergeometric function around whichever of
    ``alpha``, ``beta`` is larger (so its argument stays in [0, 1))."""
    r, alpha, s, beta = params
    if alpha < beta:
        low, high, t = alpha, beta, r + freq
    else:
        low, high, t = beta, alpha, s + 1
    gap = high - low
    rsf = r + s + freq
    p_1 = hyp2f1(rsf, t, rsf + 1.0, gap / (high + rec))
    q_1 = high + rec
    p_2 = hyp2f1(rsf, t, rsf + 1.0, gap / (high + T))
    q_2 = high + T
    first, second = np.broadcast_arrays(
        np.log(p_1) + rsf * np.log(q_2), np.log(p_2) + rsf * np.log(q_1)
    )
    sign = np.ones(np.shape(first))
    return logsumexp([first, second], axis=0, b=[sign, -sign]) - rsf * np.log(q_1 * q_2)


def pareto_nbd_log_likelihood(params: ParamVector, freq: Any, rec: Any, T: Any) -> Any:
    """Pareto/NBD log-likelihood of each history (Schmittlein et al. 1987; note 009, eq. 18):
    ``ln[G(r + x) alpha^r beta^s / G(r) * ((alpha + T)^-(r + x) (beta + T)^-s
    + s / (r + s + x) A_0)]``. NumPy and SciPy only (``params`` floats: r, alpha, s, beta);
    not differentiable by autograd."""
    r, alpha, s, beta = params
    A_1 = np_gammaln(r + freq) - np_gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    log_a0 = _pareto_log_a0(params, freq, rec, T)
    A_2 = np.logaddexp(
        -(r + freq) * np.log(alpha + T) - s * np.log(beta + T),
        np.log(s) + log_a0 - np.log(r + s + freq),
    )
    return A_1 + A_2


def gamma_gamma_log_likelihood(params: ParamVector, x: Any, m: Any) -> Any:
    """Gamma-Gamma log-likelihood of each repeat buyer's mean spend ``m`` over ``x`` repeat
    purchases (Fader & Hardie 2013, note 025, eq. 1a): ``ln G(px + q) - ln G(px) - ln G(q)
    + q ln v + (px - 1) ln m + px ln x - (px + q) ln(xm + v)``. Autograd-differentiable in
    ``params`` (p, q, v); ``x > 0`` and ``m > 0``."""
    p, q, v = params
    return (
        gammaln(p * x + q)
        - gammaln(p * x)
        - gammaln(q)
        + q * anp.log(v)
        + (p * x - 1) * anp.log(m)
        + (p * x) * anp.log(x)
        - (p * x + q) * anp.log(x * m + v)
    )


#: Per-customer log-likelihood of each purchase-count model.
COUNT_LOG_LIKELIHOODS: dict[str, Callable[[ParamVector, Any, Any, Any], Any]] = {
    "bgnbd": bgnbd_log_likelihood,
    "pareto_nbd": pareto_nbd_log_likelihood,
    "mbgnbd": mbgnbd_log_likelihood,
    "nbd": nbd_log_likelihood,
}
#: Models whose log-likelihood autograd can differentiate (fitted by BFGS with its gradient).
DIFFERENTIABLE = ("bgnbd", "mbgnbd", "nbd")


def count_negative_log_likelihood(
    model: str,
    log_params: ParamVector,
    freq: np.ndarray,
    rec: np.ndarray,
    T: np.ndarray,
    weights: np.ndarray,
    penalizer: float,
) -> Any:
    """Mean negative log-likelihood per customer (``weights``: customers per row) plus the L2
    penalty ``penalizer * sum(params^2)`` (lifetimes' ``penalizer_coef``), as a function of
    the log-parameters: the objective the fit minimises. Every model is normalised by the
    total weight, so a penalizer weighs the same on a condensed table as on the full one."""
    if model == "pareto_nbd":
        params = np.exp(log_params)
        ll = pareto_nbd_log_likelihood(params, freq, rec, T)
        return -(weights * ll).sum() / weights.sum() + penalizer * (params**2).sum()
    params = anp.exp(log_params)
    ll = COUNT_LOG_LIKELIHOODS[model](params, freq, rec, T)
    return -(weights * ll).sum() / weights.sum() + penalizer * (params**2).sum()


def gamma_gamma_negative_log_likelihood(
    log_params: ParamVector, x: np.ndarray, m: np.ndarray, weights: np.ndarray, penalizer: float
) -> Any:
    """Gamma-Gamma's mean negative log-likelihood per customer plus the L2 penalty, as a
    function of the log-parameters (the spend fit's objective)."""
    params = anp.exp(log_params)
    ll = gamma_gamma_log_likelihood(params, x, m)
    return -(weights * ll).sum() / weights.sum() + penalizer * (params**2).sum()


# -- conditional predictions ----------------------------------------------------------------


def probability_alive(
    model: str, params: Params, freq: npt.ArrayLike, rec: npt.ArrayLike, T: npt.ArrayLike
) -> np.ndarray:
    """P(alive at ``T``) given the history, per customer.

    BG/NBD (note 021): ``1 / (1 + [x > 0] a / (b + x - 1) ((alpha + T) / (alpha + t_x))^(r + x))``,
    1 for ``x = 0`` (no purchase after the first: the model gives no chance of dropout yet).
    MBG/NBD (Batislam et al. 2007, appendix A eq. 5): the same with ``b + x`` and no ``x = 0``
    exception. Pareto/NBD (note 009, eqs. 36-37): ``1 / (1 + s / (r + s + x) (alpha + T)^(r + x)
    (beta + T)^s A_0)``. NBD: 1 (no dropout).
    """
    freq, rec, T = (np.asarray(v, dtype=float) for v in (freq, rec, T))
    if model == "nbd":
        return np.ones(np.shape(freq))
    r, alpha = params["r"], params["alpha"]
    if model == "bgnbd":
        a, b = params["a"], params["b"]
        log_div = (r + freq) * np.log((alpha + T) / (alpha + rec)) + np.log(
            a / (b + np.maximum(freq, 1) - 1)
        )
        return np.atleast_1d(np.where(freq == 0, 1.0, expit(-log_div)))
    if model == "mbgnbd":
        a, b = params["a"], params["b"]
        return np.atleast_1d(
            1.0 / (1 + (a / (b + freq)) * ((alpha + T) / (alpha + rec)) ** (r + freq))
        )
    if model == "pareto_nbd":
        s, beta = params["s"], params["beta"]
        log_a0 = _pareto_log_a0((r, alpha, s, beta), freq, rec, T)
        out: np.ndarray = 1.0 / (
            1.0
            + np.exp(
                np.log(s)
                - np.log(r + s + freq)
                + (r + freq) * np.log(alpha + T)
                + s * np.log(beta + T)
                + log_a0
            )
        )
        return out
    raise ValueError(f"unknown purchase model {model!r}; choose from {list(COUNT_PARAMS)}")


def expected_purchases(
    model: str,
    params: Params,
    t: npt.ArrayLike,
    freq: npt.ArrayLike,
    rec: npt.ArrayLike,
    T: npt.ArrayLike,
) -> np.ndarray:
    """Expected repeat purchases in ``(T, T + t]`` given the history, per customer (``t`` may
    be an array broadcasting against the customers, e.g. ``(horizons, 1)``).

    BG/NBD: FHL (2005a) eq. (10), ``(a + b + x - 1) / (a - 1) [1 - ((alpha + T) / (alpha + T
    + t))^(r + x) 2F1(r + x, b + x; a + b + x - 1; t / (alpha + T + t))] / (1 + [x > 0] a /
    (b + x - 1) ((alpha + T) / (alpha + t_x))^(r + x))``, the hypergeometric function by
    Euler's transformation where it overflows. MBG/NBD (Wagner & Hoppe 2008): the same with
    ``b + x + 1`` and ``a + b + x``. Pareto/NBD: note 009 eq. (41). NBD: ``(r + x) / (alpha +
    T) t``, the posterior mean rate times ``t``.
    """
    t, freq, rec, T = (np.asarray(v, dtype=float) for v in (t, freq, rec, T))
    r, alpha = params["r"], params["alpha"]
    x = freq
    if model == "nbd":
        out: np.ndarray = (r + x) / (alpha + T) * t
        return out
    if model == "bgnbd":
        a, b = params["a"], params["b"]
        _a, _b, _c = r + x, b + x, a + b + x - 1
        _z = t / (alpha + T + t)
        ln_hyp = np.log(hyp2f1(_a, _b, _c, _z))
        # where 2F1 overflows: Euler's transformation, the same value
        ln_hyp_alt = np.log(hyp2f1(_c - _a, _c - _b, _c, _z)) + (_c - _a - _b) * np.log(1 - _z)
        ln_hyp = np.where(np.isinf(ln_hyp), ln_hyp_alt, ln_hyp)
        first = (a + b + x - 1) / (a - 1)
        second = 1 - np.exp(ln_hyp + (r + x) * np.log((alpha + T) / (alpha + t + T)))
        denominator = 1 + (x > 0) * (a / (b + x - 1)) * ((alpha + T) / (alpha + rec)) ** (r + x)
        out = first * second / denominator
        return out
    if model == "mbgnbd":
        a, b = params["a"], params["b"]
        hyp = hyp2f1(r + x, b + x + 1, a + b + x, t / (alpha + T + t))
        first = (a + b + x) / (a - 1)
        second = 1 - hyp * ((alpha + T) / (alpha + t + T)) ** (r + x)
        denominator = 1 + (a / (b + x)) * ((alpha + T) / (alpha + rec)) ** (r + x)
        out = first * second / denominator
        return out
    if model == "pareto_nbd":
        s, beta = params["s"], params["beta"]
        ll = pareto_nbd_log_likelihood((r, alpha, s, beta), x, rec, T)
        first = (
            np_gammaln(r + x)
            - np_gammaln(r)
            + r * np.log(alpha)
            + s * np.log(beta)
            - (r + x) * np.log(alpha + T)
            - s * np.log(beta + T)
        )
        second = np.log(r + x) + np.log(beta + T) - np.log(alpha + T)
        third = np.log((1 - ((beta + T) / (beta + T + t)) ** (s - 1)) / (s - 1))
        out = np.exp(first + second + third - ll)
        return out
    raise ValueError(f"unknown purchase model {model!r}; choose from {list(COUNT_PARAMS)}")


def expected_average_spend(params: Params, x: npt.ArrayLike, m: npt.ArrayLike) -> np.ndarray:
    """Gamma-Gamma's conditional expected spend per purchase given ``x`` repeat purchases of
    mean ``m`` (note 025, eq. 5): ``w m + (1 - w) v p / (q - 1)``, ``w = p x / (p x + q - 1)``,
    a weighted mean of the customer's own mean and the population's (currency of ``m`` and
    ``v``)."""
    p, q, v = params["p"], params["q"], params["v"]
    x, m = np.asarray(x, dtype=float), np.asarray(m, dtype=float)
    weight = p * x / (p * x + q - 1)
    population_mean = v * p / (q - 1)
    out: np.ndarray = (1 - weight) * population_mean + weight * m
    return out
