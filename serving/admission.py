"""Admission control: shed load fast instead of letting every request wait.

A request to the API takes one of ``max_inflight`` slots before the app works on it. When
none is free it waits in a queue of at most ``max_queue`` requests, for at most
``queue_timeout`` seconds; a request that finds the queue full, or waits too long, is
answered at once with 503 ``overloaded`` and ``Retry-After``. The wait counted includes the
time the request spent in the event loop's backlog after its head was read (most requests
are one synchronous stretch of work, so under load they queue there, not for a slot), less
the time a reload stalled the server meanwhile (:class:`StallClock`). A client told to come back
later costs the server microseconds; a client left waiting for seconds holds a connection,
its buffers and a task, and slows every other request down.

In front of all this, the connection guard (:mod:`serving.connections`) refuses a request
whose head would wait too long in that backlog, or that finds ``max_inflight + max_queue``
requests already in the server, before it is even parsed: the cheapest refusal there is.
The checks here catch what its estimate missed.

Before that, a request carrying a known API key takes a token from that key's bucket
(:class:`RateLimits`: ``rate_per_second`` tokens a second, at most ``burst`` saved up); with
no token left it gets 429 ``rate_limited`` and the seconds until the next token in
``Retry-After``. Requests without a valid key are not rate limited here: the route answers
them 401.

Health, readiness and metrics are exempt: a probe must keep telling the truth under load.
Every refusal is counted in ``/metrics`` (``churn_rejected_requests_total`` by reason,
``churn_rate_limited_requests_total`` by key name), with the slots and queue as gauges.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.auth import HEADER, ApiKey, KeyStore, KeyStoreError, match_key
from serving.errors import error_body

log = logging.getLogger(__name__)

#: Seconds a client told "overloaded" should wait before trying again.
OVERLOADED_RETRY_AFTER = 1
#: Paths that are never queued, refused or rate limited.
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class Counters:
    """The refusal counters and gauges of one app, in its metrics registry."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.rejected = Counter(
            "churn_rejected_requests",
            "requests or connections refused or closed by a limit, by reason",
            ["reason"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "churn_rate_limited_requests",
            "requests answered 429 by an API key's rate limit, by key name",
            ["key"],
            registry=registry,
        )
        self.inflight = Gauge(
            "churn_requests_inflight", "requests holding an admission slot", registry=registry
        )
        self.queued = Gauge(
            "churn_requests_queued", "requests waiting for an admission slot", registry=registry
        )
        self.connections = Gauge(
            "churn_open_connections", "open HTTP connections", registry=registry
        )

    def reject(self, reason: str) -> None:
        """Count one refusal: ``overloaded``, ``queue_timeout``, ``backlog``, ``connections``,
        ``header_timeout``, ``header_too_large``, ``body_timeout``, ``body_memory``,
        ``request_timeout`` or ``rate_limited``."""
        self.rejected.labels(reason).inc()


