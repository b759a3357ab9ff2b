"""Reading input tables from a data folder and writing quarantine files: the training side's
only file I/O for inputs.

A data folder holds up to five tables, each ``NAME.parquet`` or ``NAME.csv``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.schema import TABLE_NAMES, Tables
from features.validation import TableError, Validated, validate_table


class DataError(RuntimeError):
    """A fatal input problem: one line, naming the file, the column and the fix (exit code 2)."""


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


def find_table_files(data_dir: Path) -> dict[str, Path]:
    """The table files present in ``data_dir`` (Parquet preferred over CSV)."""
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data folder not found; run 'make data' or pass DATA=<folder>")
    found: dict[str, Path] = {}
    for name in TABLE_NAMES:
        for suffix in (".parquet", ".csv"):
            path = data_dir / f"{name}{suffix}"
            if path.is_file():
                found[name] = path
                break
    if not found:
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_tables(data_dir: Path) -> LoadedTables:
    """Read and validate every table in ``data_dir``.

    Raises
    ------
    DataError
        A table is unreadable, empty, or misses a required column.
    """
    files = find_table_files(Path(data_dir))
    results: dict[str, Validated] = {}
    for name, path in files.items():
        try:
            results[name] = validate_table(name, _read(path))
        except TableError as exc:
            column = f"column '{exc.column}'" if exc.column else "table"
            raise DataError(f"{path}: {column}: {exc.problem}; {exc.fix}") from exc
    tables = Tables(**{n: r.clean for n, r in results.items()})
    return LoadedTables(tables, results, files, {n: _sha256(p) for n, p in files.items()})


def write_quarantine(loaded: LoadedTables, out_dir: Path) -> dict[str, dict[str, int]]:
    """Write each table's quarantined rows to ``out_dir/NAME.csv`` and the counts to
    ``out_dir/counts.json``; returns the counts per table and reason."""
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, dict[str, int]] = {}
    for name, result in loaded.results.items():
        path = out_dir / f"{name}.csv"
        if len(result.quarantine):
            result.quarantine.to_csv(path, index=False)
        elif path.exists():
            path.unlink()
        counts[name] = result.counts
    (out_dir / "counts.json").write_text(json.dumps(counts, indent=2, sort_keys=True))
    return counts
