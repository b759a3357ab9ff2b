"""Time helpers shared by the feature families, the labels and the commands. The point-in-time
cut itself (events strictly before ``as_of``) is made once per table by
:class:`features.groups.Groups`."""

from __future__ import annotations

import pandas as pd


def as_utc(ts: str | pd.Timestamp) -> pd.Timestamp:
    """A timestamp in UTC; naive timestamps are taken to be UTC (the input contract)."""
    t = pd.Timestamp(ts)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
