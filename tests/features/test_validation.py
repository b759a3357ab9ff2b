"""Validation: fatal table problems raise; bad required values quarantine the row, bad
optional values are blanked and recorded; every failed rule is counted; nothing is lost."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import validation
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
    # optional values are blanked, their rows kept: all three interactions, customer C
    assert len(results["interactions"].clean) == 3 and results["interactions"].quarantine.empty
    assert results["customers"].clean["customer_id"].tolist() == ["A", "B", "C"]
    found = pd.concat([r.fields for r in results.values()], ignore_index=True)
    assert sorted(
        zip(
            found["table"],
            found["row"],
            found["column"],
            found["reason"],
            found["value"],
            strict=True,
        )
    ) == [
        ("customers", 3, "signup_date", "bad_signup_date", "not a date"),
        ("interactions", 2, "effort_score", "effort_score_out_of_range", "9.0"),
        ("interactions", 3, "resolved", "bad_resolved", "maybe"),
    ]
    inter = results["interactions"].clean
    assert inter["effort_score"].isna().tolist() == [False, True, True]
    assert inter["resolved"].isna().tolist() == [False, False, True]


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


def test_helpdesk_text_scores_blank_the_score_and_keep_the_ticket():
    # satisfaction exported as good/bad: the tickets happened, only the score is unusable
    n = 10
    raw = pd.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(n)],
            "timestamp": ["2024-03-01"] * n,
            "channel": ["email"] * n,
            "interaction_type": ["support_ticket"] * n,
            "csat": ["good", "bad", "good", "good", "bad", "bad", "good", "4", "5", ""],
            "resolved": ["solved", "true", "false", "", "yes", "no", "1", "0", "open", "y"],
        }
    )
    r = validate_table("interactions", raw)
    assert r.quarantine.empty and len(r.clean) == n
    assert r.counts == {"bad_csat": 7, "bad_resolved": 2}
    assert r.clean["csat"].tolist()[7:9] == [4.0, 5.0]
    assert r.clean["csat"].isna().sum() == 8  # 7 text scores blanked + 1 not asked
    blanked = r.fields.loc[r.fields["column"] == "resolved"]
    assert blanked["row"].tolist() == [1, 9] and blanked["value"].tolist() == ["solved", "open"]
    found = r.findings().set_index("reason")
    assert found.loc["bad_csat", "action"] == "value_blanked"
    assert found.loc["bad_csat", "rows"] == 7 and found.loc["bad_csat", "column"] == "csat"


def test_every_failed_rule_of_a_row_is_counted():
    raw = pd.DataFrame(
        {
            "customer_id": ["", "A", "A", "B"],
            "timestamp": ["03/14/1997", "2024-01-01", "2024-01-01", "2024-01-02"],
            "amount": ["x", "", "", "3"],
        }
    )
    r = validate_table("transactions", raw)
    assert r.quarantine["reason"].tolist() == [
        "missing_customer_id;bad_timestamp;bad_amount",
        "bad_amount",  # blank
        "bad_amount;duplicate",
    ]
    assert r.counts == {
        "missing_customer_id": 1,
        "bad_timestamp": 1,
        "bad_amount": 3,
        "duplicate": 1,
    }
    assert r.clean["customer_id"].tolist() == ["B"]


def test_a_quarantined_row_lists_its_optional_findings_too():
    raw = pd.DataFrame(
        {
            "customer_id": ["A", "B"],
            "timestamp": ["never", "2024-01-01"],
            "channel": ["chat", "chat"],
            "interaction_type": ["usage", "usage"],
            "csat": ["9", "3"],
        }
    )
    r = validate_table("interactions", raw)
    assert r.quarantine["reason"].tolist() == ["bad_timestamp;csat_out_of_range"]
    assert r.fields.empty  # a finding of a quarantined row is in its reason, not fields.csv
    assert r.counts == {"bad_timestamp": 1, "csat_out_of_range": 1}


def test_garbage_customer_attributes_and_dates_are_blanked():
    raw = pd.DataFrame(
        {
            "customer_id": ["A", "B", "C"],
            "signup_date": ["2024-01-01", "2099-01-01", "9999-12-31"],
            "churn_date": ["", "2027-06-30", "soon"],  # a future churn date is a notice
            "plan": ["basic", "#N/A", "none"],
            "seats": [1.0, np.inf, 3.0],
        }
    )
    r = validate_table("customers", raw, now=pd.Timestamp("2026-12-01", tz="UTC"))
    assert r.quarantine.empty and len(r.clean) == 3
    assert r.counts == {
        "future_signup_date": 1,
        "bad_signup_date": 1,
        "bad_churn_date": 1,
        "bad_plan": 1,
        "bad_seats": 1,
    }
    assert r.clean["signup_date"].isna().tolist() == [False, True, True]
    assert r.clean["churn_date"].notna().tolist() == [False, True, False]
    assert r.clean["plan"].tolist()[::2] == ["basic", "none"] and pd.isna(r.clean["plan"][1])
    assert r.clean["seats"].isna().tolist() == [False, True, False]


def test_future_events_are_quarantined_against_the_given_now():
    now = pd.Timestamp("2026-12-01T12:00Z")
    stamps = {
        "2099-01-01": "future_timestamp",
        str(now + pd.Timedelta(days=365)): "future_timestamp",
        str(now + pd.Timedelta(minutes=5)): None,  # inside the clock-skew tolerance
        "2026-11-30": None,
    }
    raw = pd.DataFrame(
        {"customer_id": list("ABCD"), "timestamp": list(stamps), "amount": [1.0] * 4}
    )
    r = validate_table("transactions", raw, now=now)
    assert r.counts == {"future_timestamp": 2}
    assert r.clean["customer_id"].tolist() == ["C", "D"]
    strict = validate_table("transactions", raw, now=now, clock_skew=pd.Timedelta(0))
    assert strict.counts == {"future_timestamp": 3}
    assert validate_table("transactions", raw).counts == {}  # no clock, no future check
    labels = pd.DataFrame({"customer_id": ["A"], "as_of": ["2030-01-01"], "churned": ["1"]})
    assert validate_table("labels", labels, now=now).counts == {"future_as_of": 1}


@pytest.mark.parametrize(
    ("column", "values", "expect"),
    [
        ("timestamp", ["03/14/1997", "12/01/2001"], ["99/99/9999", "try_strptime(timestamp"]),
        ("amount", ["", " "], ["bad_amount 2", "it is blank", "columns.toml"]),
        ("amount", ["12,50 EUR", "3,00 EUR"], ["99,99 aaa", "bad_amount 2"]),
    ],
)
def test_a_table_with_every_row_quarantined_is_one_masked_line(column, values, expect):
    raw = pd.DataFrame({"customer_id": ["A", "B"], "timestamp": ["2024-01-01"] * 2})
    raw["amount"] = ["1", "2"]
    raw[column] = values
    r = validate_table("transactions", raw)
    err = r.table_error()
    assert err is not None and err.column == column
    text = str(err)
    assert "\n" not in text and "all 2 rows quarantined" in text
    for part in expect:
        assert part in text
    for value in values:  # the values themselves never reach the message
        assert value.strip() == "" or value not in text
    one_good = pd.concat(
        [raw, raw.head(1).assign(**{column: ["2024-01-01" if column == "timestamp" else "1"]})]
    )
    assert validate_table("transactions", one_good).table_error() is None


def test_value_shape_masks_digits_and_letters():
    assert validation.value_shape("03/14/1997") == "99/99/9999"
    assert validation.value_shape("Jane Doe <jane@example.org>") == "aaaa aaa <aaaa@aaaaaaa.a..."
    assert validation.value_shape(None) == "(blank)"


def odd_dtypes() -> dict[str, pd.DataFrame]:
    """Columns as a caller may hand them over: objects, nullable integers, categories,
    datetimes with and without a time zone, booleans, infinite numbers."""
    customers = pd.DataFrame(
        {
            "customer_id": pd.array(["a", "b", "c", "d"], dtype=object),
            "signup_date": pd.to_datetime(["2024-01-01", None, "2024-02-01", "2024-03-01"]),
            "mixed": pd.array([1, "x", None, 2.5], dtype=object),
            "num_inf": [1.0, np.inf, 2.0, None],
            "ints": pd.array([1, None, 3, 4], dtype="Int64"),
            "flag": [True, False, True, False],
            "cat": pd.Categorical(["x", "y", "x", None]),
            "when": pd.to_datetime(["2024-01-01", None, "2024-02-01", "2024-03-01"], utc=True),
            "marked": ["a", "#N/A", "b", " c "],
        }
    )
    transactions = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", None],
            "timestamp": pd.to_datetime(["2024-01-01", "2024-01-01", None, "2024-01-02"], utc=True),
            "amount": pd.array([1, 1, 2, None], dtype="Int64"),
        }
    )
    return {"customers": customers, "transactions": transactions, **messy_tables()}


@pytest.mark.parametrize("make", [messy_tables, odd_dtypes])
def test_small_and_large_paths_agree(monkeypatch, make):
    small = validate_tables(make())[1]
    monkeypatch.setattr(validation, "_SMALL", 0)  # every column through the vectorised path
    large = validate_tables(make())[1]
    for name, r in small.items():
        pd.testing.assert_frame_equal(r.clean, large[name].clean)
        pd.testing.assert_frame_equal(r.quarantine, large[name].quarantine)
        pd.testing.assert_frame_equal(r.fields, large[name].fields)


_cell = st.one_of(
    st.none(),
    st.sampled_from(["", " ", "A", "b ", "2024-01-01", "2099-01-01", "03/14/1997", "x"]),
    st.sampled_from(["-1", "0", "3", "4.5", "8", "11", "nan", "inf", "true", "no", "maybe"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["customers", "transactions", "interactions", "surveys", "labels"]),
    rows=st.lists(st.lists(_cell, min_size=8, max_size=8), min_size=1, max_size=25),
)
def test_rows_in_equal_rows_kept_plus_rows_quarantined(name, rows):
    spec = validation.TABLES[name]
    columns = [*spec.required, *spec.optional][:8]
    raw = pd.DataFrame([r[: len(columns)] for r in rows], columns=columns, dtype=object)
    r = validate_table(name, raw, now=pd.Timestamp("2026-12-01", tz="UTC"))
    assert len(raw) == len(r.clean) + len(r.quarantine)
    assert sum(r.counts.values()) >= len(r.quarantine) + len(r.fields)
    assert (r.quarantine["reason"].str.len() > 0).all()
    assert not r.clean["customer_id"].isna().any()
    assert set(r.fields["row"]).isdisjoint(set(r.quarantine.index + 1))


@pytest.mark.parametrize("n", [40, 3000])
def test_exact_duplicates_match_pandas_at_any_size(n):
    rng = np.random.default_rng(n)
    days = rng.integers(0, 5, n)
    raw = pd.DataFrame(
        {
            "customer_id": rng.choice(["A", "B", "C"], n),
            # the same instant written two ways is not an exact copy
            "timestamp": [
                f"2024-03-0{d + 1}" if d % 2 else f"2024-03-0{d + 1}T00:00Z" for d in days
            ],
            "amount": rng.choice(["1", "2", None], n),
        }
    )
    r = validate_table("transactions", raw)
    expected = int(raw.duplicated().sum())
    assert r.counts.get("duplicate", 0) == expected > 0
    assert not r.clean.duplicated(["customer_id", "timestamp", "amount"]).any()


def _attributes_csv(tmp_path, n: int = 200) -> pd.DataFrame:
    """A customers export as CSV gives it: every attribute text. ``tenure_months`` and
    ``monthly_charge`` are numbers with a few garbage values (2%), ``score`` has 10% garbage,
    ``zip`` is a code with leading zeros, ``plan`` is text."""
    rng = np.random.default_rng(0)
    tenure = rng.integers(1, 72, n).astype(str).astype(object)
    tenure[:4] = ["N/A", "-", "unknown", ""]  # 3 garbage + 1 blank
    charge = np.round(rng.uniform(20, 120, n), 2).astype(str).astype(object)
    charge[10:12] = ["#VALUE!", "lots"]
    score = rng.integers(0, 10, n).astype(str).astype(object)
    score[: n // 10] = "n.a."
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(n)],
            "tenure_months": tenure,
            "monthly_charge": charge,
            "score": score,
            "zip": [f"{v:05d}" for v in rng.integers(1000, 99999, n)],
            "plan": rng.choice(["basic", "plus"], n),
        }
    )
    frame.to_csv(tmp_path / "customers.csv", index=False)
    return frame


def test_numeric_attributes_from_csv_become_numbers_and_garbage_is_counted(tmp_path):
    from features.customers import customer_features
    from training.io import load_tables

    raw = _attributes_csv(tmp_path)
    loaded = load_tables(tmp_path)
    result = loaded.results["customers"]
    clean = result.clean
    assert clean["tenure_months"].dtype == "float64" and clean["monthly_charge"].dtype == "float64"
    expected = pd.to_numeric(raw["tenure_months"], errors="coerce")
    np.testing.assert_array_equal(clean["tenure_months"].to_numpy(), expected.to_numpy())
    assert clean["tenure_months"].isna().sum() == 4  # 3 blanked + 1 blank
    # blanked values are findings of kept rows; a blank value is no finding
    assert result.counts == {"bad_tenure_months": 3, "bad_monthly_charge": 2}
    assert len(clean) == len(raw) and result.quarantine.empty
    assert set(result.fields["row"][result.fields["column"] == "tenure_months"]) == {1, 2, 3}
    # 90% numbers is below the share: text, as are codes with leading zeros and words
    for col in ("score", "zip", "plan"):
        assert clean[col].dtype == "str", col
    features = customer_features(clean, as_of=pd.Timestamp("2025-01-01", tz="UTC"))
    assert features["tenure_months"].dtype == "float64"
    assert features["monthly_charge"].dtype == "float64"
    assert all(isinstance(features[c].dtype, pd.CategoricalDtype) for c in ("score", "zip"))
    assert features.loc["C20", "zip"] == raw.loc[20, "zip"]  # leading zeros kept


def test_attribute_types_decided_over_parts_match_the_whole_table():
    """What the Dask engine does: counts per partition, summed, decide the dtype for all."""
    tenure = ["12", "7", "x"] + [str(i) for i in range(57)]  # 59 of 60 numbers
    raw = pd.DataFrame({"customer_id": [f"C{i}" for i in range(60)], "tenure": tenure})
    whole = validate_table("customers", raw)
    assert whole.clean["tenure"].dtype == "float64" and whole.counts == {"bad_tenure": 1}
    counts = pd.concat(validation.attribute_number_counts(raw.iloc[i::3]) for i in range(3))
    numeric = validation.numeric_attribute_columns(counts)
    assert numeric == {"tenure"}
    first = raw.iloc[:3]  # alone it is 2 of 3 numbers: text
    assert validate_table("customers", first).clean["tenure"].dtype == "str"
    told = validate_table("customers", first, numeric_attributes=numeric)
    assert told.clean["tenure"].tolist()[:2] == [12.0, 7.0] and told.counts == {"bad_tenure": 1}
    assert validate_table("customers", first, numeric_attributes=frozenset()).counts == {}


def test_typed_attributes_keep_their_dtype():
    raw = pd.DataFrame(
        {"customer_id": ["A", "B"], "seats": [1, 2], "vip": [True, False], "code": ["01", "2"]}
    )
    clean = validate_table("customers", raw).clean
    assert clean["seats"].dtype == "int64" and clean["vip"].dtype == bool
    assert clean["code"].dtype == "str"
    # posted customers: one without the attribute (missing in a clean text column)
    posted = pd.DataFrame({"customer_id": ["A", "B"], "seats": pd.array(["3", None], "str")})
    r = validate_table("customers", posted)
    assert r.clean["seats"].tolist()[0] == 3.0 and r.clean["seats"].isna().tolist() == [False, True]
    assert r.counts == {}


@pytest.mark.parametrize("n", [40, 5_000])  # the small (Python) and large (hash) paths
def test_exact_duplicates_are_found_the_same_way_at_any_size(n):
    """Only exact copies are duplicates: rows sharing a timestamp but not every value stay."""
    rng = np.random.default_rng(3)
    ts = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, n // 4, n), "s")
    raw = pd.DataFrame(
        {
            "customer_id": pd.Series(rng.integers(0, 5, n).astype(str), dtype="str"),
            "timestamp": ts,
            "amount": rng.integers(1, 4, n).astype(float),
        }
    )
    raw = pd.concat([raw, raw.iloc[[1, 7, 7]]], ignore_index=True)
    result = validate_table("transactions", raw)
    expected = raw.duplicated(keep="first")
    assert expected.sum() >= 3
    assert sorted(result.quarantine.index) == sorted(raw.index[expected])
    assert set(result.quarantine["reason"]) == {"duplicate"}
    pd.testing.assert_frame_equal(
        result.clean.reset_index(drop=True)[["customer_id", "amount"]],
        raw.loc[~expected, ["customer_id", "amount"]].reset_index(drop=True),
        check_dtype=False,
    )


@pytest.mark.parametrize("n", [40, 5_000])
def test_duplicates_take_missing_values_and_signed_zeros_as_equal(n):
    """The large path keys rows by their values' bits: missing numbers (NaN or NA) and
    -0.0 / 0.0 must still count as equal, as pandas' ``duplicated`` takes them."""
    rng = np.random.default_rng(5)
    ts = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 3, n), "D")
    effort = pd.array(rng.integers(1, 3, n), dtype="Int64")
    effort[rng.random(n) < 0.5] = pd.NA
    raw = pd.DataFrame(
        {
            "customer_id": pd.Series(rng.integers(0, 3, n).astype(str), dtype="str"),
            "timestamp": ts,
            "channel": rng.choice(["phone", "chat"], n),
            "interaction_type": "usage",
            "effort_score": effort,
            "csat": np.where(rng.random(n) < 0.5, np.nan, rng.integers(1, 3, n).astype(float)),
            "resolved": pd.array(
                np.where(rng.random(n) < 0.3, None, rng.random(n) < 0.5), "boolean"
            ),
            "value_enhancement": rng.choice([0.0, -0.0], n),
        }
    )
    expected = raw.duplicated(keep="first")
    assert 0 < expected.sum() < n
    result = validate_table("interactions", raw)
    assert sorted(result.quarantine.index) == sorted(raw.index[expected])


