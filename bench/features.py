"""Feature build at one cutoff for a million customers, against RFM in DuckDB SQL.

The targets on the 2-core machine: the whole :func:`features.build.build_features` under
60 s and 6 GB peak for 1,000,000 customers with 10M transactions, 5M interactions and 2M
survey answers; the RFM part (frequency, recency, T, monetary) within 3x of the same
aggregation written in DuckDB SQL in the same run. DuckDB is the reference only (the ``bench``
extra); the product never imports it.

The tables are generated here by a fast seeded function (uniform times, Gamma spend), not by
``training.demo_data`` whose ground-truth Monte Carlo would dominate the run: the benchmark
measures the feature code, and these tables have the validated dtypes the builder receives.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from bench.report import Figure, median_time, peak_rss_gib
from features.build import build_features
from features.schema import ELEMENTS_BY_LEVEL, NPS_ELEMENT, Tables
from features.transactions import RFM_COLUMNS, rfm_features

NAME = "features"
START = pd.Timestamp("2024-07-01", tz="UTC")
AS_OF = pd.Timestamp("2026-07-01", tz="UTC")
#: Full size and the --quick smoke size.
FULL = {
    "customers": 1_000_000,
    "transactions": 10_000_000,
    "interactions": 5_000_000,
    "surveys": 2_000_000,
}
QUICK = {"customers": 2_000, "transactions": 20_000, "interactions": 10_000, "surveys": 4_000}
CHANNELS = ("phone", "chat", "email", "web", "in_app")
TYPES = ("support_ticket", "complaint", "onboarding", "education", "usage")
ELEMENTS = (*[e for level in ELEMENTS_BY_LEVEL.values() for e in level], NPS_ELEMENT)


def bench_tables(sizes: dict[str, int], *, seed: int = 0, first_id: int = 0) -> Tables:
    """Seeded validated-looking tables: ``customer_id`` str, UTC timestamps over two years
    before :data:`AS_OF` (plus ~3% after it, which the builder must ignore). ``first_id``
    numbers the customers from there, so chunks of a larger base can be made one by one."""
    rng = np.random.default_rng(seed)
    n = sizes["customers"]
    ids = pd.Index([f"C{i:07d}" for i in range(first_id, first_id + n)], dtype="str")
    span = (AS_OF - START).value * 1.03

    def events(k: int) -> tuple[pd.Series, pd.Series]:
        # Skewed activity (a few heavy customers), as in real CRM exports.
        who = np.minimum((rng.pareto(1.5, k) * n / 8).astype(np.int64), n - 1)
        who = rng.permutation(n)[who]
        ts = START.value + (rng.random(k) * span).astype(np.int64)
        return (
            pd.Series(ids[who], dtype="str"),
            pd.Series(pd.to_datetime(ts, utc=True).as_unit("ns")),
        )

    signup = START.value + (rng.random(n) * (AS_OF - START).value * 0.9).astype(np.int64)
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_date": pd.to_datetime(signup, utc=True).as_unit("ns"),
            "plan": pd.Series(rng.choice(["basic", "plus", "premium"], n), dtype="str"),
        }
    )
    k = sizes["transactions"]
    cid, ts = events(k)
    amount = np.round(rng.gamma(2.0, 25.0, k), 2)
    amount[rng.random(k) < 0.03] *= -1  # refunds
    transactions = pd.DataFrame({"customer_id": cid, "timestamp": ts, "amount": amount})
    k = sizes["interactions"]
    cid, ts = events(k)
    interactions = pd.DataFrame(
        {
            "customer_id": cid,
            "timestamp": ts,
            "channel": pd.Series(np.asarray(CHANNELS)[rng.integers(0, 5, k)], dtype="str"),
            "interaction_type": pd.Series(np.asarray(TYPES)[rng.integers(0, 5, k)], dtype="str"),
            "effort_score": np.where(rng.random(k) < 0.5, rng.integers(1, 8, k), np.nan),
            "csat": np.where(rng.random(k) < 0.4, rng.integers(1, 6, k), np.nan),
            "resolved": pd.array(rng.random(k) < 0.8, dtype="boolean"),
            "value_enhancement": np.where(rng.random(k) < 0.3, rng.integers(1, 8, k), np.nan),
        }
    )
    k = sizes["surveys"]
    cid, ts = events(k)
    surveys = pd.DataFrame(
        {
            "customer_id": cid,
            "timestamp": ts,
            "element": pd.Series(
                np.asarray(ELEMENTS)[rng.integers(0, len(ELEMENTS), k)], dtype="str"
            ),
            "score": rng.integers(0, 11, k).astype("float64"),
        }
    )
    return Tables(customers, transactions, interactions, surveys)


RFM_SQL = """
WITH days AS (
    SELECT customer_id, date_trunc('day', "timestamp") AS day, sum(amount) AS amount
    FROM transactions
    WHERE "timestamp" < $as_of AND amount >= 0
    GROUP BY customer_id, day
), firsts AS (
    SELECT customer_id, arg_min(amount, day) AS first_amount, min(day) AS first_day,
           max(day) AS last_day, count(*) AS n_days, sum(amount) AS total
    FROM days GROUP BY customer_id
)
SELECT customer_id,
       n_days - 1 AS frequency,
       date_diff('second', first_day, last_day) / 86400.0 AS recency_days,
       date_diff('second', first_day, $as_of) / 86400.0 AS T_days,
       CASE WHEN n_days > 1 THEN (total - first_amount) / (n_days - 1) END
           AS monetary_repeat_mean
