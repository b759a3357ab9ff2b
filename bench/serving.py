"""The HTTP server against ``mlflow models serve`` with the same LightGBM model and client.

One run builds everything in a temporary folder: seeded demo tables, features, a fitted
churn + CLV bundle registered in a throw-away sqlite MLflow registry (through
``training.tracking``, the project's one registration path), the scored snapshot, an API key;
then it starts ``python -m serving`` and, unless ``--quick``, ``mlflow models serve`` on the
same registered bundle folder (an MLflow LightGBM-flavour model, sent the same customer's
encoded feature row as ``dataframe_split`` JSON), both running side by side, and measures:

- single-customer ``/v1/scores`` latency (p50, p99) at a fixed rate of 200 requests/s (open
  loop: a slow answer does not delay the next request's send time; time spent waiting for a
  free connection counts as latency), in :data:`ROUNDS` rounds that alternate between the two
  servers, so that a busy spell on this shared machine hits both; the ratio of the pooled
  medians is the headline, and the round-by-round ratios are printed beside it;
- the same p50 with the *paced* client (:func:`_paced`), which busy-waits around each request
  so that its own wake-ups from sleep are not counted; both servers get both clients;
- maximum sustained throughput of single-customer ``/v1/scores`` (closed loop, 8 connections);
- a 1,000-customer ``/v1/scores`` batch (median of sequential requests);
- ``/v1/predict`` with a year of raw history for one customer (median);
- the fair comparison: ``/v1/predict`` for one customer posting 12 purchases, 6 contacts and
  2 survey answers (validation, features, the model, reasons) against ``mlflow models
  serve`` given that customer's features, built beforehand by the same feature code from
  the same history (the model alone): sequential requests on one connection, in rounds that
  alternate between the servers; p50, p99 and their ratios, ours over MLflow's.

The ``/v1/scores`` figure compares a look-up of precomputed scores with a model run, so it
says how fast the hot path is, not that our model runs faster; the ``/v1/predict`` figure
compares like with like plus the work MLflow is spared. ``python -m bench.serving
--layers`` measures instead what each layer of the server adds to ``/v1/scores`` (a bare
uvicorn app, FastAPI routing, the app's middlewares, our route), with the same client.

The headline ratio uses the asyncio client. Both servers and the load generator share this
machine's cores; the load
generator is a small asyncio HTTP/1.1 keep-alive client, so its own cost per request is
tens of microseconds, not the milliseconds of a general-purpose HTTP library.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pandas as pd
from fastapi import FastAPI, Request, Response  # here: the layer apps' annotations need them

from bench.report import Figure

BENCH = "serving"
REPO_ROOT = Path(__file__).resolve().parents[1]
RATE = 200.0  # requests per second for the fixed-rate latency test
ROUNDS = 5  # fixed-rate rounds per server, alternating between the two servers
# The paced client (``_paced``) spins, rather than sleeps, from SPIN_AHEAD seconds before a
# send time, and for up to SPIN_FOR seconds after a send while it waits for the reply; past
# that it blocks in select(). Bounded, so that on this 2-core machine it takes at most a third
# of one core and never competes for long with the server it measures.
SPIN_AHEAD = 0.0005
SPIN_FOR = 0.001
HORIZON_DAYS = 90


# --- the load generator ----------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection that sends prepared requests and reads replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.head = b""  # the head (status line and headers) of the last reply

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """Send one request; the status code and body of the reply."""
        self.writer.write(request)
        head = self.head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def server_timing(head: bytes) -> dict[str, float]:
    """The ``Server-Timing`` metrics of a reply head (name: milliseconds); empty without."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"server-timing":
            out = {}
            for metric in value.decode("latin-1").split(","):
                parts = [p.strip() for p in metric.split(";")]
                durations = [p[4:] for p in parts[1:] if p.startswith("dur=")]
                out[parts[0]] = float(durations[0]) if durations else 0.0
            return out
    return {}


def post(path: str, body: object, headers: dict[str, str]) -> bytes:
    """A complete HTTP/1.1 POST request with a JSON body."""
    data = json.dumps(body, separators=(",", ":")).encode()
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    head.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


@dataclass(frozen=True)
class Run:
    """Latencies (seconds) of the requests that succeeded, and how many failed."""

    latencies: list[float]
    failures: int
    seconds: float
    #: Per successful request, the reply's ``Server-Timing`` (stage: ms), when asked for.
    timings: tuple[dict[str, float], ...] = ()
    #: Requests the server shed with 503 (counted apart from ``failures`` where the
    #: measurement saturates the server on purpose, as the closed loop does).
    refused: int = 0

    def quantile(self, q: float) -> float:
        return float(np.quantile(self.latencies, q)) if self.latencies else math.nan


