"""The CLV intervals benchmark runs at smoke size and reports the extra cost against predict."""

from bench import clv_intervals


def test_quick_run_reports_baseline_extra_and_ratio():
    figures = {f.name: f for f in clv_intervals.run(quick=True)}
    assert figures["customers"].value == 20_000
    assert 0 < figures["distinct histories"].value < 20_000
    assert figures["predict over 365 days (baseline)"].value > 0
    assert figures["intervals, residual value, notes (extra)"].value > 0
    assert figures["customers with an interval"].value == 1.0
