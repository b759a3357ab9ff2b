"""Validation: fatal table problems raise; row problems are quarantined, counted, never lost."""

import numpy as np
import pandas as pd
import pytest

from features.validation import TableError, _blank, validate_table, validate_tables


def messy_tables() -> dict[str, pd.DataFrame]:
    """A CRM export with the usual problems, each counted in the expectations below."""
    customers = pd.DataFrame(
        {
            "customer_id": ["A", "B", "C", " ", "B"],
            "signup_date": [
                "2024-01-01",
                "2024-02-01T00:00:00+05:00",
                "not a date",
                "",
                "2024-01-01",
            ],
            "plan": ["basic", "plus", "basic", "plus", "plus"],
        }
    )
    transactions = pd.DataFrame(
        {
            "customer_id": ["A", "A", "A", "B", "", "C", "C", "C"],
            "timestamp": [
                "2024-03-01T10:00:00Z",
                "2024-03-01T10:00:00Z",  # exact duplicate of the row above
                "2024-03-02T23:30:00-02:00",  # another time zone: 2024-03-03T01:30Z
                "2024-03-04",
                "2024-03-04",  # blank id
                "yesterday",  # unparseable
                "2024-03-05",
                "2024-03-06",
            ],
            "amount": ["10.5", "10.5", "-4", "0", "3", "5", "abc", "-2.25"],
        }
    )
    surveys = pd.DataFrame(
        {
            "customer_id": ["A", "A", "B", "C", "C"],
            "timestamp": ["2024-03-01"] * 5,
            "element": ["quality", "NPS", "made_up_element", "saves_time", "fun_entertainment"],
            "score": [9, 10, 5, 11, -1],
        }
    )
    interactions = pd.DataFrame(
        {
            "customer_id": ["A", "B", "C"],
            "timestamp": ["2024-03-01", "2024-03-02", "2024-03-03"],
            "channel": ["phone", "Chat", "email"],
            "interaction_type": ["support_ticket", "complaint", "education"],
            "effort_score": [3, 9, None],
            "csat": [None, 2, 5],
            "resolved": ["true", "no", "maybe"],
            "value_enhancement": [None, None, 6],
        }
    )
    return {
        "customers": customers,
        "transactions": transactions,
        "surveys": surveys,
        "interactions": interactions,
    }


def test_messy_fixture_exact_quarantine_counts():
    raw = messy_tables()
    _tables, results = validate_tables(raw)
    assert results["customers"].counts == {
        "bad_signup_date": 1,
        "missing_customer_id": 1,
        "duplicate_customer_id": 1,
    }
    assert results["transactions"].counts == {
        "duplicate": 1,
        "missing_customer_id": 1,
        "bad_timestamp": 1,
        "bad_amount": 1,
    }
    assert results["surveys"].counts == {"unknown_element": 1, "score_out_of_range": 2}
    assert results["interactions"].counts == {"effort_score_out_of_range": 1, "bad_resolved": 1}
    for name, df in raw.items():
        r = results[name]
        assert len(df) == len(r.clean) + len(r.quarantine), name
        assert r.quarantine["reason"].notna().all()


def test_clean_rows_are_normalised():
    tables, _ = validate_tables(messy_tables())
    tx = tables.transactions
    assert str(tx["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert tx.loc[tx["amount"] < 0, "timestamp"].iloc[0] == pd.Timestamp("2024-03-03T01:30Z")
    # zero and negative amounts are valid rows (a free order and refunds)
    assert sorted(tx["amount"]) == [-4.0, -2.25, 0.0, 10.5]
    assert set(tables.surveys["element"]) == {"quality", "nps"}
    assert tables.customers.loc[tables.customers.customer_id == "B", "signup_date"].iloc[0] == (
        pd.Timestamp("2024-01-31T19:00Z")
    )


def test_missing_required_column_is_fatal_and_names_it():
    with pytest.raises(TableError) as err:
        validate_table(
            "transactions", pd.DataFrame({"customer_id": ["A"], "timestamp": ["2024-01-01"]})
        )
    assert err.value.column == "amount"
    assert "amount" in str(err.value)


def test_empty_table_is_fatal():
    with pytest.raises(TableError, match="no rows"):
        validate_table("customers", pd.DataFrame({"customer_id": []}))


def test_labels_and_unknown_channels():
    labels = pd.DataFrame(
        {
            "customer_id": ["A", "A", "B", "C"],
            "as_of": ["2024-06-01", "2024-06-01", "2024-06-01T02:00+02:00", "soon"],
            "churned": ["yes", "yes", "0", "1"],
        }
    )
    r = validate_table("labels", labels)
    assert r.counts == {"duplicate": 1, "bad_as_of": 1}
    assert r.clean["churned"].tolist() == [True, False]
    assert r.clean["as_of"].nunique() == 1  # 02:00+02:00 is midnight UTC
    inter = pd.DataFrame(
        {
            "customer_id": ["A"],
            "timestamp": ["2024-01-01"],
            "channel": [" SMS "],
            "interaction_type": ["Webinar"],
        }
    )
    kept = validate_table("interactions", inter)
    # free-text channels and types are kept (counted under "other" by the features)
    assert kept.counts == {} and kept.clean["channel"].tolist() == ["sms"]


def test_findings_per_column_and_rule():
    _tables, results = validate_tables(messy_tables())
    found = results["interactions"].findings().set_index("column")
    assert found.loc["effort_score", "rule"] == "out_of_range"
    assert found.loc["resolved", "rule"] == "unparseable"
    assert (found["rows_in"] == 3).all()
    clean = validate_table("customers", pd.DataFrame({"customer_id": ["A"]})).findings()
    assert clean[["rule", "rows"]].values.tolist() == [["none", 0]]


def test_out_of_range_dates_are_quarantined_not_fatal():
    raw = pd.DataFrame(
        {
            "customer_id": ["A", "B", "C", "D"],
            "timestamp": ["9999-12-31", "0001-01-01", "-1", "2024-05-01"],
            "amount": [1.0, 2.0, 3.0, 4.0],
        }
    )
    result = validate_table("transactions", raw)
    assert result.counts == {"bad_timestamp": 3}
    assert list(result.clean["customer_id"]) == ["D"]


@pytest.mark.parametrize(
    "values",
    [
        pd.Series([1.0, np.nan, np.inf]),
        pd.Series(pd.array([1, None], dtype="Int64")),
        pd.Series(pd.array([True, None], dtype="boolean")),
        pd.Series(pd.to_datetime(["2026-01-01", None], utc=True)),
        pd.Series(["a", " ", None, ""]),
        pd.Series(["a", 1, None, " \t"], dtype=object),
        pd.Series(pd.Categorical(["", "x", None])),
    ],
    ids=lambda s: str(s.dtype),
)
def test_blank_means_missing_or_empty_text_whatever_the_dtype(values: pd.Series) -> None:
    # Non-text columns skip the conversion to text; the answer must be the same as with it.
    as_text = values.astype("string")
    expected = (as_text.isna() | (as_text.str.strip() == "")).to_numpy(dtype=bool)

    assert np.array_equal(np.asarray(_blank(values), dtype=bool), expected)
