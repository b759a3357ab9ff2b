"""Validation speed: a one-customer ``/v1/predict`` history and a 1M-row transactions table.

The server validates every posted history with :func:`features.validation.validate_table`, so a
table of a dozen rows must cost well under a millisecond; training validates tables of
millions of rows. The baseline, measured in the same run and interleaved, is the bare pandas
work no validation can skip: copying the frame (tiny tables) and parsing the timestamp and
amount columns (``pd.to_datetime``, ``pd.to_numeric``) of the large one.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import pandas as pd

from bench.report import Figure
from features.validation import validate_table

NAME = "validation"


def tiny_history() -> dict[str, pd.DataFrame]:
    """One customer as ``/v1/predict`` builds it: 12 transactions, 6 interactions, 2 answers."""
    rng = np.random.default_rng(1)
    ts = pd.date_range("2025-01-01", periods=12, freq="7D", tz="UTC")
    return {
        "customers": pd.DataFrame(
            {"customer_id": ["c1"], "signup_date": [ts[0]], "plan": ["basic"]}
        ),
        "transactions": pd.DataFrame(
            {"customer_id": ["c1"] * 12, "timestamp": ts, "amount": rng.uniform(1, 50, 12)}
        ),
        "interactions": pd.DataFrame(
            {
                "customer_id": ["c1"] * 6,
                "timestamp": ts[:6],
                "channel": ["phone", "chat"] * 3,
                "interaction_type": ["support_ticket"] * 6,
                "effort_score": [3.0, None, 5, 2, 1, 7],
                "csat": [4.0, 5, None, 3, 2, 1],
                "resolved": [True, False, True, None, True, True],
                "value_enhancement": [None] * 6,
            }
        ),
        "surveys": pd.DataFrame(
            {
                "customer_id": ["c1"] * 2,
                "timestamp": ts[:2],
                "element": ["nps", "quality"],
                "score": [9.0, 7.0],
            }
        ),
    }


def large_transactions(n: int, seed: int = 2) -> pd.DataFrame:
    """``n`` transactions as read from a CSV: every column text."""
    rng = np.random.default_rng(seed)
    seconds = pd.to_timedelta(rng.integers(0, 700 * 86400, n), unit="s")
    return pd.DataFrame(
        {
            "customer_id": pd.Series(rng.integers(0, n // 10, n).astype(str), dtype="str"),
            "timestamp": (pd.Timestamp("2024-01-01", tz="UTC") + seconds)
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .astype("str"),
            "amount": pd.Series(rng.uniform(-5, 100, n).round(2).astype(str), dtype="str"),
        }
    )


def _interleaved(
    fns: dict[str, Callable[[], object]], *, rounds: int, number: int
) -> dict[str, float]:
    """Median seconds per call of each function, measured in interleaved rounds."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            times[key].append((time.perf_counter() - t0) / number)
    return {k: statistics.median(v) for k, v in times.items()}


def _parse_only(raw: pd.DataFrame) -> None:
    pd.to_datetime(raw["timestamp"], utc=True, errors="coerce", format="ISO8601")
    pd.to_numeric(raw["amount"], errors="coerce")


def run(quick: bool = False) -> list[Figure]:
    now = pd.Timestamp.now(tz="UTC")
    figures = []
    rounds, number = (3, 5) if quick else (25, 20)
    for name, raw in tiny_history().items():
        jobs: dict[str, Callable[[], object]] = {
            "validate": partial(validate_table, name, raw, now=now),
            "copy": raw.copy,
        }
        got = _interleaved(
            jobs,
            rounds=rounds,
            number=number,
        )
        ms = got["validate"] * 1e3
        print(f"  one-customer {name:13s} {ms:7.3f} ms")
        figures += [
            Figure(NAME, f"one-customer {name}", ms, "ms", target="well under 1 ms"),
            Figure(NAME, f"one-customer {name} / frame copy", got["validate"] / got["copy"], "x"),
        ]
    n = 20_000 if quick else 1_000_000
    big = large_transactions(n)
    got = _interleaved(
        {
            "validate": lambda: validate_table("transactions", big, now=now),
            "parse": lambda: _parse_only(big),
        },
        rounds=1 if quick else 3,
        number=1,
    )
    print(f"  {n:,} transactions {got['validate']:7.3f} s (parse only {got['parse']:.3f} s)")
    return [
        *figures,
        Figure(NAME, f"{n:,} text transactions", got["validate"], "s", note="median"),
        Figure(NAME, "large / bare parsing", got["validate"] / got["parse"], "x"),
    ]
