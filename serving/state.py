"""What the server holds in memory, and how it is replaced without dropping a request.

Everything a request reads (the champion, the scored snapshot, its at-risk ranking) lives in
one immutable :class:`Components` object. A request takes the object that is current when it
starts (one attribute read, through a dependency) and uses only that object until it ends.
A reload (``POST /v1/admin/reload``) builds a complete new object off the event loop (download,
sha256 checks, parsing, ranking), and only if every part loaded does it replace the attribute:
requests in flight finish on the model they started with, new ones get the new model, and a
failed reload leaves the old object in place.

At start-up a component that fails to load is left empty with the reason's code, so the
process still starts, ``/healthz`` answers and ``/readyz`` says what is missing instead of
crash-looping.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Annotated

from fastapi import Depends, Request

from models.contract import MONITORING_DIR, MONITORING_FILE
from serving.admission import RequestTracker
from serving.at_risk import Ranking
from serving.auth import KeyStore
from serving.config import Settings
from serving.errors import ApiError
from serving.history import History, load_history
from serving.loader import LoadedModel, ModelLoadError, load_champion
from serving.metrics import Metrics
from serving.snapshot import Snapshot, SnapshotError, load_snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Components:
    """The loaded model and snapshot; ``problems`` maps a missing component to its code."""

    model: LoadedModel | None = None
    snapshot: Snapshot | None = None
    ranking: Ranking | None = None
    history: History | None = None
    problems: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def ready(self) -> bool:
        """True when both the model and the snapshot are loaded."""
        return self.model is not None and self.snapshot is not None

    def checks(self) -> dict[str, str]:
        """``ok`` or the error code, per component."""
        return {
            "model": "ok" if self.model is not None else self.problems.get("model", "not_loaded"),
            "snapshot": (
                "ok" if self.snapshot is not None else self.problems.get("snapshot", "not_loaded")
            ),
        }


def load_components(settings: Settings) -> Components:
    """Load the champion and the snapshot; a failure is logged and recorded, not raised."""
    problems: dict[str, str] = {}
    model = snapshot = ranking = history = None
    try:
        model = load_champion(settings)
    except ModelLoadError as exc:
        problems["model"] = exc.code
        log.error("model not loaded (%s): %s", exc.code, exc)
    except Exception:  # a bug or an environment problem: still start, and say why in the log
        problems["model"] = "load_failed"
        log.exception("model not loaded: unexpected error")
    try:
        snapshot = load_snapshot(settings.scores_dir)
        ranking = Ranking.build(snapshot)
        history = load_history(snapshot, settings.scores_dir, keep=settings.keep_snapshots)
    except SnapshotError as exc:
        snapshot = None
        problems["snapshot"] = "snapshot_unavailable"
        log.error("snapshot not loaded: %s", exc)
    except Exception:
        snapshot = None
        problems["snapshot"] = "load_failed"
        log.exception("snapshot not loaded: unexpected error")
    if model is not None and snapshot is not None and model.version != snapshot.model_version:
        log.warning(
            "the snapshot was scored by model version %s, the champion is version %s; "
            "run 'make score' to rescore with the champion",
            snapshot.model_version,
            model.version,
        )
    return Components(model, snapshot, ranking, history, MappingProxyType(problems))


@dataclass
class ReloadStatus:
    """The outcome of the last reload, shown by ``/v1/model``."""

    at: datetime
    ok: bool
    checks: dict[str, str]


class ServingState:
    """The app's state: settings, key store, metrics and the current :class:`Components`."""

    def __init__(
        self,
        settings: Settings,
        key_store: KeyStore,
        tracker: Callable[[], RequestTracker] | None = None,
    ) -> None:
        self.settings = settings
        self.key_store = key_store
        # The connection layer, told when a reload stalls the event loop (looked up per
        # reload: the server installs its connection guard after the app is built).
        self.tracker = tracker or RequestTracker
        self.current = Components()
        self.metrics = Metrics(
            lambda: self.current.snapshot,
            settings.scores_dir / MONITORING_DIR / MONITORING_FILE,
        )
        self.last_reload: ReloadStatus | None = None
        self._reload_lock = asyncio.Lock()

    def start(self) -> None:
        """Load at start-up (before the first request)."""
        self.swap(load_components(self.settings))
        if not self.key_store.path.exists():
            log.warning(
                "no API-key store at %s: every /v1 request will get 401 until a key is made "
                "('make api-key NAME=...')",
                self.key_store.path,
            )

    def swap(self, components: Components) -> None:
        """Serve ``components`` from the next request on (one reference assignment)."""
        self.current = components
        self.metrics.served(components.model)

    async def reload(self) -> Components:
        """Load the current champion and snapshot completely and swap them in.

        Reloads run one at a time; loading happens in a worker thread so requests keep being
        answered meanwhile. The loading still slows the event loop (the thread holds the
        interpreter for most of it, and the old components are freed on the loop), so the
        load and the swap are a stall (:meth:`RequestTracker.stalled`): requests waiting
        through it are not refused for the time it took, and it does not enter the loop's
        measured time per request. The swapped-in components are moved out of the garbage
        collector's reach (:func:`freeze_loaded`), as the start-up ones are. Raises
        :class:`ApiError` (503 ``reload_failed``, with the failing components' codes under
        ``checks``) and keeps serving the old components when either part fails to load.
        """
        async with self._reload_lock:
            with self.tracker().stalled():
                fresh = await asyncio.to_thread(load_components, self.settings)
                if fresh.ready:
                    old_version = self.current.model.version if self.current.model else "none"
                    self.swap(fresh)
                    freeze_loaded()
            now = datetime.now(UTC)
            if not fresh.ready:
                self.metrics.reloads.labels("failure").inc()
                self.last_reload = ReloadStatus(now, False, fresh.checks())
                old = self.current.model.version if self.current.model else "none"
                log.error("reload failed (%s); still serving model version %s", fresh.checks(), old)
                raise ApiError(
                    503,
                    "reload_failed",
                    f"the new model or snapshot did not load; still serving model version {old}",
                    extra={"checks": fresh.checks(), "serving_model_version": old},
                )
            self.metrics.reloads.labels("success").inc()
            self.last_reload = ReloadStatus(now, True, fresh.checks())
            assert fresh.model is not None and fresh.snapshot is not None
            log.info(
                "reloaded: model version %s -> %s, snapshot of %d customers (model version %s)",
                old_version,
                fresh.model.version,
                len(fresh.snapshot),
                fresh.snapshot.model_version,
            )
            return fresh


