"""``python -m bench overload``: the server under overload and hostile clients.

A ``python -m serving`` process on 127.0.0.1 (a demo champion and snapshot, default limits
except the head and body time limits, set to :data:`SLOW_CLIENT_TIMEOUT` seconds so the
slow-client step stays short) is driven by this process's own asyncio client on raw
sockets, step by step:

- 1 id per request over 1 / 8 / 32 / 128 keep-alive connections (closed loop);
- 1,024 connections with a 2 s client timeout, and 512 connections sending 1,000-id batches:
  admitted and refused (503 ``overloaded``) counts and latencies, client timeouts;
- 200 connections sending half a request (half a head, or a head and half a body): how many
  the server closed, and when;
- a 32 MiB header: the answer, and how much was sent before it;
- 20 uploads of 8 MiB held open (started one after another): admitted and refused, and the
  server's RSS growth;
- malformed and strictness rows: the status and content type of each answer.

A refused client waits the answer's ``Retry-After`` (jittered), as a real client should. The
server runs on one core and the client on the others (:func:`split_cores`), and the client
reports its own event loop's lag beside each step's latencies (first byte sent to last byte
read), so that a reader can tell the client's time from the server's. With ``--baseline
DIR`` the 1-id steps also run against another checkout's server, in alternating rounds.

Every loop is bounded in time; sizes default to a run of about a minute (``--quick``: a
smoke test; ``python -m bench.overload --full``: longer steps). The figures are for
comparing runs on one machine, not absolute capacity; say the load average with them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import uvloop  # the client's loop: as the server's, so the client costs less than it

from bench.report import Figure, print_figures
from bench.serving import Connection, Prepared, _env, post, prepare, server_process

BENCH = "overload"
#: Seconds the benchmark's server gives a client to send a request head, and a body.
SLOW_CLIENT_TIMEOUT = 2
CLIENT_TIMEOUT = 2.0  # seconds a client of the 1,024-connection step waits for an answer
ROUNDS = 3  # alternating rounds per server in the --baseline comparison
REFUSED_BACKOFF = 0.1  # seconds an impolite refused client waits (one without Retry-After)


@dataclass(frozen=True)
class Sizes:
    """How big and how long each step is."""

    connections: tuple[int, ...]
    step_seconds: float
    crowd: int  # connections of the overload step (1,024 in the issue)
    batch_connections: int  # connections sending 1,000-id batches (512)
    half_sent: int  # connections sending half a request (200)
    uploads: int  # concurrent big uploads (20)
    upload_bytes: int  # size of each (8 MiB)
    customers: int  # demo customers to fit and score


QUICK = Sizes((1, 8), 0.5, 64, 16, 20, 4, 1024 * 1024, 1000)
DEFAULT = Sizes((1, 8, 32, 128), 2.0, 1024, 512, 200, 20, 8 * 1024 * 1024 - 4096, 2000)
FULL = Sizes((1, 8, 32, 128), 5.0, 1024, 512, 200, 20, 8 * 1024 * 1024 - 4096, 2000)


# --- the server ------------------------------------------------------------------------------


@dataclass
class Served:
    port: int
    pid: int


@contextmanager
def server(p: Prepared, *, root: Path | None = None, **settings: str) -> Iterator[Served]:
    """``python -m serving`` on the prepared champion (the code of checkout ``root``, default
    this one); yields its port and process id."""
    # Another checkout may not know this one's settings: it runs on its defaults.
    ours = {
        "CHURN_HEADER_TIMEOUT_SECONDS": str(SLOW_CLIENT_TIMEOUT),
        "CHURN_BODY_TIMEOUT_SECONDS": str(SLOW_CLIENT_TIMEOUT),
        **settings,
    }
    env = _env(
        MLFLOW_TRACKING_URI=p.tracking_uri,
        CHURN_SCORES_DIR=str(p.scores_dir),
        CHURN_API_KEYS_FILE=str(p.keys_file),
        CHURN_MODEL_CACHE_DIR=str(p.work / "cache"),
        **({"PYTHONPATH": str(root)} if root is not None else ours),
    )
    args = [sys.executable, "-m", "serving", "--port", "{port}"]
    with ExitStack() as stack:
        with on_cores(SERVER_CORES):  # the server process inherits them
            port, pid = stack.enter_context(server_process(args, env, p.work, "/readyz"))
        yield Served(port, pid)


def split_cores() -> tuple[set[int], set[int]]:
    """The cores of the server and of the client: the first of this process's cores, and
    the others (both all of them on a one-core machine)."""
    cores = sorted(os.sched_getaffinity(0))
    return ({cores[0]}, set(cores[1:])) if len(cores) > 1 else (set(cores), set(cores))


SERVER_CORES, CLIENT_CORES = split_cores()


@contextmanager
def on_cores(cores: set[int]) -> Iterator[None]:
    """Run this process on ``cores`` inside the block (a process started inside inherits
    them), on the cores it had before after it. With the server on one core and the client
    on the other, the client's own CPU does not take the server's and stretch its latencies."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` now, MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


