"""Scoring one customer at a time gives what scoring the whole population gives.

One seeded demo base and one real LightGBM + BTYD bundle (with the BG/NBD prior, its features
and calibration): :func:`models.scoring.score_columns` on single-customer frames (the
``/v1/predict`` path: LightGBM's own SHAP values, the CLV inputs read from the encoded matrix)
against the same function on a few hundred and on a few thousand customers (SHAP values from
models/tree_shap.py), field by field: numbers to 1e-12, text and reasons exactly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from bench.serving import fit_demo_bundle
from models.clv import SUMMARY_COLUMNS
from models.scoring import _WithColumns, score_columns

HORIZON = 90
CUSTOMERS = 2_400


@pytest.fixture(scope="module")
def fitted() -> dict[str, Any]:
    fit = fit_demo_bundle(CUSTOMERS, trees=60, seed=5, clv_features=True, calibrate=True)
    assert fit.bundle.meta["horizon_days"] == HORIZON
    return {"bundle": fit.bundle, "frame": fit.frame}


def _same(got: Any, want: Any, where: str) -> None:
    if isinstance(want, float | np.floating) and not isinstance(want, bool):
        assert isinstance(got, float | np.floating), where
        if math.isnan(want):
            assert math.isnan(got), where
        else:
            assert got == pytest.approx(want, rel=1e-12, abs=1e-12), where
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _same(g, w, f"{where}[{i}]")
    elif isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for k in want:
            _same(got[k], want[k], f"{where}.{k}")
    else:
        assert got == want, where


def _rows(columns: dict[str, Any]) -> list[dict[str, Any]]:
    values = {k: v if isinstance(v, list) else np.asarray(v).tolist() for k, v in columns.items()}
    n = len(next(iter(values.values())))
    return [{k: v[i] for k, v in values.items()} for i in range(n)]


@pytest.mark.parametrize("population", [300, CUSTOMERS])
def test_one_customer_at_a_time_equals_the_population(
    fitted: dict[str, Any], population: int
) -> None:
    bundle, frame = fitted["bundle"], fitted["frame"].iloc[:population]
    assert bundle.churn.prior_ is not None and bundle.churn.calibrator_ is not None
    whole = _rows(score_columns(bundle, frame))
    assert len(whole) == len(frame)
    rows = np.random.default_rng(population).choice(len(frame), 25, replace=False)
    for i in sorted(rows.tolist()):
        [one] = _rows(score_columns(bundle, frame.iloc[[i]]))
        _same(one, whole[i], f"row {i} of {population}")


def test_clv_inputs_read_from_the_encoded_matrix_equal_the_frame_s(fitted: dict[str, Any]) -> None:
    """What scoring gives the CLV model (the frame's float features as the encoded matrix
    holds them) is exactly what it reads from the frame itself, for one row and for many."""
    bundle, frame = fitted["bundle"], fitted["frame"]
    for part in (frame.iloc[[7]], frame):
        matrix, floats = bundle.churn.encode_with_floats(part)
        np.testing.assert_array_equal(matrix, bundle.churn.encode(part))
        assert floats == bundle.churn.float_columns(part)
        assert set(SUMMARY_COLUMNS) <= set(floats)  # read from the matrix, not the frame
        got = bundle.clv.inputs(_WithColumns(part, {}, matrix, floats))
        want = bundle.clv.inputs(part)
        assert got.keys() == want.keys()
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
