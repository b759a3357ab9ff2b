"""``make score CLV_HORIZON=days``: the CLV horizon reaches every scored row and the snapshot's
meta, apart from the churn horizon, on the small demo data through real training and MLflow."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from models.contract import DEFAULT_CLV_HORIZON_DAYS
from models.history import latest_folder
from serving.snapshot import load_snapshot
from training.__main__ import main
from training.batch import score

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def settings(tmp_path_factory, demo_trained):
    # scores the session's demo run (its champion) into a folder of this module
    return demo_trained.reader(tmp_path_factory.mktemp("clv-horizon"))


def _snapshot(settings, **overrides) -> tuple[pd.DataFrame, dict]:  # type: ignore[type-arg]
    result = score(settings.model_copy(update=overrides))
    meta = json.loads((result.path.parent / "snapshot.json").read_text())
    return pd.read_parquet(result.path).set_index("customer_id"), meta


def test_clv_horizon_is_stated_in_every_row_and_separate_from_the_churn_horizon(settings):
    year, year_meta = _snapshot(settings)
    year_dir = settings.scores_dir.parent / "year"
    shutil.copytree(settings.scores_dir, year_dir)
    half, half_meta = _snapshot(settings, clv_horizon_days=180)

    assert (year["clv_horizon_days"] == DEFAULT_CLV_HORIZON_DAYS).all()
    assert (half["clv_horizon_days"] == 180).all()
    assert year_meta["clv_horizon_days"] == DEFAULT_CLV_HORIZON_DAYS
    assert half_meta["clv_horizon_days"] == 180
    assert year_meta["horizon_days"] == half_meta["horizon_days"] == settings.horizon_days
    # the churn side does not move with the CLV horizon; the value does
    pd.testing.assert_series_equal(year["churn_probability"], half["churn_probability"])
    bought = year["clv"].notna()
    assert bought.any()
    assert (half.loc[bought, "clv"] <= year.loc[bought, "clv"] + 1e-9).all()
    assert half.loc[bought, "clv"].sum() < year.loc[bought, "clv"].sum()
    assert (half.loc[bought, "clv_high"] <= year.loc[bought, "clv_high"] + 1e-9).all()
    # the residual value has no horizon
    pd.testing.assert_series_equal(year["residual_clv"], half["residual_clv"])
    # both snapshots pass the server's validation
    for directory in (year_dir, settings.scores_dir):
        snapshot = load_snapshot(directory)
        row = next(iter(snapshot.scores.values()))
        assert (row["p_alive"] is None) == (row["p_alive_note"] is not None)


def test_cli_flag_sets_the_clv_horizon(settings, monkeypatch, capsys):
    monkeypatch.setenv("CHURN_MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri)
    monkeypatch.setenv("CHURN_SCORES_DIR", str(settings.scores_dir))
    monkeypatch.setenv("CHURN_QUARANTINE_DIR", str(settings.quarantine_dir))
    code = main(["score", "--data", str(settings.data_dir), "--clv-horizon", "30"])
    assert code == 0, capsys.readouterr().err
    snap = pd.read_parquet(latest_folder(settings.scores_dir) / "snapshot.parquet")
    assert (snap["clv_horizon_days"] == 30).all()