# --- the client ------------------------------------------------------------------------------


@dataclass
class Tally:
    """What came back in one step: latencies (s) by outcome, failures, and the client's own
    event-loop lag (s), so that client-side time can be told from the server's."""

    admitted: list[float] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)  # 503 overloaded / 429
    other: int = 0  # any other status
    timeouts: int = 0  # no answer within the client's timeout
    errors: int = 0  # connection reset or closed without an answer
    seconds: float = 0.0
    lag: list[float] = field(default_factory=list)  # client loop lateness, sampled
    fresh: list[float] = field(default_factory=list)  # admitted, first on a new connection
    #: The refusals by status and JSON error code (``"503 overloaded"``), and how many of
    #: them came without a ``Retry-After``.
    codes: Counter[str] = field(default_factory=Counter)
    no_retry_after: int = 0

    def rate(self) -> float:
        """Admitted requests per second."""
        return len(self.admitted) / self.seconds if self.seconds else math.nan

    def figures(self, step: str, *, target: str = "") -> list[Figure]:
        rate = self.rate()
        note = f"other {self.other}, errors {self.errors}, timeouts {self.timeouts}"
        lag = f"client loop lag p50 {ms(self.lag, 0.5):.2f} / p99 {ms(self.lag, 0.99):.2f} ms"
        return [
            Figure(
                BENCH,
                f"{step}: admitted",
                rate,
                "req/s",
                note=f"{len(self.admitted)} answered 200, {len(self.refused)} refused; {note}",
            ),
            Figure(
                BENCH,
                f"{step}: admitted p99",
                ms(self.admitted, 0.99),
                "ms",
                target,
                note=f"p50 {ms(self.admitted, 0.5):.2f} ms; first on a new connection: "
                f"{len(self.fresh)}, p99 {ms(self.fresh, 0.99):.2f} ms; {lag}",
            ),
            Figure(
                BENCH,
                f"{step}: refused 503",
                len(self.refused),
                "requests",
                note=f"{note}; {dict(self.codes)}, {self.no_retry_after} without Retry-After",
            ),
            Figure(
                BENCH,
                f"{step}: refused max",
                max(self.refused, default=math.nan) * 1000,
                "ms",
                "< 50 ms" if target else "",
                note=f"p50 {ms(self.refused, 0.5):.2f} ms, p99 {ms(self.refused, 0.99):.2f} ms",
            ),
            Figure(
                BENCH,
                f"{step}: client timeouts",
                self.timeouts,
                "requests",
                "0 for admitted" if target else "",
            ),
        ]


def ms(values: list[float], quantile: float) -> float:
    """The ``quantile`` of ``values`` (seconds), in milliseconds; NaN when empty."""
    return float(np.quantile(values, quantile)) * 1000 if values else math.nan


async def exchange(conn: Connection, request: bytes) -> tuple[int, float, bytes]:
    """Send ``request`` on ``conn``; the status, ``Retry-After`` (s, 0 when none) and body
    of the answer, read to its last byte."""
    writer, reader = conn.writer, conn.reader
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length, retry_after = 0, 0.0
    for line in lines[1:]:
        name = line[:15].lower()
        if name == b"content-length:":
            length = int(line[15:])
        elif name[:12] == b"retry-after:":
            retry_after = float(line[12:])
    body = await reader.readexactly(length)
    return int(lines[0].split()[1]), retry_after, body


def error_code(body: bytes) -> str:
    """The ``error`` of a JSON error body, or what the body is when it is not one."""
    try:
        answer = json.loads(body)
    except ValueError:
        return "not JSON"
    return str(answer.get("error")) if isinstance(answer, dict) else "not an object"


async def loop_lag(stop: float, samples: list[float], every: float = 0.005) -> None:
    """Until ``stop``, how late this process's event loop wakes from a ``every``-second sleep
    (s): the time the client itself adds to each latency it measures."""
    while (now := time.perf_counter()) < stop:
        await asyncio.sleep(every)
        samples.append(time.perf_counter() - now - every)


