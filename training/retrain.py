"""``make retrain``: the loop a cron job or a systemd timer runs -- train, gate, score, reload
the running server, monitor -- with a lock and an exit code that says what happened.

Steps, each logged with its start and duration (:class:`training.progress.Steps`):

1. **lock**: an exclusive, non-blocking ``flock`` on ``CHURN_RETRAIN_LOCK`` (default
   ``var/retrain.lock``); when another run holds it, this one changes nothing and exits 5. The
   kernel drops the lock when the holder exits, however it exits, so a crashed run never
   leaves a stale lock behind (the file stays; its content names the last holder).
2. **train**: :func:`training.engine.train` -- fit, register, and move the champion alias
   only if the gate passes (the alias moves last, so a failed run leaves the champion as it was).
3. **score**: always, with whichever version is champion after step 2: the new one when it
   was promoted, else the existing champion, so the snapshot the server and ``make monitor``
   read stays fresh even when the gate holds the new model back (exit 4). The snapshot is
   written under a hidden name and renamed into place (:mod:`training.batch`).
4. **reload**: ``POST <CHURN_SERVER_URL>/v1/admin/reload`` with the admin key of
   ``CHURN_ADMIN_KEY_FILE`` (or ``CHURN_ADMIN_KEY``); skipped with one log line when no server
   URL is set. A failed reload leaves the server serving what it served before (exit 6).
5. **monitor**: :func:`training.monitor.monitor` on the kept snapshots (exit 3 on alerts).

A fatal error in a step stops the loop there: nothing after it runs, and what ran is complete
(a registered version that was not promoted, or a snapshot the server has not reloaded yet,
which the next run or a ``POST /v1/admin/reload`` picks up). See docs/monitoring.md, "The
retrain loop", for the exit codes.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.client import HTTPException
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from training.config import SettingsError, TrainSettings
from training.progress import Steps, duration

log = logging.getLogger(__name__)

#: Exit codes of ``python -m training retrain`` (docs/monitoring.md, "The retrain loop").
EXIT_OK = 0  # retrained, promoted, scored, reloaded (or no server set), no alert
EXIT_ERROR = 1  # an unexpected error; the step it stopped in is logged
EXIT_BAD_INPUT = 2  # bad data or settings: nothing was changed
EXIT_ALERTS = 3  # everything ran, and monitoring alerts fired
EXIT_NOT_PROMOTED = 4  # the gate kept the champion; scored with it
EXIT_LOCKED = 5  # another retrain holds the lock: this one did nothing
EXIT_RELOAD_FAILED = 6  # scored, but the server did not reload (it serves the old model)

#: When several outcomes apply, the exit code is the first of these that does: a server
#: serving stale scores needs a person soonest, then alerts, then a held-back model.
PRECEDENCE = (EXIT_RELOAD_FAILED, EXIT_ALERTS, EXIT_NOT_PROMOTED)

ADMIN_RELOAD_PATH = "/v1/admin/reload"
API_KEY_HEADER = "X-API-Key"


class LockedError(RuntimeError):
    """Another retrain holds the lock."""


class ReloadError(RuntimeError):
    """The server did not reload (unreachable, refused the key, or failed to load)."""


@dataclass
class RetrainResult:
    """What one run of the loop did; :attr:`exit_code` sums it up."""

    version: str = ""
    promoted: bool = False
    gate_reason: str = ""
    scored_version: str = ""
    scored_as_of: str = ""
    snapshot: Path | None = None
    #: ``reloaded: ...``, ``skipped: ...`` or ``failed: ...``.
    reload: str = ""
    alerts: list[dict[str, Any]] = field(default_factory=list)
    #: The monitoring rows (one per kept snapshot, :mod:`training.monitor`).
    monitoring_rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def outcomes(self) -> set[int]:
        found = set()
        if self.reload.startswith("failed"):
            found.add(EXIT_RELOAD_FAILED)
        if self.alerts:
            found.add(EXIT_ALERTS)
        if not self.promoted:
            found.add(EXIT_NOT_PROMOTED)
        return found

    @property
    def exit_code(self) -> int:
        return next((code for code in PRECEDENCE if code in self.outcomes), EXIT_OK)

    def line(self) -> str:
        """The one line the command ends with."""
        model = (
            f"v{self.version} promoted"
            if self.promoted
            else f"v{self.version} not promoted ({self.gate_reason})"
        )
        return (
            f"retrain done in {duration(self.seconds)}: {model}; scored as of "
            f"{self.scored_as_of[:10]} with v{self.scored_version}; reload {self.reload}; "
            f"{len(self.alerts)} monitoring alert(s); exit {self.exit_code}"
        )


@contextmanager
def exclusive_lock(path: Path) -> Iterator[IO[str]]:
    """Hold an exclusive ``flock`` on ``path`` for the block, or raise :class:`LockedError`
    at once (non-blocking) naming the holder the file records."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown holder"
            raise LockedError(
                f"another retrain is running ({holder}; lock {path}); this run changed nothing"
            ) from None
        handle.seek(0)
        handle.truncate()
        started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        handle.write(f"pid {os.getpid()} since {started}\n")
        handle.flush()
        yield handle
    finally:
        handle.close()  # closing the descriptor releases the lock


