"""The server under overload and hostile clients: admission control, rate limits, connection,
head, body and time limits, each against a real uvicorn on 127.0.0.1 configured as
``python -m serving`` configures it, over raw sockets. Requests are held in flight by
sending only part of them, and the tests wait for the server's own counters (slots taken,
connections open, body bytes reserved), never for a fixed time."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
import uvicorn
from fastapi import Depends, FastAPI, Query

from bench.overload import Tally, crowd
from bench.serving import post
from serving.__main__ import server_config
from serving.config import Settings
from serving.connections import Backlog, CostFit
from serving.errors import install_error_handlers, reject_unknown_query
from tests.server import Server, free_port, run_server, serve_in_thread, serving_env
from tests.serving.conftest import (
    MARKER,
    BundleDir,
    Keys,
    Registry,
    ScoresDir,
    Trained,
    assert_error,
    write_snapshot,
)
from tests.serving.test_http_protocol import (
    Running,
    exchange,
    ids_body,
    read_responses,
    request,
    wait_for,
)
from tests.serving.test_http_protocol import _Lines as Lines

pytestmark = pytest.mark.slow

Start = Callable[..., Running]


@pytest.fixture()
def start(
    registry: Registry, champion: str, scores_dir: ScoresDir, api_keys: Keys, tmp_path: Path
) -> Iterator[Start]:
    """Start a server with some settings changed; stopped after the test."""
    stack: list[Any] = []

    def make(**overrides: Any) -> Running:
        values: dict[str, Any] = {
            "mlflow_tracking_uri": registry.uri,
            "model_cache_dir": tmp_path / "cache",
            "scores_dir": scores_dir.path,
            "api_keys_file": api_keys.path,
            **overrides,
        }
        port = free_port()
        context = serve_in_thread(server_config(Settings(**values), port=port))
        server = context.__enter__()
        stack.append(context)
        return Running(port, server)

    yield make
    for context in reversed(stack):
        context.__exit__(None, None, None)


def state_of(running: Running) -> Any:
    """The app's ``state`` (limits, connection guard) of a running server."""
    app = running.server.config.app
    return app.state


def key(api_keys: Keys) -> dict[str, str]:
    return {"X-API-Key": api_keys.key}


