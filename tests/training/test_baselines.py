"""The logistic baseline's row sample (training/baselines.py)."""

from __future__ import annotations

import numpy as np

from training.baselines import stratified_rows


def test_the_sample_keeps_each_class_share_and_the_row_order() -> None:
    y = np.r_[np.zeros(9000, dtype=int), np.ones(1000, dtype=int)]
    np.random.default_rng(0).shuffle(y)
    rows = stratified_rows(y, 2000, seed=1)
    assert len(rows) == 2000
    assert (np.diff(rows) > 0).all()
    assert y[rows].sum() == 200
    assert (stratified_rows(y, 2000, seed=1) == rows).all()
    assert (stratified_rows(y, 10_000) == np.arange(10_000)).all()
    # a rare class keeps at least one row
    rare = np.r_[np.zeros(5000, dtype=int), [1]]
    assert rare[stratified_rows(rare, 100)].sum() == 1
