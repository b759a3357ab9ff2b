"""``POST /v1/predict`` over HTTP: the body equals :func:`serving.predict.predict` called
directly, small requests scored on the event loop answer exactly as big ones scored in a
worker thread, and the ``Server-Timing`` header names every stage of the request."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from models.distribution import Reference
from serving.config import Settings
from serving.predict import predict
from serving.routes.predict import INLINE_ROWS, request_rows
from serving.schemas import predict_request_model
from serving.snapshot import _json
from tests.serving.conftest import ScoresDir, Trained
from tests.serving.test_routes import history_of

pytestmark = pytest.mark.slow

#: Stages of the header, in order, for a request of one ``as_of``.
STAGES = [
    "auth",
    "parse",
    "check",
    "hop",
    "raw_tables",
    "validate",
    "features",
    "score",
    "rows",
    "encode",
    "total",
    "predict_cpu",
]


def _timing(response: httpx.Response) -> dict[str, float]:
    out = {}
    for part in response.headers["server-timing"].split(","):
        name, _, duration = part.strip().partition(";dur=")
        out[name] = float(duration)
    return out


def _customers(body: dict[str, Any]) -> Any:
    return predict_request_model(100, 10_000).model_validate(body).customers


def test_predict_body_equals_predict_called_directly(
    client: httpx.Client, trained: Trained, champion: str, scores_dir: ScoresDir
) -> None:
    body = {"customers": [history_of(c) for c in ("C00010", "C00042", "C00007")]}

    response = client.post("/v1/predict", json=body)

    assert response.status_code == 200, response.text
    meta = json.loads((scores_dir.path / "snapshot.json").read_text())
    expected = predict(
        trained.bundle,
        _customers(body),
        model_version=champion,
        clv_horizon_days=Settings().clv_horizon_days,
        reference=Reference.from_dict(meta["reference"]),
    )
    # the same bytes as the route builds them, read back: every value exactly
    plain = json.loads(
        b'{"results":' + _json(expected) + b',"model_version":' + _json(champion) + b"}"
    )
    assert response.json() == plain


def test_small_request_on_the_event_loop_equals_big_one_in_a_thread(
    client: httpx.Client,
) -> None:
    small = {"customers": [history_of("C00010")]}
    big = {"customers": [history_of(f"C{i:05d}") for i in range(10, 30)]}
    assert request_rows(_customers(small)) <= INLINE_ROWS < request_rows(_customers(big))

    inline = client.post("/v1/predict", json=small)
    threaded = client.post("/v1/predict", json=big)

    assert inline.status_code == threaded.status_code == 200, (inline.text, threaded.text)
    # a customer's scores depend on its own rows alone, whichever path scored them
    assert threaded.json()["results"][0] == inline.json()["results"][0]


def test_server_timing_names_every_stage(client: httpx.Client) -> None:
    response = client.post("/v1/predict", json={"customers": [history_of("C00010")]})

    assert response.status_code == 200, response.text
    timing = _timing(response)
    assert list(timing) == STAGES
    assert all(ms >= 0 for ms in timing.values())
    # the stages are disjoint parts of the total (each rounded to 0.001 ms)
    parts = sum(ms for name, ms in timing.items() if name not in ("total", "predict_cpu"))
    assert parts <= timing["total"] + 0.001 * len(timing)
    assert timing["total"] > 0
    # predict's CPU time is at most its steps' wall time (one thread, its CPU within them)
    steps = ("raw_tables", "validate", "features", "score", "rows")
    assert 0 < timing["predict_cpu"] <= sum(timing[s] for s in steps) + 0.2


def test_server_timing_adds_up_steps_over_as_of_groups(client: httpx.Client) -> None:
    later = history_of("C00042") | {"as_of": "2026-02-01T00:00:00+00:00"}
    response = client.post("/v1/predict", json={"customers": [history_of("C00010"), later]})

    assert response.status_code == 200, response.text
    # one entry per stage, the two feature builds and scorings summed
    assert list(_timing(response)) == STAGES


def test_errors_carry_no_server_timing(client: httpx.Client) -> None:
    response = client.post("/v1/predict", json={"customers": []})

    assert response.status_code == 422
    assert "server-timing" not in response.headers
