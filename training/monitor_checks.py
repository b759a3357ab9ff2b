"""The figures of one kept snapshot and the thresholds they are held to (``make monitor``).

Per snapshot (docs/monitoring.md explains each figure):

- **realized** (once ``as_of + horizon`` is within the data): ROC-AUC, ECE, churn rate,
  lift and capture in the top decile, predicted vs observed churn rate per risk band, and
  the customers and value (CLV) actually lost among the top N of the worklist;
- **estimated** (always, from the calibrated probabilities alone): the CBPE ROC-AUC
  (:mod:`models.performance_estimation`), churn rate, lift, and the expected customers and
  value lost among the same top N;
- **drift** against the reference the scoring model's bundle carries (:mod:`models.drift`):
  PSI, missing-rate and category-share changes per feature, rows per day and quarantine rate
  per reason per input table.

:func:`alerts` holds them to :class:`Thresholds` (one per check, from the settings).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from features.status import LAPSED
from models.contract import RISK_BANDS
from models.drift import compare, compare_tables
from models.performance_estimation import expected_churn_rate, expected_lift, expected_roc_auc
from models.worklist import rank_order
from training.config import TrainSettings
from training.evaluate import expected_calibration_error, lift_and_capture

#: Fewest rows of a segment (``effort_score[interaction_type=support_ticket]``) in the
#: snapshot's window for its missing rate to be checked.
MIN_SEGMENT_RATE_ROWS = 200
#: Snapshot columns the figures read.
COLUMNS = ("customer_id", "churn_probability", "risk_band", "status", "clv", "value_at_risk")


@dataclass(frozen=True)
class Thresholds:
    """One threshold per check (settings ``CHURN_MONITOR_*``, docs/monitoring.md)."""

    auc_drop: float = 0.05
    estimated_auc_drop: float = 0.05
    ece_max: float = 0.1
    psi_max: float = 0.2
    psi_p_value: float = 0.05
    missing_change: float = 0.1
    share_change: float = 0.1
    rows_change: float = 0.5
    quarantine_rate: float = 0.01
    ignore: tuple[str, ...] = ("tenure_days", "T_days")

    @classmethod
    def of(cls, settings: TrainSettings) -> Thresholds:
        """The thresholds of the settings."""
        return cls(
            auc_drop=settings.monitor_auc_drop,
            estimated_auc_drop=settings.monitor_estimated_auc_drop,
            ece_max=settings.monitor_ece_max,
            psi_max=settings.monitor_psi_max,
            psi_p_value=settings.monitor_psi_p_value,
            missing_change=settings.monitor_missing_change,
            share_change=settings.monitor_share_change,
            rows_change=settings.monitor_rows_change,
            quarantine_rate=settings.monitor_quarantine_rate,
            ignore=tuple(n.strip() for n in settings.monitor_drift_ignore.split(",") if n.strip()),
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ignore": list(self.ignore)}


def _f(x: Any) -> float | None:
    """A float for JSON: None for missing or not finite."""
    if x is None:
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def worklist_top(frame: pd.DataFrame, n: int) -> np.ndarray:
    """Row positions of the top ``n`` of the worklist (``/v1/at-risk`` order: lapsed
    customers off the list, value at risk descending, :func:`models.worklist.rank_order`)."""
    keep = np.flatnonzero(frame["status"].to_numpy(dtype=object) != LAPSED)
    sub = frame.iloc[keep]
    order = rank_order(
        sub["value_at_risk"].to_numpy(dtype=float, na_value=np.nan),
        sub["churn_probability"].to_numpy(dtype=float),
        sub["customer_id"].to_numpy(dtype=str),
    )
    top: np.ndarray = keep[order[:n]]
    return top


def estimated(frame: pd.DataFrame, top: np.ndarray) -> dict[str, Any]:
    """Figures expected from the calibrated probabilities (every scored customer)."""
    p = frame["churn_probability"].to_numpy(dtype=float)
    var = frame["value_at_risk"].to_numpy(dtype=float, na_value=np.nan)[top]
    return {
        "roc_auc": _f(expected_roc_auc(p)),
        "churn_rate": _f(expected_churn_rate(p)),
        "lift_top10": _f(expected_lift(p)),
        "lost_top_n": _f(p[top].sum()),
        "value_lost_top_n": _f(np.nansum(var)) if np.isfinite(var).any() else None,
    }


def realized(frame: pd.DataFrame, labels: pd.Series, top: np.ndarray) -> dict[str, Any]:
    """What the scored customers actually did: ``labels`` (0/1 or <NA> by customer id, from
    :func:`features.labels.churn_labels`) against the snapshot's probabilities. ``labelled``
    counts the customers with a label; the figures are None without both classes."""
    y_all = labels.reindex(frame["customer_id"].to_numpy()).to_numpy(dtype=float, na_value=np.nan)
    known = np.isfinite(y_all)
    out: dict[str, Any] = {"labelled": int(known.sum())}
    y = y_all[known].astype(int)
    p = frame["churn_probability"].to_numpy(dtype=float)[known]
    if len(np.unique(y)) < 2:
        out["note"] = "labels of one class only" if len(y) else "no label at this as_of"
        return out
    lift, capture = lift_and_capture(y, p)
    bands = frame["risk_band"].to_numpy(dtype=object)[known]
    out |= {
        "roc_auc": _f(roc_auc_score(y, p)),
        "ece": _f(expected_calibration_error(y, p)),
        "churn_rate": _f(y.mean()),
        "predicted_churn_rate": _f(p.mean()),
        "lift_top10": _f(lift),
        "capture_top10": _f(capture),
        "bands": {
            b: {
                "n": int((bands == b).sum()),
                "predicted": _f(p[bands == b].mean()) if (bands == b).any() else None,
                "observed": _f(y[bands == b].mean()) if (bands == b).any() else None,
            }
            for b in RISK_BANDS
        },
    }
    top_known = top[known[top]]
    churned = y_all[top_known] == 1
    clv = frame["clv"].to_numpy(dtype=float, na_value=np.nan)[top_known][churned]
    out["lost_top_n"] = int(churned.sum())
    out["value_lost_top_n"] = _f(np.nansum(clv)) if np.isfinite(clv).any() or not len(clv) else None
    return out


def is_segment(name: str) -> bool:
    """A column within one value of a categorical column (``effort_score[channel=phone]``)."""
    return "[" in name


def significant(row: Mapping[str, Any], p_value: float) -> bool:
    """The row's shift is unlikely from sampling alone (or its p-value is not known)."""
    p = row.get("p_value")
    return p is None or not math.isfinite(p) or p < p_value


