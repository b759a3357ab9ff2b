"""The Dask benchmark runs at smoke size: both engines score every customer and the memory
figures are measured."""

import pytest

from bench import dask as bench_dask

# starts a Dask cluster (worker processes): make test only, not make test-fast
pytestmark = pytest.mark.slow


def test_quick_run_reports_time_memory_and_ratio():
    figures = {f.name: f for f in bench_dask.run(quick=True)}
    assert figures["local: peak RSS (process)"].value > 0.05
    assert figures["dask: peak RSS worker 0"].value > 0.05
    assert figures["dask: peak RSS worker 1"].value > 0.05
    assert figures["dask worker peak / local peak"].value > 0
    assert figures["dask: wall time (2 workers)"].value > 0
