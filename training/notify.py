"""``make notify``: POST the latest snapshot's risers to a webhook (a CRM, a chat bridge).

A riser is a customer whose churn probability rose by at least ``CHURN_NOTIFY_MIN_CHANGE``
since the previous kept snapshot. The risers, in worklist order (:mod:`training.export`), go
out in deliveries of at most ``CHURN_NOTIFY_BATCH_SIZE``; a snapshot without risers still
gets one delivery with an empty list, so the receiver knows it was scored. Each delivery:

- body: JSON ``{"event": "churn.risers", "snapshot": {as_of, previous_as_of, model_version,
  sha256}, "min_change", "delivery": {batch, batches, idempotency_key}, "risers": [...]}``,
  each riser the scored customer as the API returns it plus ``segment`` and ``attributes``;
- ``X-Churn-Signature: sha256=<hex>``: HMAC-SHA256 of the exact body bytes with the shared
  secret ``CHURN_WEBHOOK_SECRET`` (the receiver recomputes it and compares in constant time);
- ``Idempotency-Key``: fixed per snapshot and batch, the same on every retry and every run,
  so a receiver that saw it already can drop a duplicate.

A delivery is retried on a connection error, a timeout, 408, 425, 429 or 5xx, waiting
``CHURN_NOTIFY_BACKOFF_SECONDS`` and doubling up to ``CHURN_NOTIFY_BACKOFF_MAX_SECONDS``, at
most ``CHURN_NOTIFY_MAX_ATTEMPTS`` times; any other answer fails it at once. Every outcome is
appended to the delivery log (JSON Lines, ``CHURN_NOTIFY_LOG``: time, snapshot, key, status,
attempts, HTTP status; never the URL's path, the secret or customer data). A delivery logged
as ``delivered`` is never sent again: re-running ``make notify`` sends only what failed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.client import HTTPException
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from training.config import SettingsError, TrainSettings
from training.export import Worklist, load_worklist

log = logging.getLogger(__name__)

EVENT = "churn.risers"
SIGNATURE_HEADER = "X-Churn-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: Answers worth another attempt: the receiver is busy or broken for now.
RETRY_STATUSES = frozenset({408, 425, 429})


def sign(secret: bytes, body: bytes) -> str:
    """The ``X-Churn-Signature`` value of ``body``: ``sha256=`` and the hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Delivery:
    """One POST: its idempotency key, place among the snapshot's deliveries, body."""

    key: str
    batch: int
    batches: int
    risers: int
    body: bytes


def deliveries(worklist: Worklist, *, min_change: float, batch_size: int) -> list[Delivery]:
    """The snapshot's risers split into deliveries of at most ``batch_size`` (at least one)."""
    chosen = list(worklist.select(min_change))
    groups = [chosen[i : i + batch_size] for i in range(0, len(chosen), batch_size)] or [[]]
    meta = worklist.meta
    snapshot = {
        "as_of": meta["as_of"],
        "previous_as_of": worklist.previous_as_of,
        "model_version": meta["model_version"],
        "sha256": meta["sha256"],
    }
    out = []
    for n, group in enumerate(groups, start=1):
        key = hashlib.sha256(f"{meta['sha256']}:{n}/{len(groups)}".encode()).hexdigest()[:40]
        payload = {
            "event": EVENT,
            "snapshot": snapshot,
            "min_change": min_change,
            "delivery": {"batch": n, "batches": len(groups), "idempotency_key": key},
            "risers": [worklist.record(i) for i in group],
        }
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        out.append(Delivery(key, n, len(groups), len(group), body.encode()))
    return out


def delivered_keys(path: Path) -> set[str]:
    """Idempotency keys the log records as delivered (a damaged line is skipped)."""
    if not path.exists():
        return set()
    keys = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash: that delivery counts as not done
        if isinstance(entry, dict) and entry.get("status") == "delivered":
            keys.add(str(entry.get("idempotency_key")))
    return keys