def freeze_loaded() -> None:
    """Move every object alive now (the libraries, the model and snapshot just loaded) out of
    the cyclic garbage collector's reach, for the life of the process.

    They live as long as the server (or until a reload replaces them, when reference
    counting frees them as usual), but every full collection would walk them: about two
    objects per customer of the snapshot, so at 20,000 customers a full collection took
    72-93 ms with a reloaded snapshot and 0.0 ms with it frozen (measured), and pauses grow
    with the customers, every request in the event loop waiting behind them. The
    collection first frees what is already garbage (a reload's temporaries), so that none
    of it is kept for good; it walks only the objects not frozen yet (57 ms at 20,000, in
    the reload's stall). Start-up freezes without it: there a collection walks every
    library's objects (0.5 s) to free little.
    """
    gc.collect()
    gc.freeze()


async def get_state(request: Request) -> ServingState:
    """FastAPI dependency: the app's :class:`ServingState`."""
    return request.app.state.serving


State = Annotated[ServingState, Depends(get_state)]


async def get_components(state: State) -> Components:
    """FastAPI dependency: the components current when the request started. FastAPI caches
    it per request, so every dependency of one request sees the same object."""
    return state.current


Current = Annotated[Components, Depends(get_components)]


def _not_ready(components: Components, what: str) -> ApiError:
    return ApiError(
        503,
        "not_ready",
        f"{what} not loaded yet; see /readyz",
        extra={"checks": components.checks()},
    )


def _untrusted(components: Components) -> ApiError | None:
    """The 503 for scores while the champion failed verification (``untrusted_model``).

    The snapshot was scored by a model the server can no longer verify, so its scores are
    not served until a trusted model is loaded (a reload, or a restart); docs/http-api.md.
    """
    if components.model is None and components.problems.get("model") == "untrusted_model":
        return ApiError(
            503,
            "untrusted_model",
            "the champion model failed verification; scores are withheld until a trusted "
            "model is loaded; see /readyz",
            extra={"checks": components.checks()},
        )
    return None


async def get_snapshot(components: Current) -> Snapshot:
    """FastAPI dependency: the loaded snapshot, or a 503 JSON error (also while the champion
    is untrusted)."""
    if components.snapshot is None:
        raise _not_ready(components, "scores are")
    if (refused := _untrusted(components)) is not None:
        raise refused
    return components.snapshot


async def get_ranking(components: Current) -> Ranking:
    """FastAPI dependency: the snapshot's at-risk ranking, or a 503 JSON error (also while
    the champion is untrusted)."""
    if components.ranking is None:
        raise _not_ready(components, "scores are")
    if (refused := _untrusted(components)) is not None:
        raise refused
    return components.ranking


async def get_history(components: Current) -> History:
    """FastAPI dependency: the kept snapshots' scores, or a 503 JSON error."""
    if components.history is None:
        raise _not_ready(components, "scores are")
    return components.history


async def get_model(components: Current) -> LoadedModel:
    """FastAPI dependency: the loaded champion, or a 503 JSON error."""
    if components.model is None:
        raise _not_ready(components, "the model is")
    return components.model


#: The loaded snapshot, ranking and model of this request, for route signatures.
LoadedSnapshot = Annotated[Snapshot, Depends(get_snapshot)]
LoadedRanking = Annotated[Ranking, Depends(get_ranking)]
LoadedHistory = Annotated[History, Depends(get_history)]
ServedModel = Annotated[LoadedModel, Depends(get_model)]
