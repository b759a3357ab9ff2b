"""``sources.toml``: tables as SQL queries, in DuckDB over the data folder's files and in a
real PostgreSQL server (tests/postgres.py), validated and quarantined like files."""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.server import free_port
from training import tracking
from training.__main__ import main
from training.batch import score
from training.io import DataError, load_tables, write_quarantine
from training.pipeline import train

DEMO_TABLES = ("customers", "transactions", "interactions", "surveys")
#: Garbage rows the messy exports carry, per export and fault.
GARBAGE = {
    "orders": {"blank_id": 5, "bad_date": 4},
    "tickets": {"blank_id": 3, "bad_date": 2},
    "nps": {"blank_id": 2, "bad_score": 3},
}

# The three exports as DuckDB reads them from the folder (all text: a messy export's types
# are the query's job), and as PostgreSQL reads the same text loaded into tables.
DUCKDB_SOURCES = """
[tables.transactions]
sql = '''
  SELECT cust_id AS customer_id,
         try_strptime(order_date, '%m/%d/%Y') AS timestamp,
         CAST(quantity AS DOUBLE) * CAST(unit_price AS DOUBLE) AS amount
  FROM read_csv('orders.csv', all_varchar = true)
'''
[tables.interactions]
sql = '''
  SELECT requester AS customer_id, created AS timestamp, lower(channel) AS channel,
         'support_ticket' AS interaction_type, status = 'solved' AS resolved,
         CASE satisfaction WHEN 'good' THEN 5 WHEN 'bad' THEN 1 END AS csat
  FROM read_csv('exports/tickets.csv', all_varchar = true)
'''
[tables.surveys]
sql = '''
  SELECT customer AS customer_id, date AS timestamp, 'nps' AS element, score
  FROM read_csv('exports/nps*.csv', all_varchar = true)
'''
"""
POSTGRES_SOURCES = r"""
[database]
url = "${SOURCES_TEST_DB_URL}"

[tables.transactions]
sql = '''
  SELECT cust_id AS customer_id,
         regexp_replace(order_date, '^(\d\d)/(\d\d)/(\d{4})$', '\3-\1-\2') AS timestamp,
         quantity::double precision * unit_price::double precision AS amount
  FROM orders
'''
[tables.interactions]
sql = '''
  SELECT requester AS customer_id, created AS timestamp, lower(channel) AS channel,
         'support_ticket' AS interaction_type, status = 'solved' AS resolved,
         CASE satisfaction WHEN 'good' THEN 5 WHEN 'bad' THEN 1 END AS csat
  FROM tickets
'''
[tables.surveys]
sql = '''
  SELECT customer AS customer_id, date AS timestamp, 'nps' AS element, score FROM nps
'''
"""


def _with_garbage(
    df: pd.DataFrame, id_col: str, faults: dict[str, int], bad: dict[str, tuple[str, str]], rng
) -> pd.DataFrame:
    """``df`` with ``faults[k]`` copies of random rows broken by ``bad[k]`` (column, value)
    inserted at random places; ``blank_id`` blanks ``id_col``."""
    parts = [df]
    for fault, n in faults.items():
        col, value = (id_col, "") if fault == "blank_id" else bad[fault]
        parts.append(df.sample(n, random_state=int(rng.integers(1 << 31))).assign(**{col: value}))
    out = pd.concat(parts)
    return out.iloc[rng.permutation(len(out))].reset_index(drop=True)


