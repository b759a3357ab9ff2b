"""Reading a table from PostgreSQL into pandas: ADBC vs SQLAlchemy + psycopg 3, same run.

``sources.toml``'s ``[database]`` queries (training/sources.py) read the whole query result
into one DataFrame. The table here is transactions-shaped (text ``customer_id``,
``timestamptz`` ``timestamp``, ``double precision`` ``amount``; 10 M rows, ``--quick`` 20 k),
generated inside a throwaway PostgreSQL server (tests/postgres.py) with ``generate_series``.
Both clients run the same ``SELECT``, in interleaved rounds; medians are reported, with the
ratio of SQLAlchemy's time to ADBC's (the baseline is SQLAlchemy's ``pandas.read_sql``, the
usual way pandas reads a database).
"""

from __future__ import annotations

import statistics
import time

import pandas as pd

from bench.report import Figure

NAME = "sources"
QUERY = "SELECT customer_id, timestamp, amount FROM transactions"


def _make_table(url: str, rows: int) -> None:
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE transactions AS SELECT 'C' || (i % 1000000) AS customer_id, "
            "timestamptz '2024-01-01 00:00:00+00' + (i % 31536000) * interval '1 second' "
            "AS timestamp, (i % 10000) / 100.0::double precision AS amount "
            f"FROM generate_series(1, {rows}) AS i"
        )
        conn.commit()


def read_adbc(url: str) -> pd.DataFrame:
    """The query through ADBC (libpq's binary COPY into Arrow), then to pandas."""
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(url) as conn, conn.cursor() as cur:
        cur.execute(QUERY)
        return cur.fetch_arrow_table().to_pandas()


def read_sqlalchemy(url: str) -> pd.DataFrame:
    """The query through ``pandas.read_sql`` on a SQLAlchemy engine with psycopg 3."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return pd.read_sql(sqlalchemy.text(QUERY), conn)
    finally:
        engine.dispose()


def run(quick: bool = False) -> list[Figure]:
    """Median seconds per client and the ratio, on 10 M rows (``quick``: 20 k, 1 round)."""
    from tests.postgres import postgres_server

    rows, rounds = (20_000, 1) if quick else (10_000_000, 3)
    clients = {"adbc": read_adbc, "sqlalchemy_psycopg": read_sqlalchemy}
    times: dict[str, list[float]] = {c: [] for c in clients}
    with postgres_server() as url:
        _make_table(url, rows)
        for _ in range(rounds):  # interleaved, so drift hits both clients alike
            for name, read in clients.items():
                t0 = time.perf_counter()
                df = read(url)
                times[name].append(time.perf_counter() - t0)
                assert len(df) == rows, (name, len(df))
                del df
    med = {c: statistics.median(t) for c, t in times.items()}
    note = f"{rows:,} rows, median of {rounds}"
    return [
        Figure(NAME, "adbc_read", med["adbc"], "s", note=note),
        Figure(NAME, "sqlalchemy_psycopg_read", med["sqlalchemy_psycopg"], "s", note=note),
        Figure(
            NAME,
            "sqlalchemy_over_adbc",
            med["sqlalchemy_psycopg"] / med["adbc"],
            "x",
            note="time ratio; > 1: ADBC faster",
        ),
        Figure(NAME, "adbc_rows_per_s", rows / med["adbc"], "rows/s", note=note),
    ]
