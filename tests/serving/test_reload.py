"""Reloading under load, refusing a tampered model, and graceful shutdown, each against its
own server process (they change or end the server's state)."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import (
    BundleDir,
    Keys,
    Registry,
    Server,
    Trained,
    run_server,
    write_snapshot,
)
from tests.serving.test_routes import history_of

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings(
        "ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning"
    ),
]


@contextmanager
def serving(
    name: str, registry: Registry, api_keys: Keys, tmp_path: Path, **env: str
) -> Iterator[tuple[Server, Path]]:
    """A server for model ``name`` with its own snapshot folder (returned alongside)."""
    scores = tmp_path / "scores"
    settings = {
        "MLFLOW_TRACKING_URI": registry.uri,
        "CHURN_MODEL_NAME": name,
        "CHURN_SCORES_DIR": str(scores),
        "CHURN_API_KEYS_FILE": str(api_keys.path),
        "CHURN_MODEL_CACHE_DIR": str(tmp_path / "cache"),
        **env,
    }
    with run_server(tmp_path, settings) as server:
        yield server, scores


def publish_with_snapshot(
    name: str, registry: Registry, bundle_dir: BundleDir, trained: Trained, scores: Path
) -> str:
    version = registry.publish(bundle_dir, name)
    write_snapshot(scores, trained, version=version)
    return version


def metric(server: Server, pattern: str) -> float:
    found = re.search(pattern, httpx.get(f"{server.url}/metrics").text, re.M)
    assert found, pattern
    return float(found.group(1))


def test_reload_under_load_drops_nothing(
    registry: Registry, bundle_dir: BundleDir, trained: Trained, api_keys: Keys, tmp_path: Path
) -> None:
    name = "reload-under-load"
    old = publish_with_snapshot(name, registry, bundle_dir, trained, tmp_path / "scores")
    predict_body = {"customers": [history_of("C00010")]}
    results: list[tuple[float, int, str | None]] = []  # (start time, status, model_version)
    failures: list[str] = []
    stop = threading.Event()

    def load(kind: str, url: str) -> None:
        with httpx.Client(base_url=url, headers={"X-API-Key": api_keys.key}, timeout=30) as c:
            while not stop.is_set():
                start = time.monotonic()
                try:
                    if kind == "scores":
                        r = c.post("/v1/scores", json={"customer_ids": ["C00001", "C00002"]})
                    else:
                        r = c.post("/v1/predict", json=predict_body)
                except httpx.HTTPError as exc:
                    failures.append(f"{kind}: {type(exc).__name__}")
                    continue
                version = r.json().get("model_version") if r.status_code == 200 else None
                results.append((start, r.status_code, version))

    with serving(name, registry, api_keys, tmp_path) as (server, scores):
        threads = [
            threading.Thread(target=load, args=(kind, server.url))
            for kind in ("scores", "scores", "predict")
        ]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            new = publish_with_snapshot(name, registry, bundle_dir, trained, scores)
            reload = httpx.post(
                f"{server.url}/v1/admin/reload", headers={"X-API-Key": api_keys.admin}, timeout=60
            )
            reloaded_at = time.monotonic()
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)

        assert reload.status_code == 200, reload.text
        assert reload.json() == {
            "status": "reloaded",
            "previous_model_version": old,
            "model_version": new,
            "snapshot_model_version": new,
        }
        assert failures == []
        assert len(results) > 20
        assert all(status == 200 for _, status, _ in results), {s for _, s, _ in results}
        assert {v for _, _, v in results} <= {old, new}
        assert {v for _, _, v in results} == {old, new}, "load must span the reload"
        assert all(v == new for start, _, v in results if start > reloaded_at)
        model = httpx.get(f"{server.url}/v1/model", headers={"X-API-Key": api_keys.key}).json()
        assert model["version"] == new and model["snapshot"]["model_version"] == new
        assert metric(server, r'^churn_model_reloads_total\{outcome="success"\} (\S+)$') == 1
        assert metric(server, rf'^churn_model_info\{{name="{name}",version="{new}"\}} (\S+)$') == 1


def test_tampered_model_is_refused_and_the_old_one_keeps_serving(
    registry: Registry, bundle_dir: BundleDir, trained: Trained, api_keys: Keys, tmp_path: Path
) -> None:
    name = "reload-tampered"
    old = publish_with_snapshot(name, registry, bundle_dir, trained, tmp_path / "scores")
    with serving(name, registry, api_keys, tmp_path) as (server, _):
        new = registry.publish(bundle_dir, name)
        target = registry.files(name, new) / "model.lgb"
        target.write_text(target.read_text(encoding="utf-8").replace("0", "1", 1), "utf-8")

        reload = httpx.post(
            f"{server.url}/v1/admin/reload", headers={"X-API-Key": api_keys.admin}, timeout=60
        )
        model = httpx.get(f"{server.url}/v1/model", headers={"X-API-Key": api_keys.key})
        scores = httpx.post(
            f"{server.url}/v1/scores",
            json={"customer_ids": ["C00001"]},
            headers={"X-API-Key": api_keys.key},
        )

        assert reload.status_code == 503, reload.text
        body = reload.json()
        assert body["error"] == "reload_failed" and body["serving_model_version"] == old
        assert body["checks"]["model"] == "untrusted_model"
        assert model.json()["version"] == old
        assert scores.status_code == 200 and scores.json()["model_version"] == old
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        assert metric(server, r'^churn_model_reloads_total\{outcome="failure"\} (\S+)$') == 1
        assert f"still serving model version {old}" in server.log()
        assert "Traceback" not in reload.text


def test_sigterm_lets_the_request_in_flight_finish(
    registry: Registry, bundle_dir: BundleDir, trained: Trained, api_keys: Keys, tmp_path: Path
) -> None:
    name = "graceful-shutdown"
    publish_with_snapshot(name, registry, bundle_dir, trained, tmp_path / "scores")
    # A request that takes a while: 100 customers' histories through the feature code.
    body = {"customers": [history_of(f"C{i:05d}") for i in range(100)]}
    outcome: dict[str, object] = {}

    def call(url: str) -> None:
        try:
            outcome["response"] = httpx.post(
                f"{url}/v1/predict", json=body, headers={"X-API-Key": api_keys.key}, timeout=60
            )
        except httpx.HTTPError as exc:
            outcome["error"] = exc

    with serving(name, registry, api_keys, tmp_path) as (server, _):
        started = time.monotonic()
        thread = threading.Thread(target=call, args=(server.url,))
        thread.start()
        time.sleep(0.15)  # the request is being processed
        server.process.send_signal(signal.SIGTERM)
        thread.join(timeout=60)
        code = server.process.wait(timeout=30)

        assert "error" not in outcome, outcome
        response = outcome["response"]
        assert isinstance(response, httpx.Response)
        assert response.status_code == 200, response.text
        assert len(response.json()["results"]) == 100
        # Uvicorn re-raises the signal once shut down, so the exit status says "SIGTERM".
        assert code in (0, -signal.SIGTERM)
        # The answer came after the signal: the server waited for it rather than racing it.
        assert time.monotonic() - started > 0.15
        assert "Waiting for" in server.log() or "Shutting down" in server.log()
