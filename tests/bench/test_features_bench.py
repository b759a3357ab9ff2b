"""The feature benchmark runs at smoke size, and its DuckDB reference agrees with our RFM."""

from bench import features as bench_features
from bench.features import QUICK, bench_tables


def test_quick_run_reports_build_memory_and_ratio():
    figures = {f.name: f for f in bench_features.run(quick=True)}
    assert figures["build_features wall time"].value > 0
    assert figures["peak RSS (process)"].unit == "GiB"
    assert figures["feature columns"].value > 80
    assert figures["RFM project / DuckDB"].value > 0


def test_bench_tables_are_seeded_and_sized():
    a, b = bench_tables(QUICK, seed=1), bench_tables(QUICK, seed=1)
    assert len(a.transactions) == QUICK["transactions"]
    assert len(a.surveys) == QUICK["surveys"]
    assert a.transactions.equals(b.transactions)
    assert (a.transactions["amount"] < 0).any()  # refunds are part of the load