async def crowd(
    port: int,
    requests: list[bytes],
    connections: int,
    seconds: float,
    timeout: float,
    *,
    polite: bool = True,
) -> Tally:
    """``connections`` clients, each sending requests one after the other for ``seconds``
    (reconnecting when the server closes), each waiting at most ``timeout`` s for an answer.

    A latency runs from the request's first byte sent to its answer's last byte read (the
    connection is opened before). A refused client (503 or 429) waits the answer's
    ``Retry-After`` (1 to 1.5 times it, at random), as a real CRM client should
    (``polite``; else :data:`REFUSED_BACKOFF` s): a crowd that ignores it only measures how
    fast the server can say no.
    """
    tally = Tally()
    start = time.perf_counter()
    stop = start + seconds

    async def client(offset: int) -> None:
        i = offset
        conn: Connection | None = None
        while time.perf_counter() < stop:
            try:
                # asyncio.timeout, not wait_for: no extra task per request in the client
                async with asyncio.timeout(timeout):
                    fresh = conn is None
                    if conn is None:
                        conn = await Connection.open(port)
                    t0 = time.perf_counter()
                    status, retry_after, body = await exchange(conn, requests[i % len(requests)])
            except TimeoutError:
                tally.timeouts += 1
                if conn is not None:
                    conn.close()
                conn = None
                continue
            except (OSError, asyncio.IncompleteReadError):
                tally.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
                await asyncio.sleep(0.01)  # a reset connection: do not spin
                continue
            elapsed = time.perf_counter() - t0
            if status == 200:
                tally.admitted.append(elapsed)
                if fresh:  # this one also waited in the server's accept queue
                    tally.fresh.append(elapsed)
            elif status in (503, 429):
                tally.refused.append(elapsed)
                tally.codes[f"{status} {error_code(body)}"] += 1
                tally.no_retry_after += retry_after <= 0
                conn.close()  # a refused connection is closed by the server or by us
                conn = None
                # Jittered, as retries should be: a crowd refused at one instant that
                # comes back at one instant is a thundering herd of its own making.
                wait = retry_after * random.uniform(1.0, 1.5) if polite else REFUSED_BACKOFF
                await asyncio.sleep(max(0.0, min(wait, stop - time.perf_counter())))
            else:
                tally.other += 1
                tally.codes[f"{status} {error_code(body)}"] += 1
            i += connections
        if conn is not None:
            conn.close()

    lag = asyncio.create_task(loop_lag(stop, tally.lag))
    await asyncio.gather(*(client(c) for c in range(connections)))
    tally.seconds = time.perf_counter() - start
    await lag
    return tally


