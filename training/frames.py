"""Training frames at rolling cutoffs: features strictly before each cutoff, labels after it.

The validation cutoff is the latest one whose label window is complete (out of time); the
training cutoffs lie a whole horizon or more before it, so no training label window overlaps
the validation one.

A ``labels`` table with a single ``as_of`` (a CRM export with a churn flag) has no second
cutoff to validate on: its customers are split at random instead -- stratified by label, by a
stable hash of ``customer_id`` -- into train, calibration and test parts
(:data:`SNAPSHOT_SPLIT`), and the run says so (:data:`RANDOM_SPLIT`): such a validation does
not show how the model ages.

Label problems that leave nothing to learn from (no usable label, one class only) stop the run
with one :class:`training.io.DataError` line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from features.build import build_features
from features.labels import churn_labels, label_source
from features.schema import Tables
from models.clv import CLVModel
from models.clv_features import COLUMNS as CLV_FEATURES
from models.clv_features import add_clv_features
from training.clv_fit import CLVFit, fit_clv_with_fallback
from training.io import DataError
from training.progress import progress

log = logging.getLogger(__name__)
NON_FEATURES = ("churned", "cutoff")

DAY = pd.Timedelta(days=1)
#: Shares of train, calibration and test when one label snapshot is split at random.
SNAPSHOT_SPLIT = (0.6, 0.2, 0.2)
OUT_OF_TIME = "out of time: training cutoffs before the validation cutoff"
RANDOM_SPLIT = "random split, one snapshot: not out of time"


@dataclass(frozen=True)
class CutoffPlan:
    """When features are cut and labels read."""

    data_end: pd.Timestamp
    validation: pd.Timestamp
    training: tuple[pd.Timestamp, ...]
    horizon_days: int
    label_source: str

    @property
    def one_snapshot(self) -> bool:
        """One label snapshot: train, calibration and test are a random split of it."""
        return not self.training

    @property
    def validation_kind(self) -> str:
        """How the model is validated, as the report and MLflow state it."""
        return RANDOM_SPLIT if self.one_snapshot else OUT_OF_TIME


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


def _require_labels(tables: Tables, quarantine: Mapping[str, Mapping[str, int]] | None) -> None:
    """A labels table that is present but has no usable row is fatal: learning churn from
    another source instead would silently ignore the user's labels."""
    if tables.labels is None or len(tables.labels):
        return
    reasons = dict((quarantine or {}).get("labels", {}))
    found = ", ".join(f"{r} {n:,}" for r, n in sorted(reasons.items(), key=lambda x: -x[1]))
    raise DataError(
        f"labels table: column 'churned': no usable label: 0 of {sum(reasons.values()):,} rows "
        f"kept ({found or 'the table is empty'}); every row needs a customer_id, an as_of date "
        "and churned as true/false, 1/0 or yes/no (rows set aside are in the quarantine folder)"
    )


def plan_cutoffs(
    tables: Tables,
    *,
    horizon_days: int,
    n_training: int,
    spacing_days: int,
    quarantine: Mapping[str, Mapping[str, int]] | None = None,
) -> CutoffPlan:
    """Validation cutoff and training cutoffs for the tables at hand.

    With a ``labels`` table the cutoffs are its distinct ``as_of`` values (the latest
    validates; with a single one there are no training cutoffs and the snapshot is split at
    random, :func:`split_snapshot`); otherwise the validation cutoff is ``data_end - horizon``
    and training cutoffs step back from ``validation - horizon`` by ``spacing_days``.
    ``quarantine`` (rows set aside per table and reason) words the error for a labels table
    with no usable row.

    Raises
    ------
    DataError
        A labels table is present but none of its rows is usable.
    """
    _require_labels(tables, quarantine)
    source = label_source(tables)
    end = data_end(tables)
    horizon = pd.Timedelta(days=horizon_days)
    if source == "labels":
        assert tables.labels is not None  # label_source checked it
        cuts = sorted(tables.labels["as_of"].unique())
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


def fit_clv_at_cutoff(frame: pd.DataFrame, *, where: str = "") -> CLVFit | None:
    """The CLV model of a feature frame's RFM columns, i.e. of purchases strictly before its
    cutoff, with the fallbacks of :mod:`training.clv_fit` (``fit.model`` is ``None`` when
    nothing fits); ``None`` without transaction features."""
    if "frequency" not in frame.columns:
        return None
    return fit_clv_with_fallback(frame, where=where)


