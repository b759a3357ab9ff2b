"""The FastAPI application factory.

``create_app(settings)`` builds a fresh app; nothing is read or loaded at import time. The
champion model and the scored snapshot are loaded once, when the server starts (``lifespan``),
and handed to routes through dependencies. Run it with ``python -m serving`` (uvicorn's
factory mode) or ``uvicorn --factory serving.app:create_app``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from serving.access_log import AccessLogMiddleware
from serving.auth import KeyStore
from serving.body_limit import BodyLimitMiddleware
from serving.config import Settings, get_settings
from serving.errors import install_error_handlers
from serving.routes import health, scores
from serving.schemas import MAX_CUSTOMER_ID_LENGTH
from serving.state import ServingState, load_components

API_VERSION = "1"
DESCRIPTION = """Churn probability, customer lifetime value and value at risk per customer.

Routes under `/v1` need an API key in the `X-API-Key` header (`make api-key NAME=...`).
Errors are JSON: `{"error": "<stable code>", "message": "<for people>"}`.
"""


def max_body_bytes(settings: Settings) -> int:
    """The largest request body worth reading: the most ids a request may carry, each at
    its longest and JSON-escaped (up to 6 bytes a character), plus room for the rest."""
    return settings.max_customers_per_request * (MAX_CUSTOMER_ID_LENGTH * 6 + 4) + 4096


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the model and the snapshot before the first request is served."""
    load_components(app.state.serving)
    yield


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app serving with ``settings`` (default: :func:`get_settings`)."""
    settings = settings or get_settings()
    app = FastAPI(
        title="Churn and CLV scores",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.serving = ServingState(settings=settings, key_store=KeyStore(settings.api_keys_file))
    install_error_handlers(app)
    # The last middleware added runs first: the access log also sees refused bodies.
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes(settings))
    docs = {app.docs_url, app.redoc_url, app.openapi_url, app.swagger_ui_oauth2_redirect_url}
    app.add_middleware(AccessLogMiddleware, fixed_paths=frozenset(p for p in docs if p))
    app.include_router(health.router)
    app.include_router(scores.build_router(settings))
    return app