@pytest.mark.parametrize("n", [0, 1, 12, 5_000])
def test_utc_arrays_are_the_arrays_pd_array_makes(n: int) -> None:
    """The timestamp columns' arrays (through a UTC ``DatetimeIndex``) equal
    ``pd.array(..., dtype="datetime64[ns, UTC]")``: dtype, values and NaT."""
    rng = np.random.default_rng(n)
    ns = rng.integers(0, 2_000_000_000, n).astype("int64") * 10**9
    ns[: n // 3] = np.iinfo("int64").min  # NaT
    got = validation._as_utc(ns)
    want = pd.array(ns.view("M8[ns]"), dtype=pd.DatetimeTZDtype("ns", "UTC"))
    assert type(got) is type(want) and got.dtype == want.dtype
    pd.testing.assert_extension_array_equal(got, want)


@pytest.mark.parametrize(
    "values", [[], ["a"], ["c1", None, " ", "", "ÉLÉMENT"], [None, None], ["x"] * 40]
)
def test_small_text_arrays_are_the_arrays_pd_array_makes(values: list[str | None]) -> None:
    """A small table's normalised text column (an ArrowStringArray built from pyarrow)
    equals ``pd.array(values, dtype="str")``: dtype, values, missing values."""
    objects = np.empty(len(values), dtype=object)
    objects[:] = values
    got = validation._text_array(objects)
    want = pd.array(objects, dtype="str")
    assert type(got) is type(want) and got.dtype == want.dtype
    pd.testing.assert_extension_array_equal(got, want)
    assert got.isna().tolist() == [v is None for v in values]