def drift(
    reference: Mapping[str, Any] | None,
    profile: Mapping[str, Any] | None,
    thresholds: Thresholds,
) -> dict[str, Any]:
    """Per-feature and per-table drift of a snapshot's profile against the reference, with
    the largest PSI, missing-rate change and category-share change over the features and
    input columns not ignored (segments count for the PSI when significant, and not for the
    rates: a few dozen rows move them by chance); ``{"note": ...}`` when a side is missing."""
    ignore = thresholds.ignore
    if not reference or not profile:
        why = "the model has no reference" if not reference else "the snapshot has no profile"
        return {"note": f"no drift figures: {why} (train and score again)"}
    features = compare(reference, profile)
    tables = compare_tables(reference.get("tables", {}), profile.get("tables", {}))
    # input-table columns as "table.column", held to the same thresholds as the features
    columns = [
        {**c, "feature": f"{t['table']}.{c['feature']}"} for t in tables for c in t.pop("columns")
    ]
    watched = [r for r in [*features, *columns] if r["feature"] not in ignore]
    # Bonferroni: the family-wise level over every PSI test of this snapshot
    tests = sum(1 for r in watched if r.get("p_value") is not None and math.isfinite(r["p_value"]))
    limit = thresholds.psi_p_value / max(tests, 1)

    def top(key: str) -> tuple[float | None, str | None]:
        if key == "psi":
            rows = [r for r in watched if significant(r, limit)]
            rows = [r for r in rows if not is_segment(r["feature"]) or r.get("p_value") is not None]
        else:
            rows = [r for r in watched if not is_segment(r["feature"])]
        values = [(abs(r[key]), r) for r in rows if r.get(key) is not None]
        values = [(v, r) for v, r in values if math.isfinite(v)]
        if not values:
            return None, None
        v, r = max(values, key=lambda x: x[0])
        return _f(r[key] if key != "psi" else v), r["feature"]

    psi_max, psi_feature = top("psi")
    missing, missing_feature = top("missing_change")
    share, share_feature = top("max_share_change")
    return {
        "psi_tests": tests,
        "p_value_limit": limit,
        "psi_max": psi_max,
        "psi_feature": psi_feature,
        "missing_change_max": missing,
        "missing_feature": missing_feature,
        "share_change_max": share,
        "share_feature": share_feature,
        "features": [_clean_row(r) for r in features],
        "columns": [_clean_row(r) for r in columns],
        "tables": tables,
    }