def metrics(port: int) -> str:
    return exchange(port, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")[0][2].decode()


def counted(port: int, name: str, label: str) -> float:
    found = re.search(rf'^{name}\{{[a-z]+="{label}"\}} (\S+)$', metrics(port), re.M)
    return float(found.group(1)) if found else 0.0


def hold(port: int, key: str, body: bytes, *, send: int) -> socket.socket:
    """A connection with a scores request of which only ``send`` bytes of the body went out."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    payload = request(body, key)
    sock.sendall(payload[: len(payload) - len(body) + send])
    return sock


def json_error(status: int, headers: dict[str, str], body: bytes, code: str) -> dict[str, Any]:
    assert headers["content-type"] == "application/json", (status, body)
    answer = json.loads(body)
    assert answer["error"] == code and answer["message"], answer
    assert MARKER.encode() not in body
    return answer


def test_excess_requests_are_refused_at_once_with_retry_after(
    start: Start, api_keys: Keys, scores_dir: ScoresDir
) -> None:
    running = start(max_inflight=1, max_queue=0)
    slots = state_of(running).limits.slots
    customer = scores_dir.rows.index[0]
    body = ids_body([customer])
    held = hold(running.port, api_keys.key, body, send=len(body) - 2)
    with held:
        wait_for(lambda: slots.inflight == 1, "the held request to take the slot")

        [(status, headers, answer)] = exchange(running.port, request(body, api_keys.key))

        assert status == 503 and headers["retry-after"] == "1"
        json_error(status, headers, answer, "overloaded")
        # Probes are never queued behind the load.
        assert exchange(running.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")[0][0] == 200
        held.sendall(body[-2:])
        [(held_status, _, held_answer)] = read_responses(held, 1)
    assert held_status == 200
    assert json.loads(held_answer)["results"][0]["customer_id"] == customer
    assert counted(running.port, "churn_rejected_requests_total", "overloaded") == 1
    wait_for(lambda: slots.inflight == 0, "the slot to be given back")


def test_a_queued_request_gets_the_next_free_slot(
    start: Start, api_keys: Keys, scores_dir: ScoresDir
) -> None:
    running = start(max_inflight=1, max_queue=1, queue_timeout_ms=30_000)
    slots = state_of(running).limits.slots
    body = ids_body([scores_dir.rows.index[0]])
    with hold(running.port, api_keys.key, body, send=1) as held:
        wait_for(lambda: slots.inflight == 1, "the held request to take the slot")
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as queued:
            queued.sendall(request(body, api_keys.key))
            wait_for(lambda: slots.queued == 1, "the second request to queue")
            [(refused, _, _)] = exchange(running.port, request(body, api_keys.key))
            held.sendall(body[1:])

            assert read_responses(held, 1)[0][0] == 200
            assert read_responses(queued, 1)[0][0] == 200
    assert refused == 503  # the queue of one was full


def test_a_request_waiting_longer_than_the_queue_timeout_is_refused(
    start: Start, api_keys: Keys, scores_dir: ScoresDir
) -> None:
    running = start(max_inflight=1, max_queue=4, queue_timeout_ms=20)
    slots = state_of(running).limits.slots
    body = ids_body([scores_dir.rows.index[0]])
    with hold(running.port, api_keys.key, body, send=1) as held:
        wait_for(lambda: slots.inflight == 1, "the held request to take the slot")

        [(status, headers, answer)] = exchange(running.port, request(body, api_keys.key))

        json_error(status, headers, answer, "overloaded")
        assert status == 503 and headers["retry-after"] == "1" and slots.queued == 0
        held.sendall(body[1:])
        assert read_responses(held, 1)[0][0] == 200
    assert counted(running.port, "churn_rejected_requests_total", "queue_timeout") == 1


def test_an_api_key_past_its_rate_limit_gets_429(
    start: Start, scores_dir: ScoresDir, tmp_path: Path, api_keys: Keys
) -> None:
    from serving.auth import create_key

    keys = tmp_path / "limited.json"
    # One token per 1,000 s: the bucket cannot refill while the test runs.
    limited = create_key(keys, "limited", rate_per_second=0.001, burst=2)
    free = create_key(keys, "free")
    running = start(api_keys_file=keys)
    body = ids_body([scores_dir.rows.index[0]])

    answers = exchange(running.port, request(body, limited) * 3, count=3)
    free_answers = exchange(running.port, request(body, free) * 3, count=3)

    assert [status for status, _, _ in answers] == [200, 200, 429]
    status, headers, answer = answers[2]
    json_error(status, headers, answer, "rate_limited")
    assert int(headers["retry-after"]) >= 1
    assert [status for status, _, _ in free_answers] == [200, 200, 200]
    assert counted(running.port, "churn_rate_limited_requests_total", "limited") == 1


def test_connections_past_the_cap_are_refused_and_closed(start: Start) -> None:
    running = start(max_connections=2)
    guard = state_of(running).connections
    with (
        socket.create_connection(("127.0.0.1", running.port), timeout=10),
        socket.create_connection(("127.0.0.1", running.port), timeout=10),
    ):
        wait_for(lambda: len(guard.open) == 2, "two open connections")
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as third:
            [(status, headers, answer)] = read_responses(third, 1)
            assert third.recv(1) == b""

    assert status == 503 and headers["retry-after"] == "1" and headers["connection"] == "close"
    json_error(status, headers, answer, "overloaded")
    wait_for(lambda: len(guard.open) == 0, "the connections to close")
    assert counted(running.port, "churn_rejected_requests_total", "connections") == 1


def test_a_head_that_would_wait_too_long_in_the_backlog_is_refused_by_the_guard(
    start: Start, api_keys: Keys, scores_dir: ScoresDir
) -> None:
    running = start()
    guard = state_of(running).connections
    body = ids_body([scores_dir.rows.index[0]])
    assert exchange(running.port, request(body, api_keys.key))[0][0] == 200
    # As if the loop had measured 10 s per request: with nothing queued ahead a request
    # still gets in (a stale estimate never shuts the server) ...
    guard.backlog.cost = 10.0
    assert exchange(running.port, request(body, api_keys.key))[0][0] == 200
    # ... but behind a queued one it would wait past the queue timeout, so the guard
    # answers before uvicorn's parser or the app see it: on a connection open before (its
    # head refused) and on one made now (refused at its first bytes, uvicorn's protocol
    # never made for it).
    with socket.create_connection(("127.0.0.1", running.port), timeout=10) as kept:
        wait_for(lambda: len(guard.open) == 1, "the connection to be made")
        guard.backlog.queued += 1
        answers = []
        for sock in (kept, socket.create_connection(("127.0.0.1", running.port), timeout=10)):
            with sock:
                sock.sendall(request(body, api_keys.key))
                answers += read_responses(sock, 1)
                assert sock.recv(1) == b""  # closed: the body behind the head was never parsed

    for status, headers, answer in answers:
        assert status == 503 and headers["retry-after"] == "1"
        assert headers["connection"] == "close"
        json_error(status, headers, answer, "overloaded")
    # Probes pass the guard whatever its backlog, on a new connection too.
    assert exchange(running.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")[0][0] == 200
    assert counted(running.port, "churn_rejected_requests_total", "backlog") == 2
    # The app never saw the refused request: no 503 among the requests it answered.
    assert 'status="503"' not in metrics(running.port)
    guard.backlog.queued -= 1
    assert exchange(running.port, request(body, api_keys.key))[0][0] == 200


def test_the_guard_weighs_a_queued_request_by_its_declared_body(
    start: Start, api_keys: Keys, scores_dir: ScoresDir
) -> None:
    running = start()  # queue timeout 25 ms
    guard = state_of(running).connections
    backlog = guard.backlog
    ids = list(scores_dir.rows.index)
    small, big = ids_body(ids[:1]), ids_body(ids[:50])
    assert exchange(running.port, request(small, api_keys.key))[0][0] == 200
    # Connections made before the backlog below (one made behind it would be refused at
    # its first bytes whatever it sends).
    socks = [socket.create_connection(("127.0.0.1", running.port), timeout=10) for _ in "ab"]
    wait_for(lambda: len(guard.open) == 2, "the connections to be made")
    # As if measured: 1 ms per request plus 10 us per body byte, with one request queued
    # ahead declaring 2,000 bytes (21 ms of the loop's time).
    backlog.cost, backlog.byte_cost = 0.001, 1e-5
    backlog.queued, backlog.queued_bytes = backlog.queued + 1, backlog.queued_bytes + 2000
    try:
        # A 1-id request behind it fits in the 25 ms; a 50-id one (its own bytes' time on
        # top) does not, though counted as one request each they would both fit.
        assert len(small) * 1e-5 + 0.021 < 0.025 < len(big) * 1e-5 + 0.021
        statuses = []
        for sock, body in zip(socks, (small, big), strict=True):
            sock.sendall(request(body, api_keys.key))
            [(status, headers, answer)] = read_responses(sock, 1)
            statuses.append(status)
        json_error(status, headers, answer, "overloaded")
    finally:
        backlog.queued, backlog.queued_bytes = backlog.queued - 1, backlog.queued_bytes - 2000
        for sock in socks:
            sock.close()
    assert statuses == [200, 503]
    assert counted(running.port, "churn_rejected_requests_total", "backlog") == 1
    assert exchange(running.port, request(big, api_keys.key))[0][0] == 200  # none ahead


def test_the_cost_fit_gives_each_body_size_its_own_time() -> None:
    fit = CostFit()
    for _ in range(20):  # one size: its mean time, no per-byte part
        one_size = fit.add(30, 0.0003)
    assert one_size == pytest.approx((0.0003, 0.0))
    for i in range(400):  # 1-id requests and 1,000-id batches: 0.25 ms + 0.2 us per byte
        x = 11_000 if i % 4 == 0 else 30
        a, b = fit.add(x, 0.00025 + 2e-7 * x)
    assert a == pytest.approx(0.00025, rel=1e-3) and b == pytest.approx(2e-7, rel=1e-3)


def test_the_backlog_counts_return_to_zero_whatever_became_of_the_requests(
    start: Start, api_keys: Keys, scores_dir: ScoresDir
) -> None:
    running = start()
    backlog = state_of(running).connections.backlog
    body = ids_body([scores_dir.rows.index[0]])
    ok = request(body, api_keys.key)
    statuses = [s for s, _, _ in exchange(running.port, ok + ok + ok, count=3)]
    statuses.append(exchange(running.port, request(body, "wrong-key"))[0][0])
    statuses.append(exchange(running.port, b"GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n")[0][0])
    statuses.append(exchange(running.port, b"GARBAGE\r\n\r\n")[0][0])  # uvicorn's own 400
    with hold(running.port, api_keys.key, body, send=1):  # a request left half-sent ...
        wait_for(lambda: backlog.running == 1, "the held request to reach the app")
    # ... and its client gone
    wait_for(lambda: backlog.queued == 0 and backlog.running == 0, "the backlog to empty")
    assert backlog.queued_bytes == 0
    assert statuses == [200, 200, 200, 401, 404, 400]


def test_the_server_freezes_its_start_up_objects_out_of_the_garbage_collector(
    start: Start,
) -> None:
    running = start()
    assert gc.get_freeze_count() > 0
    assert running.server.config.loop == "asyncio"


def test_a_reload_freezes_what_it_loaded_out_of_the_garbage_collector(
    start: Start, api_keys: Keys
) -> None:
    running = start()
    state = state_of(running).serving
    before = state.current
    url = f"http://127.0.0.1:{running.port}/v1/admin/reload"

    reload = httpx.post(url, headers={"X-API-Key": api_keys.admin}, timeout=60)

    assert reload.status_code == 200, reload.text
    fresh = state.current
    assert fresh is not before and fresh.snapshot is not before.snapshot
    # Frozen objects are not among those the collector tracks (gc.get_objects: every
    # generation but the permanent one); the loaded objects, unfrozen, would be.
    tracked = {id(o) for o in gc.get_objects()}
    loaded = (fresh, fresh.model, fresh.snapshot, fresh.ranking, fresh.history)
    assert all(o is not None and id(o) not in tracked for o in loaded)


def test_half_sent_heads_and_idle_connections_are_closed_after_the_header_timeout(
    start: Start,
) -> None:
    running = start(header_timeout_seconds=0.3)
    with (
        socket.create_connection(("127.0.0.1", running.port), timeout=10) as half,
        socket.create_connection(("127.0.0.1", running.port), timeout=10) as idle,
    ):
        half.sendall(b"POST /v1/scores HTTP/1.1\r\nHost: t\r\nContent-")

        [(status, headers, answer)] = read_responses(half, 1)

        assert half.recv(1) == b"" and idle.recv(1) == b""  # both closed by the server
    assert status == 408 and headers["connection"] == "close"
    json_error(status, headers, answer, "request_timeout")
    assert counted(running.port, "churn_rejected_requests_total", "header_timeout") == 1


def test_a_half_sent_body_is_answered_408_and_the_connection_closed(
    start: Start, api_keys: Keys, scores_dir: ScoresDir
) -> None:
    running = start(body_timeout_seconds=0.3)
    body = ids_body([scores_dir.rows.index[0]])
    with hold(running.port, api_keys.key, body, send=3) as held:
        [(status, headers, answer)] = read_responses(held, 1)
        assert held.recv(1) == b""

    assert status == 408 and headers["connection"] == "close"
    json_error(status, headers, answer, "request_timeout")
    assert counted(running.port, "churn_rejected_requests_total", "body_timeout") == 1


def test_a_32_mib_header_is_refused_without_reading_it_or_the_body(
    start: Start, api_keys: Keys
) -> None:
    running = start(max_header_bytes=16 * 1024)
    size = 32 * 1024 * 1024
    head = (
        f"POST /v1/scores HTTP/1.1\r\nHost: t\r\nX-API-Key: {api_keys.key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {size}\r\nX-Big: "
    ).encode()
    sent = 0
    with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:

        def send_all() -> None:
            nonlocal sent
            chunk = b"a" * 65536
            try:
                sock.sendall(head)
                while sent < size:
                    sent += sock.send(chunk)
                sock.sendall(b"\r\n\r\n" + b"x" * 1024)
            except OSError:
                pass  # the server closed the connection: what is expected

        sender = threading.Thread(target=send_all, daemon=True)
        sender.start()
        [(status, headers, answer)] = read_responses(sock, 1)
        sender.join(timeout=30)

    assert status == 431 and headers["connection"] == "close"
    json_error(status, headers, answer, "header_too_large")
    assert sent < size  # refused long before the header was all sent
    assert counted(running.port, "churn_rejected_requests_total", "header_too_large") == 1
    assert "/v1/scores" not in metrics(running.port)  # the app never saw the request


def test_big_uploads_share_a_memory_budget(start: Start, api_keys: Keys) -> None:
    mib = 1024 * 1024
    running = start(max_body_bytes=mib, body_memory_bytes=2 * mib)
    budget = state_of(running).limits.body_budget
    body = b'{"customer_ids": ["' + b"a" * (mib - 30) + b'"]}'
    first = hold(running.port, api_keys.key, body, send=1024)
    second = hold(running.port, api_keys.key, body, send=1024)
    with first, second:
        wait_for(lambda: budget.used == 2 * len(body), "two bodies to reserve the budget")

        [(status, headers, answer)] = exchange(running.port, request(body, api_keys.key))

        assert status == 503 and headers["retry-after"] == "1"
        json_error(status, headers, answer, "overloaded")
    wait_for(lambda: budget.used == 0, "the reservations to be given back")
    assert counted(running.port, "churn_rejected_requests_total", "body_memory") == 1


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /v1/\xff\x00 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /v1/scores HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    ],
    ids=["request line", "bad bytes in the path", "two content-lengths"],
)
def test_malformed_requests_get_the_documented_plain_400(start: Start, raw: bytes) -> None:
    running = start()
    with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
        sock.sendall(raw)
        [(status, headers, answer)] = read_responses(sock, 1)
        assert sock.recv(1) == b""  # and the connection is closed

    # Refused by uvicorn's parser before the app: plain text (docs/http-api.md, "Limits").
    assert status == 400 and headers["content-type"].startswith("text/plain")
    assert answer == b"Invalid HTTP request received."


def test_a_request_past_the_total_time_limit_is_503(
    start: Start, api_keys: Keys, scores_dir: ScoresDir
) -> None:
    # The body time limit is longer than the total: the total limit answers first.
    running = start(request_timeout_seconds=0.3, body_timeout_seconds=60)
    body = ids_body([scores_dir.rows.index[0]])
    with hold(running.port, api_keys.key, body, send=3) as held:
        [(status, headers, answer)] = read_responses(held, 1)

    assert status == 503 and headers["retry-after"] == "1"
    json_error(status, headers, answer, "timeout")
    assert counted(running.port, "churn_rejected_requests_total", "request_timeout") == 1


def test_the_time_limit_holds_for_each_request_around_quick_ones(
    start: Start, api_keys: Keys, scores_dir: ScoresDir
) -> None:
    # One timer serves every request's limit: it must pass over requests that finished,
    # expire the one still running, and be set again for a request that comes later.
    running = start(request_timeout_seconds=0.5, body_timeout_seconds=60)
    body = ids_body([scores_dir.rows.index[0]])
    statuses = []
    for _ in range(2):
        with hold(running.port, api_keys.key, body, send=3) as held:
            quick = exchange(running.port, request(body, api_keys.key))[0][0]
            [(status, headers, answer)] = read_responses(held, 1)
        json_error(status, headers, answer, "timeout")
        statuses += [quick, status]

    assert statuses == [200, 503, 200, 503]
    assert exchange(running.port, request(body, api_keys.key))[0][0] == 200
    assert counted(running.port, "churn_rejected_requests_total", "request_timeout") == 2


# -- strictness: auth first, unknown and repeated parameters, unknown body fields -----------


def test_parameters_cannot_be_probed_without_a_key(start: Start, api_keys: Keys) -> None:
    running = start()
    url = f"http://127.0.0.1:{running.port}"
    with httpx.Client(base_url=url, timeout=10) as client:
        keyless = client.get("/v1/at-risk", params={"foo": "1"})
        repeated_keyless = client.get("/v1/at-risk?limit=1&limit=2")
        with_key = client.get("/v1/at-risk", params={"foo": "1"}, headers=key(api_keys))

    assert_error(keyless, 401, "unauthorized")
    assert_error(repeated_keyless, 401, "unauthorized")
    body = assert_error(with_key, 422, "invalid_request")
    assert body["details"][0]["loc"] == ["query", "<unexpected parameter>"]


def test_a_repeated_query_parameter_is_422(start: Start, api_keys: Keys) -> None:
    running = start()
    url = f"http://127.0.0.1:{running.port}"
    with httpx.Client(base_url=url, timeout=10, headers=key(api_keys)) as client:
        repeated = client.get("/v1/at-risk?limit=1&limit=2")
        once = client.get("/v1/at-risk?limit=1&offset=2")

    body = assert_error(repeated, 422, "invalid_request")
    assert body["details"] == [
        {
            "loc": ["query", "limit"],
            "message": "query parameter given more than once",
            "type": "repeated_parameter",
        }
    ]
    assert once.status_code == 200 and len(once.json()["results"]) == 1


def test_unknown_fields_in_the_scores_body_are_422(
    start: Start, api_keys: Keys, scores_dir: ScoresDir
) -> None:
    running = start()
    body = {"customer_ids": [scores_dir.rows.index[0]], MARKER: 1}
    url = f"http://127.0.0.1:{running.port}"
    with httpx.Client(base_url=url, timeout=10) as client:
        answer = client.post("/v1/scores", json=body, headers=key(api_keys))
        keyless = client.post("/v1/scores", json=body)

    details = assert_error(answer, 422, "invalid_request")["details"]
    assert details[0]["loc"] == ["body", "<unexpected field>"]
    assert details[0]["type"] == "extra_forbidden"
    assert_error(keyless, 401, "unauthorized")


def test_strictness_follows_each_routes_declared_parameters() -> None:
    """A route that declares a list parameter may get it repeated; its other parameters may
    not be, and undeclared ones are refused: no list of names to keep in step."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/filtered", dependencies=[Depends(reject_unknown_query)])
    async def filtered(
        status: Annotated[list[str] | None, Query()] = None, limit: int = 10
    ) -> dict[str, Any]:
        return {"status": status, "limit": limit}

    port = free_port()
    config = uvicorn.Config(app, port=port, log_level="warning")
    with serve_in_thread(config), httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        listed = client.get("/filtered?status=a&status=b&limit=3")
        repeated = client.get("/filtered?status=a&limit=3&limit=4")
        unknown = client.get("/filtered?stauts=a")

    assert listed.status_code == 200 and listed.json() == {"status": ["a", "b"], "limit": 3}
    assert repeated.status_code == 422
    assert repeated.json()["details"][0]["loc"] == ["query", "limit"]
    assert unknown.status_code == 422
    assert unknown.json()["details"][0]["loc"] == ["query", "<unexpected parameter>"]


