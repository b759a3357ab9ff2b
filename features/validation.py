"""Row-, field- and table-level validation of the input tables (docs/data-contract.md).

A problem with a whole table raises :class:`TableError` (the caller turns it into one line and
exit code 2). A bad value in a required column moves its row to the quarantine with every rule
it failed; a bad value in an optional column is blanked and recorded as a field finding, and
the row is kept. ``rows in == rows kept + rows quarantined`` always holds. Pure pandas and
NumPy, no I/O, no clock: training validates files with it and the server validates posted
histories with it, each passing its own wall-clock time as ``now``.

The rules run on NumPy arrays: the server validates a one-customer history (about a dozen
rows per table) on every ``/v1/predict``, where each pandas operation costs tens of
microseconds, and training validates tables of millions of rows.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias, cast, overload

import numpy as np
import pandas as pd
import pyarrow as pa

from features.groups import arrays_frame, column_labels
from features.schema import SURVEY_ELEMENTS, TABLES, Tables

#: Events up to this far after ``now`` are kept: clocks of the systems that wrote the data and
#: of the machine validating it differ by seconds to minutes (training/config.py sets it).
DEFAULT_CLOCK_SKEW = pd.Timedelta(minutes=15)
#: Text in an attribute column that is no value: spreadsheet errors and null markers
#: (compared lower-case, stripped). "none" and "-" are not here: they can be real categories.
MISSING_MARKERS: frozenset[str] = frozenset(
    {"null", "nan", "n/a", "#n/a", "#value!", "#ref!", "#div/0!", "#num!", "#name?", "#null!"}
)
#: A text attribute column is numeric when at least this share of its values (blank values and
#: :data:`MISSING_MARKERS` aside) are finite numbers; its other values are blanked as
#: ``bad_<column>`` findings. Below the share the column stays text (categories).
NUMERIC_SHARE = 0.95
#: Text that looks like a code, not a quantity: a leading zero before a digit ("02139", "007").
#: One such value keeps the whole column text, so ZIP codes and account codes stay categories.
_CODE = re.compile(r"[+-]?0\d")
_DIGIT = re.compile(r"\d")
#: Text forms of a boolean (compared lower-case, stripped).
_BOOL_TEXT = {
    "true": True, "1": True, "1.0": True, "yes": True, "y": True,
    "false": False, "0": False, "0.0": False, "no": False, "n": False,
}  # fmt: skip
_BOOL_VALUES = np.array(list(_BOOL_TEXT.values()), dtype=bool)
#: Below this many rows text is handled element by element in Python, above it by pandas'
#: vectorised string methods: the same result, each the faster at its size.
_SMALL = 512
#: The dtype of text columns in the clean tables.
_STR = pd.StringDtype(na_value=np.nan)
#: A column's values: a NumPy array or a pandas extension array (``str``, datetime with tz).
_Array: TypeAlias = np.ndarray | pd.api.extensions.ExtensionArray
_NS_MIN = pd.Timestamp.min.as_unit("ns").value
#: NaT as int64 nanoseconds.
_NAT = np.iinfo(np.int64).min
_NS_MAX = pd.Timestamp.max.as_unit("ns").value
FIELD_COLUMNS = ("table", "row", "column", "reason", "value")


class TableError(ValueError):
    """A fatal problem with a whole table: names the table, the column and what to do."""

    def __init__(self, table: str, column: str | None, problem: str, fix: str) -> None:
        self.table, self.column, self.problem, self.fix = table, column, problem, fix
        where = f"column '{column}'" if column else "table"
        super().__init__(f"{table}: {where}: {problem}; {fix}")


#: The findings of a table without any: one shared, read-only frame (building an empty frame
#: costs as much as validating a one-customer history).
_NO_FIELDS = pd.DataFrame(
    {c: pd.Series(dtype="int64" if c == "row" else "str") for c in FIELD_COLUMNS}
)


def _no_fields() -> pd.DataFrame:
    return _NO_FIELDS


@dataclass(frozen=True)
class Validated:
    """The result of validating one table.

    Attributes
    ----------
    clean : the kept rows, normalised (bad optional values blanked).
    quarantine : the quarantined rows as read, index = 0-based input row, plus ``reason``:
        every rule the row failed, joined with ``;``.
    fields : one row per blanked value of a kept row: ``table``, ``row`` (1-based input
        row), ``column``, ``reason``, ``value`` (the raw value, for the local file only).
    """

    table: str
    clean: pd.DataFrame
    quarantine: pd.DataFrame
    fields: pd.DataFrame = field(default_factory=_no_fields)
    #: Whether ``quarantine``'s index is the input row (not after a shuffle by customer).
    numbered: ClassVar[bool] = True

    @property
    def counts(self) -> dict[str, int]:
        """Failed rules per reason code: every rule of a quarantined row, every blanked value."""
        out: Counter[str] = Counter()
        if len(self.quarantine):
            for reasons, n in self.quarantine["reason"].value_counts().items():
                for reason in str(reasons).split(";"):
                    out[reason] += int(n)
        if len(self.fields):
            out.update({str(k): int(v) for k, v in self.fields["reason"].value_counts().items()})
        return dict(out)

    def findings(self) -> pd.DataFrame:
        """What validation found, one row per column and rule: ``table``, ``column``, ``rule``,
        ``reason``, ``action`` (``row_quarantined`` or ``value_blanked``), ``rows`` (rows
        that failed the rule), ``rows_in``; ``column`` is ``*`` for whole-row rules and a clean
        table has one row with rule ``none``."""
        blanked = set(self.fields["reason"]) if len(self.fields) else set()
        rows = [
            {
                "table": self.table,
                **reason_parts(reason),
                "reason": reason,
                "action": "value_blanked" if reason in blanked else "row_quarantined",
                "rows": n,
            }
            for reason, n in sorted(self.counts.items())
        ] or [
            {
                "table": self.table,
                "column": "*",
                "rule": "none",
                "reason": "",
                "action": "",
                "rows": 0,
            }
        ]
        out = pd.DataFrame(rows, columns=["table", "column", "rule", "reason", "action", "rows"])
        out["rows_in"] = len(self.clean) + len(self.quarantine)
        return out

    def table_error(self) -> TableError | None:
        """The whole-table failure when every row is quarantined, else ``None``: the top
        reasons with counts and the masked shape of one failing value (digits as ``9``,
        letters as ``a``; never the value itself, which may be a customer's data)."""
        if len(self.clean) or not len(self.quarantine):
            return None
        row_counts: Counter[str] = Counter()
        for reasons, n in self.quarantine["reason"].value_counts().items():
            for reason in str(reasons).split(";"):
                row_counts[reason] += int(n)
        top = row_counts.most_common(3)
        column = reason_parts(top[0][0])["column"]
        listed = ", ".join(f"{r} {n:,}" for r, n in top)
        problem = f"all {len(self.quarantine):,} rows quarantined ({listed})"
        if column == "*" or column not in self.quarantine.columns:
            return TableError(self.table, None, problem, "see the quarantine files")
        hit = self.quarantine["reason"].str.split(";").map(lambda rs: top[0][0] in rs)
        failing = self.quarantine.loc[hit.to_numpy(dtype=bool), column]
        if _blank(failing).all():
            return TableError(
                self.table, column, f"{problem}; it is blank", _fix(f"missing_{column}", column)
            )
        shape = value_shape(failing.iloc[0])
        return TableError(
            self.table, column, f"{problem}; values look like {shape}", _fix(top[0][0], column)
        )


def _fix(reason: str, column: str) -> str:
    """What to do when every row fails ``reason`` (the whole-table error's advice)."""
    rule = reason_parts(reason)["rule"]
    if rule == "missing":
        return (
            f"map the column that holds '{column}' in columns.toml or sources.toml "
            "(a query gives blanks where a cast or try_strptime fails)"
        )
    if rule == "future":
        return "the timestamps are after now: check the clock and time zone of the export"
    if rule == "unparseable" and column in {c for s in TABLES.values() for c in s.timestamps}:
        return (
            "write ISO-8601 (2024-03-14) or set a format in sources.toml, "
            f"e.g. try_strptime({column}, '%m/%d/%Y')"
        )
    if rule == "unparseable":
        return f"convert '{column}' in sources.toml (a number, or true/false)"
    if rule == "out_of_range":
        return f"rescale '{column}' to its range in sources.toml (docs/data-contract.md)"
    if rule == "unknown_element":
        return "map the values onto the elements in docs/data-contract.md in sources.toml"
    return "see the quarantine files and docs/data-contract.md"


def value_shape(value: object, limit: int = 24) -> str:
    """The shape of a value for a log line: digits become ``9``, letters ``a``, the rest is
    kept, cut to ``limit`` characters; blank is ``(blank)``."""
    if value is None or (not isinstance(value, str) and pd.isna(cast(Any, value))):
        return "(blank)"
    text = str(value).strip()
    if not text:
        return "(blank)"
    masked = "".join("9" if ch.isdigit() else "a" if ch.isalpha() else ch for ch in text[:limit])
    return masked + ("..." if len(text) > limit else "")


def reason_parts(reason: str) -> dict[str, str]:
    """The column and rule a reason code stands for (docs/data-contract.md)."""
    if reason == "duplicate":
        return {"column": "*", "rule": "exact_duplicate"}
    if reason == "unknown_element":
        return {"column": "element", "rule": "unknown_element"}
    for prefix, rule in (
        ("missing_", "missing"),
        ("duplicate_", "duplicate"),
        ("future_", "future"),
        ("bad_", "unparseable"),
    ):
        if reason.startswith(prefix):
            return {"column": reason.removeprefix(prefix), "rule": rule}
    if reason.endswith("_out_of_range"):
        return {"column": reason.removesuffix("_out_of_range"), "rule": "out_of_range"}
    return {"column": "*", "rule": reason}


# -- column parsers: a pandas Series in, NumPy arrays out --------------------------------------


def _text(s: _Array, *, lower: bool = False, memo: _Memo | None = None) -> tuple[Any, np.ndarray]:
    """Stripped (optionally lower-cased) text and where it is blank (missing or empty after
    the strip). The text is an object array (``None`` where missing) for a small column and a
    pandas ``str`` array for a large one; non-text values are turned into their text, as
    ``astype("str")`` does."""
    if len(s) < _SMALL:
        raw = _objects(s, memo)
        missing = pd.isna(raw)
        text = [
            None if m else (v if isinstance(v, str) else str(v)).strip()
            for v, m in zip(raw, missing, strict=True)
        ]
        if lower:
            text = [None if t is None else t.lower() for t in text]
        out = np.array(text, dtype=object)
        blank = missing | (out == "")
        if s.dtype == _STR and all(m or t == v for t, v, m in zip(text, raw, missing, strict=True)):
            return s, blank  # already clean text: no conversion back to a string array
        return out, blank
    if isinstance(s.dtype, pd.StringDtype):
        # large text: each distinct value stripped once (ids, channels and elements repeat
        # over millions of rows), and the column itself kept when no value changes
        codes, uniques = _factorized(s, memo)
        u_text, u_blank = _text_large(uniques, lower=lower)
        blank = np.append(u_blank, True)[codes]  # code -1 (missing) picks the last: blank
        if s.dtype == _STR and bool(np.asarray(u_text == uniques, dtype=bool).all()):
            return s, blank
        return u_text.take(codes, allow_fill=True), blank
    return _text_large(s, lower=lower)


def _text_large(s: _Array, *, lower: bool) -> tuple[Any, np.ndarray]:
    """:func:`_text` by pandas' string methods: the text stays a pandas string array."""
    t = pd.Series(s, copy=False).astype("str").str.strip()
    if lower:
        t = t.str.lower()
    return t.array, (t.isna() | (t == "")).to_numpy(dtype=bool)


class _Memo(dict[int, tuple[Any, np.ndarray, Any]]):
    """Factorized columns of one table, by array identity: a column that several rules
    factorize (the customer id: text, then duplicate key) is hashed once."""


def _objects(values: _Array, memo: _Memo | None = None) -> np.ndarray:
    """A small column as a NumPy object array, converted once per table (several rules read
    the customer id and the timestamp as Python objects)."""
    if memo is None:
        return np.asarray(values, dtype=object)
    key = -id(values)  # the factorized columns use the positive id
    hit = memo.get(key)
    if hit is not None and hit[0] is values:
        cached: np.ndarray = hit[1]
        return cached
    out = np.asarray(values, dtype=object)
    memo[key] = (values, out, None)
    return out


def _factorized(values: Any, memo: _Memo | None = None) -> tuple[np.ndarray, Any]:
    """Codes (``-1`` where missing) and distinct values of a large column, so that a rule
    runs on each distinct value once; pandas' ``str`` arrays factorize in Arrow."""
    hit = memo.get(id(values)) if memo is not None else None
    if hit is not None and hit[0] is values:
        return hit[1], hit[2]
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    codes = np.asarray(codes)
    if memo is not None:
        memo[id(values)] = (values, codes, uniques)  # the array is held: its id stays its own
    return codes, uniques


def _blank(s: _Array | pd.Series, memo: _Memo | None = None) -> np.ndarray:
    """Missing or empty-after-strip values. Only text can be empty: a numeric, boolean or
    datetime column is blank where it is missing (and is not converted to text to find out)."""
    values = s.array if isinstance(s, pd.Series) else s
    dtype = values.dtype
    if (
        pd.api.types.is_numeric_dtype(dtype)
        or pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_datetime64_any_dtype(dtype)
    ):
        return np.asarray(pd.isna(values), dtype=bool)
    if len(values) < _SMALL:  # as :func:`_text` decides, without building the text
        objects = _objects(values, memo)
        missing = pd.isna(objects)
        return np.fromiter(
            (
                m or not (v if isinstance(v, str) else str(v)).strip()
                for v, m in zip(objects, missing, strict=True)
            ),
            dtype=bool,
            count=len(objects),
        )
    return _text(values)[1]


def _ns(values: np.ndarray) -> np.ndarray:
    """``datetime64`` of any unit to int64 UTC nanoseconds; values outside the nanosecond range
    (1677-2262, e.g. the "no end date" marker 9999-12-31) become NaT, so they fail a rule
    instead of overflowing."""
    # numpy types the unit as str; np.timedelta64 accepts only its Literal unit codes
    unit = cast(Any, np.datetime_data(values.dtype)[0])
    ints = values.view("i8")
    if unit == "ns":
        return ints
    factor = int(np.timedelta64(1, unit) // np.timedelta64(1, "ns"))
    ok = (ints != _NAT) & (ints >= _NS_MIN // factor) & (ints <= _NS_MAX // factor)
    out = np.full(len(ints), _NAT, dtype=np.int64)
    out[ok] = ints[ok] * factor
    return out


def _timestamps(s: _Array, memo: _Memo | None = None) -> np.ndarray:
    """UTC nanoseconds (int64, NaT = int64 min) of ISO-8601 strings, dates or datetimes; naive
    values are UTC; failures are NaT."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return _ns(np.asarray(cast(Any, s).tz_convert(None)))
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return _ns(np.asarray(s))
    if len(s) < _SMALL:
        fast = _plain_iso_ns(_objects(s, memo))
        if fast is not None:
            return fast
    parsed = pd.to_datetime(s, utc=True, errors="coerce", format="ISO8601")
    return _ns(np.asarray(parsed.tz_convert(None)))


#: The plain ISO-8601 forms NumPy parses exactly as pandas does: a date, or a date and time
#: to the second with an optional fraction, in UTC (``Z``, ``+00:00``) or naive, years
#: 1678-2261 (inside the nanosecond range).
_PLAIN_ISO = re.compile(
    r"(1[6-9]\d\d|2[0-2]\d\d)-\d\d-\d\d"
    r"(?:T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?)?(?:Z|\+00:00)?"
)


def _plain_iso_ns(values: np.ndarray) -> np.ndarray | None:
    """UTC nanoseconds of a few timestamps if every one is missing or :data:`_PLAIN_ISO`
    text (NumPy's parser, a tenth of pandas' cost for a dozen values), else ``None`` (the
    caller parses with pandas). Invalid dates (e.g. February 30th) also give ``None``."""
    text: list[str] = []
    missing = pd.isna(values)
    for v, m in zip(values, missing, strict=True):
        if m:
            text.append("NaT")
            continue
        match = _PLAIN_ISO.fullmatch(v) if isinstance(v, str) else None
        if match is None or not 1678 <= int(match[1]) <= 2261:
            return None
        text.append(v[:-1] if v.endswith("Z") else v.removesuffix("+00:00"))
    try:
        return np.array(text, dtype="M8[ns]").view("i8")
    except ValueError:
        return None


_UTC = pd.DatetimeTZDtype("ns", "UTC")


def _as_utc(ns: np.ndarray) -> pd.arrays.DatetimeArray:
    """int64 UTC nanoseconds as a ``datetime64[ns, UTC]`` array. Through a ``DatetimeIndex``
    localised to UTC (no shift: the values are UTC already): the same array as
    ``pd.array(values, dtype="datetime64[ns, UTC]")`` at about half the cost, for a dozen
    rows (a quarter of the ~40 us of each table's timestamp column) and for millions."""
    index = pd.DatetimeIndex(ns.view("M8[ns]"), tz="UTC")
    values: pd.arrays.DatetimeArray = index.array
    return values


def _text_array(values: np.ndarray) -> Any:
    """A small object array of normalised text (``str`` or ``None``, :func:`_text`) as a
    pandas ``str`` array: the array ``pd.array(values, dtype="str")`` makes, from a pyarrow
    array built directly (``pd.array`` checks and converts each value first; 10 against 20
    us for a dozen values, seven columns of a one-customer request)."""
    # pandas-stubs leave out the constructor's ``dtype`` (``str``: NaN as the missing value)
    array = pa.array(values, type=pa.large_string())
    return pd.arrays.ArrowStringArray(array, dtype=_STR)  # type: ignore[call-arg]


def _float(s: _Array) -> np.ndarray:
    """A numeric or boolean column as float64, missing values NaN."""
    if isinstance(s, np.ndarray):
        return s.astype("float64", copy=False)
    return s.to_numpy(dtype="float64", na_value=np.nan)


def _numbers(s: _Array) -> np.ndarray:
    """float64 values; text that is not a number and missing values are NaN."""
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
        return _float(s)
    values = np.asarray(s, dtype=object) if len(s) < _SMALL else pd.Series(s, copy=False)
    return np.asarray(pd.to_numeric(values, errors="coerce"), dtype="float64")


class _Vocabulary:
    """A fixed set of text values, looked up by a dict for a few values and by a pandas
    index (a hash table in C) for many."""

    def __init__(self, values: list[str]) -> None:
        self.index = pd.Index(values, dtype=object)
        self.lookup = {v: i for i, v in enumerate(values)}

    def positions(self, text: Any, memo: _Memo | None = None) -> np.ndarray:
        """Each value's position in the vocabulary, -1 where it is not in it (or missing)."""
        if len(text) < _SMALL:
            # a small pandas string array too (:func:`_text` keeps clean text as it came)
            values = text if isinstance(text, np.ndarray) else np.asarray(text, dtype=object)
            get = self.lookup.get
            return np.fromiter((get(t, -1) for t in values), dtype=np.intp, count=len(values))
        codes, uniques = _factorized(text, memo)  # each distinct value looked up once
        return cast(np.ndarray, np.append(self.index.get_indexer(uniques), -1)[codes])


def _booleans(s: _Array) -> tuple[np.ndarray, np.ndarray]:
    """true/false/1/0/yes/no (any case) as values and a mask of what is not one of them."""
    if pd.api.types.is_bool_dtype(s.dtype):
        if isinstance(s, np.ndarray):  # numpy booleans have no missing value
            return s, np.zeros(len(s), dtype=bool)
        return s.to_numpy(dtype=bool, na_value=False), np.asarray(s.isna(), dtype=bool)
    text, _ = _text(s, lower=True)
    pos = _BOOLS.positions(text)
    return _BOOL_VALUES[np.maximum(pos, 0)], pos < 0


_BOOLS = _Vocabulary(list(_BOOL_TEXT))
_ELEMENTS = _Vocabulary(sorted(SURVEY_ELEMENTS))
_MARKERS = _Vocabulary(sorted(MISSING_MARKERS))


# -- the rules ---------------------------------------------------------------------------------


class _Rules:
    """Failed rules in the order they ran: ``(column, reason, mask)``; ``column`` is ``None``
    for a row rule (the row is quarantined) and names the column of a field rule (the value is
    blanked, the row kept)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.found: list[tuple[str | None, str, np.ndarray]] = []

    def row(self, mask: np.ndarray, reason: str) -> None:
        if mask.any():
            self.found.append((None, reason, mask))

    def field(self, column: str, mask: np.ndarray, reason: str) -> None:
        if mask.any():
            self.found.append((column, reason, mask))

    def bad_rows(self) -> np.ndarray:
        bad = np.zeros(self.n, dtype=bool)
        for column, _, mask in self.found:
            if column is None:
                bad |= mask
        return bad


class _Columns(dict[Hashable, _Array]):
    """The columns of a frame as arrays, taken once.

    Not as Series: a Series per column costs about 8 microseconds, more than a rule on a
    dozen rows, and the rules need only the values.
    """

    def __init__(self, frame: pd.DataFrame) -> None:
        items = [(c, s.array) for c, s in frame.items()]
        super().__init__(items)
        #: the column names in order, as a list (iterating a pandas index costs per name)
        self.names: list[Hashable] = [c for c, _ in items]
        self.memo = _Memo()


def _repeats(values: Any) -> np.ndarray:
    """Values equal to an earlier value (missing values equal each other)."""
    if len(values) >= _SMALL:
        return cast(np.ndarray, pd.Index(values).duplicated(keep="first"))
    seen: set[object] = set()
    out = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values):
        key = None if v is None or v != v else v  # NaN != NaN: one key for every missing
        out[i] = key in seen
        seen.add(key)
    return out


def _row_key(stamps: np.ndarray, col_of: _Columns) -> np.ndarray:
    """An int64 key per row that copies of a row share: the parsed timestamp mixed (wrapping
    multiplication) with every column that is cheap to turn into integers: numbers and
    booleans by their bits, text already factorized by a rule by its codes. Distinct rows
    rarely share a key; copies always do."""
    key = stamps.copy()
    for values in col_of.values():
        part = _key_part(values, col_of.memo)
        if part is not None:
            key *= np.int64(1_000_003)
            key += part
    return key


def _key_part(values: _Array, memo: _Memo) -> np.ndarray | None:
    """A column as int64 that equal values (missing ones too) share, or ``None`` when that
    would cost a hash of the column."""
    hit = memo.get(id(values))
    if hit is not None and hit[0] is values:
        return hit[1].astype(np.int64, copy=False)
    kind = values.dtype.kind
    if kind in "biu":  # NumPy or nullable integers and booleans; missing values as 0
        if isinstance(values, np.ndarray):
            return values.astype(np.int64, copy=False)
        return values.to_numpy(dtype=np.int64, na_value=0)
    if kind == "f":
        number = _float(values)
        # every missing value one key; -0.0 and 0.0 one key (pandas takes them as equal)
        return np.where(np.isnan(number), 0.0, number + 0.0).view(np.int64)
    return None


def _repeated_keys(key: np.ndarray) -> np.ndarray:
    """Where ``key`` holds a value that occurs more than once. By sorting (NumPy's sort of
    int64 is vectorised, several times faster than a hash table over millions of keys) and
    a binary search of the few repeated values."""
    ordered = np.sort(key)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if not len(repeated):
        return np.zeros(len(key), dtype=bool)
    repeated = np.unique(repeated)
    at = np.minimum(np.searchsorted(repeated, key), len(repeated) - 1)
    return cast(np.ndarray, repeated[at] == key)


def _duplicated(raw: pd.DataFrame, col_of: _Columns, stamps: np.ndarray | None) -> np.ndarray:
    """Rows that exactly repeat an earlier row (missing values equal each other).

    Copies of a row have the same parsed timestamp, so only rows whose ``stamps`` (int64
    nanoseconds) repeat are compared in full: usually none or a few.
    """
    n = len(raw)
    candidates = np.ones(n, dtype=bool)
    if stamps is not None and n >= _SMALL:
        candidates = _repeated_keys(_row_key(stamps, col_of))
        if not candidates.any():
            return np.zeros(n, dtype=bool)
    elif stamps is not None:
        listed = stamps.tolist()
        seen_at = Counter(listed)
        if len(seen_at) == n:  # no repeated timestamp (the usual history)
            return np.zeros(n, dtype=bool)
        candidates = np.array([seen_at[t] > 1 for t in listed], dtype=bool)
    pos = np.flatnonzero(candidates)
    out = np.zeros(n, dtype=bool)
    if len(pos) >= _SMALL:
        sub = raw if len(pos) == n else raw.iloc[pos]
        out[pos] = sub.duplicated(keep="first").to_numpy(dtype=bool)
        return out
    if n < _SMALL:  # the columns as objects, shared with the other rules
        columns = [_objects(col_of[c], col_of.memo)[pos] for c in col_of.names]
    else:  # a few candidates of a large table: only their values
        columns = [np.asarray(col_of[c][pos], dtype=object) for c in col_of.names]
    # the ignore: numpy's stubs leave None (an object scalar) out of ArrayLike
    columns = [np.where(pd.isna(c), None, c) for c in columns]  # type: ignore[call-overload]
    seen: set[tuple[object, ...]] = set()
    for i, key in zip(pos, zip(*columns, strict=True), strict=True):
        out[i] = key in seen
        seen.add(key)
    return out


def validate_table(
    name: str,
    raw: pd.DataFrame,
    *,
    now: pd.Timestamp | None = None,
    clock_skew: pd.Timedelta = DEFAULT_CLOCK_SKEW,
    numeric_attributes: frozenset[str] | None = None,
) -> Validated:
    """Check one table against the contract: quarantine rows with a bad required value, blank
    bad optional values, keep the rest.

    Parameters
    ----------
    name : the table (``features.schema.TABLES``).
    raw : the table as read; its rows are numbered 1.. in input order for the findings.
    now : the caller's wall-clock time; events (and signup dates, label ``as_of``) later than
        ``now + clock_skew`` are in the future and fail. ``None``: no future check.
    clock_skew : the tolerance for clocks that differ.
    numeric_attributes : customers only: the text attribute columns to read as numbers, when
        the caller decided on the whole table (:func:`numeric_attribute_columns`, e.g. over a
        cluster's partitions); ``None``: decided from ``raw`` itself.

    Raises
    ------
    TableError
        A required column is missing or the table has no rows.
    """
    spec = TABLES[name]
    # each column once: a column lookup costs as much as a rule on a dozen rows (and ``in``
    # on a new frame's columns builds the Index's hash table)
    col_of = _Columns(raw)
    missing = [c for c in spec.required if c not in col_of]
    if missing:
        raise TableError(
            name,
            missing[0],
            "required column is missing",
            f"add it, or map your column onto '{missing[0]}' in the column-mapping config",
        )
    if not len(raw.index):  # ``raw.empty``: a frame without columns has failed above
        raise TableError(name, None, "the table has no rows", "remove the file or fill it")
    if not isinstance(raw.index, pd.RangeIndex) or raw.index.start != 0 or raw.index.step != 1:
        raw = raw.reset_index(drop=True)
    n = len(raw)
    rules = _Rules(n)
    out: dict[str, _Array] = {}
    limit = None if now is None else _future_limit(now, clock_skew)
    stamps = None  # the required timestamp column, to find duplicate candidates

    ids, blank_id = _text(col_of["customer_id"], memo=col_of.memo)
    rules.row(blank_id, "missing_customer_id")
    out["customer_id"] = ids

    for col in spec.timestamps:
        if col not in col_of:
            continue
        ns = _timestamps(col_of[col], col_of.memo)
        nat = ns == _NAT
        future = (ns > limit) if limit is not None and col != "churn_date" else None
        if col in spec.required:  # blank or unparseable (a query's NULL is blank): one code
            rules.row(nat, f"bad_{col}")
            if future is not None:
                rules.row(future, f"future_{col}")
        else:  # an optional date: blank is "unknown", a bad one is blanked
            rules.field(col, nat & ~_blank(col_of[col], col_of.memo), f"bad_{col}")
            if future is not None:
                rules.field(col, future, f"future_{col}")
                ns = np.where(future, _NAT, ns)
        out[col] = _as_utc(ns)
        if col in spec.required:
            stamps = ns

    if name == "transactions":
        amount = _numbers(col_of["amount"])
        rules.row(~np.isfinite(amount), "bad_amount")  # blank, text or infinite
        out["amount"] = amount
    if name == "surveys":
        element, _ = _text(col_of["element"], lower=True, memo=col_of.memo)
        rules.row(_ELEMENTS.positions(element, col_of.memo) < 0, "unknown_element")  # blank too
        out["element"] = element
    if name == "interactions":
        for col in ("channel", "interaction_type"):
            text, blank = _text(col_of[col], lower=True, memo=col_of.memo)
            rules.row(blank, f"missing_{col}")
            out[col] = text
        if "resolved" in col_of:
            values, unknown = _booleans(col_of["resolved"])
            blank = _blank(col_of["resolved"], col_of.memo)
            rules.field("resolved", unknown & ~blank, "bad_resolved")
            out["resolved"] = pd.arrays.BooleanArray(values, unknown)
    if name == "labels":
        values, unknown = _booleans(col_of["churned"])
        rules.row(unknown, "bad_churned")  # blank too
        out["churned"] = pd.arrays.BooleanArray(values, unknown)
    for col, (lo, hi) in spec.ranges.items():
        if col not in col_of:
            continue
        value = _numbers(col_of[col])
        blank = _blank(col_of[col], col_of.memo)
        not_number = ~blank & np.isnan(value)
        outside = ~np.isnan(value) & ((value < lo) | (value > hi))
        if col in spec.required:
            rules.row(blank, f"missing_{col}")
            rules.row(not_number, f"bad_{col}")
            rules.row(outside, f"{col}_out_of_range")
        else:  # blank is "not asked"; a value that is no score is blanked
            rules.field(col, not_number, f"bad_{col}")
            rules.field(col, outside, f"{col}_out_of_range")
            value = np.where(outside, np.nan, value)
        out[col] = value
    if name == "customers":
        _attribute_rules(col_of, rules, out, numeric_attributes)
        rules.row(
            _repeats(_objects(ids, col_of.memo) if n < _SMALL else ids), "duplicate_customer_id"
        )
    else:
        rules.row(_duplicated(raw, col_of, stamps), "duplicate")
    return _split(name, raw, col_of, rules, out)


@functools.lru_cache(maxsize=8)  # the tables of one request share ``now``: converted once
def _future_limit(now: pd.Timestamp, clock_skew: pd.Timedelta) -> int:
    """``now + clock_skew`` in UTC nanoseconds (a naive ``now`` is UTC)."""
    ts = pd.Timestamp(now)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int((ts + clock_skew).as_unit("ns").value)


#: Customer columns with their own rules; every other column is an attribute.
_CUSTOMER_COLUMNS = frozenset({"customer_id", *TABLES["customers"].optional})


def _attribute_columns(col_of: _Columns) -> list[str]:
    return [str(c) for c in col_of if c not in _CUSTOMER_COLUMNS]


def _number_text(
    s: _Array, memo: _Memo | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """A text attribute read as numbers: float values (NaN where not a number), which values
    are blank, which are :data:`MISSING_MARKERS` markers, which are finite numbers, and
    whether a value looks like a code (:data:`_CODE`)."""
    text, blank = _text(s, lower=True, memo=memo)
    if len(s) < _SMALL:
        objects = _objects(text, memo)
        marker = _MARKERS.positions(objects) >= 0
        if not any(isinstance(t, str) and _DIGIT.search(t) for t in objects):
            # no digit, no finite number and no code ("inf" is no finite number): a plan,
            # a region; pandas' parser is not needed to say so
            return np.full(len(s), np.nan), blank, marker, np.zeros(len(s), dtype=bool), False
        values = np.asarray(pd.to_numeric(objects, errors="coerce"), dtype="float64")
        coded = any(isinstance(t, str) and _CODE.match(t) is not None for t in objects)
    else:  # each distinct value parsed once: attributes repeat (plans, regions)
        codes, uniques = _factorized(text)
        marker = np.append(_MARKERS.positions(uniques) >= 0, False)[codes]
        parsed = np.asarray(pd.to_numeric(uniques, errors="coerce"), dtype="float64")
        values = np.append(parsed, np.nan)[codes]
        coded = bool(pd.Series(uniques, copy=False).str.match(_CODE.pattern, na=False).any())
    number = ~blank & ~marker & np.isfinite(values)
    return values, blank, marker, number, coded


@overload
def _numeric_rule(present: int, numbers: int, coded: int) -> bool: ...
@overload
def _numeric_rule(present: pd.Series, numbers: pd.Series, coded: pd.Series) -> pd.Series: ...
def _numeric_rule(present: Any, numbers: Any, coded: Any) -> Any:
    """The type rule, on counts (numbers, or Series of them per column): some number, no
    code, and at least :data:`NUMERIC_SHARE` of the present values numbers."""
    return (numbers > 0) & (coded == 0) & (numbers >= NUMERIC_SHARE * present)


def _is_text(dtype: np.dtype[Any] | pd.api.extensions.ExtensionDtype) -> bool:
    return not (pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype))


def attribute_number_counts(customers: pd.DataFrame) -> pd.DataFrame:
    """Per text attribute column of a raw customers table: ``present`` values, finite
    ``numbers`` among them, and ``coded`` (1 if a value looks like a code). Counts of disjoint
    parts of a table add up (``coded`` by max), so a cluster decides on the whole table with
    :func:`numeric_attribute_columns` as one machine does."""
    col_of = _Columns(customers)
    rows = []
    for col in _attribute_columns(col_of):
        if _is_text(col_of[col].dtype):
            _, blank, marker, number, coded = _number_text(col_of[col], col_of.memo)
            rows.append((col, int((~blank & ~marker).sum()), int(number.sum()), int(coded)))
    out = pd.DataFrame(rows, columns=["column", "present", "numbers", "coded"])
    return out.astype({"column": "str", "present": "int64", "numbers": "int64", "coded": "int64"})


def numeric_attribute_columns(counts: pd.DataFrame) -> frozenset[str]:
    """The text attribute columns read as numbers, from :func:`attribute_number_counts`
    (summed over parts): some value present, none like a code, and at least
    :data:`NUMERIC_SHARE` of the present values numbers."""
    total = counts.groupby("column").agg(
        present=("present", "sum"), numbers=("numbers", "sum"), coded=("coded", "max")
    )
    keep = _numeric_rule(total["present"], total["numbers"], total["coded"])
    return frozenset(str(c) for c in total.index[keep])


def _attribute_rules(
    col_of: _Columns,
    rules: _Rules,
    out: dict[str, _Array],
    numeric: frozenset[str] | None = None,
) -> None:
    """Decide each attribute column's type and blank values that are clearly no value.

    A text column whose present values are numbers (:func:`numeric_attribute_columns`, or
    the caller's ``numeric``) becomes float64: CSV reads every column as text, and a tenure
    or a monthly charge is a quantity, not a category. Blank stays missing; markers
    (:data:`MISSING_MARKERS`) and the few values that are no finite number are blanked as
    ``bad_<column>``. Other text stays text (the features make it a category), with markers
    blanked; numeric columns have infinite values blanked; booleans are kept."""
    for col in _attribute_columns(col_of):
        s = col_of[col]
        if pd.api.types.is_bool_dtype(s.dtype):
            continue
        if pd.api.types.is_numeric_dtype(s.dtype):
            bad = np.isinf(_float(s))
            if bad.any():
                rules.field(col, bad, f"bad_{col}")
                out[col] = pd.Series(s, copy=False).mask(bad).array
            continue
        values, blank, marker, number, coded = _number_text(s, col_of.memo)
        if numeric is None:
            present = int((~blank & ~marker).sum())
            as_number = bool(_numeric_rule(present, int(number.sum()), int(coded)))
        else:
            as_number = col in numeric
        if as_number:
            # markers and values that are no finite number; blank values are just missing
            rules.field(col, ~blank & ~number, f"bad_{col}")
            out[col] = np.where(number, values, np.nan)
            continue
        bad = marker
        if bad.any():
            rules.field(col, bad, f"bad_{col}")
            out[col] = pd.Series(s, copy=False).mask(bad).array


#: Empty quarantines by column names and dtypes: shared, read-only frames, as
#: :data:`_NO_FIELDS`; bounded because the server sees whatever attribute columns are posted.
_NO_QUARANTINE: dict[tuple[tuple[Hashable, object], ...], pd.DataFrame] = {}


def _no_quarantine(raw: pd.DataFrame, col_of: _Columns) -> pd.DataFrame:
    """``raw``'s columns with no rows, plus ``reason``."""
    key = tuple((c, col_of[c].dtype) for c in col_of.names)
    empty = _NO_QUARANTINE.get(key)
    if empty is None:
        if len(_NO_QUARANTINE) > 256:
            _NO_QUARANTINE.clear()
        empty = raw.iloc[:0].assign(reason=pd.Series(dtype="str"))
        _NO_QUARANTINE[key] = empty
    return empty


def _frame(columns: list[_Array], names: list[Hashable]) -> pd.DataFrame:
    """A frame of ``columns`` (one array per name, equal lengths, final dtypes), with a
    ``RangeIndex``; no copy, no inference (an object column as read stays object). The
    labels are those of a frame built from a dict: a name given twice is one column (the
    last), and text labels are a text Index whatever the raw table's labels were."""
    by_name = dict(zip(names, columns, strict=True))
    index = pd.RangeIndex(len(columns[0]) if columns else 0)
    return arrays_frame(list(by_name.values()), index=index, columns=column_labels(list(by_name)))


def _split(
    name: str, raw: pd.DataFrame, col_of: _Columns, rules: _Rules, out: dict[str, _Array]
) -> Validated:
    """The kept rows (normalised columns), the quarantined rows as read with every reason, and
    the blanked values of kept rows."""
    bad = rules.bad_rows()
    keep = ~bad
    any_bad = bool(bad.any())
    columns = []
    for col in col_of.names:
        if col in out:
            values = out[col]
            if isinstance(values, np.ndarray) and values.dtype == object:
                values = _text_array(values)  # normalised text
        else:  # as read (an object column stays object)
            values = col_of[col]
        columns.append(values[keep] if any_bad else values)
    clean = _frame(columns, col_of.names)

    bad_pos = np.flatnonzero(bad)
    if not len(bad_pos) and not rules.found:
        return Validated(name, clean, _no_quarantine(raw, col_of), _NO_FIELDS)
    quarantine = raw.iloc[bad_pos].copy()
    reasons = np.full(len(bad_pos), "", dtype=object)
    field_rows: list[pd.DataFrame] = []
    for column, reason, mask in rules.found:
        hit = mask[bad_pos]
        reasons[hit] = reasons[hit] + (";" + reason)
        if column is None:
            continue
        pos = np.flatnonzero(mask & keep)
        if len(pos):
            values = np.asarray(col_of[column], dtype=object)[pos]
            field_rows.append(
                pd.DataFrame(
                    {
                        "table": name,
                        "row": pos + 1,
                        "column": column,
                        "reason": reason,
                        "value": [str(v) for v in values],
                    }
                )
            )
    quarantine["reason"] = pd.array([r[1:] for r in reasons], dtype="str")
    fields = pd.concat(field_rows, ignore_index=True) if field_rows else _no_fields()
    return Validated(name, clean, quarantine, fields)


def validate_tables(
    raw: dict[str, pd.DataFrame],
    *,
    now: pd.Timestamp | None = None,
    clock_skew: pd.Timedelta = DEFAULT_CLOCK_SKEW,
) -> tuple[Tables, dict[str, Validated]]:
    """Validate every table present (:func:`validate_table`); returns the clean
    :class:`Tables` and per-table results."""
    unknown = set(raw) - set(TABLES)
    if unknown:
        raise ValueError(f"unknown tables: {sorted(unknown)}")
    results = {
        name: validate_table(name, df, now=now, clock_skew=clock_skew) for name, df in raw.items()
    }
    tables = Tables(**{name: r.clean for name, r in results.items()})
    return tables, results
