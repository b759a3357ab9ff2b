"""The sources benchmark runs at smoke size: both PostgreSQL clients read every row and the
ratio of their times is reported."""

from bench import sources as bench_sources
from tests.postgres import require_postgres


def test_quick_run_reads_every_row_with_both_clients():
    require_postgres()
    figures = {f.name: f for f in bench_sources.run(quick=True)}
    assert figures["adbc_read"].value > 0 and figures["sqlalchemy_psycopg_read"].value > 0
    ratio = figures["sqlalchemy_psycopg_read"].value / figures["adbc_read"].value
    assert figures["sqlalchemy_over_adbc"].value == ratio
    assert "20,000 rows" in figures["adbc_read"].note
