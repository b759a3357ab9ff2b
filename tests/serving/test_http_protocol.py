"""``POST /v1/scores`` over raw HTTP/1.1 in a real uvicorn server on 127.0.0.1, configured as
``python -m serving`` configures it (serving/__main__.py ``server_config``) and run in a
thread of this process, so that a test can ask the server what it is doing (requests in
flight) instead of sleeping. There is one path for the route: uvicorn's own protocol, the
app's middlewares, the FastAPI route; these tests pin what a client sees of it."""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn

from serving.__main__ import server_config
from serving.config import Settings
from tests.server import free_port, serve_in_thread
from tests.serving.conftest import MARKER, Keys, Registry, ScoresDir

pytestmark = pytest.mark.slow

MAX_BODY = 4096


@dataclass
class Running:
    """A uvicorn server as ``python -m serving`` builds it."""

    port: int
    server: uvicorn.Server


@pytest.fixture()
def running(
    registry: Registry, champion: str, scores_dir: ScoresDir, api_keys: Keys, tmp_path: Any
) -> Iterator[Running]:
    settings = Settings(
        mlflow_tracking_uri=registry.uri,
        model_cache_dir=tmp_path / "cache",
        scores_dir=scores_dir.path,
        api_keys_file=api_keys.path,
        max_body_bytes=MAX_BODY,
    )
    port = free_port()
    config = server_config(settings, port=port)  # as ``python -m serving`` builds it
    with serve_in_thread(config) as server:
        yield Running(port, server)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture()
