"""The FastAPI application factory.

``create_app(settings)`` builds a fresh app; nothing is read or loaded at import time. The
champion model and the scored snapshot are loaded once, when the server starts (``lifespan``),
and handed to routes through dependencies. Run it with ``python -m serving``, which also sets
up logging and turns off uvicorn's own access log (it would write raw paths, with ids).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from serving.access_log import AccessLogMiddleware
from serving.admission import AdmissionMiddleware, Counters, RateLimits, RequestTracker, Slots
from serving.auth import KeyStore, KeyStoreError, authenticate_unless_public
from serving.body_limit import BodyBudget, BodyLimitMiddleware
from serving.config import Settings, get_settings
from serving.docs_ui import install_docs
from serving.errors import CatchAllMiddleware, install_error_handlers
from serving.outcomes import OutcomeStore, OutcomeStoreError, configured_url
from serving.routes import customers, health, model, outcomes, predict, scores, workspace
from serving.sessions import SessionStore, SignInLimiter
from serving.state import ServingState
from serving.workspace import STATIC_DIR

log = logging.getLogger(__name__)

API_VERSION = "1"
DESCRIPTION = """Churn probability, customer lifetime value and value at risk per customer.

Routes under `/v1` need an API key in the `X-API-Key` header (`make api-key NAME=...`).
Errors are JSON: `{"error": "<stable code>", "message": "<for people>"}`.
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the model and the snapshot and open the outcomes store (running its migrations)
    before the first request is served; close the store at shutdown."""
    app.state.serving.start()
    try:  # read the key store now, so a bad file or mode is reported at start-up
        app.state.serving.key_store.keys()
    except KeyStoreError as exc:
        log.error("%s", exc)
    app.state.outcomes = open_outcomes(app.state.serving.settings)
    # The libraries, model and snapshot loaded by now live as long as the server: moved out
    # of the garbage collector's reach, a full collection no longer walks their millions of
    # objects (measured: pauses of up to 0.6 s under a crowd of connections, every request
    # in the event loop waiting behind them).
    gc.freeze()
    try:
        yield
    finally:
        if app.state.outcomes is not None:
            app.state.outcomes.close()


def open_outcomes(settings: Settings) -> OutcomeStore | None:
    """The outcomes store of ``settings``, migrated to head; ``None`` (one ERROR line, and
    503 ``outcomes_unavailable`` from the outcomes routes) when it cannot be opened: the
    scores are served either way."""
    url = configured_url(settings.outcomes_url, settings.scores_dir)
    try:
        store = OutcomeStore(url)
    except OutcomeStoreError as exc:
        log.error("%s", exc)
        return None
    log.info("outcomes store %s: schema at head", store.safe_url)
    return store


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app serving with ``settings`` (default: :func:`get_settings`)."""
    settings = settings or get_settings()
    app = FastAPI(
        title="Churn and CLV scores",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        # Served from vendored assets by serving/docs_ui.py instead of FastAPI's CDN pages.
        docs_url=None,
        redoc_url=None,
    )
    state = ServingState(
        settings=settings,
        key_store=KeyStore(settings.api_keys_file),
        tracker=lambda: app.state.connections,
    )
    app.state.serving = state
    install_error_handlers(app, before_validation_error=authenticate_unless_public)
    app.include_router(health.router)
    app.include_router(scores.build_router(settings))
    app.include_router(customers.build_router(settings))
    app.include_router(predict.build_router(settings))
    app.include_router(model.router)
    app.include_router(outcomes.build_router())
    app.state.outcomes = None  # opened by ``lifespan``
    # The retention workspace (docs/workspace.md): browser sessions and HTML pages.
    app.state.workspace = workspace.WorkspaceState(
        sessions=SessionStore(state.key_store, lifetime_seconds=settings.session_hours * 3600),
        limiter=SignInLimiter(settings.signin_failures_per_minute),
        settings=settings,
    )
    app.include_router(workspace.build_router(settings))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    install_docs(app)
    counters = Counters(state.metrics.registry)
    app.state.counters = counters
    # Replaced by the server's connection guard (serving/__main__.py) when it serves the app.
    app.state.connections = RequestTracker()
    limits = Limits(
        slots=Slots(settings.max_inflight, settings.max_queue, settings.queue_timeout_ms / 1000),
        rate_limits=RateLimits(settings.rate_limit_per_second, settings.rate_limit_burst),
        key_store=state.key_store,
        counters=counters,
        request_timeout=settings.request_timeout_seconds,
        body_timeout=settings.body_timeout_seconds,
        body_budget=BodyBudget(settings.body_memory_bytes),
    )
    app.state.limits = limits
    install_middlewares(
        app, max_body_bytes=settings.max_body_bytes, observe=state.metrics.observe, limits=limits
    )
    return app


@dataclass(frozen=True)
class Limits:
    """The admission, rate, time and memory limits of one app (docs/http-api.md, "Limits")."""

    slots: Slots
    rate_limits: RateLimits
    key_store: KeyStore
    counters: Counters
    request_timeout: float
    body_timeout: float
    body_budget: BodyBudget


def install_middlewares(
    app: FastAPI,
    *,
    max_body_bytes: int,
    observe: Callable[[str, str, int, float], None],
    limits: Limits | None = None,
) -> None:
    """Add the middlewares every request goes through: catch-all (outermost), access log and
    request metrics (``observe``), admission control (rate limits, slots and queue, total
    time; with ``limits``), body limit of ``max_body_bytes`` bytes, with the body's time
    limit and memory budget of ``limits`` (innermost).

    Every route, ``/v1/scores`` included, is served behind all of them; a middleware added
    here reaches every route. Separate from :func:`create_app` so that the serving benchmark
    can measure these layers on their own (``python -m bench.serving --layers``).
    """
    # The last middleware added runs first: the access log also sees refused requests.
    if limits is None:
        app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    else:
        app.add_middleware(
            BodyLimitMiddleware,
            max_bytes=max_body_bytes,
            timeout=limits.body_timeout,
            budget=limits.body_budget,
            reject=limits.counters.reject,
        )
        app.add_middleware(
            AdmissionMiddleware,
            slots=limits.slots,
            rate_limits=limits.rate_limits,
            key_store=limits.key_store,
            counters=limits.counters,
            request_timeout=limits.request_timeout,
            tracker=lambda: app.state.connections,
        )
    docs = {app.docs_url, app.redoc_url, app.openapi_url, app.swagger_ui_oauth2_redirect_url}
    app.add_middleware(
        AccessLogMiddleware, fixed_paths=frozenset(p for p in docs if p), observe=observe
    )
    app.add_middleware(CatchAllMiddleware)
