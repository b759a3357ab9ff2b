"""The FastAPI application factory.

``create_app(settings)`` builds a fresh app; nothing is read or loaded at import time. The
champion model and the scored snapshot are loaded once, when the server starts (``lifespan``),
and handed to routes through dependencies. Run it with ``python -m serving``, which adds the
``/v1/scores`` HTTP protocol (:mod:`serving.http_protocol`); ``uvicorn --factory
serving.app:create_app`` serves the same API through uvicorn's own protocol.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute

from serving.access_log import AccessLogMiddleware
from serving.auth import KeyStore
from serving.body_limit import BodyLimitMiddleware
from serving.config import Settings, get_settings
from serving.errors import CatchAllMiddleware, install_error_handlers
from serving.routes import customers, health, model, predict, scores
from serving.routes.scores import ScoresAnswerer, ScoresFastPath
from serving.state import ServingState

API_VERSION = "1"
DESCRIPTION = """Churn probability, customer lifetime value and value at risk per customer.

Routes under `/v1` need an API key in the `X-API-Key` header (`make api-key NAME=...`).
Errors are JSON: `{"error": "<stable code>", "message": "<for people>"}`.
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the model and the snapshot before the first request is served."""
    app.state.serving.start()
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
    state = ServingState(settings=settings, key_store=KeyStore(settings.api_keys_file))
    app.state.serving = state
    install_error_handlers(app)
    app.include_router(health.router)
    scores_router = scores.build_router(settings)
    app.include_router(scores_router)
    app.include_router(customers.build_router(settings))
    app.include_router(predict.build_router(settings))
    app.include_router(model.router)
    # The last middleware added runs first: the access log also sees refused bodies, and
    # the /v1/scores fast path runs inside both (under the cap, logged and counted).
    # FastAPI puts the router's own route object in the scope; the fast path does the same.
    scores_route = next(
        r for r in scores_router.routes if isinstance(r, APIRoute) and r.path == scores.PATH
    )
    # One answerer for both layers in front of the route: this middleware, and the HTTP
    # protocol of ``python -m serving`` (serving/http_protocol.py), which finds it here.
    app.state.scores_answerer = ScoresAnswerer(state)
    app.add_middleware(ScoresFastPath, answerer=app.state.scores_answerer, route=scores_route)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    docs = {app.docs_url, app.redoc_url, app.openapi_url, app.swagger_ui_oauth2_redirect_url}
    app.add_middleware(
        AccessLogMiddleware,
        fixed_paths=frozenset(p for p in docs if p),
        observe=state.metrics.observe,
    )
    app.add_middleware(CatchAllMiddleware)
    return app
