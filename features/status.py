"""A customer's status: ``active``, ``at_risk`` or ``lapsed``, by the rules of docs/status.md.

A retention worklist should hold customers who can still be kept: someone whose last
activity is far behind them is *lapsed* (a win-back case, not a retention one) whatever the
model says. The rule reads only features (no scores), so training's report can split its
metrics the same way at a validation cutoff, and batch scoring and ``/v1/predict`` reuse it:

- **inactive days**: days since the customer's latest activity of any kind, the smallest of
  ``days_since_last_purchase`` and ``days_since_last_interaction`` (usage events are
  interactions); a customer with neither counts from signup (``tenure_days``);
- **lapsed** when inactive for more than ``ceiling_days`` (default 365), or, for a customer
  with a usual gap between purchases (``interpurchase_days_mean``, 2+ purchase days), for
  more than ``gap_factor`` (default 4) times that gap and at least ``min_days`` (default 90:
  a weekly buyer is not lapsed after a month's break);
- **at_risk**: not lapsed, and flagged by the caller (batch scoring: the ``high`` and
  ``medium`` risk bands);
- **active**: the rest. A customer with no activity date and no signup date is never lapsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from features.customers import TENURE
from features.interactions import SINCE_LAST as SINCE_INTERACTION
from features.transactions import GAP_MEAN
from features.transactions import SINCE_LAST as SINCE_PURCHASE

ACTIVE, AT_RISK, LAPSED = "active", "at_risk", "lapsed"
#: Every status, in worklist order of concern.
STATUSES = (ACTIVE, AT_RISK, LAPSED)
#: Days without any activity after which every customer is lapsed.
CEILING_DAYS = 365.0
#: Multiple of the customer's usual gap between purchases after which they are lapsed ...
GAP_FACTOR = 4.0
#: ... once at least this many days have gone by.
MIN_DAYS = 90.0


def _column(frame: pd.DataFrame | Mapping[str, Any], name: str, n: int) -> np.ndarray:
    if name not in frame:
        return np.full(n, np.nan)
    values = frame[name]
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype=float, na_value=np.nan)
    return np.asarray(values, dtype=float)


def inactive_days(frame: pd.DataFrame | Mapping[str, Any], n: int | None = None) -> np.ndarray:
    """Days since each customer's latest purchase or interaction, else since signup; NaN
    when none is known. ``frame`` is a feature frame or a mapping of its columns (``n`` rows;
    default ``len(frame)``)."""
    n = len(frame) if n is None else n
    recent = np.column_stack(
        [_column(frame, SINCE_PURCHASE, n), _column(frame, SINCE_INTERACTION, n)]
    )
    known = np.isfinite(recent).any(axis=1)
    latest = np.where(
        known, np.nanmin(np.where(np.isfinite(recent), recent, np.inf), axis=1), np.nan
    )
    out: np.ndarray = np.where(known, latest, _column(frame, TENURE, n))
    return out


def is_lapsed(
    frame: pd.DataFrame | Mapping[str, Any],
    *,
    n: int | None = None,
    ceiling_days: float = CEILING_DAYS,
    gap_factor: float = GAP_FACTOR,
    min_days: float = MIN_DAYS,
) -> np.ndarray:
    """Whether each customer is lapsed (module docstring): inactive for more than
    ``ceiling_days``, or for more than ``gap_factor`` times their usual gap between purchase
    days and at least ``min_days``."""
    n = len(frame) if n is None else n
    idle = inactive_days(frame, n)
    gap = _column(frame, GAP_MEAN, n)
    with np.errstate(invalid="ignore"):
        own = np.isfinite(gap) & (idle > np.maximum(gap_factor * gap, min_days))
        lapsed: np.ndarray = (idle > ceiling_days) | own
    return lapsed


def customer_status(
    frame: pd.DataFrame | Mapping[str, Any],
    at_risk: np.ndarray | None = None,
    *,
    n: int | None = None,
    ceiling_days: float = CEILING_DAYS,
    gap_factor: float = GAP_FACTOR,
    min_days: float = MIN_DAYS,
) -> np.ndarray:
    """``lapsed`` by :func:`is_lapsed`, else ``at_risk`` where ``at_risk`` (a boolean per row,
    e.g. the high and medium risk bands) is true, else ``active``; an object array of text.
    Without ``at_risk`` every customer who is not lapsed is ``active`` (the split training
    uses for "metrics among active customers")."""
    lapsed = is_lapsed(
        frame, n=n, ceiling_days=ceiling_days, gap_factor=gap_factor, min_days=min_days
    )
    flagged = np.zeros(len(lapsed), dtype=bool) if at_risk is None else np.asarray(at_risk, bool)
    out: np.ndarray = np.select([lapsed, flagged], [LAPSED, AT_RISK], ACTIVE).astype(object)
    return out