# -- the key file, the bundle and the model's trust ------------------------------------------


def test_a_key_file_others_may_write_is_refused_naming_the_fix(
    start: Start, tmp_path: Path, scores_dir: ScoresDir
) -> None:
    from serving.auth import create_key

    keys = tmp_path / "open.json"
    presented = create_key(keys, "crm")
    keys.chmod(0o666)
    running = start(api_keys_file=keys)
    lines = Lines()  # added once the server has set up logging (which resets handlers)
    logging.getLogger("serving").addHandler(lines)
    try:
        body = ids_body([scores_dir.rows.index[0]])
        [(status, headers, answer)] = exchange(running.port, request(body, presented))
        keys.chmod(0o644)  # readable by others only: served, with a warning
        [(readable, _, _)] = exchange(running.port, request(body, presented))
    finally:
        logging.getLogger("serving").removeHandler(lines)

    json_error(status, headers, answer, "auth_unavailable")
    assert status == 503 and readable == 200
    refused = [line for line in lines.lines if "refusing it" in line]
    assert refused and str(keys) in refused[0] and f"chmod 600 {keys}" in refused[0]
    assert any("lets other users read it" in line and str(keys) in line for line in lines.lines)


def test_a_bundle_with_a_file_the_manifest_does_not_list_is_not_reloaded(
    start: Start,
    registry: Registry,
    bundle_dir: BundleDir,
    trained: Trained,
    api_keys: Keys,
    tmp_path: Path,
) -> None:
    name = "overload-extra-file"
    old = registry.publish(bundle_dir, name)
    write_snapshot(tmp_path / "scores", trained, version=old)
    running = start(model_name=name, scores_dir=tmp_path / "scores")
    new = registry.publish(bundle_dir, name)
    (registry.files(name, new) / "extra.py").write_text("print('hi')\n", encoding="utf-8")
    url = f"http://127.0.0.1:{running.port}"
    with httpx.Client(base_url=url, timeout=60) as client:
        reload = client.post("/v1/admin/reload", headers={"X-API-Key": api_keys.admin})
        model = client.get("/v1/model", headers=key(api_keys))

    body = assert_error(reload, 503, "reload_failed")
    assert body["checks"]["model"] == "untrusted_model" and body["serving_model_version"] == old
    assert model.json()["version"] == old


