"""The assembled frame: every column is in the catalogue, churned customers are not scored,
counts are zero (not missing) for customers without events, columns are fixed by the contract."""

import pandas as pd

from features.build import build_features, population
from features.catalogue import catalogue
from features.schema import Tables
from features.validation import validate_tables
from tests.features.test_point_in_time import AS_OF, random_tables


def tables() -> Tables:
    raw = random_tables(3, 40, start="2024-01-01", end="2025-01-01")
    raw["customers"]["churn_date"] = ["2024-12-01", None, "2025-03-01", None]
    raw["customers"] = pd.concat(
        [raw["customers"], pd.DataFrame({"customer_id": ["E"], "plan": ["basic"]})]
    )
    return validate_tables(raw)[0]


def test_every_feature_is_in_the_catalogue():
    frame = build_features(tables(), as_of=AS_OF)
    described = set(catalogue())
    attributes = {"plan"}
    assert set(frame.columns) - attributes <= described
    assert len(frame.columns) > 80


def test_churned_customers_are_not_in_the_population():
    t = tables()
    frame = build_features(t, as_of=AS_OF)
    # A churned on 2024-12-01, before as_of: not at risk, not scored. C churns later: scored.
    assert "A" not in frame.index and "C" in frame.index
    assert list(frame.index) == list(population(t, as_of=AS_OF))


def test_counts_are_zero_for_customers_without_events():
    frame = build_features(tables(), as_of=AS_OF)
    e = frame.loc["E"]  # in the customers table, no events at all
    assert e["frequency"] == 0 and e["interactions_365d"] == 0 and e["engagement_index"] == 0
    assert e["elements_answered"] == 0 and pd.isna(e["recency_days"])
    assert pd.isna(e["nps_class"])
    assert str(frame["nps_class"].dtype) == "category"


def test_explicit_ids_keep_order_and_unknowns():
    frame = build_features(tables(), as_of=AS_OF, customer_ids=pd.Index(["D", "nobody", "B"]))
    assert list(frame.index) == ["D", "nobody", "B"]
    assert frame.loc["nobody", "frequency"] == 0


def test_one_customer_tables_give_the_rows_of_the_whole_build():
    """The paths for a few rows (a /v1/predict customer: dict look-ups instead of pandas'
    factorize, cached dtypes) give exactly the values of the vectorised path on the whole
    demo population."""
    from training.demo_data import generate_demo_data

    demo = generate_demo_data(150, seed=3)
    raw = {n: getattr(demo, n) for n in ("customers", "transactions", "interactions", "surveys")}
    tables, _ = validate_tables(raw)
    as_of = pd.Timestamp(demo.ground_truth["as_of"].iloc[0])
    full = build_features(tables, as_of=as_of)
    text = {c: "str" for c in full.columns if isinstance(full[c].dtype, pd.CategoricalDtype)}
    checked = 0
    for cid in full.index[:: max(1, len(full) // 12)]:
        one = Tables(**{k: v[v["customer_id"] == cid] for k, v in tables.present().items()})
        alone = build_features(one, as_of=as_of, customer_ids=pd.Index([cid], dtype="str"))
        assert max(len(v) for v in one.present().values()) < len(tables.transactions)
        pd.testing.assert_frame_equal(
            alone.astype(text), full.loc[[cid]].astype(text), check_exact=True
        )
        checked += 1
    assert checked >= 10


def test_large_builds_align_by_one_factorize_with_the_same_frame(monkeypatch):
    """Above ``LARGE`` keys the population and every family's alignment come from one
    factorize (features.groups.union_positions): the frame is the one of the per-part path,
    churned customers left out alike."""
    import features.build as build

    t = tables()
    monkeypatch.setattr(build, "LARGE", 10**9)
    expected = build_features(t, as_of=AS_OF)
    monkeypatch.setattr(build, "LARGE", 0)
    got = build_features(t, as_of=AS_OF)
    pd.testing.assert_frame_equal(got, expected)
    assert "A" not in got.index and "E" in got.index
