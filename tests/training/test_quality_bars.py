"""The quality bars on the demo data the README trains on (20,000 customers, seed 42):
validation ROC-AUC within 0.02 of the oracle AUC, expected calibration error under 0.02, and
the churn model ahead of both baselines, all on the validation cutoff's test half.

The pipeline's own steps run here (frames, fit, calibration, evaluation) without MLflow, which
the pipeline tests cover on a smaller data set."""

from __future__ import annotations

import pytest

from training.config import TrainSettings
from training.demo_data import write_demo_data
from training.frames import build_frames, plan_cutoffs
from training.io import load_tables
from training.pipeline import evaluate, fit_churn

# trains on the 20,000-customer demo set: make test only, not make test-fast
pytestmark = pytest.mark.slow

DEMO_CUSTOMERS, DEMO_SEED = 20_000, 42  # the Makefile's defaults (CUSTOMERS, SEED)


@pytest.fixture(scope="module")
def metrics(tmp_path_factory) -> dict[str, float]:
    data = tmp_path_factory.mktemp("demo-full")
    write_demo_data(data, n_customers=DEMO_CUSTOMERS, seed=DEMO_SEED)
    settings = TrainSettings(data_dir=data)
    tables = load_tables(data).tables
    plan = plan_cutoffs(
        tables,
        horizon_days=settings.horizon_days,
        n_training=settings.n_training_cutoffs,
        spacing_days=settings.cutoff_spacing_days,
    )
    frames = build_frames(tables, plan)
    churn, _ = fit_churn(frames, settings)
    m, _, _ = evaluate(churn, frames, plan, settings)
    return m


def test_validation_auc_is_within_two_points_of_the_oracle(metrics):
    assert metrics["valid.oracle_n"] == metrics["valid.n"]  # same customers
    gap = metrics["valid.oracle_roc_auc"] - metrics["valid.roc_auc"]
    assert 0 < gap < 0.02, metrics


def test_probabilities_are_calibrated(metrics):
    assert metrics["valid.ece"] < 0.02


def test_model_beats_both_baselines(metrics):
    for name in ("bgnbd", "logistic"):
        assert metrics["valid.roc_auc"] > metrics[f"baseline.{name}.roc_auc"], name
        assert metrics["valid.pr_auc"] > metrics[f"baseline.{name}.pr_auc"], name
    # the BG/NBD score is a ranking; the logistic regression's probabilities are compared too
    assert metrics["valid.log_loss"] < metrics["baseline.logistic.log_loss"]
