"""The workspace benchmark runs at smoke size: every page answers 200 inside the run (it
asserts that) and each gets a render time next to the /v1/at-risk baseline."""

import pytest

from bench import workspace as bench_workspace


@pytest.mark.slow  # fits a 2,000-customer demo bundle
def test_quick_run_times_every_page_against_the_baseline():
    figures = bench_workspace.run(quick=True)
    names = [f.name for f in figures]
    assert any(n.startswith("worklist page of 50") for n in names)
    assert any(n.startswith("customer page") for n in names)
    assert any(n.startswith("baseline") for n in names)
    assert all(f.value > 0 and f.unit == "ms" for f in figures)
    assert all("x the /v1/at-risk page" in f.note for f in figures if "baseline" not in f.name)
