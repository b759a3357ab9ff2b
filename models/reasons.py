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

import math
import string
from collections.abc import Callable, Hashable, Mapping
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from features.catalogue import TEXT, catalogue, concept_of, field_key, reason_key, reason_text
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
    model_output: np.ndarray = np.array(
        [specs[f].family == "clv" if f in specs else False for f in features]
    )
    rank = {name: r for r, name in enumerate(TEXT)}
    lead_order = sorted(range(len(features)), key=lambda j: (rank.get(features[j], len(rank)), j))
    return codes, matrix, model_output, lead_order


class _Columns:
    """Columns of a feature frame (or mapping) as object arrays, or NumPy float columns as
    float64 (:meth:`floats`), read on first use."""

    def __init__(self, frame: pd.DataFrame | Mapping[str, Any]) -> None:
        self.frame, self.cache = frame, {}  # type: ignore[var-annotated]
        self.float_cache: dict[str, np.ndarray | None] = {}

    def floats(self, name: str) -> np.ndarray | None:
        """Column ``name`` as float64 when it is a NumPy float column (its object array
        holds the same values as Python floats), else ``None``."""
        if name not in self.float_cache:
            source = self.frame.get(name)
            dtype = getattr(source, "dtype", None)
            is_float = isinstance(dtype, np.dtype) and dtype.kind == "f"
            self.float_cache[name] = np.asarray(source, dtype=float) if is_float else None
        return self.float_cache[name]

    def value(self, name: str, i: int) -> Any:
        """Row ``i`` of column ``name`` as its object array holds it; KeyError when the
        frame has no such column."""
        floats = self.floats(name)
        if floats is not None:
            return float(floats[i])
        col = self.get(name)
        if col is None:
            raise KeyError(name)
        return col[i]

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
        return self.columns.value(name, self.i)

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


def _with_none(values: list[float], missing: np.ndarray) -> list[float | None]:
    """``values`` with None where ``missing``."""
    out: list[float | None] = list(values)
    for i in np.flatnonzero(missing).tolist():
        out[i] = None
    return out


def _rounded(values: np.ndarray, digits: int) -> list[float]:
    """``round(v, digits)`` of every (finite or not) float of ``values``, as Python rounds:
    ``rint(v * 10**digits) / 10**digits`` is that result (the quotient of an exact integer
    by an exact power of ten is correctly rounded, as Python's decimal-string route is)
    wherever the product's own rounding cannot move it across a half; the values near a
    half, beyond 2**52 or not finite are rounded by Python itself."""
    scale = 10.0**digits
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = values * scale
        out = np.rint(scaled) / scale
        near = np.abs(scaled - np.floor(scaled) - 0.5) <= np.abs(scaled) * 1e-14 + 1e-12
        doubt = near | ~(np.abs(scaled) < 2.0**52)
    rounded: list[float] = out.tolist()
    for i in np.flatnonzero(doubt).tolist():
        rounded[i] = round(float(values[i]), digits)
    return rounded


#: From this many rows :func:`explain` works on whole columns (:func:`explain_batch`); below
#: it, row by row (:func:`explain_rows`), which costs less for the few customers of a request.
BATCH_ROWS = 256


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
    rank = explain_batch if len(contributions) >= BATCH_ROWS else explain_rows
    return rank(frame, contributions, features, offset=offset, feature_grids=feature_grids, k=k)


