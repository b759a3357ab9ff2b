"""Input tables as SQL queries: a data folder's ``sources.toml`` (docs/sources.md).

Each ``[tables.NAME]`` holds ``sql = "..."``, a query whose result is that table in the
canonical columns (features/schema.py)::

    [tables.transactions]
    sql = '''
      SELECT cust_id AS customer_id,
             try_strptime(order_date, '%m/%d/%Y') AS timestamp,
             TRY_CAST(quantity AS DOUBLE) * TRY_CAST(unit_price AS DOUBLE) AS amount
      FROM read_csv('orders.csv', all_varchar = true)
    '''

Without a ``[database]`` section the queries run in DuckDB (in memory) over the folder's
files: relative paths are looked up in the data folder (DuckDB's ``file_search_path``), and
timestamps without an offset are UTC. With ``[database] url = "postgresql://..."`` they run
in that PostgreSQL database; ``${NAME}`` in the URL is replaced by the environment variable
``NAME``, so no password needs to sit in the file. The client is ADBC (libpq's binary COPY into
Arrow): it read 10 M rows into pandas in 5.5 s, 19x faster than SQLAlchemy + psycopg 3
(``python -m bench sources``).

The result of a query is a DataFrame that training/io.py validates and quarantines exactly
like a file's rows; nothing here checks values.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa

from features.schema import TABLE_NAMES
from training.io import COLUMN_MAP_FILE, DataError, find_table_files, table_sha256

log = logging.getLogger(__name__)
#: The sources file's name inside a data folder.
SOURCES_FILE = "sources.toml"
_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_STRING_LITERAL = re.compile(r"'((?:[^']|'')*)'")
_DATABASE_SCHEMES = ("postgresql://", "postgres://")


@dataclass(frozen=True)
class Sources:
    """A parsed ``sources.toml``: the query per table and, for database mode, the URL."""

    path: Path
    queries: dict[str, str]
    url: str | None = field(default=None, repr=False)  # may hold a password

    @property
    def data_dir(self) -> Path:
        """The folder DuckDB's relative paths start from."""
        return self.path.parent

    def label(self, name: str) -> str:
        """How errors name table ``name``: ``<folder>/sources.toml [tables.NAME]``."""
        return f"{self.path} [tables.{name}]"


@dataclass(frozen=True)
class Queried:
    """One table read by its query: the rows, the data identity, the local files it read."""

    frame: pd.DataFrame
    sha256: str
    files: tuple[Path, ...]
    label: str  # how errors name the table: "<folder>/sources.toml [tables.NAME]"


def expand_env(text: str, *, where: str) -> str:
    """``text`` with each ``${NAME}`` replaced by the environment variable ``NAME``.

    Raises
    ------
    DataError
        A named variable is not set (the message names it, never its neighbours' values).
    """

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise DataError(f"{where}: environment variable {name} is not set; export it")
        return os.environ[name]

    return _ENV_VAR.sub(value, text)


def read_sources(data_dir: Path) -> Sources | None:
    """The folder's ``sources.toml``, parsed and checked; None when the folder has none.

    Raises
    ------
    DataError
        Invalid TOML, an unknown section or table, a table without a ``sql`` string, a
        ``[database]`` without a PostgreSQL ``url``, or an unset variable in the URL.
    """
    path = Path(data_dir) / SOURCES_FILE
    if not path.is_file():
        return None
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); fix the TOML syntax") from exc
    unknown = sorted(set(raw) - {"tables", "database"})
    if unknown:
        raise DataError(f"{path}: unknown section [{unknown[0]}]; use [tables.NAME] and [database]")
    tables = raw.get("tables", {})
    if not isinstance(tables, dict) or not tables:
        raise DataError(f'{path}: no [tables.NAME] section; add one with sql = "SELECT ..."')
    queries: dict[str, str] = {}
    for name, entry in tables.items():
        where = f"{path} [tables.{name}]"
        if name not in TABLE_NAMES:
            raise DataError(f"{where}: unknown table; use one of {', '.join(TABLE_NAMES)}")
        if not isinstance(entry, dict) or set(entry) != {"sql"}:
            raise DataError(f'{where}: needs exactly one key, sql = "SELECT ..."')
        if not isinstance(entry["sql"], str) or not entry["sql"].strip():
            raise DataError(f"{where}: sql must be a non-empty string holding a query")
        queries[name] = entry["sql"]
    url = None
    if "database" in raw:
        database = raw["database"]
        where = f"{path} [database]"
        if not isinstance(database, dict) or set(database) != {"url"}:
            raise DataError(f'{where}: needs exactly one key, url = "postgresql://..."')
        url = expand_env(str(database["url"]), where=where)
        if not url.startswith(_DATABASE_SCHEMES):
            raise DataError(f"{where}: url must start with postgresql:// (the database supported)")
    return Sources(path, queries, url)


