"""The overload benchmark runs at smoke size: every step of the table reports a figure, the
crowd's requests are answered, and the hostile rows get the answers docs/http-api.md states."""

import re

import pytest

from bench import overload as bench_overload

# starts a server process and opens many connections: make test only, not make test-fast
pytestmark = pytest.mark.slow


def test_quick_run_reports_every_step():
    figures = {f.name: f for f in bench_overload.run(quick=True)}
    assert figures["1 id, 1 conn: admitted"].value > 0
    assert figures["1 id, 64 conn, 2 s timeout: admitted"].value > 0
    refused = figures["1 id, 64 conn, 2 s timeout: refused 503"].note
    # Every refusal the crowd got was the documented one: 503 overloaded with Retry-After.
    assert re.search(r"; \{('503 overloaded': \d+)?\}, 0 without Retry-After$", refused), refused
    assert figures["20 half-sent requests: closed by the server"].value == 20
    assert figures["32 MiB header: status"].value == 431
    assert figures["malformed request line"].value == 400
    assert figures["/v1/at-risk?foo=1 without a key"].value == 401
    assert figures["/v1/scores with an unknown field"].value == 422
    assert figures["limit=1&limit=2"].value == 422
    uploads = figures["4 uploads of 1 MiB: server RSS growth"]
    assert "4 admitted" in uploads.note
