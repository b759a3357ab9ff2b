"""Point-in-time helpers shared by every feature family and by the labels."""

from __future__ import annotations

import pandas as pd

DAY = pd.Timedelta(days=1)


def as_utc(ts: str | pd.Timestamp) -> pd.Timestamp:
    """A timestamp in UTC; naive timestamps are taken to be UTC (the input contract)."""
    t = pd.Timestamp(ts)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def events_before(events: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Rows whose ``timestamp`` is strictly before ``as_of``: all a feature may see."""
    return events.loc[events["timestamp"] < as_of]


def events_in_window(events: pd.DataFrame, as_of: pd.Timestamp, days: float) -> pd.DataFrame:
    """Rows in ``[as_of - days, as_of)``: the trailing window of a windowed feature."""
    ts = events["timestamp"]
    return events.loc[(ts >= as_of - pd.Timedelta(days=days)) & (ts < as_of)]


def days_between(earlier: pd.Series, later: pd.Timestamp | pd.Series) -> pd.Series:
    """Elapsed time in (fractional) days."""
    # pandas-stubs type a Timestamp minus a Series as Series[Any], not as timedeltas
    return (later - earlier) / DAY  # type: ignore[operator,no-any-return]
