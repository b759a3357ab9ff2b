"""The CLV benchmark runs at smoke size: the project's fit (compressed, warm-started) and the
plain lifetimes fit agree; the simulated summary is a valid BG/NBD summary in whole days."""

import numpy as np

from bench import clv as bench_clv
from bench.clv import simulate_summary
from models.clv import WARM_START_ROWS


def test_quick_run_reports_times_ratio_and_agreement():
    figures = {f.name: f for f in bench_clv.run(quick=True)}
    assert figures["customers"].value == 100_000
    # big enough that the warm start from the coarse grid is exercised
    assert WARM_START_ROWS <= figures["compressed rows"].value < 100_000
    assert figures["speed-up"].value > 0
    assert figures["max relative parameter difference"].value < 1e-4


def test_simulated_summary_is_seeded_and_valid():
    a, b = simulate_summary(5000, seed=3), simulate_summary(5000, seed=3)
    assert a.equals(b)
    for col in ("recency_days", "T_days"):
        assert (a[col] == np.floor(a[col])).all()  # whole days
    assert (a["recency_days"] <= a["T_days"]).all()
    repeat = a["frequency"] > 0
    assert (a.loc[repeat, "recency_days"] > 0).all() and (a.loc[~repeat, "recency_days"] == 0).all()
    assert a["T_days"].between(273 - 84, 272).all()
    # about 40% repeat buyers, as in CDNOW (946 of 2,357)
    assert 0.3 < repeat.mean() < 0.5
