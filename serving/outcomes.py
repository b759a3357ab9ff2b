"""What the retention team did about a customer: the outcomes store.

An outcome (``contacted``, ``no_answer``, ``saved``, ``lost``, ``do_not_contact``) is recorded
by a person signed in with an API key, with an optional note. It is kept in a real database:
a SQLite file by default (``var/outcomes.db``), any SQLAlchemy URL by setting
``CHURN_OUTCOMES_URL`` (PostgreSQL: ``postgresql://user@host/db``, through psycopg 3). The
schema is created and upgraded by the Alembic migrations shipped in :mod:`serving.migrations`,
run to head whenever a store is opened, so an older database is brought up to date by the
next server start (docs/workspace.md, "Outcomes storage").

Each row also keeps what the customer's scores were when it was recorded (the snapshot's
``as_of`` and ``model_version``, the customer's ``churn_probability`` and ``risk_band``), so a
later uplift analysis can compare contacted and not-contacted customers at equal risk.
Outcomes never change a score: nothing here is read by scoring or by the score routes.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL, Engine, make_url

if TYPE_CHECKING:  # only the type: the store itself never reads snapshot files
    from serving.snapshot import Snapshot

#: The outcomes a person may record, in the order forms and docs list them.
OUTCOMES = ("contacted", "no_answer", "saved", "lost", "do_not_contact")
#: Longest note, characters.
MAX_NOTE_LENGTH = 2000
#: Longest customer id / key name kept (the API's limits are lower: schemas, auth).
MAX_CUSTOMER_ID_LENGTH = 256
MAX_RECORDED_BY_LENGTH = 64

#: Alembic's bookkeeping table, named for this store so that a database shared with other
#: Alembic users (MLflow's tracking store uses ``alembic_version``) never mixes the two.
VERSION_TABLE = "churn_outcomes_alembic_version"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: Held while this process runs migrations (Alembic's ``context`` and ``op`` are globals).
_MIGRATING = threading.Lock()
#: PostgreSQL advisory lock held while migrating (any fixed 64-bit number; "churnout").
LOCK_KEY = 0x636875726E6F7574

metadata = sa.MetaData()
#: The table as the code reads and writes it; its history is in serving/migrations/versions.
outcomes_table = sa.Table(
    "outcomes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("customer_id", sa.String(MAX_CUSTOMER_ID_LENGTH), nullable=False, index=True),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("recorded_by", sa.String(MAX_RECORDED_BY_LENGTH), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("as_of", sa.String(64), nullable=True),
    sa.Column("model_version", sa.String(64), nullable=True),
    sa.Column("churn_probability", sa.Float, nullable=True),
    sa.Column("risk_band", sa.String(16), nullable=True),
    sa.CheckConstraint(
        "outcome IN (" + ", ".join(f"'{o}'" for o in OUTCOMES) + ")", name="ck_outcomes_outcome"
    ),
)


class OutcomeStoreError(RuntimeError):
    """The outcomes database cannot be opened or migrated; the message hides any password."""


@dataclass(frozen=True)
class Outcome:
    """One recorded outcome (``recorded_at``: ISO-8601 UTC, ``...Z``).

    ``as_of`` and ``model_version`` name the scored snapshot being served when it was
    recorded; ``churn_probability`` and ``risk_band`` are the customer's in that snapshot
    (``None`` when the customer was not in it, or no snapshot was loaded).
    """

    id: int
    customer_id: str
    outcome: str
    note: str
    recorded_by: str
    recorded_at: str
    as_of: str | None
    model_version: str | None
    churn_probability: float | None = None
    risk_band: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``GET /v1/outcomes``), fields in declaration order."""
        return asdict(self)


#: Column order of :meth:`Outcome.to_dict` and of the CSV export.
OUTCOME_FIELDS = tuple(Outcome.__dataclass_fields__)


def default_url(scores_dir: Path) -> str:
    """The default store: ``outcomes.db`` in the scores folder's parent (``var/``)."""
    return f"sqlite:///{Path(scores_dir).parent / 'outcomes.db'}"


def configured_url(outcomes_url: str | None, scores_dir: Path) -> str:
    """The store the server opens: the setting ``CHURN_OUTCOMES_URL`` when given, else
    :func:`default_url`."""
    return outcomes_url or default_url(scores_dir)


