"""Per-customer aggregation over integer codes: the vectorised core of every feature family.

Why: grouping millions of rows by a string ``customer_id`` again for every feature is what
makes a feature build slow. A table's past rows are factorised once into integer codes;
counts, sums and means are then ``np.bincount`` calls and latest values ``np.maximum.at``.
Each result is a numpy array aligned with :attr:`Groups.ids`, and every value is computed
from that customer's rows alone (no statistics across customers), so the builder runs
unchanged on any partition of customers.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd

try:  # public since pandas 3.0; pandas-stubs do not cover it
    from pandas.api.internals import (  # type: ignore[import-not-found]
        create_dataframe_from_blocks as _from_blocks,
    )
except ImportError:  # pragma: no cover - pandas 2
    _from_blocks = None

NS_PER_DAY = 86_400 * 10**9
#: NaT as int64 nanoseconds.
NAT_NS = np.iinfo("int64").min
#: Up to this many values, :func:`factorize` finds the distinct values with a dict: pandas'
#: factorize has a fixed cost of 15-110 us a call (Arrow strings, sorting), most of the time
#: for the one customer of a ``/v1/predict``; above it, pandas' vectorised path is faster.
SMALL = 64


def timestamps_ns(timestamps: pd.Series) -> np.ndarray:
    """Timestamps as int64 nanoseconds since the epoch (UTC); NaT is :data:`NAT_NS`."""
    values = timestamps.array
    if not isinstance(values, pd.arrays.DatetimeArray):
        values = pd.DatetimeIndex(timestamps).array
    if values.unit != "ns":  # as_unit makes a new array even when the unit is already ns
        values = values.as_unit("ns")
    # pandas-stubs leave out DatetimeArray.asi8 (its int64 nanoseconds view)
    return np.asarray(values.asi8)  # type: ignore[attr-defined]


def factorize(values: Any, *, sort: bool = False) -> tuple[np.ndarray, Any]:
    """``pd.factorize(values, sort=sort)``: int64 codes (-1 where missing) and the distinct
    non-missing values, in order of first appearance or sorted. ``values``: a pandas array or
    Series of text (or other hashable scalars).

    Up to :data:`SMALL` values the work is a dict look-up per value and the uniques are a
    list; codes and uniques are pandas' (tests/features/test_groups.py compares the paths)."""
    if isinstance(values, pd.Series):
        values = values.array
    if len(values) > SMALL:
        return pd.factorize(values, sort=sort)
    position: dict[Any, int] = {}
    codes = np.empty(len(values), dtype="int64")
    for i, v in enumerate(np.asarray(values, dtype=object).tolist()):
        # missing: None, pd.NA or NaN (a float unequal to itself); checked in that order
        # because ``pd.NA != pd.NA`` is NA, which has no truth value
        if v is None or v is pd.NA or v != v:
            codes[i] = -1
        else:
            codes[i] = position.setdefault(v, len(position))
    uniques = list(position)
    if sort and len(uniques) > 1:
        try:
            order = sorted(range(len(uniques)), key=uniques.__getitem__)
        except TypeError:  # values that Python cannot order (text and numbers): pandas' order
            return pd.factorize(values, sort=sort)
        uniques = [uniques[j] for j in order]
        new = np.empty(len(order) + 1, dtype="int64")
        new[order] = np.arange(len(order))
        new[-1] = -1  # code -1 (missing) stays -1
        codes = new[codes]
    return codes, uniques


def category_codes(values: pd.Series, categories: tuple[str, ...]) -> np.ndarray:
    """Position of each value in ``categories``; anything else is ``len(categories)`` (other)."""
    # Look up the few distinct values (a dict look-up each), not every row (millions of
    # strings); a pandas Index of the categories would be rebuilt on every call.
    codes, uniques = factorize(values.array)
    position = _positions(categories)
    other = len(categories)
    lut = np.fromiter(
        (position.get(str(u), other) for u in uniques), dtype="int64", count=len(uniques)
    )
    out: np.ndarray = np.append(lut, other)[codes]  # code -1 (missing): the appended ``other``
    return out


@functools.cache
def _positions(categories: tuple[str, ...]) -> dict[str, int]:
    return {c: i for i, c in enumerate(categories)}


