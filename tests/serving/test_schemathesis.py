"""Schemathesis generates requests from the server's OpenAPI schema (valid and invalid bodies,
parameters, headers) and sends them to the real server: no 5xx, and every answer matches the
documented status codes, content types and response schemas.

The schema is built in-process from the same settings as the test server (schemathesis'
pytest plugin needs the schema at collection time, before the server fixture runs), and
``test_in_process_schema_is_the_served_one`` checks it equals the server's ``/openapi.json``.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import negative_data_rejection, positive_data_acceptance

from serving.app import create_app
from serving.config import Settings
from tests.serving.conftest import Keys, Server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings(
        "ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning"
    ),
]

#: The limits of the ``server`` fixture (tests/serving/conftest.py), which shape the schema.
SERVER_SETTINGS = Settings(
    _env_file=None,  # type: ignore[call-arg]
    max_customers_per_request=50,
    max_body_bytes=1_000_000,
    api_keys_file=Path("unused"),
)
OPENAPI = create_app(SERVER_SETTINGS).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)


def test_in_process_schema_is_the_served_one(server: Server) -> None:
    assert httpx.get(f"{server.url}/openapi.json").json() == OPENAPI


def _duplicate_ids(body: dict) -> bool:  # type: ignore[type-arg]
    return any(d.get("type") == "duplicate" for d in body.get("details", []))


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same requests every run: a failure here is reproducible
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_conforms_to_its_schema(
    case: schemathesis.Case, server: Server, api_keys: Keys
) -> None:
    # A client key, not an admin one: reloading is tested on its own server.
    response = case.call(base_url=server.url, headers={"X-API-Key": api_keys.key}, timeout=30)
    excluded = []
    if response.status_code == 413:
        # A body over the size cap is refused before it is parsed, which schemathesis'
        # negative-data check does not count as a rejection; every other check still runs.
        excluded.append(negative_data_rejection)
    if response.status_code == 422 and _duplicate_ids(response.json()):
        # Distinct customer ids in one request is a rule JSON Schema cannot express
        # (uniqueItems compares whole items), so a schema-valid body can break it.
        excluded.append(positive_data_acceptance)
    case.validate_response(response, excluded_checks=excluded)
