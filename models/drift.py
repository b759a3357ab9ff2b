"""Input drift between a model's reference population and a scored snapshot: pure functions.

Training stores a *reference profile* of the frame the model was fitted and calibrated on
(:func:`reference_profile`, in the bundle's ``bundle.json`` under :data:`REFERENCE_KEY`): per
numeric feature the interior edges of ``bins`` quantile bins and the share of values in each
bin, per categorical feature the share of each category, and each feature's missing rate.
Batch scoring counts the scored customers into the *same* bins (:func:`count_profile`, kept in
``snapshot.json`` under :data:`SNAPSHOT_PROFILE_KEY`): counts, not the rows, so a snapshot of a
million customers adds a few kilobytes, and counts from partitions add up.

:func:`compare` turns the two into one row per feature:

- **PSI** (population stability index), ``sum_b (a_b - e_b) ln(a_b / e_b)`` over the bins,
  ``e`` the reference shares and ``a`` the snapshot's (non-missing values only; shares are
  floored at :data:`SHARE_FLOOR` so an empty bin does not give infinity). Rules of thumb from
  credit scoring (Siddiqi 2006; Yurdakul 2018): below 0.1 stable, 0.1-0.2 a moderate shift,
  above 0.2 a significant one. A categorical feature gets the same index over its categories
  (the reference's most common ones, the rest pooled as :data:`OTHER`) and the largest
  absolute change of one category's share;
- **missing-rate change**: the snapshot's share of missing values minus the reference's (an
  export that drops a column's values shows here, not in PSI).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency

from features.schema import Tables

#: ``bundle.json`` key of the reference profile, and ``snapshot.json`` key of the counts.
REFERENCE_KEY = "monitoring_reference"
SNAPSHOT_PROFILE_KEY = "feature_profile"
#: Quantile bins per numeric feature (deciles: the usual PSI binning).
BINS = 10
#: Categories kept per categorical feature; the rest are pooled.
MAX_CATEGORIES = 20
OTHER = "__other__"
#: Smallest share a bin counts with in PSI (an empty bin would make the log infinite).
SHARE_FLOOR = 1e-4
_DIGITS = 6


def _is_numeric(values: pd.Series) -> bool:
    return bool(
        pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype)
    )


def _floats(values: pd.Series) -> np.ndarray:
    return values.to_numpy(dtype=float, na_value=np.nan)


def _edges(values: np.ndarray, bins: int) -> list[float]:
    """Interior edges of ``bins`` quantile bins of the finite ``values``, ties merged (a count
    feature that is mostly zero has fewer bins)."""
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return []
    cuts = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])
    return sorted({float(f"{c:.{_DIGITS}g}") for c in cuts})


def bin_counts(values: np.ndarray, edges: Sequence[float]) -> list[int]:
    """Counts of the finite ``values`` in the bins ``(-inf, e1], (e1, e2], ..., (ek, inf)``."""
    finite = values[np.isfinite(values)]
    idx = np.searchsorted(np.asarray(edges, dtype=float), finite, side="left")
    return [int(c) for c in np.bincount(idx, minlength=len(edges) + 1)]


def _category_counts(values: pd.Series) -> dict[str, int]:
    text = values.astype("string")
    return {str(k): int(v) for k, v in text.value_counts(dropna=True).items()}


def reference_profile(
    frame: pd.DataFrame,
    features: Sequence[str],
    *,
    bins: int = BINS,
    max_categories: int = MAX_CATEGORIES,
) -> dict[str, Any]:
    """The reference profile of ``frame`` (one row per customer and cutoff) for ``features``
    (those absent from the frame are left out): plain JSON, as the bundle stores it."""
    out: dict[str, Any] = {"rows": len(frame), "bins": bins, "features": {}}
    n = max(len(frame), 1)
    for name in features:
        if name not in frame.columns:
            continue
        values = frame[name]
        missing = int(values.isna().sum())
        if _is_numeric(values):
            floats = _floats(values)
            missing = int((~np.isfinite(floats)).sum())
            edges = _edges(floats, bins)
            counts = bin_counts(floats, edges)
            total = max(sum(counts), 1)
            entry = {
                "kind": "numeric",
                "edges": edges,
                "shares": [round(c / total, _DIGITS) for c in counts],
                "n": sum(counts),
            }
        else:
            counts_by = _category_counts(values)
            top = sorted(counts_by, key=lambda k: (-counts_by[k], k))[:max_categories]
            total = max(sum(counts_by.values()), 1)
            shares = {k: round(counts_by[k] / total, _DIGITS) for k in top}
            rest = sum(v for k, v in counts_by.items() if k not in shares)
            if rest:
                shares[OTHER] = round(rest / total, _DIGITS)
            entry = {"kind": "category", "shares": shares, "n": sum(counts_by.values())}
        entry["missing_rate"] = round(missing / n, _DIGITS)
        entry["rows"] = len(frame)
        out["features"][name] = entry
    return out


def count_profile(frame: pd.DataFrame, reference: Mapping[str, Any]) -> dict[str, Any]:
    """Counts of ``frame``'s customers in the reference's bins and categories, and their
    missing values, per feature of the reference the frame has (``snapshot.json`` form)."""
    out: dict[str, Any] = {"rows": len(frame), "features": {}}
    for name, ref in reference.get("features", {}).items():
        if name not in frame.columns:
            continue
        values = frame[name]
        if ref["kind"] == "numeric":
            floats = _floats(values) if _is_numeric(values) else np.full(len(values), np.nan)
            counts: Any = bin_counts(floats, ref["edges"])
            missing = int((~np.isfinite(floats)).sum())
        else:
            by = _category_counts(values)
            counts = {k: by.get(k, 0) for k in ref["shares"] if k != OTHER}
            rest = sum(v for k, v in by.items() if k not in counts)
            if rest:
                counts[OTHER] = rest
            missing = int(values.isna().sum())
        out["features"][name] = {"counts": counts, "missing": missing}
    return out


def add_profiles(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Two :func:`count_profile` results of disjoint customers (partitions) added up."""
    out: dict[str, Any] = {"rows": int(a["rows"]) + int(b["rows"]), "features": {}}
    for name in set(a["features"]) | set(b["features"]):
        x = a["features"].get(name)
        y = b["features"].get(name)
        if x is None or y is None:
            out["features"][name] = dict(x or y or {})
            continue
        if isinstance(x["counts"], list):
            counts: Any = [p + q for p, q in zip(x["counts"], y["counts"], strict=True)]
        else:
            counts = {
                k: x["counts"].get(k, 0) + y["counts"].get(k, 0)
                for k in {*x["counts"], *y["counts"]}
            }
        out["features"][name] = {"counts": counts, "missing": x["missing"] + y["missing"]}
    return out