def test_a_model_tampered_before_start_up_withholds_scores(
    start: Start,
    registry: Registry,
    bundle_dir: BundleDir,
    trained: Trained,
    api_keys: Keys,
    tmp_path: Path,
) -> None:
    name = "overload-tampered-at-start"
    version = registry.publish(bundle_dir, name)
    write_snapshot(tmp_path / "scores", trained, version=version)
    target = registry.files(name, version) / "model.lgb"
    target.write_text(target.read_text(encoding="utf-8").replace("0", "1", 1), "utf-8")
    running = start(model_name=name, scores_dir=tmp_path / "scores")
    url = f"http://127.0.0.1:{running.port}"
    customer = str(trained.frame.index[0])
    with httpx.Client(base_url=url, timeout=10, headers=key(api_keys)) as client:
        ready = client.get("/readyz")
        scores = client.post("/v1/scores", json={"customer_ids": [customer]})
        at_risk = client.get("/v1/at-risk")
        one = client.get(f"/v1/customers/{customer}")

    assert ready.status_code == 503
    for answer in (scores, at_risk, one):
        body = assert_error(answer, 503, "untrusted_model")
        assert body["checks"]["model"] == "untrusted_model"


# -- load: the rows of python -m bench overload, bounded, asserting outcomes not latencies ----


