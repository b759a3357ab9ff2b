"""Evaluation metrics on hand-checkable inputs."""

import numpy as np
import pytest

from training.evaluate import classification_metrics, expected_calibration_error, lift_and_capture


def test_ece_is_small_for_calibrated_and_large_for_shifted_probabilities():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 50_000)
    y = (rng.random(p.size) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.01
    assert expected_calibration_error(y, np.clip(p + 0.2, 0, 1)) > 0.15


def test_lift_and_capture_by_hand():
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 1, 0] * 10)  # 30% churn
    score = np.zeros(100)
    score[:10] = 1.0  # top 10%: rows 0..9 hold 3 churners
    lift, capture = lift_and_capture(y, score)
    assert lift == pytest.approx(0.3 / 0.3)
    assert capture == pytest.approx(3 / 30)
    perfect = y.astype(float)
    lift, capture = lift_and_capture(y, perfect)
    assert lift == pytest.approx(1 / 0.3) and capture == pytest.approx(10 / 30)


def test_classification_metrics_keys_and_ranges():
    y = np.array([0, 1, 0, 1, 1, 0])
    m = classification_metrics(y, np.array([0.1, 0.9, 0.2, 0.8, 0.7, 0.3]))
    assert m["roc_auc"] == 1.0 and 0 <= m["ece"] <= 1 and m["n"] == 6