def psi(expected: Sequence[float], actual: Sequence[float], *, floor: float = SHARE_FLOOR) -> float:
    """Population stability index of ``actual`` shares against ``expected`` shares (each
    normalised to sum to one, floored at ``floor``); NaN when either has no mass."""
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    if e.sum() <= 0 or a.sum() <= 0:
        return float("nan")
    e = np.maximum(e / e.sum(), floor)
    a = np.maximum(a / a.sum(), floor)
    return float(np.sum((a - e) * np.log(a / e)))


def p_value(expected: Sequence[float], n_expected: int, actual: Sequence[float]) -> float:
    """Chi-square test of homogeneity of the reference (``expected`` shares of ``n_expected``
    values) and the snapshot's ``actual`` counts: how likely a shift this large is from
    sampling alone. PSI grows as samples shrink (about ``(bins - 1) (1/n1 + 1/n2)`` with no
    shift at all), so a small segment needs this next to its PSI. NaN without data."""
    e = np.asarray(expected, dtype=float) * float(n_expected)
    a = np.asarray(actual, dtype=float)
    keep = (e + a) > 0
    if keep.sum() < 2 or e.sum() <= 0 or a.sum() <= 0:
        return float("nan")
    table = np.vstack([e[keep], a[keep]])
    return float(chi2_contingency(table, correction=False)[1])


def _missing_p_value(ref: Mapping[str, Any], missing: int, rows: int) -> float | None:
    """Chi-square p-value of the change of a missing rate (None for a reference from
    before the row counts were stored, or when nothing can be tested)."""
    if "rows" not in ref:
        return None
    ref_rows = int(ref["rows"])
    ref_missing = round(float(ref["missing_rate"]) * ref_rows)
    table = np.array([[ref_missing, ref_rows - ref_missing], [missing, rows - missing]], float)
    if (table.sum(axis=0) == 0).any() or (table.sum(axis=1) == 0).any():
        return None
    return float(chi2_contingency(table, correction=False)[1])


