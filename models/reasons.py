"""Reasons for a churn score, from the whole model, in plain words (docs/http-api.md, "Reasons").

The model's log-odds of churn is the BG/NBD prior plus the trees (models/churn.py). Its
attribution per feature (:meth:`models.churn.ChurnModel.contributions`) is exact and sums to
the log-odds minus the score of an average customer:

- the trees' part: LightGBM's SHAP values (``pred_contrib``), zero when the trees were dropped;
- the prior's part: the prior is linear in its two inputs, so each input gets its own term,
  ``coef * (input - training mean)``: log expected purchases (concept
  ``purchase_frequency``) and logit P(alive) (concept ``purchase_recency``); a customer without
  purchase history gets the step from the average to the base rate on expected purchases.

Reasons are measured against the **base rate** (the mean churn probability of the scored
customers, models/distribution.py), not the average customer: the raw log-odds at which the
calibrated probability reaches the base rate is found on the calibrator, and the difference
between it and the average customer's score (a constant per model) is spread over the
concepts in proportion to the size of their contribution. The concepts' attributions then
add up to the customer's risk above the base rate, so a customer above it always has a
concept that raises risk.

Features are grouped by concept (features/catalogue.py) and each concept's contributions
summed. A customer above the base rate gets the ``k`` concepts raising risk most, each with
its ``share`` of everything that raises it; a customer at or below it gets the ``k`` concepts
lowering risk most, with their share of what lowers it. A reason names the concept's *lead*
feature: the one contributing most in the reason's direction (BG/NBD outputs only when no
observed feature of the concept has a value), with the customer's value, text and
percentile among the scored customers.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from features.catalogue import TEXT, catalogue, concept_of, reason_text
from models.churn import ChurnModel
from models.contract import REASON_DIRECTIONS
from models.distribution import percentile

RAISES, LOWERS = REASON_DIRECTIONS
#: Raw log-odds scanned for the calibrated base rate (precision 0.005 log-odds).
_RAW_GRID = np.linspace(-25.0, 25.0, 10001)


def base_offset(churn: ChurnModel, base_rate: float) -> float:
    """The average customer's raw log-odds minus the raw log-odds at which the calibrated
    probability reaches ``base_rate``; positive when the average customer is above it.
    Cached per model and base rate (one SHAP call and a calibrator scan)."""
    cache_: dict[float, float] = churn.__dict__.setdefault("_base_offsets", {})
    if base_rate in cache_:
        return cache_[base_rate]
    average = churn.trees_expected_value() + churn.prior_expected_logit()

    def calibrated(z: np.ndarray) -> np.ndarray:
        raw = 1.0 / (1.0 + np.exp(-z))
        return raw if churn.calibrator_ is None else churn.calibrator_.transform(raw)

    # The largest raw score still at or below the base rate: any customer whose calibrated
    # probability is above the base rate has a raw score above it (the calibrator is
    # monotone), so their attributions add up to more than zero. Found on a grid, then by
    # bisection to float precision.
    below = np.flatnonzero(calibrated(_RAW_GRID) <= base_rate)
    if len(below) == 0:
        at = float(_RAW_GRID[0])
    elif below[-1] == len(_RAW_GRID) - 1:
        at = float(_RAW_GRID[-1])
    else:
        lo, hi = float(_RAW_GRID[below[-1]]), float(_RAW_GRID[below[-1] + 1])
        for _ in range(60):
            mid = (lo + hi) / 2
            if calibrated(np.array([mid]))[0] <= base_rate:
                lo = mid
            else:
                hi = mid
        at = lo
    offset = float(average - at)
    if len(cache_) > 16:
        cache_.clear()
    cache_[base_rate] = offset
    return offset


@cache
def _concepts(
    features: tuple[str, ...],
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, list[int]]:
    """For a model's feature list: concept codes, the feature -> concept indicator matrix,
    which features are BG/NBD outputs, and the feature positions in lead order (features
    with their own reason text first, in :data:`features.catalogue.TEXT` order)."""
    codes = tuple(dict.fromkeys(concept_of(f) for f in features))
    where = {c: i for i, c in enumerate(codes)}
    matrix = np.zeros((len(features), len(codes)))
    for j, f in enumerate(features):
        matrix[j, where[concept_of(f)]] = 1.0
    specs = catalogue()
    model_output = np.array([specs[f].family == "clv" if f in specs else False for f in features])
    rank = {name: r for r, name in enumerate(TEXT)}
    lead_order = sorted(range(len(features)), key=lambda j: (rank.get(features[j], len(rank)), j))
    return codes, matrix, model_output, lead_order


class _Columns:
    """Columns of a feature frame (or mapping) as object arrays, read on first use."""

    def __init__(self, frame: pd.DataFrame | Mapping[str, Any]) -> None:
        self.frame, self.cache = frame, {}  # type: ignore[var-annotated]

    def get(self, name: str) -> np.ndarray | None:
        if name not in self.cache:
            values = self.frame.get(name)
            if values is None:
                self.cache[name] = None
            elif isinstance(values, pd.Series):
                self.cache[name] = values.to_numpy(dtype=object)
            else:
                self.cache[name] = np.asarray(values, dtype=object)
        result: np.ndarray | None = self.cache[name]
        return result


class _Row(Mapping[str, Any]):
    """One customer's feature values, looked up lazily (for the clauses of reason texts)."""

    def __init__(self, columns: _Columns, i: int) -> None:
        self.columns, self.i = columns, i

    def __getitem__(self, name: str) -> Any:
        col = self.columns.get(name)
        if col is None:
            raise KeyError(name)
        return col[self.i]

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0