async def half_sent(port: int, count: int, body_request: bytes, wait: float) -> tuple[int, float]:
    """``count`` connections sending half a request (even: half the head; odd: the head and
    half the body); how many the server closed within ``wait`` s, and the latest close (s)."""
    head_end = body_request.index(b"\r\n\r\n") + 4
    closes: list[float] = []

    async def one(i: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        part = body_request[: head_end // 2] if i % 2 == 0 else body_request[: head_end + 3]
        t0 = time.perf_counter()
        writer.write(part)
        try:
            async with asyncio.timeout(wait):
                while await reader.read(65536):
                    pass
            closes.append(time.perf_counter() - t0)
        except (TimeoutError, OSError):
            pass
        finally:
            writer.close()

    await asyncio.gather(*(one(i) for i in range(count)))
    return len(closes), max(closes, default=math.nan)


async def big_header(port: int, key: str, size: int) -> tuple[int, int, float]:
    """A request with a ``size``-byte header: the status, bytes sent before it, seconds."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"POST /v1/scores HTTP/1.1\r\nHost: t\r\nX-API-Key: {key}\r\nX-Big: ".encode()
    sent = 0
    t0 = time.perf_counter()

    async def send() -> None:
        nonlocal sent
        writer.write(head)
        chunk = b"a" * 65536
        try:
            while sent < size:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
            writer.write(b"\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
        except OSError:
            pass

    sender = asyncio.create_task(send())
    try:
        status_line = await asyncio.wait_for(reader.readline(), 30)
        status = int(status_line.split()[1]) if status_line else 0
    except (OSError, TimeoutError, IndexError, ValueError):
        status = 0
    elapsed = time.perf_counter() - t0
    sender.cancel()
    writer.close()
    return status, sent, elapsed


async def uploads(p: Prepared, port: int, pid: int, count: int, size: int) -> dict[str, float]:
    """``count`` uploads of ``size`` bytes, each held open before its last KiB: admitted and
    refused counts, and the server's RSS growth while they are held (MiB).

    Each upload starts once the one before it is held (its app call has begun), so that no
    request is queued behind another when its head arrives: what refuses an upload here is
    the body memory budget, which this row measures, not the backlog estimate, which would
    refuse a big body behind a queued one depending on how the heads happened to line up."""
    body = b'{"customer_ids": ["' + b"a" * (size - 24) + b'"]}'
    before = rss_mib(pid)
    refused = admitted = 0
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    peak = before

    async def start_one() -> None:
        nonlocal refused
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = (
            f"POST /v1/scores HTTP/1.1\r\nHost: t\r\nX-API-Key: {p.key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        writer.write(head)
        answer = asyncio.create_task(reader.readline())
        try:
            for offset in range(0, len(body) - 1024, 256 * 1024):
                writer.write(body[offset : min(offset + 256 * 1024, len(body) - 1024)])
                await writer.drain()
                if answer.done():
                    break
        except OSError:
            pass
        await asyncio.sleep(0)
        if answer.done() or await _answered_soon(answer):
            refused += 1
            writer.close()
            return
        answer.cancel()
        held.append((reader, writer))

    for _ in range(count):
        await start_one()
    for _ in range(10):  # the server reads what was sent: sample its RSS meanwhile
        peak = max(peak, rss_mib(pid))
        await asyncio.sleep(0.1)
    for reader, writer in held:
        writer.write(body[-1024:])
        await writer.drain()
        if await asyncio.wait_for(reader.readline(), 30):
            admitted += 1
        writer.close()
    return {"admitted": admitted, "refused": refused, "rss": peak - before}


async def _answered_soon(answer: asyncio.Task[bytes]) -> bool:
    try:
        await asyncio.wait_for(asyncio.shield(answer), 0.2)
    except TimeoutError:
        return False
    return bool(answer.result())


async def raw_answer(port: int, payload: bytes) -> tuple[int, str]:
    """The status and content type of the answer to ``payload`` sent as is."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return 0, "closed"
    finally:
        writer.close()
    lines = head.decode("latin-1").split("\r\n")
    ctype = next(
        (v for k, _, v in (x.partition(": ") for x in lines[1:]) if k.lower() == "content-type"), ""
    )
    return int(lines[0].split()[1]), ctype.split(";")[0]


# --- the benchmark ---------------------------------------------------------------------------


def run(quick: bool, *, full: bool = False, baseline: Path | None = None) -> list[Figure]:
    """Every step of the overload table, with ``--quick`` sizes, default sizes or ``full``;
    with ``baseline`` (another checkout), the 1-id steps also against that checkout's server,
    in alternating rounds, and the ratio of the two throughputs."""
    sizes = QUICK if quick else FULL if full else DEFAULT
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # one descriptor per client connection, and the server's inherit this
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-overload-") as tmp:
        p = prepare(Path(tmp), n_customers=sizes.customers)
        with on_cores(CLIENT_CORES):
            if baseline is not None:
                with server(p) as served, server(p, root=baseline) as base:
                    figures += uvloop.run(_compare(p, served, base, sizes))
            with server(p) as served:
                figures += uvloop.run(_steps(p, served, sizes))
    return figures


async def _compare(p: Prepared, ours: Served, base: Served, sizes: Sizes) -> list[Figure]:
    """Closed-loop 1-id throughput and latency of both servers, in :data:`ROUNDS` alternating
    rounds: the medians of the rounds, and the ratios ours / baseline."""
    one = [post("/v1/scores", {"customer_ids": [i]}, {"X-API-Key": p.key}) for i in p.ids[:500]]
    figures = []
    for n in sizes.connections:
        runs: dict[str, list[Tally]] = {"ours": [], "baseline": []}
        for _ in range(ROUNDS):
            for name, port in (("baseline", base.port), ("ours", ours.port)):
                runs[name].append(await crowd(port, one, n, sizes.step_seconds / 2, 30.0))
        rate = {k: float(np.median([t.rate() for t in v])) for k, v in runs.items()}
        p50 = {k: float(np.median([ms(t.admitted, 0.5) for t in v])) for k, v in runs.items()}
        p99 = {k: float(np.median([ms(t.admitted, 0.99) for t in v])) for k, v in runs.items()}
        refused = {k: sum(len(t.refused) for t in v) for k, v in runs.items()}
        lag = float(np.median([ms(t.lag, 0.99) for t in runs["ours"] + runs["baseline"]]))
        figures += [
            Figure(
                BENCH,
                f"1 id, {n} conn: ours / baseline req/s",
                rate["ours"] / rate["baseline"],
                "x",
                "keep (about 1)",
                f"ours {rate['ours']:,.0f}, baseline {rate['baseline']:,.0f} req/s; refused "
                f"{refused['ours']} / {refused['baseline']}; client lag p99 {lag:.2f} ms",
            ),
            Figure(
                BENCH,
                f"1 id, {n} conn: ours / baseline p99",
                p99["ours"] / p99["baseline"],
                "x",
                note=f"p99 ours {p99['ours']:.2f}, baseline {p99['baseline']:.2f} ms; "
                f"p50 ours {p50['ours']:.2f}, baseline {p50['baseline']:.2f} ms",
            ),
        ]
        print(f"  compared at {n} connections", flush=True)
    return figures


async def _steps(p: Prepared, served: Served, sizes: Sizes) -> list[Figure]:
    port, headers = served.port, {"X-API-Key": p.key}
    one = [post("/v1/scores", {"customer_ids": [i]}, headers) for i in p.ids[:500]]
    batch = [post("/v1/scores", {"customer_ids": p.ids[:1000]}, headers)]
    figures: list[Figure] = []
    for n in sizes.connections:
        tally = await crowd(port, one, n, sizes.step_seconds, 30.0)
        print(f"  {n} connections: {len(tally.admitted)} answered", flush=True)
        figures += tally.figures(f"1 id, {n} conn")[:2]
    tally = await crowd(port, one, sizes.crowd, sizes.step_seconds, CLIENT_TIMEOUT)
    figures += tally.figures(f"1 id, {sizes.crowd} conn, 2 s timeout", target="< 50 ms")
    print(f"  {sizes.crowd} connections done", flush=True)
    tally = await crowd(port, batch, sizes.batch_connections, sizes.step_seconds, CLIENT_TIMEOUT)
    figures += tally.figures(f"1,000 ids, {sizes.batch_connections} conn", target="< 50 ms")
    print(f"  {sizes.batch_connections} batch connections done", flush=True)

    closed, latest = await half_sent(port, sizes.half_sent, one[0], SLOW_CLIENT_TIMEOUT + 5)
    figures.append(
        Figure(
            BENCH,
            f"{sizes.half_sent} half-sent requests: closed by the server",
            closed,
            "connections",
            f"all, after {SLOW_CLIENT_TIMEOUT} s",
            note=f"latest after {latest:.2f} s",
        )
    )
    status, sent, seconds = await big_header(port, p.key, 32 * 1024 * 1024)
    figures.append(
        Figure(
            BENCH,
            "32 MiB header: status",
            status,
            "",
            "431, body never read",
            note=f"after {sent / 1024:.0f} KiB sent, {seconds * 1000:.0f} ms",
        )
    )
    up = await uploads(p, port, served.pid, sizes.uploads, sizes.upload_bytes)
    mib = sizes.upload_bytes / 1024 / 1024
    figures.append(
        Figure(
            BENCH,
            f"{sizes.uploads} uploads of {mib:.0f} MiB: server RSS growth",
            up["rss"],
            "MiB",
            "bounded: CHURN_BODY_MEMORY_BYTES",
            note=f"{up['admitted']:.0f} admitted, {up['refused']:.0f} refused 503",
        )
    )
    rows = {
        "malformed request line": b"GARBAGE\r\n\r\n",
        "bad bytes in the path": b"GET /v1/\xff\x00 HTTP/1.1\r\nHost: t\r\n\r\n",
        "two Content-Length headers": (
            b"POST /v1/scores HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"
        ),
        "/v1/at-risk?foo=1 without a key": b"GET /v1/at-risk?foo=1 HTTP/1.1\r\nHost: t\r\n\r\n",
        "/v1/scores with an unknown field": post(
            "/v1/scores", {"customer_ids": [p.ids[0]], "debug": True}, headers
        ),
        "limit=1&limit=2": (
            f"GET /v1/at-risk?limit=1&limit=2 HTTP/1.1\r\nHost: t\r\nX-API-Key: {p.key}\r\n\r\n"
        ).encode(),
    }
    for name, payload in rows.items():
        status, ctype = await raw_answer(port, payload)
        figures.append(Figure(BENCH, name, status, "status", note=ctype))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.overload", description=__doc__.split("\n")[0]
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smoke-test sizes")
    size.add_argument("--full", action="store_true", help="longer steps (5 s each)")
    parser.add_argument(
        "--baseline", type=Path, help="another checkout: compare its server's 1-id throughput"
    )
    args = parser.parse_args(argv)
    print_figures(run(args.quick, full=args.full, baseline=args.baseline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