def _clv_model(fit: CLVFit | None) -> CLVModel | None:
    # per-cutoff fits are BTYD ones (the contractual model has no cutoffs)
    return fit.model if fit is not None and isinstance(fit.model, CLVModel) else None


def labelled_frame(tables: Tables, *, as_of: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
    """Point-in-time features at ``as_of`` (including BG/NBD outputs from a model fitted before
    ``as_of``) joined with the ``churned`` label and the cutoff; customers without a label
    (explicit-label data only) are left out."""
    return _labelled(tables, as_of=as_of, horizon_days=horizon_days)[0]


def _labelled(
    tables: Tables, *, as_of: pd.Timestamp, horizon_days: int
) -> tuple[pd.DataFrame, CLVFit | None]:
    frame = build_features(tables, as_of=as_of)
    fit = fit_clv_at_cutoff(frame, where=f"BG/NBD features at {as_of.date()}")
    labelled = with_labels(tables, frame, _clv_model(fit), as_of=as_of, horizon_days=horizon_days)
    return labelled, fit


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
    probability calibration) and ``test`` (every reported metric and the promotion gate).
    With one label snapshot the three are a stratified random split of its customers
    (:func:`split_snapshot`). ``clv_fits``: per cutoff (ISO date), the CLV model behind its
    BG/NBD features (:meth:`training.clv_fit.CLVFit.describe`)."""

    train: pd.DataFrame
    calibration: pd.DataFrame
    test: pd.DataFrame
    clv_fits: dict[str, str] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        return [c for c in self.train.columns if c not in NON_FEATURES]


def _hash_unit(index: pd.Index) -> np.ndarray:
    """A stable number in [0, 1) per customer id (the same in every run and row order)."""
    h = pd.util.hash_pandas_object(pd.Series(index.astype("str")), index=False).to_numpy()
    return h.astype(np.float64) / 2.0**64


def split_validation(valid: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Halves of the validation frame by a stable hash of the customer id (same split in
    every run, independent of row order)."""
    h = pd.util.hash_pandas_object(pd.Series(valid.index.astype("str")), index=False)
    to_test = h.to_numpy() % 2 == 1
    return valid.loc[~to_test], valid.loc[to_test]


