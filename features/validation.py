"""Row- and table-level validation of the input tables (docs/data-contract.md, "Validation").

A problem with a whole table raises :class:`TableError` (the caller turns it into one line and
exit code 2). A problem with a row never stops the run: the row moves to the quarantine with
its reason, and ``rows in == rows kept + rows quarantined`` always holds. Pure pandas, no I/O:
training validates files with it and the server validates posted histories with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.schema import SURVEY_ELEMENTS, TABLES, Tables


class TableError(ValueError):
    """A fatal problem with a whole table: names the table, the column and what to do."""

    def __init__(self, table: str, column: str | None, problem: str, fix: str) -> None:
        self.table, self.column, self.problem, self.fix = table, column, problem, fix
        where = f"column '{column}'" if column else "table"
        super().__init__(f"{table}: {where}: {problem}; {fix}")


@dataclass(frozen=True)
class Validated:
    """The clean rows of one table and the quarantined ones (with a ``reason`` column)."""

    table: str
    clean: pd.DataFrame
    quarantine: pd.DataFrame

    @property
    def counts(self) -> dict[str, int]:
        """Quarantined rows per reason."""
        if self.quarantine.empty:
            return {}
        return {str(k): int(v) for k, v in self.quarantine["reason"].value_counts().items()}

    def findings(self) -> pd.DataFrame:
        """What validation found, one row per column and rule: ``table``, ``column``, ``rule``,
        ``rows`` (quarantined rows), ``rows_in``; ``column`` is ``*`` for whole-row rules and
        a clean table has one row with rule ``none``."""
        rows = [
            {"table": self.table, **reason_parts(reason), "rows": n}
            for reason, n in sorted(self.counts.items())
        ] or [{"table": self.table, "column": "*", "rule": "none", "rows": 0}]
        out = pd.DataFrame(rows, columns=["table", "column", "rule", "rows"])
        out["rows_in"] = len(self.clean) + len(self.quarantine)
        return out


def reason_parts(reason: str) -> dict[str, str]:
    """The column and rule a quarantine reason code stands for (docs/data-contract.md)."""
    if reason == "duplicate":
        return {"column": "*", "rule": "exact_duplicate"}
    if reason == "unknown_element":
        return {"column": "element", "rule": "unknown_element"}
    if reason.startswith("missing_"):
        return {"column": reason.removeprefix("missing_"), "rule": "missing"}
    if reason.startswith("duplicate_"):
        return {"column": reason.removeprefix("duplicate_"), "rule": "duplicate"}
    if reason.endswith("_out_of_range"):
        return {"column": reason.removesuffix("_out_of_range"), "rule": "out_of_range"}
    if reason.startswith("bad_"):
        return {"column": reason.removeprefix("bad_"), "rule": "unparseable"}
    return {"column": "*", "rule": reason}


def _blank(s: pd.Series) -> pd.Series:
    """Missing or empty-after-strip values. Only text can be empty: a numeric, boolean or
    datetime column is blank where it is missing (and is not converted to text to find out,
    which costs about a millisecond per column even for a one-customer ``/v1/predict``)."""
    dtype = s.dtype
    if (
        pd.api.types.is_numeric_dtype(dtype)
        or pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_datetime64_any_dtype(dtype)
    ):
        return s.isna()
    as_str = s if isinstance(dtype, pd.StringDtype) else s.astype("string")
    return as_str.isna() | (as_str.str.strip() == "")


def _to_ns(parsed: pd.Series) -> pd.Series:
    """UTC nanosecond timestamps; values outside their range (1677-2262, e.g. the common
    "no end date" marker 9999-12-31) become NaT, so the row is quarantined, not fatal."""
    lo, hi = pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC")
    in_range = (parsed >= lo) & (parsed <= hi)
    return parsed.where(in_range).astype("datetime64[ns, UTC]")


def parse_timestamps(s: pd.Series) -> pd.Series:
    """ISO-8601 strings, dates or datetimes to UTC; naive values are UTC; failures are NaT."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return _to_ns(s.dt.tz_convert("UTC"))
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return _to_ns(s.dt.tz_localize("UTC"))
    return _to_ns(pd.to_datetime(s, utc=True, errors="coerce", format="ISO8601"))


