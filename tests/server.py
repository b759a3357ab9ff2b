"""Running the real server as a separate process in tests (shared by serving and end-to-end)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

REPO_ROOT = Path(__file__).resolve().parents[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without project or MLflow settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHURN_", "MLFLOW_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return {**env, **extra}


def workspace_env(root: Path) -> dict[str, str]:
    """A clean environment whose MLflow store, scores, quarantine, API keys and model cache
    all live under ``root``."""
    return clean_env(
        MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
        CHURN_MLFLOW_ARTIFACT_ROOT=str(root / "mlartifacts"),
        CHURN_SCORES_DIR=str(root / "scores"),
        CHURN_QUARANTINE_DIR=str(root / "quarantine"),
        CHURN_API_KEYS_FILE=str(root / "keys.json"),
        CHURN_MODEL_CACHE_DIR=str(root / "cache"),
    )


def serving_env(
    tracking_uri: str, scores_dir: Path, keys_file: Path, workdir: Path, **extra: str
) -> dict[str, str]:
    """The settings of a test's ``python -m serving``: the MLflow registry at
    ``tracking_uri``, snapshots in ``scores_dir``, the key store ``keys_file``, a model cache
    in ``workdir``, plus ``extra`` (``CHURN_*`` names)."""
    return {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "CHURN_SCORES_DIR": str(scores_dir),
        "CHURN_API_KEYS_FILE": str(keys_file),
        "CHURN_MODEL_CACHE_DIR": str(workdir / "cache"),
        **extra,
    }


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running ``python -m serving`` process."""

    url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextmanager
def run_server(workdir: Path, env: dict[str, str], *, timeout: float = 30.0) -> Iterator[Server]:
    """Start the server on a free port with ``env`` added to a clean environment, wait until
    ``/healthz`` answers, and stop it afterwards."""
    port = free_port()
    clean = clean_env()
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving", "--port", str(port)],
            cwd=workdir,
            env={**clean, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", log_path, process)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}:\n{server.log()}")
            try:
                if httpx.get(f"{server.url}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server did not answer /healthz in {timeout} s:\n{server.log()}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def serve_in_thread(config: uvicorn.Config, *, timeout: float = 30.0) -> Iterator[uvicorn.Server]:
    """A real uvicorn server on ``config`` in a thread of this process (so a test can look
    inside the app or its protocol), started before the block and stopped after it."""
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)
