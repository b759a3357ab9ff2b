"""``make train`` and ``make score`` end to end on the local engine, and loading + validating
the input tables against DuckDB running the same checks on the same files.

The targets on the 2-core machine (for 200,000 demo customers: train < 2 min 30 s, score
< 40 s; for 1,000,000 customers with 10M transactions, 5M interactions and 2M survey answers:
train < 10 min, score < 2 min, each < 12 GiB peak RSS) are printed next to the figures, never
asserted. Each command runs as ``python -m training`` in a fresh process, as a user runs it:
its wall time, its peak RSS (``wait4``) and the duration and peak RSS of every step it logs
(``step: ... done in ...``) are reported.

The reference for loading: DuckDB reading the same Parquet files and computing the same
null, range, future-timestamp, vocabulary and exact-duplicate checks as counts (it keeps no
rows; the project also builds the clean tables and the quarantine). Both run in this process,
interleaved, medians; the ratio is printed.

Input: :func:`bench.features.bench_tables` (the features bench's shape, 10 transactions, 5
interactions and 2 survey answers per customer) written as one Parquet file per table, or a
data folder given with ``--data`` (e.g. ``python -m training data --customers 200000``).
``python -m bench pipeline`` runs a small size; larger ones by flag::

    python -m bench.pipeline --customers 1000000
    python -m bench.pipeline --data data/demo200k
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from bench.features import AS_OF, START, bench_tables
from bench.report import Figure, print_figures
from features.schema import SURVEY_ELEMENTS, TABLES
from training.io import CSV_OPTIONS, find_table_files, load_tables

NAME = "pipeline"
#: Events per customer, as in the features bench (10M / 5M / 2M for 1M customers).
PER_CUSTOMER = {"transactions": 10, "interactions": 5, "surveys": 2}
DEFAULT_CUSTOMERS = 20_000
QUICK_CUSTOMERS = 1_500
#: Targets by size (customers), as the issue states them.
TARGETS = {
    200_000: {"train": "< 150 s", "score": "< 40 s"},
    1_000_000: {"train": "< 600 s, < 12 GiB", "score": "< 120 s, < 12 GiB"},
}
_STEP = re.compile(r"step: (?P<name>[\w ]+?) done in (?P<time>[\d.]+ s|\d+ min \d+ s)(?:,| \()")
_RSS = re.compile(r"peak RSS(?: since start)? (?P<gib>[\d.]+) GiB\)")


def bgnbd_transactions(customers: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """Purchases as BG/NBD assumes them (Fader, Hardie & Lee 2005): the first at signup, then
    at a Poisson rate (Gamma-distributed over customers) until the customer drops out, with a
    Beta-distributed chance after each purchase; spend Gamma per customer. About
    :data:`PER_CUSTOMER` transactions per customer over the two years. The features bench's
    uniform times leave BG/NBD's dropout unidentified, and a training run would spend most of
    its time in the CLV fallbacks."""
    rng = np.random.default_rng(seed)
    n = len(customers)
    week = pd.Timedelta(days=7).value
    signup = customers["signup_date"].array.as_unit("ns").asi8
    end = (START + (AS_OF - START) * 1.03).value
    weeks = (end - signup) / week
    rate = rng.gamma(1.0, 0.45, n)  # purchases per week while alive
    dropout = rng.beta(2.0, 14.0, n)
    count = np.minimum(rng.geometric(dropout), 400)  # purchases before dropping out
    owner = np.repeat(np.arange(n), count)
    first = np.cumsum(count) - count
    gaps = rng.exponential(1.0, len(owner)) / rate[owner]
    gaps[first] = 0.0
    at = np.cumsum(gaps)
    at -= at[first][owner]
    keep = at < weeks[owner]
    owner, at = owner[keep], at[keep]
    spend = rng.gamma(3.0, 12.0, n)  # each customer's mean order value
    return pd.DataFrame(
        {
            "customer_id": customers["customer_id"].to_numpy()[owner],
            "timestamp": pd.to_datetime(signup[owner] + (at * week).astype(np.int64), utc=True),
            "amount": np.round(rng.gamma(4.0, spend[owner] / 4.0), 2),
        }
    ).astype({"customer_id": "str"})


def write_bench_data(out: Path, customers: int, *, seed: int = 0) -> dict[str, int]:
    """The bench tables for ``customers`` customers as ``out/<table>.parquet`` (transactions
    by :func:`bgnbd_transactions`); their rows."""
    sizes = {"customers": customers, **{t: r * customers for t, r in PER_CUSTOMER.items()}}
    sizes["transactions"] = 1  # replaced below
    tables = bench_tables(sizes, seed=seed)
    assert tables.customers is not None  # bench_tables always writes them
    tables = replace(tables, transactions=bgnbd_transactions(tables.customers, seed=seed))
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.present().items():
        frame.to_parquet(out / f"{name}.parquet", index=False)
    return {n: len(f) for n, f in tables.present().items()}


def table_rows(path: Path) -> int:
    """Rows of a table file without reading its values: the Parquet footer's row count (a
    file or a folder of parts), else the lines of a CSV file after its header. (Reading no
    columns with pandas gives an empty frame of zero rows, whatever the file holds.)"""
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        parts = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
        return sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
    # quoted fields may hold line breaks: count records with the reader the project uses
    reader = pd.read_csv(path, usecols=[0], chunksize=1_000_000, **CSV_OPTIONS)
    return sum(len(chunk) for chunk in reader)


def _seconds(text: str) -> float:
    if "min" in text:
        minutes, secs = re.findall(r"\d+", text)
        return 60 * int(minutes) + int(secs)
    return float(text.removesuffix(" s"))


def parse_steps(log: str) -> dict[str, tuple[float, float | None]]:
    """Step name -> (seconds, peak RSS GiB) from the ``step: ... done in ...`` log lines."""
    out: dict[str, tuple[float, float | None]] = {}
    for line in log.splitlines():
        m = _STEP.search(line)
        if m:
            rss = _RSS.search(line)
            out[m["name"]] = (_seconds(m["time"]), float(rss["gib"]) if rss else None)
    return out


def run_command(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run ``python -m training ARGS`` in a fresh process: wall seconds, its peak RSS (GiB)
    and its log (standard error).

    Raises
    ------
    RuntimeError
        The command failed (its last log lines in the message).
    """
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "training", *args],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - t0
        err.seek(0)
        log = err.read()
    if proc.returncode != 0:
        tail = "\n".join(log.splitlines()[-5:])
        raise RuntimeError(f"python -m training {args[0]} failed ({proc.returncode}):\n{tail}")
    return seconds, usage.ru_maxrss / 1024**2, log


