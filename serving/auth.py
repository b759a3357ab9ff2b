"""API keys: a store of hashes, key creation and rotation, and the request check.

The store is a JSON file readable by the server (``var/api_keys.json`` by default)::

    {"keys": [{"name": "crm", "sha256": "<hex>", "scopes": ["scores"], "created_at": "...",
               "rate_limit": {"per_second": 50, "burst": 100}}]}

``rate_limit`` is optional: a key without one gets the server's default
(``CHURN_RATE_LIMIT_PER_SECOND``, ``CHURN_RATE_LIMIT_BURST``; unlimited by default).

Only the sha256 of each key is kept: a key is 256 random bits, so a fast hash is enough (a
slow password hash protects low-entropy secrets, which these are not) and a copy of the file
does not let anyone call the API. A presented key is hashed and compared with *every* stored
hash in constant time, so neither timing nor the order of the file tells which key matched.

Scopes: ``scores`` (a CRM or a script) and ``viewer`` (a person in the retention workspace)
may both call every ``/v1`` route but the ``/v1/admin`` ones (scores, at-risk, history,
model, predict, outcomes); ``admin`` (with ``scores``) may call those too. A key made with
``--scope viewer`` holds only ``viewer``.

The server re-reads the file when it changes on disk, so creating, rotating or revoking a key
takes effect without a restart (:meth:`KeyStore.is_active` lets a web session ask whether the
key it was opened with still holds). A file that group or others may write is refused
(anyone on the machine could add a key); one they may only read is served with a WARNING
naming the fix.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from serving.errors import ApiError

log = logging.getLogger(__name__)

KEY_PREFIX = "ck_"
SCOPE_SCORES = "scores"
SCOPE_ADMIN = "admin"
SCOPE_VIEWER = "viewer"
#: Scopes that may call the read routes (scores, at-risk, history, model, outcomes).
READ_SCOPES = frozenset({SCOPE_SCORES, SCOPE_VIEWER})
#: What ``create_key(scope=...)`` stores for each scope name of the key tool.
SCOPE_SETS: dict[str, frozenset[str]] = {
    SCOPE_SCORES: frozenset({SCOPE_SCORES}),
    SCOPE_VIEWER: frozenset({SCOPE_VIEWER}),
    SCOPE_ADMIN: frozenset({SCOPE_SCORES, SCOPE_ADMIN}),
}
HEADER = "X-API-Key"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class KeyStoreError(RuntimeError):
    """The key file exists but cannot be read or has the wrong shape."""


@dataclass(frozen=True)
class ApiKey:
    """One stored key: who it belongs to and what it may do (never the key itself)."""

    name: str
    sha256: str
    scopes: frozenset[str]
    created_at: str
    #: Requests per second and burst of this key's token bucket; ``None``: the server default.
    rate_per_second: float | None = None
    burst: int | None = None

    @cached_property
    def digest(self) -> bytes:
        """The stored sha256 as bytes, for comparing with a presented key's digest."""
        return bytes.fromhex(self.sha256)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in the store."""
        data: dict[str, Any] = {
            "name": self.name,
            "sha256": self.sha256,
            "scopes": sorted(self.scopes),
            "created_at": self.created_at,
        }
        if self.rate_per_second is not None:
            data["rate_limit"] = {"per_second": self.rate_per_second, "burst": self.burst}
        return data


def hash_key(key: str) -> str:
    """Hex sha256 of a key, the only form in which keys are stored."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _hex_digest(value: Any) -> str:
    if not isinstance(value, str) or len(bytes.fromhex(value)) != hashlib.sha256().digest_size:
        raise ValueError("sha256 must be 64 hex characters")
    return value.lower()