async def _fixed_rate(port: int, requests: list[bytes], count: int, rate: float) -> Run:
    """``count`` requests at ``rate`` per second (open loop), cycling through ``requests``."""
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(8):
        pool.put_nowait(await Connection.open(port))
    latencies: list[float] = []
    failures = 0
    start = time.perf_counter() + 0.05

    async def one(i: int) -> None:
        nonlocal failures
        scheduled = start + i / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        # Timed from when this client woke up to send, *before* waiting for a free
        # connection: waiting for the server (all connections busy) counts, the event loop's
        # own timer lateness (epoll rounds timeouts to whole milliseconds) does not.
        due = time.perf_counter()
        conn = await pool.get()
        try:
            status, _ = await conn.send(requests[i % len(requests)])
        except (OSError, asyncio.IncompleteReadError):
            failures += 1
            return
        pool.put_nowait(conn)
        if status == 200:
            latencies.append(time.perf_counter() - due)
        else:
            failures += 1

    await asyncio.gather(*(one(i) for i in range(count)))
    seconds = time.perf_counter() - start
    while not pool.empty():
        pool.get_nowait().close()
    return Run(latencies, failures, seconds)


def _response_length(buffer: bytes | bytearray) -> tuple[int, int] | None:
    """``(status, total length)`` of the complete HTTP response at the start of ``buffer``,
    or ``None`` while it is incomplete."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buffer[:end]).split(b"\r\n")
    length = 0
    for line in lines[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    total = end + 4 + length
    return (int(lines[0].split()[1]), total) if len(buffer) >= total else None


def _paced(
    port: int,
    requests: list[bytes],
    count: int,
    rate: float,
    *,
    spin_for: float = SPIN_FOR,
    connections: int = 8,
) -> Run:
    """``count`` requests at ``rate`` per second (open loop), cycling through ``requests``,
    from one thread that busy-waits around each request instead of sleeping.

    The client sleeps until :data:`SPIN_AHEAD` before the next send time, spins on the clock
    until that time, sends on a free keep-alive connection, and polls the busy connections
    without blocking for up to ``spin_for`` seconds, after which it blocks in ``select`` until
    a reply or the next send time. A request's latency runs from the moment the client saw
    its send time pass to the last byte of the reply; waiting for a free connection counts.
    At 5 ms between requests both client and server are idle in between, and on a shared VM
    waking an idle process costs tens to hundreds of microseconds: the spinning keeps the
    *client's* wake-ups (its timer, ``epoll`` returning on the reply) out of the figure, while
    the server's own wake-up stays in. A reply slower than ``spin_for`` is seen after one
    client wake-up, which counts against that server (``spin_for=0`` measures that cost).
    """
    socks = []
    for _ in range(connections):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        socks.append(sock)
    free = list(reversed(socks))
    busy: dict[socket.socket, tuple[float, bytearray]] = {}
    latencies: list[float] = []
    failures = sent = 0
    due: float | None = None  # when the client saw the next request's send time pass
    clock = time.perf_counter
    start = clock() + 0.05
    while sent < count or busy:
        now = clock()
        scheduled = start + sent / rate if sent < count else math.inf
        if sent < count:
            if due is None and now >= scheduled:
                due = now
            if due is not None and free:
                sock = free.pop()
                try:
                    sock.sendall(requests[sent % len(requests)])  # fits the empty buffer
                except OSError:
                    failures += 1
                else:
                    busy[sock] = (due, bytearray())
                sent += 1
                due = None
                continue
        wait = scheduled - now - SPIN_AHEAD
        if not busy:
            if wait > 0:
                time.sleep(wait)
            continue
        if wait > 0 and now - min(t for t, _ in busy.values()) > spin_for:
            select.select(list(busy), [], [], min(wait, 1.0))
        for sock, (sent_at, buffer) in list(busy.items()):
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:  # the server closed the connection
                del busy[sock]
                failures += 1
                continue
            buffer += data
            reply = _response_length(buffer)
            if reply is None:
                continue
            done = clock()
            del busy[sock]
            free.append(sock)
            if reply[0] == 200 and reply[1] == len(buffer):
                latencies.append(done - sent_at)
            else:
                failures += 1
    seconds = clock() - start
    for sock in socks:
        sock.close()
    return Run(latencies, failures, seconds)


async def _closed_loop(port: int, requests: list[bytes], seconds: float, workers: int) -> Run:
    """As many requests as ``workers`` connections complete in ``seconds``."""
    latencies: list[float] = []
    failures = refused = 0
    start = time.perf_counter()
    stop = start + seconds

    async def worker(offset: int) -> None:
        nonlocal failures, refused
        conn = await Connection.open(port)
        i = offset
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                status, _ = await conn.send(requests[i % len(requests)])
            except (OSError, asyncio.IncompleteReadError):
                # the server closed the connection (refused at capacity): count it, reconnect
                failures += 1
                conn.close()
                conn = await Connection.open(port)
                i += workers
                continue
            if status == 200:
                latencies.append(time.perf_counter() - t0)
            elif status == 503:
                # shed at capacity (admission control), what a saturated server should do;
                # the server closes a connection it sheds on: reconnect
                refused += 1
                conn.close()
                conn = await Connection.open(port)
            else:
                failures += 1
            i += workers
        conn.close()

    await asyncio.gather(*(worker(w) for w in range(workers)))
    return Run(latencies, failures, time.perf_counter() - start, refused=refused)


async def _sequential(port: int, request: bytes, count: int) -> Run:
    """``count`` requests one after the other on one connection, with each successful
    reply's ``Server-Timing`` (empty for a server that sends none)."""
    conn = await Connection.open(port)
    latencies, failures, timings = [], 0, []
    start = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        status, _ = await conn.send(request)
        if status == 200:
            latencies.append(time.perf_counter() - t0)
            timings.append(server_timing(conn.head))
        else:
            failures += 1
    conn.close()
    return Run(latencies, failures, time.perf_counter() - start, tuple(timings))