def _sql_name(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def duckdb_checks(data_dir: Path, now: pd.Timestamp) -> dict[str, dict[str, int]]:
    """Per table, the counts of the validation's checks computed by DuckDB over the files:
    rows, blank required values, timestamps after ``now``, values out of range, unknown survey
    elements, non-finite amounts and exact duplicate rows (repeats of an earlier row)."""
    import duckdb  # the bench extra: reference only

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    out: dict[str, dict[str, int]] = {}
    for name, path in find_table_files(data_dir).items():
        spec = TABLES[name]
        source = f"read_parquet('{path}/**/*.parquet')" if path.is_dir() else f"'{path}'"
        columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
        checks = ["count(*) AS rows"]
        for col in spec.required:
            checks.append(f"count(*) FILTER ({_sql_name(col)} IS NULL) AS missing_{col}")
        for col in spec.timestamps:
            if col in columns:
                checks.append(
                    f"count(*) FILTER ({_sql_name(col)} > TIMESTAMPTZ '{now.isoformat()}') "
                    f"AS future_{col}"
                )
        for col, (lo, hi) in spec.ranges.items():
            if col in columns:
                checks.append(
                    f"count(*) FILTER ({_sql_name(col)} NOT BETWEEN {lo} AND {hi}) "
                    f"AS {col}_out_of_range"
                )
        if name == "transactions":
            checks.append("count(*) FILTER (NOT isfinite(amount::DOUBLE)) AS bad_amount")
        if name == "surveys":
            elements = ", ".join(f"'{e}'" for e in sorted(SURVEY_ELEMENTS))
            checks.append(
                f"count(*) FILTER (lower(trim(element)) NOT IN ({elements})) AS unknown_element"
            )
        row = con.execute(f"SELECT {', '.join(checks)} FROM {source}").fetchone()
        assert row is not None  # an aggregate always has a row
        counts = dict(zip([c.split(" AS ")[-1] for c in checks], map(int, row), strict=True))
        # DISTINCT takes missing values as equal, as the validation does
        key = "customer_id" if name == "customers" else "*"
        dupes = con.execute(
            f"SELECT (SELECT count(*) FROM {source}) - "
            f"(SELECT count(*) FROM (SELECT DISTINCT {key} FROM {source}))"
        ).fetchone()
        counts["duplicate"] = int(dupes[0]) if dupes else 0
        out[name] = counts
    con.close()
    return out


def load_vs_duckdb(data_dir: Path, *, rounds: int) -> tuple[float, float, dict[str, int]]:
    """Median seconds of :func:`training.io.load_tables` and of :func:`duckdb_checks` on the
    same files, interleaved rounds; and the rows each saw (they must agree)."""
    now = pd.Timestamp.now(tz="UTC")
    ours, theirs = [], []
    rows: dict[str, int] = {}
    for _ in range(rounds):
        t0 = time.perf_counter()
        loaded = load_tables(data_dir, now=now, check=False)
        ours.append(time.perf_counter() - t0)
        rows = loaded.rows_in
        del loaded
        t0 = time.perf_counter()
        counts = duckdb_checks(data_dir, now)
        theirs.append(time.perf_counter() - t0)
        seen = {n: c["rows"] for n, c in counts.items()}
        if seen != rows:
            raise AssertionError(f"DuckDB read {seen} rows, the project {rows}")
    return statistics.median(ours), statistics.median(theirs), rows


def bench_pipeline(data_dir: Path, work: Path, *, customers: int, rounds: int = 1) -> list[Figure]:
    """Train and score on ``data_dir`` (MLflow, quarantine and snapshot under ``work``) and
    time loading + validating against DuckDB; the figures."""
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        "CHURN_MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        "CHURN_MLFLOW_ARTIFACT_ROOT": str(work / "mlartifacts"),
        "CHURN_QUARANTINE_DIR": str(work / "quarantine"),
        "CHURN_SCORES_DIR": str(work / "scores"),
    }
    targets = TARGETS.get(customers, {})
    size = f"{customers:,} customers"
    figures = []
    for command in ("train", "score"):
        print(f"  {command} on {size} ...", flush=True)
        seconds, rss, log = run_command([command, "--data", str(data_dir), "--force"], env)
        summary = [line for line in log.splitlines() if f"{command} done in" in line]
        print(f"  {summary[-1].split(' INFO ')[-1] if summary else command}", flush=True)
        steps = parse_steps(log)
        # the steps reset the kernel's high-water mark (per-step peaks), which wait4 reports:
        # the command's peak is the highest of the steps' and the last window's
        rss = max([rss, *(gib for _, gib in steps.values() if gib is not None)])
        figures += [
            Figure(NAME, f"{command} wall time", seconds, "s", targets.get(command, ""), size),
            Figure(NAME, f"{command} peak RSS", rss, "GiB"),
        ]
        for step, (secs, gib) in steps.items():
            note = f"peak {gib:.2f} GiB" if gib is not None else ""
            figures.append(Figure(NAME, f"{command}: {step}", secs, "s", note=note))
    ours, duck, rows = load_vs_duckdb(data_dir, rounds=rounds)
    note = f"{sum(rows.values()):,} rows; median of {rounds}"
    figures += [
        Figure(NAME, "load + validate (project)", ours, "s", note=note),
        Figure(NAME, "same checks (DuckDB SQL)", duck, "s", note="counts only, same files"),
        Figure(NAME, "load + validate / DuckDB", ours / duck, "x", "<= 3x"),
    ]
    return figures


def run(
    quick: bool = False, *, customers: int | None = None, data: Path | None = None
) -> list[Figure]:
    """``python -m bench pipeline``: a small generated size (``--quick``: smaller still), or
    ``customers`` generated, or the data folder ``data``."""
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        work = Path(tmp)
        if data is None:
            customers = customers or (QUICK_CUSTOMERS if quick else DEFAULT_CUSTOMERS)
            data = work / "data"
            t0 = time.perf_counter()
            rows = write_bench_data(data, customers)
            print(f"  generated {rows} in {time.perf_counter() - t0:.1f} s", flush=True)
        else:
            customers = table_rows(find_table_files(data)["customers"])
        return bench_pipeline(data, work, customers=customers, rounds=1 if quick else 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__)
    parser.add_argument("--customers", type=int, default=None, help="generated customers")
    parser.add_argument("--data", type=Path, default=None, help="an existing data folder")
    parser.add_argument("--quick", action="store_true", help="smoke-test size")
    args = parser.parse_args(argv)
    print_figures(run(args.quick, customers=args.customers, data=args.data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