def _one_line(exc: BaseException, secret: str | None = None) -> str:
    """A driver's error as one line: the message up to the echoed query (DuckDB's
    ``LINE 1: ...``, libpq's ``Query was: ...``), whitespace collapsed, a password removed."""
    text = re.split(r"\n\s*(?:LINE \d+:|Query was:)", str(exc), maxsplit=1)[0]
    text = " ".join(text.split())
    if secret:
        text = text.replace(secret, "***")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def referenced_files(sql: str, data_dir: Path) -> tuple[Path, ...]:
    """The files of ``data_dir`` a DuckDB query names: every string literal taken as a path
    or glob relative to the folder (``'orders.csv'``, ``'parts/*.parquet'``); literals that
    match no file (``'%m/%d/%Y'``, ``'solved'``) name none. Sorted, without repeats."""
    found: set[Path] = set()
    root = data_dir.resolve()
    for literal in _STRING_LITERAL.findall(sql):
        pattern = literal.replace("''", "'")
        if not pattern or pattern.startswith("/") or ".." in Path(pattern).parts:
            continue  # an absolute path or one leaving the folder is the user's own business
        try:
            matches = list(root.glob(pattern))
        except (ValueError, OSError):  # not a path at all
            continue
        found |= {m for p in matches for m in ([p] if p.is_file() else p.rglob("*")) if m.is_file()}
    return tuple(sorted(found))


def _files_digest(sql: str, files: Iterable[Path], root: Path) -> str:
    """sha256 of the query text and of each file's relative name and own sha256."""
    h = hashlib.sha256(sql.encode())
    for file in files:
        h.update(b"\0" + str(file.relative_to(root)).encode() + b"\0")
        h.update(table_sha256(file).encode())
    return h.hexdigest()


def _frame_digest(sql: str, frame: pd.DataFrame) -> str:
    """sha256 of the query text, the column names and pandas' per-row hashes of the result
    (vectorised; a database has no file bytes to hash)."""
    h = hashlib.sha256(sql.encode())
    h.update("\0".join(map(str, frame.columns)).encode())
    try:
        rows = pd.util.hash_pandas_object(frame, index=False)
    except TypeError:  # unhashable cells (a PostgreSQL array arrives as a list): their text
        rows = pd.util.hash_pandas_object(frame.astype("string"), index=False)
    h.update(rows.to_numpy().tobytes())
    return h.hexdigest()


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    # Arrow's pandas conversion, as pd.read_parquet uses for Parquet files: a query over a
    # Parquet file yields the frame reading the file would.
    return table.to_pandas()