async def _answer(port: int, request: bytes) -> bytes:
    conn = await Connection.open(port)
    _, body = await conn.send(request)
    conn.close()
    return body


# --- the model, the registry and the servers -------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """Everything the servers need, in a temporary work folder."""

    work: Path
    tracking_uri: str
    model_folder: Path  # the registered bundle: MLmodel + model.lgb + bundle files
    scores_dir: Path
    keys_file: Path
    key: str
    ids: list[str]
    mlflow_row: dict[str, object]  # dataframe_split body for the first id
    history: dict[str, object]  # /v1/predict item: one customer, a year of history
    history_events: int
    raw_probability: float  # the booster's own output for the first id (what MLflow returns)
    small: dict[str, object]  # /v1/predict item: one customer, 12 purchases, 6 contacts, 2 surveys
    small_mlflow_row: dict[str, object]  # dataframe_split body: that customer's features
    small_raw_probability: float  # the booster's output for that row


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHURN_", "MLFLOW_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return {**env, **extra}


EVENT_TABLES = ("transactions", "interactions", "surveys")
#: The history of the fair ``/v1/predict`` comparison: purchases, contacts, survey answers.
SMALL_HISTORY = {"transactions": 12, "interactions": 6, "surveys": 2}


def _predict_item(
    raw: dict[str, pd.DataFrame], cid: str, as_of: pd.Timestamp, rows: dict[str, pd.DataFrame]
) -> dict[str, object]:
    """Customer ``cid`` as a ``/v1/predict`` item scored at ``as_of``: its attributes from
    ``raw["customers"]`` and the event rows in ``rows`` (per table)."""
    customer = raw["customers"].set_index("customer_id").loc[cid]
    item: dict[str, object] = {"customer_id": cid, "as_of": as_of.isoformat()}
    attributes: dict[str, object] = {}
    for col, value in customer.items():
        if col == "signup_date":
            item["signup_date"] = pd.Timestamp(value).isoformat()  # type: ignore[arg-type]
        elif col != "churn_date" and not pd.isna(value):
            attributes[str(col)] = value.item() if hasattr(value, "item") else value
    item["attributes"] = attributes
    for name in EVENT_TABLES:
        records = []
        for rec in rows[name].drop(columns="customer_id").to_dict("records"):
            rec["timestamp"] = pd.Timestamp(rec["timestamp"]).isoformat()
            records.append({k: (None if pd.isna(v) else v) for k, v in rec.items()})
        item[name] = records
    return item


def _before(
    raw: dict[str, pd.DataFrame], as_of: pd.Timestamp, days: int | None = None
) -> dict[str, pd.DataFrame]:
    """The event tables' rows before ``as_of``: of the ``days`` days before it, or all."""
    since = as_of - pd.Timedelta(days=days) if days is not None else None
    return {
        name: frame[(frame["timestamp"] < as_of) & (since is None or frame["timestamp"] >= since)]
        for name, frame in ((n, raw[n]) for n in EVENT_TABLES)
    }


def _year_of_history(raw: dict[str, pd.DataFrame], as_of: pd.Timestamp) -> tuple[dict, int]:  # type: ignore[type-arg]
    """The customer with the most events in the year before ``as_of``, as a predict item."""
    recent = _before(raw, as_of, 365)
    counts = sum(r["customer_id"].value_counts() for r in recent.values() if len(r))
    cid = str(counts.fillna(0).idxmax())  # type: ignore[union-attr]
    rows = {name: frame[frame["customer_id"] == cid] for name, frame in recent.items()}
    return _predict_item(raw, cid, as_of, rows), sum(len(r) for r in rows.values())


def _small_history(
    raw: dict[str, pd.DataFrame], as_of: pd.Timestamp
) -> tuple[dict[str, object], dict[str, pd.DataFrame]]:
    """A demo customer with the :data:`SMALL_HISTORY` counts of events before ``as_of``, as a
    predict item, and its rows as raw tables (for the features MLflow is given).

    A customer with exactly these counts is taken if there is one; otherwise the customer
    with at least as many of each and the fewest events in all, keeping only its most recent
    events of each table (a real customer's recent history, cut to the size).
    """
    past = _before(raw, as_of)
    counts = pd.DataFrame({n: past[n]["customer_id"].value_counts() for n in EVENT_TABLES})
    counts = counts.fillna(0).astype(int).sort_index()
    enough = counts[(counts >= pd.Series(SMALL_HISTORY)).all(axis=1)]
    if enough.empty:
        raise RuntimeError(f"no demo customer has at least {SMALL_HISTORY} events; use more")
    cid = str(enough.sum(axis=1).idxmin())
    rows = {
        n: past[n][past[n]["customer_id"] == cid].sort_values("timestamp").tail(k)
        for n, k in SMALL_HISTORY.items()
    }
    tables = {"customers": raw["customers"][raw["customers"]["customer_id"] == cid], **rows}
    return _predict_item(raw, cid, as_of, rows), tables