def admin_key(settings: TrainSettings) -> str:
    """The admin-scope API key for the reload: ``CHURN_ADMIN_KEY``, else the first line of
    ``CHURN_ADMIN_KEY_FILE`` (``make api-key NAME=retrain ADMIN=1 | tail -n 1 > FILE``)."""
    if settings.admin_key is not None and settings.admin_key.get_secret_value():
        return settings.admin_key.get_secret_value().strip()
    path = settings.admin_key_file
    if path is None:
        raise SettingsError(
            "CHURN_SERVER_URL is set but no admin key: set CHURN_ADMIN_KEY_FILE to a file "
            "holding a key made with 'make api-key NAME=retrain ADMIN=1'"
        )
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(
            f"CHURN_ADMIN_KEY_FILE {path}: unreadable ({exc.strerror or exc})"
        ) from None
    key = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not key:
        raise SettingsError(f"CHURN_ADMIN_KEY_FILE {path}: empty; write the admin key into it")
    return key


def server_base(url: str) -> str:
    """``url`` without a trailing slash, checked to be ``http(s)://host[:port]``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            f"CHURN_SERVER_URL must be http:// or https:// with a host (got scheme "
            f"'{parts.scheme}'), e.g. http://127.0.0.1:8000"
        )
    return url.rstrip("/")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is not followed: it would carry the admin key to another address."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def reload_server(url: str, key: str, *, timeout: float) -> dict[str, Any]:
    """``POST <url>/v1/admin/reload`` with the admin key; returns the server's answer.

    Raises
    ------
    ReloadError
        the server cannot be reached, answers with an error (401/403: the key; 503: the new
        model or snapshot failed to load, and the old one keeps serving) or not with JSON.
    """
    request = urllib.request.Request(
        server_base(url) + ADMIN_RELOAD_PATH,
        data=b"",
        headers={API_KEY_HEADER: key, "User-Agent": "churn-clv-retrain"},
        method="POST",
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status, body = int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        status, body = int(exc.code), exc.read()
    except (urllib.error.URLError, HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ReloadError(f"server {server_base(url)} not reachable ({reason})") from None
    try:
        answer = json.loads(body or b"{}")
    except ValueError:
        answer = {}
    if not 200 <= status < 300 or not isinstance(answer, dict):
        error = answer.get("error", {}) if isinstance(answer, dict) else {}
        code = error.get("code", "") if isinstance(error, dict) else ""
        raise ReloadError(f"server answered HTTP {status}" + (f" {code}" if code else ""))
    return answer


Runner = Callable[[TrainSettings], Any]


@dataclass(frozen=True)
class Loop:
    """The steps of the loop as functions of the settings (defaults: the real ones); the
    simulation (``python -m training simulate``) passes a cheaper ``train``."""

    train: Runner | None = None
    score: Runner | None = None
    monitor: Runner | None = None


def retrain(settings: TrainSettings, loop: Loop | None = None) -> RetrainResult:
    """Run the loop once under the lock (module docstring); returns what it did.

    Raises
    ------
    LockedError
        another run holds the lock (nothing was done).
    training.io.DataError, SettingsError
        bad input (the step that found it did not change anything).
    """
    from training import engine

    loop = loop or Loop()
    train = loop.train or engine.train
    score = loop.score or engine.score
    result = RetrainResult()
    with exclusive_lock(settings.retrain_lock):
        step = Steps()
        # a reload that cannot work is found before an hour of training, not after
        key = admin_key(settings) if settings.server_url else ""
        if settings.server_url:
            server_base(settings.server_url)
        with step("train"):
            trained = train(settings)
            result.version, result.promoted = trained.version, trained.promoted
            result.gate_reason = trained.gate_reason
            log.info(
                "retrain: v%s %s: %s",
                trained.version,
                "promoted" if trained.promoted else "not promoted, scoring with the champion",
                trained.gate_reason,
            )
        with step("score"):
            scored = score(settings)
            result.scored_version = scored.model_version
            result.scored_as_of = scored.as_of.strftime("%Y-%m-%dT%H:%M:%SZ")
            result.snapshot = scored.path
        with step("reload"):
            result.reload = _reload(settings, key)
        with step("monitor"):
            monitored = (loop.monitor or _monitor)(settings)
            result.alerts = list(monitored.alerts)
            result.monitoring_rows = list(monitored.rows)
        result.seconds = step.elapsed
    log.info("%s", result.line())
    return result


def _reload(settings: TrainSettings, key: str) -> str:
    if not settings.server_url:
        log.info("reload skipped: CHURN_SERVER_URL is not set (no running server to tell)")
        return "skipped: no CHURN_SERVER_URL"
    try:
        answer = reload_server(settings.server_url, key, timeout=settings.reload_timeout_seconds)
    except ReloadError as exc:
        log.error("reload failed, the server keeps serving what it served: %s", exc)
        return f"failed: {exc}"
    return (
        f"reloaded: serving v{answer.get('model_version')} "
        f"(was v{answer.get('previous_model_version')})"
    )


def _monitor(settings: TrainSettings) -> Any:
    from training.monitor import monitor

    return monitor(settings)
