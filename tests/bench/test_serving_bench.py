"""The serving benchmark runs at smoke size: it starts the real server, every request of every
measurement succeeds, and each figure is a real number (speed itself is never asserted)."""

import math

import pytest

from bench import serving as bench_serving

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings(
        "ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning"
    ),
]


def test_quick_run_measures_every_route_without_failures():
    figures = {f.name: f for f in bench_serving.run(quick=True)}

    for name in (
        "scores 1 customer p50",
        "scores 1 customer p99",
        "scores max throughput",
        "predict 1 customer, 1 year p50",
    ):
        assert name in figures and math.isfinite(figures[name].value) and figures[name].value > 0
    assert figures["scores 1 customer p50"].note.startswith("40 ok, 0 failed")
    paced = figures["scores 1 customer p50, paced client"]
    assert paced.note.startswith("40 ok, 0 failed") and math.isfinite(paced.value)
    # Saturated on purpose: requests shed with 503 at capacity are counted apart; none
    # may fail any other way.
    assert figures["scores max throughput"].note.startswith("8 connections, 0 failed, ")
    assert any(name.startswith("scores batch of") for name in figures)
    assert "events" in figures["predict 1 customer, 1 year p50"].note
    # The fair comparison's customer (12 purchases, 6 contacts, 2 survey answers), every
    # request answered.
    for name in ("predict 1 customer p50", "predict 1 customer p99"):
        assert math.isfinite(figures[name].value) and figures[name].value > 0
        assert figures[name].note == ("4 ok, 0 failed; 12 transactions, 6 interactions, 2 surveys")
    # the server's Server-Timing stages of those requests, and the time outside the route
    stages = [n.split()[2] for n in figures if n.startswith("  predict stage ")]
    assert stages[:2] == ["auth", "parse"] and stages[-2:] == ["total", "predict_cpu"]
    assert {"validate", "features", "score"} <= set(stages)
    assert figures["  predict stage total p50"].value > 0
    assert math.isfinite(figures["  predict outside the route p50"].value)
    assert "mlflow models serve p50" not in figures  # the reference runs in the full bench only
    assert "predict p50 ratio ours / mlflow" not in figures


def test_quick_layer_run_answers_through_every_layer():
    figures = bench_serving.run_layers(quick=True)

    p50s = [f for f in figures if f.name.endswith(" p50")]
    assert [f.name.removesuffix(" p50") for f in p50s] == [
        *bench_serving.LAYERS.values(),
        bench_serving.OURS_LAYER,
    ]
    for figure in p50s:
        assert figure.note.startswith("40 ok, 0 failed") and figure.value > 0
    assert all(math.isfinite(f.value) for f in figures)


def test_request_bytes_are_valid_http():
    request = bench_serving.post("/v1/scores", {"customer_ids": ["a"]}, {"X-API-Key": "k"})

    head, body = request.split(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/scores HTTP/1.1\r\n")
    assert f"Content-Length: {len(body)}".encode() in head
    assert body == b'{"customer_ids":["a"]}'


def test_response_length_needs_the_whole_reply():
    reply = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\ncontent-type: application/json\r\n\r\n{}[]"

    assert bench_serving._response_length(reply[:20]) is None  # head incomplete
    assert bench_serving._response_length(reply[:-1]) is None  # body incomplete
    assert bench_serving._response_length(reply) == (200, len(reply))


def test_server_timing_is_read_from_the_reply_head():
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n"
        b'Server-Timing: auth;dur=0.041, score;desc="model";dur=5.3, miss\r\n\r\n'
    )

    assert bench_serving.server_timing(head) == {"auth": 0.041, "score": 5.3, "miss": 0.0}
    assert bench_serving.server_timing(b"HTTP/1.1 200 OK\r\n\r\n") == {}