def messy_exports(demo_dir) -> dict[str, pd.DataFrame]:
    """A shop, a helpdesk and an NPS export derived from the demo data (so there is churn
    signal), with garbage rows: text columns, US dates, solved/open, good/bad."""
    rng = np.random.default_rng(3)
    tx = pd.read_parquet(demo_dir / "transactions.parquet")
    quantity = rng.integers(1, 4, len(tx))
    orders = pd.DataFrame(
        {
            "cust_id": tx["customer_id"],
            "order_date": tx["timestamp"].dt.strftime("%m/%d/%Y"),
            "quantity": quantity.astype(str),
            "unit_price": (tx["amount"] / quantity).round(2).astype(str),
        }
    )
    ix = pd.read_parquet(demo_dir / "interactions.parquet")
    ix = ix[ix["interaction_type"] == "support_ticket"]
    csat = ix["csat"].astype("Float64")
    tickets = pd.DataFrame(
        {
            "ticket_id": [f"T{i}" for i in range(len(ix))],
            "requester": ix["customer_id"].to_numpy(),
            "created": ix["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S").to_numpy(),
            "channel": ix["channel"].str.capitalize().to_numpy(),
            "status": np.where(ix["resolved"].fillna(False).to_numpy(bool), "solved", "open"),
            "satisfaction": np.select(
                [
                    (csat >= 4).fillna(False).to_numpy(bool),
                    (csat <= 2).fillna(False).to_numpy(bool),
                ],
                ["good", "bad"],
                "",
            ),
        }
    )
    sv = pd.read_parquet(demo_dir / "surveys.parquet")
    sv = sv[sv["element"] == "nps"]
    nps = pd.DataFrame(
        {
            "customer": sv["customer_id"].to_numpy(),
            "date": sv["timestamp"].dt.strftime("%Y-%m-%d").to_numpy(),
            "score": sv["score"].astype(str).to_numpy(),
        }
    )
    bad = {
        "orders": {"bad_date": ("order_date", "13/45/2024")},
        "tickets": {"bad_date": ("created", "yesterday")},
        "nps": {"bad_score": ("score", "11")},
    }
    frames = {
        "orders": (orders, "cust_id"),
        "tickets": (tickets, "requester"),
        "nps": (nps, "customer"),
    }
    return {
        name: _with_garbage(df, id_col, GARBAGE[name], bad[name], rng)
        for name, (df, id_col) in frames.items()
    }


def expected_faults(counts: dict[str, dict[str, int]]) -> None:
    """The garbage rows injected are quarantined with their reasons."""
    assert counts["transactions"]["missing_customer_id"] == GARBAGE["orders"]["blank_id"]
    assert counts["transactions"]["bad_timestamp"] == GARBAGE["orders"]["bad_date"]
    assert counts["interactions"]["missing_customer_id"] == GARBAGE["tickets"]["blank_id"]
    assert counts["interactions"]["bad_timestamp"] == GARBAGE["tickets"]["bad_date"]
    assert counts["surveys"]["missing_customer_id"] == GARBAGE["nps"]["blank_id"]
    assert counts["surveys"]["score_out_of_range"] == GARBAGE["nps"]["bad_score"]


@pytest.fixture(scope="module")
def exports(demo_dir) -> dict[str, pd.DataFrame]:
    return messy_exports(demo_dir)


@pytest.fixture(scope="module")
def duckdb_folder(tmp_path_factory, exports):
    folder = tmp_path_factory.mktemp("exports")
    (folder / "exports").mkdir()
    exports["orders"].to_csv(folder / "orders.csv", index=False)
    exports["tickets"].to_csv(folder / "exports" / "tickets.csv", index=False)
    half = len(exports["nps"]) // 2  # two files, read by one glob
    exports["nps"].iloc[:half].to_csv(folder / "exports" / "nps_1.csv", index=False)
    exports["nps"].iloc[half:].to_csv(folder / "exports" / "nps_2.csv", index=False)
    (folder / "sources.toml").write_text(DUCKDB_SOURCES)
    (folder / "README.txt").write_text("not a table")
    return folder


