"""CLV: BG/NBD, Pareto/NBD, MBG/NBD or NBD purchase counts and Gamma-Gamma spend (the formulas
of :mod:`models.btyd`), persisted as JSON.

References
----------
Fader, Hardie & Lee (2005a), "Counting Your Customers the Easy Way: An Alternative to the
Pareto/NBD Model", Marketing Science 24(2) -- BG/NBD: likelihood eq. (6), conditional
expectation eq. (10), P(alive) (Hardie's note 021).
Schmittlein, Morrison & Colombo (1987), "Counting Your Customers", Management Science 33(1), and
Fader, Hardie & Lee (2005), "A Note on Implementing the Pareto/NBD Model in MATLAB" (note 008) --
Pareto/NBD.
Batislam, Denizel & Filiztekin (2007), "Empirical validation and comparison of models for
customer base analysis", IJRM 24(3) -- MBG/NBD (dropout possible at time 0).
Ehrenberg (1959), "The Pattern of Consumer Purchases", Applied Statistics 8(1), and FHL (2005a),
section 2 -- NBD: gamma-Poisson purchases with no dropout, the limit of BG/NBD as ``a -> 0``.
Fader, Hardie & Lee (2005b), "RFM and CLV: Using Iso-Value Curves for Customer Base Analysis",
J. Marketing Research 42(4), and Hardie's note 025 -- Gamma-Gamma spend model.

Conventions (``docs/clv.md``)
-----------------------------
The input is the feature frame of ``features/transactions.py`` at a cutoff ``as_of``: purchases
on the same UTC day merged, ``frequency`` the repeat purchase days, ``recency_days`` the days from
the first to the last purchase day, ``T_days`` the days from the first purchase day to
``as_of``. The count models measure time in ``time_unit`` (weeks: days / 7, as in the CDNOW
papers), and, with ``observation_end="last_day"`` (the default), measure ``T`` to the *last
day observed* -- the day before a midnight ``as_of`` -- as the papers and lifetimes'
``summary_data_from_transaction_data`` do: ``T = ceil(T_days) - 1`` days. A customer who bought
on the last day observed then has ``recency == T``, and the published CDNOW parameters are
reproduced from the raw transactions to three decimals. ``observation_end="as_of"`` takes
``T_days`` as given (a summary already in the papers' convention; models saved before format 2).

Fitting works on the compressed summary: customers with equal (frequency, recency, T) are one
row with a weight, so the parameters are those of the full table for a fraction of the work.
The likelihoods and predictions are :mod:`models.btyd`'s (the published equations, the same
floating-point operations as lifetimes', whose public outputs they are tested against); the
optimiser call is scipy's BFGS with autograd's gradient, as lifetimes does, but without
lifetimes' Hessian over every row and with the optimiser's own failure message kept for the
error.

Fitted parameters live in ``params_`` (a dict) and round-trip through
:meth:`CLVModel.to_dict` / :meth:`CLVModel.from_dict`: no dill, no pickle.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from autograd import hessian, value_and_grad
from scipy.optimize import minimize
from scipy.special import gammaincinv, ndtri, roots_genlaguerre, roots_jacobi

from features.groups import factorize
from models import btyd

log = logging.getLogger(__name__)


#: Columns of the RFM summary the model reads, as the feature builder names them (days).
SUMMARY_COLUMNS = ("frequency", "recency_days", "T_days", "monetary_repeat_mean")
OUTPUT_COLUMNS = ("p_alive", "expected_purchases", "expected_order_value", "clv")
#: Customers' columns for a prediction: a frame, or a mapping of column name to array (the
#: arrays of :meth:`CLVModel.inputs`, or :meth:`CLVModel.predict_columns`' output).
Summary = pd.DataFrame | Mapping[str, np.ndarray]

#: A likelihood objective of the log-parameters; autograd calls it with its own array boxes.
Objective = Callable[[Any], Any]

#: Purchase-count models by name, with their parameter names: BG/NBD, Pareto/NBD, MBG/NBD and
#: NBD (Ehrenberg 1959: gamma-Poisson purchases and no dropout, BG/NBD's limit as ``a -> 0``,
#: for data with no visible dropout, where the dropout models' parameters run to that
#: boundary).
COUNT_MODELS: dict[str, tuple[str, ...]] = btyd.COUNT_PARAMS
SPEND_PARAMS = btyd.SPEND_PARAMS
TIME_UNITS = {"weeks": 7.0, "days": 1.0}
OBSERVATION_ENDS = ("last_day", "as_of")
#: Version of the :meth:`CLVModel.to_dict` layout (1: BG/NBD only, no ``format`` key).
FORMAT = 2

#: Optimiser tolerances tried in turn. BFGS can stop with "precision loss" once the gradient
#: is ~1e-7, i.e. converged in substance; a looser tolerance then succeeds.
TOLERANCES = (1e-7, 1e-6, 1e-5)
#: Parameters, on the rescaled axes (time: oldest customer's T = 1, as lifetimes does; spend:
#: mean spend = 1), outside this range are taken as having run to the boundary of the
#: parameter space (a degenerate fit).
PARAM_RANGE = (1e-6, 1e6)
#: Share of customers held out when ``model="auto"`` chooses by holdout log-likelihood.
SELECTION_HOLDOUT = 0.2
MIN_CUSTOMERS = 10
#: Compressed tables with this many rows or more are first fitted on a coarse grid (times
#: rounded up to 1 / COARSE_GRID of the oldest customer's T) for a warm start.
WARM_START_ROWS = 20_000
COARSE_GRID = 64


class CLVModelError(RuntimeError):
    """The fit did not converge to usable parameters; the message names cause and remedy."""


class SpendModelError(CLVModelError):
    """The purchase-count model fitted but Gamma-Gamma did not (too few repeat buyers with a
    positive spend, or spend the model cannot describe, e.g. every amount the same); a
    ``CLVModel(spend=False)`` on the same data gives P(alive) and expected purchases."""


def _suggest(penalizer: float) -> str:
    return (
        f"try a penalizer such as {max(0.001, 10 * penalizer):g} "
        f"(CLVModel(penalizer={max(0.001, 10 * penalizer):g}))"
    )


def compress(columns: dict[str, np.ndarray], weights: np.ndarray | None = None) -> pd.DataFrame:
    """Rows with equal values in every column collapse into one row with a ``weight`` (the
    number of customers it stands for): Fader and Hardie's condensed RFM table.

    ``weights`` (default one per row) lets an already condensed table, e.g. one gathered from
    the partitions of a cluster, be condensed again. Rows come out sorted by value, so the
    table -- and every sum over it -- does not depend on the input's row order: the fit on
    the whole table and the fit on partial tables gathered from a cluster are the same
    floating-point computation.
    """
    frame = pd.DataFrame(columns)
    frame["weight"] = 1.0 if weights is None else np.asarray(weights, dtype=float)
    return frame.groupby(list(columns), sort=True)["weight"].sum().reset_index()


def summary_counts(summary: pd.DataFrame) -> pd.DataFrame:
    """The RFM summary condensed to distinct (:data:`SUMMARY_COLUMNS`) rows with a ``weight``
    column; customers without a purchase are left out. Condensed tables of disjoint sets of
    customers add up (concatenate, then condense again by summing ``weight``), so a cluster
    sends the fit a table whose size is bounded by the distinct histories, not the customers;
    :meth:`CLVModel.fit` with ``weight_column="weight"`` reads it."""
    known = summary.dropna(subset=["T_days"])
    columns = {c: known[c].to_numpy(dtype=float) for c in SUMMARY_COLUMNS}
    weights = known["weight"].to_numpy(dtype=float) if "weight" in known.columns else None
    frame = pd.DataFrame(columns)
    frame["weight"] = 1.0 if weights is None else weights
    # NaN mean spend (one-time buyers) is a value of its own here, not a dropped row
    return (
        frame.groupby(list(SUMMARY_COLUMNS), sort=True, dropna=False)["weight"].sum().reset_index()
    )


def _optimise(
    objective: Objective,
    x0: np.ndarray,
    *,
    gradient: bool,
    tol: float,
    hess_inv0: np.ndarray | None = None,
) -> Any:
    """One scipy run on ``objective(log_params)``: BFGS with autograd's gradient (as lifetimes
    does), or Nelder-Mead for likelihoods autograd cannot differentiate (Pareto/NBD's)."""
    if gradient:
        options = {} if hess_inv0 is None else {"hess_inv0": hess_inv0}
        with np.errstate(all="ignore"):  # trial steps may overflow; the line search backs off
            return minimize(
                value_and_grad(objective), x0, jac=True, method="BFGS", tol=tol, options=options
            )

    def finite(x: np.ndarray) -> float:
        value = objective(x)
        return float(value) if np.isfinite(value) else np.inf

    simplex = np.vstack([x0, x0 + 0.1 * np.eye(len(x0))])
    with np.errstate(all="ignore"):
        return minimize(
            finite,
            x0,
            method="Nelder-Mead",
            options={"xatol": 1e-7, "fatol": 1e-11, "maxfev": 20_000, "initial_simplex": simplex},
        )


def _minimise(
    objective: Objective,
    x0: np.ndarray,
    *,
    name: str,
    penalizer: float,
    gradient: bool,
    warm: tuple[np.ndarray, np.ndarray | None] | None = None,
) -> Any:
    """Minimise ``objective(log_params)``: from ``warm`` (a start and an inverse Hessian) if
    given, then from ``x0`` with the tolerances of :data:`TOLERANCES` in turn. Raises
    :class:`CLVModelError` with the optimiser's own message when no run succeeds."""
    tries = [] if warm is None else [(warm[0], warm[1], TOLERANCES[0])]
    tries += [(x0, None, tol) for tol in (TOLERANCES if gradient else TOLERANCES[:1])]
    for start, hess_inv0, tol in tries:
        out = _optimise(objective, start, gradient=gradient, tol=tol, hess_inv0=hess_inv0)
        if out.success:
            return out
    raise CLVModelError(
        f"{name}: the optimiser failed ({out.message.strip()}); {_suggest(penalizer)}"
    )


def _check_params(name: str, scaled: dict[str, float], penalizer: float) -> None:
    lo, hi = PARAM_RANGE
    bad = {k: v for k, v in scaled.items() if not np.isfinite(v)}
    if bad:
        raise CLVModelError(f"{name}: non-finite parameters {bad}; {_suggest(penalizer)}")
    edge = {k: float(f"{v:.4g}") for k, v in scaled.items() if not lo < v < hi}
    if edge:
        raise CLVModelError(
            f"{name}: parameters {edge} ran to the boundary (outside {PARAM_RANGE} on the "
            f"rescaled axes); the data cannot identify them; {_suggest(penalizer)}"
        )


def _coarse_start(
    model: str,
    f: np.ndarray,
    r: np.ndarray,
    t: np.ndarray,
    w: np.ndarray,
    penalizer: float,
    x0: np.ndarray,
    *,
    gradient: bool,
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Start and inverse Hessian for the exact fit, from a fit on a coarser table.

    Recency and T (rescaled to [0, 1]) rounded up to a grid of 1 / :data:`COARSE_GRID` keep
    ``recency <= T`` and ``recency > 0`` for repeat buyers, and collapse the table to a few
    thousand rows; its optimum is close to the exact one and its Hessian (autograd) close to
    the exact Hessian, so BFGS on the exact table then needs a few steps instead of ~30. The
    exact fit alone decides the parameters; ``None`` below :data:`WARM_START_ROWS` rows or
    when the coarse fit fails.
    """
    if len(f) < WARM_START_ROWS:
        return None
    grid = pd.DataFrame(
        {
            "f": f,
            "r": np.ceil(r * COARSE_GRID) / COARSE_GRID,
            "t": np.ceil(t * COARSE_GRID) / COARSE_GRID,
            "w": w,
        }
    )
    coarse = grid.groupby(["f", "r", "t"], sort=False)["w"].sum().reset_index()
    cf, cr, ct, cw = (coarse[c].to_numpy() for c in ("f", "r", "t", "w"))

    def objective(log_params: Any) -> Any:
        return btyd.count_negative_log_likelihood(model, log_params, cf, cr, ct, cw, penalizer)

    out = _optimise(objective, x0, gradient=gradient, tol=TOLERANCES[0])
    if not out.success:
        return None
    if not gradient:
        return out.x, None
    h = hessian(objective)(out.x)
    if not np.all(np.isfinite(h)) or np.linalg.eigvalsh(h).min() <= 0:
        return out.x, None
    inv = np.linalg.inv(h)
    return out.x, (inv + inv.T) / 2


@dataclass(frozen=True)
class PurchaseFit:
    """A fitted purchase-count model: parameters in the caller's time unit."""

    model: str
    params: dict[str, float]
    log_likelihood: float
    n_customers: int
    n_rows: int


def _rescaled_counts(
    frequency: np.ndarray, recency: np.ndarray, T: np.ndarray, weights: np.ndarray | None
) -> tuple[pd.DataFrame, float, tuple[np.ndarray, ...]]:
    """The condensed (frequency, recency, T) table, lifetimes' time scale (the oldest ``T`` is
    1) and the table's frequency, rescaled recency and T, and weights as arrays."""
    rows = compress(
        {
            "frequency": np.asarray(frequency, dtype=np.int64),
            "recency": np.asarray(recency, dtype=float),
            "T": np.asarray(T, dtype=float),
        },
        weights,
    )
    scale = 1.0 / max(float(rows["T"].max()), 1e-12)
    f, w = rows["frequency"].to_numpy(), rows["weight"].to_numpy(dtype=float)
    r, t = rows["recency"].to_numpy() * scale, rows["T"].to_numpy() * scale
    return rows, scale, (f, r, t, w)


def fit_purchases(
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
    *,
    model: str = "bgnbd",
    penalizer: float = 0.0,
    warm_start: bool = True,
    weights: np.ndarray | None = None,
) -> PurchaseFit:
    """Fit a purchase-count model on per-customer (frequency, recency, T), compressed first.

    Parameters
    ----------
    frequency, recency, T : one entry per customer, times in the model's unit.
    model : one of :data:`COUNT_MODELS`.
    penalizer : L2 penalty on the parameters (on the rescaled time axis, as lifetimes'
        ``penalizer_coef``).
    warm_start : start from a fit on a coarse grid (:func:`_coarse_start`) on large tables.
    weights : customers per entry (default one): a condensed summary fits as the full one.

    Returns
    -------
    :class:`PurchaseFit` with the total log-likelihood (unpenalised) over all customers.

    Raises
    ------
    CLVModelError
        The optimiser failed, or the parameters are non-finite or on the boundary.
    """
    if model not in COUNT_MODELS:
        raise ValueError(f"unknown purchase model {model!r}; choose from {list(COUNT_MODELS)}")
    names = COUNT_MODELS[model]
    if not np.any(np.asarray(frequency) > 0):
        raise CLVModelError(
            f"{model}: no customer has a repeat purchase, so purchase rates and dropout cannot be "
            "told apart; fit on a longer history"
        )
    rows, scale, (f, r, t, w) = _rescaled_counts(frequency, recency, T, weights)

    def objective(log_params: Any) -> Any:
        return btyd.count_negative_log_likelihood(model, log_params, f, r, t, w, penalizer)

    gradient = model in btyd.DIFFERENTIABLE
    x0 = np.full(len(names), 0.1 if gradient else 0.0)
    warm = (
        _coarse_start(model, f, r, t, w, penalizer, x0, gradient=gradient) if warm_start else None
    )
    out = _minimise(objective, x0, name=model, penalizer=penalizer, gradient=gradient, warm=warm)
    scaled = dict(zip(names, np.exp(out.x).tolist(), strict=True))
    _check_params(model, scaled, penalizer)
    params = {k: v / scale if k in ("alpha", "beta") else v for k, v in scaled.items()}
    ll = purchase_log_likelihood(
        model,
        params,
        rows["frequency"].to_numpy(),
        rows["recency"].to_numpy(),
        rows["T"].to_numpy(),
        w,
    )
    return PurchaseFit(model, params, ll, int(w.sum()), len(rows))


def purchase_log_likelihood(
    model: str,
    params: dict[str, float],
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
    weights: np.ndarray | None = None,
) -> float:
    """Total log-likelihood of customers' (frequency, recency, T) under a fitted model
    (times in the parameters' unit; ``weights`` count customers per row)."""
    f = np.asarray(frequency, dtype=np.int64)
    w = np.ones(len(f)) if weights is None else np.asarray(weights, dtype=float)
    log_params = np.log([params[k] for k in COUNT_MODELS[model]])
    with np.errstate(all="ignore"):  # a parameter set the data rules out gives -inf or NaN
        mean = btyd.count_negative_log_likelihood(
            model, log_params, f, np.asarray(recency, float), np.asarray(T, float), w, 0
        )
    return float(-mean * w.sum())


def _holdout_mask(index: pd.Index) -> np.ndarray:
    """A stable :data:`SELECTION_HOLDOUT` share of customers, by a hash of the id."""
    h = pd.util.hash_pandas_object(pd.Series(index.astype("str")), index=False).to_numpy()
    return h % 1000 < SELECTION_HOLDOUT * 1000


def select_purchase_model(
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
    *,
    index: pd.Index,
    penalizer: float = 0.0,
) -> tuple[str, dict[str, float | None]]:
    """The count model with the best mean log-likelihood per held-out customer.

    Each model of :data:`COUNT_MODELS` is fitted on the customers outside a stable
    :data:`SELECTION_HOLDOUT` share (chosen by a hash of ``index``, the customer ids) and
    scored on that share. Returns the chosen name and every model's held-out mean
    log-likelihood (``None`` for a model that did not converge).
    """
    held = _holdout_mask(index)
    if min(held.sum(), (~held).sum()) < MIN_CUSTOMERS:
        raise CLVModelError(
            f"{len(held)} customers are too few to choose a model by holdout likelihood; "
            f"set model= one of {list(COUNT_MODELS)}"
        )
    f, r, t = (np.asarray(a) for a in (frequency, recency, T))
    scores: dict[str, float | None] = {}
    for name in COUNT_MODELS:
        try:
            fit = fit_purchases(f[~held], r[~held], t[~held], model=name, penalizer=penalizer)
        except CLVModelError as exc:
            log.warning("model selection: %s", exc)
            scores[name] = None
            continue
        ll = purchase_log_likelihood(name, fit.params, f[held], r[held], t[held])
        scores[name] = ll / int(held.sum())
    usable = {k: v for k, v in scores.items() if v is not None and np.isfinite(v)}
    if not usable:
        raise CLVModelError(f"no purchase model converged; {_suggest(penalizer)}")
    return max(usable, key=usable.__getitem__), scores


def _fit_spend(
    frequency: np.ndarray, monetary: np.ndarray, penalizer: float, weights: np.ndarray | None = None
) -> dict[str, float]:
    """Gamma-Gamma on repeat buyers' (frequency, mean repeat spend), compressed (``weights``:
    customers per entry, default one).

    Spend is divided by its mean for the fit (only ``v`` carries the currency unit, and scales
    back), so the boundary check and the penalizer do not depend on the currency."""
    rows = compress({"frequency": frequency.astype(float), "monetary": monetary}, weights)
    x, m, w = (rows[c].to_numpy(dtype=float) for c in ("frequency", "monetary", "weight"))
    scale = float((m * w).sum() / w.sum())
    m = m / scale

    def objective(log_params: Any) -> Any:
        return btyd.gamma_gamma_negative_log_likelihood(log_params, x, m, w, penalizer)

    out = _minimise(
        objective, np.full(3, 0.1), name="Gamma-Gamma", penalizer=penalizer, gradient=True
    )
    scaled = dict(zip(SPEND_PARAMS, np.exp(out.x).tolist(), strict=True))
    _check_params("Gamma-Gamma", scaled, penalizer)
    if scaled["q"] <= 1:
        raise CLVModelError(
            f"Gamma-Gamma: q = {scaled['q']:.4g} <= 1, so the mean spend per purchase is "
            f"undefined; {_suggest(penalizer)}"
        )
    return {**scaled, "v": scaled["v"] * scale}


def _spend_frequency_corr(
    frequency: np.ndarray, monetary: np.ndarray, weights: np.ndarray | None = None
) -> float:
    """Pearson correlation of frequency and spend over customers (``weights`` per entry)."""
    w = np.ones(len(frequency)) if weights is None else np.asarray(weights, dtype=float)
    if w.sum() < 3 or np.ptp(frequency) == 0 or np.ptp(monetary) == 0:
        return float("nan")
    cov = np.cov(frequency, monetary, aweights=w)
    return float(cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]))


