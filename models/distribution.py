"""Where a customer stands among the scored customers: percentiles and risk bands.

Batch scoring (``make score``) takes the scored population as the reference: the quantiles
of its churn probabilities and of every numeric feature, its mean churn probability (the
*base rate* reasons are measured against) and the band thresholds. The reference is stored
in ``snapshot.json``, so ``/v1/predict`` places a posted customer against the same customers
the snapshot holds (docs/http-api.md, "Relative risk").

Bands (``risk_band``): by default from the distribution at scoring time, the top
``high_share`` (10%) of churn probabilities ``high`` and the next ``medium_share`` (20%)
``medium``; customers tied at a boundary go to the higher band. ``mode="fixed"`` keeps the
bundle's probability thresholds (settings ``risk_medium`` / ``risk_high`` at training).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from models.contract import RISK_BANDS

#: Quantile points stored for the churn probability (every 0.1 percentile) and per feature
#: (every percentile).
CHURN_GRID_POINTS = 1001
FEATURE_GRID_POINTS = 101
#: Significant digits kept of each stored quantile (keeps ``snapshot.json`` small).
_DIGITS = 6


@dataclass(frozen=True)
class BandRule:
    """How the risk bands are drawn: ``distribution`` (shares of the scored customers) or
    ``fixed`` (the bundle's probability thresholds)."""

    mode: Literal["distribution", "fixed"] = "distribution"
    high_share: float = 0.10
    medium_share: float = 0.20

    def __post_init__(self) -> None:
        if self.mode not in ("distribution", "fixed"):
            raise ValueError(f"risk band mode must be 'distribution' or 'fixed', not {self.mode!r}")
        if not (
            self.high_share > 0
            and self.medium_share >= 0
            and self.high_share + self.medium_share <= 1
        ):
            raise ValueError("risk band shares must be > 0 and add up to at most 1")


def quantile_grid(values: np.ndarray, points: int) -> np.ndarray | None:
    """``points`` evenly spaced quantiles (0 to 1) of the finite ``values``; ``None`` when
    there are none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return None
    grid: np.ndarray = np.quantile(v, np.linspace(0.0, 1.0, points))
    return grid


def percentile(values: np.ndarray, grid: np.ndarray | None) -> np.ndarray:
    """Each value's percentile (0-100) on a :func:`quantile_grid`: linear between grid
    points, the middle of a run of equal grid points (a value most customers share, such as
    zero complaints, sits mid-way in that run); NaN for a missing value or no grid."""
    v = np.asarray(values, dtype=float)
    out = np.full(len(v), np.nan)
    if grid is None or len(grid) < 2:
        return out
    ok = np.isfinite(v)
    x = v[ok]
    top = len(grid) - 1
    lo = np.searchsorted(grid, x, side="left")
    hi = np.searchsorted(grid, x, side="right")
    on_grid = hi > lo
    below = np.clip(lo - 1, 0, top - 1)
    span = grid[below + 1] - grid[below]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = below + np.where(span > 0, (x - grid[below]) / span, 0.5)
    position = np.where(on_grid, (lo + hi - 1) / 2.0, between)
    position = np.where(x < grid[0], 0.0, np.where(x > grid[-1], float(top), position))
    out[ok] = 100.0 * position / top
    return out


def band_thresholds(prob: np.ndarray, rule: BandRule) -> dict[str, float]:
    """Probability thresholds of the ``medium`` and ``high`` bands for ``rule`` (mode
    ``distribution``): the churn probability of the last customer inside the top
    ``high_share``, and inside the top ``high_share + medium_share``."""
    p = np.sort(np.asarray(prob, dtype=float)[np.isfinite(prob)])[::-1]
    if len(p) == 0:
        return {"medium": 1.0, "high": 1.0}
    n = len(p)
    # rounded first: 0.1 + 0.2 is 0.30000000000000004, and 100 customers must give 30
    high = p[max(math.ceil(round(rule.high_share * n, 9)), 1) - 1]
    medium = p[max(math.ceil(round((rule.high_share + rule.medium_share) * n, 9)), 1) - 1]
    return {"medium": float(medium), "high": float(high)}


def risk_band(prob: np.ndarray, thresholds: Mapping[str, float]) -> np.ndarray:
    """``low`` / ``medium`` / ``high``: at or above a band's threshold is in it."""
    low, medium, high = RISK_BANDS
    return np.select([prob >= thresholds[high], prob >= thresholds[medium]], [high, medium], low)


def _rounded(grid: np.ndarray) -> list[float]:
    return [float(f"{v:.{_DIGITS}g}") for v in grid]


@dataclass(frozen=True)
class Reference:
    """The scored customers a score is placed among.

    Attributes
    ----------
    base_rate : mean churn probability of the scored customers; a customer above it has at
        least one reason that raises risk (models/reasons.py).
    churn_grid : :func:`quantile_grid` of their churn probabilities.
    feature_grids : feature name -> quantile grid (numeric features with a value).
    mode : band mode (:class:`BandRule`).
    thresholds : ``{"medium": p, "high": p}`` the bands were drawn with.
    """

    base_rate: float
    churn_grid: np.ndarray | None
    feature_grids: Mapping[str, np.ndarray]
    mode: str
    thresholds: Mapping[str, float]

    @classmethod
    def of(
        cls,
        prob: np.ndarray,
        features: Mapping[str, np.ndarray],
        rule: BandRule,
        fixed_thresholds: Mapping[str, float],
    ) -> Reference:
        """The reference of a scored population: churn probabilities ``prob`` and its
        numeric feature columns ``features`` (name -> float array)."""
        grids = {}
        for name, values in features.items():
            grid = quantile_grid(values, FEATURE_GRID_POINTS)
            if grid is not None:
                grids[name] = grid
        thresholds = (
            band_thresholds(prob, rule) if rule.mode == "distribution" else dict(fixed_thresholds)
        )
        finite = np.asarray(prob, dtype=float)
        finite = finite[np.isfinite(finite)]
        return cls(
            base_rate=float(finite.mean()) if len(finite) else 0.5,
            churn_grid=quantile_grid(prob, CHURN_GRID_POINTS),
            feature_grids=grids,
            mode=rule.mode,
            thresholds={k: float(v) for k, v in thresholds.items()},
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``reference`` key of ``snapshot.json``)."""
        return {
            "base_rate": self.base_rate,
            "churn_probability": None if self.churn_grid is None else _rounded(self.churn_grid),
            "features": {k: _rounded(v) for k, v in self.feature_grids.items()},
            "mode": self.mode,
            "thresholds": dict(self.thresholds),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` on a malformed reference."""
        try:
            churn = data["churn_probability"]
            grids = {str(k): _grid(v) for k, v in dict(data["features"]).items()}
            thresholds = {k: float(data["thresholds"][k]) for k in ("medium", "high")}
            base = float(data["base_rate"])
            mode = str(data["mode"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed reference ({type(exc).__name__}: {exc})") from exc
        if not 0.0 <= base <= 1.0 or not all(0.0 <= t <= 1.0 for t in thresholds.values()):
            raise ValueError("base rate and thresholds must be probabilities")
        return cls(
            base_rate=base,
            churn_grid=None if churn is None else _grid(churn),
            feature_grids=grids,
            mode=mode,
            thresholds=thresholds,
        )


def _grid(values: Any) -> np.ndarray:
    grid = np.asarray(values, dtype=float)
    if grid.ndim != 1 or len(grid) < 2 or not np.isfinite(grid).all() or (np.diff(grid) < 0).any():
        raise ValueError("a quantile grid must be an ascending list of 2+ finite numbers")
    return grid
