"""The demo data generator: contract schema, determinism, the generative story, ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from features.labels import churn_labels
from features.schema import ELEMENTS, HIGH_SCORE, NPS_ELEMENT, SURVEY_ELEMENTS, Tables
from features.validation import validate_tables
from training.demo_data import (
    ACQUISITION_CHANNELS,
    DEMO_END,
    DEMO_START,
    INTERACTION_CHANNELS,
    INTERACTION_TYPES,
    PLANS,
    REGIONS,
    DemoData,
    _latent_customers,
    generate_demo_data,
    write_demo_data,
)

SMALL = 2_000
#: Claims about averages (referral, effort, elements) need more customers to be clear of noise.
LARGE = 8_000
HORIZON = pd.Timedelta(days=90)
INPUT_TABLES = ("customers", "transactions", "interactions", "surveys")


@pytest.fixture(scope="module")
def small() -> DemoData:
    return generate_demo_data(SMALL, seed=7)


@pytest.fixture(scope="module")
def large() -> DemoData:
    return generate_demo_data(LARGE, seed=11)


def realised_churn(data: DemoData) -> pd.Series:
    """The project's own label (features/labels.py) in (as_of, as_of + 90d], per ground-truth
    customer: the rule the ground truth must describe."""
    as_of = data.ground_truth["as_of"].iloc[0]
    ids = pd.Index(data.ground_truth["customer_id"])
    labels = churn_labels(
        Tables(transactions=data.transactions), as_of=as_of, horizon_days=90, population=ids
    )
    return labels.astype(bool).rename("churned")


# --- determinism ------------------------------------------------------------------------------
def test_same_seed_gives_identical_frames(small: DemoData) -> None:
    again = generate_demo_data(SMALL, seed=7)
    for name in (*INPUT_TABLES, "ground_truth"):
        pd.testing.assert_frame_equal(getattr(small, name), getattr(again, name))


def test_different_seed_gives_different_frames(small: DemoData) -> None:
    other = generate_demo_data(SMALL, seed=8)
    assert not small.transactions.equals(other.transactions)
    assert not small.customers["plan"].equals(other.customers["plan"])
    assert not small.ground_truth["p_churn_true"].equals(other.ground_truth["p_churn_true"])


# --- schema -----------------------------------------------------------------------------------
def test_tables_have_exactly_the_canonical_columns_and_dtypes(small: DemoData) -> None:
    utc = "datetime64[ns, UTC]"
    expected = {
        "customers": {
            "customer_id": "str",
            "signup_date": utc,
            "plan": "str",
            "region": "str",
            "acquisition_channel": "str",
        },
        "transactions": {"customer_id": "str", "timestamp": utc, "amount": "float64"},
        "interactions": {
            "customer_id": "str",
            "timestamp": utc,
            "channel": "str",
            "interaction_type": "str",
            "effort_score": "Int64",
            "csat": "Int64",
            "resolved": "boolean",
            "value_enhancement": "Int64",
        },
        "surveys": {"customer_id": "str", "timestamp": utc, "element": "str", "score": "int64"},
        "ground_truth": {
            "customer_id": "str",
            "as_of": utc,
            "horizon_days": "int64",
            "alive_at_as_of": "bool",
            "p_churn_true": "float64",
            "p_churn_true_se": "float64",
        },
    }
    for name, columns in expected.items():
        df = getattr(small, name)
        assert list(df.columns) == list(columns), name
        for column, dtype in columns.items():
            assert df[column].dtype == pd.api.types.pandas_dtype(dtype), (name, column)
        assert len(df) > 0, name


def test_customers_attributes(small: DemoData) -> None:
    c = small.customers
    assert len(c) == SMALL
    assert c["customer_id"].is_unique
    assert c["customer_id"].str.fullmatch(r"C\d{7}").all()
    assert c["customer_id"].iloc[0] == "C0000001"
    assert (c["signup_date"] == c["signup_date"].dt.normalize()).all()
    assert c["signup_date"].min() >= DEMO_START
    assert c["signup_date"].max() <= DEMO_END - pd.Timedelta(days=120)
    # more customers early: the first half of the signup window holds the majority
    midpoint = DEMO_START + (DEMO_END - pd.Timedelta(days=120) - DEMO_START) / 2
    assert (c["signup_date"] < midpoint).mean() > 0.55
    assert set(c["plan"]) == set(PLANS)
    assert set(c["region"]) == set(REGIONS)
    assert set(c["acquisition_channel"]) == set(ACQUISITION_CHANNELS)
    assert 0.12 < (c["acquisition_channel"] == "referral").mean() < 0.18


def test_the_contract_validation_keeps_every_row(small: DemoData) -> None:
    _, results = validate_tables({name: getattr(small, name) for name in INPUT_TABLES})
    for name, result in results.items():
        assert result.quarantine.empty, (name, result.counts)
        assert len(result.clean) == len(getattr(small, name))


# --- time -------------------------------------------------------------------------------------
@pytest.mark.parametrize("table", ["transactions", "interactions", "surveys"])
def test_events_lie_in_the_window_and_after_signup(small: DemoData, table: str) -> None:
    events = getattr(small, table)
    assert events["timestamp"].min() >= DEMO_START
    assert events["timestamp"].max() < DEMO_END
    signup = events["customer_id"].map(small.customers.set_index("customer_id")["signup_date"])
    assert signup.notna().all()
    assert (events["timestamp"] >= signup).all()


def test_dead_customers_stop_buying_and_answering(small: DemoData) -> None:
    gt = small.ground_truth
    dead = set(gt.loc[~gt["alive_at_as_of"], "customer_id"])
    as_of = gt["as_of"].iloc[0]
    tx = small.transactions
    late_purchases = tx[(tx["timestamp"] > as_of) & (tx["amount"] > 0)]
    late_surveys = small.surveys[small.surveys["timestamp"] > as_of]
    assert len(dead) > 0.1 * len(gt)
    assert not late_purchases["customer_id"].isin(dead).any()
    assert not late_surveys["customer_id"].isin(dead).any()
    # interactions after dropout are rare, not impossible
    late_contacts = small.interactions[small.interactions["timestamp"] > as_of]
    assert late_contacts["customer_id"].isin(dead).mean() < 0.05


# --- values -----------------------------------------------------------------------------------
def test_transactions_have_refunds_and_zero_value_rows(small: DemoData) -> None:
    tx = small.transactions
    amount = tx["amount"]
    assert (amount == amount.round(2)).all()
    assert 0 < (amount == 0).sum() < 0.01 * len(tx)
    refunds = tx[amount < 0]
    assert 0.01 * len(tx) < len(refunds) < 0.08 * len(tx)
    # every refund follows, within 14 days, a paid order of the same customer at least as large
    orders = tx[amount > 0]
    pairs = refunds.merge(orders, on="customer_id", suffixes=("_refund", "_order"))
    lag = pairs["timestamp_refund"] - pairs["timestamp_order"]
    ok = (
        (lag > pd.Timedelta(0))
        & (lag <= pd.Timedelta(days=14))
        & (pairs["amount_order"] >= -pairs["amount_refund"])
    )
    matched = pairs.loc[ok, ["customer_id", "timestamp_refund"]].drop_duplicates()
    assert len(matched) == len(refunds.drop_duplicates(["customer_id", "timestamp"]))


def test_interaction_scores_are_in_range_and_sometimes_missing(small: DemoData) -> None:
    it = small.interactions
    assert set(it["channel"]) == set(INTERACTION_CHANNELS)
    assert set(it["interaction_type"]) == set(INTERACTION_TYPES)
    for column, (lo, hi) in {
        "effort_score": (1, 7),
        "csat": (1, 5),
        "value_enhancement": (1, 7),
    }.items():
        present = it[column].dropna()
        assert present.between(lo, hi).all(), column
        assert set(present.unique()) == set(range(lo, hi + 1)), column
        # service contacts: scores asked for some of the time (usage rows are mostly sessions)
        assert 0.2 < it.loc[it["interaction_type"] != "usage", column].isna().mean() < 0.9, column
    ticket = it["interaction_type"].isin(["support_ticket", "complaint"])
    assert it.loc[~ticket, "resolved"].isna().all()
    assert it.loc[ticket, "resolved"].notna().mean() > 0.9
    assert 0.3 < it.loc[ticket, "resolved"].mean() < 0.9


def test_interactions_tell_the_service_story(small: DemoData) -> None:
    it = small.interactions
    by_type = it.groupby("interaction_type")
    effort = by_type["effort_score"].mean()
    value = by_type["value_enhancement"].mean()
    assert effort["complaint"] > effort["support_ticket"] > effort["usage"]
    assert min(value["onboarding"], value["education"]) > max(value["complaint"], value["usage"])
    # CSAT falls as effort rises (Dixon, Freeman & Toman 2010)
    scored = it[["effort_score", "csat"]].dropna().astype("float64")
    assert scored["effort_score"].corr(scored["csat"]) < -0.3


def test_product_sessions_are_a_sign_of_life(small: DemoData) -> None:
    """Usage rows are mostly unscored product sessions: they stop at dropout and their rate
    rises with the purchase rate (docs/demo-data.md, "Product sessions")."""
    it, gt = small.interactions, small.ground_truth
    as_of = gt["as_of"].iloc[0]
    usage = it[it["interaction_type"] == "usage"]
    assert len(usage) > 0.8 * len(it)
    assert usage["effort_score"].isna().mean() > 0.9
    recent = usage[
        (usage["timestamp"] < as_of) & (usage["timestamp"] >= as_of - pd.Timedelta(days=30))
    ]
    active = gt["customer_id"].isin(recent["customer_id"])
    alive = gt["alive_at_as_of"].to_numpy(bool)
    assert active[alive].mean() > 0.8
    assert active[~alive].mean() < 0.2
    before = usage[usage["timestamp"] < as_of]["customer_id"].value_counts()
    tx = small.transactions
    paid = tx[(tx["timestamp"] < as_of) & (tx["amount"] > 0)]["customer_id"].value_counts()
    both = pd.concat([before, paid], axis=1, keys=["sessions", "orders"]).fillna(0)
    assert both["sessions"].corr(both["orders"], method="spearman") > 0.4


def test_surveys_answer_nps_plus_a_subset_of_elements(small: DemoData) -> None:
    sv = small.surveys
    assert set(sv["element"]) <= SURVEY_ELEMENTS
    assert set(sv["element"]) == SURVEY_ELEMENTS
    assert sv["score"].between(0, 10).all()
    response = [sv["customer_id"], sv["timestamp"]]
    is_nps = (sv["element"] == NPS_ELEMENT).groupby(response).sum()
    assert (is_nps == 1).all()
    n_elements = sv["element"].isin(ELEMENTS).groupby(response).sum()
    assert n_elements.between(6, 15).all()
    assert not sv.duplicated(["customer_id", "timestamp", "element"]).any()  # no element twice
    share = sv["customer_id"].nunique() / SMALL
    assert 0.35 < share < 0.65


def test_observed_scores_are_noisy_readings_of_the_latent_state() -> None:
    data = generate_demo_data(SMALL, seed=7)
    lat = _latent_customers(SMALL, seed=7)
    # the private helper reproduces the generator's customers
    assert (data.customers["signup_date"] - DEMO_START).dt.days.tolist() == (
        lat.signup_day.astype(int).tolist()
    )
    nps = data.surveys[data.surveys["element"] == NPS_ELEMENT]
    index = nps["customer_id"].str[1:].astype(int).to_numpy() - 1
    assert np.corrcoef(nps["score"], lat.value_perception[index])[0, 1] > 0.6


# --- the story holds in the data --------------------------------------------------------------
@pytest.mark.slow  # 8,000 demo customers (make test, not test-fast)
def test_four_or_more_true_high_elements_mark_loyal_customers(large: DemoData) -> None:
    lat = _latent_customers(LARGE, seed=11)
    gt = large.ground_truth
    index = gt["customer_id"].str[1:].astype(int).to_numpy() - 1
    loyal = lat.n_high_elements[index] >= 4
    assert 0.1 < loyal.mean() < 0.5
    p = gt["p_churn_true"].to_numpy()
    churned = realised_churn(large).to_numpy()
    assert p[loyal].mean() < p[~loyal].mean() - 0.08
    assert churned[loyal].mean() < churned[~loyal].mean() - 0.08


@pytest.mark.slow  # 8,000 demo customers (make test, not test-fast)
def test_customers_scoring_elements_high_in_surveys_churn_less(large: DemoData) -> None:
    gt = large.ground_truth
    as_of = gt["as_of"].iloc[0]
    sv = large.surveys
    seen = sv[(sv["timestamp"] < as_of) & sv["element"].isin(ELEMENTS)]
    mean_score = seen.groupby(["customer_id", "element"])["score"].mean()
    n_high = (mean_score >= HIGH_SCORE).groupby(level="customer_id").sum()
    churned = realised_churn(large).reindex(n_high.index)
    assert churned[n_high >= 4].mean() < churned[n_high < 4].mean() - 0.05


@pytest.mark.slow  # 40,000 customers (make test, not test-fast)
def test_referred_customers_churn_less_and_spend_more() -> None:
    # A x0.8 hazard moves churn by a few points only, so this needs many customers; a 7-day
    # horizon keeps the truth's Monte Carlo cheap, and by as_of = end - 7 days almost every
    # dropout has happened.
    data = generate_demo_data(40_000, seed=13, horizon_days=7)
    gt = data.ground_truth.set_index("customer_id")
    channel = data.customers.set_index("customer_id")["acquisition_channel"]
    referred = (channel == "referral").reindex(gt.index).to_numpy()
    dropped_out = ~gt["alive_at_as_of"].to_numpy()
    assert dropped_out[referred].mean() < dropped_out[~referred].mean() - 0.02
    p = gt["p_churn_true"].to_numpy()
    assert p[referred].mean() < p[~referred].mean()
    paid = data.transactions[data.transactions["amount"] > 0]
    spend = paid.groupby(paid["customer_id"].map(channel) == "referral")["amount"].mean()
    assert spend[True] > 1.08 * spend[False]


@pytest.mark.slow  # 8,000 demo customers (make test, not test-fast)
def test_high_observed_effort_goes_with_more_churn(large: DemoData) -> None:
    gt = large.ground_truth
    as_of = gt["as_of"].iloc[0]
    it = large.interactions
    effort = it[it["timestamp"] < as_of].groupby("customer_id")["effort_score"].mean().dropna()
    churned = realised_churn(large).reindex(effort.index)
    high = effort >= effort.quantile(0.75)
    low = effort <= effort.quantile(0.25)
    assert churned[high].mean() > churned[low].mean() + 0.05
    p = gt.set_index("customer_id")["p_churn_true"].reindex(effort.index)
    assert p[high].mean() > p[low].mean() + 0.05


# --- ground truth -----------------------------------------------------------------------------
def test_ground_truth_is_a_probability_at_as_of(small: DemoData) -> None:
    gt = small.ground_truth
    assert (gt["as_of"] == DEMO_END - HORIZON).all()
    assert (gt["horizon_days"] == 90).all()
    assert gt["p_churn_true"].between(0, 1).all()
    assert (gt.loc[~gt["alive_at_as_of"], "p_churn_true"] == 1.0).all()
    alive = gt.loc[gt["alive_at_as_of"], "p_churn_true"]
    assert (alive < 1.0).all()
    assert alive.std() > 0.1
    assert gt["p_churn_true_se"].max() < 0.01
    # every customer signed up before as_of at the default horizon
    assert len(gt) == SMALL


@pytest.mark.slow  # 8,000 demo customers (make test, not test-fast)
def test_oracle_is_discriminating_and_calibrated(large: DemoData) -> None:
    p = large.ground_truth["p_churn_true"].to_numpy()
    churned = realised_churn(large).to_numpy()
    assert 0.3 < churned.mean() < 0.6
    assert 0.8 < roc_auc_score(churned, p) < 0.95
    # the realised labels are draws from the same law the truth integrates over
    assert abs(p.mean() - churned.mean()) < 0.03
    deciles = pd.qcut(p, 10, duplicates="drop")
    by_decile = pd.DataFrame({"p": p, "y": churned}).groupby(deciles, observed=True).mean()
    assert (by_decile["p"] - by_decile["y"]).abs().max() < 0.08


def test_longer_horizon_keeps_only_customers_signed_up_before_as_of() -> None:
    data = generate_demo_data(500, seed=3, horizon_days=180)
    as_of = DEMO_END - pd.Timedelta(days=180)
    gt = data.ground_truth
    signup = gt["customer_id"].map(data.customers.set_index("customer_id")["signup_date"])
    assert (gt["as_of"] == as_of).all()
    assert (signup < as_of).all()
    assert len(gt) == (data.customers["signup_date"] < as_of).sum() < 500


def test_custom_window_is_respected() -> None:
    start = pd.Timestamp("2023-01-01", tz="UTC")
    end = pd.Timestamp("2024-01-01", tz="UTC")
    data = generate_demo_data(300, seed=5, start=start, end=end, horizon_days=60)
    for name in ("transactions", "interactions", "surveys"):
        ts = getattr(data, name)["timestamp"]
        assert ts.min() >= start and ts.max() < end, name
    assert (data.ground_truth["as_of"] == end - pd.Timedelta(days=60)).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_customers": 0}, "n_customers"),
        ({"horizon_days": 0}, "horizon_days"),
        ({"end": DEMO_START + pd.Timedelta(days=100)}, "end"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        generate_demo_data(**{"n_customers": 10, **kwargs})


# --- files ------------------------------------------------------------------------------------
def test_write_demo_data_keeps_the_truth_out_of_the_inputs(tmp_path) -> None:
    data = write_demo_data(tmp_path / "demo", 300, seed=1)
    top = sorted(p.name for p in (tmp_path / "demo").glob("*.parquet"))
    assert top == sorted(f"{name}.parquet" for name in INPUT_TABLES)
    truth = pd.read_parquet(tmp_path / "demo" / "truth" / "ground_truth.parquet")
    pd.testing.assert_frame_equal(truth, data.ground_truth, check_dtype=False)
    interactions = pd.read_parquet(tmp_path / "demo" / "interactions.parquet")
    pd.testing.assert_frame_equal(interactions, data.interactions, check_dtype=False)
    assert interactions["timestamp"].dt.tz is not None