def read_keys(path: Path) -> list[ApiKey]:
    """The keys stored in ``path``; an absent file holds no keys."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise KeyStoreError(f"{path}: unreadable ({exc})") from exc
    try:
        return [
            ApiKey(
                name=str(k["name"]),
                sha256=_hex_digest(k["sha256"]),
                scopes=frozenset(str(s) for s in k["scopes"]),
                created_at=str(k.get("created_at", "")),
                **_rate_limit(k.get("rate_limit")),
            )
            for k in data["keys"]
        ]
    except (TypeError, KeyError, ValueError) as exc:
        raise KeyStoreError(f"{path}: not an API-key store ({exc!r})") from exc


def _rate_limit(value: Any) -> dict[str, Any]:
    """``rate_per_second`` and ``burst`` from a key's optional ``rate_limit`` object."""
    if value is None:
        return {}
    rate = float(value["per_second"])
    burst = value.get("burst")
    if not rate > 0 or (burst is not None and int(burst) < 1):
        raise ValueError("rate_limit needs per_second > 0 and burst >= 1")
    return {"rate_per_second": rate, "burst": None if burst is None else int(burst)}


def check_mode(path: Path, mode: int) -> None:
    """Refuse a key store that group or others may write; warn when they may read it.

    Raises
    ------
    KeyStoreError
        naming the file, its mode and the ``chmod`` that fixes it.
    """
    fix = f"run 'chmod 600 {path}'"
    if mode & 0o022:
        raise KeyStoreError(
            f"{path}: mode {mode & 0o777:04o} lets other users write API keys; refusing it, {fix}"
        )
    if mode & 0o044:
        log.warning(
            "API-key store %s: mode %04o lets other users read it; %s", path, mode & 0o777, fix
        )


def write_keys(path: Path, keys: list[ApiKey]) -> None:
    """Replace the store atomically with a file only its owner can read (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"keys": [k.to_dict() for k in keys]}, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def create_key(
    path: Path,
    name: str,
    *,
    admin: bool = False,
    scope: str | None = None,
    rate_per_second: float | None = None,
    burst: int | None = None,
) -> str:
    """Create a key called ``name`` (replacing any key of that name: rotation) and return it.

    The key is returned once and never stored; the store keeps its hash and scopes (of
    ``scope``: ``scores`` by default, ``viewer``, or ``admin`` = ``scores`` + ``admin``;
    ``admin=True`` is ``scope="admin"``) and, when ``rate_per_second`` is given, its own rate
    limit (requests per second, ``burst`` requests at once).
    """
    if admin and scope not in (None, SCOPE_ADMIN):
        raise ValueError(f"admin=True and scope {scope!r} contradict each other")
    scope = SCOPE_ADMIN if admin else scope or SCOPE_SCORES
    if scope not in SCOPE_SETS:
        raise ValueError(f"unknown scope; use one of: {', '.join(SCOPE_SETS)}")
    _rate_limit(
        None if rate_per_second is None else {"per_second": rate_per_second, "burst": burst}
    )
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"key name {name!r}: use 1-64 letters, digits, '_', '.' or '-', starting with a "
            "letter or digit"
        )
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    scopes = SCOPE_SETS[scope]
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    kept = [k for k in read_keys(path) if k.name != name]
    entry = ApiKey(name, hash_key(key), scopes, created, rate_per_second, burst)
    write_keys(path, [*kept, entry])
    return key


def revoke_key(path: Path, name: str) -> bool:
    """Remove the key called ``name`` from the store; ``False`` when there is none.

    A running server stops accepting it with the next request (it re-reads the changed file),
    and web sessions opened with it end (:meth:`KeyStore.is_active`).
    """
    keys = read_keys(path)
    kept = [k for k in keys if k.name != name]
    if len(kept) == len(keys):
        return False
    write_keys(path, kept)
    return True


def match_key(keys: list[ApiKey], presented: str) -> ApiKey | None:
    """The stored key equal to ``presented``, comparing against all of them in constant time."""
    digest = hashlib.sha256(presented.encode("utf-8")).digest()
    found = None
    for k in keys:
        # No early exit: every stored hash is compared whatever the outcome.
        if hmac.compare_digest(digest, k.digest) and found is None:
            found = k
    return found


class KeyStore:
    """The key file as the server sees it, re-read whenever the file changes on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._signature: tuple[int, int, int, int] | None = None
        self._keys: list[ApiKey] = []

    def keys(self) -> list[ApiKey]:
        """The current keys (``[]`` while the file does not exist)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._signature, self._keys = None, []
            return []
        # The mode is part of it: a chmod that opens the file up is noticed too.
        signature = (st.st_ino, st.st_mtime_ns, st.st_size, st.st_mode)
        if signature != self._signature:
            check_mode(self.path, st.st_mode)
            self._keys = read_keys(self.path)
            self._signature = signature
            log.info("API-key store %s: %d key(s)", self.path, len(self._keys))
        return self._keys

    def check(self, presented: str | None) -> ApiKey | None:
        """The key matching ``presented``, or ``None``."""
        if not presented:
            return None
        return match_key(self.keys(), presented)

    def is_active(self, name: str, sha256: str | None = None) -> bool:
        """Whether the key called ``name`` is still in the store (and, with ``sha256``, is
        still the same key: not rotated since). For web sessions, which keep the key's name
        and hash instead of the key: a session whose key was revoked or rotated ends.

        Cheap: one ``stat`` of the file; it is re-read only when it changed. Raises
        :class:`KeyStoreError` when the changed file cannot be read (treat as not active).
        """
        for k in self.keys():
            if k.name == name:
                return sha256 is None or hmac.compare_digest(k.sha256, sha256.lower())
        return False


_api_key_header = APIKeyHeader(
    name=HEADER, auto_error=False, description="API key made by `make api-key NAME=...`"
)


async def require_api_key(
    request: Request, presented: Annotated[str | None, Security(_api_key_header)]
) -> ApiKey:
    """FastAPI dependency: the caller's key, or a 401 JSON error."""
    return authenticate(request, presented)


