"""The worklist filters the workspace adds to the one at-risk ranking (serving/at_risk.py):
id search, leaving contacted customers out, and sorting; on the real test snapshot."""

from __future__ import annotations

import numpy as np
import pytest

from serving.at_risk import Ranking
from serving.snapshot import load_snapshot
from tests.serving.conftest import ScoresDir


@pytest.fixture(scope="module")
def ranking(scores_dir: ScoresDir) -> Ranking:
    return Ranking.build(load_snapshot(scores_dir.path, scores_dir.path))


def test_defaults_keep_the_value_at_risk_order(ranking: Ranking) -> None:
    page = ranking.page(limit=None)
    assert list(page.positions) == list(range(len(ranking.ids)))
    assert list(ranking.page(limit=None, sort="value_at_risk").positions) == list(page.positions)


def test_id_search_is_a_case_insensitive_substring(ranking: Ranking) -> None:
    page = ranking.page(limit=None, id_contains="c0001")
    found = [ranking.ids[i] for i in page.positions]
    assert found and all("C0001" in cid for cid in found)
    assert page.total == sum("C0001" in cid for cid in ranking.ids)


def test_excluded_ids_are_left_out_and_the_rest_keep_their_order(ranking: Ranking) -> None:
    everyone = ranking.page(limit=None).positions
    left_out = {str(ranking.ids[everyone[0]]), str(ranking.ids[everyone[3]])}
    page = ranking.page(limit=None, exclude_ids=left_out)
    assert page.total == len(everyone) - 2
    assert list(page.positions) == [i for i in everyone if ranking.ids[i] not in left_out]


@pytest.mark.parametrize("key", ["churn_probability", "clv", "change", "customer_id"])
@pytest.mark.parametrize("descending", [True, False])
def test_sorting_orders_by_the_column_with_unknown_values_last(
    ranking: Ranking, key: str, descending: bool
) -> None:
    page = ranking.page(limit=None, sort=key, descending=descending)
    assert sorted(page.positions) == list(range(len(ranking.ids)))  # a permutation
    column = {"customer_id": ranking.ids}.get(key, getattr(ranking, key, None))
    values = column[page.positions]
    if key == "customer_id":
        assert list(values) == sorted(values, reverse=descending)
        return
    values = values.astype(float)
    known = values[~np.isnan(values)]
    assert np.all(np.isnan(values[len(known) :]))  # every NaN after every number
    steps = np.diff(known)
    assert np.all(steps <= 0) if descending else np.all(steps >= 0)


def test_paging_a_sorted_list_gives_consecutive_slices(ranking: Ranking) -> None:
    full = ranking.page(limit=None, sort="churn_probability").positions
    second = ranking.page(limit=10, offset=10, sort="churn_probability").positions
    assert list(second) == list(full[10:20])