def _covariance_or_warn(
    model: str,
    params: dict[str, float],
    freq: np.ndarray,
    rec: np.ndarray,
    t: np.ndarray,
    weights: np.ndarray,
    penalizer: float,
) -> list[list[float]] | None:
    """:func:`parameter_covariance` as JSON lists; ``None`` (intervals then carry no parameter
    uncertainty) with one WARNING line when the curvature cannot be used."""
    if model == "pareto_nbd":
        return None
    try:
        cov = parameter_covariance(model, params, freq, rec, t, weights, penalizer=penalizer)
    except (ValueError, np.linalg.LinAlgError) as exc:
        cov, why = None, str(exc)
    else:
        why = "the Hessian of the likelihood is not positive definite"
    if cov is None:
        log.warning("%s: no parameter covariance (%s); CLV intervals without it", model, why)
        return None
    covariance: list[list[float]] = cov.tolist()
    return covariance


def _finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN."""
    return None if value is None or not np.isfinite(value) else float(value)


def _column(frame: Summary, name: str, *, fill: float | None = None) -> np.ndarray:
    """Column ``name`` of a frame or a mapping of arrays as float64 (a copy), missing values
    NaN or ``fill``."""
    column = frame[name]
    if isinstance(column, pd.Series):
        values = column.to_numpy(dtype=float, na_value=np.nan, copy=True)
    else:
        values = np.array(column, dtype=float)
    if fill is not None:
        values[np.isnan(values)] = fill
    return values


#: Elements of one ``(months, customers)`` array of expected purchases in
#: :meth:`CLVModel.predict`: every month in one call for up to ~20,000 customers.
_STEP_ELEMENTS = 1 << 18


def _cumulative_purchases(
    model: str,
    params: Mapping[str, float],
    times: np.ndarray,
    freq: np.ndarray,
    rec: np.ndarray,
    t: np.ndarray,
) -> np.ndarray:
    """Expected purchases up to each of ``times`` (model units) per customer, as a (times,
    customers) array from one call of :func:`models.btyd.expected_purchases`."""
    return np.broadcast_to(
        btyd.expected_purchases(model, params, times[:, None], freq, rec, t),
        (len(times), len(freq)),
    )


def _observed_days(summary: Summary) -> np.ndarray:
    """Days each customer has been observed: ``T_days``, else ``tenure_days`` (a customer
    without a purchase), else 0; never negative. NumPy, not Series methods: pandas'
    overhead per call is most of the time for the one customer of a ``/v1/predict``."""
    t_days = _column(summary, "T_days")
    if "tenure_days" in summary:
        t_days = np.where(np.isnan(t_days), _column(summary, "tenure_days"), t_days)
    return np.maximum(np.where(np.isnan(t_days), 0.0, t_days), 0.0)


class CLVModel:
    """Purchase-count model + Gamma-Gamma customer-lifetime-value model (scikit-learn style).

    Parameters
    ----------
    model : ``"bgnbd"`` (default), ``"pareto_nbd"``, ``"mbgnbd"``, ``"nbd"`` (no dropout:
        P(alive) is 1), or ``"auto"``: the one with the best held-out log-likelihood
        (:func:`select_purchase_model`).
    time_unit : ``"weeks"`` (default, as in the CDNOW papers) or ``"days"``: the unit of the
        fitted parameters.
    time_unit_days : length of the time unit in days; overrides ``time_unit`` when given (kept
        for callers of the first version).
    penalizer : L2 penalty on the parameters (lifetimes' ``penalizer_coef``).
    annual_discount_rate : discount rate per year for the discounted CLV.
    observation_end : ``"last_day"`` (default): ``T`` runs to the last day observed,
        ``ceil(T_days) - 1`` (the papers' and lifetimes' convention); ``"as_of"``: ``T_days``
        as given. See the module docstring.
    spend : fit Gamma-Gamma (default). ``False``: the purchase-count model only, so
        ``expected_order_value`` and ``clv`` are NaN (for data whose spend cannot be
        modelled; :class:`SpendModelError` says when).

    Attributes (after :meth:`fit`)
    -------------------------------
    model_ : the fitted count model's name. params_ : count-model and Gamma-Gamma parameters
    (time in ``time_unit``). log_likelihood_ : the count model's total log-likelihood.
    selection_ : held-out mean log-likelihood per model (``model="auto"``), else ``None``.
    spend_frequency_corr_ : Pearson correlation of frequency and mean repeat spend among the
    Gamma-Gamma customers, which the model assumes near zero. n_spend_customers_,
    n_spend_excluded_ : repeat buyers used by Gamma-Gamma, and those left out for a
    non-positive (or missing) mean repeat spend. fit_window_ : ``{"start", "end"}`` ISO
    timestamps of the fitted purchases when ``fit(as_of=...)`` was given.
    """

    def __init__(
        self,
        *,
        model: str = "bgnbd",
        time_unit: str = "weeks",
        time_unit_days: float | None = None,
        penalizer: float = 0.0,
        annual_discount_rate: float = 0.10,
        observation_end: str = "last_day",
        spend: bool = True,
    ) -> None:
        self.model = model
        self.time_unit = time_unit
        self.time_unit_days = time_unit_days
        self.penalizer = penalizer
        self.annual_discount_rate = annual_discount_rate
        self.observation_end = observation_end
        self.spend = spend

    @property
    def unit_days(self) -> float:
        """Length of the model's time unit in days."""
        if self.time_unit_days is not None:
            return float(self.time_unit_days)
        if self.time_unit not in TIME_UNITS:
            raise ValueError(f"time_unit {self.time_unit!r}: choose from {list(TIME_UNITS)}")
        return TIME_UNITS[self.time_unit]

    def _clock(self, summary: Summary, t_days: pd.Series | np.ndarray) -> tuple[np.ndarray, ...]:
        """(frequency, recency, T) in model units under :attr:`observation_end`."""
        if self.observation_end not in OBSERVATION_ENDS:
            raise ValueError(f"observation_end {self.observation_end!r}: {OBSERVATION_ENDS}")
        t = np.asarray(t_days, dtype=float)
        if self.observation_end == "last_day":
            # the day before a midnight as_of; the day of any other as_of (purchases are dated
            # to the day, so the last day observed is the last a purchase can be dated to)
            t = np.maximum(np.ceil(t - 1e-9) - 1, 0.0)
        freq = _column(summary, "frequency", fill=0.0)
        rec = np.minimum(_column(summary, "recency_days", fill=0.0), t)
        return freq, rec / self.unit_days, t / self.unit_days

    def fit(
        self,
        summary: pd.DataFrame,
        *,
        as_of: pd.Timestamp | None = None,
        weight_column: str | None = None,
    ) -> CLVModel:
        """Fit on an RFM summary (columns :data:`SUMMARY_COLUMNS`, times in days).

        Customers with no purchase (``T_days`` missing) are left out. Gamma-Gamma uses repeat
        buyers with a positive mean repeat spend; the others are counted in
        ``n_spend_excluded_``. ``as_of``, the summary's cutoff, is recorded as the end of the
        fit window. ``weight_column`` names a column of customers per row: a condensed summary
        (:func:`summary_counts`, e.g. gathered from a cluster) fits to the same parameters as
        the per-customer one (``model="auto"`` needs the per-customer rows).
        """
        if self.model not in (*COUNT_MODELS, "auto"):
            raise ValueError(f"model {self.model!r}: choose from {[*COUNT_MODELS, 'auto']}")
        known = summary.dropna(subset=["T_days"])
        w = (
            np.ones(len(known))
            if weight_column is None
            else known[weight_column].to_numpy(dtype=float)
        )
        if w.sum() < MIN_CUSTOMERS:
            raise CLVModelError(f"only {int(w.sum())} customers with purchases: too few to fit")
        freq, rec, t = self._clock(known, known["T_days"])
        kind, self.selection_ = self.model, None
        if kind == "auto":
            if weight_column is not None:
                raise ValueError("model='auto' holds out customers by id: fit per-customer rows")
            kind, self.selection_ = select_purchase_model(
                freq, rec, t, index=known.index, penalizer=self.penalizer
            )
        counts = fit_purchases(freq, rec, t, model=kind, penalizer=self.penalizer, weights=w)
        self.params_cov_ = _covariance_or_warn(kind, counts.params, freq, rec, t, w, self.penalizer)

        monetary = known["monetary_repeat_mean"].to_numpy(dtype=float)
        repeat = freq > 0
        usable = repeat & (monetary > 0)  # NaN compares False
        spend, self.spend_frequency_corr_ = {}, float("nan")
        if self.spend:
            if w[usable].sum() < MIN_CUSTOMERS:
                raise SpendModelError(
                    f"only {int(w[usable].sum())} repeat buyers with positive spend: too few to "
                    "fit Gamma-Gamma"
                )
            try:
                spend = _fit_spend(freq[usable], monetary[usable], self.penalizer, w[usable])
            except CLVModelError as exc:
                raise SpendModelError(str(exc)) from exc
            self.spend_frequency_corr_ = _spend_frequency_corr(
                freq[usable], monetary[usable], w[usable]
            )
        if abs(self.spend_frequency_corr_) > 0.3:
            log.warning(
                "Gamma-Gamma assumes spend independent of frequency; their correlation is %.2f",
                self.spend_frequency_corr_,
            )
        self.model_ = kind
        self.params_ = {**counts.params, **spend}
        self.log_likelihood_ = counts.log_likelihood
        self.n_customers_ = counts.n_customers
        self.n_rows_fitted_: int | None = counts.n_rows
        self.n_spend_customers_ = int(w[usable].sum()) if self.spend else 0
        self.n_spend_excluded_ = int(w[repeat & ~usable].sum()) if self.spend else 0
        self.fit_window_ = None
        if as_of is not None:
            end = pd.Timestamp(as_of)
            start = end - pd.Timedelta(days=float(known["T_days"].max()))
            self.fit_window_ = {"start": start.isoformat(), "end": end.isoformat()}
        return self

    def count_params(self) -> dict[str, float]:
        """The fitted count model's parameters (time in the model's unit)."""
        return {k: self.params_[k] for k in COUNT_MODELS[self.model_]}

    def spend_params(self) -> dict[str, float]:
        """The fitted Gamma-Gamma parameters (``v`` in currency); empty without a spend
        model."""
        return {k: self.params_[k] for k in SPEND_PARAMS if k in self.params_}

    def score(self, summary: pd.DataFrame, *, weight_column: str | None = None) -> float:
        """Mean log-likelihood per customer of ``summary``'s purchase histories under the
        fitted count model: on customers left out of the fit, the held-out likelihood that
        compares count models (``weight_column``: customers per row, as in :meth:`fit`)."""
        known = summary.dropna(subset=["T_days"])
        w = (
            np.ones(len(known))
            if weight_column is None
            else known[weight_column].to_numpy(dtype=float)
        )
        freq, rec, t = self._clock(known, known["T_days"])
        params = self.count_params()
        return purchase_log_likelihood(self.model_, params, freq, rec, t, w) / float(w.sum())

    def inputs(self, summary: pd.DataFrame | Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The columns of ``summary`` the predictions read (:data:`SUMMARY_COLUMNS` and
        ``tenure_days`` when present), as float64 arrays with missing values NaN: read once,
        for callers that predict several times for the same customers (a scoring call
        predicts over two horizons and the value columns), since each pandas column look-up
        costs about as much as the formulas for the one customer of a ``/v1/predict``.
        ``summary``: a frame, or a mapping of column name to values (scoring passes the
        frame's float columns as the churn model's encoded matrix holds them)."""
        names = (*SUMMARY_COLUMNS, "tenure_days")
        return {c: _column(summary, c) for c in names if c in summary}

    def predict(self, summary: pd.DataFrame, *, horizon_days: float) -> pd.DataFrame:
        """P(alive), expected purchases and discounted CLV over ``horizon_days``.

        Customers without a purchase are treated as just acquired (frequency 0, recency 0)
        with ``T`` their tenure if ``tenure_days`` is given, else 0.

        Returns
        -------
        DataFrame indexed like ``summary`` with columns :data:`OUTPUT_COLUMNS`:
        ``expected_purchases`` over the horizon (conditional expectation, FHL 2005a eq. 10 for
        BG/NBD), ``expected_order_value`` in currency (Gamma-Gamma conditional mean, note 025
        eq. 5), ``clv`` in currency: the expected spend over the horizon, discounted month by
        month at ``annual_discount_rate``.

        Raises
        ------
        CLVModelError
            Some prediction is not finite (never returned as NaN).
        """
        out = self.predict_columns(summary, horizon_days=horizon_days)
        # one float block, not a dict of columns: pandas' per-column work is most of the cost
        # of this frame for the one customer of a ``/v1/predict``
        block = np.column_stack([out[c] for c in OUTPUT_COLUMNS])
        return pd.DataFrame(block, index=summary.index, columns=list(OUTPUT_COLUMNS))

    def predict_columns(self, summary: Summary, *, horizon_days: float) -> dict[str, np.ndarray]:
        """:meth:`predict`'s columns as float64 arrays (:data:`OUTPUT_COLUMNS`, customers in
        the order of ``summary``), without the frame; ``summary`` a frame or the arrays of
        :meth:`inputs`. Same values, same errors."""
        freq, rec, t = self._clock(summary, _observed_days(summary))
        with np.errstate(all="ignore"):  # non-finite results are caught below, by name
            out = self._predict(freq, rec, t, summary, horizon_days=horizon_days)
        # without a spend model the currency columns are NaN by design
        checked = OUTPUT_COLUMNS if self.spend else ("p_alive", "expected_purchases")
        self._check_finite([out[c] for c in checked], freq, rec, t)
        return out

    def _check_finite(
        self, checked: list[np.ndarray], freq: np.ndarray, rec: np.ndarray, t: np.ndarray
    ) -> None:
        """Raise :class:`CLVModelError` naming a customer whose prediction is not finite."""
        u = self.unit_days
        bad = ~np.logical_and.reduce([np.isfinite(v) for v in checked])
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise CLVModelError(
                f"{int(bad.sum())} customers got non-finite CLV predictions, e.g. frequency "
                f"{freq[i]:g}, recency {rec[i]:g}, T {t[i]:g} (units of {u:g} days); refit "
                f"with {_suggest(self.penalizer)}"
            )

    def count_columns(self, summary: Summary, *, horizon_days: float) -> dict[str, np.ndarray]:
        """:meth:`predict`'s ``p_alive`` and ``expected_purchases`` alone, the same values, as
        float64 arrays (``summary``: a frame or the arrays of :meth:`inputs`): what the churn
        features need (models/clv_features.py). Leaves out the spend model and the
        month-by-month discounting, two thirds of the cost of a 90-day horizon at a million
        customers (each month is a hypergeometric function per customer).

        Raises
        ------
        CLVModelError
            Some prediction is not finite.
        """
        u = self.unit_days
        freq, rec, t = self._clock(summary, _observed_days(summary))
        model, params = self.model_, self.count_params()
        steps = np.append(np.arange(30.0, horizon_days, 30.0), horizon_days)
        # the last call of :meth:`_predict`'s loop, with the same months, so the same values
        per_call = max(1, _STEP_ELEMENTS // max(len(freq), 1))
        months = steps[(len(steps) - 1) // per_call * per_call :]
        with np.errstate(all="ignore"):
            p_alive = btyd.probability_alive(model, params, freq, rec, t)
            cums = _cumulative_purchases(model, params, months / u, freq, rec, t)
        out = {"p_alive": p_alive, "expected_purchases": np.array(cums[-1])}
        self._check_finite(list(out.values()), freq, rec, t)
        return out

    def _predict(
        self,
        freq: np.ndarray,
        rec: np.ndarray,
        t: np.ndarray,
        summary: Summary,
        *,
        horizon_days: float,
    ) -> dict[str, np.ndarray]:
        u = self.unit_days
        model, params = self.model_, self.count_params()
        p_alive = btyd.probability_alive(model, params, freq, rec, t)
        monetary = np.maximum(_column(summary, "monetary_repeat_mean", fill=0.0), 0.0)
        order_value = (
            btyd.expected_average_spend(self.spend_params(), freq, monetary)
            if self.spend
            else np.full(len(freq), np.nan)
        )
        # Discount month by month: sum_k [E N(t_k) - E N(t_{k-1})] * m / (1 + d)^(t_k / 365).
        steps = np.append(np.arange(30.0, horizon_days, 30.0), horizon_days)
        cum_prev = np.zeros_like(freq)
        clv = np.zeros_like(freq)
        # several months per call, as a (months, customers) array by broadcasting: each call's
        # overhead is most of its cost for a few customers; :data:`_STEP_ELEMENTS` bounds the
        # array for many
        per_call = max(1, _STEP_ELEMENTS // max(len(freq), 1))
        for first in range(0, len(steps), per_call):
            months = steps[first : first + per_call]
            cums = _cumulative_purchases(model, params, months / u, freq, rec, t)
            for step, cum in zip(months, cums, strict=True):
                clv += (
                    (cum - cum_prev) * order_value / (1 + self.annual_discount_rate) ** (step / 365)
                )
                cum_prev = cum
        return {
            "p_alive": np.asarray(p_alive, dtype=float),
            "expected_purchases": np.array(cum_prev, dtype=float),  # a row of ``cums``: copied
            "expected_order_value": np.asarray(order_value, dtype=float),
            "clv": np.clip(clv, 0, None),
        }

    def predict_value(
        self, summary: pd.DataFrame, predicted: pd.DataFrame, *, horizon_days: float
    ) -> pd.DataFrame:
        """What a reader of ``clv`` also needs: P(alive) where it means something, intervals
        over the same horizon, and the residual lifetime value (docs/clv.md).

        Parameters
        ----------
        summary : the frame given to :meth:`predict`.
        predicted : :meth:`predict`'s output for ``summary`` over ``horizon_days``.
        horizon_days : the CLV horizon, days (the one ``predicted`` is over).

        Returns
        -------
        DataFrame indexed like ``summary``: ``p_alive`` (NaN where ``p_alive_note`` says why
        it would mislead), ``p_alive_note`` (None or a reason code: :data:`NO_REPEAT_PURCHASE`
        for BG/NBD customers without a repeat purchase, to whom BG/NBD gives P(alive) 1 by
        construction; :data:`NO_DROPOUT_MODEL` for every customer under NBD),
        ``purchases_low`` / ``purchases_high`` (the :data:`INTERVAL_LEVEL` interval of the
        purchases, :func:`purchase_distribution` mixed over :func:`parameter_points`),
        ``clv_low`` / ``clv_high`` (the spend interval of :func:`spend_interval`, discounted
        like ``clv``) and ``residual_clv`` (:func:`residual_purchases` times the expected
        order value). Columns a model cannot give are NaN: intervals and residual value for
        Pareto/NBD, currency columns without a spend model, the residual value under NBD.
        """
        return pd.DataFrame(
            self.value_columns(summary, predicted, horizon_days=horizon_days), index=summary.index
        )

    def value_columns(
        self, summary: Summary, predicted: Summary, *, horizon_days: float
    ) -> dict[str, np.ndarray]:
        """:meth:`predict_value`'s columns as arrays (``p_alive_note`` of dtype object: None
        or a reason code), without the frame; ``summary`` a frame or the arrays of
        :meth:`inputs`, ``predicted`` :meth:`predict`'s frame or :meth:`predict_columns`'
        arrays for it."""
        u = self.unit_days
        freq, rec, t = self._clock(summary, _observed_days(summary))
        nan = np.full(len(freq), np.nan)
        note = np.full(len(freq), None, dtype=object)
        if self.model_ == "bgnbd":
            note[freq == 0] = NO_REPEAT_PURCHASE
        elif self.model_ == "nbd":
            note[:] = NO_DROPOUT_MODEL
        p_alive = np.where(note == None, _column(predicted, "p_alive"), np.nan)  # noqa: E711
        out = {
            "p_alive": p_alive,
            "p_alive_note": note,
            "purchases_low": nan,
            "purchases_high": nan,
            "clv_low": nan,
            "clv_high": nan,
            "residual_clv": nan,
        }
        if self.model_ in INTERVAL_MODELS:
            params = self.count_params()
            cov = None if self.params_cov_ is None else np.asarray(self.params_cov_)
            codes, first = distinct(freq, rec, t)
            with np.errstate(all="ignore"):
                dist = purchase_distribution(
                    self.model_,
                    parameter_points(self.model_, params, cov),
                    freq[first],
                    rec[first],
                    t[first],
                    t=horizon_days / u,
                )
            out["purchases_low"], out["purchases_high"] = dist.low[codes], dist.high[codes]
            if self.spend:
                monetary = _column(summary, "monetary_repeat_mean")
                spend = {k: self.params_[k] for k in SPEND_PARAMS}
                # the bounds scale with the posterior's gamma + m x (spend_interval): computed
                # per distinct history at m = 0, then scaled per customer
                unit_low, unit_high = spend_interval(dist, freq[first], np.zeros(len(first)), spend)
                m = np.nan_to_num(monetary, nan=0.0).clip(0, None)
                scale = (spend["v"] + m * freq) / spend["v"]
                low, high = unit_low[codes] * scale, unit_high[codes] * scale
                # discounted like clv: the mean's discount profile applied to the bounds
                order_value = _column(predicted, "expected_order_value")
                expected = _column(predicted, "expected_purchases") * order_value
                clv = _column(predicted, "clv")
                ratio = np.divide(clv, expected, out=np.ones_like(clv), where=expected > 0)
                out["clv_low"], out["clv_high"] = low * ratio, high * ratio
                delta = np.log1p(self.annual_discount_rate) * u / 365
                with np.errstate(all="ignore"):  # per distinct history, as the distribution
                    dert = residual_purchases(
                        self.model_,
                        params,
                        freq[first],
                        rec[first],
                        t[first],
                        discount_per_unit=delta,
                    )[codes]
                residual = dert * order_value
                out["residual_clv"] = np.where(np.isfinite(residual), residual, np.nan)
        # object, not pandas' str dtype: building that from a million Nones costs a quarter
        # of a second per 300,000 rows
        out["p_alive_note"] = np.asarray(note, dtype=object)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters, settings and fit metadata (layout :data:`FORMAT`)."""
        return {
            "format": FORMAT,
            "kind": self.model_.replace("_", "") + ("+gammagamma" if self.spend else ""),
            "spend": self.spend,
            "model": self.model_,
            "model_requested": self.model,
            "time_unit": next(
                (k for k, v in TIME_UNITS.items() if v == self.unit_days),
                f"{self.unit_days:g} days",
            ),
            "time_unit_days": self.unit_days,
            "observation_end": self.observation_end,
            "penalizer": self.penalizer,
            "annual_discount_rate": self.annual_discount_rate,
            "params": self.params_,
            "params_cov": self.params_cov_,
            "n_customers": self.n_customers_,
            "n_rows_fitted": self.n_rows_fitted_,
            "fit_window": self.fit_window_,
            "diagnostics": {
                "log_likelihood": self.log_likelihood_,
                "selection": self.selection_,
                "spend_frequency_corr": _finite_or_none(self.spend_frequency_corr_),
                "n_spend_customers": self.n_spend_customers_,
                "n_spend_excluded": self.n_spend_excluded_,
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CLVModel:
        """Rebuild a fitted model from :meth:`to_dict` output (this format or format 1)."""
        version = int(data.get("format", 1))
        if version == 1:
            if data.get("kind") != "bgnbd+gammagamma":
                raise ValueError(f"unknown CLV model kind {data.get('kind')!r}")
            data = {**data, "model": "bgnbd", "observation_end": "as_of"}
        elif version != FORMAT:
            raise ValueError(f"CLV model format {version}: this code reads formats 1 to {FORMAT}")
        if data["model"] not in COUNT_MODELS:
            raise ValueError(f"unknown CLV purchase model {data['model']!r}")
        model = cls(
            model=data.get("model_requested", data["model"]),
            time_unit=data.get("time_unit", "weeks"),
            time_unit_days=float(data["time_unit_days"]),
            penalizer=float(data["penalizer"]),
            annual_discount_rate=float(data["annual_discount_rate"]),
            observation_end=data["observation_end"],
            spend=bool(data.get("spend", True)),
        )
        model.model_ = data["model"]
        model.params_ = {k: float(v) for k, v in data["params"].items()}
        cov = data.get("params_cov")  # absent in models saved before intervals
        model.params_cov_ = None if cov is None else [[float(v) for v in row] for row in cov]
        model.n_customers_ = int(data["n_customers"])
        model.n_rows_fitted_ = data.get("n_rows_fitted")
        model.fit_window_ = data.get("fit_window")
        diagnostics = data.get("diagnostics", {})
        model.log_likelihood_ = diagnostics.get("log_likelihood")
        model.selection_ = diagnostics.get("selection")
        model.spend_frequency_corr_ = diagnostics.get("spend_frequency_corr")
        model.n_spend_customers_ = diagnostics.get("n_spend_customers")
        model.n_spend_excluded_ = diagnostics.get("n_spend_excluded")
        return model


# -- value over a stated horizon: residual value, P(alive) notes and intervals ------------------
#
# Everything below is closed form (no sampling) and vectorised over customers. The purchase
# count models with a closed-form conditional distribution of future purchases are BG/NBD,
# MBG/NBD and NBD: given the history and alive, the purchase rate is gamma(r + x, alpha + T)
# and the dropout probability per purchase beta(a, b + x) (MBG/NBD: b + x + 1, as it flips the
# dropout coin once more, at the first purchase); NBD never drops out. Pareto/NBD's
# conditional distribution needs a numerical integral per customer and is not offered here.

#: Count models whose conditional purchase distribution, residual value and intervals this
#: module computes in closed form.
INTERVAL_MODELS = ("bgnbd", "mbgnbd", "nbd")
#: Probability of the central interval for purchases and CLV (``clv_low``, ``clv_high``).
INTERVAL_LEVEL = 0.8
#: The conditional distribution is summed until this much probability is left in its tail
#: (for the moments of the count, which the CLV interval needs).
TAIL_MASS = 1e-4
#: Hard stop on the purchase count summed to (a customer still short of ``1 - TAIL_MASS``
#: there keeps the tail it has; the quantiles are reached long before for any real customer).
MAX_COUNT = 2_000
#: ``p_alive_note`` reason codes, and the models they apply to (docs/clv.md, "P(alive)").
NO_REPEAT_PURCHASE = "no_repeat_purchase"
NO_DROPOUT_MODEL = "no_dropout_model"
#: Below this standard error of every log-parameter, mixing over parameter points is skipped
#: and the fitted parameters alone are used (8x cheaper): on the CDNOW sample, with standard
#: errors of 5% to 29%, the mixing moves the interval ends of only a handful of 2,357
#: customers; a million CDNOW-like customers fit every parameter to 1.5% or better.
NEGLIGIBLE_SE = 0.02
#: Gauss quadrature nodes per axis (purchase rate, dropout probability) of the residual value.
RESIDUAL_NODES = 24


def distinct(*columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the distinct rows of ``columns`` and the first row of each: per-customer work
    that depends on these columns alone is done once per distinct row (real histories repeat:
    a million customers dated to days have about a tenth as many distinct histories)."""
    key = np.zeros(len(columns[0]), dtype=np.int64)
    for col in columns:  # the features' factorize: dict look-ups for a few values
        codes, uniques = factorize(np.asarray(col))
        key = key * (len(uniques) + 1) + codes
    codes, _ = factorize(key)
    first = np.zeros(codes.max() + 1 if len(codes) else 0, dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes))[::-1]
    return codes, first


def parameter_covariance(
    model: str,
    params: dict[str, float],
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    penalizer: float = 0.0,
) -> np.ndarray | None:
    """Covariance of the count model's log-parameters from the likelihood's curvature.

    The inverse of the Hessian of the total (penalised) negative log-likelihood at the fitted
    parameters, taken by autograd in log-parameters on lifetimes' rescaled time axis (a shift
    of ``log alpha``, so the covariance is the same on any time axis). Works on the condensed
    table. ``None`` when the Hessian is not positive definite (a flat direction: the data do
    not pin a parameter down) or for Pareto/NBD, whose likelihood autograd cannot
    differentiate.

    Returns
    -------
    ``(d, d)`` array in the order of :data:`COUNT_MODELS`' parameter names, or ``None``.
    """
    if model == "pareto_nbd":
        return None
    names = COUNT_MODELS[model]
    _, scale, (f, r, t, w) = _rescaled_counts(frequency, recency, T, weights)
    x = np.log([params[k] * scale if k in ("alpha", "beta") else params[k] for k in names])

    def objective(log_params: Any) -> Any:
        return (
            btyd.count_negative_log_likelihood(model, log_params, f, r, t, w, penalizer) * w.sum()
        )

    with np.errstate(all="ignore"):
        h = np.asarray(hessian(objective)(x), dtype=float)
    if not np.all(np.isfinite(h)) or np.linalg.eigvalsh((h + h.T) / 2).min() <= 0:
        return None
    inv = np.linalg.inv(h)
    return (inv + inv.T) / 2


def parameter_points(
    model: str, params: dict[str, float], cov: np.ndarray | None
) -> list[dict[str, float]]:
    """A fixed, equally weighted set of parameter values with the fitted parameters' mean and
    covariance: the ``2d`` sigma points ``log theta +- sqrt(d) L_j`` (``L`` the Cholesky factor
    of the log-parameter covariance; the unscented transform without a centre point). Mixing
    a closed-form prediction over them carries the parameter uncertainty into it with ``2d``
    evaluations and no random draws. Without a covariance: the fitted parameters alone."""
    names = COUNT_MODELS[model]
    if cov is None or np.sqrt(np.diag(np.asarray(cov, dtype=float))).max() < NEGLIGIBLE_SE:
        return [{k: float(params[k]) for k in names}]
    centre = np.log([params[k] for k in names])
    d = len(names)
    chol = np.linalg.cholesky(np.asarray(cov, dtype=float) * d)
    points = [centre + sign * chol[:, j] for j in range(d) for sign in (1.0, -1.0)]
    return [dict(zip(names, np.exp(p).tolist(), strict=True)) for p in points]


@dataclass(frozen=True)
class _AlivePosterior:
    """Per customer (and per parameter point, when the parameters are ``(points, 1)``
    arrays): P(alive), and given alive the purchase rate's gamma(shape, rate) and the
    dropout probability's beta(a, c) (``a = 0``: no dropout)."""

    p_alive: np.ndarray
    shape: np.ndarray
    rate: np.ndarray
    a: float | np.ndarray
    c: np.ndarray


def _alive_posterior(
    model: str,
    params: Mapping[str, float | np.ndarray],
    freq: np.ndarray,
    rec: np.ndarray,
    T: np.ndarray,
) -> _AlivePosterior:
    """The posterior of one parameter set (floats), or of several at once: parameters as
    ``(points, 1)`` arrays give ``(points, customers)`` fields by broadcasting, one call for
    every point instead of one per point (each call's overhead is most of its cost for the
    one customer of a ``/v1/predict``)."""
    if model not in INTERVAL_MODELS:
        raise ValueError(f"{model}: no closed-form purchase distribution; {INTERVAL_MODELS}")
    r, alpha = params["r"], params["alpha"]
    shape, rate = r + freq, alpha + T
    if model == "nbd":
        ones = np.ones(np.shape(shape))
        return _AlivePosterior(ones, shape, rate, 0.0, ones)
    a, b = params["a"], params["b"]
    p_alive = btyd.probability_alive(model, params, freq, rec, T)
    c = b + freq + (1.0 if model == "mbgnbd" else 0.0)
    return _AlivePosterior(p_alive, shape, rate, a, c)


@dataclass(frozen=True)
class PurchaseDistribution:
    """Summary of the conditional distribution of a customer's purchases over a horizon.

    low, high : the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles (whole purchases).
    p_zero : P(no purchase). mean, second_moment : E[N] and E[N^2] (summed to
    :data:`TAIL_MASS`).
    """

    low: np.ndarray
    high: np.ndarray
    p_zero: np.ndarray
    mean: np.ndarray
    second_moment: np.ndarray


#: Elements of one block's ``(points, customers, counts)`` arrays in
#: :func:`purchase_distribution`: a few customers sum up to 64 counts per pass of array
#: operations, a large working set one count per pass (memory stays flat).
_BLOCK_ELEMENTS = 1 << 12
_MAX_BLOCK = 64


def purchase_distribution(
    model: str,
    points: list[dict[str, float]],
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
    *,
    t: float,
    level: float = INTERVAL_LEVEL,
) -> PurchaseDistribution:
    """The distribution of each customer's purchases in ``(T, T + t]`` given the history,
    mixed over the parameter ``points`` (:func:`parameter_points`), in closed form.

    For BG/NBD (Fader, Hardie & Lee's conditional PMF), with ``NB_n`` the negative binomial
    probability of ``n`` under gamma(r + x, alpha + T) rates over ``t``,
    ``P(N = n) = (1 - P_alive) [n = 0] + P_alive (B(a, c + n) / B(a, c) NB_n
    + [n > 0] B(a + 1, c + n - 1) / B(a, c) (1 - sum_{j < n} NB_j))``, ``c = b + x``: either
    the customer makes ``n`` purchases and survives each, or drops out at the ``n``-th while
    the rate would have made ``n`` or more. Each term follows from the one before by a ratio,
    so a run of counts is a cumulative product (or sum, in logs) along a counts axis: the
    terms are summed in blocks of counts (:data:`_BLOCK_ELEMENTS`), and each customer's sum
    stops at the count where its tail falls below :data:`TAIL_MASS` (the same count whatever
    other customers are scored with it), so the cost follows the purchase counts, not a
    fixed grid. Times in the parameters' unit.
    """
    freq, rec, T = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
    n_cust = len(freq)
    lo_level, hi_level = (1 - level) / 2, (1 + level) / 2
    # every parameter point at once: (points, 1) parameters give (points, customers) arrays
    stacked = {k: np.array([[p[k]] for p in points]) for k in points[0]}
    post = _alive_posterior(model, stacked, freq, rec, T)
    full = (len(points), n_cust)
    pa, s, rate, a, c = (
        np.broadcast_to(v, full) for v in (post.p_alive, post.shape, post.rate, post.a, post.c)
    )
    log_pi = np.log(t) - np.log(rate + t)
    log_nb = s * (np.log(rate) - np.log(rate + t))  # NB_n at the last count summed (n = 0)
    cum_nb = np.zeros(full)  # sum_{j < n} NB_j
    surv = np.ones(full)  # B(a, c + n) / B(a, c)
    drop = np.ones(full)  # B(a + 1, c + n - 1) / B(a, c) from n = 1 (a start of 1 for its product)
    p_zero = ((1 - pa) + pa * np.exp(log_nb)).mean(axis=0)
    cdf, mean, m2 = p_zero.copy(), np.zeros(n_cust), np.zeros(n_cust)
    # crossings: first n with P(N <= n) >= level, moved to n - 1 when P(N <= n - 1) is nearer
    # (for the upper ends) or to n + 1 when P(N < n + 1) is nearer (for the lower end)
    low = np.where(cdf >= lo_level, np.where(cdf - lo_level < lo_level, 1, 0), -1)
    end_level = np.where(cdf >= level, 0, -1)
    end_hi = np.where(cdf >= hi_level, 0, -1)
    ids = np.arange(n_cust)
    nb_prev = np.exp(log_nb)  # NB_n, to be added to cum_nb for the next count
    ac = a + c
    n = 0
    while n < MAX_COUNT:
        open_ = cdf[ids] < 1 - TAIL_MASS
        if not open_.any():
            break
        if open_.sum() <= open_.size // 2:  # the working set: customers still summing
            ids = ids[open_]
            pa, s, log_pi, a, c, ac, log_nb, nb_prev, cum_nb, surv, drop = (
                v[:, open_] for v in (pa, s, log_pi, a, c, ac, log_nb, nb_prev, cum_nb, surv, drop)
            )
        k = int(np.clip(_BLOCK_ELEMENTS // pa.size, 1, min(_MAX_BLOCK, MAX_COUNT - n)))
        counts = np.arange(n + 1, n + k + 1, dtype=float)  # the counts of this block
        # each term along the counts axis (last) from the value before the block
        step = np.log((s[..., None] + (counts - 1)) / counts) + log_pi[..., None]
        log_nbs = log_nb[..., None] + np.cumsum(step, axis=-1)
        nbs = np.exp(log_nbs)
        shifted = (
            nb_prev[..., None]
            if k == 1
            else np.concatenate([nb_prev[..., None], nbs[..., :-1]], axis=-1)
        )
        cum_nbs = cum_nb[..., None] + np.cumsum(shifted, axis=-1)  # sum_{j < n} NB_j
        survs = surv[..., None] * np.cumprod(
            (c[..., None] + (counts - 1)) / (ac[..., None] + (counts - 1)), axis=-1
        )
        ratio = (c[..., None] + (counts - 2)) / (ac[..., None] + (counts - 1))
        if n == 0:
            ratio[..., 0] = a / ac
        drops = drop[..., None] * np.cumprod(ratio, axis=-1)
        p = (pa[..., None] * (survs * nbs + drops * np.clip(1 - cum_nbs, 0, None))).mean(axis=0)
        start = cdf[ids]
        after = start[:, None] + np.cumsum(p, axis=1)
        if (after[:, -1] >= 1 - TAIL_MASS).any():
            # a customer sums no count once its tail is below TAIL_MASS (the same counts
            # whoever else is scored with it; the CDF grows, so they are a prefix)
            p = np.where(after - p < 1 - TAIL_MASS, p, 0.0)
            after = start[:, None] + np.cumsum(p, axis=1)
        before = after - p
        cdf[ids] = after[:, -1]
        mean[ids] += (p * counts).sum(axis=1)
        m2[ids] += (p * (counts * counts)).sum(axis=1)
        for end, at, lower in (
            (low, lo_level, True),
            (end_level, level, False),
            (end_hi, hi_level, False),
        ):
            crossing = np.flatnonzero((end[ids] < 0) & (after[:, -1] >= at))
            if not len(crossing):
                continue
            j = (after[crossing] >= at).argmax(axis=1)
            was, now = before[crossing, j], after[crossing, j]
            if lower:  # n + 1 when P(N < n + 1) is nearer
                end[ids[crossing]] = counts[j] + (now - at < at - was)
            else:  # n - 1 when P(N <= n - 1) is nearer
                end[ids[crossing]] = counts[j] - (at - was < now - at)
        log_nb, nb_prev = log_nbs[..., -1], nbs[..., -1]
        cum_nb, surv, drop = cum_nbs[..., -1], survs[..., -1], drops[..., -1]
        n += k
    low, end_level, end_hi = (np.where(v < 0, n, v) for v in (low, end_level, end_hi))
    # an atom at zero of at least the lower tail: the tail cannot be cut, the interval starts
    # at zero and holds ``level`` (not ``hi_level``) of the probability
    anchored = p_zero >= lo_level
    low = np.where(anchored, 0, low)
    high = np.maximum(np.where(anchored, end_level, end_hi), low)
    return PurchaseDistribution(low.astype(float), high.astype(float), p_zero, mean, m2)


@functools.lru_cache(maxsize=4096)
def _residual_nodes(shape: float, c: float, a: float) -> tuple[np.ndarray, ...]:
    """Gauss-Laguerre nodes and weights for a gamma(``shape``) rate and Gauss-Jacobi ones for
    a beta(``a``, ``c``) dropout probability (weights summing to one), :data:`RESIDUAL_NODES`
    each. Kept per parameters: the roots cost about 0.15 ms a pair, and the shapes repeat
    (``r + x`` for whole frequencies ``x``) across calls, e.g. the server's requests."""
    u, wu = roots_genlaguerre(RESIDUAL_NODES, shape - 1)
    z, wp = roots_jacobi(RESIDUAL_NODES, c - 1, a - 1)
    out = (u, wu / wu.sum(), (1 + z) / 2, wp / wp.sum())
    for v in out:
        v.flags.writeable = False  # shared between callers
    return out


def residual_purchases(
    model: str,
    params: dict[str, float],
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
    *,
    discount_per_unit: float,
) -> np.ndarray:
    """Discounted expected residual purchases (DERT): ``E[sum_k exp(-delta t_k)]`` over all of
    a customer's future purchases, continuous discounting at ``discount_per_unit`` (per time
    unit of the parameters).

    Given alive, a customer with rate ``lambda`` and dropout probability ``p`` makes the
    ``k``-th future purchase at a gamma(k, lambda) time and is still there for it with
    probability ``(1 - p)^(k - 1)``, so the sum is
    ``sum_k (1 - p)^(k - 1) (lambda / (lambda + delta))^k = lambda / (delta + p lambda)``;
    its mean over the posterior (lambda gamma(r + x, alpha + T), p beta(a, c)) times P(alive)
    is the DERT. The mean is a Gauss-Laguerre x Gauss-Jacobi product rule
    (:data:`RESIDUAL_NODES` per axis, exact weights for the gamma and beta densities), per
    distinct frequency. NBD (no dropout) has no finite residual value: ``inf``.
    """
    freq, rec, T = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
    if model == "nbd" or discount_per_unit <= 0:  # without discounting E[1 / p] may diverge
        return np.full(len(freq), np.inf)
    post = _alive_posterior(model, params, freq, rec, T)
    # given alive the value depends on (x, T) alone: computed once per distinct pair
    codes, first = distinct(freq, T)
    fx, rate = freq[first], post.rate[first]
    per_pair = np.empty(len(first))
    for x in np.unique(fx):
        rows = np.flatnonzero(fx == x)
        shape, c = float(post.shape[first[rows[0]]]), float(post.c[first[rows[0]]])
        u, wu, p, wp = _residual_nodes(shape, c, float(post.a))
        # lambda = u / rate: lambda / (delta + p lambda) = u / (rate delta + p u)
        scaled = rate[rows, None, None] * discount_per_unit
        inner = u[None, :, None] / (scaled + p[None, None, :] * u[None, :, None])
        per_pair[rows] = np.einsum("cij,i,j->c", inner, wu, wp)
    out: np.ndarray = post.p_alive * per_pair[codes]
    return out


#: Gamma shapes from this one on take the Wilson-Hilferty cube-root quantile (error well under
#: 1% of the quantile there), smaller ones scipy's exact inverse (20x slower).
WILSON_HILFERTY_SHAPE = 1.0


def gamma_quantile(shape: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Quantile ``u`` of gamma(shape, 1), vectorised: Wilson-Hilferty (the cube root of a
    gamma variable is nearly normal) for shapes of :data:`WILSON_HILFERTY_SHAPE` and more,
    ``scipy.special.gammaincinv`` below."""
    shape, u = np.asarray(shape, dtype=float), np.asarray(u, dtype=float)
    out = np.empty(len(shape))
    big = shape >= WILSON_HILFERTY_SHAPE
    z = ndtri(np.clip(u[big], 1e-12, 1 - 1e-12))
    c = 1 / (9 * shape[big])
    out[big] = shape[big] * np.clip(1 - c + z * np.sqrt(c), 0, None) ** 3
    out[~big] = gammaincinv(shape[~big], u[~big])
    return out


def spend_interval(
    dist: PurchaseDistribution,
    frequency: np.ndarray,
    monetary: np.ndarray,
    spend: dict[str, float],
    *,
    level: float = INTERVAL_LEVEL,
) -> tuple[np.ndarray, np.ndarray]:
    """Central ``level`` interval of each customer's total spend over the horizon, undiscounted.

    Total spend ``S`` is ``N`` purchases of gamma(p, nu) amounts, with ``nu`` the customer's
    Gamma-Gamma posterior gamma(p x + q, gamma + m x) (``m`` the mean repeat spend). Given
    ``N > 0``, ``E[S] = p E[N] b / (A - 1)`` and
    ``E[S^2] = (p^2 E[N^2] + p E[N]) b^2 / ((A - 1)(A - 2))`` (``A = p x + q``, ``b = gamma +
    m x``); ``S`` given ``N > 0`` is taken as the gamma with these two moments, and ``S = 0``
    with probability P(N = 0). As for purchases, an atom at zero of at least the lower tail
    makes the interval ``[0, level quantile]``. NaN where ``A <= 2`` (infinite variance).
    The gamma's shape does not depend on ``m`` and its scale is proportional to ``b``, so the
    bounds are those at ``m = 0`` times ``b / gamma``.
    """
    lo_level, hi_level = (1 - level) / 2, (1 + level) / 2
    x = np.asarray(frequency, dtype=float)
    m = np.nan_to_num(np.asarray(monetary, dtype=float), nan=0.0).clip(0, None)
    p, q, v = spend["p"], spend["q"], spend["v"]
    A = p * x + q
    low, high = np.zeros(len(x)), np.zeros(len(x))
    # only customers with P(no purchase) below ``level`` have an interval above [0, 0]
    rows = np.flatnonzero(dist.p_zero < level)
    p0, xr, Ar = dist.p_zero[rows], x[rows], A[rows]
    b = v + m[rows] * xr
    positive = np.clip(1 - p0, 1e-300, None)
    n1, n2 = dist.mean[rows] / positive, dist.second_moment[rows] / positive
    with np.errstate(all="ignore"):
        mean = p * n1 * b / (Ar - 1)
        second = (p * p * n2 + p * n1) * b * b / ((Ar - 1) * (Ar - 2))
        var = np.clip(second - mean * mean, 1e-300, None)
        k, theta = mean * mean / var, var / mean

        def quantile(u: float, where: np.ndarray) -> np.ndarray:
            # zero where the atom at zero holds u already
            out = np.zeros(len(where))
            take = np.flatnonzero(u > p0[where])
            sel = where[take]
            out[take] = gamma_quantile(k[sel], (u - p0[sel]) / positive[sel]) * theta[sel]
            return out

        anchored = p0 >= lo_level
        two = np.flatnonzero(~anchored)
        one = np.flatnonzero(anchored)
        low[rows[two]] = quantile(lo_level, two)
        high[rows[two]] = quantile(hi_level, two)
        high[rows[one]] = quantile(level, one)
    bad = A <= 2
    return np.where(bad, np.nan, low), np.where(bad, np.nan, high)
