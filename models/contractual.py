"""Contractual CLV: the shifted-beta-geometric (sBG) retention model and the discounted
expected residual lifetime, persisted as JSON.

References
----------
Fader & Hardie (2007), "How to Project Customer Retention", J. Interactive Marketing 21(1) --
the sBG model: each customer renews at the end of every period with a constant probability
``1 - theta``, and ``theta`` is beta(alpha, beta) across customers, so
``P(T = t) = B(alpha + 1, beta + t - 1) / B(alpha, beta)`` and the survivor function
``S(t) = P(T > t) = B(alpha, beta + t) / B(alpha, beta)`` (eqs. 3-5).
Fader & Hardie (2010), "Customer-Base Valuation in a Contractual Setting: The Perils of
Ignoring Heterogeneity", Marketing Science 29(1) -- DERL, the discounted expected residual
lifetime of a customer who has renewed ``n`` times (eq. 6).

Conventions (``docs/clv.md``)
-----------------------------
Time is in whole contract *periods* (default one month, ``period_days`` = 30.4375 days, the
mean Gregorian month). ``tenure_periods = n`` is the number of renewals a customer has made
(periods survived); a customer who churned after ``n`` renewals has ``T = n + 1``. At
``as_of`` an active customer stands just before the next renewal: residual value is the
recurring revenue of each future renewal ``n + k`` (``k = 1, 2, ...``) times the probability
of reaching it given ``n``, ``S(n + k) / S(n)``, discounted by ``(1 + d)^-(k - 1)`` with ``d``
the per-period rate of ``annual_discount_rate`` -- Fader & Hardie's DERL. Over a horizon the
sum stops at the renewals within it (``horizon_days / period_days`` rounded: 365 days
are 12 months); with no horizon
it is the closed form ``B(alpha, beta + n + 1) / B(alpha, beta + n) * 2F1(1, beta + n + 1;
alpha + beta + n + 1; 1 / (1 + d))``.

Fitting is maximum likelihood with interval censoring: each customer contributes
``S(lo) - S(hi)``, the probability that the churn period ``T`` is in ``(lo, hi]``: churned
after ``n`` renewals ``(n, n + 1]``; still active at ``n`` ``(n, inf)`` (right-censored); a
label "churns within the next ``h`` periods" ``(n, n + h]``, its negation ``(n + h, inf)``.
Numpy and scipy only; no lifetimes, no pickle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, hyp2f1

#: One month: the mean Gregorian month in days (365.2425 / 12).
MONTH_DAYS = 30.4375
#: Columns of the customers table the model reads (docs/data-contract.md).
TENURE_COLUMN = "tenure_periods"
REVENUE_COLUMN = "recurring_revenue"
KIND = "sbg"
FORMAT = 1
MIN_CUSTOMERS = 10
#: A segment with fewer customers than this, or no churn in it, uses the pooled fit.
MIN_SEGMENT_CUSTOMERS = 30
#: Parameters outside this range ran to the boundary: the data cannot identify them.
PARAM_RANGE = (1e-4, 1e4)
POOLED = "__all__"


class ContractualModelError(RuntimeError):
    """The sBG fit failed or cannot be identified; the message says why and what to do."""


def survivor(alpha: float, beta: float, t: npt.ArrayLike) -> np.ndarray:
    """``S(t) = B(alpha, beta + t) / B(alpha, beta)``: share of a cohort renewing ``t`` times
    (FH 2007 eq. 5); ``S(inf) = 0``."""
    t = np.asarray(t, dtype=float)
    with np.errstate(invalid="ignore"):
        s = np.exp(betaln(alpha, beta + t) - betaln(alpha, beta))
    return np.where(np.isinf(t), 0.0, s)


def log_likelihood(
    alpha: float,
    beta: float,
    lo: npt.ArrayLike,
    hi: npt.ArrayLike,
    weights: npt.ArrayLike | None = None,
    entry: npt.ArrayLike | None = None,
) -> float:
    """Total log-likelihood of churn periods in ``(lo, hi]`` (``hi = inf``: right-censored),
    weighted by customers per row; ``entry``: renewals a customer had made when the data
    first saw them (left truncation: a snapshot holds only customers who lasted that long),
    each term then ``(S(lo) - S(hi)) / S(entry)``; default 0, the whole cohort."""
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    w = np.ones(len(lo)) if weights is None else np.asarray(weights, dtype=float)
    start = np.zeros(len(lo)) if entry is None else np.asarray(entry, dtype=float)
    log_s_lo = betaln(alpha, beta + lo) - betaln(alpha, beta + start)
    # log(S(lo) - S(hi)) = log S(lo) + log(1 - S(hi) / S(lo)), exact for hi = inf
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ratio = np.where(
            np.isinf(hi), 0.0, np.exp(betaln(alpha, beta + hi) - betaln(alpha, beta + lo))
        )
        ll = log_s_lo + np.log1p(-ratio)
    return float((w * ll).sum())


def fit_sbg(
    lo: npt.ArrayLike,
    hi: npt.ArrayLike,
    weights: npt.ArrayLike | None = None,
    entry: npt.ArrayLike | None = None,
) -> tuple[float, float, float]:
    """Maximum-likelihood ``(alpha, beta, log_likelihood)`` on interval-censored churn periods
    (``entry``: left truncation, as :func:`log_likelihood`).

    Raises
    ------
    ContractualModelError
        The optimiser fails, nobody churns (``alpha`` runs to 0), or a parameter runs to the
        boundary of :data:`PARAM_RANGE`.
    """
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    w = np.ones(len(lo)) if weights is None else np.asarray(weights, dtype=float)
    if not np.isfinite(hi).any():
        raise ContractualModelError("no customer churned: retention cannot be estimated")
    total = w.sum()

    def objective(x: np.ndarray) -> float:
        value = -log_likelihood(np.exp(x[0]), np.exp(x[1]), lo, hi, w, entry) / total
        return value if np.isfinite(value) else 1e300

    best = None
    for start in ((0.0, 0.0), (-1.0, 1.0), (1.0, 2.0)):  # log(alpha), log(beta)
        out = minimize(
            objective,
            np.array(start),
            method="Nelder-Mead",
            options={"xatol": 1e-10, "fatol": 1e-13, "maxiter": 4000},
        )
        if out.success and (best is None or out.fun < best.fun):
            best = out
    if best is None:
        raise ContractualModelError("the sBG likelihood optimiser did not converge")
    alpha, beta = (float(v) for v in np.exp(best.x))
    lo_ok, hi_ok = PARAM_RANGE
    if not (lo_ok < alpha < hi_ok and lo_ok < beta < hi_ok):
        raise ContractualModelError(
            f"sBG parameters alpha {alpha:.4g}, beta {beta:.4g} ran to the boundary: the "
            "tenures cannot identify the spread of churn rates (more churned customers or "
            "longer tenures needed)"
        )
    return alpha, beta, log_likelihood(alpha, beta, lo, hi, w, entry)


def cohort_intervals(survivors: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A cohort's survivor counts at periods 0, 1, ..., m (FH 2007's data) as ``(lo, hi,
    weights)``: ``n_{t-1} - n_t`` customers churned in period t, ``n_m`` still active."""
    n = np.asarray(survivors, dtype=float)
    m = len(n) - 1
    lost = n[:-1] - n[1:]
    lo = np.append(np.arange(m, dtype=float), m)
    hi = np.append(np.arange(1, m + 1, dtype=float), np.inf)
    return lo, hi, np.append(lost, n[-1])