@dataclass(frozen=True)
class DemoFit:
    """A churn + CLV bundle fitted on seeded demo data, with what it was fitted from."""

    bundle: Any
    raw: dict[str, pd.DataFrame]
    frame: pd.DataFrame
    as_of: pd.Timestamp


def fit_demo_bundle(
    n_customers: int,
    *,
    trees: int = 300,
    seed: int = 7,
    clv_features: bool = False,
    calibrate: bool = False,
) -> DemoFit:
    """Seeded demo data -> validated tables -> features at the demo's as-of -> a churn model of
    ``trees`` trees and a BG/NBD + Gamma-Gamma CLV model (the serving, predict and workspace
    benches, and the scoring-path tests). ``clv_features`` trains the churn model on the BTYD
    columns too (as training does), ``calibrate`` fits its probability calibration on the same
    rows; ``DemoFit.frame`` stays the feature frame without them (what scoring is given)."""
    from features.build import build_features
    from features.labels import churn_labels
    from features.validation import validate_tables
    from models.bundle import Bundle
    from models.churn import ChurnModel
    from models.clv import SUMMARY_COLUMNS, CLVModel
    from models.clv_features import clv_feature_columns
    from training.demo_data import generate_demo_data

    demo = generate_demo_data(n_customers, seed=seed, horizon_days=HORIZON_DAYS)
    raw = {n: getattr(demo, n) for n in ("customers", "transactions", "interactions", "surveys")}
    tables, _ = validate_tables(raw)
    as_of = pd.Timestamp(demo.ground_truth["as_of"].iloc[0])
    frame = build_features(tables, as_of=as_of)
    labels = churn_labels(tables, as_of=as_of, horizon_days=HORIZON_DAYS, population=frame.index)
    clv = CLVModel(penalizer=0.001).fit(frame[list(SUMMARY_COLUMNS)])
    train = frame
    if clv_features:
        counts = clv.count_columns(clv.inputs(frame), horizon_days=HORIZON_DAYS)
        train = frame.assign(**clv_feature_columns(counts))
    churn = ChurnModel(num_boost_round=trees).fit(train, labels)
    if calibrate:
        churn.calibrate(train, labels)
    meta = {"horizon_days": HORIZON_DAYS, "risk_thresholds": {"medium": 0.3, "high": 0.6}}
    return DemoFit(Bundle(churn, clv, meta=meta), raw, frame, as_of)


def write_snapshot(folder: Path, scores: pd.DataFrame, version: str, as_of: str) -> None:
    """``snapshot.parquet`` of ``scores`` and its ``snapshot.json`` in a new ``folder`` (the
    layout the server reads; the serving and workspace benches)."""
    from models.bundle import sha256_file

    folder.mkdir(parents=True)
    scores.to_parquet(folder / "snapshot.parquet", index=False)
    meta = {
        "model_version": version,
        "as_of": as_of,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": len(scores),
        "sha256": sha256_file(folder / "snapshot.parquet"),
        "horizon_days": HORIZON_DAYS,
    }
    (folder / "snapshot.json").write_text(json.dumps(meta))


def prepare(work: Path, *, n_customers: int) -> Prepared:
    """Demo data -> features -> fitted bundle -> registered champion -> snapshot -> key."""
    from features.build import build_features
    from features.validation import validate_tables
    from models.scoring import score_frame
    from serving.auth import create_key
    from training import tracking
    from training.config import TrainSettings

    fit = fit_demo_bundle(n_customers)
    bundle, raw, frame, as_of = fit.bundle, fit.raw, fit.frame, fit.as_of
    churn = bundle.churn

    uri = f"sqlite:///{work / 'mlflow.db'}"
    settings = TrainSettings(
        _env_file=None,  # type: ignore[call-arg]
        mlflow_tracking_uri=uri,
        mlflow_artifact_root=work / "mlartifacts",
        experiment_name="bench-serving",
        model_name="churn-clv",
    )
    with tracking.training_run(settings, run_name="bench") as run:
        version, _ = run.register(bundle)
    tracking.promote(settings, version)
    model_folder = next((work / "mlartifacts").rglob("MLmodel")).parent

    scores = score_frame(bundle, frame).reset_index()
    iso = as_of.strftime("%Y-%m-%dT%H:%M:%SZ")
    scores.insert(1, "as_of", iso)
    scores["top_reasons"] = [json.dumps(r, separators=(",", ":")) for r in scores["top_reasons"]]
    scores["model_version"] = version
    scores["risk_band"] = scores["risk_band"].astype("str")
    scores_dir = work / "scores"
    write_snapshot(scores_dir, scores, version, iso)
    keys_file = work / "api_keys.json"
    key = create_key(keys_file, "bench")

    rng = np.random.default_rng(0)
    ids = [str(i) for i in rng.permutation(frame.index.to_numpy())]
    row = churn.encode(frame.loc[[ids[0]]])[0]
    names = lightgbm.Booster(model_str=churn.model_text()).feature_name()
    mlflow_row = _dataframe_split(names, row)
    history, events = _year_of_history(raw, as_of)
    raw_probability = float(churn.predict_raw(row[None, :])[0])
    # The fair comparison's customer: MLflow is given the features that the project's one
    # feature implementation builds from exactly the history posted to /v1/predict.
    small, small_tables = _small_history(raw, as_of)
    small_frame = build_features(validate_tables(small_tables)[0], as_of=as_of)
    small_row = churn.encode(small_frame)[0]
    return Prepared(
        work,
        uri,
        model_folder,
        scores_dir,
        keys_file,
        key,
        ids,
        mlflow_row,
        history,
        events,
        raw_probability,
        small,
        _dataframe_split(names, small_row),
        float(churn.predict_raw(small_row[None, :])[0]),
    )