def compare(reference: Mapping[str, Any], profile: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per feature present in both: ``feature``, ``kind``, ``psi`` (NaN when the
    snapshot has no value of it), ``missing_reference``, ``missing_snapshot``,
    ``missing_change``, and for categories ``max_share_change`` and the ``category`` it is
    of. Sorted by PSI, largest first."""
    rows = []
    n = max(int(profile.get("rows", 0)), 1)
    for name, ref in reference.get("features", {}).items():
        got = profile.get("features", {}).get(name)
        if got is None:
            continue
        rows_now = max(int(got.get("rows", n)), 1)  # a segment: its own rows
        missing_now = got["missing"] / rows_now
        row: dict[str, Any] = {
            "feature": name,
            "kind": ref["kind"],
            "missing_reference": float(ref["missing_rate"]),
            "missing_snapshot": round(missing_now, _DIGITS),
            "missing_change": round(missing_now - float(ref["missing_rate"]), _DIGITS),
            "missing_p_value": _missing_p_value(ref, got["missing"], rows_now),
            "rows": rows_now,
        }
        n_ref = int(ref.get("n", 0))
        if ref["kind"] == "numeric":
            row["psi"] = psi(ref["shares"], got["counts"])
            row["p_value"] = p_value(ref["shares"], n_ref, got["counts"])
            row["n"] = int(sum(got["counts"]))
        else:
            keys = list(ref["shares"])
            counts = {k: got["counts"].get(k, 0) for k in keys}
            counts[OTHER] = counts.get(OTHER, 0) + sum(
                v for k, v in got["counts"].items() if k not in ref["shares"]
            )
            keys = [*keys, OTHER] if OTHER not in keys else keys
            expected = [ref["shares"].get(k, 0.0) for k in keys]
            actual = [counts.get(k, 0) for k in keys]
            row["psi"] = psi(expected, actual)
            row["p_value"] = p_value(expected, n_ref, actual)
            total = sum(actual)
            row["n"] = int(total)
            changes = {
                k: (actual[i] / total if total else 0.0) - expected[i] for i, k in enumerate(keys)
            }
            worst = max(changes, key=lambda k: abs(changes[k]))
            row["max_share_change"] = round(changes[worst], _DIGITS)
            row["category"] = worst
        rows.append(row)
    return sorted(rows, key=lambda r: -r["psi"] if not math.isnan(r["psi"]) else math.inf)


#: Days before ``as_of`` over which an event table's rows per day are counted (four whole
#: weeks, so the weekday mix is the same every time).
ROWS_WINDOW_DAYS = 28


#: Columns of an input table that are keys or times, not values to profile.
_NOT_PROFILED = ("customer_id", "timestamp", "as_of")


def _value_columns(table: pd.DataFrame) -> list[str]:
    return [
        c
        for c in table.columns
        if c not in _NOT_PROFILED and not pd.api.types.is_datetime64_any_dtype(table[c].dtype)
    ]


#: A categorical column of an input table with at most this many values splits it into
#: segments (``channel``, ``interaction_type``), each profiled on its own when the reference
#: has at least :data:`MIN_SEGMENT_ROWS` rows of it.
MAX_SEGMENTS = 10
MIN_SEGMENT_ROWS = 50


def _segments(window: pd.DataFrame, columns: list[str]) -> dict[str, pd.Series]:
    """``"column=value"`` -> row mask, for the categorical columns with few values."""
    out = {}
    for c in columns:
        if _is_numeric(window[c]):
            continue
        counts = window[c].astype("string").value_counts(dropna=True)
        if 2 <= len(counts) <= MAX_SEGMENTS:
            for value, n in counts.items():
                if n >= MIN_SEGMENT_ROWS:
                    out[f"{c}={value}"] = window[c].astype("string") == value
    return out


def _window_reference(window: pd.DataFrame, columns: list[str]) -> dict[str, Any]:
    """:func:`reference_profile` of the value columns, plus each numeric column within each
    segment (named ``column[segment]``, e.g. ``effort_score[channel=phone]``)."""
    profile = reference_profile(window, columns)
    masks = _segments(window, columns)
    numeric = [c for c in columns if _is_numeric(window[c])]
    for segment, mask in masks.items():
        part = reference_profile(window.loc[mask.fillna(False).to_numpy(bool)], numeric)
        for name, entry in part["features"].items():
            entry["segment"] = segment
            profile["features"][f"{name}[{segment}]"] = entry
    return profile


def _window_counts(window: pd.DataFrame, reference: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`count_profile` of the value columns and of the reference's segments."""
    plain = {k: v for k, v in reference["features"].items() if "segment" not in v}
    out = count_profile(window, {"features": plain})
    for name, entry in reference["features"].items():
        segment = entry.get("segment")
        if segment is None:
            continue
        column, _, value = segment.partition("=")
        base = name.split("[", 1)[0]
        if column not in window.columns or base not in window.columns:
            continue
        mask = (window[column].astype("string") == value).fillna(False).to_numpy(bool)
        part = count_profile(window.loc[mask, [base]], {"features": {base: entry}})
        got = part["features"][base]
        out["features"][name] = {**got, "rows": int(mask.sum())}
    return out


def table_profile(
    tables: Tables,
    *,
    as_of: pd.Timestamp,
    rows_in: Mapping[str, int],
    quarantined: Mapping[str, Mapping[str, int]],
    reference: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Per input table of ``tables``: rows read (``rows_in``), rows per day over the
    :data:`ROWS_WINDOW_DAYS` before ``as_of`` (tables with a ``timestamp``; else null), the
    share of rows read quarantined per reason (``quarantined``: table -> reason -> rows, over
    the whole data folder), and ``columns``: the profile of each value column over those
    rows (the whole table without a ``timestamp``) -- a :func:`reference_profile` when
    ``reference`` is None (training), else counts in the bins of ``reference`` (an earlier
    result of this function, scoring). A channel whose scores shift, or an export that
    blanks a column, shows here first: the features average over months and customers."""
    out: dict[str, Any] = {}
    start = as_of - pd.Timedelta(days=ROWS_WINDOW_DAYS)
    for name, table in tables.present().items():
        n_in = int(rows_in.get(name, len(table)))
        per_day = None
        window = table
        if "timestamp" in table.columns:
            ts = table["timestamp"]
            inside = (ts >= start) & (ts < as_of)
            per_day = round(float(inside.sum()) / ROWS_WINDOW_DAYS, 3)
            window = table.loc[inside]
        reasons = quarantined.get(name, {})
        ref = (reference or {}).get(name, {}).get("columns")
        columns: dict[str, Any] | None
        if reference is None:
            columns = _window_reference(window, _value_columns(table))
        else:
            columns = _window_counts(window, ref) if ref else None
        out[name] = {
            "rows_in": n_in,
            "rows_per_day": per_day,
            "quarantine_rate": {r: round(v / max(n_in, 1), _DIGITS) for r, v in reasons.items()},
            "columns": columns,
        }
    return out


def compare_tables(
    reference: Mapping[str, Any], profile: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """One row per table in ``profile``: rows read, rows per day and their relative change
    against the reference (null without one), per quarantine reason the rate and its rise
    over the reference's (``quarantine``: reason -> {rate, reference, change}), and
    ``columns``: :func:`compare` of each value column."""
    rows = []
    for name, now in profile.items():
        ref = reference.get(name, {})
        per_day, ref_day = now.get("rows_per_day"), ref.get("rows_per_day")
        change = None
        if per_day is not None and ref_day:
            change = round(per_day / ref_day - 1.0, _DIGITS)
        rates = now.get("quarantine_rate", {})
        ref_rates = ref.get("quarantine_rate", {})
        quarantine = {
            r: {
                "rate": rates.get(r, 0.0),
                "reference": ref_rates.get(r, 0.0),
                "change": round(rates.get(r, 0.0) - ref_rates.get(r, 0.0), _DIGITS),
            }
            for r in sorted({*rates, *ref_rates})
        }
        columns = []
        if ref.get("columns") and now.get("columns"):
            columns = compare(ref["columns"], now["columns"])
        rows.append(
            {
                "table": name,
                "columns": columns,
                "rows_in": now.get("rows_in"),
                "rows_per_day": per_day,
                "reference_rows_per_day": ref_day,
                "rows_per_day_change": change,
                "quarantine": quarantine,
            }
        )
    return rows
