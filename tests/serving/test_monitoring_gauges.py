"""The server's /metrics shows make monitor's summary (serving/monitoring.py), read from
``<scores_dir>/monitoring/latest.json`` when it changes, with no reload."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from models.contract import MONITORING_DIR, MONITORING_FILE
from serving.metrics import Metrics
from tests.server import Server
from tests.serving.conftest import ScoresDir


def summary(**values: object) -> dict:
    base = {
        "model_version": "3",
        "realized_auc": 0.871,
        "realized_as_of": "2026-03-01T00:00:00Z",
        "realized_model_version": "2",
        "estimated_auc": 0.902,
        "estimated_as_of": "2026-07-01T00:00:00Z",
        "estimated_model_version": "3",
        "psi_max": 0.31,
        "missing_change_max": -0.04,
        "alerts": 2,
    }
    return {"generated_at": "2026-07-01T06:00:00Z", "summary": base | values}


def write(path: Path, doc: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def gauge(text: str, name: str, labels: str = "") -> float | None:
    found = re.search(rf"^{name}{re.escape(labels)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


@pytest.fixture()
def monitoring_file(scores_dir: ScoresDir) -> Iterator[Path]:
    path = scores_dir.path / MONITORING_DIR / MONITORING_FILE
    yield path
    path.unlink(missing_ok=True)


def test_the_running_server_shows_the_monitoring_gauges_once_the_file_exists(
    server: Server, monitoring_file: Path
) -> None:
    before = httpx.get(f"{server.url}/metrics").text
    assert gauge(before, "churn_monitor_alerts") is None

    write(monitoring_file, summary())
    text = httpx.get(f"{server.url}/metrics").text

    assert gauge(text, "churn_realized_auc", '{model_version="2"}') == pytest.approx(0.871)
    assert gauge(text, "churn_estimated_auc", '{model_version="3"}') == pytest.approx(0.902)
    assert gauge(text, "churn_drift_psi_max") == pytest.approx(0.31)
    assert gauge(text, "churn_monitor_alerts") == 2

    write(monitoring_file, summary(alerts=0, realized_auc=None))  # the next make monitor
    text = httpx.get(f"{server.url}/metrics").text
    assert gauge(text, "churn_monitor_alerts") == 0
    assert gauge(text, "churn_realized_auc", '{model_version="2"}') is None


def test_a_damaged_file_hides_the_gauges_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / MONITORING_FILE
    metrics = Metrics(lambda: None, path)
    write(path, summary())
    assert gauge(metrics.render().decode(), "churn_monitor_alerts") == 2

    path.write_text("{not json")
    text = metrics.render().decode()

    assert gauge(text, "churn_monitor_alerts") is None
    assert "churn_snapshot_customers" in text
