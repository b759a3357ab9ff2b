"""``make monitor`` on the demo generator: real LightGBM, MLflow and scoring, one model for
the module. Clean data raises no alert at the default thresholds; an injected drift (one
support channel's effort scores shifted, or an export that drops a column's values) does."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from pydantic import SecretStr

from models.contract import MONITORING_SUMMARY_KEYS
from tests.server import workspace_env
from tests.training.test_handoff import SECRET, receiver
from training.batch import score
from training.config import TrainSettings
from training.monitor import EVENT, monitor
from training.pipeline import train

pytestmark = pytest.mark.slow

#: Three snapshots: the first one's 90-day horizon has passed by the end of the demo data
#: (2026-07-01), the other two are estimates only.
AS_OFS = ("2026-03-01", "2026-06-01", "2026-07-01")


@dataclass(frozen=True)
class Monitored:
    root: Path
    settings: TrainSettings
    version: str


@pytest.fixture(scope="module")
def monitored(demo_dir: Path, make_settings, tmp_path_factory) -> Monitored:
    root = tmp_path_factory.mktemp("monitor")
    settings = make_settings(root, demo_dir)
    version = train(settings).version
    for as_of in AS_OFS:
        score(settings.model_copy(update={"as_of": as_of}))
    return Monitored(root, settings, version)


def drifted_data(source: Path, target: Path, change) -> Path:
    """A copy of the demo data with ``change(interactions)`` applied to the interactions."""
    shutil.copytree(source, target)
    path = target / "interactions.parquet"
    table = pd.read_parquet(path)
    change(table)
    table.to_parquet(path, index=False)
    return target


def test_clean_data_raises_no_alert_and_the_estimate_tracks_the_realized_auc(
    monitored: Monitored,
) -> None:
    result = monitor(monitored.settings)

    assert result.exit_code == 0 and result.alerts == []
    rows = result.rows
    assert [r["as_of"][:10] for r in rows] == list(AS_OFS)
    assert [r["horizon_passed"] for r in rows] == [True, False, False]
    first = rows[0]
    assert first["realized"]["labelled"] == first["customers"]  # every customer gets a label
    realized, estimated = first["realized"]["roc_auc"], first["estimated"]["roc_auc"]
    assert 0.75 < realized < 1.0
    assert abs(estimated - realized) < 0.03
    bands = first["realized"]["bands"]
    assert bands["high"]["observed"] > bands["medium"]["observed"] > bands["low"]["observed"]
    assert first["realized"]["lost_top_n"] <= monitored.settings.monitor_top_n
    # every snapshot has drift figures against the reference the bundle carries
    for row in rows:
        names = {f["feature"] for f in row["drift"]["features"]}
        assert "recency_days" in names and row["drift"]["psi_max"] < 0.2
        columns = {c["feature"] for c in row["drift"]["columns"]}
        assert "interactions.effort_score[channel=phone]" in columns

    doc = json.loads(result.json_path.read_text())
    assert set(MONITORING_SUMMARY_KEYS) <= doc["summary"].keys()
    assert doc["summary"]["alerts"] == 0
    assert doc["summary"]["realized_auc"] == pytest.approx(realized)
    page = result.report_path.read_text()
    assert page.count("<svg") >= 8 and "<script" not in page and "src='http" not in page

    run = mlflow.MlflowClient(monitored.settings.mlflow_tracking_uri).get_run(result.run_id)
    assert run.data.tags["model_version"] == monitored.version
    assert run.data.tags["kind"] == "monitoring"
    client = mlflow.MlflowClient(monitored.settings.mlflow_tracking_uri)
    history = client.get_metric_history(result.run_id, "monitor.estimated_auc")
    assert len(history) == len(AS_OFS) and len({m.step for m in history}) == len(AS_OFS)
    assert len(client.get_metric_history(result.run_id, "monitor.realized_auc")) == 1
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "monitoring")}
    assert artifacts == {"monitoring/report.html", "monitoring/latest.json"}


def test_a_shifted_support_channel_fires_a_signed_alert(
    monitored: Monitored, demo_dir: Path, tmp_path: Path, caplog
) -> None:
    # four weeks before the newest snapshot, phone effort scores read 3 points harder
    def shift(table: pd.DataFrame) -> None:
        since = (table["channel"] == "phone") & (
            table["timestamp"] >= pd.Timestamp("2026-06-03", tz="UTC")
        )
        table.loc[since, "effort_score"] = (table.loc[since, "effort_score"] + 3).clip(upper=7)

    data = drifted_data(demo_dir, tmp_path / "data", shift)
    settings = monitored.settings.model_copy(
        update={
            "data_dir": data,
            "scores_dir": tmp_path / "scores",
            "notify_log": tmp_path / "deliveries.jsonl",
        }
    )
    score(settings.model_copy(update={"as_of": "2026-07-01"}))

    with receiver() as hook, caplog.at_level(logging.WARNING, logger="training.monitor"):
        configured = settings.model_copy(
            update={"webhook_url": hook.url, "webhook_secret": SecretStr(SECRET)}
        )
        result = monitor(configured)
        again = monitor(configured)

    assert result.exit_code == 3
    fired = {(a["check"], a["subject"]) for a in result.alerts}
    assert ("psi", "interactions.effort_score[channel=phone]") in fired
    assert not any(
        a["subject"].startswith("interactions.effort_score[channel=chat") for a in result.alerts
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("effort_score[channel=phone]" in w for w in warnings)
    # one signed delivery; the same alerts are not delivered twice
    assert again.exit_code == 3
    assert len(hook.seen) == 1 and hook.seen[0]["valid"]
    body = hook.seen[0]["body"]
    assert body["event"] == EVENT and len(body["alerts"]) == len(result.alerts)


def test_a_dropped_column_fires_the_missing_rate_alert_with_exit_code_3(
    monitored: Monitored, demo_dir: Path, tmp_path: Path
) -> None:
    # the export stops carrying effort scores four weeks before the newest snapshot
    def drop(table: pd.DataFrame) -> None:
        table.loc[table["timestamp"] >= pd.Timestamp("2026-06-03", tz="UTC"), "effort_score"] = None

    data = drifted_data(demo_dir, tmp_path / "data", drop)
    env = workspace_env(monitored.root) | {
        "CHURN_DATA_DIR": str(data),
        "CHURN_SCORES_DIR": str(tmp_path / "scores"),
    }
    run = [sys.executable, "-m", "training"]
    scored = subprocess.run(
        [*run, "score", "--as-of", "2026-07-01"], env=env, capture_output=True, text=True
    )
    assert scored.returncode == 0, scored.stderr

    done = subprocess.run([*run, "monitor"], env=env, capture_output=True, text=True)

    assert done.returncode == 3, done.stderr
    assert "WARNING monitoring alert missing_change" in done.stderr
    assert "interactions.effort_score" in done.stderr
    doc = json.loads((tmp_path / "scores" / "monitoring" / "latest.json").read_text())
    checks = {(a["check"], a["subject"]) for a in doc["alerts"]}
    # the column is blank on most rows anyway (usage events): the support tickets show it
    assert (
        "missing_change",
        "interactions.effort_score[interaction_type=support_ticket]",
    ) in checks
    assert doc["summary"]["alerts"] == len(doc["alerts"])


def test_no_snapshot_is_bad_input_with_one_line(tmp_path: Path) -> None:
    env = workspace_env(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "training", "monitor"], env=env, capture_output=True, text=True
    )

    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "run 'make score' first" in done.stderr
    assert "Traceback" not in done.stderr
