"""Prometheus gauges of ``make monitor``'s findings, read from ``<scores_dir>/monitoring/latest.json``.

The file is read lazily: each scrape checks its modification time and size (one ``stat``)
and parses it again only when they changed, so a scrape costs microseconds and a new
``make monitor`` shows up at the next scrape without a reload. Gauges (absent until the file
exists; a figure not known yet is left out):

- ``churn_realized_auc{model_version}``: ROC-AUC of the newest snapshot whose labels are in;
- ``churn_estimated_auc{model_version}``: CBPE ROC-AUC of the newest snapshot;
- ``churn_drift_psi_max``, ``churn_drift_missing_change_max``: largest PSI and missing-rate
  change of a feature in the newest snapshot;
- ``churn_monitor_alerts``: alerts firing; ``churn_monitor_generated_timestamp_seconds``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class MonitoringCollector(Collector):
    """The gauges of the monitoring summary in ``path`` (module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._doc: dict[str, Any] | None = None

    def describe(self) -> list:
        return []  # no file read at registration

    def _current(self) -> dict[str, Any] | None:
        try:
            st = self.path.stat()
        except OSError:
            self._stamp, self._doc = None, None
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                doc = json.loads(self.path.read_bytes())
                summary = doc["summary"]
                if not isinstance(summary, dict):
                    raise TypeError("summary is not an object")
                self._doc = {"summary": summary, "generated_at": doc.get("generated_at")}
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("monitoring gauges not shown: %s unreadable (%s)", self.path, exc)
                self._doc = None
        return self._doc

    def collect(self) -> Iterator[GaugeMetricFamily]:
        doc = self._current()
        if doc is None:
            return
        s = doc["summary"]
        for name, key, text in (
            ("churn_realized_auc", "realized", "ROC-AUC of the newest snapshot with labels"),
            ("churn_estimated_auc", "estimated", "CBPE ROC-AUC of the newest snapshot"),
        ):
            gauge = GaugeMetricFamily(name, text, labels=["model_version"])
            value = _number(s.get(f"{key}_auc"))
            if value is not None:
                gauge.add_metric([str(s.get(f"{key}_model_version") or "")], value)
            yield gauge
        for name, key, text in (
            ("churn_drift_psi_max", "psi_max", "largest feature PSI, newest snapshot"),
            (
                "churn_drift_missing_change_max",
                "missing_change_max",
                "largest feature missing-rate change, newest snapshot",
            ),
            ("churn_monitor_alerts", "alerts", "monitoring alerts firing (make monitor)"),
        ):
            value = _number(s.get(key))
            if value is not None:
                yield GaugeMetricFamily(name, text, value=value)
        try:
            at = datetime.fromisoformat(str(doc["generated_at"])).timestamp()
        except (TypeError, ValueError):
            return
        yield GaugeMetricFamily(
            "churn_monitor_generated_timestamp_seconds",
            "when make monitor wrote the figures (Unix time)",
            value=at,
        )
