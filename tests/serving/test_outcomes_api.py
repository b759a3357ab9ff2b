"""``POST/GET /v1/outcomes`` and the ``viewer`` scope, against the real server process with a
real SQLite outcomes database; key revocation through the key tool, seen by the running
server."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from serving.auth import create_key
from serving.outcomes import OUTCOME_FIELDS, OUTCOMES, OutcomeStore
from tests.server import REPO_ROOT, Server, run_server
from tests.serving.conftest import MARKER, Registry, ScoresDir, assert_error

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Workspace:
    server: Server
    keys: Path
    outcomes_url: str
    viewer: str
    scores: str
    admin: str


@pytest.fixture(scope="module")
def workspace(
    registry: Registry, champion: str, scores_dir: ScoresDir, tmp_path_factory
) -> Iterator[Workspace]:
    root = tmp_path_factory.mktemp("workspace")
    keys = root / "keys.json"
    viewer = create_key(keys, "anna", scope="viewer")
    scores = create_key(keys, "crm")
    admin = create_key(keys, "ops", admin=True)
    url = f"sqlite:///{root / 'db' / 'outcomes.db'}"
    env = {
        "MLFLOW_TRACKING_URI": registry.uri,
        "CHURN_SCORES_DIR": str(scores_dir.path),
        "CHURN_API_KEYS_FILE": str(keys),
        "CHURN_MODEL_CACHE_DIR": str(root / "cache"),
        "CHURN_OUTCOMES_URL": url,
    }
    with run_server(root, env) as server:
        yield Workspace(server, keys, url, viewer, scores, admin)


@pytest.fixture(scope="module")
def anna(workspace: Workspace) -> Iterator[httpx.Client]:
    """A client with the viewer key of 'anna'."""
    headers = {"X-API-Key": workspace.viewer}
    with httpx.Client(base_url=workspace.server.url, headers=headers, timeout=30) as c:
        yield c


def test_viewer_reads_every_read_route_but_no_admin_route(
    anna: httpx.Client, scores_dir: ScoresDir
) -> None:
    cid = str(scores_dir.rows.index[0])

    reads = [
        anna.get(f"/v1/customers/{cid}"),
        anna.get(f"/v1/customers/{cid}/history"),
        anna.get("/v1/at-risk", params={"limit": 5}),
        anna.get("/v1/model"),
        anna.post("/v1/scores", json={"customer_ids": [cid]}),
        anna.get("/v1/outcomes"),
    ]
    admin = anna.post("/v1/admin/reload")

    assert [r.status_code for r in reads] == [200] * len(reads), [r.text for r in reads]
    body = assert_error(admin, 403, "forbidden")
    assert "admin" in body["message"]


def test_recorded_outcome_carries_key_name_and_snapshot_scores_and_changes_no_score(
    anna: httpx.Client, scores_dir: ScoresDir
) -> None:
    cid = str(scores_dir.rows.index[3])
    before = anna.get(f"/v1/customers/{cid}").json()

    made = anna.post(
        "/v1/outcomes", json={"customer_id": cid, "outcome": "saved", "note": "renewed, 10% off"}
    )

    assert made.status_code == 201, made.text
    got = made.json()
    assert tuple(got) == OUTCOME_FIELDS
    assert got["customer_id"] == cid and got["outcome"] == "saved"
    assert got["note"] == "renewed, 10% off" and got["recorded_by"] == "anna"
    assert got["as_of"] == before["as_of"] and got["model_version"] == before["model_version"]
    assert got["churn_probability"] == pytest.approx(before["churn_probability"])
    assert got["risk_band"] == before["risk_band"]
    assert anna.get(f"/v1/customers/{cid}").json() == before, "an outcome changed a score"
    listed = anna.get("/v1/outcomes", params={"customer_id": cid}).json()
    assert listed["count"] == 1 and listed["results"] == [got]


def test_outcomes_list_filters_and_serves_csv(
    workspace: Workspace, anna: httpx.Client, scores_dir: ScoresDir
) -> None:
    a, b = (str(c) for c in scores_dir.rows.index[10:12])
    first = anna.post("/v1/outcomes", json={"customer_id": a, "outcome": "contacted"}).json()
    crm = {"X-API-Key": workspace.scores}
    second = httpx.post(
        f"{workspace.server.url}/v1/outcomes",
        json={"customer_id": b, "outcome": "do_not_contact", "note": '=HYPERLINK("x")'},
        headers=crm,
    ).json()

    since = anna.get("/v1/outcomes", params={"since": second["recorded_at"]}).json()
    everything = anna.get("/v1/outcomes").json()
    by_param = anna.get("/v1/outcomes", params={"format": "csv", "customer_id": b})
    by_accept = anna.get("/v1/outcomes", headers={"Accept": "text/csv"})

    assert [o["id"] for o in since["results"]] == [second["id"]]
    ids = [o["id"] for o in everything["results"]]
    assert ids.index(second["id"]) < ids.index(first["id"]), "newest first"
    assert (
        everything["count"]
        == len(everything["results"])
        == len(OutcomeStore(workspace.outcomes_url).all())
    )
    assert second["recorded_by"] == "crm"
    assert by_param.headers["content-type"].startswith("text/csv")
    (row,) = list(csv.DictReader(io.StringIO(by_param.text)))
    assert list(row) == list(OUTCOME_FIELDS)
    assert row["customer_id"] == b and row["note"] == '\'=HYPERLINK("x")', "formula defused"
    assert float(row["churn_probability"]) == pytest.approx(second["churn_probability"])
    assert len(list(csv.DictReader(io.StringIO(by_accept.text)))) == everything["count"]


def test_bad_outcome_bodies_are_422_without_echo(anna: httpx.Client, scores_dir: ScoresDir) -> None:
    cid = str(scores_dir.rows.index[0])

    unknown = anna.post("/v1/outcomes", json={"customer_id": cid, "outcome": MARKER})
    extra = anna.post("/v1/outcomes", json={"customer_id": cid, "outcome": "lost", MARKER: "x"})
    long_note = anna.post(
        "/v1/outcomes", json={"customer_id": cid, "outcome": "lost", "note": MARKER * 200}
    )
    nobody = anna.post("/v1/outcomes", json={"customer_id": MARKER, "outcome": "lost"})
    bad_since = anna.get("/v1/outcomes", params={"since": MARKER})
    no_such_day = anna.get("/v1/outcomes", params={"since": "2026-02-30"})
    unix_time = anna.get("/v1/outcomes", params={"since": "1700000000"})
    bad_param = anna.get("/v1/outcomes", params={MARKER: "1"})

    body = assert_error(unknown, 422, "invalid_request")
    assert all(o in body["details"][0]["message"] for o in OUTCOMES)
    assert assert_error(extra, 422, "invalid_request")["details"][0]["message"] == (
        "unexpected field"
    )
    assert "2000" in assert_error(long_note, 422, "invalid_request")["details"][0]["message"]
    assert_error(nobody, 404, "unknown_customer")
    assert_error(bad_since, 422, "invalid_request")
    assert "2026-02-30" not in assert_error(no_such_day, 422, "invalid_request")["message"]
    assert "2026-02-30" not in no_such_day.text
    assert_error(unix_time, 422, "invalid_request")
    assert_error(bad_param, 422, "invalid_request")
    assert anna.get("/v1/outcomes", params={"customer_id": MARKER}).json()["count"] == 0


def test_outcomes_need_a_key_and_are_counted_in_metrics(
    workspace: Workspace, anna: httpx.Client
) -> None:
    url = workspace.server.url

    no_key = httpx.post(f"{url}/v1/outcomes", json={"customer_id": "x", "outcome": MARKER})
    anna.get("/v1/outcomes")
    metrics = httpx.get(f"{url}/metrics").text

    assert_error(no_key, 401, "unauthorized")  # before the schema is checked
    assert 'route="/v1/outcomes"' in metrics and 'method="GET",route="/v1/outcomes"' in metrics


def test_revoked_key_is_refused_by_the_running_server(workspace: Workspace) -> None:
    key = create_key(workspace.keys, "temp", scope="viewer")
    url = f"{workspace.server.url}/v1/outcomes"
    assert httpx.get(url, headers={"X-API-Key": key}).status_code == 200

    def revoke() -> subprocess.CompletedProcess[str]:
        command = ["revoke", "temp", "--file", str(workspace.keys)]
        return subprocess.run(
            [sys.executable, "-m", "serving.keys", *command],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=60,
        )

    revoked = revoke()
    again = revoke()

    assert revoked.returncode == 0, revoked.stderr
    assert again.returncode == 2 and "no key named" in again.stderr
    assert_error(httpx.get(url, headers={"X-API-Key": key}), 401, "unauthorized")
    assert httpx.get(url, headers={"X-API-Key": workspace.viewer}).status_code == 200


def test_recorded_at_is_utc_iso(anna: httpx.Client, scores_dir: ScoresDir) -> None:
    cid = str(scores_dir.rows.index[20])
    got = anna.post("/v1/outcomes", json={"customer_id": cid, "outcome": "no_answer"}).json()

    stamped = datetime.fromisoformat(got["recorded_at"])

    assert got["recorded_at"].endswith("Z") and stamped.utcoffset().total_seconds() == 0


def test_openapi_documents_the_outcome_routes(anna: httpx.Client) -> None:
    schema = anna.get("/openapi.json").json()

    route = schema["paths"]["/v1/outcomes"]
    request = schema["components"]["schemas"]["OutcomeRequest"]

    assert {"get", "post"} <= set(route)
    assert request["additionalProperties"] is False
    assert request["properties"]["outcome"]["enum"] == list(OUTCOMES)
    assert {"401", "404", "422", "503"} <= set(route["post"]["responses"])


def test_wrong_method_names_both_methods_of_the_path(anna: httpx.Client) -> None:
    response = anna.delete("/v1/outcomes")

    assert_error(response, 405, "method_not_allowed")
    assert {"GET", "POST"} <= {m.strip() for m in response.headers["allow"].split(",")}
