"""The HTTP API, end to end against ``python -m serving`` running as its own process."""

from __future__ import annotations

import math

import httpx
import pytest

from models.contract import REASON_KEYS
from serving.snapshot import SCORE_FIELDS
from tests.serving.conftest import MARKER, Keys, ScoresDir, Server, assert_error

pytestmark = pytest.mark.slow


def test_healthz(server: Server) -> None:
    response = httpx.get(f"{server.url}/healthz")

    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_when_loaded(server: Server) -> None:
    response = httpx.get(f"{server.url}/readyz")

    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "checks": {"model": "ok", "snapshot": "ok"}}


def test_scores_for_known_and_unknown_ids_in_request_order(
    client: httpx.Client, scores_dir: ScoresDir, champion: str
) -> None:
    known = list(scores_dir.rows.index[:3])
    ids = [known[2], "NO-SUCH-CUSTOMER", known[0], known[1]]

    response = client.post("/v1/scores", json={"customer_ids": ids})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == champion
    results = body["results"]
    assert [r["customer_id"] for r in results] == ids
    assert results[1] == {"customer_id": "NO-SUCH-CUSTOMER", "error": "unknown_customer"}
    for item in (results[0], results[2], results[3]):
        assert set(item) == set(SCORE_FIELDS)
        expected = scores_dir.rows.loc[item["customer_id"]]
        assert 0.0 <= item["churn_probability"] <= 1.0
        assert item["churn_probability"] == pytest.approx(expected["churn_probability"])
        assert item["risk_band"] in {"low", "medium", "high"}
        assert item["clv"] >= 0
        assert math.isclose(
            item["value_at_risk"],
            item["churn_probability"] * item["clv"],
            rel_tol=1e-9,
            abs_tol=1e-12,
        )
        assert item["model_version"] == champion
        assert item["as_of"] == "2026-01-01T00:00:00Z"
        assert item["status"] == expected["status"]
        assert item["churn_percentile"] == pytest.approx(expected["churn_percentile"], abs=0.05)
        assert item["top_reasons"], "every customer has a reason (above or below the base rate)"
        for reason in item["top_reasons"]:
            assert tuple(reason) == REASON_KEYS
            assert reason["text"] and reason["direction"] in {"raises", "lowers"}
            assert 0 < reason["share"] <= 1


def test_all_unknown_is_still_a_success(client: httpx.Client) -> None:
    response = client.post("/v1/scores", json={"customer_ids": ["x", "y"]})

    assert response.status_code == 200
    assert [r["error"] for r in response.json()["results"]] == ["unknown_customer"] * 2


def test_scores_need_an_api_key(server: Server) -> None:
    response = httpx.post(f"{server.url}/v1/scores", json={"customer_ids": ["C00001"]})

    assert_error(response, 401, "unauthorized")