def test_duckdb_messy_exports_load_with_their_faults_quarantined(
    duckdb_folder, exports, tmp_path, caplog
):
    with caplog.at_level(logging.INFO, logger="training.sources"):
        loaded = load_tables(duckdb_folder)
    unused = [r.getMessage() for r in caplog.records if "no table reads" in r.getMessage()]
    assert len(unused) == 1 and unused[0].endswith(": README.txt")
    assert loaded.rows_in == {
        "transactions": len(exports["orders"]),
        "interactions": len(exports["tickets"]),
        "surveys": len(exports["nps"]),
    }
    counts = write_quarantine(loaded, tmp_path / "q")
    expected_faults(counts)
    tx = loaded.tables.transactions
    orders = exports["orders"]
    first = orders[orders["cust_id"].ne("") & orders["order_date"].ne("13/45/2024")].iloc[0]
    row = tx[tx["customer_id"] == first["cust_id"]].iloc[0]
    assert row["timestamp"] == pd.Timestamp(first["order_date"], tz="UTC")
    assert row["amount"] == pytest.approx(float(first["quantity"]) * float(first["unit_price"]))
    ix = loaded.tables.interactions
    assert set(ix["channel"]) <= {"phone", "chat", "email", "web", "in_app"}
    assert set(ix["csat"].dropna()) == {1.0, 5.0}
    solved = exports["tickets"]["status"].eq("solved").mean()
    assert ix["resolved"].mean() == pytest.approx(solved, abs=0.01)
    assert set(loaded.tables.surveys["element"]) == {"nps"}