def access_log(running: Running) -> Iterator[list[str]]:
    """The access-log lines written while the test runs (the ``serving`` loggers do not
    propagate to pytest's capture: ``python -m serving`` gives them uvicorn's handler)."""
    handler = _Lines()
    logger = logging.getLogger("serving.access")
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Return as soon as ``condition()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def refuses_connections(port: int) -> bool:
    """Whether nothing listens on ``port`` any more (the server stopped accepting)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def request(
    body: bytes,
    key: str,
    *,
    target: str = "/v1/scores",
    content_type: str = "application/json",
    extra: str = "",
) -> bytes:
    """A raw HTTP/1.1 POST with a Content-Length."""
    head = (
        f"POST {target} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
        f"X-API-Key: {key}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


def read_responses(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """``count`` responses (status, headers, body) read from ``sock``, in order."""
    buffer = b""
    responses = []
    while len(responses) < count:
        while b"\r\n\r\n" not in buffer or len(buffer) < _total(buffer):
            data = sock.recv(65536)
            assert data, f"connection closed after {len(responses)} responses"
            buffer += data
        total = _total(buffer)
        head, body = buffer[:total].split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        responses.append((int(lines[0].split()[1]), headers, body))
        buffer = buffer[total:]
    return responses


def _total(buffer: bytes) -> int:
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return len(buffer) + 1
    length = next(
        int(line.split(b":")[1])
        for line in buffer[:end].split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return end + 4 + length


def exchange(port: int, payload: bytes, count: int = 1) -> list[tuple[int, dict[str, str], bytes]]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        return read_responses(sock, count)


def ids_body(ids: list[str]) -> bytes:
    return json.dumps({"customer_ids": ids}).encode()


def test_scores_answer_is_the_snapshots_bytes_whatever_the_json_content_type(
    running: Running, scores_dir: ScoresDir, api_keys: Keys
) -> None:
    ids = [*scores_dir.rows.index[:2], "NO-SUCH-CUSTOMER"]
    body = ids_body(ids)

    [(status, headers, plain)] = exchange(running.port, request(body, api_keys.key))
    [(charset_status, charset_headers, charset)] = exchange(
        running.port, request(body, api_keys.key, content_type="application/json; charset=utf-8")
    )

    assert (status, charset_status) == (200, 200)
    assert plain == charset
    results = json.loads(plain)["results"]
    assert [r["customer_id"] for r in results] == ids
    assert results[2] == {"customer_id": "NO-SUCH-CUSTOMER", "error": "unknown_customer"}
    for i, cid in enumerate(ids[:2]):
        assert results[i]["churn_probability"] == pytest.approx(
            scores_dir.rows.loc[cid, "churn_probability"]
        )
    assert headers.keys() == charset_headers.keys() == {"date", "content-length", "content-type"}
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(plain)


def test_scores_requests_are_logged_and_counted_by_the_middlewares(
    running: Running, scores_dir: ScoresDir, api_keys: Keys, access_log: list[str]
) -> None:
    customer = scores_dir.rows.index[0]
    payload = request(ids_body([customer]), api_keys.key) * 3
    payload += request(ids_body([customer]), "ck_" + MARKER)

    statuses = [status for status, _, _ in exchange(running.port, payload, count=4)]
    metrics = exchange(running.port, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")[0][2]

    assert statuses == [200, 200, 200, 401]
    counted = {
        status: float(value)
        for status, value in re.findall(
            rb'churn_http_requests_total\{method="POST",route="/v1/scores",status="(\d+)"\} (\S+)',
            metrics,
        )
    }
    assert counted == {b"200": 3.0, b"401": 1.0}
    assert sum(line.startswith("POST /v1/scores 200 ") for line in access_log) == 3
    assert sum(line.startswith("POST /v1/scores 401 ") for line in access_log) == 1
    assert not any(customer in line or MARKER in line for line in access_log)


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("wrong key", 401),
        ("invalid body", 422),
        ("not json", 422),
        ("query string", 422),
        ("body over the limit", 413),
    ],
)
def test_scores_errors_are_json_without_the_input(
    running: Running, api_keys: Keys, case: str, status: int
) -> None:
    key, body, target = api_keys.key, ids_body(["NO-SUCH-CUSTOMER"]), "/v1/scores"
    if case == "wrong key":
        key = "ck_" + MARKER
    elif case == "invalid body":
        body = json.dumps({"customer_ids": MARKER}).encode()
    elif case == "not json":
        body = b'{"customer_ids": ["' + MARKER.encode()
    elif case == "query string":
        target = "/v1/scores?debug=1"
    else:
        body = ids_body([MARKER] * (MAX_BODY // len(MARKER)))

    [(got, headers, answer)] = exchange(running.port, request(body, key, target=target))

    assert got == status, answer
    assert headers["content-type"] == "application/json"
    assert MARKER.encode() not in answer and json.loads(answer)["error"]


def test_pipelined_requests_are_answered_in_order(
    running: Running, scores_dir: ScoresDir, api_keys: Keys
) -> None:
    a, b, c = scores_dir.rows.index[:3]
    payload = b"".join(
        [
            request(ids_body([a]), api_keys.key),
            # An error between two answers: it must neither overtake nor be overtaken.
            request(ids_body([b]), "ck_" + MARKER),
            request(ids_body([b, c]), api_keys.key),
        ]
    )

    responses = exchange(running.port, payload, count=3)

    assert [status for status, _, _ in responses] == [200, 401, 200]
    assert [r["customer_id"] for r in json.loads(responses[0][2])["results"]] == [a]
    assert [r["customer_id"] for r in json.loads(responses[2][2])["results"]] == [b, c]


def test_shutdown_lets_a_half_read_request_finish_then_closes(
    running: Running, scores_dir: ScoresDir, api_keys: Keys
) -> None:
    customer = scores_dir.rows.index[0]
    payload = request(ids_body([customer]), api_keys.key)
    state = running.server.server_state
    with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
        sock.sendall(payload[:-5])  # headers and most of the body
        wait_for(lambda: len(state.tasks) == 1, "the request to reach the app")
        running.server.should_exit = True
        # Listening stops, then each open connection is asked to close after its answer.
        wait_for(lambda: refuses_connections(running.port), "the server to stop listening")
        sock.sendall(payload[-5:])
        [(status, headers, body)] = read_responses(sock, 1)

        assert status == 200 and headers.get("connection") == "close"
        assert json.loads(body)["results"][0]["customer_id"] == customer
        assert sock.recv(1) == b""  # then the server closed the connection


def test_a_body_with_a_byte_order_mark_is_read(
    running: Running, scores_dir: ScoresDir, api_keys: Keys
) -> None:
    customer = scores_dir.rows.index[0]
    body = b"\xef\xbb\xbf" + ids_body([customer])

    [(status, _, answer)] = exchange(running.port, request(body, api_keys.key))

    assert status == 200, answer
    assert json.loads(answer)["results"][0]["customer_id"] == customer
