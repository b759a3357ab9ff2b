"""Access log and request metrics: method, route template, status and latency per request.

Uvicorn's own access log writes the raw path and query string, which will carry customer ids
(``/v1/customers/{customer_id}``); this middleware logs the route *template* instead. It is a
plain ASGI middleware (no ``BaseHTTPMiddleware``) to keep the per-request cost to a clock read
and one log record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("serving.access")


def log_request(method: str, route: str, status: int, seconds: float) -> None:
    """Write one access-log line: method, route template (never the raw path), status and
    latency in milliseconds."""
    log.info("%s %s %d %.2fms", method, route, status, seconds * 1000)


class AccessLogMiddleware:
    """Log ``METHOD /route/{template} STATUS LATENCYms`` for every HTTP request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        fixed_paths: frozenset[str] = frozenset(),
        observe: Callable[[str, str, int, float], None] | None = None,
    ) -> None:
        self.app = app
        # Called with method, route template, status and seconds (the Prometheus metrics).
        self.observe = observe
        # Paths without parameters that are served outside the router's route records
        # (FastAPI's /docs and /openapi.json): safe to log as they are.
        self.fixed_paths = fixed_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets if the app raises before responding

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            # The router stores the matched route in the scope; other paths are not logged.
            route = getattr(scope.get("route"), "path", None)
            if route is None:
                route = scope["path"] if scope["path"] in self.fixed_paths else "-"
            elapsed = time.perf_counter() - start
            log_request(scope["method"], route, status, elapsed)
            if self.observe is not None:
                self.observe(scope["method"], route, status, elapsed)
