"""Reading a data folder: column map, CSV and Parquet, fatal errors as one line, quarantine
files whose counts add up."""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from training.frames import data_end
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


def test_bad_optional_values_are_blanked_and_written_to_fields_csv(tmp_path, caplog):
    folder = tmp_path / "helpdesk"
    folder.mkdir()
    pd.DataFrame(
        {
            "customer_id": ["A", "B", "C", "D"],
            "timestamp": ["2024-03-01", "2024-03-02", "2024-03-03", "not yet"],
            "channel": ["email"] * 4,
            "interaction_type": ["support_ticket"] * 4,
            "csat": ["good", "4", "bad", "5"],
        }
    ).to_csv(folder / "interactions.csv", index=False)
    loaded = load_tables(folder)
    assert len(loaded.tables.interactions) == 3 and loaded.rows_in == {"interactions": 4}
    with caplog.at_level(logging.WARNING, logger="training.io"):
        counts = write_quarantine(loaded, tmp_path / "q")
    # row D fails its timestamp (required) and its csat is fine: quarantined with one reason
    assert counts == {"interactions": {"bad_csat": 2, "bad_timestamp": 1}}
    fields = pd.read_csv(tmp_path / "q" / "fields.csv", dtype=str)
    assert fields.to_dict("records") == [
        {
            "table": "interactions",
            "row": "1",
            "column": "csat",
            "reason": "bad_csat",
            "value": "good",
        },
        {
            "table": "interactions",
            "row": "3",
            "column": "csat",
            "reason": "bad_csat",
            "value": "bad",
        },
    ]
    quarantined = pd.read_csv(tmp_path / "q" / "interactions.csv", dtype=str)
    assert quarantined[["row", "customer_id", "reason"]].values.tolist() == [
        ["4", "D", "bad_timestamp"]
    ]
    report = pd.read_csv(tmp_path / "q" / "report.csv").set_index("reason")
    assert report.loc["bad_csat", "action"] == "value_blanked"
    assert report.loc["bad_timestamp", "action"] == "row_quarantined"
    assert "blanked 2 interactions values: bad_csat" in caplog.text
    assert "good" not in caplog.text  # the values stay in the local file


def _cli_env(root):
    """The project's settings with everything under root."""
    return {
        "CHURN_MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "CHURN_MLFLOW_ARTIFACT_ROOT": str(root / "mlartifacts"),
        "CHURN_QUARANTINE_DIR": str(root / "quarantine"),
        "CHURN_SCORES_DIR": str(root / "scores"),
    }


def _train_cli(data_dir, root):
    """``python -m training train --data DIR`` in a subprocess with everything under root."""
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        **_cli_env(root),
    }
    return subprocess.run(
        [sys.executable, "-m", "training", "train", "--data", str(data_dir)],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=600,
    )


@pytest.mark.parametrize(
    ("column", "values", "expect"),
    [
        ("timestamp", ["03/14/1997", "03/15/1997", "12/01/1997"], "values look like 99/99/9999"),
        ("amount", ["", "", ""], "it is blank"),
    ],
    ids=["us-dates", "blank-amount"],
)
def test_all_quarantined_table_is_one_line_and_exit_2(
    tmp_path, column, values, expect, training_cli
):
    folder = tmp_path / "data"
    folder.mkdir()
    table = pd.DataFrame(
        {"customer_id": ["A", "B", "C"], "timestamp": ["2024-03-01"] * 3, "amount": ["1"] * 3}
    )
    table[column] = values
    table.to_csv(folder / "transactions.csv", index=False)
    done = training_cli(["train", "--data", str(folder)], _cli_env(tmp_path), tmp_path)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert f"transactions.csv: column '{column}': all 3 rows quarantined" in lines[0]
    assert expect in lines[0]
    assert "03/14/1997" not in done.stderr
    assert (tmp_path / "quarantine" / "transactions.csv").is_file()  # written before the stop


@pytest.mark.slow  # trains end to end (make test, not test-fast)
def test_future_timestamps_are_quarantined_and_the_run_trains(tmp_path, demo_dir):
    folder = tmp_path / "data"
    shutil.copytree(demo_dir, folder)
    tx = pd.read_parquet(folder / "transactions.parquet")
    now = pd.Timestamp.now(tz="UTC")
    future = tx.head(4).assign(
        timestamp=[pd.Timestamp("2099-06-01", tz="UTC"), now + pd.Timedelta(days=365)] * 2,
        amount=[10.0, 20.0, 30.0, 40.0],
    )
    pd.concat([tx, future], ignore_index=True).to_parquet(folder / "transactions.parquet")
    loaded = load_tables(folder)
    assert loaded.results["transactions"].counts == {"future_timestamp": 4}
    assert data_end(loaded.tables) <= now + pd.Timedelta(days=1)  # kept rows only
    done = _train_cli(folder, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    counts = json.loads((tmp_path / "quarantine" / "counts.json").read_text())
    assert counts["transactions"] == {"future_timestamp": 4}
    assert "registered" in done.stdout
