"""The outcomes store on a real SQLite file and a real PostgreSQL server: migrations on open,
recording, reading back, and refusing what it must not keep."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import psycopg
import pytest
import sqlalchemy as sa
import uvicorn
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from serving.app import create_app
from serving.auth import create_key
from serving.config import Settings
from serving.outcomes import (
    MAX_NOTE_LENGTH,
    OUTCOME_FIELDS,
    OUTCOMES,
    VERSION_TABLE,
    OutcomeStore,
    OutcomeStoreError,
    default_url,
    metadata,
)
from tests.server import REPO_ROOT, clean_env, free_port, serve_in_thread

CANARY = "ZZ-ECHO-CANARY-7f3a9"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a new database on the session's server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'var' / 'outcomes.db'}"
        return
    server = request.getfixturevalue("postgres_url")
    name = f"outcomes_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield server.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture()
def store(store_url: str) -> Iterator[OutcomeStore]:
    opened = OutcomeStore(store_url)
    yield opened
    opened.close()


def test_recorded_outcomes_come_back_newest_first_with_their_scores(store: OutcomeStore) -> None:
    first = store.record(
        "C1",
        "contacted",
        "left a voicemail",
        "anna",
        as_of="2026-01-01T00:00:00Z",
        model_version="3",
        churn_probability=0.71,
        risk_band="high",
    )
    second = store.record("C1", "saved", "", "bob")
    other = store.record("C2", "do_not_contact", "asked us to stop", "anna")

    assert first.id < second.id < other.id
    assert store.for_customer("C1") == [second, first]
    assert store.for_customer("nobody") == []
    assert store.all() == [other, second, first]
    assert store.latest_by_customer() == {"C1": second, "C2": other}
    assert first.to_dict() == {
        "id": first.id,
        "customer_id": "C1",
        "outcome": "contacted",
        "note": "left a voicemail",
        "recorded_by": "anna",
        "recorded_at": first.recorded_at,
        "as_of": "2026-01-01T00:00:00Z",
        "model_version": "3",
        "churn_probability": pytest.approx(0.71),
        "risk_band": "high",
    }
    assert tuple(first.to_dict()) == OUTCOME_FIELDS
    stamped = datetime.fromisoformat(first.recorded_at)
    assert first.recorded_at.endswith("Z") and stamped.tzinfo is not None
    assert abs(datetime.now(UTC) - stamped) < timedelta(minutes=5)


def test_since_filter_keeps_outcomes_recorded_from_then_on(store: OutcomeStore) -> None:
    old = store.record("C1", "no_answer", "", "anna")
    cut = datetime.fromisoformat(old.recorded_at) + timedelta(microseconds=1)
    new = store.record("C1", "lost", "", "anna")
    assert datetime.fromisoformat(new.recorded_at) >= cut  # the clock moved on

    assert store.query(since=cut) == [new]
    assert store.query(since=cut.replace(tzinfo=None)) == [new]  # naive: UTC
    assert store.query(customer_id="C2", since=cut) == []
    # Beyond the years 1-9999 once in UTC: everything, or nothing.
    assert len(store.query(since=datetime.min.replace(tzinfo=timezone(timedelta(hours=5))))) == 2
    assert store.query(since=datetime.max.replace(tzinfo=timezone(timedelta(hours=-5)))) == []


def test_unknown_outcome_and_long_note_are_refused_without_echo(store: OutcomeStore) -> None:
    with pytest.raises(ValueError, match="unknown outcome") as unknown:
        store.record("C1", CANARY, "", "anna")
    with pytest.raises(ValueError, match=str(MAX_NOTE_LENGTH)) as long_note:
        store.record("C1", "saved", CANARY * 200, "anna")
    with pytest.raises(ValueError):
        store.record("", "saved", "", "anna")

    assert all(o in str(unknown.value) for o in OUTCOMES)
    assert CANARY not in str(unknown.value) and CANARY not in str(long_note.value)
    assert store.all() == [], "nothing refused is stored"
    # The note at its limit is fine.
    assert store.record("C1", "saved", "x" * MAX_NOTE_LENGTH, "anna").note == "x" * 2000


def test_database_refuses_an_unknown_outcome_written_around_the_store(store_url: str) -> None:
    OutcomeStore(store_url).close()
    engine = sa.create_engine(store_url.replace("postgresql://", "postgresql+psycopg://"))
    row = {
        "customer_id": "C1",
        "outcome": "bribed",
        "note": "",
        "recorded_by": "x",
        "recorded_at": datetime.now(UTC),
    }
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO outcomes (customer_id, outcome, note, recorded_by, recorded_at) VALUES (:customer_id, :outcome, :note, :recorded_by, :recorded_at)"
            ),
            row,
        )
    engine.dispose()


def test_reopening_keeps_data_and_the_schema_matches_the_code(store_url: str) -> None:
    kept = OutcomeStore(store_url)
    recorded = kept.record("C9", "saved", "renewed", "anna")
    kept.close()

    reopened = OutcomeStore(store_url)  # migrations at head already: nothing to do
    assert reopened.all() == [recorded]
    reopened.close()

    engine = sa.create_engine(store_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        version = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar_one()
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        assert compare_metadata(context, metadata) == [], "migrations and code disagree"
    engine.dispose()
    assert version == "0001"


def test_unreachable_database_is_one_error_without_the_password() -> None:
    url = f"postgresql://churn:s3cret-pw@127.0.0.1:{free_port()}/outcomes"

    with pytest.raises(OutcomeStoreError, match="CHURN_OUTCOMES_URL") as failed:
        OutcomeStore(url)

    assert "s3cret-pw" not in str(failed.value) and "127.0.0.1" in str(failed.value)


def test_default_store_is_beside_the_scores_folder(tmp_path: Path) -> None:
    url = default_url(tmp_path / "var" / "scores")

    store = OutcomeStore(url)
    store.record("C1", "contacted", "", "anna")
    store.close()

    assert url == f"sqlite:///{tmp_path / 'var' / 'outcomes.db'}"
    assert (tmp_path / "var" / "outcomes.db").is_file()


def test_server_without_its_outcomes_database_still_serves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = create_key(tmp_path / "keys.json", "anna", scope="viewer")
    settings = Settings(
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        scores_dir=tmp_path / "scores",
        api_keys_file=tmp_path / "keys.json",
        model_cache_dir=tmp_path / "cache",
        outcomes_url=f"postgresql://churn:s3cret-pw@127.0.0.1:{free_port()}/outcomes",
    )
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")

    with caplog.at_level("ERROR", logger="serving"), serve_in_thread(config):
        listed = httpx.get(f"http://127.0.0.1:{port}/v1/outcomes", headers={"X-API-Key": key})
        alive = httpx.get(f"http://127.0.0.1:{port}/healthz")

    assert listed.status_code == 503 and listed.json()["error"] == "outcomes_unavailable"
    assert alive.status_code == 200
    (line,) = [r.getMessage() for r in caplog.records if "outcomes database" in r.getMessage()]
    assert "CHURN_OUTCOMES_URL" in line and "s3cret-pw" not in caplog.text


def test_servers_opening_one_new_database_at_once_all_migrate_it(store_url: str) -> None:
    # Three processes (as three servers starting together): one creates the tables, the
    # others wait for it and find the schema at head.
    opener = "import sys; from serving.outcomes import OutcomeStore; OutcomeStore(sys.argv[1])"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", opener, store_url],
            cwd=REPO_ROOT,
            env=clean_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [(p.communicate(timeout=120)[1], p.returncode) for p in procs]

    assert [code for _, code in results] == [0, 0, 0], results
    with ThreadPoolExecutor(max_workers=3) as pool:  # and threads of one process
        stores = list(pool.map(lambda _: OutcomeStore(store_url), range(3)))
    stores[0].record("C1", "saved", "", "anna")
    assert all(len(s.all()) == 1 for s in stores)
    for s in stores:
        s.close()