def _append(path: Path, entry: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a hop: urllib would turn the POST into a GET without
    the body and count the GET's 200 as delivered."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    # ``url`` is http(s), checked by :func:`_target` before anything is sent.
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@dataclass(frozen=True)
class Outcome:
    """How one delivery ended."""

    delivered: bool
    attempts: int
    http_status: int | None
    error: str | None


def send(
    delivery: Delivery,
    url: str,
    secret: bytes,
    settings: TrainSettings,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """POST ``delivery`` signed with ``secret``, retrying with bounded exponential backoff."""
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, delivery.body),
        IDEMPOTENCY_HEADER: delivery.key,
        "User-Agent": "churn-clv-notify",
    }
    status: int | None = None
    error: str | None = None
    for attempt in range(1, settings.notify_max_attempts + 1):
        try:
            status = _post(url, delivery.body, headers, settings.notify_timeout_seconds)
            error = None
        except (urllib.error.URLError, HTTPException, OSError) as exc:
            status, error = None, type(exc).__name__
        if status is not None and 200 <= status < 300:
            return Outcome(True, attempt, status, None)
        if status is not None and status < 500 and status not in RETRY_STATUSES:
            return Outcome(False, attempt, status, f"HTTP {status}, not retried")
        if attempt < settings.notify_max_attempts:
            wait = min(
                settings.notify_backoff_seconds * 2 ** (attempt - 1),
                settings.notify_backoff_max_seconds,
            )
            log.info(
                "delivery %d/%d: attempt %d failed (%s); retrying in %.2f s",
                delivery.batch,
                delivery.batches,
                attempt,
                error or f"HTTP {status}",
                wait,
            )
            sleep(wait)
    return Outcome(False, settings.notify_max_attempts, status, error or f"HTTP {status}")


@dataclass(frozen=True)
class NotifyResult:
    """What ``make notify`` did for the latest snapshot."""

    as_of: str
    risers: int
    sent: int
    skipped: int
    failed: int
    target: str


def _target(url: str) -> str:
    """``scheme://host:port`` of ``url``: what is printed (the path may hold a token)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            "webhook URL must be http:// or https:// with a host (WEBHOOK_URL=... or CHURN_WEBHOOK_URL)"
        )
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def notify(settings: TrainSettings, url: str | None = None) -> NotifyResult:
    """Deliver the latest snapshot's risers to ``url`` (default ``settings.webhook_url``);
    deliveries the log records as delivered are skipped."""
    url = url or settings.webhook_url
    if not url:
        raise SettingsError("no webhook: pass WEBHOOK_URL=... or set CHURN_WEBHOOK_URL")
    target = _target(url)
    if settings.webhook_secret is None or not settings.webhook_secret.get_secret_value():
        raise SettingsError(
            "CHURN_WEBHOOK_SECRET is not set; deliveries are always signed with a shared secret"
        )
    secret = settings.webhook_secret.get_secret_value().encode()
    worklist = load_worklist(settings.scores_dir)
    planned = deliveries(
        worklist, min_change=settings.notify_min_change, batch_size=settings.notify_batch_size
    )
    done = delivered_keys(settings.notify_log)
    sent = skipped = failed = 0
    for delivery in planned:
        if delivery.key in done:
            skipped += 1
            continue
        outcome = send(delivery, url, secret, settings)
        _append(
            settings.notify_log,
            {
                "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "as_of": worklist.meta["as_of"],
                "snapshot_sha256": worklist.meta["sha256"],
                "idempotency_key": delivery.key,
                "batch": delivery.batch,
                "batches": delivery.batches,
                "risers": delivery.risers,
                "status": "delivered" if outcome.delivered else "failed",
                "attempts": outcome.attempts,
                "http_status": outcome.http_status,
                "error": outcome.error,
            },
        )
        if outcome.delivered:
            sent += 1
        else:
            failed += 1
            log.warning(
                "delivery %d/%d failed after %d attempts (%s)",
                delivery.batch,
                delivery.batches,
                outcome.attempts,
                outcome.error,
            )
    risers = sum(d.risers for d in planned)
    return NotifyResult(str(worklist.meta["as_of"]), risers, sent, skipped, failed, target)
