"""The simulated year: weekly ``make retrain`` on the demo generator with a drift injected in
the middle of the year (docs/monitoring.md, "The simulated year")."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.simulate import DRIFT_CHECKS, simulate, table

#: Customers of the simulated base: a year of weekly retrains has to fit in a few minutes
#: on two cores, so the base is small (the AUCs are still known to a few hundredths).
CUSTOMERS = 800
WEEKS = 52
HORIZON_DAYS = 30


@pytest.mark.slow
@pytest.mark.long
def test_a_simulated_year_catches_the_drift_and_the_estimate_tracks_the_realized_auc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    sim = simulate(
        tmp_path / "simulate",
        customers=CUSTOMERS,
        weeks=WEEKS,
        horizon_days=HORIZON_DAYS,
        drift="rename",
    )
    print(table(sim))  # the figures, in the test log
    assert len(sim.weeks) == WEEKS
    assert sim.change_week is not None and 0 < sim.change_week < WEEKS

    # the drift alert fires within two snapshots of the change, and nothing fires before it
    assert sim.alerts_before_change == []
    first = sim.first_drift_alert_week
    assert first is not None, "the drift never raised an alert"
    assert sim.change_week <= first <= sim.change_week + 1
    fired = sim.weeks[first]["alerts"]
    assert any(a["check"] in DRIFT_CHECKS and "other_contacts" in a["subject"] for a in fired)

    # realized ROC-AUC for every snapshot whose horizon has passed: all of them by the end
    assert len(sim.rows) == WEEKS
    for row in sim.rows:
        assert row["horizon_passed"], row["as_of"]
        assert row["realized"] is not None and row["realized"]["roc_auc"] is not None

    # the estimate tracks the realized figure
    gap = sim.auc_gap()
    assert gap["n"] == WEEKS
    assert gap["mean_abs"] < 0.05, gap
    assert Path(sim.report).is_file()