def safe_url(url: str | URL) -> str:
    """``url`` with its password masked, for logs and error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return "<unparsable database URL>"


def _engine_url(url: str) -> URL:
    """The SQLAlchemy URL to connect with: a bare ``postgresql://`` uses psycopg 3 (the
    PostgreSQL driver the project installs) instead of SQLAlchemy's default psycopg2."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _iso(moment: datetime) -> str:
    """ISO-8601 UTC with microseconds and a ``Z``; a naive value (SQLite) is UTC already."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _outcome(row: sa.Row[Any]) -> Outcome:
    m = row._mapping
    return Outcome(
        id=int(m["id"]),
        customer_id=m["customer_id"],
        outcome=m["outcome"],
        note=m["note"],
        recorded_by=m["recorded_by"],
        recorded_at=_iso(m["recorded_at"]),
        as_of=m["as_of"],
        model_version=m["model_version"],
        churn_probability=None if m["churn_probability"] is None else float(m["churn_probability"]),
        risk_band=m["risk_band"],
    )


def alembic_config(connection: sa.Connection | None = None, url: str | None = None) -> Config:
    """Alembic's configuration for this store, built in code (no ``alembic.ini``): the
    packaged migrations, and either an open ``connection`` or a ``url`` to run them on."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("version_table", VERSION_TABLE)
    if url is not None:
        # ConfigParser interpolation: a literal % in a password must be doubled.
        config.set_main_option("sqlalchemy.url", str(_engine_url(url)).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


class OutcomeStore:
    """The outcomes database at ``url``; opening it runs the migrations to head.

    Thread-safe: routes call it from worker threads. Raises :class:`OutcomeStoreError` when
    the database cannot be reached or migrated.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.safe_url = safe_url(url)
        parsed = _engine_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self._engine: Engine = sa.create_engine(parsed)
        try:
            self.upgrade()
        except Exception as exc:
            self._engine.dispose()
            raise OutcomeStoreError(
                f"outcomes database {self.safe_url}: cannot open or migrate it "
                f"({type(exc).__name__}); check CHURN_OUTCOMES_URL"
            ) from None

    def upgrade(self) -> None:
        """Run the Alembic migrations to head (nothing to do on an up-to-date database).

        Servers starting together on one database migrate it one after the other (the later
        ones find it at head) instead of racing to create the same tables: on PostgreSQL
        through a transaction-scoped advisory lock, on a SQLite file through an exclusive
        ``flock`` of ``<file>.lock`` beside it. Within one process, runs never overlap
        (Alembic's ``context`` and ``op`` are process-wide).
        """
        with _MIGRATING, self._file_lock(), self._engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
            command.upgrade(alembic_config(connection), "head")

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        """An exclusive lock on ``<database file>.lock`` for a SQLite file; else nothing."""
        url = self._engine.url
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            yield
            return
        with open(f"{url.database}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
            yield

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    def record(
        self,
        customer_id: str,
        outcome: str,
        note: str,
        recorded_by: str,
        as_of: str | None = None,
        model_version: str | None = None,
        churn_probability: float | None = None,
        risk_band: str | None = None,
    ) -> Outcome:
        """Store one outcome, stamped with the current UTC time, and return it.

        Raises
        ------
        ValueError
            ``outcome`` is not one of :data:`OUTCOMES`, the note is longer than
            :data:`MAX_NOTE_LENGTH` characters, or the customer id or ``recorded_by`` is
            empty or too long. The message never repeats the values given.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome; use one of: {', '.join(OUTCOMES)}")
        if len(note) > MAX_NOTE_LENGTH:
            raise ValueError(f"note is longer than {MAX_NOTE_LENGTH} characters")
        if "\x00" in note:
            raise ValueError("note holds a NUL character")  # PostgreSQL text cannot
        if not 0 < len(customer_id) <= MAX_CUSTOMER_ID_LENGTH:
            raise ValueError(f"customer_id must be 1-{MAX_CUSTOMER_ID_LENGTH} characters")
        if not 0 < len(recorded_by) <= MAX_RECORDED_BY_LENGTH:
            raise ValueError(f"recorded_by must be 1-{MAX_RECORDED_BY_LENGTH} characters")
        values = {
            "customer_id": customer_id,
            "outcome": outcome,
            "note": note,
            "recorded_by": recorded_by,
            "recorded_at": datetime.now(UTC),
            "as_of": as_of,
            "model_version": model_version,
            "churn_probability": churn_probability,
            "risk_band": risk_band,
        }
        with self._engine.begin() as connection:
            row = connection.execute(
                outcomes_table.insert().values(**values).returning(*outcomes_table.c)
            ).one()
        return _outcome(row)

    def record_scored(
        self, snapshot: Snapshot, customer_id: str, outcome: str, note: str, recorded_by: str
    ) -> Outcome:
        """:meth:`record` stamped with ``snapshot`` (the one being served): its ``as_of`` and
        ``model_version``, the customer's ``churn_probability`` and ``risk_band`` in it. The
        one way the API and the workspace pages record an outcome.

        Raises
        ------
        KeyError
            the snapshot does not hold ``customer_id`` (nothing is stored).
        ValueError
            as :meth:`record`.
        """
        row = snapshot.scores[customer_id]
        return self.record(
            customer_id,
            outcome,
            note,
            recorded_by,
            as_of=snapshot.as_of,
            model_version=snapshot.model_version,
            churn_probability=row["churn_probability"],
            risk_band=row["risk_band"],
        )

    def query(
        self, *, customer_id: str | None = None, since: datetime | None = None
    ) -> list[Outcome]:
        """Outcomes newest first, of one customer and / or recorded at or after ``since``
        (a naive ``since`` is taken as UTC)."""
        t = outcomes_table
        stmt = sa.select(t).order_by(t.c.recorded_at.desc(), t.c.id.desc())
        if customer_id is not None:
            stmt = stmt.where(t.c.customer_id == customer_id)
        if since is not None:
            if since.tzinfo is None:
                since = since.replace(tzinfo=UTC)
            try:
                stmt = stmt.where(t.c.recorded_at >= since.astimezone(UTC))
            except OverflowError:  # before year 1 or after 9999 in UTC: all, or nothing
                if since.year > 1:
                    stmt = stmt.where(sa.false())
        with self._engine.connect() as connection:
            return [_outcome(r) for r in connection.execute(stmt)]

    def for_customer(self, customer_id: str) -> list[Outcome]:
        """One customer's outcomes, newest first."""
        return self.query(customer_id=customer_id)

    def all(self) -> list[Outcome]:
        """Every outcome, newest first."""
        return self.query()

    def latest_by_customer(self) -> dict[str, Outcome]:
        """Each customer's most recent outcome (the worklist's "contacted" column)."""
        t = outcomes_table
        newest = (
            sa.select(sa.func.max(t.c.id).label("id")).group_by(t.c.customer_id).subquery()
        )  # ids grow with every insert, so the highest id is the latest recorded
        stmt = sa.select(t).join(newest, t.c.id == newest.c.id)
        with self._engine.connect() as connection:
            return {o.customer_id: o for o in map(_outcome, connection.execute(stmt))}