def test_data_identity_follows_the_query_and_the_files_it_reads(duckdb_folder, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(duckdb_folder, copy)
    before = load_tables(copy).sha256
    assert before == load_tables(duckdb_folder).sha256  # names and bytes, not the folder path
    (copy / "exports" / "nps_2.csv").write_text(
        (copy / "exports" / "nps_2.csv").read_text().replace(",10\n", ",9\n", 1)
    )
    (copy / "README.txt").write_text("edited; no table reads it")
    after = load_tables(copy).sha256
    assert after["surveys"] != before["surveys"]
    assert {n: h for n, h in after.items() if n != "surveys"} == {
        n: h for n, h in before.items() if n != "surveys"
    }


def test_sql_table_replaces_its_file_and_other_files_still_load(demo_dir, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("customers", "transactions"):
        (folder / f"{name}.parquet").write_bytes((demo_dir / f"{name}.parquet").read_bytes())
    (folder / "sources.toml").write_text(
        "[tables.transactions]\nsql = \"SELECT * FROM 'transactions.parquet' WHERE amount > 50\"\n"
    )
    loaded = load_tables(folder)
    files = load_tables(demo_dir)
    assert (loaded.tables.transactions["amount"] > 50).all()
    expected = files.tables.transactions[files.tables.transactions["amount"] > 50]
    pd.testing.assert_frame_equal(loaded.tables.transactions, expected.reset_index(drop=True))
    pd.testing.assert_frame_equal(loaded.tables.customers, files.tables.customers)
    assert loaded.files["transactions"].name == "sources.toml"
    assert loaded.sha256["customers"] == files.sha256["customers"]


def test_column_map_still_renames_files_next_to_sources(tmp_path):
    (tmp_path / "tx.csv").write_text("cust_no,order_ts,total\nA,2024-03-01,10\nB,2024-03-02,x\n")
    (tmp_path / "transactions.csv").write_text("cust,ts,eur\nA,2024-03-01,10\n")
    (tmp_path / "columns.toml").write_text(
        '[transactions]\ncust = "customer_id"\nts = "timestamp"\neur = "amount"\n'
    )
    (tmp_path / "sources.toml").write_text(
        "[tables.surveys]\n"
        "sql = \"SELECT cust_no AS customer_id, order_ts AS timestamp, 'nps' AS element, "
        "9 AS score FROM read_csv('tx.csv', all_varchar = true)\"\n"
    )
    loaded = load_tables(tmp_path)
    assert loaded.tables.transactions["amount"].tolist() == [10.0]
    assert loaded.tables.surveys["customer_id"].tolist() == ["A", "B"]
    assert loaded.files["transactions"].name == "transactions.csv"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[tables.transactions]\nsql = \"SELECT nope FROM 'orders.csv'\"\n",
            r"sources.toml \[tables.transactions\]: SQL error: BinderException: .*\"nope\".*; fix the query",
        ),
        (
            "[tables.transactions]\nsql = \"SELECT * FROM 'missing.csv'\"\n",
            r"sources.toml \[tables.transactions\]: SQL error: IOException: .*missing.csv",
        ),
        (
            "[tables.orders]\nsql = 'SELECT 1'\n",
            r"sources.toml \[tables.orders\]: unknown table; use one of customers",
        ),
        ("[tables.surveys]\nquery = 'SELECT 1'\n", r"\[tables.surveys\]: needs exactly one key"),
        (
            '[database]\nurl = "postgresql://u:${SOURCES_TEST_UNSET_VAR}@h/db"\n'
            "[tables.surveys]\nsql = 'SELECT 1'\n",
            r"sources.toml \[database\]: environment variable SOURCES_TEST_UNSET_VAR is not set",
        ),
        ("[tables.surveys\n", r"sources.toml: unreadable \(.*\); fix the TOML syntax"),
        (
            "[tables.transactions]\nsql = \"SELECT 'C1' AS customer_id, 1 AS amount\"\n",
            r"sources.toml \[tables.transactions\]: column 'timestamp': required column is missing",
        ),
    ],
)
def test_bad_sources_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch, toml, message):
    monkeypatch.delenv("SOURCES_TEST_UNSET_VAR", raising=False)
    (tmp_path / "orders.csv").write_text("cust_id,order_date\nA,01/02/2024\n")
    (tmp_path / "sources.toml").write_text(toml)
    with pytest.raises(DataError, match=message):
        load_tables(tmp_path)
    code = main(["features", "--data", str(tmp_path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and re.search(message, err) and "Traceback" not in err


def test_database_errors_name_the_table_and_hide_the_password(postgres_url, tmp_path):
    (tmp_path / "sources.toml").write_text(
        f'[database]\nurl = "{postgres_url}"\n[tables.surveys]\nsql = "SELECT * FROM nowhere"\n'
    )
    with pytest.raises(DataError, match=r"\[tables.surveys\]: SQL error: .*nowhere") as err:
        load_tables(tmp_path)
    assert "\n" not in str(err.value)
    bad_port = f"postgresql://postgres:s3cret-pw@127.0.0.1:{free_port()}/postgres"
    (tmp_path / "sources.toml").write_text(
        f'[database]\nurl = "{bad_port}"\n[tables.surveys]\nsql = "SELECT 1"\n'
    )
    with pytest.raises(DataError, match=r"sources.toml \[database\]: cannot connect") as err:
        load_tables(tmp_path)
    assert "s3cret-pw" not in str(err.value) and "\n" not in str(err.value)


# -- a real PostgreSQL ---------------------------------------------------------------------


def _ingest(url: str, tables: dict[str, pa.Table]) -> None:
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(url) as conn, conn.cursor() as cur:
        for name, table in tables.items():
            cur.execute(f"DROP TABLE IF EXISTS {name}")
            cur.adbc_ingest(name, table, mode="create")
        conn.commit()


def _postgres_folder(folder, toml: str):
    folder.mkdir()
    (folder / "sources.toml").write_text(toml)
    return folder


@pytest.fixture(scope="module")
def postgres_demo(postgres_url, demo_dir, tmp_path_factory, monkeypatch_module):
    """The demo tables loaded into PostgreSQL and a folder whose sources.toml reads them."""
    _ingest(
        postgres_url, {f"demo_{n}": pq.read_table(demo_dir / f"{n}.parquet") for n in DEMO_TABLES}
    )
    monkeypatch_module.setenv("SOURCES_TEST_DB_URL", postgres_url)
    toml = '[database]\nurl = "${SOURCES_TEST_DB_URL}"\n' + "".join(
        f'[tables.{n}]\nsql = "SELECT * FROM demo_{n}"\n' for n in DEMO_TABLES
    )
    return _postgres_folder(tmp_path_factory.mktemp("pg") / "data", toml)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_postgres_tables_validate_to_the_files_frames(postgres_demo, demo_dir):
    from_db, from_files = load_tables(postgres_demo), load_tables(demo_dir)
    for name in DEMO_TABLES:
        pd.testing.assert_frame_equal(
            getattr(from_db.tables, name), getattr(from_files.tables, name)
        )
    assert from_db.sha256 == load_tables(postgres_demo).sha256  # the result digest is stable
    assert set(from_db.sha256) == set(DEMO_TABLES)


@pytest.mark.slow
def test_postgres_trains_and_scores_the_same_model_as_the_files(
    postgres_demo, demo_trained, tmp_path_factory, make_settings
):
    # the files side is the session's demo run (default settings on demo_dir), scored here
    files = demo_trained.reader(tmp_path_factory.mktemp("files"))
    runs = {"files": (tracking.load_version(files, demo_trained.result.version), score(files))}
    settings = make_settings(tmp_path_factory.mktemp("postgres"), postgres_demo)
    result = train(settings)
    runs["postgres"] = (tracking.load_version(settings, result.version), score(settings))
    (files, fscore), (db, pscore) = runs["files"], runs["postgres"]
    assert db.churn.model_text() == files.churn.model_text()
    assert db.clv.params_ == files.clv.params_
    pd.testing.assert_frame_equal(pd.read_parquet(pscore.path), pd.read_parquet(fscore.path))


@pytest.fixture(scope="module")
def postgres_exports(postgres_url, exports, tmp_path_factory, monkeypatch_module):
    """The three raw exports as text tables in PostgreSQL, and a folder whose sources.toml
    reads them."""
    _ingest(
        postgres_url,
        {n: pa.Table.from_pandas(df, preserve_index=False) for n, df in exports.items()},
    )
    monkeypatch_module.setenv("SOURCES_TEST_DB_URL", postgres_url)
    return _postgres_folder(tmp_path_factory.mktemp("pgx") / "data", POSTGRES_SOURCES)


def test_postgres_messy_exports_quarantine_like_duckdb(postgres_exports, duckdb_folder, tmp_path):
    from_db, from_duckdb = load_tables(postgres_exports), load_tables(duckdb_folder)
    counts = write_quarantine(from_db, tmp_path / "q")
    expected_faults(counts)
    assert counts == write_quarantine(from_duckdb, tmp_path / "q2")
    for name in ("transactions", "interactions", "surveys"):
        db, duck = getattr(from_db.tables, name), getattr(from_duckdb.tables, name)
        pd.testing.assert_frame_equal(db, duck, check_dtype=False)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["duckdb", "postgres"])
def test_messy_exports_train_from_sources_alone(
    where, request, tmp_path_factory, make_settings, caplog
):
    folder = request.getfixturevalue(f"{where}_folder" if where == "duckdb" else "postgres_exports")
    settings = make_settings(tmp_path_factory.mktemp(f"messy-{where}"), folder)
    with caplog.at_level(logging.WARNING, logger="training.io"):
        result = train(settings)
    assert result.version == "1"
    assert result.metrics["valid.roc_auc"] > 0.6
    quarantined = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("quarantined")
    ]
    print(f"{where}: " + "; ".join(quarantined))  # the counts, for the record (pytest -s)
    assert score(settings).rows > 0


@pytest.mark.slow  # a Dask LocalCluster (make test, not test-fast)
def test_dask_staging_reads_the_queries(duckdb_folder, tmp_path, make_settings):
    import distributed

    from training import dask_engine

    # a worker process: in-process workers would inherit pytest's warnings-as-errors filter
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        settings = make_settings(
            tmp_path,
            duckdb_folder,
            engine="dask",
            dask_scheduler=cluster.scheduler_address,
            dask_partitions=2,
            dask_work_dir=tmp_path / "work",
        )
        with dask_engine.dask_client(settings):
            loaded, staged, counts = dask_engine.stage_inputs(settings)
    local = load_tables(duckdb_folder)
    assert counts == write_quarantine(local, tmp_path / "q")
    assert loaded.rows_in == local.rows_in and loaded.sha256 == local.sha256
    kept = sum(len(staged.tables(i).transactions) for i in range(staged.npartitions))
    assert kept == len(local.tables.transactions)
