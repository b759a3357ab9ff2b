"""Time helpers shared by the feature families, the labels and the commands. The point-in-time
cut itself (events strictly before ``as_of``) is made once per table by
:class:`features.groups.Groups`."""

from __future__ import annotations

import pandas as pd

DAY = pd.Timedelta(days=1)


def as_utc(ts: str | pd.Timestamp) -> pd.Timestamp:
    """A timestamp in UTC; naive timestamps are taken to be UTC (the input contract)."""
    t = pd.Timestamp(ts)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def days_between(earlier: pd.Series, later: pd.Timestamp | pd.Series) -> pd.Series:
    """Elapsed time in (fractional) days."""
    # pandas-stubs type a Timestamp minus a Series as Series[Any], not as timedeltas
    return (later - earlier) / DAY  # type: ignore[operator,no-any-return]
