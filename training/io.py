"""Reading input tables from a data folder and writing quarantine files: the training side's
only file I/O for inputs.

A data folder holds up to five tables, each ``NAME.parquet`` or ``NAME.csv``, and optionally
a column map ``columns.toml`` that renames a user's columns onto the canonical ones, per table
(user column = canonical column)::

    [transactions]
    cust_no = "customer_id"
    order_ts = "timestamp"
    total_eur = "amount"

The map may also be passed explicitly (``TrainSettings.column_map``, env
``CHURN_COLUMN_MAP``); columns it does not name keep their names.

The pieces of reading a table (:func:`resolve_column_map`, :data:`CSV_OPTIONS`,
:func:`unreadable`, :func:`check_table`, :func:`table_error`) are public so the Dask engine,
which reads the same files as Dask DataFrames, reads and refuses them exactly as here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import tomllib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from features.schema import TABLE_NAMES, TABLES, Tables
from features.validation import (
    DEFAULT_CLOCK_SKEW,
    FIELD_COLUMNS,
    TableError,
    Validated,
    validate_table,
)
from training.config import TrainSettings
from training.progress import duration, progress

log = logging.getLogger(__name__)
#: The column map's file name inside a data folder.
COLUMN_MAP_FILE = "columns.toml"
#: How a CSV table is read (pandas and Dask alike): every column as text, which validation
#: then parses per column; only an empty cell is missing ("NA" or "null" are values).
CSV_OPTIONS: dict[str, Any] = {"dtype": str, "keep_default_na": False, "na_values": [""]}


class DataError(RuntimeError):
    """A fatal input problem: one line, naming the file, the column and the fix (exit code 2)."""


def read_column_map(path: Path) -> dict[str, dict[str, str]]:
    """The column map in ``path``: table -> {user column: canonical column}.

    Raises
    ------
    DataError
        The file is not valid TOML, names an unknown table, maps a column to a non-string,
        or maps two user columns onto the same canonical column.
    """
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DataError(f"{path}: unreadable column map ({exc}); fix the TOML syntax") from exc
    out: dict[str, dict[str, str]] = {}
    for table, mapping in raw.items():
        if table not in TABLES:
            raise DataError(f"{path}: unknown table [{table}]; use one of {', '.join(TABLE_NAMES)}")
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            raise DataError(
                f'{path}: [{table}] must map user columns to canonical names (cust_no = "customer_id")'
            )
        targets = list(mapping.values())
        dupes = sorted({t for t in targets if targets.count(t) > 1})
        if dupes:
            raise DataError(f"{path}: [{table}] maps two columns onto '{dupes[0]}'; keep one")
        out[table] = dict(mapping)
    return out


def resolve_column_map(
    data_dir: Path, column_map: Path | None
) -> tuple[dict[str, dict[str, str]], Path | None]:
    """The column map for the tables of ``data_dir`` and the file it came from: ``column_map``,
    else ``data_dir/columns.toml`` when it exists, else none (``{}, None``).

    Raises
    ------
    DataError
        ``column_map`` is given but not a file, or the map is invalid (:func:`read_column_map`).
    """
    if column_map is None and (Path(data_dir) / COLUMN_MAP_FILE).is_file():
        column_map = Path(data_dir) / COLUMN_MAP_FILE
    if column_map is None:
        return {}, None
    if not Path(column_map).is_file():
        raise DataError(f"{column_map}: column map not found; fix the path or remove the setting")
    return read_column_map(Path(column_map)), Path(column_map)


def apply_column_map(
    df: pd.DataFrame, mapping: dict[str, str], *, path: Path | str, map_path: Path
) -> pd.DataFrame:
    """Rename ``df``'s columns by ``mapping`` (user -> canonical).

    Raises
    ------
    DataError
        A mapped user column is not in the file, or the file already has the canonical column
        the map renames another one onto (the result would be ambiguous).
    """
    missing = [c for c in mapping if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: column '{missing[0]}' named in {map_path} is not in the file; "
            f"fix the map or the file (columns: {', '.join(map(str, df.columns))})"
        )
    clash = [t for u, t in mapping.items() if t in df.columns and t != u and t not in mapping]
    if clash:
        raise DataError(
            f"{path}: column '{clash[0]}' exists and {map_path} maps another column onto it; "
            "drop one of them"
        )
    return df.rename(columns=mapping)


@dataclass(frozen=True)
class LoadedTables:
    """Validated tables plus what the run logs about its inputs."""

    tables: Tables
    results: dict[str, Validated]
    files: dict[str, Path]
    sha256: dict[str, str]

    @property
    def rows_in(self) -> dict[str, int]:
        """Rows read per table."""
        return {n: len(r.clean) + len(r.quarantine) for n, r in self.results.items()}


def find_table_files(data_dir: Path, *, none_ok: bool = False) -> dict[str, Path]:
    """The table files present in ``data_dir`` (Parquet preferred over CSV); ``NAME.parquet``
    may be a folder of Parquet parts (a partitioned table, as Dask and Spark write them).
    ``none_ok``: a folder without table files is fine (its ``sources.toml`` has the tables)."""
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data folder not found; run 'make data' or pass DATA=<folder>")
    found: dict[str, Path] = {}
    for name in TABLE_NAMES:
        for suffix in (".parquet", ".csv"):
            path = data_dir / f"{name}{suffix}"
            if path.is_file() or (suffix == ".parquet" and path.is_dir()):
                found[name] = path
                break
    if not found and not none_ok:
        raise DataError(
            f"{data_dir}: no input tables (expected e.g. transactions.parquet or customers.csv)"
        )
    return found


def unreadable(path: Path, exc: Exception) -> DataError:
    """The error for a table file no parser can read (a fatal, file-level problem)."""
    return DataError(f"{path}: unreadable ({type(exc).__name__}); check the file format")


def table_error(path: Path | str, exc: TableError) -> DataError:
    """A validation :class:`TableError` as the one-line error naming the file (or query)."""
    column = f"column '{exc.column}'" if exc.column else "table"
    return DataError(f"{path}: {column}: {exc.problem}; {exc.fix}")


def check_table(name: str, columns: pd.DataFrame, path: Path, *, rows: int | None = None) -> None:
    """:func:`validate_table`'s fatal checks for a table known by its columns (the columns of
    ``columns``) and, once counted, its number of ``rows``: a required column missing, or no
    rows. For readers that see a table's columns before its rows (training/dask_engine.py).

    Raises
    ------
    DataError
        As :func:`load_tables` would for the same file.
    """
    try:
        validate_table(name, columns.iloc[:0])
    except TableError as exc:
        # an empty probe always fails the row check: it only counts when no rows were counted
        if exc.column is not None or rows == 0:
            raise table_error(path, exc) from exc


def _read(path: Path) -> pd.DataFrame:
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, **CSV_OPTIONS)
    except Exception as exc:  # any parser failure is a fatal, file-level problem
        raise unreadable(path, exc) from exc


def table_sha256(path: Path) -> str:
    """sha256 of a table file, or of a folder of parts (their relative names and bytes, in
    name order)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            h.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def reject_all_quarantined(path: Path | str, result: Validated) -> Validated:
    """``result`` unless every row of the table was quarantined, which is fatal: the features
    would have no rows of it and later steps would fail on an empty table.

    Raises
    ------
    DataError
        Every row quarantined: names the file, the top reasons and the shape of a bad value.
    """
    problem = result.table_error()
    if problem is not None:
        raise table_error(path, problem)
    return result