def scores_requests(ids: list[str], api_key: str, per_request: int) -> list[bytes]:
    """``POST /v1/scores`` requests of ``per_request`` ids each, cycling through ``ids``."""
    batches = [
        [ids[(i + j) % len(ids)] for j in range(per_request)]
        for i in range(0, max(len(ids), 1), per_request)
    ]
    return [post("/v1/scores", {"customer_ids": b}, {"X-API-Key": api_key}) for b in batches]


def assert_answered_or_refused(tally: Tally, client_timeout: float) -> None:
    """Every request was answered 200 or refused 503 ``overloaded`` with ``Retry-After``,
    none timed out or failed, and refusals came well within the client's timeout."""
    assert tally.timeouts == 0 and tally.errors == 0 and tally.other == 0, tally.codes
    assert tally.admitted, "nothing was admitted"
    assert set(tally.codes) <= {"503 overloaded"}, tally.codes
    assert tally.no_retry_after == 0
    assert max(tally.refused, default=0.0) < client_timeout / 2, max(tally.refused)


def test_one_id_per_request_over_many_connections_is_all_answered(
    start: Start, api_keys: Keys, scores_dir: ScoresDir
) -> None:
    # A long queue timeout: what is checked is that every connection is served, not how fast
    # a loaded test machine serves it.
    running = start(queue_timeout_ms=10_000)
    backlog = state_of(running).connections.backlog
    requests = scores_requests(list(scores_dir.rows.index), api_keys.key, 1)
    for connections in (1, 8, 32, 128):
        tally = asyncio.run(crowd(running.port, requests, connections, 0.5, 10.0))

        assert (tally.timeouts, tally.errors, tally.other, tally.refused) == (0, 0, 0, [])
        assert len(tally.admitted) >= connections  # each connection answered at least once
    wait_for(lambda: backlog.queued == backlog.running == 0, "the backlog to empty")
    assert backlog.setting_up == 0


