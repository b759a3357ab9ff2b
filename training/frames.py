"""Training frames at rolling cutoffs: features strictly before each cutoff, labels after it.

The validation cutoff is the latest one whose label window is complete (out of time); the
training cutoffs lie a whole horizon or more before it, so no training label window overlaps
the validation one.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from features.build import build_features
from features.labels import churn_labels, label_source
from features.schema import Tables

DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class CutoffPlan:
    """When features are cut and labels read."""

    data_end: pd.Timestamp
    validation: pd.Timestamp
    training: tuple[pd.Timestamp, ...]
    horizon_days: int
    label_source: str


def data_end(tables: Tables) -> pd.Timestamp:
    """Midnight (UTC) after the newest event: the default scoring time and the end of data."""
    newest = [
        t["timestamp"].max()
        for t in (tables.transactions, tables.interactions, tables.surveys)
        if t is not None and len(t)
    ]
    if tables.labels is not None and len(tables.labels):
        newest.append(tables.labels["as_of"].max())
    if not newest:
        raise ValueError("no dated rows in any table")
    return max(newest).floor("D") + DAY


def plan_cutoffs(
    tables: Tables, *, horizon_days: int, n_training: int, spacing_days: int
) -> CutoffPlan:
    """Validation cutoff and training cutoffs for the tables at hand.

    With a ``labels`` table the cutoffs are its distinct ``as_of`` values (the latest
    validates); otherwise the validation cutoff is ``data_end - horizon`` and training
    cutoffs step back from ``validation - horizon`` by ``spacing_days``.
    """
    source = label_source(tables)
    end = data_end(tables)
    horizon = pd.Timedelta(days=horizon_days)
    if source == "labels":
        cuts = sorted(tables.labels["as_of"].unique())
        if len(cuts) < 2:
            raise ValueError("the labels table needs at least two as_of dates (train and validate)")
        return CutoffPlan(
            end,
            pd.Timestamp(cuts[-1]),
            tuple(pd.Timestamp(c) for c in cuts[:-1]),
            horizon_days,
            source,
        )
    validation = end - horizon
    first_event = min(
        t["timestamp"].min()
        for t in (tables.transactions, tables.interactions, tables.surveys)
        if t is not None and len(t)
    )
    training = tuple(
        c
        for k in range(n_training)
        if (c := validation - horizon - pd.Timedelta(days=k * spacing_days)) > first_event + horizon
    )
    if not training:
        raise ValueError(
            f"data span {first_event.date()}..{end.date()} is too short for a {horizon_days}-day "
            "horizon: need at least three horizons of history"
        )
    return CutoffPlan(end, validation, training[::-1], horizon_days, source)


def labelled_frame(tables: Tables, *, as_of: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
    """Features at ``as_of`` joined with the ``churned`` label and the cutoff; customers
    without a label (explicit-label data only) are left out."""
    frame = build_features(tables, as_of=as_of)
    labels = churn_labels(tables, as_of=as_of, horizon_days=horizon_days, population=frame.index)
    frame = frame.assign(churned=labels, cutoff=as_of)
    return frame.loc[frame["churned"].notna()]
