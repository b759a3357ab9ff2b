"""``python -m serving [--host H] [--port P]``: run the API with uvicorn.

Host and port default to the settings (``CHURN_HOST``, ``CHURN_PORT``; 127.0.0.1:8000). The
app is built here, when the server starts (settings are read then, not when a module is
imported), and served by uvicorn's own HTTP protocol behind a connection guard (connection
cap, request-head time and size limits: :mod:`serving.connections`): every request goes
through the app's ASGI middlewares (catch-all, access log and metrics, admission control,
body limit). Uvicorn's access log is
off: it would write raw paths, which will carry customer ids; :mod:`serving.access_log` logs
route templates instead.
"""

from __future__ import annotations

import argparse
import copy
import sys
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG, STARTUP_FAILURE

from serving.config import Settings, SettingsError, get_settings


def log_config() -> dict[str, Any]:
    """Uvicorn's logging setup plus the ``serving`` loggers, on the same handler."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["serving"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def server_config(
    settings: Settings, *, host: str | None = None, port: int | None = None
) -> uvicorn.Config:
    """The uvicorn configuration of ``python -m serving``: a new app for ``settings``;
    ``host`` and ``port`` default to the settings'.

    Each connection is uvicorn's own HTTP protocol behind the connection guard
    (:mod:`serving.connections`: a cap on open connections, a time and size limit on request
    heads), given to uvicorn through its public ``http`` option; uvicorn's keep-alive timeout
    and h11's head-size limit (used when httptools is not installed) come from the settings.
    """
    # Imported here, not at the top: the app pulls in pandas, LightGBM and MLflow (seconds),
    # and a bad setting is reported before any of that is loaded.
    from serving.app import create_app
    from serving.connections import guard_for

    app = create_app(settings)
    guard = guard_for(settings, app.state.counters)
    app.state.connections = guard  # the app tells the guard when requests start and end
    return uvicorn.Config(
        app,
        host=host or settings.host,
        port=port or settings.port,
        http=guard,  # type: ignore[arg-type]  # a protocol factory, as uvicorn calls it
        # asyncio's own loop, not uvloop: under a crowd, uvloop's loop kept new connections
        # waiting in the kernel's accept queue for 0.7-1.9 s while it served the open ones
        # (measured by python -m bench overload: first requests on new connections), where
        # asyncio's accepts them within the loop's backlog; the CPU per request is the same.
        loop="asyncio",
        access_log=False,
        log_config=log_config(),
        server_header=False,
        timeout_keep_alive=settings.keep_alive_seconds,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        # SIGTERM stops accepting connections and lets requests in flight finish (bounded).
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
    )


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__.split("\n")[0])
    parser.add_argument("--host", help="interface to listen on (default: CHURN_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (default: CHURN_PORT or 8000)")
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except SettingsError as exc:  # an unknown CHURN_* variable or a bad value: one line
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    server = uvicorn.Server(server_config(settings, host=args.host, port=args.port))
    server.run()
    if not server.started:  # as ``uvicorn.run`` does: the server could not start
        sys.exit(STARTUP_FAILURE)


if __name__ == "__main__":
    main()