def load_tables(
    data_dir: Path,
    *,
    column_map: Path | None = None,
    now: pd.Timestamp | None = None,
    clock_skew: pd.Timedelta = DEFAULT_CLOCK_SKEW,
    check: bool = True,
) -> LoadedTables:
    """Read, rename (column map) and validate every table in ``data_dir``.

    Parameters
    ----------
    data_dir : the data folder.
    column_map : a TOML column map; default ``data_dir/columns.toml`` when it exists.
    now : the wall-clock time events must not be after (plus ``clock_skew``); default: now.
    clock_skew : tolerance for the clocks of the systems that wrote the data.
    check : stop on a table whose every row is quarantined (:func:`reject_all_quarantined`);
        ``False`` leaves that to the caller, to write the quarantine files first.

    Raises
    ------
    DataError
        A table is unreadable, empty, misses a required column or has every row quarantined;
        the column map is invalid.
    """
    from training import sources  # which imports this module (DataError, table_sha256)

    now = pd.Timestamp.now(tz="UTC") if now is None else now
    data_dir = Path(data_dir)
    files, queried = sources.find_tables(data_dir)
    mapping, map_path = resolve_column_map(data_dir, column_map)
    results: dict[str, Validated] = {}
    names = list(files)
    # the next file is read while this table is validated: Parquet decoding runs in Arrow's
    # threads, the validation mostly in one, so on two cores the two overlap (one table read
    # ahead is held, not all of them)
    with (
        ThreadPoolExecutor(max_workers=1) as pool,
        progress("load and validate", len(files), "tables") as bar,
    ):
        ahead: Future[pd.DataFrame] | None = None
        for i, (name, path) in enumerate(files.items()):
            t0 = time.perf_counter()
            if name in queried:
                raw = queried[name].frame
            else:
                raw = ahead.result() if ahead is not None else _read(path)
            ahead = None
            later = names[i + 1] if i + 1 < len(names) else None
            if later is not None and later not in queried:
                ahead = pool.submit(_read, files[later])
            where = queried[name].label if name in queried else path
            if name in mapping and map_path is not None:
                raw = apply_column_map(raw, mapping[name], path=where, map_path=map_path)
            t1 = time.perf_counter()
            try:
                result = validate_table(name, raw, now=now, clock_skew=clock_skew)
            except TableError as exc:
                raise table_error(where, exc) from exc
            del raw  # the clean and quarantined rows are kept; the table as read is not
            results[name] = reject_all_quarantined(where, result) if check else result
            log.info(
                "%s: %s rows read in %s, validated in %s (%s quarantined)",
                name,
                f"{len(result.clean) + len(result.quarantine):,}",
                duration(t1 - t0),
                duration(time.perf_counter() - t1),
                f"{len(result.quarantine):,}",
            )
            bar.advance()
    tables = Tables(**{n: r.clean for n, r in results.items()})
    sha = {n: queried[n].sha256 if n in queried else table_sha256(p) for n, p in files.items()}
    return LoadedTables(tables, results, files, sha)


