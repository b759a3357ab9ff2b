"""Reloading under load, refusing a tampered model, and graceful shutdown, each against its
own server process (they change or end the server's state)."""

from __future__ import annotations

import json
import math
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


class HeldRequest:
    """A POST held open on the server: sent with ``Expect: 100-continue`` and without its body.

    The server answers ``100 Continue`` only once the app asks for the body, so when the
    constructor returns the request is in flight on the server side (routed, its handler
    waiting for the body) for as long as the test likes; :meth:`finish` sends the body and
    reads the answer.
    """

    def __init__(self, url: str, path: str, key: str, body: dict[str, object]) -> None:
        address = httpx.URL(url)
        host, port = address.host, address.port
        assert port is not None
        self.body = json.dumps(body).encode()
        self.sock = socket.create_connection((host, port), timeout=60)
        self.reader = self.sock.makefile("rb")
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nX-API-Key: {key}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(self.body)}\r\nExpect: 100-continue\r\n\r\n"
        )
        self.sock.sendall(head.encode())
        interim = self.reader.readline()
        assert interim.startswith(b"HTTP/1.1 100 "), interim
        assert self.reader.readline() == b"\r\n"

    def finish(self) -> tuple[int, dict[str, Any]]:
        """Send the body; the final status and JSON answer."""
        try:
            self.sock.sendall(self.body)
            status = int(self.reader.readline().split()[1])
            headers = {}
            while (line := self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            answer = json.loads(self.reader.read(int(headers["content-length"])))
        finally:
            self.reader.close()
            self.sock.close()
        return status, answer


def wait_for_log(server: Server, text: str, timeout: float = 30.0) -> None:
    """Return once the server's log holds ``text`` (the server's own report of an event)."""
    deadline = time.monotonic() + timeout
    while text not in server.log():
        assert server.process.poll() is None or text in server.log(), server.log()
        assert time.monotonic() < deadline, f"no {text!r} in the server log:\n{server.log()}"
        time.sleep(0.02)


@dataclass(frozen=True)
class Answer:
    """One request of the load: when it was sent and answered (monotonic s), what came back."""

    kind: str
    sent: float
    answered: float
    status: int
    version: str | None


def test_reload_under_load_drops_nothing(
    registry: Registry, bundle_dir: BundleDir, trained: Trained, api_keys: Keys, tmp_path: Path
) -> None:
    name = "reload-under-load"
    old = publish_with_snapshot(name, registry, bundle_dir, trained, tmp_path / "scores")
    predict_body = {"customers": [history_of("C00010")]}
    kinds = ("scores", "scores", "predict")
    answers: list[Answer] = []
    failures: list[str] = []
    lock = threading.Condition()
    stop = threading.Event()
    reload_sent = reload_returned = math.inf

    def count(since: float) -> int:
        """Fewest requests any load thread had sent after ``since`` and had answered."""
        per = {i: 0 for i in range(len(kinds))}
        for a in answers:
            per[int(a.kind.split(":")[0])] += a.sent > since
        return min(per.values())

    def load(i: int, kind: str, url: str) -> None:
        with httpx.Client(base_url=url, headers={"X-API-Key": api_keys.key}, timeout=30) as c:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    if kind == "scores":
                        r = c.post("/v1/scores", json={"customer_ids": ["C00001", "C00002"]})
                    else:
                        r = c.post("/v1/predict", json=predict_body)
                except httpx.HTTPError as exc:
                    failures.append(f"{kind}: {type(exc).__name__}")
                    stop.set()
                    break
                version = r.json().get("model_version") if r.status_code == 200 else None
                with lock:
                    answers.append(
                        Answer(f"{i}:{kind}", sent, time.monotonic(), r.status_code, version)
                    )
                    lock.notify_all()

    # A queue timeout well above a loaded test machine's scheduling pauses: what may not
    # refuse anything here is the reload (its stall is left out of every wait whatever the
    # timeout; test_overload.py checks that against a 200 ms one), not the machine.
    with serving(name, registry, api_keys, tmp_path, CHURN_QUEUE_TIMEOUT_MS="500") as (
        server,
        scores,
    ):
        threads = [
            threading.Thread(target=load, args=(i, kind, server.url))
            for i, kind in enumerate(kinds)
        ]
        for t in threads:
            t.start()
        try:
            # Every load thread has been answered a few times by the old model ...
            with lock:
                assert lock.wait_for(lambda: stop.is_set() or count(-math.inf) >= 3, timeout=120)
            new = publish_with_snapshot(name, registry, bundle_dir, trained, scores)
            # ... a request the server has read the headers of stays open across the reload ...
            held = HeldRequest(server.url, "/v1/predict", api_keys.key, predict_body)
            reload_sent = time.monotonic()
            reload = httpx.post(
                f"{server.url}/v1/admin/reload", headers={"X-API-Key": api_keys.admin}, timeout=60
            )
            reload_returned = time.monotonic()
            held_status, held_answer = held.finish()
            # ... and every load thread is answered a few times more after the reload returned.
            with lock:
                assert lock.wait_for(
                    lambda: stop.is_set() or count(reload_returned) >= 3, timeout=120
                )
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)

        assert failures == []
        assert reload.status_code == 200, reload.text
        assert reload.json() == {
            "status": "reloaded",
            "previous_model_version": old,
            "model_version": new,
            "snapshot_model_version": new,
        }
        assert {a.status for a in answers} == {200}
        before = [a.version for a in answers if a.answered < reload_sent]
        after = [a.version for a in answers if a.sent > reload_returned]
        assert len(before) >= 9 and set(before) == {old}
        assert len(after) >= 9 and set(after) == {new}
        assert {a.version for a in answers} <= {old, new}
        # The held request's body arrived after the reload: the new model answered it.
        assert held_status == 200, held_answer
        assert [r["customer_id"] for r in held_answer["results"]] == ["C00010"]
        assert held_answer["results"][0]["model_version"] == new
        model = httpx.get(f"{server.url}/v1/model", headers={"X-API-Key": api_keys.key}).json()
        assert model["version"] == new and model["snapshot"]["model_version"] == new
        assert metric(server, r'^churn_model_reloads_total\{outcome="success"\} (\S+)$') == 1
        # Nothing was refused (the reload's stall counts against no request's queue wait).
        rejected = re.findall(
            r'^churn_rejected_requests_total\{reason="([^"]+)"\} (\S+)$',
            httpx.get(f"{server.url}/metrics").text,
            re.M,
        )
        assert [reason for reason, value in rejected if float(value)] == []
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
    ids = [f"C{i:05d}" for i in range(100)]
    body: dict[str, object] = {"customers": [history_of(c) for c in ids]}

    with serving(name, registry, api_keys, tmp_path) as (server, _):
        held = HeldRequest(server.url, "/v1/predict", api_keys.key, body)
        server.process.send_signal(signal.SIGTERM)
        # uvicorn has stopped listening and waits for the held request's connection
        wait_for_log(server, "Waiting for connections to close")
        assert server.process.poll() is None
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/healthz", timeout=5)
        status, answer = held.finish()
        code = server.process.wait(timeout=30)

    assert status == 200, answer
    assert sorted(r["customer_id"] for r in answer["results"]) == ids
    # Uvicorn re-raises the signal once shut down, so the exit status says "SIGTERM".
    assert code in (0, -signal.SIGTERM)
    assert "Traceback" not in server.log()
