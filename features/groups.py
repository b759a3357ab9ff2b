"""Per-customer aggregation over integer codes: the vectorised core of every feature family.

Why: grouping millions of rows by a string ``customer_id`` again for every feature is what
makes a feature build slow. A table's past rows are factorised once into integer codes;
counts, sums and means are then ``np.bincount`` calls and latest values ``np.maximum.at``.
Each result is a numpy array aligned with :attr:`Groups.ids`, and every value is computed
from that customer's rows alone (no statistics across customers), so the builder runs
unchanged on any partition of customers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NS_PER_DAY = 86_400 * 10**9


class Groups:
    """The past rows of one event table, grouped by customer.

    Parameters
    ----------
    events : rows strictly before ``as_of`` (see :func:`features.time.events_before`), with
        ``customer_id`` and a tz-aware ``timestamp``.
    as_of : the cutoff; :attr:`age_days` is measured back from it.
    """

    def __init__(self, events: pd.DataFrame, *, as_of: pd.Timestamp) -> None:
        codes, uniques = pd.factorize(events["customer_id"], sort=False)
        self.codes: np.ndarray = codes
        self.ids = pd.Index(uniques, name="customer_id", dtype="str")
        self.n = len(self.ids)
        self.as_of_ns: int = as_of.as_unit("ns").value
        #: Event times as int64 nanoseconds since the epoch (UTC).
        self.ts_ns: np.ndarray = pd.DatetimeIndex(events["timestamp"]).as_unit("ns").asi8
        #: Age of each event in days before ``as_of`` (> 0 for every past row).
        self.age_days: np.ndarray = (self.as_of_ns - self.ts_ns) / NS_PER_DAY

    def window(self, days: float, *, older_than: float = 0.0) -> np.ndarray:
        """Mask of rows in ``[as_of - days, as_of - older_than)``: a trailing window."""
        return (self.age_days <= days) & (self.age_days > older_than)

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


def frame(groups: Groups, columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """Feature arrays aligned with ``groups.ids`` as a float frame indexed by ``customer_id``."""
    return pd.DataFrame(
        {k: np.asarray(v, dtype="float64") for k, v in columns.items()}, index=groups.ids
    )
