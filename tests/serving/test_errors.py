"""The last-resort error path: an unexpected exception is a JSON 500 without a traceback, and
the client's keep-alive connection keeps working (uvicorn closes it when an exception reaches
it, so the next request would fail with a reset)."""

from __future__ import annotations

import ast
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from serving.access_log import AccessLogMiddleware
from serving.errors import CatchAllMiddleware, install_error_handlers, validation_details
from tests.server import REPO_ROOT, free_port, serve_in_thread

SECRET = "ZZ-internal-detail-91c2"


def failing_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(CatchAllMiddleware)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(SECRET)

    @app.get("/fine")
    async def fine() -> dict[str, str]:
        return {"status": "ok"}

    return app


@pytest.fixture()
def url() -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(failing_app(), host="127.0.0.1", port=port, log_level="critical")
    with serve_in_thread(config, timeout=10):
        yield f"http://127.0.0.1:{port}"


def test_unexpected_error_is_json_500_and_the_connection_survives(url: str) -> None:
    with httpx.Client(base_url=url) as client:
        first = client.get("/boom")
        second = client.get("/boom")
        after = client.get("/fine")

    for response in (first, second):
        assert response.status_code == 500
        assert response.json() == {
            "error": "internal_error",
            "message": "an unexpected error occurred; it has been logged",
        }
        assert SECRET not in response.text and "Traceback" not in response.text
    assert after.status_code == 200


def test_keys_of_free_form_objects_are_not_repeated() -> None:
    details = validation_details(
        [
            {
                "loc": ("body", "customers", 0, "attributes", SECRET, "[key]"),
                "msg": "m",
                "type": "t",
            },
            {"loc": ("body", "customers", 0, "attributes", SECRET), "msg": "m", "type": "t"},
            {"loc": ("body", SECRET), "msg": "m", "type": "extra_forbidden"},
        ]
    )

    assert SECRET not in str(details)
    assert details[0]["loc"] == ["body", "customers", 0, "attributes", "<key>", "[key]"]
    assert details[2]["loc"] == ["body", "<unexpected field>"]


def test_errors_does_not_import_auth() -> None:
    # Auth policy lives in serving.auth, which imports serving.errors (ApiError): the reverse
    # import would make the pair circular again.
    tree = ast.parse((REPO_ROOT / "serving" / "errors.py").read_text(encoding="utf-8"))
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }

    assert "fastapi" in imported  # the walk sees the module's imports
    assert not any(m and m.startswith("serving.auth") for m in imported)
