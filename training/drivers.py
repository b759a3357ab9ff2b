"""What drives churn here: observed churn by the bands the research behind the features names.

The service and survey features come from published findings (see features/interactions.py
and features/surveys.py). :func:`churn_drivers` puts each finding next to what the user's own
customers did at the validation cutoff: the churn rate over the horizon per band of customer
effort, value enhancement, elements of value scored 8+, NPS class and unresolved contacts,
with counts and 95% Wilson intervals, and a verdict on whether the finding holds here.

The rates are observed, not causal: a customer with no recent contact may simply be gone,
which is why "not scored" rows are shown apart and never enter the verdict. The result is
plain JSON (lists, dicts, floats, text), so it is stored in the bundle (``meta["drivers"]``)
and the server shows it without pandas. Pure function: a frame in, a dict out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features import interactions as inter
from features import surveys as surv

#: Two-sided 95% normal quantile, for the Wilson score interval.
Z95 = 1.959963984540054
#: Latest effort / value-enhancement score bands on the 1-7 scales.
LOW_MAX, HIGH_MIN = 3.0, 5.0

Mask = Callable[[pd.DataFrame], np.ndarray]


def wilson_interval(successes: int, n: int, *, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``successes / n`` (Wilson 1927): unlike the
    normal approximation it stays inside [0, 1] and is sound for small ``n`` and rates near 0
    or 1. ``(nan, nan)`` when ``n == 0``."""
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # exact at the ends (0 successes: low 0; all: high 1), where rounding would leave 1e-17
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class Band:
    """One row of a driver table: a label and which customers it holds. ``scored``: whether
    the band enters the verdict (rows such as "not scored" are shown but not compared)."""

    label: str
    mask: Mask
    scored: bool = True


@dataclass(frozen=True)
class Driver:
    """A research finding and the bands that test it on the user's data.

    ``compare``: (band expected to churn more, band expected to churn less); ``stayed``: the
    share of the second band the source says stayed, when it gives one.
    """

    key: str
    title: str
    table: str
    columns: tuple[str, ...]
    bands: tuple[Band, ...]
    compare: tuple[str, str]
    claim: str
    source: str
    stayed: float | None = None


def _col(frame: pd.DataFrame, name: str) -> np.ndarray:
    return frame[name].to_numpy(dtype=float, na_value=np.nan)


def _score_bands(column: str, low: str, high: str) -> tuple[Band, ...]:
    """Low / middle / high bands of a 1-7 score, and the customers without one."""
    return (
        Band(f"{low} (1-3)", lambda f: _col(f, column) <= LOW_MAX),
        Band("middle (4)", lambda f: (_col(f, column) > LOW_MAX) & (_col(f, column) < HIGH_MIN)),
        Band(f"{high} (5-7)", lambda f: _col(f, column) >= HIGH_MIN),
        Band("not scored", lambda f: np.isnan(_col(f, column)), scored=False),
    )


def _answered(f: pd.DataFrame) -> np.ndarray:
    return _col(f, surv.ANSWERED) > 0


def _high_count(lo: float, hi: float) -> Mask:
    return lambda f: (
        _answered(f) & (_col(f, surv.HIGH_COUNT) >= lo) & (_col(f, surv.HIGH_COUNT) <= hi)
    )


def _nps(value: str | None) -> Mask:
    def mask(f: pd.DataFrame) -> np.ndarray:
        classes = f[surv.NPS_CLASS].astype("object")
        return np.asarray(classes.isna() if value is None else classes.eq(value), dtype=bool)

    return mask


def _contacted(f: pd.DataFrame) -> np.ndarray:
    return _col(f, inter.TOTAL[365]) > 0


def _unresolved(lo: float, hi: float) -> Mask:
    u = inter.UNRESOLVED_365
    return lambda f: _contacted(f) & (_col(f, u) >= lo) & (_col(f, u) <= hi)


DIXON_2010 = 'Dixon, Freeman & Toman 2010, "Stop Trying to Delight Your Customers", HBR'
DIXON_2013 = "Dixon, Toman & DeLisi 2013, The Effortless Experience"
ALMQUIST_2016 = 'Almquist, Senior & Bloch 2016, "The Elements of Value", HBR'
REICHHELD_2003 = 'Reichheld 2003, "The One Number You Need to Grow", HBR'

