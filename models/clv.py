"""CLV: BG/NBD purchase counts and Gamma-Gamma spend, on lifetimes, persisted as JSON.

References
----------
Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way: An Alternative to the
Pareto/NBD Model", Marketing Science 24(2) -- BG/NBD, P(alive) eq. (13), conditional
expectation eq. (10).
Fader, Hardie & Lee (2005), "RFM and CLV: Using Iso-Value Curves for Customer Base Analysis",
J. Marketing Research 42(4) -- Gamma-Gamma spend model.

This is the only module that imports lifetimes. Fitted parameters live in ``params_``
(a dict) and round-trip through :meth:`CLVModel.to_dict` / :meth:`CLVModel.from_dict`: no dill.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import ConvergenceError

#: Columns of the RFM summary the model reads, as the feature builder names them (days).
SUMMARY_COLUMNS = ("frequency", "recency_days", "T_days", "monetary_repeat_mean")
OUTPUT_COLUMNS = ("p_alive", "expected_purchases", "expected_order_value", "clv")


#: Optimiser tolerances tried in turn. BFGS in lifetimes can stop with "precision loss" once
#: the gradient is ~1e-7, i.e. converged in substance; a looser tolerance then succeeds.
TOLERANCES = (1e-7, 1e-6, 1e-5)


class CLVModelError(RuntimeError):
    """The fit did not converge to usable parameters; the message names cause and remedy."""


def _fit(fitter, name: str, *args, **kwargs):
    """``fitter.fit(*args)`` with the tolerances of :data:`TOLERANCES`; a clear error if none
    converges."""
    for tol in TOLERANCES:
        try:
            return fitter.fit(*args, tol=tol, **kwargs)
        except ConvergenceError:
            continue
    raise CLVModelError(
        f"{name} did not converge (tolerances {TOLERANCES}); "
        "try a penalizer such as 0.001 (CLVModel(penalizer=0.001))"
    )


def _compress(summary: pd.DataFrame, unit_days: float) -> pd.DataFrame:
    """Customers with equal (frequency, recency, T) collapse into one row with a weight."""
    f = summary["frequency"].to_numpy(dtype=np.int64)
    r = summary["recency_days"].to_numpy(dtype=float) / unit_days
    t = summary["T_days"].to_numpy(dtype=float) / unit_days
    rows = pd.DataFrame({"frequency": f, "recency": r, "T": t})
    return (
        rows.groupby(["frequency", "recency", "T"], sort=False)
        .size()
        .rename("weight")
        .reset_index()
    )


class CLVModel:
    """BG/NBD + Gamma-Gamma customer-lifetime-value model (scikit-learn style).

    Parameters
    ----------
    time_unit_days : length of the model's time unit in days (7: weeks, as in the CDNOW papers).
    penalizer : L2 penalty on the log-parameters (lifetimes' ``penalizer_coef``).
    annual_discount_rate : discount rate per year for discounted CLV.
    """

    def __init__(
        self,
        *,
        time_unit_days: float = 7.0,
        penalizer: float = 0.0,
        annual_discount_rate: float = 0.10,
    ) -> None:
        self.time_unit_days = time_unit_days
        self.penalizer = penalizer
        self.annual_discount_rate = annual_discount_rate

    def fit(self, summary: pd.DataFrame) -> CLVModel:
        """Fit on an RFM summary (columns :data:`SUMMARY_COLUMNS`, times in days).

        Customers with no purchase (``T_days`` missing) are left out of the fit. Gamma-Gamma
        uses repeat buyers with positive mean repeat spend only.
        """
        known = summary.dropna(subset=["T_days"])
        if len(known) < 10:
            raise CLVModelError(f"only {len(known)} customers with purchases: too few to fit")
        rows = _compress(known, self.time_unit_days)
        bgf = BetaGeoFitter(penalizer_coef=self.penalizer)
        _fit(bgf, "BG/NBD", rows["frequency"], rows["recency"], rows["T"], weights=rows["weight"])
        spend = known.loc[(known["frequency"] > 0) & (known["monetary_repeat_mean"] > 0)]
        ggf = GammaGammaFitter(penalizer_coef=self.penalizer)
        _fit(ggf, "Gamma-Gamma", spend["frequency"].astype(int), spend["monetary_repeat_mean"])
        params = {**bgf.params_.to_dict(), **ggf.params_.to_dict()}
        bad = {k: v for k, v in params.items() if not np.isfinite(v) or v <= 0}
        if bad or params["q"] <= 1:
            raise CLVModelError(
                f"fit gave unusable parameters {bad or {'q': params['q']}}; "
                "try a penalizer such as 0.001"
            )
        self.params_ = {k: float(v) for k, v in params.items()}
        self.n_customers_ = len(known)
        self.n_rows_fitted_ = len(rows)
        return self

    def _bgf(self) -> BetaGeoFitter:
        bgf = BetaGeoFitter(penalizer_coef=self.penalizer)
        bgf.params_ = pd.Series({k: self.params_[k] for k in ("r", "alpha", "a", "b")})
        return bgf

    def _ggf(self) -> GammaGammaFitter:
        ggf = GammaGammaFitter(penalizer_coef=self.penalizer)
        ggf.params_ = pd.Series({k: self.params_[k] for k in ("p", "q", "v")})
        return ggf

    def predict(self, summary: pd.DataFrame, *, horizon_days: float) -> pd.DataFrame:
        """P(alive), expected purchases and discounted CLV over ``horizon_days``.

        Customers without a purchase are treated as just acquired (frequency 0, recency 0)
        with ``T`` their tenure if ``tenure_days`` is given, else 0.

        Returns
        -------
        DataFrame indexed like ``summary`` with columns :data:`OUTPUT_COLUMNS`:
        ``expected_order_value`` in currency (Gamma-Gamma conditional mean), ``clv`` in currency,
        the monthly-discounted expected spend over the horizon.
        """
        u = self.time_unit_days
        freq = summary["frequency"].fillna(0).to_numpy(dtype=float)
        rec = summary["recency_days"].fillna(0).to_numpy(dtype=float) / u
        fallback_t = summary.get("tenure_days", 0.0)
        t_days = summary["T_days"].fillna(fallback_t).fillna(0).clip(lower=0)
        t = t_days.to_numpy(dtype=float) / u
        bgf, ggf = self._bgf(), self._ggf()
        p_alive = bgf.conditional_probability_alive(freq, rec, t)
        monetary = summary["monetary_repeat_mean"].fillna(0).clip(lower=0).to_numpy(dtype=float)
        order_value = np.asarray(ggf.conditional_expected_average_profit(freq, monetary))
        # Discount month by month: sum_k [E N(t_k) - E N(t_{k-1})] * m / (1 + d)^(t_k / 365).
        steps = np.append(np.arange(30.0, horizon_days, 30.0), horizon_days)
        cum_prev = np.zeros_like(freq)
        clv = np.zeros_like(freq)
        for step in steps:
            cum = bgf.conditional_expected_number_of_purchases_up_to_time(step / u, freq, rec, t)
            clv += (cum - cum_prev) * order_value / (1 + self.annual_discount_rate) ** (step / 365)
            cum_prev = cum
        return pd.DataFrame(
            {
                "p_alive": np.asarray(p_alive, dtype=float),
                "expected_purchases": np.asarray(cum_prev, dtype=float),
                "expected_order_value": order_value,
                "clv": np.clip(clv, 0, None),
            },
            index=summary.index,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters and settings."""
        return {
            "kind": "bgnbd+gammagamma",
            "time_unit_days": self.time_unit_days,
            "penalizer": self.penalizer,
            "annual_discount_rate": self.annual_discount_rate,
            "params": self.params_,
            "n_customers": self.n_customers_,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CLVModel:
        """Rebuild a fitted model from :meth:`to_dict` output."""
        if data.get("kind") != "bgnbd+gammagamma":
            raise ValueError(f"unknown CLV model kind {data.get('kind')!r}")
        model = cls(
            time_unit_days=float(data["time_unit_days"]),
            penalizer=float(data["penalizer"]),
            annual_discount_rate=float(data["annual_discount_rate"]),
        )
        model.params_ = {k: float(v) for k, v in data["params"].items()}
        model.n_customers_ = int(data["n_customers"])
        return model
