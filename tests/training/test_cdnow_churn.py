"""CDNOW as a churn problem: a model trained only on purchases up to 1997-09-30, scored as of
1997-10-01 (churn = no purchase in the next 90 days), next to the BG/NBD expected-purchases
score on the same customers.

Issue 5 asks the churn model to match BG/NBD here (ROC-AUC ~0.79). It does not yet: with one
complete training cutoff (1997-04-04, customers at most three months old) it reaches ~0.77,
boosting from the BG/NBD prior (``ChurnModel(prior="bgnbd")``; ~0.74 without it): the trees
that help at the validation cutoff (1997-07-03) do not carry over to 1997-10-01.
More training cutoffs need a longer history than CDNOW has before the holdout; until then this
test pins what holds, so a regression below it fails."""

from __future__ import annotations

import pytest
from sklearn.metrics import roc_auc_score

from features.model_outputs import EXPECTED_PURCHASES
from features.schema import Tables
from training.cdnow import CALIBRATION_CUTOFF, read_cdnow
from training.config import TrainSettings
from training.frames import NON_FEATURES, build_frames, labelled_frame, plan_cutoffs
from training.pipeline import fit_churn

HORIZON = 90


@pytest.fixture(scope="module")
def scored():
    tx = read_cdnow("sample")
    calibration = Tables(transactions=tx.loc[tx["timestamp"] < CALIBRATION_CUTOFF])
    plan = plan_cutoffs(calibration, horizon_days=HORIZON, n_training=4, spacing_days=14)
    churn, _ = fit_churn(build_frames(calibration, plan), TrainSettings())
    # Scored at 1997-10-01 on the full file: features read only purchases before it.
    holdout = labelled_frame(
        Tables(transactions=tx), as_of=CALIBRATION_CUTOFF, horizon_days=HORIZON
    )
    features = [c for c in holdout.columns if c not in NON_FEATURES]
    return holdout, churn.predict_proba(holdout[features])


def test_trained_only_on_the_calibration_period(scored):
    holdout, _ = scored
    assert len(holdout) == 2357
    assert 0.5 < holdout["churned"].mean() < 0.95


def test_churn_model_and_bgnbd_rank_holdout_churners(scored):
    holdout, prob = scored
    y = holdout["churned"].astype(int)
    model_auc = roc_auc_score(y, prob)
    bgnbd_auc = roc_auc_score(y, -holdout[EXPECTED_PURCHASES])
    assert 0.76 < bgnbd_auc < 0.82  # ~0.79, as issue 5 quotes
    assert model_auc > 0.75, (model_auc, bgnbd_auc)