def _known(value: Any) -> bool:
    if value is None or value is pd.NA:
        return False
    return not (isinstance(value, float | np.floating) and np.isnan(value))


def _json_value(value: Any) -> float | str | None:
    if not _known(value):
        return None
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return round(float(value), 4)
    return str(value)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def explain(
    frame: pd.DataFrame | Mapping[str, Any],
    contributions: np.ndarray,
    features: list[str],
    *,
    offset: float,
    feature_grids: Mapping[str, np.ndarray],
    k: int = 3,
) -> list[list[dict[str, Any]]]:
    """Per row, up to ``k`` reasons (keys :data:`models.contract.REASON_KEYS`).

    Parameters
    ----------
    frame : feature frame, or a mapping of feature name to column, with ``contributions``'s rows.
    contributions : per-feature log-odds attributions, shape (rows, features).
    features : the model's feature names (columns of ``contributions``).
    offset : :func:`base_offset` of the model at the base rate.
    feature_grids : quantile grids of the scored customers (percentiles; none: null).
    """
    codes, indicator, model_output, lead_order = _concepts(tuple(features))
    grouped = contributions @ indicator
    size = np.abs(grouped)
    total = size.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        adjusted = grouped + np.where(total > 0, offset * size / total, 0.0)
    above = adjusted.sum(axis=1) > 0
    signed = np.where(above[:, None], adjusted, -adjusted)  # > 0: in the reason's direction
    order = np.argsort(-signed, axis=1)[:, :k]
    columns = _Columns(frame)
    members = [[j for j in lead_order if indicator[j, c]] for c in range(len(codes))]
    out: list[list[dict[str, Any]]] = []
    for i in range(len(contributions)):
        row = _Row(columns, i)
        push = signed[i]
        pool = float(push[push > 0].sum())
        reasons = []
        for c in order[i]:
            if push[c] <= 0:
                break
            known = [_known(row.get(features[j])) for j in members[c]]
            lead = _lead(members[c], contributions[i], model_output, known, bool(above[i]))
            name = features[lead]
            value = row.get(name)
            grid = feature_grids.get(name)
            pct = None
            number = value if isinstance(value, int | float | np.integer | np.floating) else None
            if grid is not None and number is not None and _known(number):
                pct = _round(float(percentile(np.array([float(number)]), grid)[0]), 1)
            reasons.append(
                {
                    "code": codes[c],
                    "text": reason_text(name, value, row),
                    "feature": name,
                    "value": _json_value(value),
                    "direction": RAISES if above[i] else LOWERS,
                    "percentile": pct,
                    "share": round(float(push[c]) / pool, 4),
                }
            )
        out.append(reasons)
    return out


def _lead(
    members: list[int],
    contrib: np.ndarray,
    model_output: np.ndarray,
    known: list[bool],
    above: bool,
) -> int:
    """The feature a concept's reason names: among the observed (not BG/NBD) features with a
    value (``known``, per member), the one contributing most in the reason's direction, ties
    (all zero: the prior alone) to the first in lead order; BG/NBD outputs only when no
    observed feature has a value."""
    direction = 1.0 if above else -1.0
    observed = [j for j, ok in zip(members, known, strict=True) if ok and not model_output[j]]
    pool = observed or members
    best = max(direction * contrib[j] for j in pool)
    return next(j for j in pool if direction * contrib[j] == best)
