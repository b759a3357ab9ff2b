"""Calibration: fixes a distorted probability, round-trips through JSON, picks the better method."""

import json

import numpy as np
import pytest
from sklearn.metrics import log_loss

from models.calibration import Calibrator, choose_calibrator


@pytest.fixture(scope="module")
def distorted():
    """True probabilities p; a booster-like score that is systematically overconfident."""
    rng = np.random.default_rng(3)
    p = rng.uniform(0.02, 0.98, 20_000)
    y = (rng.random(p.size) < p).astype(int)
    logit = np.log(p / (1 - p))
    raw = 1 / (1 + np.exp(-2.5 * logit - 0.7))
    return raw, y


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_lowers_log_loss(distorted, method):
    raw, y = distorted
    cal = Calibrator(method).fit(raw[:10_000], y[:10_000])
    before = log_loss(y[10_000:], raw[10_000:])
    after = log_loss(y[10_000:], cal.transform(raw[10_000:]))
    assert after < before - 0.02


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_json_round_trip(distorted, method):
    raw, y = distorted
    cal = Calibrator(method).fit(raw, y)
    again = Calibrator.from_dict(json.loads(json.dumps(cal.to_dict())))
    np.testing.assert_allclose(cal.transform(raw), again.transform(raw))


def test_choice_is_the_lower_cross_fitted_loss(distorted):
    raw, y = distorted
    cal, losses = choose_calibrator(raw, y)
    assert set(losses) == {"platt", "isotonic"}
    assert cal.method == min(losses, key=losses.get)
    assert np.all((cal.transform(raw) > 0) & (cal.transform(raw) < 1))


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown calibration method"):
        Calibrator("sigmoid-ish")