def _numeric(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype("float64")


def _parse_bool(s: pd.Series) -> pd.Series:
    """true/false/1/0/yes/no (any case) to a nullable boolean; anything else is NA."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype("boolean")
    text = s.astype("string").str.strip().str.lower()
    mapped = text.map(
        {
            "true": True,
            "1": True,
            "1.0": True,
            "yes": True,
            "y": True,
            "false": False,
            "0": False,
            "0.0": False,
            "no": False,
            "n": False,
        }
    )
    return mapped.astype("boolean")


def validate_table(name: str, raw: pd.DataFrame) -> Validated:
    """Check one table against the contract and split it into clean and quarantined rows.

    Raises
    ------
    TableError
        A required column is missing or the table has no rows.
    """
    spec = TABLES[name]
    missing = [c for c in spec.required if c not in raw.columns]
    if missing:
        raise TableError(
            name,
            missing[0],
            "required column is missing",
            f"add it, or map your column onto '{missing[0]}' in the column-mapping config",
        )
    if raw.empty:
        raise TableError(name, None, "the table has no rows", "remove the file or fill it")

    df = raw.reset_index(drop=True).copy()
    # Each row's first failed rule; ``unset`` marks rows that have passed every rule so far.
    reason = np.full(len(df), None, dtype=object)
    unset = np.ones(len(df), dtype=bool)

    def flag(mask: pd.Series, why: str) -> None:
        hit = mask.to_numpy(dtype=bool) & unset
        reason[hit] = why
        unset[hit] = False

    flag(_blank(df["customer_id"]), "missing_customer_id")
    df["customer_id"] = df["customer_id"].astype("string").str.strip().astype("str")

    for col in spec.timestamps:
        if col not in df.columns:
            continue
        parsed = parse_timestamps(df[col])
        required = col in spec.required
        bad = parsed.isna() & (~_blank(df[col]) | required)
        flag(bad, f"bad_{col}")
        df[col] = parsed

    if name == "transactions":
        amount = _numeric(df["amount"])
        flag(amount.isna() | ~np.isfinite(amount.fillna(0)), "bad_amount")
        df["amount"] = amount
    if name == "surveys":
        flag(
            ~df["element"].astype("string").str.strip().str.lower().isin(SURVEY_ELEMENTS),
            "unknown_element",
        )
        df["element"] = df["element"].astype("string").str.strip().str.lower().astype("str")
    if name == "interactions":
        for col in ("channel", "interaction_type"):
            df[col] = df[col].astype("string").str.strip().str.lower().astype("str")
        if "resolved" in df.columns:
            parsed = _parse_bool(df["resolved"])
            flag(parsed.isna() & ~_blank(df["resolved"]), "bad_resolved")
            df["resolved"] = parsed
    if name == "labels":
        churned = _parse_bool(df["churned"])
        flag(churned.isna(), "bad_churned")
        df["churned"] = churned
    for col, (lo, hi) in spec.ranges.items():
        if col not in df.columns:
            continue
        value = _numeric(df[col])
        present = ~_blank(df[col])
        flag(present & (value.isna() | (value < lo) | (value > hi)), f"{col}_out_of_range")
        df[col] = value

    if name == "customers":
        flag(df["customer_id"].duplicated(keep="first"), "duplicate_customer_id")
    else:
        flag(raw.reset_index(drop=True).duplicated(keep="first"), "duplicate")

    failed = ~unset
    quarantine = raw.reset_index(drop=True).loc[failed].copy()
    quarantine["reason"] = pd.Series(reason[failed], index=quarantine.index, dtype="str")
    return Validated(name, df.loc[~failed].reset_index(drop=True), quarantine)


def validate_tables(raw: dict[str, pd.DataFrame]) -> tuple[Tables, dict[str, Validated]]:
    """Validate every table present; returns the clean :class:`Tables` and per-table results."""
    unknown = set(raw) - set(TABLES)
    if unknown:
        raise ValueError(f"unknown tables: {sorted(unknown)}")
    results = {name: validate_table(name, df) for name, df in raw.items()}
    tables = Tables(**{name: r.clean for name, r in results.items()})
    return tables, results
