"""End to end, as a user runs it: demo data, train into a temporary MLflow, score, make a key,
start the real server on a free port and ask it for scores over HTTP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.server import run_server, workspace_env

N_CUSTOMERS = 2000


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("e2e")
    return root, workspace_env(root)


@pytest.fixture(scope="module")
def served(workspace):
    root, env = workspace
    data = root / "data"
    steps = [
        [
            "-m",
            "training",
            "data",
            "--out",
            str(data),
            "--customers",
            str(N_CUSTOMERS),
            "--seed",
            "3",
        ],
        ["-m", "training", "train", "--data", str(data)],
        ["-m", "training", "score", "--data", str(data)],
    ]
    outputs = []
    for step in steps:
        done = run(step, env, root)
        assert done.returncode == 0, f"{step}: {done.stderr[-3000:]}"
        outputs.append(done.stdout)
    key = run(["-m", "serving.keys", "create", "--name", "e2e"], env, root)
    assert key.returncode == 0, key.stderr
    api_key = key.stdout.strip().splitlines()[-1]
    with run_server(root, env) as server:
        yield server, api_key, outputs


@pytest.mark.slow  # trains and serves in subprocesses (make test, not test-fast)
def test_train_reports_auc_next_to_the_oracle(served):
    _, _, outputs = served
    assert "registered churn-clv v1" in outputs[1]
    assert "oracle" in outputs[1] and "promoted to champion" in outputs[1]
    assert f"scored {N_CUSTOMERS:,} customers" in outputs[2]


@pytest.mark.slow  # trains and serves in subprocesses (make test, not test-fast)
def test_ready_and_scores_over_http(served):
    server, api_key, _ = served
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    ids = ["C0000001", "no-such-customer", "C0000002"]
    r = httpx.post(
        f"{server.url}/v1/scores", json={"customer_ids": ids}, headers={"X-API-Key": api_key}
    )
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["customer_id"] for x in results] == ids
    assert results[1]["error"] == "unknown_customer"
    for item in (results[0], results[2]):
        assert 0.0 <= item["churn_probability"] <= 1.0
        assert item["risk_band"] in {"low", "medium", "high"}
        assert 0.0 <= item["p_alive"] <= 1.0
        assert item["clv"] >= 0 and item["expected_purchases"] >= 0
        assert item["value_at_risk"] == pytest.approx(item["churn_probability"] * item["clv"])
        assert item["model_version"] == "1"
        for reason in item["top_reasons"]:
            assert reason["text"] and 0 < reason["share"] <= 1


@pytest.mark.slow  # trains and serves in subprocesses (make test, not test-fast)
def test_no_key_is_401(served):
    server, _, _ = served
    r = httpx.post(f"{server.url}/v1/scores", json={"customer_ids": ["C0000001"]})
    assert r.status_code == 401
    assert r.json()["error"] == "unauthorized"


def test_bad_table_exits_2_with_one_line(workspace, tmp_path):
    root, env = workspace
    (tmp_path / "transactions.csv").write_text("customer_id,timestamp\nA,2024-01-01\n")
    done = run(["-m", "training", "train", "--data", str(tmp_path)], env, root)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "transactions.csv" in lines[0] and "'amount'" in lines[0]