def _dataframe_split(names: list[str], row: np.ndarray) -> dict[str, object]:  # type: ignore[type-arg]
    """One encoded feature row as MLflow's ``dataframe_split`` request body.

    Missing values are NaN literals (Python's JSON extension, which MLflow's parser reads):
    JSON null would make pandas object columns, which LightGBM refuses.
    """
    return {"dataframe_split": {"columns": names, "data": [[float(v) for v in row]]}}


def _wait(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


@contextmanager
def _process(args: list[str], env: dict[str, str], cwd: Path, ready: str) -> Iterator[int]:
    with server_process(args, env, cwd, ready) as (port, _):
        yield port


@contextmanager
def server_process(
    args: list[str], env: dict[str, str], cwd: Path, ready: str
) -> Iterator[tuple[int, int]]:
    """A server started by ``args`` (``{port}`` replaced by a free port) with its output in
    ``cwd/server-<port>.log``, once ``ready`` answers 200; yields its port and process id,
    and stops it on exit."""
    port = _free_port()
    log = cwd / f"server-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [a.replace("{port}", str(port)) for a in args],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait(f"http://127.0.0.1:{port}{ready}", process, log, timeout=120)
        yield port, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def our_server(p: Prepared) -> AbstractContextManager[int]:
    """``python -m serving`` on the prepared champion and snapshot; yields its port."""
    env = _env(
        MLFLOW_TRACKING_URI=p.tracking_uri,
        CHURN_SCORES_DIR=str(p.scores_dir),
        CHURN_API_KEYS_FILE=str(p.keys_file),
        CHURN_MODEL_CACHE_DIR=str(p.work / "cache"),
    )
    return _process([sys.executable, "-m", "serving", "--port", "{port}"], env, p.work, "/readyz")


def mlflow_server(p: Prepared) -> AbstractContextManager[int]:
    """``mlflow models serve`` on the same registered bundle folder; yields its port."""
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    args = [mlflow, "models", "serve", "-m", str(p.model_folder), "--env-manager", "local"]
    args += ["-h", "127.0.0.1", "-p", "{port}"]
    # It starts ``uvicorn`` from PATH: put this environment's scripts first.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return _process(args, _env(MLFLOW_TRACKING_URI=p.tracking_uri, PATH=path), p.work, "/ping")


# --- the benchmark ---------------------------------------------------------------------------


def _run(coro: Coroutine[Any, Any, Run]) -> Run:
    """Run one measurement on uvloop when it is installed (as the servers do)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _ms(seconds: float) -> float:
    return seconds * 1000


def _pooled(runs: list[Run]) -> Run:
    """The rounds of one measurement as one run."""
    latencies = [x for run in runs for x in run.latencies]
    timings = tuple(t for run in runs for t in run.timings)
    failures, seconds = sum(r.failures for r in runs), sum(r.seconds for r in runs)
    return Run(latencies, failures, seconds, timings, sum(r.refused for r in runs))


def _p50_ratios(reference: list[Run], ours: list[Run]) -> list[float]:
    """Round by round: the reference's p50 over ours."""
    return [r.quantile(0.5) / o.quantile(0.5) for r, o in zip(reference, ours, strict=True)]


def run(quick: bool) -> list[Figure]:
    """Measure the server and, unless ``quick``, ``mlflow models serve``; see the module doc."""
    n_customers = 400 if quick else 5000
    fixed_count = 40 if quick else 2000  # 10 s at 200 requests/s, per server and client
    rounds = 1 if quick else ROUNDS
    per_round = fixed_count // rounds
    repeats = 3 if quick else 30
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        p = prepare(Path(tmp), n_customers=n_customers)
        headers = {"X-API-Key": p.key}
        singles = [post("/v1/scores", {"customer_ids": [c]}, headers) for c in p.ids[:200]]
        batch = post("/v1/scores", {"customer_ids": p.ids[:1000]}, headers)
        batch_size = min(1000, len(p.ids))
        predict = post("/v1/predict", {"customers": [p.history]}, headers)
        small_predict = post("/v1/predict", {"customers": [p.small]}, headers)
        invocation = [post("/invocations", p.mlflow_row, {})]
        small_invocation = post("/invocations", p.small_mlflow_row, {})
        predict_count = 4 if quick else 60  # sequential requests per round and server
        figures: list[Figure] = []
        load = os.getloadavg()
        reference = nullcontext(0) if quick else mlflow_server(p)
        with our_server(p) as port, reference as ref_port:
            sequential = 20 if quick else 500
            _run(_sequential(port, singles[0], 50))  # warm-up
            hot = _run(_sequential(port, singles[0], sequential))
            ref_hot = None
            if ref_port:
                _run(_sequential(ref_port, invocation[0], 50))
                ref_hot = _run(_sequential(ref_port, invocation[0], sequential))
            fixed: list[Run] = []
            ref: list[Run] = []
            paced: list[Run] = []
            ref_paced: list[Run] = []
            for _ in range(rounds):  # interleaved, so that both servers meet the same machine
                fixed.append(_run(_fixed_rate(port, singles, per_round, RATE)))
                if ref_port:
                    ref.append(_run(_fixed_rate(ref_port, invocation, per_round, RATE)))
                paced.append(_paced(port, singles, per_round, RATE))
                if ref_port:
                    ref_paced.append(_paced(ref_port, invocation, per_round, RATE))
            peak = _run(_closed_loop(port, singles, 1.0 if quick else 5.0, 8))
            big = _run(_sequential(port, batch, repeats))
            pred = _run(_sequential(port, predict, repeats))
            # The fair comparison: raw history -> features -> model -> reasons (ours) against
            # the model alone on features computed beforehand (MLflow), same client,
            # sequential requests on one connection, rounds alternating between the servers.
            small: list[Run] = []
            ref_small: list[Run] = []
            _run(_sequential(port, small_predict, 5))  # warm-up
            if ref_port:
                _run(_sequential(ref_port, small_invocation, 5))
            for _ in range(rounds):
                small.append(_run(_sequential(port, small_predict, predict_count)))
                if ref_port:
                    ref_small.append(_run(_sequential(ref_port, small_invocation, predict_count)))
            answer = asyncio.run(_answer(ref_port, invocation[0])) if ref_port else b""
            small_answer = asyncio.run(_answer(ref_port, small_invocation)) if ref_port else b""
        ours, ours_paced = _pooled(fixed), _pooled(paced)
        note = f"{len(ours.latencies)} ok, {ours.failures} failed at {RATE:.0f}/s"
        figures += [
            Figure(BENCH, "scores 1 customer p50", _ms(ours.quantile(0.5)), "ms", "<= 1", note),
            Figure(BENCH, "scores 1 customer p99", _ms(ours.quantile(0.99)), "ms", "<= 5", note),
            Figure(
                BENCH,
                "scores 1 customer p50, paced client",
                _ms(ours_paced.quantile(0.5)),
                "ms",
                "",
                f"{len(ours_paced.latencies)} ok, {ours_paced.failures} failed at {RATE:.0f}/s; "
                "client busy-waits around each request",
            ),
            Figure(
                BENCH,
                "scores 1 customer p50, back-to-back",
                _ms(hot.quantile(0.5)),
                "ms",
                "",
                "one connection, next request as soon as the answer is in",
            ),
            Figure(
                BENCH,
                "scores max throughput",
                len(peak.latencies) / peak.seconds,
                "req/s",
                "",
                f"8 connections, {peak.failures} failed, {peak.refused} shed with 503",
            ),
            Figure(
                BENCH,
                f"scores batch of {batch_size} p50",
                _ms(big.quantile(0.5)),
                "ms",
                "< 50",
                f"median of {repeats}",
            ),
            Figure(
                BENCH,
                "predict 1 customer, 1 year p50",
                _ms(pred.quantile(0.5)),
                "ms",
                "",
                f"{p.history_events} events, median of {repeats}",
            ),
        ]
        ours_small = _pooled(small)
        events = ", ".join(f"{len(p.small[n])} {n}" for n in EVENT_TABLES)  # type: ignore[arg-type]
        small_note = f"{len(ours_small.latencies)} ok, {ours_small.failures} failed; {events}"
        figures += [
            Figure(
                BENCH,
                "predict 1 customer p50",
                _ms(ours_small.quantile(0.5)),
                "ms",
                "<= 5",
                small_note,
            ),
            Figure(
                BENCH,
                "predict 1 customer p99",
                _ms(ours_small.quantile(0.99)),
                "ms",
                "<= 15",
                small_note,
            ),
            *_stage_figures(ours_small),
        ]
        if quick:
            return figures
        assert ref_hot is not None
        theirs, theirs_paced = _pooled(ref), _pooled(ref_paced)
        by_round = _p50_ratios(ref, fixed)
        by_round_paced = _p50_ratios(ref_paced, paced)
        agreement = abs(json.loads(answer)["predictions"][0] - p.raw_probability)
        figures += [
            Figure(
                BENCH,
                "mlflow models serve p50",
                _ms(theirs.quantile(0.5)),
                "ms",
                "",
                f"{len(theirs.latencies)} ok, {theirs.failures} failed at {RATE:.0f}/s",
            ),
            Figure(BENCH, "mlflow models serve p99", _ms(theirs.quantile(0.99)), "ms"),
            Figure(
                BENCH,
                "p50 ratio mlflow / ours",
                theirs.quantile(0.5) / ours.quantile(0.5),
                "x",
                ">= 10",
                f"at {RATE:.0f}/s, {rounds} interleaved rounds: {_spread(by_round)}; load "
                f"average {load[0]:.1f} at start, {os.getloadavg()[0]:.1f} now (2 cores)",
            ),
            Figure(
                BENCH,
                "mlflow models serve p50, paced client",
                _ms(theirs_paced.quantile(0.5)),
                "ms",
                "",
                f"{len(theirs_paced.latencies)} ok, {theirs_paced.failures} failed at {RATE:.0f}/s",
            ),
            Figure(
                BENCH,
                "p50 ratio mlflow / ours, paced client",
                theirs_paced.quantile(0.5) / ours_paced.quantile(0.5),
                "x",
                "",
                f"rounds: {_spread(by_round_paced)}; meaningful on an idle machine only (README)",
            ),
            Figure(
                BENCH,
                "mlflow models serve p50, back-to-back",
                _ms(ref_hot.quantile(0.5)),
                "ms",
            ),
            Figure(
                BENCH,
                "p50 ratio mlflow / ours, back-to-back",
                ref_hot.quantile(0.5) / hot.quantile(0.5),
                "x",
            ),
            Figure(
                BENCH,
                "mlflow vs booster |difference|",
                agreement,
                "probability",
                "",
                "same model: MLflow's answer vs the project's uncalibrated booster output",
            ),
        ]
        figures += _predict_figures(small, ref_small, small_answer, p.small_raw_probability)
        return figures


def _predict_figures(
    ours: list[Run], theirs: list[Run], answer: bytes, raw_probability: float
) -> list[Figure]:
    """The fair comparison's MLflow figures and the ratios (ours over MLflow's)."""
    pooled, ref = _pooled(ours), _pooled(theirs)
    note = f"{len(ref.latencies)} ok, {ref.failures} failed; features given, same customer"
    rounds = f"{len(ours)} interleaved rounds of sequential requests"
    agreement = abs(json.loads(answer)["predictions"][0] - raw_probability)
    return [
        Figure(
            BENCH, "mlflow models serve, features given p50", _ms(ref.quantile(0.5)), "ms", "", note
        ),
        Figure(
            BENCH,
            "mlflow models serve, features given p99",
            _ms(ref.quantile(0.99)),
            "ms",
            "",
            note,
        ),
        Figure(
            BENCH,
            "predict p50 ratio ours / mlflow",
            pooled.quantile(0.5) / ref.quantile(0.5),
            "x",
            "",
            f"{rounds}: {_spread(_p50_ratios(ours, theirs))}; ours also builds the features "
            "from the posted history and explains the score",
        ),
        Figure(
            BENCH,
            "predict p99 ratio ours / mlflow",
            pooled.quantile(0.99) / ref.quantile(0.99),
            "x",
        ),
        Figure(
            BENCH,
            "mlflow (features given) vs booster |difference|",
            agreement,
            "probability",
            "",
            "MLflow's answer vs the booster on the features built from the posted history",
        ),
    ]


def _stage_figures(run: Run) -> list[Figure]:
    """Median milliseconds of each stage the server reports in ``Server-Timing`` for the
    requests of ``run``, and of what is outside them (client latency minus the server's
    ``total``: the connection, uvicorn, the middlewares, routing and the JSON decoding of the
    body, which happen before the route's clock starts)."""
    if not run.timings or "total" not in run.timings[0]:
        return []
    figures = []
    for stage in run.timings[0]:
        values = [t.get(stage, 0.0) for t in run.timings]
        figures.append(
            Figure(
                BENCH,
                f"  predict stage {stage} p50",
                float(np.median(values)),
                "ms",
                "",
                f"p99 {np.percentile(values, 99):.3f} ms (Server-Timing)",
            )
        )
    outside = [_ms(lat) - t["total"] for lat, t in zip(run.latencies, run.timings, strict=True)]
    figures.append(
        Figure(
            BENCH,
            "  predict outside the route p50",
            float(np.median(outside)),
            "ms",
            "",
            f"p99 {np.percentile(outside, 99):.3f} ms: latency - Server-Timing total",
        )
    )
    return figures


def _spread(ratios: list[float]) -> str:
    """Round ratios as ``median (min-max)``."""
    return f"median {np.median(ratios):.1f}x ({min(ratios):.1f}-{max(ratios):.1f})"


# --- what each layer of the server costs -----------------------------------------------------

#: The layers measured by :func:`run_layers`, each adding to the one before; the last is
#: ``python -m serving`` itself.
LAYERS = {
    "bare": "bare uvicorn app (ASGI callable, constant answer)",
    "routed": "+ FastAPI routing (a route reading the body, constant answer)",
    "middlewares": "+ the app's middlewares and error handlers",
}
OURS_LAYER = "+ our route (python -m serving: key, request model, snapshot look-up)"
#: The constant answer of the layer apps: a scores body of about the size of a real one.
_LAYER_ANSWER = json.dumps(
    {"results": [{"customer_id": "C0000001", "churn_probability": 0.5, "top_reasons": []}]}
    | {"padding": "x" * 300, "model_version": "1"}
).encode()
_LAYER_HEADERS = [
    (b"content-length", str(len(_LAYER_ANSWER)).encode()),
    (b"content-type", b"application/json"),
]


async def _bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app answering every HTTP request with :data:`_LAYER_ANSWER` once its body is in."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _LAYER_HEADERS})
    await send({"type": "http.response.body", "body": _LAYER_ANSWER})


def _layer_app(name: str) -> Any:
    """The ASGI app of layer ``name`` (a key of :data:`LAYERS`)."""
    if name == "bare":
        return _bare_app
    from serving.app import install_middlewares
    from serving.errors import install_error_handlers
    from serving.metrics import Metrics

    app = FastAPI()

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/scores")
    async def scores(request: Request) -> Response:
        await request.body()
        return Response(_LAYER_ANSWER, media_type="application/json")

    if name == "middlewares":
        install_error_handlers(app)
        metrics = Metrics(lambda: None)
        install_middlewares(app, max_body_bytes=8 * 1024 * 1024, observe=metrics.observe)
    return app


def serve_layer(name: str, port: int) -> None:
    """Serve layer ``name`` on 127.0.0.1:``port`` with the uvicorn options and logging of
    ``python -m serving``, until terminated."""
    import uvicorn

    from serving.__main__ import log_config

    config = uvicorn.Config(
        _layer_app(name),
        host="127.0.0.1",
        port=port,
        access_log=False,
        log_config=log_config(),
        server_header=False,
    )
    uvicorn.Server(config).run()


def layer_server(name: str, work: Path) -> AbstractContextManager[int]:
    """Layer ``name`` served by a new process; yields its port."""
    args = [sys.executable, "-m", "bench.serving", "--layer", name, "--port", "{port}"]
    return _process(args, _env(), work, "/readyz")


def run_layers(quick: bool) -> list[Figure]:
    """p50 and p99 of single-customer ``POST /v1/scores`` at :data:`RATE` requests/s through
    each layer of :data:`LAYERS`, then ``python -m serving``: the same client, rounds
    interleaved across the four servers, which run side by side."""
    rounds = 1 if quick else ROUNDS
    per_round = (40 if quick else 2000) // rounds
    with tempfile.TemporaryDirectory(prefix="bench-layers-") as tmp:
        p = prepare(Path(tmp), n_customers=400 if quick else 2000)
        headers = {"X-API-Key": p.key}
        singles = [post("/v1/scores", {"customer_ids": [c]}, headers) for c in p.ids[:200]]
        names = [*LAYERS, "ours"]
        with ExitStack() as stack:
            ports = [stack.enter_context(layer_server(n, p.work)) for n in LAYERS]
            ports.append(stack.enter_context(our_server(p)))
            runs: dict[str, list[Run]] = {n: [] for n in names}
            for port in ports:
                _run(_sequential(port, singles[0], 50))  # warm-up
            for _ in range(rounds):
                for name, port in zip(names, ports, strict=True):
                    runs[name].append(_run(_fixed_rate(port, singles, per_round, RATE)))
    figures = []
    previous = None
    for name in names:
        pooled = _pooled(runs[name])
        label = OURS_LAYER if name == "ours" else LAYERS[name]
        note = f"{len(pooled.latencies)} ok, {pooled.failures} failed at {RATE:.0f}/s"
        if previous is not None:
            added = pooled.quantile(0.5) - previous.quantile(0.5)
            note += f"; p50 {_ms(added):+.3f} ms over the layer before"
        ours = name == "ours"  # the targets are the server's, not the layers'
        figures += [
            Figure(BENCH, f"{label} p50", _ms(pooled.quantile(0.5)), "ms", "<= 1" * ours, note),
            Figure(BENCH, f"{label} p99", _ms(pooled.quantile(0.99)), "ms", "<= 5" * ours),
        ]
        previous = pooled
    return figures


if __name__ == "__main__":
    import argparse

    from bench.report import print_figures

    parser = argparse.ArgumentParser(prog="python -m bench.serving", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes")
    parser.add_argument("--layers", action="store_true", help="what each server layer costs")
    parser.add_argument("--layer", choices=list(LAYERS), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.layer:
        serve_layer(args.layer, args.port)
    else:
        print_figures((run_layers if args.layers else run)(quick=args.quick))