class Slots:
    """``max_inflight`` slots and a first-come queue of at most ``max_queue`` waiters."""

    def __init__(self, max_inflight: int, max_queue: int, queue_timeout: float) -> None:
        self.max_inflight = max_inflight
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        self.inflight = 0
        #: Times a waiter's queue timeout ran out during a stall (a reload) and the stalled
        #: part was given back to it instead of refusing it.
        self.stall_extensions = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        """Requests waiting for a slot now."""
        return len(self._waiters)

    async def acquire(self, waited: float = 0.0, stalls: StallClock | None = None) -> str | None:
        """Take a slot; ``None`` when taken, else the reason it was not (``overloaded``: the
        queue is full, ``queue_timeout``: no slot came free in time, ``backlog``: the request
        already waited ``waited`` seconds, longer than the queue timeout, before getting
        here).

        The slots count requests *inside* the app, at its await points; requests whose work
        is one synchronous stretch (a snapshot look-up) queue in the event loop instead,
        before they reach this point. ``waited`` is that wait (measured by the connection
        guard from the moment the request head was read), counted against the same timeout.
        Time the loop spends stalled meanwhile (``stalls``: a reload) does not count.
        """
        if waited > self.queue_timeout:
            return "backlog"
        if self.inflight < self.max_inflight and not self._waiters:
            self.inflight += 1
            return None
        if len(self._waiters) >= self.max_queue:
            return "overloaded"
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        budget = self.queue_timeout - waited
        stalled_at = stalls.now() if stalls is not None else 0.0
        try:
            while True:
                try:
                    async with asyncio.timeout(budget):
                        # Shielded: a timeout that a stall extends must not cancel the place.
                        await asyncio.shield(waiter)
                    return None
                except TimeoutError:
                    if waiter.done() and not waiter.cancelled():
                        return None  # granted as the wait ran out
                    if stalls is None or (stalled := stalls.now() - stalled_at) <= 0:
                        self._remove(waiter)
                        return "queue_timeout"
                    # The wait overlapped a stall: that part is given back to the budget.
                    stalled_at, budget = stalled_at + stalled, stalled
                    self.stall_extensions += 1
        except BaseException:  # the request was cancelled
            granted = waiter.done() and not waiter.cancelled()
            if not granted:
                self._remove(waiter)
            else:  # a slot was handed over as the request went away: pass it on
                self.release()
            raise

    def _remove(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def release(self) -> None:
        """Give a slot back: straight to the longest waiter, if any."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on; ``inflight`` is unchanged
                return
        self.inflight -= 1


@dataclass
class _Bucket:
    rate: float
    burst: float
    tokens: float
    stamp: float


class RateLimits:
    """A token bucket per API key name: the key's own limit from the key file, else the
    default (``default_rate`` per second, 0 for none; ``default_burst``, 0 for twice the
    rate)."""

    def __init__(self, default_rate: float, default_burst: int) -> None:
        self.default_rate = default_rate
        self.default_burst = default_burst
        self._buckets: dict[str, _Bucket] = {}

    def limit(self, key: ApiKey) -> tuple[float, float]:
        """``(requests per second, burst)`` of ``key``; a rate of 0 means unlimited."""
        rate = key.rate_per_second if key.rate_per_second is not None else self.default_rate
        burst = key.burst if key.rate_per_second is not None else self.default_burst
        return rate, float(burst or max(1.0, 2 * rate))

    def take(self, key: ApiKey, now: float | None = None) -> float:
        """Take one token for ``key``: 0 when there was one, else seconds until the next."""
        rate, burst = self.limit(key)
        if rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(key.name)
        if bucket is None or (bucket.rate, bucket.burst) != (rate, burst):  # new or changed
            bucket = self._buckets[key.name] = _Bucket(rate, burst, burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate


def error_response_bytes(status: int, code: str, message: str) -> bytes:
    """The JSON error body of the API, as bytes (shared with :mod:`serving.connections`)."""
    return json.dumps(error_body(code, message), separators=(",", ":")).encode()


async def send_error(
    send: Send, status: int, code: str, message: str, *, retry_after: int | None = None
) -> None:
    """Answer with the API's JSON error without touching the request body."""
    body = error_response_bytes(status, code, message)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if retry_after is not None:
        headers.append((b"retry-after", b"%d" % retry_after))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Deadline:
    """One request's place in :class:`Deadlines`."""

    __slots__ = ("at", "expired", "task")

    def __init__(self, at: float, task: asyncio.Task[Any] | None) -> None:
        self.at = at
        self.task = task  # None once the request finished
        self.expired = False


class Deadlines:
    """The total time limit of every request, with one timer for all of them.

    ``asyncio.timeout`` per request costs a timer handle, a context manager and a heap entry
    each time (tens of microseconds on the hot path, measured). All requests get the same
    limit, so their deadlines come in arrival order: a queue, with one timer set for the
    oldest deadline, cancels the task of a request still running at its deadline.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._queue: deque[_Deadline] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def enter(self) -> _Deadline:
        """Start the current task's limit."""
        loop = asyncio.get_running_loop()
        queue = self._queue
        while queue and queue[0].task is None:  # finished requests at the front
            queue.popleft()
        entry = _Deadline(loop.time() + self.seconds, asyncio.current_task())
        queue.append(entry)
        if self._timer is None:
            self._timer = loop.call_at(entry.at, self._expire)
        return entry

    @staticmethod
    def leave(entry: _Deadline) -> None:
        """The request finished: its limit no longer applies."""
        entry.task = None

    def _expire(self) -> None:
        loop = asyncio.get_running_loop()
        now, queue = loop.time(), self._queue
        while queue and (queue[0].task is None or queue[0].at <= now):
            entry = queue.popleft()
            if entry.task is not None:
                entry.expired = True
                entry.task.cancel()
        self._timer = loop.call_at(queue[0].at, self._expire) if queue else None


class StallClock:
    """Seconds the event loop spent stalled by work that is not the requests' (a reload
    loading a model and a snapshot beside it): time that must not count against the
    budgets of the requests waiting through it.

    :meth:`stalled` marks such a stretch (nested or overlapping stretches count once);
    :meth:`now` is the stalled seconds so far, running on while a stretch is open, so a
    wait's stalled part is the difference of two readings.
    """

    def __init__(self) -> None:
        self.total = 0.0  # seconds, of the stretches that ended
        self.since: float | None = None  # loop time the open stretch began
        self.depth = 0

    @property
    def active(self) -> bool:
        """Whether a stall is going on now."""
        return self.depth > 0

    def now(self) -> float:
        """Stalled seconds since the server started, the open stretch included."""
        if self.since is None:
            return self.total
        return self.total + asyncio.get_running_loop().time() - self.since

    @contextlib.contextmanager
    def stalled(self) -> Iterator[None]:
        """The block's time is a stall: it does not count as any request's wait."""
        if self.depth == 0:
            self.since = asyncio.get_running_loop().time()
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if self.depth == 0 and self.since is not None:
                self.total += asyncio.get_running_loop().time() - self.since
                self.since = None


class RequestTracker:
    """What :class:`AdmissionMiddleware` tells the connection layer: a request of the
    connection from ``client`` started or finished (:class:`serving.connections.ConnectionGuard`
    implements it; the default does nothing), and the loop's stalls (:class:`StallClock`)."""

    def __init__(self) -> None:
        self.stalls = StallClock()

    def request_started(self, client: tuple[str, int] | None) -> float:
        """A request's head was read and handed to the app; returns the seconds it waited
        between the head being read and the app starting on it (0 when unknown), stalls
        (:meth:`stalled`) left out."""
        return 0.0

    def request_finished(self, client: tuple[str, int] | None) -> None:
        """The app finished the request."""

    def stalled(self) -> contextlib.AbstractContextManager[None]:
        """A stretch in which the server's own work (a reload) stalls the event loop: the
        time does not count against the queue timeout of requests waiting through it."""
        return self.stalls.stalled()


class AdmissionMiddleware:
    """Rate limits, admission slots and the total time limit of every API request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        slots: Slots,
        rate_limits: RateLimits,
        key_store: KeyStore,
        counters: Counters,
        request_timeout: float,
        tracker: Callable[[], RequestTracker],
    ) -> None:
        self.app = app
        self.slots = slots
        self.rate_limits = rate_limits
        self.key_store = key_store
        self.counters = counters
        self.request_timeout = request_timeout
        self.deadlines = Deadlines(request_timeout)
        # Looked up per request: the server installs its connection guard after the app
        # (and this middleware) is built.
        self.tracker = tracker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracker = self.tracker()
        client = scope.get("client")
        waited = tracker.request_started(client)
        try:
            if scope["path"] in EXEMPT_PATHS:
                await self.app(scope, receive, send)
                return
            if waited > self.slots.queue_timeout:  # refused before any other work
                await self._overloaded(send, "backlog")
                return
            wait = self._rate_limited(scope)
            if wait:
                await send_error(
                    send,
                    429,
                    "rate_limited",
                    "this API key sent more requests than its rate limit; retry later",
                    retry_after=max(1, math.ceil(wait)),
                )
                return
            refused = await self.slots.acquire(waited, tracker.stalls)
            if refused is not None:
                await self._overloaded(send, refused)
                return
            try:
                await self._run(scope, receive, send)
            finally:
                self.slots.release()
        finally:
            tracker.request_finished(client)

    async def _overloaded(self, send: Send, reason: str) -> None:
        self.counters.reject(reason)
        await send_error(
            send,
            503,
            "overloaded",
            "the server is at capacity; retry later",
            retry_after=OVERLOADED_RETRY_AFTER,
        )

    def _rate_limited(self, scope: Scope) -> float:
        try:
            keys = self.key_store.keys()
        except KeyStoreError:
            return 0.0  # the route answers 503 auth_unavailable
        if self.rate_limits.default_rate <= 0 and not any(k.rate_per_second for k in keys):
            return 0.0  # no limit anywhere: spare every request the key's hash
        presented = Headers(scope=scope).get(HEADER)
        key = match_key(keys, presented) if presented else None
        if key is None:
            return 0.0
        wait = self.rate_limits.take(key)
        if wait:
            self.counters.reject("rate_limited")
            self.counters.rate_limited.labels(key.name).inc()
        return wait

    async def _run(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        deadline = self.deadlines.enter()
        try:
            await self.app(scope, receive, send_tracking)
        except asyncio.CancelledError:
            if not deadline.expired:
                raise  # cancelled for another reason (the client went away, shutdown)
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            self.counters.reject("request_timeout")
            route = getattr(scope.get("route"), "path", "-")
            log.warning("request to %s passed %.1f s; answered 503", route, self.request_timeout)
            if started:  # half a response is out: only closing the connection is honest
                raise TimeoutError("the request passed its time limit") from None
            await send_error(
                send,
                503,
                "timeout",
                "the request took too long; retry later",
                retry_after=OVERLOADED_RETRY_AFTER,
            )
        finally:
            self.deadlines.leave(deadline)
