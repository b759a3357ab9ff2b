"""PSI, profiles and their comparison (models/drift.py) on synthetic frames."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.drift import add_profiles, compare, count_profile, psi, reference_profile


def frame(n: int, seed: int, shift: float = 0.0, blank: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(10 + shift, 2, n)
    x[rng.random(n) < blank] = np.nan
    plan = rng.choice(["basic", "plus", "premium"], n, p=[0.6, 0.3, 0.1])
    return pd.DataFrame({"x": x, "plan": pd.Categorical(plan), "zeros": np.zeros(n)})


def by_feature(rows: list[dict]) -> dict[str, dict]:
    return {r["feature"]: r for r in rows}


def test_psi_is_zero_for_the_same_shares_and_grows_with_the_shift() -> None:
    assert psi([0.5, 0.5], [50, 50]) == 0.0
    assert 0 < psi([0.5, 0.5], [60, 40]) < psi([0.5, 0.5], [80, 20])
    assert np.isnan(psi([0.5, 0.5], [0, 0]))


def test_the_same_population_is_stable_and_a_shifted_one_is_not() -> None:
    ref = reference_profile(frame(5000, 1), ["x", "plan", "zeros", "absent"])
    assert set(ref["features"]) == {"x", "plan", "zeros"}
    assert len(ref["features"]["x"]["edges"]) == 9 and ref["features"]["zeros"]["edges"] == [0.0]

    same = by_feature(compare(ref, count_profile(frame(5000, 2), ref)))
    moved = by_feature(compare(ref, count_profile(frame(5000, 3, shift=1.0, blank=0.3), ref)))

    assert same["x"]["psi"] < 0.02 and same["x"]["p_value"] > 1e-4
    assert moved["x"]["psi"] > 0.2 and moved["x"]["p_value"] < 1e-10
    assert abs(same["x"]["missing_change"]) < 0.01
    assert abs(moved["x"]["missing_change"] - 0.3) < 0.03
    assert abs(same["plan"]["max_share_change"]) < 0.03


def test_a_new_category_and_partitions_add_up() -> None:
    ref = reference_profile(frame(3000, 1), ["plan"])
    later = frame(3000, 4)
    later["plan"] = later["plan"].cat.add_categories("enterprise")
    later.loc[:999, "plan"] = "enterprise"

    row = by_feature(compare(ref, count_profile(later, ref)))["plan"]

    assert row["category"] == "__other__" and row["max_share_change"] > 0.3
    assert row["psi"] > 0.2
    whole = count_profile(later, ref)
    parts = add_profiles(
        count_profile(later.iloc[:1000], ref), count_profile(later.iloc[1000:], ref)
    )
    assert parts["rows"] == whole["rows"]
    assert parts["features"]["plan"]["counts"] == whole["features"]["plan"]["counts"]
