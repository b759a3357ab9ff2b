"""CLV model: published CDNOW parameters, JSON round trip, sane outputs."""

import json
from importlib.resources import files

import numpy as np
import pandas as pd
import pytest

from models.clv import CLVModel


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    """The published CDNOW calibration summary (Fader, Hardie & Lee 2005), shipped in lifetimes,
    in weeks; converted to the feature builder's day columns."""
    path = files("lifetimes") / "datasets" / "cdnow_customers_summary_with_transactions.csv"
    raw = pd.read_csv(str(path))
    return pd.DataFrame(
        {
            "frequency": raw["x"],
            "recency_days": raw["t_x"] * 7,
            "T_days": raw["T"] * 7,
            "monetary_repeat_mean": raw["zbar"],
        }
    )


@pytest.fixture(scope="module")
def fitted(cdnow) -> CLVModel:
    return CLVModel(time_unit_days=7).fit(cdnow)


def test_bgnbd_reproduces_published_cdnow_parameters(fitted):
    p = fitted.params_
    # Fader, Hardie & Lee (2005), BG/NBD on CDNOW: r .243, alpha 4.414, a .793, b 2.426
    assert p["r"] == pytest.approx(0.243, abs=5e-4)
    assert p["alpha"] == pytest.approx(4.414, abs=5e-4)
    assert p["a"] == pytest.approx(0.793, abs=5e-4)
    assert p["b"] == pytest.approx(2.426, abs=5e-4)
    # compressed fit: far fewer rows than customers
    assert fitted.n_customers_ == 2357 and fitted.n_rows_fitted_ < 2357


def test_json_round_trip_predicts_identically(fitted, cdnow):
    again = CLVModel.from_dict(json.loads(json.dumps(fitted.to_dict())))
    a = fitted.predict(cdnow, horizon_days=90)
    b = again.predict(cdnow, horizon_days=90)
    pd.testing.assert_frame_equal(a, b)


def test_outputs_are_sane(fitted, cdnow):
    out = fitted.predict(cdnow, horizon_days=90)
    assert out["p_alive"].between(0, 1).all()
    assert (out["clv"] >= 0).all() and (out["expected_purchases"] >= 0).all()
    longer = fitted.predict(cdnow, horizon_days=365)
    assert (longer["clv"] >= out["clv"] - 1e-9).all()
    # discounting: zero discount gives more value than 10% a year
    undiscounted = CLVModel.from_dict({**fitted.to_dict(), "annual_discount_rate": 0.0})
    assert undiscounted.predict(cdnow, horizon_days=365)["clv"].sum() > longer["clv"].sum()


def test_customers_without_purchases_get_finite_scores(fitted):
    new = pd.DataFrame(
        {
            "frequency": [0.0],
            "recency_days": [np.nan],
            "T_days": [np.nan],
            "monetary_repeat_mean": [np.nan],
            "tenure_days": [10.0],
        }
    )
    out = fitted.predict(new, horizon_days=90)
    assert np.isfinite(out.to_numpy()).all()