@pytest.fixture(scope="module")
def crowd_server(
    registry: Registry,
    champion: str,
    scores_dir: ScoresDir,
    api_keys: Keys,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """``python -m serving`` with the default limits (512 connections at most), in a
    process of its own: a crowd of this process's connections against it."""
    workdir = tmp_path_factory.mktemp("crowd")
    env = serving_env(registry.uri, scores_dir.path, api_keys.path, workdir)
    with run_server(workdir, env) as running:
        yield running


@pytest.mark.parametrize(
    ("connections", "per_request"), [(1024, 1), (512, 1000)], ids=["1 id", "1,000 ids"]
)
def test_a_crowd_is_answered_or_refused_fast_and_none_times_out(
    crowd_server: Server, api_keys: Keys, scores_dir: ScoresDir, connections: int, per_request: int
) -> None:
    port = int(crowd_server.url.rsplit(":", 1)[1])
    requests = scores_requests(list(scores_dir.rows.index), api_keys.key, per_request)
    timeout = 4.0

    tally = asyncio.run(crowd(port, requests, connections, 1.5, timeout))

    assert_answered_or_refused(tally, timeout)
    # More connections than the server holds open: some were refused, the rest served.
    assert tally.refused
    assert "Traceback" not in crowd_server.log()


def release(pointer: Path, content: bytes) -> None:
    """Write ``content`` into the named pipe at ``pointer`` for the reader waiting on it
    (none waiting: nothing to release)."""
    try:
        fd = os.open(pointer, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    with os.fdopen(fd, "wb") as pipe:
        pipe.write(content)


def test_requests_waiting_through_a_reload_are_not_refused_for_its_stall(
    start: Start,
    registry: Registry,
    champion: str,
    trained: Trained,
    api_keys: Keys,
    tmp_path: Path,
) -> None:
    scores = tmp_path / "scores"
    write_snapshot(scores / "history" / "a", trained, version=champion)
    pointer = scores / "latest.json"
    content = json.dumps({"path": "history/a"}).encode()
    pointer.write_bytes(content)
    timeout = 0.2
    running = start(scores_dir=scores, max_inflight=2, max_queue=4, queue_timeout_ms=200)
    state = state_of(running)
    slots, stalls = state.limits.slots, state.connections.stalls
    customer = str(trained.frame.index[0])
    body = ids_body([customer])
    # The reload takes one slot and blocks on reading the pointer until this test writes it.
    pointer.unlink()
    os.mkfifo(pointer)
    reloaded: list[httpx.Response] = []
    url = f"http://127.0.0.1:{running.port}/v1/admin/reload"
    reload = threading.Thread(
        target=lambda: reloaded.append(
            httpx.post(url, headers={"X-API-Key": api_keys.admin}, timeout=60)
        )
    )
    reload.start()
    try:
        wait_for(lambda: stalls.active, "the reload to start loading")
        # A held request takes the other slot, so the next one waits for a slot through
        # the reload.
        with hold(running.port, api_keys.key, body, send=1) as held:
            wait_for(lambda: slots.inflight == 2, "the held request to take the slot")
            with socket.create_connection(("127.0.0.1", running.port), timeout=10) as queued:
                queued.sendall(request(body, api_keys.key))
                wait_for(lambda: slots.queued == 1, "the request to wait for a slot")
                # Its queue timeout runs out through the stall, twice: each time the slots
                # give the stalled part back instead of refusing it (had the stall counted,
                # the request would have been refused the first time).
                wait_for(
                    lambda: slots.queued == 0 or slots.stall_extensions >= 2,
                    "the request's queue timeout to run out twice",
                )
                assert slots.queued == 1, "refused while the reload stalled the server"
                release(pointer, content)  # the reload goes on, ends, and frees its slot
                [(status, _, answer)] = read_responses(queued, 1)
            held.sendall(body[1:])
            assert read_responses(held, 1)[0][0] == 200
    finally:
        release(pointer, content)  # never leave the reload blocked
        reload.join(timeout=60)

    assert reloaded and reloaded[0].status_code == 200, reloaded
    assert status == 200, answer
    assert json.loads(answer)["results"][0]["customer_id"] == customer
    assert counted(running.port, "churn_rejected_requests_total", "queue_timeout") == 0
    assert not stalls.active and stalls.total >= 2 * timeout


def test_a_stall_counts_neither_into_the_loops_cost_nor_into_waits() -> None:
    async def measure() -> tuple[float, float, float, float]:
        loop = asyncio.get_running_loop()
        backlog = Backlog(queue_timeout=0.025, max_requests=128)
        backlog.queued = 3
        now = loop.time()
        backlog.started(now)
        backlog.started(now + 0.002)  # 2 ms between two starts, others waiting
        cost = backlog.cost
        since, stalled_since = loop.time(), backlog.stalls.now()
        with backlog.stalled():
            stall_start = loop.time()
            await asyncio.sleep(0.05)  # the stall's length, not an ordering
            backlog.started(loop.time())  # the gap spans the stall: not measured
            stall = loop.time() - stall_start
        return cost, backlog.cost, backlog.waited(since, stalled_since), stall

    cost, after, waited, stall = asyncio.run(measure())

    assert cost > 0 and after == cost
    assert stall >= 0.05 and 0 <= waited < 0.01