def _ranked(
    contributions: np.ndarray, features: list[str], offset: float, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: each concept's attribution in the reason's direction (``> 0``: it pushes
    that way), whether the row is above the base rate, and the ``k`` concepts pushing most."""
    _, indicator, _, _ = _concepts(tuple(features))
    grouped = contributions @ indicator
    size = np.abs(grouped)
    total = size.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        adjusted = grouped + np.where(total > 0, offset * size / total, 0.0)
    above = adjusted.sum(axis=1) > 0
    signed = np.where(above[:, None], adjusted, -adjusted)  # > 0: in the reason's direction
    order = np.argsort(-signed, axis=1)[:, :k]
    return signed, above, order


def explain_rows(
    frame: pd.DataFrame | Mapping[str, Any],
    contributions: np.ndarray,
    features: list[str],
    *,
    offset: float,
    feature_grids: Mapping[str, np.ndarray],
    k: int = 3,
) -> list[list[dict[str, Any]]]:
    """:func:`explain` one row at a time (a request's few customers)."""
    codes, indicator, model_output, lead_order = _concepts(tuple(features))
    signed, above, order = _ranked(contributions, features, offset, k)
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


_NUMBER = (int, float, np.integer, np.floating)


def _known_mask(
    frame: pd.DataFrame | Mapping[str, Any], name: str, values: np.ndarray
) -> np.ndarray:
    """:func:`_known` of every value of column ``name`` (``values``: its object array), by
    the column's dtype where that is faster than looking at each value."""
    source = frame.get(name)
    dtype = getattr(source, "dtype", None)
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        known: np.ndarray = ~np.isnan(np.asarray(source, dtype=float))
        return known
    if isinstance(dtype, np.dtype) and dtype.kind in "biu":
        return np.ones(len(values), dtype=bool)
    if isinstance(source, pd.Series) and isinstance(dtype, pd.CategoricalDtype):
        # missing is code -1 (categories are never missing themselves)
        categorical: np.ndarray = ~source.isna().to_numpy()
        return categorical
    return np.fromiter((_known(v) for v in values), dtype=bool, count=len(values))


def _positive_sums(signed: np.ndarray) -> np.ndarray:
    """Per row, the sum of its positive entries, added in the order and grouping
    ``float(row[row > 0].sum())`` adds them (rows with the same number of positive entries
    are summed together, each as that many contiguous values)."""
    positive = signed > 0
    count = positive.sum(axis=1)
    first = np.argsort(~positive, axis=1, kind="stable")  # positives first, in order
    packed = np.take_along_axis(signed, first, axis=1)
    out = np.zeros(len(signed))
    for m in np.unique(count):
        if m == 0:
            continue
        rows = np.flatnonzero(count == m)
        out[rows] = np.ascontiguousarray(packed[rows, :m]).sum(axis=1)
    return out


def _text_fields(name: str) -> tuple[str, ...]:
    """The other features the reason text of ``name`` names (:data:`TEXT`)."""
    template = TEXT.get(name)
    if template is None:
        return ()
    found = (f for _, f, _, _ in string.Formatter().parse(template) if f)
    return tuple(dict.fromkeys(f for f in found if f not in ("value", "signed", "percent")))


def _text_key(value: Any) -> Any:
    """A value as part of a text cache key: by type and value, NaN as one key."""
    if isinstance(value, float) and math.isnan(value):
        return (type(value), "nan")
    return (type(value), value)


def explain_batch(
    frame: pd.DataFrame | Mapping[str, Any],
    contributions: np.ndarray,
    features: list[str],
    *,
    offset: float,
    feature_grids: Mapping[str, np.ndarray],
    k: int = 3,
) -> list[list[dict[str, Any]]]:
    """:func:`explain` on whole columns, with the same result as :func:`explain_rows`: the
    lead feature of every chosen concept is found for all the rows choosing it at once, the
    percentiles of a lead feature in one call, and each distinct text rendered once
    (``make score`` explains every customer)."""
    codes, indicator, model_output, lead_order = _concepts(tuple(features))
    signed, above, order = _ranked(contributions, features, offset, k)
    n = len(contributions)
    # ``explain_rows`` stops at the first concept not pushing in the reason's direction
    keep = np.logical_and.accumulate(~(np.take_along_axis(signed, order, axis=1) <= 0), axis=1)
    pool = _positive_sums(signed)
    columns = _Columns(frame)
    values: dict[int, np.ndarray] = {}
    known: dict[int, np.ndarray] = {}

    def column(j: int) -> np.ndarray:
        """Feature ``j`` as an object array (not needed for a float column)."""
        if j not in values:
            got = columns.get(features[j])
            values[j] = np.full(n, None, dtype=object) if got is None else got
        return values[j]

    def known_of(j: int) -> np.ndarray:
        if j not in known:
            floats = columns.floats(features[j])
            if floats is not None:
                known[j] = ~np.isnan(floats)
            else:
                got = column(j)
                absent = columns.get(features[j]) is None
                known[j] = (
                    np.zeros(n, dtype=bool) if absent else _known_mask(frame, features[j], got)
                )
        return known[j]

    direction = np.where(above, 1.0, -1.0)
    lead = np.full(order.shape, -1, dtype=np.int64)
    for c in range(len(codes)):
        rows, slots = np.nonzero(keep & (order == c))
        if len(rows) == 0:
            continue
        members = np.array([j for j in lead_order if indicator[j, c]])
        push = direction[rows, None] * contributions[rows][:, members]
        observed: np.ndarray = np.column_stack([known_of(int(j))[rows] for j in members])
        observed &= ~model_output[members]
        any_observed = np.asarray(observed.any(axis=1), dtype=bool)
        pool_of: np.ndarray = np.where(any_observed[:, None], observed, True)
        best = np.where(pool_of, push, -np.inf).max(axis=1)
        lead[rows, slots] = members[np.argmax(pool_of & (push == best[:, None]), axis=1)]
    # the chosen reasons in row order (``keep`` is a prefix of every row's slots)
    at_row, at_slot = np.nonzero(keep)
    chosen = order[at_row, at_slot]
    named = lead[at_row, at_slot]
    text: np.ndarray = np.empty(len(at_row), dtype=object)
    value: np.ndarray = np.empty(len(at_row), dtype=object)
    pct: np.ndarray = np.full(len(at_row), None, dtype=object)
    for j in np.unique(named):
        picked = np.flatnonzero(named == j)
        rows = at_row[picked]
        floats = columns.floats(features[j])
        numbers = None if floats is None else floats[rows]
        got = column(int(j))[rows] if numbers is None else numbers
        value[picked] = (
            [_json_value(v) for v in got]
            if numbers is None
            else _with_none(_rounded(numbers, 4), np.isnan(numbers))
        )
        text[picked] = _texts(columns, features[j], rows)
        grid = feature_grids.get(features[j])
        if grid is None:
            continue
        if numbers is None:
            number = np.fromiter((isinstance(v, _NUMBER) for v in got), dtype=bool, count=len(got))
            if not number.any():
                continue
            at = percentile(np.array([float(v) for v in got[number]]), grid)
            pct[picked[number]] = [_round(p, 1) for p in at.tolist()]
        else:
            at = percentile(numbers, grid)
            pct[picked] = _with_none(_rounded(at, 1), ~np.isfinite(at))
    # the same division as ``float(signed) / float(pool)``, then Python's rounding
    share = _rounded(signed[at_row, chosen] / pool[at_row], 4)
    direction = np.where(above, RAISES, LOWERS).astype(object)[at_row].tolist()
    flat = [
        {
            "code": codes[c],
            "text": t,
            "feature": features[j],
            "value": v,
            "direction": d,
            "percentile": p,
            "share": sh,
        }
        for c, j, t, v, d, p, sh in zip(
            chosen.tolist(),
            named.tolist(),
            text.tolist(),
            value.tolist(),
            direction,
            pct.tolist(),
            share,
            strict=True,
        )
    ]
    ends = np.cumsum(keep.sum(axis=1)).tolist()
    return [flat[a:b] for a, b in zip([0, *ends][:-1], ends, strict=True)]


def _value_codes(
    columns: _Columns, name: str, rows: np.ndarray, key: Callable[[str, Any], Hashable]
) -> np.ndarray:
    """For ``rows``, a code per distinct ``key(name, value)`` of column ``name`` (what the
    reason text reads of it: its formatted value), each distinct value keyed once."""
    floats = columns.floats(name)
    if floats is not None:
        bits, inverse = np.unique(floats[rows].view(np.int64), return_inverse=True)
        distinct: list[Any] = bits.view(np.float64).tolist()
    else:
        col = columns.get(name)
        if col is None:
            return np.zeros(len(rows), dtype=np.int64)
        seen: dict[Any, int] = {}
        distinct = []
        found = []
        for v in col[rows]:
            at = seen.setdefault(_text_key(v), len(seen))
            if at == len(distinct):
                distinct.append(v)
            found.append(at)
        inverse = np.array(found, dtype=np.int64)
    keys: dict[Hashable, int] = {}
    recode = np.array([keys.setdefault(key(name, v), len(keys)) for v in distinct], dtype=np.int64)
    codes: np.ndarray = recode[inverse.ravel()]
    return codes


def _texts(columns: _Columns, name: str, rows: np.ndarray) -> np.ndarray:
    """:func:`features.catalogue.reason_text` of feature ``name`` for ``rows``: rendered once
    per distinct combination of the values it reads (its own and those its text names)."""
    code = _value_codes(columns, name, rows, reason_key)
    for other in _text_fields(name):
        more = _value_codes(columns, other, rows, field_key)
        _, code = np.unique(code * (int(more.max()) + 1) + more, return_inverse=True)
        code = code.ravel().astype(np.int64)
    _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
    rendered = []
    for r in rows[first].tolist():
        row = _Row(columns, r)
        rendered.append(reason_text(name, row.get(name), row))
    texts: np.ndarray = np.array(rendered, dtype=object)[inverse.ravel()]
    return texts
