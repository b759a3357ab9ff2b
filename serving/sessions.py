"""Browser sessions of the retention workspace (docs/workspace.md, "Signing in").

A browser cannot send ``X-API-Key``, so the workspace's sign-in page takes an API key once and
turns it into a session: a random token in an HttpOnly, SameSite=Strict cookie, and on the
server the key's name, scopes, the digest of the key it was opened with, a CSRF token and an
expiry time. The key itself is never kept.

Every request re-checks the session against the key store (:meth:`SessionStore.get`): the
store is re-read only when its file changes, so the check is a ``stat`` and a scan of the
key list. A session ends when its key is removed, rotated (same name, other digest) or loses
every scope that may open the workspace; when it expires; or at sign-out. Sessions live in
the server's memory: a restart signs everyone out, which is the safe direction.

Failed sign-ins are counted per client address (:class:`SignInLimiter`): past the limit in a
minute the sign-in page answers 429 until the minute is over.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from serving.auth import SCOPE_ADMIN, SCOPE_SCORES, SCOPE_VIEWER, ApiKey, KeyStore, KeyStoreError

#: Scopes that may open the workspace.
WORKSPACE_SCOPES = frozenset({SCOPE_VIEWER, SCOPE_SCORES, SCOPE_ADMIN})
#: The session cookie's name.
COOKIE = "churn_session"
#: Most sessions held at once; past it the oldest is dropped (a bound on memory).
MAX_SESSIONS = 10_000


@dataclass(frozen=True)
class Session:
    """One signed-in browser: who (the key's name and scopes), and until when."""

    token: str
    key_name: str
    key_sha256: str
    scopes: frozenset[str]
    csrf: str
    expires_at: float  # time.time() seconds

    def csrf_ok(self, presented: str | None) -> bool:
        """Whether ``presented`` is this session's CSRF token (constant-time)."""
        return bool(presented) and hmac.compare_digest(self.csrf.encode(), str(presented).encode())


class SessionStore:
    """The open sessions, in memory, checked against the key store on every look-up."""

    def __init__(
        self,
        key_store: KeyStore,
        *,
        lifetime_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key_store = key_store
        self.lifetime = lifetime_seconds
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, key: ApiKey) -> Session:
        """A new session for ``key`` (the caller checked the key and its scopes)."""
        session = Session(
            token=secrets.token_urlsafe(32),
            key_name=key.name,
            key_sha256=key.sha256,
            scopes=key.scopes,
            csrf=secrets.token_urlsafe(32),
            expires_at=self.clock() + self.lifetime,
        )
        with self._lock:
            self._purge()
            if len(self._sessions) >= MAX_SESSIONS:
                oldest = min(self._sessions.values(), key=lambda s: s.expires_at)
                del self._sessions[oldest.token]
            self._sessions[session.token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        """The live session of ``token``, or None (unknown, expired, or its key revoked)."""
        if not token:
            return None
        with self._lock:
            session = self._sessions.get(token)
        if session is None:
            return None
        if session.expires_at <= self.clock() or not self._key_still_valid(session):
            self.close(token)
            return None
        return session

    def close(self, token: str | None) -> None:
        """End the session of ``token`` (sign-out); unknown tokens are ignored."""
        if token:
            with self._lock:
                self._sessions.pop(token, None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _key_still_valid(self, session: Session) -> bool:
        """The key the session was opened with is still in the store and not rotated (its
        scopes cannot change without a new key); a key store that cannot be read admits no
        session (the person signs in again once it is readable)."""
        try:
            return self.key_store.is_active(session.key_name, session.key_sha256)
        except KeyStoreError:
            return False

    def _purge(self) -> None:
        now = self.clock()
        for token in [t for t, s in self._sessions.items() if s.expires_at <= now]:
            del self._sessions[token]


class SignInLimiter:
    """Failed sign-ins per client address in the last minute (a sliding window)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, address: str) -> float:
        """Seconds until ``address`` may try again (0: it may now)."""
        now = self.clock()
        with self._lock:
            window = self._window(address, now)
            if len(window) < self.per_minute:
                return 0.0
            return max(0.0, window[0] + 60.0 - now)

    def failed(self, address: str) -> None:
        """Count one failed sign-in from ``address``."""
        now = self.clock()
        with self._lock:
            self._window(address, now).append(now)
            if len(self._failures) > MAX_SESSIONS:  # bound memory under a spray of addresses
                for stale in [a for a, w in self._failures.items() if not w or w[-1] < now - 60]:
                    del self._failures[stale]

    def _window(self, address: str, now: float) -> deque[float]:
        window = self._failures.setdefault(address, deque())
        while window and window[0] <= now - 60.0:
            window.popleft()
        return window