def _query_duckdb(sources: Sources) -> dict[str, Queried]:
    import duckdb

    root = sources.data_dir.resolve()
    out: dict[str, Queried] = {}
    with duckdb.connect(":memory:") as con:
        # Relative paths start in the data folder; naive timestamps stay UTC whatever the
        # machine's zone (the contract's rule for naive values).
        con.execute("SET file_search_path = ?", [str(root)])
        con.execute("SET TimeZone = 'UTC'")
        for name, sql in sources.queries.items():
            try:
                frame = _to_pandas(con.sql(sql).to_arrow_table())
            except (duckdb.Error, pa.ArrowException) as exc:
                raise DataError(
                    f"{sources.label(name)}: SQL error: {_one_line(exc)}; fix the query"
                ) from exc
            files = referenced_files(sql, root)
            out[name] = Queried(frame, _files_digest(sql, files, root), files, sources.label(name))
    return out


def _query_database(sources: Sources) -> dict[str, Queried]:
    import adbc_driver_postgresql.dbapi as adbc

    assert sources.url is not None
    password = re.match(r"[^:]+://[^:/@]+:([^@]+)@", sources.url)
    secret = password.group(1) if password else None
    try:
        conn = adbc.connect(sources.url)
    except Exception as exc:  # any driver failure to connect is one line, without the URL
        raise DataError(
            f"{sources.path} [database]: cannot connect ({_one_line(exc, secret)}); "
            "check the url and that the server is up"
        ) from exc
    out: dict[str, Queried] = {}
    with conn, conn.cursor() as cur:
        for name, sql in sources.queries.items():
            try:
                cur.execute(sql)
                frame = _to_pandas(cur.fetch_arrow_table())
            except Exception as exc:  # the driver's errors have no common base class
                raise DataError(
                    f"{sources.label(name)}: SQL error: {_one_line(exc, secret)}; fix the query"
                ) from exc
            out[name] = Queried(frame, _frame_digest(sql, frame), (), sources.label(name))
    return out


def query_tables(sources: Sources) -> dict[str, Queried]:
    """Run every table's query (DuckDB over the folder, or the ``[database]``).

    Raises
    ------
    DataError
        A query fails (the message names ``sources.toml``, the table and the SQL error), or
        the database cannot be reached.
    """
    return _query_database(sources) if sources.url else _query_duckdb(sources)


def log_unused(data_dir: Path, used: Iterable[Path]) -> list[str]:
    """Log, in one INFO line, the entries of ``data_dir`` no table reads (a file a query was
    meant to read but does not is the usual reason for an empty or missing table); returns
    their names. A folder counts as used when a file inside it is."""
    root = Path(data_dir).resolve()
    top = set()
    for path in used:
        path = Path(path).resolve()
        if path.is_relative_to(root) and path != root:
            top.add(path.relative_to(root).parts[0])
    unused = sorted(
        p.name for p in root.iterdir() if p.name not in top and not p.name.startswith(".")
    )
    if unused:
        log.info("files in %s that no table reads: %s", data_dir, ", ".join(unused))
    return unused


def find_tables(data_dir: Path) -> tuple[dict[str, Path], dict[str, Queried]]:
    """Where each table of ``data_dir`` comes from, and the tables read by query.

    Returns ``files`` (table -> its file, or ``sources.toml`` for a table it has a query for:
    the query replaces the file of the same name) in the contract's table order, and
    ``queried`` (table -> its query result). Logs the folder's unread files (:func:`log_unused`).

    Raises
    ------
    DataError
        No tables at all, an invalid ``sources.toml``, or a failing query.
    """
    data_dir = Path(data_dir)
    sources = read_sources(data_dir)
    found = find_table_files(data_dir, none_ok=sources is not None)
    named = [] if sources is None or sources.url else sources.queries.values()
    used = [*found.values(), *(f for sql in named for f in referenced_files(sql, data_dir))]
    # before the queries run: a file a failing query was meant to read shows up here
    log_unused(data_dir, [*used, data_dir / SOURCES_FILE, data_dir / COLUMN_MAP_FILE])
    queried = query_tables(sources) if sources is not None else {}
    files = {
        n: data_dir / SOURCES_FILE if n in queried else found[n]
        for n in TABLE_NAMES
        if n in found or n in queried
    }
    return files, queried
