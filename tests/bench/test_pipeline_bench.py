"""The pipeline benchmark at a tiny size: train and score run as commands, every step is
reported, and DuckDB counts the same rows and findings as the project's validation."""

from __future__ import annotations

import pandas as pd
import pytest

from bench import pipeline as bench_pipeline
from training.io import load_tables


@pytest.mark.slow  # trains and scores in subprocesses (make test, not test-fast)
def test_quick_run_reports_commands_steps_and_the_duckdb_ratio():
    figures = {f.name: f for f in bench_pipeline.run(quick=True)}
    for command in ("train", "score"):
        assert figures[f"{command} wall time"].value > 0
        assert figures[f"{command} peak RSS"].value > 0
    for step in ("load", "frames", "churn fit", "evaluate", "register"):
        assert f"train: {step}" in figures, step
    for step in ("load", "features", "score", "write"):
        assert f"score: {step}" in figures, step
    assert figures["load + validate / DuckDB"].value > 0


def test_duckdb_counts_what_validation_finds(tmp_path):
    bench_pipeline.write_bench_data(tmp_path, 300)
    tx = pd.read_parquet(tmp_path / "transactions.parquet")
    tx = pd.concat([tx, tx.iloc[[0, 1]]], ignore_index=True)  # two exact copies
    tx.loc[3, "amount"] = float("inf")
    tx.to_parquet(tmp_path / "transactions.parquet", index=False)
    now = pd.Timestamp.now(tz="UTC")
    counts = bench_pipeline.duckdb_checks(tmp_path, now)
    loaded = load_tables(tmp_path, now=now, check=False)
    assert {n: c["rows"] for n, c in counts.items()} == loaded.rows_in
    found = loaded.results["transactions"].counts
    assert counts["transactions"]["duplicate"] == found["duplicate"] == 2
    assert counts["transactions"]["bad_amount"] == found["bad_amount"] == 1


def test_step_lines_are_parsed_with_their_memory():
    log = (
        "2026-12-02 00:00:01 INFO step: churn fit done in 2 min 05 s, boosting rounds 90 "
        "(peak RSS 1.50 GiB)\n"
        "2026-12-02 00:00:02 INFO step: load done in 4.2 s (peak RSS since start 0.75 GiB)\n"
    )
    assert bench_pipeline.parse_steps(log) == {"churn fit": (125.0, 1.5), "load": (4.2, 0.75)}


def test_table_rows_counts_parquet_and_csv_without_reading_values(tmp_path):
    bench_pipeline.write_bench_data(tmp_path / "pq", 40)
    assert bench_pipeline.table_rows(tmp_path / "pq" / "customers.parquet") == 40
    parts = tmp_path / "parts" / "customers.parquet"
    parts.mkdir(parents=True)
    frame = pd.read_parquet(tmp_path / "pq" / "customers.parquet")
    frame.iloc[:15].to_parquet(parts / "part-0.parquet")
    frame.iloc[15:].to_parquet(parts / "part-1.parquet")
    assert bench_pipeline.table_rows(parts) == 40
    csv = tmp_path / "customers.csv"
    csv.write_text('customer_id,note\na,"two\nlines"\nb,\nc,x\n')
    assert bench_pipeline.table_rows(csv) == 3
