"""Training frames at rolling cutoffs: features strictly before each cutoff, labels after it.

The validation cutoff is the latest one whose label window is complete (out of time); the
training cutoffs lie a whole horizon or more before it, so no training label window overlaps
the validation one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import pandas as pd

from features.build import build_features
from features.labels import churn_labels, label_source
from features.schema import Tables
from models.clv import CLVModel, CLVModelError
from models.clv_features import add_clv_features

log = logging.getLogger(__name__)
NON_FEATURES = ("churned", "cutoff")

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
        assert tables.labels is not None  # label_source checked it
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


def fit_clv_at_cutoff(frame: pd.DataFrame) -> CLVModel | None:
    """BG/NBD + Gamma-Gamma fitted on a feature frame's RFM columns, i.e. on purchases strictly
    before its cutoff; ``None`` when there are no transactions or too few to fit."""
    if "frequency" not in frame.columns:
        return None
    try:
        return CLVModel().fit(frame)
    except CLVModelError as exc:
        log.warning("no BG/NBD features at this cutoff: %s", exc)
        return None


def labelled_frame(tables: Tables, *, as_of: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
    """Point-in-time features at ``as_of`` (including BG/NBD outputs from a model fitted before
    ``as_of``) joined with the ``churned`` label and the cutoff; customers without a label
    (explicit-label data only) are left out."""
    frame = build_features(tables, as_of=as_of)
    return with_labels(
        tables, frame, fit_clv_at_cutoff(frame), as_of=as_of, horizon_days=horizon_days
    )


def with_labels(
    tables: Tables,
    frame: pd.DataFrame,
    clv: CLVModel | None,
    *,
    as_of: pd.Timestamp,
    horizon_days: int,
) -> pd.DataFrame:
    """The second half of :func:`labelled_frame`: BG/NBD outputs of ``clv`` (fitted on the
    whole population before ``as_of``) added to ``frame``, then the label and the cutoff.
    Per customer, so a distributed engine runs it per partition with a ``clv`` fitted once."""
    frame = add_clv_features(frame, clv, horizon_days=horizon_days)
    labels = churn_labels(tables, as_of=as_of, horizon_days=horizon_days, population=frame.index)
    frame = frame.assign(churned=labels, cutoff=as_of)
    return frame.loc[frame["churned"].notna()]


@dataclass(frozen=True)
class Frames:
    """Training rows (all training cutoffs) and the validation cutoff's customers, split in
    two halves by a stable hash of ``customer_id``: ``calibration`` (early stopping and
    probability calibration) and ``test`` (every reported metric and the promotion gate)."""

    train: pd.DataFrame
    calibration: pd.DataFrame
    test: pd.DataFrame

    @property
    def features(self) -> list[str]:
        return [c for c in self.train.columns if c not in NON_FEATURES]


def split_validation(valid: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Halves of the validation frame by a stable hash of the customer id (same split in
    every run, independent of row order)."""
    h = pd.util.hash_pandas_object(pd.Series(valid.index.astype("str")), index=False)
    to_test = h.to_numpy() % 2 == 1
    return valid.loc[~to_test], valid.loc[to_test]


def build_frames(tables: Tables, plan: CutoffPlan) -> Frames:
    """Labelled frames at every cutoff of ``plan``, with progress in the log."""
    parts = []
    for i, cutoff in enumerate((*plan.training, plan.validation), start=1):
        t0 = time.perf_counter()
        parts.append(labelled_frame(tables, as_of=cutoff, horizon_days=plan.horizon_days))
        log.info(
            "frame %d/%d at %s: %d customers (%.1f s)",
            i,
            len(plan.training) + 1,
            cutoff.date(),
            len(parts[-1]),
            time.perf_counter() - t0,
        )
    *train, valid = parts
    stacked = pd.concat(train)
    for col in valid.columns:
        if isinstance(valid[col].dtype, pd.CategoricalDtype):
            stacked[col] = stacked[col].astype("string").astype("category")
    calibration, test = split_validation(valid)
    return Frames(stacked, calibration, test)