def _clean_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (_f(v) if isinstance(v, float) else v) for k, v in row.items()}


def _alert(check: str, row: Mapping[str, Any], subject: str, value: float, limit: float, text: str):
    return {
        "check": check,
        "as_of": row["as_of"],
        "model_version": row["model_version"],
        "subject": subject,
        "value": round(float(value), 6),
        "threshold": limit,
        "message": f"snapshot {row['as_of'][:10]} (v{row['model_version']}): {text}",
    }


def _kind(name: str) -> str:
    return "input column" if "." in name else "feature"


def performance_alerts(row: Mapping[str, Any], t: Thresholds) -> list[dict[str, Any]]:
    """Alerts on the realized figures of ``row`` (empty before its labels are known)."""
    out = []
    ref = row.get("reference_auc")
    got = row.get("realized") or {}
    auc, ece = got.get("roc_auc"), got.get("ece")
    if auc is not None and ref is not None and ref - auc > t.auc_drop:
        text = f"realized ROC-AUC {auc:.3f} is {ref - auc:.3f} below validation {ref:.3f}"
        out.append(_alert("realized_auc_drop", row, "roc_auc", auc, t.auc_drop, text))
    if ece is not None and ece > t.ece_max:
        text = f"realized ECE {ece:.3f} > {t.ece_max}"
        out.append(_alert("realized_ece", row, "ece", ece, t.ece_max, text))
    return out


def input_alerts(row: Mapping[str, Any], t: Thresholds) -> list[dict[str, Any]]:
    """Alerts on the estimate and the drift of ``row`` (known on the day it is scored)."""
    out = []
    ref = row.get("reference_auc")
    est = (row.get("estimated") or {}).get("roc_auc")
    if est is not None and ref is not None and ref - est > t.estimated_auc_drop:
        text = f"estimated ROC-AUC {est:.3f} is {ref - est:.3f} below validation {ref:.3f}"
        out.append(_alert("estimated_auc_drop", row, "roc_auc", est, t.estimated_auc_drop, text))
    d = row.get("drift") or {}
    limit = d.get("p_value_limit", t.psi_p_value)
    for r in [*d.get("features", []), *d.get("columns", [])]:
        name = r["feature"]
        if name in t.ignore:
            continue
        if r.get("psi") is not None and r["psi"] > t.psi_max and significant(r, limit):
            p = r.get("p_value")
            text = f"{_kind(name)} {name}: PSI {r['psi']:.3f} > {t.psi_max}" + (
                f" (p = {p:.1e}, {r.get('n', 0):,} values)" if p is not None else ""
            )
            out.append(_alert("psi", row, name, r["psi"], t.psi_max, text))
        segment = is_segment(name)
        missing_p = r.get("missing_p_value")
        # a segment's rate moves by chance over a few dozen rows (and with the mix of a small
        # one): there it must be significant and over MIN_SEGMENT_RATE_ROWS rows
        if abs(r["missing_change"]) > t.missing_change and (
            not segment
            or (
                missing_p is not None
                and missing_p < limit
                and r.get("rows", 0) >= MIN_SEGMENT_RATE_ROWS
            )
        ):
            text = (
                f"{_kind(name)} {name}: missing rate {r['missing_reference']:.1%} -> "
                f"{r['missing_snapshot']:.1%}"
            )
            out.append(
                _alert("missing_change", row, name, r["missing_change"], t.missing_change, text)
            )
        change = r.get("max_share_change")
        if change is not None and abs(change) > t.share_change and not segment:
            text = f"{_kind(name)} {name}: share of '{r['category']}' changed by {change:+.1%}"
            out.append(_alert("share_change", row, name, change, t.share_change, text))
    for r in d.get("tables", []):
        change = r.get("rows_per_day_change")
        if change is not None and abs(change) > t.rows_change:
            text = (
                f"table {r['table']}: {r['rows_per_day']:,.1f} rows/day vs "
                f"{r['reference_rows_per_day']:,.1f} at the reference ({change:+.0%})"
            )
            out.append(_alert("rows_change", row, r["table"], change, t.rows_change, text))
        for reason, q in r["quarantine"].items():
            if q["change"] > t.quarantine_rate:
                text = (
                    f"table {r['table']}: {q['rate']:.2%} of rows quarantined for {reason} "
                    f"(reference {q['reference']:.2%})"
                )
                subject = f"{r['table']}.{reason}"
                out.append(
                    _alert("quarantine_rate", row, subject, q["change"], t.quarantine_rate, text)
                )
    return out
