"""Reading a data folder: column map, CSV and Parquet, fatal errors as one line, quarantine
files whose counts add up."""

import json
import logging

import pandas as pd
import pytest

from training.io import DataError, load_tables, write_quarantine


def write_messy_folder(folder):
    """A CRM export with its own column names (mapped by columns.toml) and bad rows."""
    folder.mkdir()
    pd.DataFrame(
        {
            "cust_no": ["A", "A", "B", "", "C", "C"],
            "order_ts": [
                "2024-03-01T10:00:00+01:00",
                "2024-03-01T10:00:00+01:00",  # exact duplicate
                "2024-03-02",
                "2024-03-02",  # blank id
                "2024-13-45",  # unparseable
                "2024-03-05T08:00:00-05:00",
            ],
            "total_eur": ["10", "10", "-3.5", "1", "2", "0"],
        }
    ).to_csv(folder / "transactions.csv", index=False)
    pd.DataFrame(
        {
            "customer_id": ["A", "B", "C"],
            "timestamp": pd.to_datetime(["2024-03-01", "2024-03-02", "2024-03-03"], utc=True),
            "element": ["quality", "nps", "not_an_element"],
            "score": [8.0, 11.0, 5.0],
        }
    ).to_parquet(folder / "surveys.parquet")
    (folder / "columns.toml").write_text(
        '[transactions]\ncust_no = "customer_id"\norder_ts = "timestamp"\ntotal_eur = "amount"\n'
    )


def test_column_map_csv_parquet_and_exact_quarantine(tmp_path, caplog):
    folder = tmp_path / "data"
    write_messy_folder(folder)
    loaded = load_tables(folder)
    tx = loaded.tables.transactions
    assert list(tx.columns) == ["customer_id", "timestamp", "amount"]
    assert tx["timestamp"].tolist() == [
        pd.Timestamp("2024-03-01T09:00Z"),
        pd.Timestamp("2024-03-02T00:00Z"),
        pd.Timestamp("2024-03-05T13:00Z"),
    ]
    assert tx["amount"].tolist() == [10.0, -3.5, 0.0]  # refunds and zero-value rows are kept
    assert loaded.rows_in == {"transactions": 6, "surveys": 3}
    with caplog.at_level(logging.WARNING, logger="training.io"):
        counts = write_quarantine(loaded, tmp_path / "q")
    assert counts == {
        "transactions": {"duplicate": 1, "missing_customer_id": 1, "bad_timestamp": 1},
        "surveys": {"score_out_of_range": 1, "unknown_element": 1},
    }
    assert json.loads((tmp_path / "q" / "counts.json").read_text()) == counts
    report = pd.read_csv(tmp_path / "q" / "report.csv")
    surveys = report.loc[report["table"] == "surveys"].set_index("column")
    assert surveys.loc["score", "rule"] == "out_of_range" and surveys.loc["score", "rows"] == 1
    assert surveys.loc["element", "rule"] == "unknown_element"
    tx_report = report.loc[report["table"] == "transactions"]
    assert set(zip(tx_report["column"], tx_report["rule"], strict=True)) == {
        ("*", "exact_duplicate"),
        ("customer_id", "missing"),
        ("timestamp", "unparseable"),
    }
    assert (tx_report["rows_in"] == 6).all()
    quarantined = pd.read_csv(tmp_path / "q" / "transactions.csv")
    assert len(quarantined) == 3 and set(quarantined["reason"]) == set(counts["transactions"])
    # canonical column names, the raw values as read (to fix them at the source)
    assert quarantined.loc[quarantined["reason"] == "bad_timestamp", "timestamp"].item() == (
        "2024-13-45"
    )
    assert "quarantined 1 surveys rows: unknown_element" in caplog.text


def test_explicit_column_map_path(tmp_path):
    folder = tmp_path / "data"
    write_messy_folder(folder)
    moved = tmp_path / "elsewhere.toml"
    (folder / "columns.toml").rename(moved)
    with pytest.raises(DataError, match=r"transactions.csv: column 'customer_id'.*missing"):
        load_tables(folder)
    assert len(load_tables(folder, column_map=moved).tables.transactions) == 3


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[transactions\n", "unreadable column map"),
        ('[orders]\ncust_no = "customer_id"\n', r"unknown table \[orders\]"),
        ("[transactions]\ncust_no = 3\n", "must map user columns"),
        ('[transactions]\nnope = "customer_id"\n', "column 'nope' named in"),
        (
            '[transactions]\ncust_no = "customer_id"\norder_ts = "customer_id"\n',
            "maps two columns onto 'customer_id'",
        ),
    ],
)
def test_bad_column_map_is_one_line(tmp_path, toml, message):
    folder = tmp_path / "data"
    write_messy_folder(folder)
    (folder / "columns.toml").write_text(toml)
    with pytest.raises(DataError, match=message) as err:
        load_tables(folder)
    assert "\n" not in str(err.value)


def test_unreadable_and_missing_column_name_the_file(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "customers.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match=r"customers.parquet: unreadable"):
        load_tables(folder)
    (folder / "customers.parquet").unlink()
    pd.DataFrame({"id": ["A"]}).to_csv(folder / "customers.csv", index=False)
    with pytest.raises(DataError, match=r"customers.csv: column 'customer_id': required"):
        load_tables(folder)
