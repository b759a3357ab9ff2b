"""Prometheus metrics of one app: requests, latency, the served model and the snapshot's age.

``prometheus_client`` is the reference client for the Prometheus text format. Each app has
its own registry (not the process-global one), so apps built in one process (tests) never
share or clash. Request metrics are labelled by route *template*, never by raw path: ids stay
out of the metrics as they stay out of the access log, and the label set stays bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from serving.loader import LoadedModel
from serving.monitoring import MonitoringCollector
from serving.snapshot import Snapshot

__all__ = ["CONTENT_TYPE", "Metrics"]

#: Latency buckets, seconds: fine below 10 ms, where snapshot look-ups live.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


def _epoch(iso: str) -> float | None:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except (TypeError, ValueError):
        return None


class Metrics:
    """The app's metrics; ``snapshot`` returns the snapshot being served (or ``None``);
    ``monitoring``: the ``latest.json`` of ``make monitor`` (serving/monitoring.py)."""

    def __init__(
        self, snapshot: Callable[[], Snapshot | None], monitoring: Path | None = None
    ) -> None:
        self.registry = CollectorRegistry()
        if monitoring is not None:  # make monitor's latest.json, read when it changes
            self.registry.register(MonitoringCollector(monitoring))
        self._snapshot = snapshot
        self.requests = Counter(
            "churn_http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "churn_http_request_duration_seconds",
            "time from request start to the end of the response, seconds",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.reloads = Counter(
            "churn_model_reloads",
            "reloads of the champion and snapshot, by outcome (success or failure)",
            ["outcome"],
            registry=self.registry,
        )
        self.model_info = Gauge(
            "churn_model_info",
            "1 for the registered model version being served",
            ["name", "version"],
            registry=self.registry,
        )
        self.snapshot_age = Gauge(
            "churn_snapshot_age_seconds",
            "seconds since the served scored snapshot was written (NaN: none loaded)",
            registry=self.registry,
        )
        self.snapshot_age.set_function(self._age)
        self.snapshot_customers = Gauge(
            "churn_snapshot_customers",
            "customers in the served scored snapshot",
            registry=self.registry,
        )
        self.snapshot_customers.set_function(lambda: float(len(self._snapshot() or ())))

    def _age(self) -> float:
        snapshot = self._snapshot()
        created = _epoch(snapshot.created_at) if snapshot is not None else None
        return float("nan") if created is None else time.time() - created

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def served(self, model: LoadedModel | None) -> None:
        """Record which model version is now being served."""
        self.model_info.clear()
        if model is not None:
            self.model_info.labels(model.name, model.version).set(1)

    def render(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)
