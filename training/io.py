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
"""

from __future__ import annotations

import hashlib
import json
import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.schema import TABLE_NAMES, TABLES, Tables
from features.validation import TableError, Validated, validate_table
from training.config import TrainSettings

log = logging.getLogger(__name__)
#: The column map's file name inside a data folder.
COLUMN_MAP_FILE = "columns.toml"


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


def _read(path: Path) -> pd.DataFrame:
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except Exception as exc:  # any parser failure is a fatal, file-level problem
        raise DataError(
            f"{path}: unreadable ({type(exc).__name__}); check the file format"
        ) from exc


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


def load_tables(data_dir: Path, *, column_map: Path | None = None) -> LoadedTables:
    """Read, rename (column map) and validate every table in ``data_dir``.

    Parameters
    ----------
    data_dir : the data folder.
    column_map : a TOML column map; default ``data_dir/columns.toml`` when it exists.

    Raises
    ------
    DataError
        A table is unreadable, empty, or misses a required column; the column map is invalid.
    """
    from training import sources  # which imports this module (DataError, table_sha256)

    data_dir = Path(data_dir)
    files, queried = sources.find_tables(data_dir)
    if column_map is None and (data_dir / COLUMN_MAP_FILE).is_file():
        column_map = data_dir / COLUMN_MAP_FILE
    if column_map is not None and not Path(column_map).is_file():
        raise DataError(f"{column_map}: column map not found; fix the path or remove the setting")
    mapping = read_column_map(Path(column_map)) if column_map is not None else {}
    results: dict[str, Validated] = {}
    for name, path in files.items():
        raw = queried[name].frame if name in queried else _read(path)
        where = queried[name].label if name in queried else path
        if name in mapping and column_map is not None:
            raw = apply_column_map(raw, mapping[name], path=where, map_path=Path(column_map))
        try:
            results[name] = validate_table(name, raw)
        except TableError as exc:
            column = f"column '{exc.column}'" if exc.column else "table"
            raise DataError(f"{where}: {column}: {exc.problem}; {exc.fix}") from exc
    tables = Tables(**{n: r.clean for n, r in results.items()})
    sha = {n: queried[n].sha256 if n in queried else table_sha256(p) for n, p in files.items()}
    return LoadedTables(tables, results, files, sha)


def write_quarantine(loaded: LoadedTables, out_dir: Path) -> dict[str, dict[str, int]]:
    """Write each table's quarantined rows to ``out_dir/NAME.csv``, the counts to
    ``out_dir/counts.json`` and the findings per table, column and rule to
    ``out_dir/report.csv``; log each count; return the counts per table and reason."""
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, dict[str, int]] = {}
    for name, result in loaded.results.items():
        path = out_dir / f"{name}.csv"
        if len(result.quarantine):
            result.quarantine.to_csv(path, index=False)
        elif path.exists():
            path.unlink()
        counts[name] = result.counts
        for reason, n in sorted(result.counts.items()):
            log.warning("quarantined %d %s rows: %s (see %s)", n, name, reason, path)
    (out_dir / "counts.json").write_text(json.dumps(counts, indent=2, sort_keys=True))
    pd.concat([r.findings() for r in loaded.results.values()], ignore_index=True).to_csv(
        out_dir / "report.csv", index=False
    )
    return counts


def load_inputs(settings: TrainSettings) -> tuple[LoadedTables, dict[str, dict[str, int]]]:
    """What every command starts with: read and validate the data folder (with the column map
    of the settings, if any) and write the quarantine; returns the tables and the counts."""
    loaded = load_tables(settings.data_dir, column_map=settings.column_map)
    return loaded, write_quarantine(loaded, settings.quarantine_dir)