@pytest.mark.parametrize("path", ["/v1/scores", "/v1/predict"])
def test_no_key_is_401_even_when_the_body_is_invalid(server: Server, path: str) -> None:
    response = httpx.post(
        f"{server.url}{path}",
        content=b"customer_ids=C1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_error(response, 401, "unauthorized")
    assert "details" not in response.json()


def test_wrong_api_key_is_refused(server: Server, api_keys: Keys) -> None:
    response = httpx.post(
        f"{server.url}/v1/scores",
        json={"customer_ids": ["C00001"]},
        headers={"X-API-Key": api_keys.key[:-2] + MARKER},
    )

    body = assert_error(response, 401, "unauthorized")
    assert MARKER not in response.text and "C00001" not in str(body)


@pytest.mark.parametrize(
    "payload",
    [
        {"customer_ids": MARKER},
        {"customer_ids": [MARKER * 10]},  # longer than an id may be
        {"customer_ids": [f"{MARKER}\n"]},  # control character
        {"customer_ids": [{"id": MARKER}]},
        {"customer_ids": []},
        {"customers": [MARKER]},
    ],
)
def test_bad_body_is_422_with_field_paths_and_no_echo(client: httpx.Client, payload: dict) -> None:  # type: ignore[type-arg]
    response = client.post("/v1/scores", json=payload)

    body = assert_error(response, 422, "invalid_request")
    assert MARKER not in response.text
    assert body["details"] and all(d["loc"][0] == "body" for d in body["details"])
    assert all(isinstance(d["message"], str) and d["message"] for d in body["details"])
    assert "input" not in response.text


def test_invalid_json_is_422_without_echo(client: httpx.Client) -> None:
    response = client.post(
        "/v1/scores",
        content=f'{{"customer_ids": ["{MARKER}"'.encode(),
        headers={"Content-Type": "application/json"},
    )

    assert_error(response, 422, "invalid_request")
    assert MARKER not in response.text


def test_too_many_ids_is_refused_with_an_error_code(client: httpx.Client) -> None:
    # The test server allows 50 ids per request (CHURN_MAX_CUSTOMERS_PER_REQUEST).
    response = client.post("/v1/scores", json={"customer_ids": [f"C{i:05d}" for i in range(51)]})

    body = assert_error(response, 422, "invalid_request")
    assert body["details"][0]["loc"] == ["body", "customer_ids"]
    assert body["details"][0]["type"] == "too_long"


def test_oversized_body_is_413(client: httpx.Client) -> None:
    response = client.post(
        "/v1/scores",
        content=b'{"customer_ids": ["' + b"x" * 2_000_000 + b'"]}',
        headers={"Content-Type": "application/json"},
    )

    assert_error(response, 413, "payload_too_large")


def test_unknown_route_and_method_are_json_errors(client: httpx.Client) -> None:
    assert_error(client.get(f"/v1/nothing-{MARKER}"), 404, "not_found")
    assert_error(client.get("/v1/scores"), 405, "method_not_allowed")


def test_openapi_documents_the_limit_and_the_key(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()

    request = schema["components"]["schemas"]["ScoresRequest"]
    assert request["properties"]["customer_ids"]["maxItems"] == 50
    assert "APIKeyHeader" in schema["components"]["securitySchemes"]


def test_access_log_has_routes_not_ids(server: Server, client: httpx.Client) -> None:
    client.post("/v1/scores", json={"customer_ids": [f"{MARKER}-logged"]})
    client.get(f"/v1/customers/{MARKER}-in-path")

    log = server.log()

    assert "POST /v1/scores 200" in log
    assert MARKER not in log


def test_unready_server_is_alive_but_not_ready(unready_server: Server, api_keys: Keys) -> None:
    assert httpx.get(f"{unready_server.url}/healthz").status_code == 200

    ready = httpx.get(f"{unready_server.url}/readyz")
    scores = httpx.post(
        f"{unready_server.url}/v1/scores",
        json={"customer_ids": ["C00001"]},
        headers={"X-API-Key": api_keys.key},
    )

    body = assert_error(ready, 503, "not_ready")
    assert body["checks"] == {"model": "no_champion", "snapshot": "snapshot_unavailable"}
    assert_error(scores, 503, "not_ready")
    log = unready_server.log()
    assert "no-such-model" in log and "make score" in log


def test_oversized_chunked_body_is_413(client: httpx.Client) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"customer_ids": ["'
        for _ in range(40):
            yield b"x" * 50_000
        yield b'"]}'

    response = client.post(
        "/v1/scores", content=chunks(), headers={"Content-Type": "application/json"}
    )

    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize(
    ("parts", "status"),
    [
        ([b'{"customer_ids": [', b'"NO-SUCH-CUSTOMER"]}'], 200),
        ([b'{"customer_ids": [', f'"{MARKER}"'.encode()], 422),  # cut short: invalid JSON
        ([b'{"customer_ids": ', f'"{MARKER}"}}'.encode()], 422),  # not a list
    ],
)
def test_chunked_scores_bodies_are_read_whole(
    client: httpx.Client, parts: list[bytes], status: int
) -> None:
    # A body in several pieces: the route (behind the body limit) must see every piece.
    response = client.post(
        "/v1/scores", content=iter(parts), headers={"Content-Type": "application/json"}
    )

    assert response.status_code == status, response.text
    if status == 200:
        assert response.json()["results"] == [
            {"customer_id": "NO-SUCH-CUSTOMER", "error": "unknown_customer"}
        ]
    else:
        body = assert_error(response, status, "invalid_request")
        assert body["details"] and MARKER not in response.text
