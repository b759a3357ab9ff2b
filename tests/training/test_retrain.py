"""``make retrain``: the exit codes against a real server's reload route, and the lock."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from serving.auth import create_key
from tests.server import clean_env, run_server, workspace_env
from training import tracking
from training.__main__ import main
from training.config import SettingsError, TrainSettings
from training.demo_data import write_demo_data
from training.retrain import (
    EXIT_ALERTS,
    EXIT_BAD_INPUT,
    EXIT_LOCKED,
    EXIT_NOT_PROMOTED,
    EXIT_OK,
    EXIT_RELOAD_FAILED,
    LockedError,
    Loop,
    RetrainResult,
    admin_key,
    exclusive_lock,
    retrain,
)
from training.simulate import cheap_train

#: Thresholds no snapshot crosses: the exit code then says what the gate and reload did.
LENIENT: dict[str, Any] = {
    "monitor_psi_max": 1e6,
    "monitor_missing_change": 1.0,
    "monitor_share_change": 1.0,
    "monitor_rows_change": 1e6,
    "monitor_quarantine_rate": 1.0,
    "monitor_auc_drop": 0.99,
    "monitor_estimated_auc_drop": 0.99,
    "monitor_ece_max": 0.99,
}


def test_the_exit_code_is_the_most_urgent_outcome() -> None:
    done = RetrainResult(version="3", promoted=True, reload="reloaded: serving v3")
    assert done.exit_code == EXIT_OK
    assert RetrainResult(promoted=False, reload="skipped").exit_code == EXIT_NOT_PROMOTED
    alerts = [{"check": "psi"}]
    assert RetrainResult(promoted=False, alerts=alerts).exit_code == EXIT_ALERTS
    failed = RetrainResult(promoted=False, alerts=alerts, reload="failed: HTTP 503")
    assert failed.exit_code == EXIT_RELOAD_FAILED


def test_the_admin_key_comes_from_the_setting_or_the_first_line_of_its_file(
    tmp_path: Path,
) -> None:
    (tmp_path / "key.txt").write_text("\nck_abc\nignored\n")
    assert admin_key(TrainSettings(admin_key_file=tmp_path / "key.txt")) == "ck_abc"
    assert admin_key(TrainSettings(admin_key="ck_env", admin_key_file=None)) == "ck_env"
    with pytest.raises(SettingsError, match="CHURN_ADMIN_KEY_FILE"):
        admin_key(TrainSettings(admin_key_file=tmp_path / "missing.txt"))


def test_a_second_lock_on_the_same_file_is_refused_until_the_first_is_released(
    tmp_path: Path,
) -> None:
    path = tmp_path / "var" / "retrain.lock"
    with exclusive_lock(path):
        second = exclusive_lock(path)
        with pytest.raises(LockedError, match=f"pid {os.getpid()}"):
            second.__enter__()
    with exclusive_lock(path):  # released: taken again at once
        pass


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("retrain") / "data"
    write_demo_data(folder, n_customers=2_000, seed=5)
    return folder


def settings_for(root: Path, data: Path, **values: Any) -> TrainSettings:
    """The settings of a workspace under ``root``, the same places the server reads."""
    defaults: dict[str, Any] = {
        "scores_dir": root / "scores",
        "quarantine_dir": root / "quarantine",
        "mlflow_tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
        "mlflow_artifact_root": root / "mlartifacts",
        "retrain_lock": root / "retrain.lock",
        "notify_log": root / "notify.jsonl",
        "webhook_url": None,
        "server_url": None,
    }
    return TrainSettings(data_dir=data, **{**defaults, **values})


def served(url: str, key: str) -> dict[str, Any]:
    answer = httpx.get(f"{url}/v1/model", headers={"X-API-Key": key}, timeout=30)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


@pytest.mark.slow
def test_exit_codes_with_a_real_server_reload(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    root = tmp_path
    key = create_key(root / "keys.json", "retrain", admin=True)
    reader = create_key(root / "keys.json", "crm")
    (root / "admin-key.txt").write_text(key + "\n")
    loop = Loop(train=cheap_train)
    with run_server(root, workspace_env(root), timeout=120) as server:
        live = {"server_url": server.url, "admin_key_file": root / "admin-key.txt"}

        # 0: promoted (no champion yet), scored, the server reloaded it, no alert
        first = retrain(settings_for(root, data, **live, **LENIENT), loop)
        assert first.exit_code == EXIT_OK, first.line()
        assert first.promoted and first.reload.startswith("reloaded")
        model = served(server.url, key)
        assert model["version"] == first.version
        assert model["snapshot"]["model_version"] == first.version

        # 4: the data lacks a column the champion was trained on, so the gate holds the new
        # version back; the snapshot is scored with the champion and reloaded all the same
        held = root / "data-without-plan"
        held.mkdir()
        for table in ("transactions", "interactions", "surveys"):
            (held / f"{table}.parquet").write_bytes((data / f"{table}.parquet").read_bytes())
        customers = pd.read_parquet(data / "customers.parquet").drop(columns=["plan"])
        customers.to_parquet(held / "customers.parquet", index=False)
        second = retrain(settings_for(root, held, **live, **LENIENT), loop)
        assert second.exit_code == EXIT_NOT_PROMOTED, second.line()
        assert "needs features the data lacks" in second.gate_reason
        assert second.version != first.version
        assert second.scored_version == first.version
        assert tracking.champion_version(settings_for(root, data)) == first.version
        assert served(server.url, key)["version"] == first.version

        # 3: everything ran, and a threshold no snapshot can meet fires
        strict = retrain(settings_for(root, data, **live, monitor_psi_max=1e-9), loop)
        assert strict.exit_code == EXIT_ALERTS, strict.line()
        assert strict.promoted and {a["check"] for a in strict.alerts} >= {"psi"}
        assert served(server.url, key)["version"] == strict.version

        # 6: a key without the admin scope: the champion moved, the server keeps serving
        # the version it had
        (root / "reader-key.txt").write_text(reader)
        wrong = {"server_url": server.url, "admin_key_file": root / "reader-key.txt"}
        refused = retrain(settings_for(root, data, **wrong, **LENIENT), loop)
        assert refused.exit_code == EXIT_RELOAD_FAILED, refused.line()
        assert refused.reload.startswith("failed") and "403" in refused.reload
        assert refused.promoted
        assert served(server.url, key)["version"] == strict.version

    # 2: bad input, through the command line: nothing trained, nothing written
    for name, value in workspace_env(root).items():
        if name.startswith(("CHURN_", "MLFLOW_")):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("CHURN_RETRAIN_LOCK", str(root / "retrain.lock"))
    before = sorted(p.name for p in (root / "scores" / "history").iterdir())
    assert main(["retrain", "--data", str(root / "no-such-folder")]) == EXIT_BAD_INPUT
    assert sorted(p.name for p in (root / "scores" / "history").iterdir()) == before


@pytest.mark.slow
def test_a_second_run_while_one_holds_the_lock_exits_5_and_changes_nothing(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    holding, release = threading.Event(), threading.Event()

    def train_when_released(settings: TrainSettings) -> Any:
        holding.set()  # called under the lock
        assert release.wait(120), "the test never released the first run"
        return cheap_train(settings)

    settings = settings_for(tmp_path, data, **LENIENT)
    results: list[RetrainResult] = []
    first = threading.Thread(
        target=lambda: results.append(retrain(settings, Loop(train=train_when_released)))
    )
    first.start()
    try:
        assert holding.wait(120), "the first run never took the lock"
        env = clean_env(
            **{k: v for k, v in workspace_env(tmp_path).items() if k.startswith("CHURN_")},
            MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
            CHURN_RETRAIN_LOCK=str(tmp_path / "retrain.lock"),
            CHURN_DATA_DIR=str(data),
        )
        second = subprocess.run(
            [sys.executable, "-m", "training", "retrain"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        release.set()
        first.join(timeout=600)
    assert second.returncode == EXIT_LOCKED, second.stderr
    assert "another retrain is running" in second.stderr
    assert f"pid {os.getpid()}" in second.stderr
    assert "Traceback" not in second.stderr
    assert results and results[0].exit_code == EXIT_OK, results and results[0].line()
    # the one snapshot is the first run's: the second wrote nothing
    assert len(list((tmp_path / "scores" / "history").iterdir())) == 1