def per_period_rate(annual_discount_rate: float, period_days: float) -> float:
    """The discount rate per period equivalent to ``annual_discount_rate`` per 365 days (the
    year of :mod:`models.clv`)."""
    return float((1 + annual_discount_rate) ** (period_days / 365.0) - 1)


def residual_lifetime(
    alpha: float | np.ndarray,
    beta: float | np.ndarray,
    n: npt.ArrayLike,
    *,
    d: float,
    periods: int | None = None,
    discounted: bool = True,
) -> np.ndarray:
    """Expected (discounted) future renewals of customers who have renewed ``n`` times.

    ``periods``: count the next ``periods`` renewals only (a horizon); ``None``: all of them
    (DERL, FH 2010 eq. 6, in closed form). ``d``: discount rate per period (0 or
    ``discounted=False``: undiscounted). See the module docstring for the timing."""
    n = np.asarray(n, dtype=float)
    x = 1.0 / (1.0 + d) if discounted else 1.0
    if periods is None:
        if x >= 1.0:
            raise ValueError("a lifetime (no horizon) residual needs a positive discount rate")
        first = np.exp(betaln(alpha, beta + n + 1) - betaln(alpha, beta + n))
        return np.asarray(first * hyp2f1(1.0, beta + n + 1, alpha + beta + n + 1, x))
    total = np.zeros_like(n)
    alive = np.ones_like(n)
    for k in range(1, int(periods) + 1):
        # S(n + k) / S(n + k - 1) = (beta + n + k - 1) / (alpha + beta + n + k - 1)
        alive = alive * (beta + n + k - 1) / (alpha + beta + n + k - 1)
        total += alive * x ** (k - 1)
    return total