def input_rows(loaded: LoadedTables) -> dict[str, int]:
    """Rows read per table and rows quarantined in all, for a step's done line."""
    return {**loaded.rows_in, "quarantined": quarantined_rows(loaded)}


def quarantined_rows(loaded: LoadedTables) -> int:
    """Rows quarantined over all tables (blanked values of kept rows not counted)."""
    return sum(len(r.quarantine) for r in loaded.results.values())


def write_quarantine(loaded: LoadedTables, out_dir: Path) -> dict[str, dict[str, int]]:
    """Write what validation found to ``out_dir``; log each count; return the counts.

    - ``NAME.csv``: the quarantined rows of table ``NAME`` as read, with ``row`` (1-based input
      row) and ``reason`` (every failed rule, ``;``-joined);
    - ``fields.csv``: one line per blanked value of a kept row (``table``, ``row``,
      ``column``, ``reason``, ``value``); the value is in this local file only, never in the
      log or MLflow;
    - ``counts.json``: table -> reason code -> rows that failed the rule (every rule counted);
    - ``report.csv``: the findings per table, column and rule, with the action and rows in.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, dict[str, int]] = {}
    fields = []
    for name, result in loaded.results.items():
        path = out_dir / f"{name}.csv"
        if len(result.quarantine):
            written = result.quarantine.copy()
            # source row numbers; blank after the Dask engine's shuffle, which loses them
            rows = written.index + 1 if result.numbered else None
            written.insert(0, "row", rows, allow_duplicates=True)
            written.to_csv(path, index=False)
        elif path.exists():
            path.unlink()
        counts[name] = result.counts
        blanked = set(result.fields["reason"]) if len(result.fields) else set()
        for reason, n in sorted(result.counts.items()):
            if reason in blanked:
                where = out_dir / "fields.csv"
                log.warning("blanked %d %s values: %s (rows kept; see %s)", n, name, reason, where)
            else:
                log.warning("quarantined %d %s rows: %s (see %s)", n, name, reason, path)
        fields.append(result.fields)
    (out_dir / "counts.json").write_text(json.dumps(counts, indent=2, sort_keys=True))
    pd.concat([r.findings() for r in loaded.results.values()], ignore_index=True).to_csv(
        out_dir / "report.csv", index=False
    )
    found = [f for f in fields if len(f)]
    table = pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=FIELD_COLUMNS)
    table.to_csv(out_dir / "fields.csv", index=False)
    return counts


def load_inputs(settings: TrainSettings) -> tuple[LoadedTables, dict[str, dict[str, int]]]:
    """What every command starts with: read and validate the data folder (with the column map
    of the settings, if any) and write the quarantine; returns the tables and the counts.

    Raises
    ------
    DataError
        As :func:`load_tables`; a table with every row quarantined only after the quarantine
        files are written, so its rows and reasons are there to look at.
    """
    loaded = load_tables(
        settings.data_dir,
        column_map=settings.column_map,
        clock_skew=pd.Timedelta(minutes=settings.clock_skew_minutes),
        check=False,
    )
    counts = write_quarantine(loaded, settings.quarantine_dir)
    for name, result in loaded.results.items():
        path = Path(loaded.files[name])
        # a table read by a query is named as sources.py names it in errors
        where = path if path.name.startswith(f"{name}.") else f"{path} [tables.{name}]"
        try:
            reject_all_quarantined(where, result)
        except DataError as exc:
            rows = settings.quarantine_dir / f"{name}.csv"
            raise DataError(f"{exc} (the rows and their reasons: {rows})") from exc
    return loaded, counts
