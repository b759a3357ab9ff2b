"""CBPE (models/performance_estimation.py) against realized figures on synthetic samples."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from models.performance_estimation import expected_churn_rate, expected_lift, expected_roc_auc
from training.evaluate import lift_and_capture


def _calibrated(n: int, a: float, b: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities from Beta(a, b) and outcomes drawn from them: calibrated by design."""
    rng = np.random.default_rng(seed)
    p = rng.beta(a, b, n)
    return p, (rng.random(n) < p).astype(int)


def test_expected_auc_matches_the_realized_auc_of_a_calibrated_sample() -> None:
    gaps = []
    for seed in range(5):
        p, y = _calibrated(20_000, 1.0, 3.0, seed)
        gaps.append(expected_roc_auc(p) - roc_auc_score(y, p))
    # sampling noise of an AUC on 20,000 rows is ~0.004: the estimate sits within it
    assert max(abs(g) for g in gaps) < 0.012
    assert abs(float(np.mean(gaps))) < 0.006


def test_expected_auc_falls_with_the_realized_one_when_the_probabilities_bunch() -> None:
    wide_p, wide_y = _calibrated(20_000, 0.8, 2.5, 1)
    narrow_p, narrow_y = _calibrated(20_000, 20.0, 60.0, 2)  # same mean, little spread
    wide, narrow = expected_roc_auc(wide_p), expected_roc_auc(narrow_p)
    assert narrow < wide - 0.1
    assert abs(narrow - roc_auc_score(narrow_y, narrow_p)) < 0.02
    assert abs(wide - roc_auc_score(wide_y, wide_p)) < 0.02


def test_ties_count_half_and_degenerate_samples_give_nan() -> None:
    assert abs(expected_roc_auc(np.full(100, 0.3)) - 0.5) < 1e-12
    assert np.isnan(expected_roc_auc(np.zeros(10)))
    assert np.isnan(expected_roc_auc(np.array([])))


def test_expected_rate_and_lift_match_the_realized_ones() -> None:
    p, y = _calibrated(50_000, 1.0, 4.0, 3)
    assert abs(expected_churn_rate(p) - y.mean()) < 0.01
    realized, _ = lift_and_capture(y, p)
    assert abs(expected_lift(p) - realized) < 0.1