class Groups:
    """The rows of one event table strictly before ``as_of``, grouped by customer.

    Parameters
    ----------
    events : an event table with ``customer_id`` and a tz-aware ``timestamp``; rows at or
        after ``as_of`` (and rows without a timestamp) are left out here, so every family
        reads only the past however it is called.
    as_of : the cutoff; :attr:`age_days` is measured back from it.

    Columns of the past rows are read through :meth:`array`, :meth:`values` and
    :meth:`codes`, which convert a column once (the whole column, then the past rows), so a
    one-customer request pays a few numpy calls per column rather than a pandas filter of
    the whole frame per family.
    """

    def __init__(self, events: pd.DataFrame, *, as_of: pd.Timestamp) -> None:
        self.as_of_ns: int = as_of.as_unit("ns").value
        ts = timestamps_ns(events["timestamp"])
        past = (ts < self.as_of_ns) & (ts != NAT_NS)
        self._events = events
        #: Positions of the past rows in ``events``, or ``None`` when every row is past.
        self._rows: np.ndarray | None = None if past.all() else np.flatnonzero(past)
        #: Event times as int64 nanoseconds since the epoch (UTC).
        self.ts_ns: np.ndarray = ts if self._rows is None else ts[self._rows]
        customer_ids = events["customer_id"].array
        if len(customer_ids) <= SMALL:  # a NumPy index of a few objects, not an Arrow take
            customer_ids = self.past(np.asarray(customer_ids, dtype=object))
        elif self._rows is not None:
            customer_ids = customer_ids.take(self._rows)
        codes, uniques = factorize(customer_ids)
        self.codes: np.ndarray = codes
        #: The customers, in order of first appearance (code ``i`` is ``keys[i]``): a list
        #: for a few rows, else a pandas array. :attr:`ids` is the same as an Index.
        self.keys: Any = uniques
        self.n = len(uniques)
        #: Age of each event in days before ``as_of`` (> 0 for every past row).
        self.age_days: np.ndarray = (self.as_of_ns - self.ts_ns) / NS_PER_DAY
        self._codes: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}
        self._windows: dict[tuple[float, float], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.ts_ns)

    @functools.cached_property
    def ids(self) -> pd.Index:
        """:attr:`keys` as an Index named ``customer_id`` (built on first use: ~60 us, a
        good share of a one-customer build that never needs it)."""
        ids: pd.Index = pd.Index(self.keys, name="customer_id", dtype="str")
        return ids

    def past(self, values: np.ndarray) -> np.ndarray:
        """The past rows of an array aligned with the table's rows."""
        return values if self._rows is None else values[self._rows]

    def array(self, column: str) -> Any:
        """The past rows of ``column`` as a pandas array (strings keep their dtype)."""
        values = self._events[column].array
        return values if self._rows is None else values.take(self._rows)

    def values(self, column: str) -> np.ndarray:
        """The past rows of a numeric ``column`` as float64, NaN where missing (all NaN when
        the table has no such column: an optional score nobody asked)."""
        if column not in self._events.columns:
            return np.full(len(self), np.nan)
        s = self._events[column]
        if not (pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype)):
            s = pd.to_numeric(s)
        return self.past(s.to_numpy("float64", na_value=np.nan))

    def is_false(self, column: str) -> np.ndarray:
        """Past rows whose ``column`` is ``False`` (missing, or no such column: not false)."""
        if column not in self._events.columns:
            return np.zeros(len(self), dtype=bool)
        s = self._events[column]
        if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
            false = s.to_numpy("float64", na_value=np.nan) == 0.0  # NaN (missing) is not
        else:
            false = s.eq(False).fillna(False).to_numpy(dtype=bool)
        return self.past(false)

    def codes_of(self, column: str, categories: tuple[str, ...]) -> np.ndarray:
        """Position of each past row's ``column`` value in ``categories``; anything else
        (or missing) is ``len(categories)``, the ``other`` bucket. Computed once per column
        and category list (interactions and engagement share the channel codes)."""
        key = (column, categories)
        if key not in self._codes:
            self._codes[key] = self.past(category_codes(self._events[column], categories))
        return self._codes[key]

    def window(self, days: float, *, older_than: float = 0.0) -> np.ndarray:
        """Mask of rows in ``[as_of - days, as_of - older_than)``: a trailing window.

        Computed once per window and shared (read-only): the families ask for the same few
        windows a dozen times, each a few NumPy calls, a share of a one-customer build."""
        key = (days, older_than)
        mask = self._windows.get(key)
        if mask is None:
            mask = (self.age_days <= days) & (self.age_days > older_than)
            mask.flags.writeable = False
            self._windows[key] = mask
        return mask

    def count(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Rows per customer (where ``mask``), as float."""
        codes = self.codes if mask is None else self.codes[mask]
        return np.bincount(codes, minlength=self.n).astype("float64")

    def sum(self, values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Sum of ``values`` per customer over non-missing values (where ``mask``)."""
        ok = ~np.isnan(values) if mask is None else mask & ~np.isnan(values)
        return np.bincount(self.codes[ok], weights=values[ok], minlength=self.n)

    def mean(self, values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Mean of non-missing ``values`` per customer (where ``mask``); NaN without any."""
        ok = ~np.isnan(values) if mask is None else mask & ~np.isnan(values)
        n = np.bincount(self.codes[ok], minlength=self.n)
        s = np.bincount(self.codes[ok], weights=values[ok], minlength=self.n)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, s / np.maximum(n, 1), np.nan)

    def min_age(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Days since the latest row per customer (where ``mask``); NaN without any."""
        out = np.full(self.n, np.inf)
        if mask is None:
            np.minimum.at(out, self.codes, self.age_days)
        else:
            np.minimum.at(out, self.codes[mask], self.age_days[mask])
        return np.where(np.isinf(out), np.nan, out)

    def max_age(self) -> np.ndarray:
        """Days since the earliest row per customer (every customer has one)."""
        out = np.zeros(self.n)
        np.maximum.at(out, self.codes, self.age_days)
        return out

    def last(self, values: np.ndarray) -> np.ndarray:
        """The latest non-missing value per customer (ties: the later row); NaN without any."""
        ok = np.flatnonzero(~np.isnan(values))
        codes, ts = self.codes[ok], self.ts_ns[ok]
        newest = np.full(self.n, np.iinfo("i8").min)
        np.maximum.at(newest, codes, ts)
        at_newest = ok[ts == newest[codes]]
        # Ties at the newest time: the later row in the table wins.
        row = np.full(self.n, -1)
        np.maximum.at(row, self.codes[at_newest], at_newest)
        has = row >= 0
        out = np.full(self.n, np.nan)
        out[has] = values[row[has]]
        return out


#: A family's features: name -> values aligned with its customers (float arrays, or a
#: categorical for a category feature such as ``nps_class``).
Columns = dict[str, Any]


def frame(groups: Groups, columns: Columns) -> pd.DataFrame:
    """Feature arrays aligned with ``groups.ids`` as a frame indexed by ``customer_id``."""
    return columns_frame(groups.ids, columns)


def columns_frame(ids: pd.Index, columns: Columns) -> pd.DataFrame:
    """``columns`` (float arrays and categoricals, aligned with ``ids``) as one frame."""
    return aligned_frame(ids, [(ids, columns)])


def _alignment(known: Any, ids: pd.Index, id_list: list[Any] | None) -> np.ndarray | None:
    """Position in ``known`` (an Index, or :attr:`Groups.keys`) of each of ``ids`` (-1: not
    there), or ``None`` when they are the same customers in the same order. ``id_list``:
    ``ids`` as a list when they are a few (dict look-ups then, no pandas Index built)."""
    if known is ids:
        return None
    if id_list is not None:
        keys = known.tolist() if isinstance(known, pd.Index) else list(known)
        if keys == id_list:
            return None
        where = {k: i for i, k in enumerate(keys)}
        return np.array([where.get(k, -1) for k in id_list], dtype="intp")
    if not isinstance(known, pd.Index):
        known = pd.Index(known, dtype="str")
    if len(known) == len(ids) and known.equals(ids):
        return None
    positions: np.ndarray = known.get_indexer(ids)
    return positions


def aligned_frame(
    ids: pd.Index,
    parts: list[tuple[Any, Columns]],
    *,
    zero: frozenset[str] = frozenset(),
    positions: list[np.ndarray] | None = None,
) -> pd.DataFrame:
    """One frame indexed by ``ids`` from feature columns aligned with other indexes.

    Each part is ``(known, columns)``: columns aligned with ``known`` (an Index, or a
    :attr:`Groups.keys`). A customer of ``ids``
    a part does not know gets NaN, or 0 in the columns named in ``zero`` (where NaN also
    becomes 0). Columns keep the parts' order. The float columns are written once, each
    straight into its row of one float64 block (pandas keeps blocks as columns x rows), and
    categoricals replace their placeholder rows: a frame built column by column, or by
    reindexing and concatenating parts, costs pandas' overhead per column (about a
    millisecond per hundred columns for one customer) and an extra copy of every value.
    ``positions``: each part's position in ``known`` of each of ``ids`` (-1: not there),
    when the caller has them (:func:`union_positions`).
    """
    names = [k for _, columns in parts for k in columns]
    # The float columns are the rows of one block, in frame order; the categoricals are blocks
    # of their own, placed by position (pandas.api.internals): a frame built from the float
    # block and then given each categorical by position splits the block at every one and
    # costs more than the rest of the frame for one customer.
    is_category = [isinstance(v, pd.Categorical) for _, columns in parts for v in columns.values()]
    float_at = [j for j, c in enumerate(is_category) if not c]
    row = {names[j]: r for r, j in enumerate(float_at)}
    block = np.empty((len(float_at), len(ids)))
    categoricals: dict[int, pd.Categorical] = {}
    id_list = ids.tolist() if len(ids) <= SMALL else None
    at = 0
    for i, (known, columns) in enumerate(parts):
        pos = _alignment(known, ids, id_list) if positions is None else positions[i]
        absent = None if pos is None else pos < 0
        for k, v in columns.items():
            at += 1
            if isinstance(v, pd.Categorical):
                categoricals[at - 1] = v if pos is None else v.take(pos, allow_fill=True)
                continue
            out = block[row[k]]
            if pos is None:
                out[:] = v
            elif len(known) == 0:
                out[:] = np.nan
            else:
                np.take(np.asarray(v, dtype="float64"), pos, out=out)
                out[absent] = np.nan
            if k in zero:
                out[np.isnan(out)] = 0.0
    if not names or _from_blocks is None:  # pandas < 3: a categorical at a time
        plain = pd.DataFrame(block.T, index=ids, columns=[names[j] for j in float_at], copy=False)
        for j, v in categoricals.items():
            plain.insert(j, names[j], pd.Series(v, index=ids))
        return plain
    blocks: list[tuple[Any, np.ndarray]] = []
    if float_at:
        blocks.append((block, np.asarray(float_at, dtype=np.intp)))
    blocks += [(v, np.array([j], dtype=np.intp)) for j, v in categoricals.items()]
    frame: pd.DataFrame = _from_blocks(blocks, index=ids, columns=column_labels(names))
    return frame


def column_labels(names: list[Any]) -> pd.Index:
    """The column labels of a frame built from a dict with the keys ``names`` (distinct), as
    ``pd.Index(names)`` makes them for text, built once per list of names: a table or a feature frame has the same columns call after
    call, and a text Index of them costs tens of microseconds (a hundred feature names: a
    good share of a one-customer build)."""
    labels: pd.Index = _labels(tuple(names), tuple(type(n) for n in names))
    return labels


@functools.lru_cache(maxsize=256)  # bounded: posted attribute names vary
def _labels(names: tuple[Any, ...], types: tuple[type, ...]) -> pd.Index:
    # ``types``: 1, 1.0 and True are one key of a dict but not one label. The labels of a
    # frame built from a dict, by building one (once per list of names).
    labels: pd.Index = pd.DataFrame({name: () for name in names}).columns
    return labels


def arrays_frame(arrays: list[Any], *, index: pd.Index, columns: pd.Index) -> pd.DataFrame:
    """A frame of 1-D ``arrays`` (one per column of ``columns``, each of ``len(index)`` and
    already of its final dtype: NumPy arrays, pandas extension arrays), taken as they are.

    Why: ``pd.DataFrame(dict)`` infers and checks every column and gathers columns of one
    dtype into a 2-D copy, tens of microseconds per column whatever the number of rows (most
    of validating a one-customer history); here each column is its own block, no copy, no
    inference. A NumPy object array stays object (``pd.DataFrame`` would infer text)."""
    if _from_blocks is None:  # pandas < 3
        kept = [
            pd.arrays.NumpyExtensionArray(a)
            if isinstance(a, np.ndarray) and a.dtype == object
            else a
            for a in arrays
        ]
        return pd.DataFrame(dict(zip(columns, kept, strict=True)), index=index, copy=False)
    blocks: list[tuple[Any, np.ndarray]] = []
    for j, a in enumerate(arrays):
        at = np.array([j], dtype=np.intp)
        if isinstance(a, pd.arrays.NumpyExtensionArray):
            a = a.to_numpy()  # NumPy values as read: a NumPy block, as ``pd.DataFrame`` makes
        if isinstance(a.dtype, np.dtype):  # a 2-D block of one row
            blocks.append((np.asarray(a).reshape(1, -1), at))
        else:
            blocks.append((a, at))
    frame: pd.DataFrame = _from_blocks(blocks, index=index, columns=columns)
    return frame


def union_positions(keys: list[Any], gone: pd.Index) -> tuple[pd.Index, list[np.ndarray]]:
    """The sorted union of the customers in ``keys`` (Indexes or :attr:`Groups.keys`) less
    ``gone``, named ``customer_id``, and for each of ``keys`` the position in it of each of
    those customers (-1: not there), as :func:`aligned_frame` takes them.

    Why: one factorize of all the keys (Arrow hashes the text) replaces a union, a sort and
    a hash look-up per part that go through Python strings: about 12 s less per feature
    build of a million customers, the same result."""
    known = [pd.Index(k, dtype="str") for k in keys]
    every = known[0].append(known[1:]).array
    codes, uniques = pd.factorize(every, sort=True)
    keep = ~np.asarray(uniques.isin(pd.Index(gone, dtype="str").array), dtype=bool)
    ids = pd.Index(uniques[keep], name="customer_id", dtype="str")
    new = np.where(keep, np.cumsum(keep) - 1, -1)
    out = []
    start = 0
    for k in known:
        target = new[codes[start : start + len(k)]]
        start += len(k)
        here = target >= 0
        pos = np.full(len(ids), -1, dtype="intp")
        pos[target[here]] = np.flatnonzero(here)
        out.append(pos)
    return ids, out