@dataclass
class ContractualCLV:
    """sBG retention (one fit per segment when asked) and CLV = recurring revenue x DERL.

    Parameters
    ----------
    period_days : length of one contract period in days (default one month).
    annual_discount_rate : discount rate per year (365 days), as :class:`models.clv.CLVModel`.
    segment_column : a customer attribute (e.g. ``contract``) whose values get their own fit;
        values with too few customers or no churn use the pooled fit.
    """

    period_days: float = MONTH_DAYS
    annual_discount_rate: float = 0.10
    segment_column: str | None = None
    params_: dict[str, float] = field(default_factory=dict)
    segments_: dict[str, dict[str, float]] = field(default_factory=dict)
    log_likelihood_: float = float("nan")
    n_customers_: int = 0
    model_: str = KIND

    def fit(
        self,
        tenure: npt.ArrayLike,
        *,
        churned: npt.ArrayLike | None = None,
        within_periods: float | None = None,
        segments: npt.ArrayLike | None = None,
    ) -> ContractualCLV:
        """Fit on whole periods survived.

        Parameters
        ----------
        tenure : renewals made (``tenure_periods``) per customer.
        churned : per customer, ``True`` if churned; ``None``: nobody (all right-censored).
            With ``within_periods`` ``None``, ``True`` means churned after ``tenure`` renewals;
            else it is a forward label: churned within the next ``within_periods`` periods
            (``False``: still active after them), on a snapshot of active customers, so the
            fit is left-truncated at ``tenure`` (a customer had to last that long to be seen).
        segments : the ``segment_column`` value per customer.
        """
        n = np.asarray(tenure, dtype=float)
        c = np.zeros(len(n), bool) if churned is None else np.asarray(churned, dtype=bool)
        entry: np.ndarray | None = None
        if within_periods is None:
            lo, hi = n, np.where(c, n + 1, np.inf)
        else:
            lo, hi = np.where(c, n, n + within_periods), np.where(c, n + within_periods, np.inf)
            entry = n
        if len(n) < MIN_CUSTOMERS:
            raise ContractualModelError(f"only {len(n)} customers with a tenure: too few to fit")
        alpha, beta, ll = fit_sbg(lo, hi, entry=entry)
        self.params_ = {"alpha": alpha, "beta": beta}
        self.log_likelihood_ = ll
        self.n_customers_ = len(n)
        self.segments_ = {}
        if segments is not None and self.segment_column is not None:
            values = pd.Series(segments).astype("string").fillna("").to_numpy()
            for value in pd.unique(values):
                mask = values == value
                if mask.sum() < MIN_SEGMENT_CUSTOMERS:
                    continue
                try:
                    a, b, seg_ll = fit_sbg(
                        lo[mask], hi[mask], entry=None if entry is None else entry[mask]
                    )
                except ContractualModelError:
                    continue  # this segment keeps the pooled parameters
                self.segments_[str(value)] = {
                    "alpha": a,
                    "beta": b,
                    "log_likelihood": seg_ll,
                    "n_customers": int(mask.sum()),
                }
        return self

    def _params_for(self, segments: npt.ArrayLike | None, size: int) -> tuple[np.ndarray, ...]:
        alpha = np.full(size, self.params_["alpha"])
        beta = np.full(size, self.params_["beta"])
        if segments is not None and self.segments_:
            values = pd.Series(segments).astype("string").fillna("").to_numpy()
            for value, p in self.segments_.items():
                mask = values == value
                alpha[mask], beta[mask] = p["alpha"], p["beta"]
        return alpha, beta

    def predict(self, frame: pd.DataFrame, *, horizon_days: float | None) -> pd.DataFrame:
        """Per customer: ``p_alive`` (NaN: the contract says who is active), expected
        renewals over the horizon (``expected_purchases``, undiscounted), the recurring
        revenue per period (``expected_order_value``) and ``clv`` = revenue x discounted
        residual lifetime over the horizon (``horizon_days=None``: lifetime DERL).

        Customers without a tenure or a revenue (column :data:`TENURE_COLUMN`,
        :data:`REVENUE_COLUMN` absent or blank) get NaN."""
        missing = pd.Series(np.nan, index=frame.index)
        n = frame.get(TENURE_COLUMN, missing).to_numpy(dtype=float)
        revenue = frame.get(REVENUE_COLUMN, missing).to_numpy(dtype=float)
        segs = frame[self.segment_column] if self.segment_column in frame.columns else None
        alpha, beta = self._params_for(segs, len(frame))
        d = per_period_rate(self.annual_discount_rate, self.period_days)
        periods = None if horizon_days is None else round(horizon_days / self.period_days)
        if periods is None:
            derl = residual_lifetime(alpha, beta, n, d=d)
            renewals = np.full(len(n), np.nan)  # undiscounted lifetime: not a horizon figure
        else:
            derl = residual_lifetime(alpha, beta, n, d=d, periods=periods)
            renewals = residual_lifetime(alpha, beta, n, d=d, periods=periods, discounted=False)
        bad = np.isnan(n) | np.isnan(revenue) | (n < 0)
        return pd.DataFrame(
            {
                "p_alive": np.nan,
                "expected_purchases": np.where(bad, np.nan, renewals),
                "expected_order_value": np.where(bad, np.nan, revenue),
                "clv": np.where(bad, np.nan, revenue * derl),
            },
            index=frame.index,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters and settings (``kind`` ``"sbg"``)."""
        return {
            "format": FORMAT,
            "kind": KIND,
            "model": KIND,
            "period_days": self.period_days,
            "annual_discount_rate": self.annual_discount_rate,
            "segment_column": self.segment_column,
            "params": self.params_,
            "segments": self.segments_,
            "n_customers": self.n_customers_,
            "diagnostics": {"log_likelihood": self.log_likelihood_},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContractualCLV:
        """Rebuild a fitted model from :meth:`to_dict` output."""
        if data.get("kind") != KIND or int(data.get("format", 0)) != FORMAT:
            raise ValueError(f"not a contractual CLV model: kind {data.get('kind')!r}")
        return cls(
            period_days=float(data["period_days"]),
            annual_discount_rate=float(data["annual_discount_rate"]),
            segment_column=data.get("segment_column"),
            params_={k: float(v) for k, v in data["params"].items()},
            segments_={
                str(k): {n: float(x) for n, x in v.items()}
                for k, v in data.get("segments", {}).items()
            },
            log_likelihood_=float(data.get("diagnostics", {}).get("log_likelihood", "nan")),
            n_customers_=int(data.get("n_customers", 0)),
        )