def authenticate(request: Request, presented: str | None) -> ApiKey:
    """The caller's key, or a 401 JSON error (503 when the key store cannot be read).

    A plain function as well as a dependency: the hottest route calls it directly, since
    FastAPI's dependency resolution costs more than the check itself.
    """
    store: KeyStore = request.app.state.serving.key_store
    try:
        key = store.check(presented)
    except KeyStoreError as exc:
        log.error("%s", exc)
        raise ApiError(503, "auth_unavailable", "API keys cannot be checked right now") from exc
    if key is None or not key.scopes & READ_SCOPES:
        raise ApiError(401, "unauthorized", f"a valid API key is required in the {HEADER} header")
    return key


#: Routes that need no API key (docs/http-api.md) and the schema pages.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc"})


def authenticate_unless_public(request: Request) -> None:
    """Raise the 401 (or 503) of :func:`authenticate` for a request to a non-public path
    without a valid key; a public path passes. Run before a body-validation error is
    answered, so that a caller without a key learns nothing about the schema."""
    if request.url.path not in PUBLIC_PATHS:
        authenticate(request, request.headers.get(HEADER))


#: The authenticated caller, for route signatures.
Client = Annotated[ApiKey, Depends(require_api_key)]


def require_scope(key: ApiKey, scope: str) -> ApiKey:
    """``key`` if it holds ``scope``; else 403 ``forbidden`` naming the scope."""
    if scope not in key.scopes:
        raise ApiError(403, "forbidden", f"this route needs an API key with the '{scope}' scope")
    return key


async def require_admin(key: Client) -> ApiKey:
    """FastAPI dependency: the caller's key if it has the admin scope; 401 without a valid
    key, 403 ``forbidden`` with a valid key that lacks the scope."""
    return require_scope(key, SCOPE_ADMIN)


#: An authenticated caller with the admin scope, for route signatures.
AdminClient = Annotated[ApiKey, Depends(require_admin)]