FROM firsts
"""


def duckdb_rfm(transactions: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """The same RFM (same-day merging, refunds excluded, first day out of the monetary mean)
    in DuckDB SQL over the in-memory frame; the reference the project's RFM is compared to."""
    import duckdb  # the bench extra: reference only

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("transactions", transactions)
    out = con.execute(RFM_SQL, {"as_of": as_of.to_pydatetime()}).df()
    con.close()
    return out.set_index("customer_id").sort_index()


def run(quick: bool) -> list[Figure]:
    """Generate the tables, time the full build once and RFM vs DuckDB (medians of 3)."""
    sizes = QUICK if quick else FULL
    t0 = time.perf_counter()
    tables = bench_tables(sizes)
    gen_s = time.perf_counter() - t0
    print(f"generated {sizes} in {gen_s:.1f}s", flush=True)
    base_gib = peak_rss_gib()
    build_s, frame = median_time(lambda: build_features(tables, as_of=AS_OF), repeat=1)
    peak = peak_rss_gib()
    transactions = tables.transactions
    assert transactions is not None  # bench_tables always writes them
    ours_s, rfm = median_time(lambda: rfm_features(transactions, as_of=AS_OF))
    duck_s, ref = median_time(lambda: duckdb_rfm(transactions, AS_OF))
    cols = list(RFM_COLUMNS)
    pd.testing.assert_frame_equal(
        rfm[cols].sort_index().astype("float64"),
        ref[cols].astype("float64"),
        check_names=False,
        check_index_type=False,
    )
    n = sizes["customers"]
    size_note = f"{n:,} customers, {sizes['transactions']:,} tx"
    return [
        Figure(
            NAME, "build_features wall time", build_s, "s", "< 60 s" if not quick else "", size_note
        ),
        Figure(
            NAME,
            "peak RSS (process)",
            peak,
            "GiB",
            "< 6 GB" if not quick else "",
            f"{base_gib:.2f} GiB after generating",
        ),
        Figure(NAME, "feature columns", float(frame.shape[1]), "count", "", f"{len(frame):,} rows"),
        Figure(NAME, "RFM (project) median", ours_s, "s"),
        Figure(NAME, "RFM (DuckDB SQL) median", duck_s, "s"),
        Figure(
            NAME,
            "RFM project / DuckDB",
            ours_s / duck_s,
            "x",
            "<= 3x" if not quick else "",
            "same rows, same values",
        ),
    ]
