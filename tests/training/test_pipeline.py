"""The training pipeline on real LightGBM, lifetimes and MLflow (sqlite in a temp folder)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from training import tracking
from training.batch import score
from training.pipeline import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_dir, make_settings):
    root = tmp_path_factory.mktemp("pipeline")
    settings = make_settings(root, demo_dir)
    first = train(settings)
    second = train(settings)
    return settings, first, second


def test_first_run_registers_and_promotes(trained):
    settings, first, _ = trained
    assert first.version == "1" and first.promoted
    assert tracking.champion_version(settings) in {"1", "2"}
    m = first.metrics
    assert 0.5 < m["valid.roc_auc"] <= 1
    # the model is compared with the generator's ground truth on the same customers
    assert m["valid.oracle_roc_auc"] >= m["valid.model_roc_auc_on_oracle_set"] - 0.02
    assert m["valid.oracle_roc_auc"] - m["valid.roc_auc"] < 0.15


def test_rerun_is_reproducible_and_passes_the_gate(trained):
    settings, _first, second = trained
    assert second.version == "2" and second.promoted
    assert "passes" in second.gate_reason
    v1 = tracking.load_version(settings, "1")
    v2 = tracking.load_version(settings, "2")
    assert v1.churn.model_text() == v2.churn.model_text()
    assert v1.clv.params_ == v2.clv.params_


def test_champion_that_needs_missing_features_is_kept(trained, tmp_path):
    settings, _, _ = trained
    before = tracking.champion_version(settings)
    only_tx = tmp_path / "only_tx"
    only_tx.mkdir()
    tx = pd.read_parquet(settings.data_dir / "transactions.parquet")
    tx.to_parquet(only_tx / "transactions.parquet")
    result = train(settings.model_copy(update={"data_dir": only_tx}))
    assert not result.promoted and "lacks" in result.gate_reason
    assert tracking.champion_version(settings) == before


def test_score_writes_a_verifiable_snapshot(trained):
    settings, _, _ = trained
    result = score(settings)
    meta = json.loads((settings.scores_dir / "snapshot.json").read_text())
    snap = pd.read_parquet(result.path)
    customers = pd.read_parquet(settings.data_dir / "customers.parquet")
    assert meta["rows"] == len(snap) == len(customers)
    assert meta["model_version"] == tracking.champion_version(settings)
    assert snap["churn_probability"].between(0, 1).all()
    assert (snap["clv"] >= 0).all()
    assert ((snap["value_at_risk"] - snap["churn_probability"] * snap["clv"]).abs() < 1e-9).all()
    reasons = json.loads(snap["top_reasons"].iloc[0])
    assert all({"feature", "description", "value", "contribution"} <= set(r) for r in reasons)