def split_snapshot(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Train, calibration and test parts of one labelled snapshot, :data:`SNAPSHOT_SPLIT` of
    each class: within a class, customers ordered by a stable hash of the id (ties by the id)
    and cut at the shares' cumulative sums, so the churn rate is the same in every part and
    the split the same in every run, whatever the row order. Each part gets at least one
    customer of a class that has three or more."""
    part = np.zeros(len(frame), dtype=np.int8)
    u = _hash_unit(frame.index)
    ids = frame.index.astype("str").to_numpy()
    y = frame["churned"].to_numpy()
    for value in pd.unique(y):
        members = np.flatnonzero(y == value)
        order = members[np.lexsort((ids[members], u[members]))]
        n = len(order)
        first = round(SNAPSHOT_SPLIT[0] * n)
        second = round((SNAPSHOT_SPLIT[0] + SNAPSHOT_SPLIT[1]) * n)
        if n >= 3:
            first = min(max(first, 1), n - 2)
            second = min(max(second, first + 1), n - 1)
        part[order[first:second]] = 1
        part[order[second:]] = 2
    return frame.loc[part == 0], frame.loc[part == 1], frame.loc[part == 2]


def recast_categories(frame: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every column that is categorical in ``like`` re-cast to the categories
    its values take (sorted, as pandas gives a text column): frames stacked over cutoffs or
    partitions have different category lists, which concatenation turns into plain text."""
    columns = [c for c in like.columns if isinstance(like[c].dtype, pd.CategoricalDtype)]
    return frame.assign(**{c: frame[c].astype("string").astype("category") for c in columns})


def build_frames(tables: Tables, plan: CutoffPlan) -> Frames:
    """Labelled frames at every cutoff of ``plan``, with progress in the log."""
    parts = []
    fits: dict[str, str] = {}
    cutoffs = (*plan.training, plan.validation)
    with progress("frames", len(cutoffs), "cutoffs") as bar:
        for i, cutoff in enumerate(cutoffs, start=1):
            t0 = time.perf_counter()
            frame, fit = _labelled(tables, as_of=cutoff, horizon_days=plan.horizon_days)
            parts.append(frame)
            if fit is not None:
                fits[cutoff.date().isoformat()] = fit.describe()
            log.info(
                "frame %d/%d at %s: %s customers (%.1f s)",
                i,
                len(cutoffs),
                cutoff.date(),
                f"{len(parts[-1]):,}",
                time.perf_counter() - t0,
            )
            bar.advance()
    *train, valid = parts
    if plan.one_snapshot:
        return Frames(*split_snapshot(valid), clv_fits=fits)
    stacked = recast_categories(pd.concat(train), like=valid)
    calibration, test = split_validation(valid)
    return Frames(stacked, calibration, test, clv_fits=fits)


def without_clv_features(frames: Frames) -> Frames:
    """``frames`` without the BG/NBD feature columns (and on the Dask engine, without them
    in the distributed training rows too): the churn model is then trained without them."""

    def drop(frame):
        return frame.drop(columns=[c for c in CLV_FEATURES if c in frame.columns])

    changes = {n: drop(getattr(frames, n)) for n in ("train", "calibration", "test")}
    train_all = getattr(frames, "train_all", None)  # the Dask engine's distributed rows
    if train_all is not None:
        changes["train_all"] = drop(train_all)
    return replace(frames, **changes)


def _label_origin(plan: CutoffPlan) -> tuple[str, dict[int, str]]:
    """Where ``plan``'s labels come from, as an error names it, and the fix when every label
    is churned (1) or none is (0)."""
    h = f"{plan.horizon_days} days"
    if plan.label_source == "labels":
        return "labels table: column 'churned'", {
            1: "add the customers who stayed, with churned = 0",
            0: "add the customers who left, with churned = 1",
        }
    if plan.label_source == "contractual":
        return f"customers table: column 'churn_date' (churned = a churn_date within {h})", {
            1: "label only customers still active at a cutoff, or set a shorter horizon",
            0: "check churn_date, set a longer horizon (--horizon) or give a labels table",
        }
    return f"transactions table (churned = no purchase within {h} after a cutoff)", {
        1: "check the transaction timestamps, set a longer horizon (--horizon) or give labels",
        0: "set a shorter horizon (--horizon) or give a labels table",
    }


def check_frames(tables: Tables, plan: CutoffPlan, frames: Frames) -> None:
    """Stop with one line when the frames cannot train and test a classifier.

    Raises
    ------
    DataError
        No labelled customer is known at its cutoff (explicit labels whose ids match no
        customer, or customers signed up after ``as_of``); every label is one class; or the
        train, calibration or test part has one class only (too few of the rarer class).
    """
    origin, fixes = _label_origin(plan)
    sampled = getattr(frames, "train_rows", len(frames.train)) != len(frames.train)
    parts = {"calibration": frames.calibration, "test": frames.test}
    if not sampled:  # the Dask engine keeps a sample of the training rows here
        parts = {"train": frames.train, **parts}
    rows = getattr(frames, "train_rows", len(frames.train)) + len(frames.calibration)
    rows += len(frames.test)
    if (
        plan.label_source == "labels"
        and tables.labels is not None
        and len(frames.calibration) + len(frames.test) == 0
    ):
        labelled = tables.labels.loc[tables.labels["as_of"] == plan.validation, "customer_id"]
        known = 0 if tables.customers is None else tables.customers["customer_id"].nunique()
        common = 0
        if tables.customers is not None:
            common = int(labelled.drop_duplicates().isin(tables.customers["customer_id"]).sum())
        raise DataError(
            f"labels table: column 'customer_id': no usable label: none of the "
            f"{labelled.nunique():,} customers labelled "
            f"at {plan.validation.date()} has features then ({known:,} ids in the customers "
            f"table, {common:,} in common); use the same customer_id in labels as in the other "
            "tables, and label only customers who signed up before as_of"
        )
    counts = pd.concat([p["churned"] for p in parts.values()]).astype(int).value_counts()
    if counts.sum() == 0:
        raise DataError(
            f"{origin}: no usable label: no customer is known at the validation cutoff "
            f"{plan.validation.date()}; check the timestamps and the horizon (--horizon)"
        )
    if len(counts) < 2:
        value = int(counts.index[0])
        raise DataError(
            f"{origin}: one class only: all {rows:,} labelled rows are churned = {value} "
            f"(validation {plan.validation.date()}); the churn model needs churned and "
            f"retained customers: {fixes[value]}"
        )
    for name, part in parts.items():
        present = part["churned"].astype(int).value_counts()
        if len(present) < 2:
            rare = int(counts.idxmin())
            raise DataError(
                f"{origin}: the {name} part has one class only ({len(part):,} rows); "
                f"{int(counts.min()):,} of {int(counts.sum()):,} labelled rows are churned = "
                f"{rare}: too few to train, calibrate and test; {fixes[1 - rare]}"
            )
