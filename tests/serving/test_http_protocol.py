"""The HTTP protocol of ``python -m serving`` (serving/http_protocol.py) in a real uvicorn
server on 127.0.0.1, run in a thread of this process so that the tests can see which layer
answered each request: the protocol itself, or the app behind it."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
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
    """A uvicorn server with the scores protocol, and the protocol class it uses."""

    port: int
    protocol: Any
    server: uvicorn.Server

    def answered(self) -> int:
        """Requests the protocol has answered itself so far."""
        return int(self.protocol.answered)


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
        yield Running(port, config.http, server)


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


def test_the_protocol_answers_scores_with_the_routes_bytes(
    running: Running, scores_dir: ScoresDir, api_keys: Keys
) -> None:
    body = ids_body([*scores_dir.rows.index[:2], "NO-SUCH-CUSTOMER"])

    [(status, headers, fast)] = exchange(running.port, request(body, api_keys.key))
    assert (status, running.answered()) == (200, 1)
    # With a charset parameter the app (and its FastAPI route) answers instead.
    [(routed_status, routed_headers, routed)] = exchange(
        running.port, request(body, api_keys.key, content_type="application/json; charset=utf-8")
    )

    assert routed_status == 200 and running.answered() == 1
    assert fast == routed
    assert [r["customer_id"] for r in json.loads(fast)["results"]][2] == "NO-SUCH-CUSTOMER"
    assert headers.keys() == routed_headers.keys() == {"date", "content-length", "content-type"}
    for name in ("content-length", "content-type"):
        assert headers[name] == routed_headers[name]


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
def test_requests_it_does_not_answer_reach_the_app_whole(
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
    assert running.answered() == 0
    assert headers["content-type"] == "application/json"
    assert MARKER.encode() not in answer and json.loads(answer)["error"]


def test_pipelined_requests_are_answered_in_order_by_either_layer(
    running: Running, scores_dir: ScoresDir, api_keys: Keys
) -> None:
    a, b, c = scores_dir.rows.index[:3]
    payload = b"".join(
        [
            request(ids_body([a]), api_keys.key),
            # Answered by the app: the next one must wait for it rather than overtake it.
            request(ids_body([b]), api_keys.key, content_type="application/json; charset=utf-8"),
            request(ids_body([c]), api_keys.key),
        ]
    )

    responses = exchange(running.port, payload, count=3)

    assert [status for status, _, _ in responses] == [200, 200, 200]
    assert [json.loads(body)["results"][0]["customer_id"] for _, _, body in responses] == [a, b, c]
    assert 1 <= running.answered() <= 2


def test_shutdown_lets_a_half_read_request_finish_then_closes(
    running: Running, scores_dir: ScoresDir, api_keys: Keys
) -> None:
    customer = scores_dir.rows.index[0]
    payload = request(ids_body([customer]), api_keys.key)
    with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
        sock.sendall(payload[:-5])  # headers and most of the body
        time.sleep(0.2)
        running.server.should_exit = True
        time.sleep(0.5)  # the server has begun shutting down and asked connections to close
        sock.sendall(payload[-5:])
        [(status, headers, body)] = read_responses(sock, 1)

        assert status == 200 and headers.get("connection") == "close"
        assert json.loads(body)["results"][0]["customer_id"] == customer
        assert sock.recv(1) == b""  # then the server closed the connection


def test_a_body_only_the_route_reads_is_left_to_it(
    running: Running, scores_dir: ScoresDir, api_keys: Keys
) -> None:
    # The answerer parses JSON with pydantic, which refuses a UTF-8 byte-order mark that the
    # route's json.loads skips: the request must still succeed, answered by the route.
    customer = scores_dir.rows.index[0]
    body = b"\xef\xbb\xbf" + ids_body([customer])

    [(status, _, answer)] = exchange(running.port, request(body, api_keys.key))

    assert status == 200, answer
    assert json.loads(answer)["results"][0]["customer_id"] == customer
    assert running.answered() == 0
