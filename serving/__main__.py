"""``python -m serving [--host H] [--port P]``: run the API with uvicorn.

Host and port default to the settings (``CHURN_HOST``, ``CHURN_PORT``; 127.0.0.1:8000). The
app is built by uvicorn's factory mode, so settings are read when the server starts, not when
a module is imported. Uvicorn's access log is off: it would write raw paths, which will carry
customer ids; :mod:`serving.access_log` logs route templates instead.
"""

from __future__ import annotations

import argparse
import copy
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from serving.config import get_settings


def log_config() -> dict[str, Any]:
    """Uvicorn's logging setup plus the ``serving`` loggers, on the same handler."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["serving"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__.split("\n")[0])
    parser.add_argument("--host", help="interface to listen on (default: CHURN_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (default: CHURN_PORT or 8000)")
    args = parser.parse_args(argv)
    settings = get_settings()
    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        access_log=False,
        log_config=log_config(),
        server_header=False,
        # SIGTERM stops accepting connections and lets requests in flight finish (bounded).
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
    )


if __name__ == "__main__":
    main()
