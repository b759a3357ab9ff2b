"""Feature building and scoring for 2,000,000 customers: the local engine against a two-worker
local Dask cluster, on the same partitioned Parquet input.

The target: the Dask run's peak memory per worker under half of the local run's, i.e.
a customer base larger than one machine's memory can be processed. Memory is the peak
resident set (RSS) polled every 0.1 s: of the local run's process, and of each Dask worker
process (the client's own peak is reported too).

The input is :func:`bench.features.bench_tables` generated chunk by chunk (customers numbered
on), each chunk written as one Parquet part per table; both engines read those folders. The
scoring bundle is fitted on a small separate chunk (its quality is not the point here).
Each engine runs in a fresh process, so neither inherits the other's or the generator's memory.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import psutil

from bench.features import AS_OF, bench_tables
from bench.report import Figure
from features.build import build_features
from features.labels import churn_labels
from models.bundle import Bundle
from models.churn import ChurnModel
from models.clv import CLVModel
from models.clv_features import add_clv_features
from models.scoring import score_frame

NAME = "dask"
HORIZON_DAYS = 90
#: Full size and the --quick smoke size; events per customer as in bench.features.
FULL = {"customers": 2_000_000, "chunk": 250_000}
QUICK = {"customers": 4_000, "chunk": 1_000}
PER_CUSTOMER = {"transactions": 5, "interactions": 2.5, "surveys": 1}
CDNOW_PARAMS = {
    "r": 0.243,
    "alpha": 4.414,
    "a": 0.793,
    "b": 2.426,
    "p": 6.25,
    "q": 3.74,
    "v": 15.44,
}
TABLE_NAMES = ("customers", "transactions", "interactions", "surveys")


def write_input(out: Path, customers: int, chunk: int) -> None:
    """The bench tables for ``customers`` customers as ``out/<table>.parquet/part.<k>.parquet``."""
    for k, first in enumerate(range(0, customers, chunk)):
        n = min(chunk, customers - first)
        sizes = {"customers": n, **{t: int(n * r) for t, r in PER_CUSTOMER.items()}}
        tables = bench_tables(sizes, seed=100 + k, first_id=first)
        for name in TABLE_NAMES:
            folder = out / f"{name}.parquet"
            folder.mkdir(parents=True, exist_ok=True)
            getattr(tables, name).to_parquet(folder / f"part.{k}.parquet", index=False)


def fit_bundle(customers: int = 20_000) -> Bundle:
    """A churn model fitted on a separate small base at ``AS_OF - horizon``, with CLV."""
    sizes = {"customers": customers, **{t: int(customers * r) for t, r in PER_CUSTOMER.items()}}
    tables = bench_tables(sizes, seed=7, first_id=9_000_000)
    cutoff = AS_OF - pd.Timedelta(days=HORIZON_DAYS)
    frame = build_features(tables, as_of=cutoff)
    # The bench tables' uniform purchase times leave BG/NBD's dropout unidentified, so the
    # bundle carries the published CDNOW parameters (FHL 2005a; Gamma-Gamma: FHL 2005b).
    clv = CLVModel.from_dict(
        {
            "format": 2,
            "model": "bgnbd",
            "time_unit_days": 7.0,
            "observation_end": "last_day",
            "penalizer": 0.0,
            "annual_discount_rate": 0.1,
            "params": CDNOW_PARAMS,
            "n_customers": 2357,
        }
    )
    frame = add_clv_features(frame, clv, horizon_days=HORIZON_DAYS)
    y = churn_labels(tables, as_of=cutoff, horizon_days=HORIZON_DAYS, population=frame.index)
    churn = ChurnModel(num_boost_round=50).fit(frame, y.astype(int))
    return Bundle(churn, clv, meta={"horizon_days": HORIZON_DAYS})


def _local_run(data_dir: str, out_dir: str, bundle: Bundle) -> None:
    """The local engine: load and validate every table, features, scores, snapshot rows."""
    from training.batch import snapshot_rows
    from training.io import load_tables

    loaded = load_tables(Path(data_dir))
    frame = build_features(loaded.tables, as_of=AS_OF)
    scores = score_frame(bundle, frame, horizon_days=HORIZON_DAYS)
    rows = snapshot_rows(
        scores, as_of=AS_OF, version="bench", customers=loaded.tables.customers, segment_column=None
    )
    rows.to_parquet(Path(out_dir) / "snapshot.parquet", index=False)


def _dask_run(data_dir: str, work_dir: str, bundle: Bundle, partitions: int, queue) -> None:
    """The Dask engine on a fresh two-worker local cluster; reports the worker pids first."""
    from training import dask_engine as de
    from training.config import TrainSettings

    settings = TrainSettings(
        data_dir=Path(data_dir),
        engine="dask",
        dask_workers=2,
        dask_partitions=partitions,
        dask_work_dir=Path(work_dir) / "dask",
        quarantine_dir=Path(work_dir) / "quarantine",
        scores_dir=Path(work_dir) / "scores",
    )
    with de.dask_client(settings) as client:
        queue.put(list(client.run(os.getpid).values()))
        _, staged, _ = de.stage_inputs(settings)
        result = de.score_distributed(staged, bundle, "bench", settings, as_of=AS_OF)
        queue.put(result.rows)


class _Peak:
    """Polls the RSS of some processes every ``interval`` s; keeps each one's peak (GiB)."""

    def __init__(self, interval: float = 0.1) -> None:
        self.pids: dict[str, int] = {}
        self.peak: dict[str, float] = {}
        self.interval, self._stop = interval, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            for name, pid in list(self.pids.items()):
                try:
                    rss = psutil.Process(pid).memory_info().rss / 1024**3
                except psutil.Error:
                    continue
                self.peak[name] = max(self.peak.get(name, 0.0), rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> _Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run(quick: bool) -> list[Figure]:
    """Generate the input, fit the bundle, run each engine in its own process and compare."""
    size = QUICK if quick else FULL
    n = size["customers"]
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        write_input(root / "data", n, size["chunk"])
        bundle = fit_bundle(2_000 if quick else 20_000)
        print(f"generated {n:,} customers and a bundle in {time.perf_counter() - t0:.1f}s")

        (root / "local").mkdir()
        with _Peak() as local_peak:
            t0 = time.perf_counter()
            proc = ctx.Process(
                target=_local_run, args=(str(root / "data"), str(root / "local"), bundle)
            )
            proc.start()
            assert proc.pid is not None  # set by start()
            local_peak.pids["local"] = proc.pid
            proc.join()
            local_s = time.perf_counter() - t0
        if proc.exitcode != 0:
            raise RuntimeError(f"local run failed (exit code {proc.exitcode})")
        print(f"local engine: {local_s:.1f}s, peak {local_peak.peak['local']:.2f} GiB")

        partitions = max(4, n // 50_000)
        queue = ctx.Queue()
        with _Peak() as dask_peak:
            t0 = time.perf_counter()
            proc = ctx.Process(
                target=_dask_run,
                args=(str(root / "data"), str(root / "work"), bundle, partitions, queue),
            )
            proc.start()
            assert proc.pid is not None  # set by start()
            dask_peak.pids["client"] = proc.pid
            for i, pid in enumerate(queue.get()):
                dask_peak.pids[f"worker {i}"] = pid
            rows = queue.get()
            proc.join()
            dask_s = time.perf_counter() - t0
        if proc.exitcode != 0:
            raise RuntimeError(f"dask run failed (exit code {proc.exitcode})")
        if rows != n:
            raise RuntimeError(f"dask run scored {rows:,} customers of {n:,}")
        workers = {k: v for k, v in dask_peak.peak.items() if k.startswith("worker")}
        worst = max(workers.values())
        print(f"dask engine: {dask_s:.1f}s, peak per worker {workers}")

    note = f"{n:,} customers, {int(n * PER_CUSTOMER['transactions']):,} tx"
    local_gib = local_peak.peak["local"]
    figures = [
        Figure(NAME, "local: features + scoring wall time", local_s, "s", "", note),
        Figure(NAME, "local: peak RSS (process)", local_gib, "GiB"),
        Figure(
            NAME,
            "dask: wall time (2 workers)",
            dask_s,
            "s",
            "",
            f"{partitions} partitions, incl. cluster start and shuffle",
        ),
        Figure(NAME, "dask: peak RSS per worker (max)", worst, "GiB"),
        *[Figure(NAME, f"dask: peak RSS {k}", v, "GiB") for k, v in sorted(workers.items())],
        Figure(NAME, "dask: peak RSS client", dask_peak.peak.get("client", 0.0), "GiB"),
        Figure(
            NAME,
            "dask worker peak / local peak",
            worst / local_gib,
            "x",
            "< 0.5" if not quick else "",
            "same input, same code",
        ),
        Figure(NAME, "dask / local wall time", dask_s / local_s, "x"),
    ]
    return figures