#: The findings, in report order.
DRIVERS: tuple[Driver, ...] = (
    Driver(
        key="effort",
        title="Customer effort (latest effort score, 1-7, 7 = hardest)",
        table="interactions",
        columns=(inter.EFFORT_LAST,),
        bands=_score_bands(inter.EFFORT_LAST, "low effort", "high effort"),
        compare=("high effort (5-7)", "low effort (1-3)"),
        claim=(
            "Low-effort service cuts disloyalty: 96% of customers with high-effort service "
            "interactions became more disloyal, against 9% with low-effort ones."
        ),
        source=DIXON_2010,
    ),
    Driver(
        key="value_enhancement",
        title="Value enhancement (latest score, 1-7: 'I can do more with the product now')",
        table="interactions",
        columns=(inter.VALUE_ENH_LAST,),
        bands=_score_bands(inter.VALUE_ENH_LAST, "low", "high"),
        compare=("low (1-3)", "high (5-7)"),
        claim=(
            "Service that leaves customers able to do more raises loyalty: 82% of customers "
            "who scored service interactions high on value enhancement stayed."
        ),
        source=DIXON_2013,
        stayed=0.82,
    ),
    Driver(
        key="elements_of_value",
        title="Elements of value scored 8 or more (of 30, latest answer per element)",
        table="surveys",
        columns=(surv.HIGH_COUNT, surv.ANSWERED),
        bands=(
            Band("none", _high_count(0, 0)),
            Band("1-3", _high_count(1, 3)),
            Band("4 or more", _high_count(4, math.inf)),
            Band("no element answered", lambda f: ~_answered(f), scored=False),
        ),
        compare=("none", "4 or more"),
        claim=(
            "Customers who score a brand high on more elements of value are more loyal; "
            "four or more high scores mark a clearly more loyal group."
        ),
        source=ALMQUIST_2016,
    ),
    Driver(
        key="nps",
        title="NPS class (latest likelihood-to-recommend answer)",
        table="surveys",
        columns=(surv.NPS_CLASS,),
        bands=(
            Band("detractor (0-6)", _nps("detractor")),
            Band("passive (7-8)", _nps("passive")),
            Band("promoter (9-10)", _nps("promoter")),
            Band("no NPS answer", _nps(None), scored=False),
        ),
        compare=("detractor (0-6)", "promoter (9-10)"),
        claim="Promoters are the most loyal customers and detractors the least.",
        source=REICHHELD_2003,
    ),
    Driver(
        key="unresolved",
        title="Unresolved contacts (interactions left unresolved, last 365 days)",
        table="interactions",
        columns=(inter.UNRESOLVED_365, inter.TOTAL[365]),
        bands=(
            Band("none unresolved", _unresolved(0, 0)),
            Band("1", _unresolved(1, 1)),
            Band("2 or more", _unresolved(2, math.inf)),
            Band("no contact in 365 days", lambda f: ~_contacted(f), scored=False),
        ),
        compare=("2 or more", "none unresolved"),
        claim=(
            "Having to contact the firm again about an unresolved issue is the biggest "
            "source of effort, and effort drives disloyalty."
        ),
        source=DIXON_2010,
    ),
)


def _row(label: str, y: np.ndarray, mask: np.ndarray, scored: bool) -> dict[str, Any]:
    n, k = int(mask.sum()), int(y[mask].sum())
    low, high = wilson_interval(k, n)
    return {
        "band": label,
        "customers": n,
        "churned": k,
        "churn_rate": k / n if n else None,
        "low": None if n == 0 else low,
        "high": None if n == 0 else high,
        "scored": scored,
    }


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _rate(row: dict[str, Any]) -> str:
    return (
        f"{_pct(row['churn_rate'])} [{_pct(row['low'])}-{_pct(row['high'])}] of "
        f"{row['customers']:,} '{row['band']}'"
    )


def _verdict(driver: Driver, rows: list[dict[str, Any]]) -> tuple[str, str]:
    """``holds`` when the band expected to churn less does so with the two 95% intervals
    apart, ``reversed`` when it churns more with the intervals apart, else ``unclear``."""
    by_band = {r["band"]: r for r in rows}
    worse, better = by_band[driver.compare[0]], by_band[driver.compare[1]]
    if not worse["customers"] or not better["customers"]:
        empty = worse if not worse["customers"] else better
        return "unclear", f"no customer in '{empty['band']}'"
    finding = f"churn {_rate(better)} vs {_rate(worse)}"
    if driver.stayed is not None:
        finding += (
            f"; {_pct(1 - better['churn_rate'])} of '{better['band']}' stayed "
            f"(source: {_pct(driver.stayed)})"
        )
    if better["high"] < worse["low"]:
        return "holds", finding
    if better["low"] > worse["high"]:
        return "reversed", finding
    return "unclear", finding + " (95% intervals overlap)"


def churn_drivers(frame: pd.DataFrame, *, as_of: pd.Timestamp, horizon_days: int) -> dict[str, Any]:
    """The driver tables of :data:`DRIVERS` on ``frame`` (point-in-time features at ``as_of``
    and the ``churned`` label over the next ``horizon_days``), as JSON-ready data.

    A driver whose input table is absent (its feature columns are not in ``frame``) is kept
    with ``available: false`` and a ``note`` saying so, instead of failing.

    Returns
    -------
    ``{"as_of", "horizon_days", "customers", "churn_rate", "drivers": [...]}``; each driver
    has ``key``, ``title``, ``claim``, ``source``, ``available``, ``note``, ``rows`` (per band:
    ``band``, ``customers``, ``churned``, ``churn_rate``, ``low``/``high`` (95% Wilson),
    ``scored``), ``verdict`` (``holds`` / ``reversed`` / ``unclear`` / ``absent``) and
    ``finding`` (one line of figures behind the verdict).
    """
    y = frame["churned"].to_numpy(dtype=float, na_value=0.0).astype(int)
    out: list[dict[str, Any]] = []
    for d in DRIVERS:
        entry: dict[str, Any] = {
            "key": d.key,
            "title": d.title,
            "claim": d.claim,
            "source": d.source,
        }
        missing = [c for c in d.columns if c not in frame.columns]
        if missing:
            out.append(
                entry
                | {
                    "available": False,
                    "note": f"no {d.table} table in the data, so this cannot be shown",
                    "rows": [],
                    "verdict": "absent",
                    "finding": "",
                }
            )
            continue
        rows = [_row(b.label, y, np.asarray(b.mask(frame), dtype=bool), b.scored) for b in d.bands]
        verdict, finding = _verdict(d, rows)
        out.append(
            entry
            | {"available": True, "note": None, "rows": rows}
            | {
                "verdict": verdict,
                "finding": finding,
            }
        )
    return {
        "as_of": pd.Timestamp(as_of).isoformat(),
        "horizon_days": int(horizon_days),
        "customers": len(frame),
        "churn_rate": float(y.mean()) if len(y) else None,
        "drivers": out,
    }
