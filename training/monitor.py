"""``make monitor``: how every kept snapshot's model is doing, and alerts when a check fails.

For each kept snapshot (``<scores_dir>/history/<as_of>/``, oldest first) it computes the
figures of :mod:`training.monitor_checks`: the estimate from the calibrated probabilities
(always), the realized figures once ``as_of + horizon`` lies within the data (labels from
:func:`features.labels.churn_labels`, the one label rule training uses), and the drift
against the reference stored in the scoring model's bundle. It then writes

- ``<scores_dir>/monitoring/latest.json``: ``rows`` (one per snapshot), ``alerts`` (those
  that fire now), ``summary`` (what the server's Prometheus gauges show), ``thresholds``;
- ``<scores_dir>/monitoring/report.html``: the self-contained report (inline SVG plots),

logs both and every figure (step = the snapshot's ``as_of`` in days since 1970) to an MLflow
run tagged with the champion's ``model_version``, writes one WARNING line per alert and, when
``CHURN_WEBHOOK_URL`` is set, POSTs the alerts signed as ``make notify`` does.

Alerts that *fire* are those of the newest snapshot (estimate and drift) and of the newest
snapshot whose labels are known (realized figures): an old crossing stays in its row of the
report without firing again every run. Exit code 0: no alert; 3: alerts fired; 2: bad input.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from features.labels import churn_labels
from features.time import as_utc
from models.bundle import Bundle
from models.contract import MONITORING_DIR, MONITORING_FILE, MONITORING_REPORT
from models.drift import REFERENCE_KEY, SNAPSHOT_PROFILE_KEY
from models.history import SnapshotError, kept_snapshots, read_verified
from models.registry import ModelLoadError
from training import monitor_checks as checks
from training import tracking
from training.config import SettingsError, TrainSettings
from training.frames import data_end
from training.io import DataError, LoadedTables, load_inputs
from training.monitor_report import render_monitoring_report
from training.notify import Delivery, _append, _target, delivered_keys, send

log = logging.getLogger(__name__)

EXIT_ALERTS = 3
EVENT = "churn.monitor_alerts"
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class MonitorResult:
    """What ``make monitor`` found and wrote."""

    rows: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    json_path: Path
    report_path: Path
    run_id: str | None
    model_version: str

    @property
    def exit_code(self) -> int:
        return EXIT_ALERTS if self.alerts else 0


def _json_ready(value: Any) -> Any:
    """``value`` with NaN and infinities as None (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class _Bundles:
    """Registered bundles by version, each read once (the verified loader)."""

    def __init__(self, settings: TrainSettings, champion: tuple[Bundle, str]) -> None:
        self.settings = settings
        self.cache: dict[str, Bundle | None] = {champion[1]: champion[0]}

    def get(self, version: str) -> Bundle | None:
        if version not in self.cache:
            try:
                self.cache[version] = tracking.load_version(self.settings, version)
            except Exception as exc:  # a deleted or unreadable version: no reference, no stop
                log.warning("v%s not readable, its snapshots get no reference: %s", version, exc)
                self.cache[version] = None
        return self.cache[version]


def snapshot_row(
    folder: Path,
    *,
    loaded: LoadedTables,
    end: pd.Timestamp,
    bundles: _Bundles,
    thresholds: checks.Thresholds,
    top_n: int,
) -> dict[str, Any]:
    """The figures of the snapshot in ``folder`` (:mod:`training.monitor_checks`) and the
    alerts of each of its checks."""
    meta, table = read_verified(folder, list(checks.COLUMNS))
    frame = table.to_pandas()
    as_of = as_utc(meta["as_of"])
    horizon = int(meta["horizon_days"])
    version = str(meta["model_version"])
    bundle = bundles.get(version)
    bundle_meta = bundle.meta if bundle is not None else {}
    reference = bundle_meta.get(REFERENCE_KEY)
    top = checks.worklist_top(frame, top_n)
    due = as_of + pd.Timedelta(days=horizon)
    row: dict[str, Any] = {
        "as_of": str(meta["as_of"]),
        "model_version": version,
        "customers": len(frame),
        "horizon_days": horizon,
        "labels_due": due.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "horizon_passed": bool(due <= end),
        "reference_auc": checks._f(bundle_meta.get("metrics", {}).get("valid.roc_auc")),
        "reference_expected_auc": checks._f((reference or {}).get("expected_roc_auc")),
        "top_n": top_n,
        "estimated": checks.estimated(frame, top),
        "realized": None,
        "drift": checks.drift(reference, meta.get(SNAPSHOT_PROFILE_KEY), thresholds),
    }
    if row["horizon_passed"]:
        labels = churn_labels(
            loaded.tables,
            as_of=as_of,
            horizon_days=horizon,
            population=pd.Index(frame["customer_id"].astype(str), name="customer_id"),
        )
        row["realized"] = checks.realized(frame, labels, top)
    row["performance_alerts"] = checks.performance_alerts(row, thresholds)
    row["input_alerts"] = checks.input_alerts(row, thresholds)
    return row


def firing(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The alerts that fire now: the newest snapshot's estimate and drift alerts, and the
    realized-performance alerts of the newest snapshot whose labels are known."""
    if not rows:
        return []
    out = list(rows[-1]["input_alerts"])
    labelled = [r for r in rows if (r.get("realized") or {}).get("roc_auc") is not None]
    if labelled:
        out += labelled[-1]["performance_alerts"]
    return out


def summary(rows: list[dict[str, Any]], alerts: list[dict[str, Any]], version: str) -> dict:
    """The ``summary`` of ``latest.json`` (keys :data:`models.contract.MONITORING_SUMMARY_KEYS`)."""
    labelled = [r for r in rows if (r.get("realized") or {}).get("roc_auc") is not None]
    latest = rows[-1] if rows else {}
    drift = latest.get("drift") or {}
    return {
        "model_version": version,
        "realized_auc": labelled[-1]["realized"]["roc_auc"] if labelled else None,
        "realized_as_of": labelled[-1]["as_of"] if labelled else None,
        "realized_model_version": labelled[-1]["model_version"] if labelled else None,
        "estimated_auc": (latest.get("estimated") or {}).get("roc_auc"),
        "estimated_as_of": latest.get("as_of"),
        "estimated_model_version": latest.get("model_version"),
        "psi_max": drift.get("psi_max"),
        "missing_change_max": drift.get("missing_change_max"),
        "alerts": len(alerts),
    }


def _metrics(row: dict[str, Any]) -> dict[str, float]:
    """The MLflow metrics of one row (``monitor.<name>``)."""
    est = row.get("estimated") or {}
    got = row.get("realized") or {}
    drift = row.get("drift") or {}
    values = {
        "estimated_auc": est.get("roc_auc"),
        "estimated_churn_rate": est.get("churn_rate"),
        "estimated_lift_top10": est.get("lift_top10"),
        "estimated_value_lost_top_n": est.get("value_lost_top_n"),
        "realized_auc": got.get("roc_auc"),
        "realized_ece": got.get("ece"),
        "realized_churn_rate": got.get("churn_rate"),
        "realized_lift_top10": got.get("lift_top10"),
        "realized_value_lost_top_n": got.get("value_lost_top_n"),
        "realized_lost_top_n": got.get("lost_top_n"),
        "psi_max": drift.get("psi_max"),
        "missing_change_max": drift.get("missing_change_max"),
        "alerts": len(row["input_alerts"]) + len(row["performance_alerts"]),
    }
    return {f"monitor.{k}": float(v) for k, v in values.items() if v is not None}


def deliver_alerts(settings: TrainSettings, alerts: list[dict[str, Any]], version: str) -> None:
    """POST the firing alerts to ``CHURN_WEBHOOK_URL``, signed (``X-Churn-Signature``, as
    ``make notify``); the same alerts are delivered once (the delivery log). A webhook that
    is not configured, or fails, is ONE WARNING line: the alerts are in the log and the
    exit code either way."""
    url = settings.webhook_url
    if not url or not alerts:
        return
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
    try:
        target = _target(url)
    except SettingsError as exc:
        log.warning("monitoring alerts not POSTed: %s", exc)
        return
    if not secret:
        log.warning("monitoring alerts not POSTed: CHURN_WEBHOOK_SECRET is not set")
        return
    payload = {"event": EVENT, "model_version": version, "alerts": alerts}
    body = json.dumps(_json_ready(payload), separators=(",", ":"), sort_keys=True).encode()
    key = hashlib.sha256(b"monitor:" + body).hexdigest()[:40]
    if key in delivered_keys(settings.notify_log):
        log.info("monitoring alerts already delivered to %s (key %s)", target, key)
        return
    outcome = send(Delivery(key, 1, 1, len(alerts), body), url, secret.encode(), settings)
    _append(
        settings.notify_log,
        {
            "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "event": EVENT,
            "idempotency_key": key,
            "alerts": len(alerts),
            "status": "delivered" if outcome.delivered else "failed",
            "attempts": outcome.attempts,
            "http_status": outcome.http_status,
            "error": outcome.error,
        },
    )
    if not outcome.delivered:
        log.warning("monitoring alerts not delivered to %s: %s", target, outcome.error)


def monitor(settings: TrainSettings) -> MonitorResult:
    """Compute every kept snapshot's figures, write ``latest.json`` and the report, log them
    to MLflow, and raise the alerts (module docstring).

    Raises
    ------
    DataError
        No kept snapshot, no champion, or an unreadable data folder (exit code 2).
    """
    kept = kept_snapshots(settings.scores_dir)
    if not kept:
        raise DataError(
            f"{settings.scores_dir / 'history'}: no kept snapshot to monitor; run 'make score' first"
        )
    try:
        champion = tracking.load_champion(settings)
    except ModelLoadError as exc:
        raise DataError(f"model registry {settings.mlflow_tracking_uri}: {exc}") from None
    loaded, _ = load_inputs(settings)
    end = data_end(loaded.tables)
    bundles = _Bundles(settings, champion)
    thresholds = checks.Thresholds.of(settings)
    rows = []
    for snapshot in reversed(kept):  # oldest first: the plots read left to right
        try:
            rows.append(
                snapshot_row(
                    snapshot.path,
                    loaded=loaded,
                    end=end,
                    bundles=bundles,
                    thresholds=thresholds,
                    top_n=settings.monitor_top_n,
                )
            )
        except SnapshotError as exc:
            log.warning("snapshot left out of monitoring: %s", exc)
    if not rows:
        raise DataError(
            f"{settings.scores_dir / 'history'}: none of the {len(kept)} kept snapshots is "
            "readable (see the warnings); run 'make score' again"
        )
    version = champion[1]
    alerts = firing(rows)
    for alert in alerts:
        log.warning("monitoring alert %s: %s", alert["check"], alert["message"])
    document = _json_ready(
        {
            "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "model_name": settings.model_name,
            "model_version": version,
            "data_end": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "thresholds": thresholds.to_dict(),
            "summary": summary(rows, alerts, version),
            "alerts": alerts,
            "rows": rows,
        }
    )
    out = settings.scores_dir / MONITORING_DIR
    json_path, report_path = out / MONITORING_FILE, out / MONITORING_REPORT
    _write_atomic(report_path, render_monitoring_report(document))
    _write_atomic(json_path, json.dumps(document, indent=1, allow_nan=False))
    run_id = None
    try:
        run_id = tracking.log_monitoring(
            settings,
            model_version=version,
            steps=[
                (int(as_utc(r["as_of"]).timestamp() * 1000) // _DAY_MS, r["as_of"], _metrics(r))
                for r in document["rows"]
            ],
            tags={"monitor.alerts": str(len(alerts))},
            files=[report_path, json_path],
        )
    except Exception as exc:  # MLflow down: the files and the alerts still stand
        log.warning("monitoring not logged to MLflow: %s", type(exc).__name__)
    deliver_alerts(settings, alerts, version)
    return MonitorResult(document["rows"], alerts, json_path, report_path, run_id, version)
