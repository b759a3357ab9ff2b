"""What a data scientist meets in the MLflow UI after ``make train``: run names, the
experiment's kind, version descriptions, and runs a dead process left RUNNING (real MLflow,
sqlite in a temp folder, a real training run on the small demo data)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from mlflow import MlflowClient

from training import tracking
from training.pipeline import train


def _dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_dir, make_settings):
    """An experiment made by hand (no tags) holding three RUNNING runs: one of a dead process
    on this host, one of this live process, one two days old from another host; then one
    training run."""
    root = tmp_path_factory.mktemp("tracking")
    settings = make_settings(root, demo_dir)
    # registry_uri too: without it the client reads the process-wide registry, which an earlier
    # test in the session may have pointed at its own store
    client = MlflowClient(settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)
    exp_id = client.create_experiment(
        settings.experiment_name, artifact_location=settings.mlflow_artifact_root.as_uri()
    )
    host = socket.gethostname()
    two_days_ago_ms = int((time.time() - 2 * 86400) * 1000)
    runs = {
        "dead": client.create_run(
            exp_id, tags={tracking.PID_TAG: str(_dead_pid()), tracking.HOST_TAG: host}
        ),
        "alive": client.create_run(
            exp_id, tags={tracking.PID_TAG: str(os.getpid()), tracking.HOST_TAG: host}
        ),
        "old": client.create_run(
            exp_id,
            start_time=two_days_ago_ms,
            tags={tracking.PID_TAG: "1", tracking.HOST_TAG: "elsewhere.example"},
        ),
    }
    result = train(settings)
    return settings, client, exp_id, {k: r.info.run_id for k, r in runs.items()}, result


def test_default_run_name_says_data_horizon_and_time(tmp_path, make_settings):
    settings = make_settings(tmp_path, tmp_path / "demo", horizon_days=60)
    name = tracking.default_run_name(settings, now=datetime(2026, 12, 1, 21, 30, 59, tzinfo=UTC))
    assert name == "demo h60 2026-12-01 21:30"
    dask = make_settings(tmp_path, tmp_path / "crm", engine="dask")
    assert tracking.default_run_name(dask, now=datetime(2026, 1, 2, 3, 4, tzinfo=UTC)) == (
        "crm h90 dask 2026-01-02 03:04"
    )
    at = datetime(2026, 12, 4, 19, 5, tzinfo=UTC)
    scored = tracking.default_run_name(settings, now=at, kind="score v3")
    assert scored == "demo h60 score v3 2026-12-04 19:05"


@pytest.mark.slow  # the module's training run (make test, not test-fast)
def test_training_run_is_named_and_records_its_process(trained):
    settings, client, _, _, result = trained
    run = client.get_run(result.run_id)
    assert run.info.run_name.startswith(f"{settings.data_dir.name} h{settings.horizon_days} ")
    started = datetime.fromtimestamp(run.info.start_time / 1000, UTC)
    assert run.info.run_name.endswith(f"{started:%Y-%m-%d %H:%M}")
    assert run.data.tags[tracking.HOST_TAG] == socket.gethostname()
    assert run.data.tags[tracking.PID_TAG] == str(os.getpid())
    assert run.info.status == "FINISHED"


@pytest.mark.slow  # the module's training run (make test, not test-fast)
def test_existing_experiment_is_set_up_for_model_training(trained):
    _, client, exp_id, _, _ = trained
    tags = client.get_experiment(exp_id).tags
    assert tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    assert "valid.roc_auc" in tags[tracking.NOTE_TAG]


def test_new_experiment_is_created_as_model_training(tmp_path, make_settings):
    settings = make_settings(tmp_path, tmp_path / "data")
    exp_id = tracking._experiment_id(settings)
    tags = MlflowClient(settings.mlflow_tracking_uri).get_experiment(exp_id).tags
    assert tags[tracking.EXPERIMENT_KIND_TAG] == tracking.EXPERIMENT_KIND


@pytest.mark.slow  # the module's training run (make test, not test-fast)
def test_version_and_model_have_descriptions(trained):
    settings, client, _, _, result = trained
    mv = client.get_model_version(settings.model_name, result.version)
    text = mv.description
    assert settings.data_dir.name in text
    assert f"{result.metrics['valid.roc_auc']:.4f}" in text
    assert f"{result.metrics['baseline.logistic.roc_auc']:.4f}" in text
    assert f"{result.metrics['baseline.bgnbd.roc_auc']:.4f}" in text
    assert result.gate_reason in text and "promoted to `champion`" in text
    assert client.get_run(result.run_id).data.tags[tracking.NOTE_TAG] == text
    assert "champion" in client.get_registered_model(settings.model_name).description


@pytest.mark.slow  # the module's training run (make test, not test-fast)
def test_runs_left_running_by_a_dead_process_are_marked_failed(trained):
    _, client, _, runs, _ = trained
    dead, alive, old = (client.get_run(runs[k]) for k in ("dead", "alive", "old"))
    assert dead.info.status == "FAILED"
    assert "ended without closing the run" in dead.data.tags[tracking.FAILED_REASON_TAG]
    assert old.info.status == "FAILED"
    assert "taken as abandoned" in old.data.tags[tracking.FAILED_REASON_TAG]
    assert alive.info.status == "RUNNING"
    assert tracking.FAILED_REASON_TAG not in alive.data.tags
