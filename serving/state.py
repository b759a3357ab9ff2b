"""What the server holds in memory: the champion, the scored snapshot and the key store.

Loaded once at start-up (the app's ``lifespan``) and injected into routes with ``Depends``.
A component that fails to load is left empty with the reason's code, so the process still
starts, ``/healthz`` answers and ``/readyz`` says what is missing instead of crash-looping.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from serving.auth import KeyStore
from serving.config import Settings
from serving.errors import ApiError
from serving.loader import LoadedModel, ModelLoadError, load_champion
from serving.snapshot import Snapshot, SnapshotError, load_snapshot

log = logging.getLogger(__name__)


@dataclass
class ServingState:
    """The loaded components; ``problems`` maps a component that is missing to its code."""

    settings: Settings
    key_store: KeyStore
    model: LoadedModel | None = None
    snapshot: Snapshot | None = None
    problems: dict[str, str] = field(default_factory=dict)

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


def load_components(state: ServingState) -> None:
    """Load the champion and the snapshot into ``state``; a failure is logged, not raised."""
    settings = state.settings
    try:
        state.model = load_champion(settings)
        state.problems.pop("model", None)
    except ModelLoadError as exc:
        state.problems["model"] = exc.code
        log.error("model not loaded (%s): %s", exc.code, exc)
    except Exception:  # a bug or an environment problem: still start, and say why in the log
        state.problems["model"] = "load_failed"
        log.exception("model not loaded: unexpected error")
    try:
        state.snapshot = load_snapshot(settings.scores_dir)
        state.problems.pop("snapshot", None)
    except SnapshotError as exc:
        state.problems["snapshot"] = "snapshot_unavailable"
        log.error("snapshot not loaded: %s", exc)
    except Exception:
        state.problems["snapshot"] = "load_failed"
        log.exception("snapshot not loaded: unexpected error")
    model, snapshot = state.model, state.snapshot
    if model is not None and snapshot is not None and model.version != snapshot.model_version:
        log.warning(
            "the snapshot was scored by model version %s, the champion is version %s; "
            "run 'make score' to rescore with the champion",
            snapshot.model_version,
            model.version,
        )
    if not state.key_store.path.exists():
        log.warning(
            "no API-key store at %s: every /v1 request will get 401 until a key is made "
            "('make api-key NAME=...')",
            state.key_store.path,
        )


async def get_state(request: Request) -> ServingState:
    """FastAPI dependency: the app's :class:`ServingState`."""
    return request.app.state.serving


State = Annotated[ServingState, Depends(get_state)]


async def get_snapshot(state: State) -> Snapshot:
    """FastAPI dependency: the loaded snapshot, or a 503 JSON error."""
    if state.snapshot is None:
        raise ApiError(
            503,
            "not_ready",
            "scores are not loaded yet; see /readyz",
            extra={"checks": state.checks()},
        )
    return state.snapshot


#: The loaded snapshot, for route signatures.
LoadedSnapshot = Annotated[Snapshot, Depends(get_snapshot)]
