"""Connection limits below the app: how many connections, how long and how big a request head.

Uvicorn has no cap on open connections (its ``limit_concurrency`` answers a plain-text 503
*after* reading a request head, and keeps the connection), no time limit on sending a request
head (its keep-alive timer runs only between requests, and stops at the first byte of the
next one), and with httptools no limit on a head's size. A client could so hold a connection,
and memory, forever by sending half a request.

:class:`ConnectionGuard` closes those gaps without touching uvicorn's protocol: it is the
``http`` protocol factory handed to ``uvicorn.Config`` (a public option), and each
connection it makes is a :class:`GuardedConnection` that *wraps* an ordinary uvicorn protocol
object, passing every ``asyncio.Protocol`` call through to it, and in front of it

- refuses a connection past ``max_connections`` with 503 ``overloaded`` (JSON, ``Retry-After``)
  and closes it before reading anything;
- closes a connection whose request head is not complete ``header_timeout`` seconds after the
  connection opened or the previous response ended (408 ``request_timeout`` when part of a
  head had arrived; silently when nothing had);
- answers 431 ``header_too_large`` and closes when a head passes ``max_header_bytes`` before
  its end, so a 32 MiB header is never read whole, and no body behind it at all;
- sheds load before any parsing: a complete request head that would wait longer than
  ``queue_timeout`` seconds in the event loop's backlog (:class:`Backlog`: the loop's
  measured time for the requests ahead of it and for its own declared body), or that finds
  ``max_requests`` requests already in the server, is answered 503 ``overloaded`` with
  ``Retry-After`` from here, and the connection closed, without reaching uvicorn's parser or the app. Such a
  refusal costs microseconds, where one answered by the app costs a pass through every
  middleware: under a crowd, cheap refusals are what keeps the admitted requests fast.
- keeps the event loop's passes short while new connections set up (a new connection's
  first request goes through :data:`NEW_CONNECTION_PASSES` passes, a keep-alive request
  through one), counts a first request's set-up in its wait, and refuses a connection made
  while the loop is behind at its first bytes (503 ``overloaded``; probes pass), before
  uvicorn's protocol is made for it;
- leaves a reload's stall out of every wait and measurement (:meth:`Backlog.stalled`).

The app tells the guard when a request starts and ends (:mod:`serving.admission` calls
:meth:`ConnectionGuard.request_started` and :meth:`ConnectionGuard.request_finished` with the
ASGI ``client`` address); the body and total-time limits are ASGI-level
(:mod:`serving.body_limit`, :mod:`serving.admission`). Malformed HTTP (a bad request line, bad
bytes in the target, two ``Content-Length`` headers) is refused by uvicorn's parser itself,
with a plain-text 400 and a closed connection (docs/http-api.md, "Limits").
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from serving.admission import (
    EXEMPT_PATHS,
    OVERLOADED_RETRY_AFTER,
    Counters,
    RequestTracker,
    StallClock,
    error_response_bytes,
)
from serving.config import Settings

HEAD_END = b"\r\n\r\n"
#: After the guard's own error answer: how long to wait before closing, and how many bytes
#: of input to read and discard meanwhile (as a web server's "lingering close").
LINGER_SECONDS = 1.0
LINGER_BYTES = 1024 * 1024
_REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large", 503: "Unavailable"}


@functools.lru_cache(maxsize=16)
def raw_error(status: int, code: str, message: str, *, retry_after: int | None = None) -> bytes:
    """A complete HTTP/1.1 error response with the API's JSON body, closing the connection
    (built once per kind: under a crowd, refusals are most of what the server sends)."""
    body = error_response_bytes(status, code, message)
    head = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    if retry_after is not None:
        head.append(f"retry-after: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


CONTENT_LENGTH = b"\r\ncontent-length:"


def declared_length(head: bytes) -> int:
    """The ``Content-Length`` of a complete request head (the bytes before its blank line),
    0 when it has none or it is not a number (uvicorn's parser refuses such a head)."""
    at = head.lower().find(CONTENT_LENGTH)
    if at < 0:
        return 0
    at += len(CONTENT_LENGTH)
    end = head.find(b"\r\n", at)
    value = head[at : end if end >= 0 else len(head)].strip()
    return int(value) if value.isdigit() else 0


def default_protocol() -> type[asyncio.Protocol]:
    """Uvicorn's HTTP/1.1 protocol as ``http="auto"`` picks it: httptools when installed."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools is a dependency of the project
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol


#: The answer to a request the loop has no time for (backlog or a new connection it cannot fit).
AT_CAPACITY = raw_error(
    503, "overloaded", "the server is at capacity; retry later", retry_after=OVERLOADED_RETRY_AFTER
)

Peer = tuple[str, int]
#: Weight of the newest measurement in the backlog's running mean of the loop's time per request.
COST_WEIGHT = 0.05
#: A request's state in the server, as the guard sees it.
IDLE, QUEUED, RUNNING = 0, 1, 2


#: Event-loop passes a new connection's first request goes through before the app starts on
#: it: the accept, the transport and protocol made, ``connection_made``, its head read, its
#: task run. Each pass lasts as long as all the work ready in it.
NEW_CONNECTION_PASSES = 5
#: Of those, the passes still ahead once the connection is made: its head read, its task run.
PASSES_AFTER_MADE = 2
#: Weight of the newest pass in the running mean of the loop's pass length.
LAG_WEIGHT = 0.25


class CostFit:
    """A running least-squares fit of the loop's time per request, ``y`` seconds, to
    ``a + b * x`` for a request declaring ``x`` bytes of body.

    Running means of ``x``, ``y``, ``x * x`` and ``x * y`` (the newest weighing
    :data:`COST_WEIGHT`) give the slope ``b`` (the covariance of ``x`` and ``y`` over the
    variance of ``x``, at least 0) and the intercept ``a``. Requests all of one size give no
    slope: ``a`` is then their mean time, as a plain running mean would give; a mix of sizes
    (1-id requests and 1,000-id batches) gives each size its own time.
    """

    __slots__ = ("mx", "mxx", "mxy", "my", "started")

    def __init__(self) -> None:
        self.mx = self.my = self.mxx = self.mxy = 0.0
        self.started = False

    def add(self, x: float, y: float) -> tuple[float, float]:
        """Add one request's time ``y`` (s) for its ``x`` body bytes; the fit ``(a, b)``."""
        if not self.started:  # the first measurement is the whole mean
            self.started = True
            self.mx, self.my, self.mxx, self.mxy = x, y, x * x, x * y
        else:
            w = COST_WEIGHT
            self.mx += (x - self.mx) * w
            self.my += (y - self.my) * w
            self.mxx += (x * x - self.mxx) * w
            self.mxy += (x * y - self.mxy) * w
        variance = self.mxx - self.mx * self.mx
        if variance <= self.mxx * 1e-6:  # one size only (or rounding): no slope to fit
            return self.my, 0.0
        slope = max(0.0, (self.mxy - self.mx * self.my) / variance)
        intercept = self.my - slope * self.mx
        if intercept < 0:  # the small requests look free: share the time by bytes instead
            return 0.0, self.my / self.mx
        return intercept, slope


class Setup:
    """One new connection's set-up: from its protocol being made (loop time ``at``, stall
    clock ``stalls``) until its first head is read, or it turns out to send nothing yet."""

    __slots__ = ("at", "open", "stalls")

    def __init__(self, at: float, stalls: float) -> None:
        self.at, self.stalls, self.open = at, stalls, True


class Backlog:
    """Requests whose head is read, and how long the event loop takes to work through them.

    ``queued`` counts requests handed to uvicorn whose app call has not started: in this
    server most requests are one synchronous stretch of work, so under load they wait as
    tasks in the event loop's ready queue, in arrival order, not for an admission slot.
    ``running`` counts those the app is working on. The time between two consecutive request
    starts while others were waiting is the loop's wall time for the first of the two on
    this machine under its current load; :class:`CostFit` fits it, as a running estimate,
    to ``cost`` seconds per request plus ``byte_cost`` seconds per byte of its declared
    body, since a 1,000-id batch takes several times the loop's time of a 1-id request.
    ``queued_bytes`` sums the declared bodies of the queued requests, so a new request would
    wait about ``queued * cost + queued_bytes * byte_cost`` (:meth:`expected_wait`).

    ``setting_up`` counts new connections whose first request is on its way (made, its
    head due in the next pass): such a request goes through :data:`NEW_CONNECTION_PASSES`
    passes, so while there are any, one pass may hold only the oldest one's time left
    divided by the passes it still has ahead (:meth:`budget`, at least
    ``queue_timeout / NEW_CONNECTION_PASSES``). ``lag`` is a running mean of the loop's
    pass length (measured while requests or connections wait; 0 when none do), what a new
    connection waits per pass.

    Time inside :meth:`stalled` (a reload's loading) is not measured: neither the gaps
    between request starts nor the passes, and the waits of :meth:`waited` leave it out.
    """

    def __init__(
        self, queue_timeout: float, max_requests: int, stalls: StallClock | None = None
    ) -> None:
        self.queue_timeout = queue_timeout
        self.max_requests = max_requests
        self.stalls = stalls or StallClock()
        self.queued = 0
        self.running = 0
        self.setting_up = 0
        self._setups: deque[Setup] = deque()  # in the order made; ended ones left lazily
        self.queued_bytes = 0  # declared body bytes of the queued requests
        self.fit = CostFit()
        self.cost = 0.0  # seconds per request; 0 until measured: nothing is refused on a guess
        self.byte_cost = 0.0  # seconds per declared body byte, on top of ``cost``
        self._last_bytes = 0  # declared body bytes of the request started last
        self.lag = 0.0  # seconds, mean pass of the loop while measured
        self._last_start: float | None = None  # loop time of the last start, when others waited
        self._ticking = False
        self._tick_at: float | None = None

    @property
    def pass_budget(self) -> float:
        """Seconds of work one pass of the loop may hold for a new connection's first
        request to start within the queue timeout."""
        return self.queue_timeout / NEW_CONNECTION_PASSES

    def budget(self) -> float:
        """Seconds of queued requests the loop may hold now: the queue timeout, or, while
        new connections set up, the oldest one's time left per pass it has ahead (at least
        :attr:`pass_budget`)."""
        setups = self._setups
        while setups and not setups[0].open:
            setups.popleft()
        if not setups:
            return self.queue_timeout
        left = self.queue_timeout - self.waited(setups[0].at, setups[0].stalls)
        return min(self.queue_timeout, max(self.pass_budget, left / PASSES_AFTER_MADE))

    def begin_setup(self, at: float, stalls: float) -> Setup:
        """A new connection made now, its protocol made at loop time ``at`` (stall clock
        ``stalls``), whose first request may be on its way."""
        setups = self._setups
        while setups and not setups[0].open:
            setups.popleft()
        setup = Setup(at, stalls)
        setups.append(setup)
        self.setting_up += 1
        return setup

    def end_setup(self, setup: Setup) -> None:
        """The connection's set-up is over."""
        if setup.open:
            setup.open = False
            self.setting_up -= 1

    def expected_wait(self, body_bytes: int = 0) -> float:
        """Seconds until the app is done with a request whose head is complete now, declaring
        ``body_bytes`` of body: the loop's time for the requests queued ahead of it and for
        its own body's bytes beyond a small request's (0 with none ahead, so the server never
        refuses everything on a stale estimate)."""
        if not self.queued:
            return 0.0
        return self.queued * self.cost + (self.queued_bytes + body_bytes) * self.byte_cost

    def refusal(self, waited: float = 0.0, body_bytes: int = 0) -> str | None:
        """Why a new request declaring ``body_bytes`` of body does not fit, or ``None`` when
        it does: ``overloaded`` with ``max_requests`` already in the server, ``backlog`` when
        its expected wait (:meth:`expected_wait`) passes :meth:`budget`, or, with ``waited``
        seconds already spent (a new connection's set-up), when the two together pass the
        queue timeout."""
        if self.queued + self.running >= self.max_requests:
            return "overloaded"
        if not self.queued:
            return None
        expected = self.expected_wait(body_bytes)
        if expected > self.budget() or waited + expected > self.queue_timeout:
            return "backlog"
        return None

    def behind(self, waited: float) -> bool:
        """Whether a connection made now, ``waited`` seconds after its protocol was made,
        could not have its first request started within the queue timeout: requests wait,
        and the passes it has ahead, as long as the loop's mean pass (or the requests
        queued now), would take longer than its time left."""
        if not self.queued:
            return False
        ahead = PASSES_AFTER_MADE * max(self.lag, self.expected_wait())
        return ahead > self.queue_timeout - waited

    def waited(self, since: float, stalled_since: float) -> float:
        """Seconds from loop time ``since`` to now, less the stalls from the stall-clock
        reading ``stalled_since`` on."""
        now = asyncio.get_running_loop().time()
        return now - since - (self.stalls.now() - stalled_since)

    def started(self, now: float, body_bytes: int = 0) -> None:
        """A queued request declaring ``body_bytes`` of body reached the app at loop time
        ``now``."""
        self.queued -= 1
        self.queued_bytes -= body_bytes
        self.running += 1
        if self._last_start is not None and not self.stalls.active:
            # One long stall (a slow request) counts as at most the queue timeout.
            gap = min(now - self._last_start, self.queue_timeout)
            self.cost, self.byte_cost = self.fit.add(self._last_bytes, gap)
        self._last_start = now if self.queued > 0 else None
        self._last_bytes = body_bytes

    def watch(self) -> None:
        """Measure the loop's passes (:attr:`lag`) while requests or connections wait: a
        callback that schedules itself again runs once per pass."""
        if not self._ticking:
            self._ticking = True
            self._tick_at = None
            asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self.stalls.active:
            self.lag, now_at = 0.0, None  # a stall says nothing of the requests' passes
        else:
            if self._tick_at is not None:
                self.lag += (now - self._tick_at - self.lag) * LAG_WEIGHT
            now_at = now
        if self.queued or self.setting_up:
            self._tick_at = now_at
            loop.call_soon(self._tick)
        else:  # nothing waits: the next pass is short, and an idle loop must not spin
            self._ticking, self._tick_at, self.lag = False, None, 0.0

    @contextlib.contextmanager
    def stalled(self) -> Iterator[None]:
        """The block's stall of the loop (a reload) counts neither into :attr:`cost` and
        :attr:`lag` nor into the waits of requests waiting through it."""
        with self.stalls.stalled():
            try:
                yield
            finally:
                self._last_start = None
                self._tick_at = None
                self.lag = 0.0


class ConnectionGuard(RequestTracker):
    """The open connections of one server and their limits; a uvicorn ``http`` factory."""

    def __init__(
        self,
        *,
        max_connections: int,
        max_header_bytes: int,
        header_timeout: float,
        queue_timeout: float = 0.025,
        max_requests: int = 128,
        max_body_bytes: int = 8 * 1024 * 1024,
        counters: Counters | None = None,
        inner: type[asyncio.Protocol] | None = None,
    ) -> None:
        super().__init__()
        self.max_connections = max_connections
        # A declared body counts toward the backlog's expected wait up to this (a bigger one
        # is refused 413 by the app).
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.header_timeout = header_timeout
        self.backlog = Backlog(queue_timeout, max_requests, self.stalls)
        self.counters = counters
        self.inner = inner or default_protocol()
        self.open: dict[Peer, GuardedConnection] = {}

    def __call__(self, **kwargs: Any) -> asyncio.Protocol:
        """A new connection: uvicorn calls the factory with its protocol's arguments."""
        return GuardedConnection(self, functools.partial(self.inner, **kwargs))

    def reject(self, reason: str) -> None:
        """Count a refused or closed connection."""
        if self.counters is not None:
            self.counters.reject(reason)

    def _gauge(self) -> None:
        if self.counters is not None:
            self.counters.connections.set(len(self.open))

    def request_started(self, client: Peer | None) -> float:
        """The app got a request of ``client``'s connection: its head is complete. Returns
        the seconds since the head's end was read (the wait in the event loop's backlog),
        stalls left out."""
        connection = self.open.get((client[0], client[1])) if client else None
        if connection is None:
            return 0.0
        connection.head_done()
        now = asyncio.get_running_loop().time()
        if connection.state == QUEUED:
            connection.state = RUNNING
            self.backlog.started(now, connection.body_bytes)
        return self.backlog.waited(connection.head_at, connection.head_stalls)

    def stalled(self) -> contextlib.AbstractContextManager[None]:
        """A reload's stall: left out of the waits and of the backlog's measurements."""
        return self.backlog.stalled()

    def request_finished(self, client: Peer | None) -> None:
        """The app answered: the next request's head must come within the time limit."""
        connection = self.open.get((client[0], client[1])) if client else None
        if connection is not None:
            connection.leave_backlog()
            connection.await_head()


#: The inner protocol of a connection refused before uvicorn's was made (asyncio's no-op one).
_NOT_MADE = asyncio.Protocol()


class GuardedConnection(asyncio.Protocol):
    """One connection: the limits of :class:`ConnectionGuard` around uvicorn's protocol."""

    def __init__(self, guard: ConnectionGuard, inner: Callable[[], asyncio.Protocol]) -> None:
        self.guard = guard
        # uvicorn's protocol, made only for a connection within the cap: a refused one
        # costs no parser, timers or bookkeeping of uvicorn's.
        self.make_inner = inner
        self.inner: asyncio.Protocol = _NOT_MADE
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.inner_open = False  # the inner protocol got ``connection_made``
        self.answered = False  # the guard answered and closes: input is discarded
        self.discarded = 0
        self.awaiting = True  # reading a request head
        self.head_bytes = 0
        self.head_at = 0.0  # loop time the last request head's end was read
        self.tail = b""  # last bytes seen, for a head end split across reads
        self.start = b""  # the head's first bytes (its request line), for exempt paths
        self.state = IDLE  # the connection's request: IDLE, QUEUED or RUNNING (Backlog)
        self.body_bytes = 0  # the request's declared body (Content-Length), capped
        self.timer: asyncio.TimerHandle | None = None
        # Made by the loop's pass after the accept's: a first request sent at once has
        # waited since then (its set-up, counted in ``Backlog.setting_up`` meanwhile).
        self.created_at = asyncio.get_running_loop().time()
        self.created_stalls = guard.stalls.now()
        self.head_stalls = self.created_stalls
        self.setup: Setup | None = None
        # Refused at its first bytes unless they ask for a probe: made while the loop was
        # behind (``Backlog.behind``), so uvicorn's protocol was not made for it.
        self.doomed = False
        self.early = b""  # a doomed connection's bytes until its request line is complete

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, but have its methods.
        self.transport = transport  # type: ignore[assignment]
        guard = self.guard
        if len(guard.open) >= guard.max_connections:
            guard.reject("connections")
            self._answer(
                raw_error(
                    503, "overloaded", "too many open connections; retry later", retry_after=1
                )
            )
            return
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = (str(peer[0]), int(peer[1]))
            guard.open[self.peer] = self
            guard._gauge()
        backlog = guard.backlog
        backlog.watch()
        if backlog.behind(backlog.waited(self.created_at, self.created_stalls)):
            self.doomed = True
            self.await_head()
            return
        self.setup = backlog.begin_setup(self.created_at, self.created_stalls)
        # The set-up lasts until the first head is read, or two passes (its data did not
        # come at once: an idle connection waits as any other).
        asyncio.get_running_loop().call_soon(self._setup_pass)
        self._make_inner()
        self.await_head()

    def _make_inner(self) -> None:
        assert self.transport is not None
        self.inner_open = True
        self.inner = self.make_inner()
        self.inner.connection_made(self.transport)

    def _setup_pass(self) -> None:
        if self.setup is not None:
            asyncio.get_running_loop().call_soon(self.end_setup)

    def end_setup(self) -> None:
        """The connection's set-up is over (its first head read, or not sent at once)."""
        if self.setup is not None:
            self.guard.backlog.end_setup(self.setup)
            self.setup = None

    def data_received(self, data: bytes) -> None:
        if self.answered:
            self.discarded += len(data)
            if self.discarded > LINGER_BYTES and self.transport is not None:
                # Stop reading; the client still has the rest of the linger to read the answer.
                self.transport.pause_reading()
            return
        if self.doomed:
            data = self.early + data
            if b"\r\n" not in data[:256] and len(data) < 256:
                self.early = data  # the request line is not complete yet
                return
            self.doomed, self.early, self.start = False, b"", data[:256]
            if not self.exempt():
                self.guard.reject("backlog")
                self._answer(AT_CAPACITY)
                return
            self._make_inner()  # a probe: served whatever the load
        if self.awaiting:
            if not self.head_bytes and not self.tail:
                self.start = data[:256]
            seen = self.tail + data
            end = seen.find(HEAD_END)
            size = self.head_bytes + (
                len(data) if end < 0 else end + len(HEAD_END) - len(self.tail)
            )
            if size > self.guard.max_header_bytes:
                self.guard.reject("header_too_large")
                self._answer(raw_error(431, "header_too_large", "the request head is too large"))
                return
            if end < 0:
                self.head_bytes, self.tail = size, seen[-(len(HEAD_END) - 1) :]
            else:
                # The declared body, when the whole head came in this read (almost always:
                # a head is a few hundred bytes); else counted as none.
                self.body_bytes = (
                    min(declared_length(data[:end]), self.guard.max_body_bytes)
                    if not self.head_bytes and not self.tail
                    else 0
                )
                self.head_done()
                self.head_at = asyncio.get_running_loop().time()
                self.head_stalls = self.guard.stalls.now()
                waited = 0.0
                if self.setup is not None:  # sent at once on a new connection: set-up counts
                    waited = self.guard.backlog.waited(self.created_at, self.created_stalls)
                    self.end_setup()
                if not self.enter_backlog(waited):
                    return
        self.inner.data_received(data)  # type: ignore[attr-defined]

    def eof_received(self) -> bool | None:
        if self.answered or not self.inner_open:
            return None  # close
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        self.end_setup()
        self.leave_backlog()
        if self.peer is not None and self.guard.open.get(self.peer) is self:
            del self.guard.open[self.peer]
            self.guard._gauge()
        if self.inner_open:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner_open:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner_open:
            self.inner.resume_writing()

    # -- load shedding ----------------------------------------------------------------------
    def enter_backlog(self, waited: float = 0.0) -> bool:
        """A request head is complete: count it in the backlog, or refuse it (503, closed)
        when it does not fit (``waited``: seconds it already spent, a new connection's
        set-up); ``False`` when refused. Probes (:data:`EXEMPT_PATHS`) always pass,
        uncounted."""
        self.leave_backlog()  # a request uvicorn answered without the app (it never started)
        if self.exempt():
            return True
        backlog = self.guard.backlog
        refused = backlog.refusal(waited, self.body_bytes)
        if refused is not None:
            self.guard.reject(refused)
            self._answer(AT_CAPACITY)
            return False
        backlog.queued += 1
        backlog.queued_bytes += self.body_bytes
        backlog.watch()
        self.state = QUEUED
        return True

    def leave_backlog(self) -> None:
        """The connection's request finished, or will never start: uncount it."""
        if self.state == QUEUED:
            self.guard.backlog.queued -= 1
            self.guard.backlog.queued_bytes -= self.body_bytes
        elif self.state == RUNNING:
            self.guard.backlog.running -= 1
        self.state = IDLE

    def exempt(self) -> bool:
        """Whether the head's request line targets a probe path (never refused)."""
        parts = self.start.split(b" ", 2)
        if len(parts) < 2:
            return False
        path = parts[1].split(b"?", 1)[0]
        return path.decode("latin-1") in EXEMPT_PATHS

    # -- the head's limits -----------------------------------------------------------------
    def await_head(self) -> None:
        """Start reading a new request head, with its time limit."""
        if self.answered:
            return
        self.awaiting, self.head_bytes, self.tail = True, 0, b""
        self._cancel()
        loop = asyncio.get_running_loop()
        # A pipelined request already read counts its wait from here, not from its arrival
        # behind the request just answered.
        self.head_at = loop.time()
        self.head_stalls = self.guard.stalls.now()
        self.timer = loop.call_later(self.guard.header_timeout, self._head_timed_out)

    def head_done(self) -> None:
        """The head is complete: its limits no longer apply."""
        self.awaiting = False
        self._cancel()

    def _head_timed_out(self) -> None:
        self.timer = None
        if self.head_bytes or self.tail:
            self.guard.reject("header_timeout")
            self._answer(raw_error(408, "request_timeout", "the request head came too slowly"))
        elif self.transport is not None:  # an idle connection: just close it
            self.guard.reject("idle_timeout")
            self.transport.close()

    def _answer(self, response: bytes) -> None:
        """Send the guard's own error and close: the write side at once, the connection
        :data:`LINGER_SECONDS` later; meanwhile up to :data:`LINGER_BYTES` of input are read
        and discarded, then reading stops.

        Closing at once, with the client's input still arriving, would make the kernel
        reset the connection, and a reset can destroy the answer before the client reads it.
        """
        self._cancel()
        self.awaiting, self.answered = False, True
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(response)
        if transport.can_write_eof():
            transport.write_eof()
        self.timer = asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)

    def _cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def guard_for(settings: Settings, counters: Counters | None) -> ConnectionGuard:
    """The guard of ``python -m serving`` for ``settings``."""
    return ConnectionGuard(
        max_connections=settings.max_connections,
        max_header_bytes=settings.max_header_bytes,
        header_timeout=settings.header_timeout_seconds,
        queue_timeout=settings.queue_timeout_ms / 1000,
        max_requests=settings.max_inflight + settings.max_queue,
        max_body_bytes=settings.max_body_bytes,
        counters=counters,
    )
