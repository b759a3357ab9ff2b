"""``CHURN_ENGINE=dask`` (``make train ENGINE=dask``): the same pipeline on a Dask cluster, for customer bases larger than one
machine's memory.

Nothing here computes a feature, a label or a score: the project's own functions
(:func:`features.build.build_features`, :func:`training.frames.with_labels`,
:func:`models.scoring.score_frame`, :func:`training.batch.snapshot_rows`) run unchanged on
one partition of customers at a time, which the point-in-time rule allows because a
customer's features depend on that customer's rows alone (docs/data-contract.md, "Time").

1. **stage**: each input table is read as a Dask DataFrame (a Parquet file, a folder of
   Parquet parts, or a CSV), shuffled by ``customer_id`` into the same number of partitions,
   so partition ``i`` of every table holds the same customers, validated per partition
   (:func:`features.validation.validate_table`; exact duplicates share a customer, hence a
   partition) and written as ``<dask_work_dir>/staged/<table>/part.<i>.parquet``. Bad rows
   are gathered (few by nature) and written to the quarantine like the local engine does.
2. **frames**: per cutoff, features per partition; the condensed (frequency, recency, T,
   spend) summary is gathered (:func:`models.clv.summary_counts`: bounded by distinct
   histories, not customers) and one CLV model fitted on it, exactly the local fit; then
   BG/NBD features and labels per partition. Category lists are unified across partitions.
3. **churn**: ``lightgbm.dask`` on the training cutoffs (data-parallel over the workers), with
   the same feature encoding, class weights and BG/NBD prior as :class:`ChurnModel` (as
   ``init_score``, :meth:`ChurnModel.prior_margin`); :meth:`ChurnModel.adopt_booster` then
   replays the local early-stopping rule on the calibration half; the result is a
   :class:`ChurnModel` saved as LightGBM text + JSON like any other.
4. **score**: features and scores per partition, written by the workers as Parquet parts,
   then streamed part by part into the one snapshot file the server reads.

MLflow logging, evaluation, the report and the promotion gate are
:func:`training.pipeline.train`'s own; this module supplies its engine steps.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from features.build import build_features
from features.model_outputs import EXPECTED_PURCHASES, P_ALIVE
from features.schema import Tables
from features.validation import (
    DEFAULT_CLOCK_SKEW,
    Validated,
    attribute_number_counts,
    numeric_attribute_columns,
    validate_table,
)
from models.churn import ChurnModel
from models.clv import summary_counts
from models.clv_evaluation import calibration_holdout
from models.scoring import score_frame, score_population
from training.batch import (
    ScoreResult,
    attribute_columns,
    band_rule,
    previous_scores,
    publish_scored,
    reference_meta,
    snapshot_rows,
)
from training.clv_fit import CLVFit, fit_clv_with_fallback
from training.config import TrainSettings
from training.frames import (
    NON_FEATURES,
    CutoffPlan,
    Frames,
    recast_categories,
    split_snapshot,
    split_validation,
    with_labels,
)
from training.io import (
    CSV_OPTIONS,
    LoadedTables,
    apply_column_map,
    check_table,
    reject_all_quarantined,
    resolve_column_map,
    table_sha256,
    unreadable,
    write_quarantine,
)
from training.sources import find_tables

log = logging.getLogger(__name__)
#: Customers per partition when ``dask_partitions`` is 0 (auto).
CUSTOMERS_PER_PARTITION = 100_000
#: Bounded sample of training rows the baselines and report see (the model sees them all).
BASELINE_ROWS = 200_000
#: Dask's shuffle: "p2p" streams through disk on the workers (memory bounded at any size).
SHUFFLE = "tasks"


@contextmanager
def dask_client(settings: TrainSettings) -> Iterator[Any]:
    """A client of ``settings.dask_scheduler``, or of a local cluster of
    ``settings.dask_workers`` single-threaded worker processes (closed on exit)."""
    import dask
    from distributed import Client, LocalCluster

    # Keep pandas' own string dtype: dask would turn text columns into pyarrow strings with
    # <NA>, and the frames would no longer equal the local engine's.
    dask.config.set({"dataframe.convert-string": False})
    if settings.dask_scheduler:
        with Client(settings.dask_scheduler) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=settings.dask_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # any free port: the default 8787 may be taken
            # the same string rule in the worker processes, set in their environment only
            env={"DASK_DATAFRAME__CONVERT_STRING": "False"},
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


# -- 1. stage ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Staged:
    """Validated tables as co-partitioned Parquet parts: ``paths[name] / part.<i>.parquet``."""

    paths: dict[str, Path]
    npartitions: int

    def tables(self, i: int) -> Tables:
        """Partition ``i`` of every table, as the pandas :class:`Tables` the features read."""
        return Tables(
            **{n: pd.read_parquet(p / f"part.{i}.parquet") for n, p in self.paths.items()}
        )


def _read_dask(path: Path):
    import dask.dataframe as dd

    if path.suffix == ".parquet":
        return dd.read_parquet(str(path))
    return dd.read_csv(str(path), **CSV_OPTIONS)


def _validated_part(
    raw: pd.DataFrame,
    name: str,
    now: pd.Timestamp | None = None,
    clock_skew: pd.Timedelta = DEFAULT_CLOCK_SKEW,
    numeric: frozenset[str] | None = None,
) -> Validated:
    """:func:`validate_table` on one partition; an empty partition is valid and empty (with
    the dtypes validation gives), not the whole-table error. ``numeric``: the customers'
    attribute columns read as numbers, decided on the whole table (:func:`_numeric_columns`),
    so every partition has the same dtypes."""
    if len(raw):
        return validate_table(name, raw, now=now, clock_skew=clock_skew, numeric_attributes=numeric)
    blank = raw.reindex([0])  # one all-missing row: quarantined, leaving typed empty columns
    clean = validate_table(
        name, blank, now=now, clock_skew=clock_skew, numeric_attributes=numeric
    ).clean
    return Validated(name, clean, raw.assign(reason=pd.Series(dtype="str")))


def _clean_part(raw: pd.DataFrame, name: str, *args: Any) -> pd.DataFrame:
    return _validated_part(raw.drop(columns="_key"), name, *args).clean


def _quarantine_part(raw: pd.DataFrame, name: str, *args: Any) -> pd.DataFrame:
    return _validated_part(raw.drop(columns="_key"), name, *args).quarantine


def _fields_part(raw: pd.DataFrame, name: str, *args: Any) -> pd.DataFrame:
    # row numbers count within the shuffled partition, not the file: blanked in stage_inputs
    return _validated_part(raw.drop(columns="_key"), name, *args).fields


def _numeric_columns(raw) -> frozenset[str]:
    """The customers' text attribute columns that validation reads as numbers, decided from
    counts gathered over every partition (:func:`features.validation.numeric_attribute_columns`),
    as the local engine decides on the whole table."""
    meta = attribute_number_counts(raw._meta)
    return numeric_attribute_columns(
        raw.map_partitions(attribute_number_counts, meta=meta).compute()
    )


def partitions_for(rows: int, settings: TrainSettings) -> int:
    """Partitions for a customers table of ``rows`` rows (or the setting)."""
    return settings.dask_partitions or max(2, -(-rows // CUSTOMERS_PER_PARTITION))


def stage_inputs(settings: TrainSettings) -> tuple[LoadedTables, Staged, dict[str, dict[str, int]]]:
    """Read, shuffle by customer, validate and stage every table of ``settings.data_dir``; write
    the quarantine. Returns what the pipeline logs (a :class:`LoadedTables` whose ``tables``
    are the extremes :func:`plan_tables` keeps), the staged parts and the quarantine counts.

    Raises
    ------
    DataError
        As the local engine: unreadable file, missing required column, empty table.
    """
    import dask
    import dask.dataframe as dd

    data_dir = Path(settings.data_dir)
    files, queried = find_tables(data_dir)  # sources.toml queries run here, then partitioned
    mapping, map_path = resolve_column_map(data_dir, settings.column_map)
    raws = {}
    for name, path in files.items():
        try:
            raw = (
                dd.from_pandas(queried[name].frame, chunksize=CUSTOMERS_PER_PARTITION)
                if name in queried
                else _read_dask(path)
            )
        except Exception as exc:
            raise unreadable(path, exc) from exc
        if name in mapping and map_path is not None:
            apply_column_map(raw._meta, mapping[name], path=path, map_path=map_path)
            raw = raw.rename(columns=mapping[name])
        check_table(name, raw._meta, path)
        raws[name] = (path, raw)
    rows = {n: int(r.shape[0].compute()) for n, (_, r) in raws.items()}
    for name, n in rows.items():
        path, raw = raws[name]
        check_table(name, raw._meta, path, rows=n)
    n_customers = rows.get("customers", max(rows.values()) // 10)
    npart = partitions_for(n_customers, settings)
    out = Path(settings.dask_work_dir) / "staged"
    shutil.rmtree(out, ignore_errors=True)
    writes, quarantines, fields, paths = [], {}, {}, {}
    now, skew = pd.Timestamp.now(tz="UTC"), pd.Timedelta(minutes=settings.clock_skew_minutes)
    for name, (_, raw) in raws.items():
        args = (name, now, skew, _numeric_columns(raw) if name == "customers" else None)
        # the validated id is the stripped text; hash that, so a padded id lands with its twin
        key = raw["customer_id"].astype("string").str.strip()
        shuffled = raw.assign(_key=key).shuffle("_key", npartitions=npart, shuffle_method=SHUFFLE)
        meta = _clean_part(raw._meta.assign(_key=pd.Series(dtype="string")), *args)
        clean = shuffled.map_partitions(_clean_part, *args, meta=meta)
        qmeta = raw._meta.assign(reason=pd.Series(dtype="str"))
        quarantines[name] = shuffled.map_partitions(_quarantine_part, *args, meta=qmeta)
        fmeta = Validated(name, meta, qmeta).fields
        fields[name] = shuffled.map_partitions(_fields_part, *args, meta=fmeta)
        paths[name] = out / name
        writes.append(clean.to_parquet(str(paths[name]), write_index=False, compute=False))
    *_, bad, blanked = dask.compute(*writes, quarantines, fields)
    staged = Staged(paths, npart)
    results: dict[str, Validated] = {}
    for name in raws:
        kept = dd.read_parquet(str(paths[name])).shape[0].compute()
        found = blanked[name].reset_index(drop=True).assign(row=pd.NA)
        where = queried[name].label if name in queried else raws[name][0]
        results[name] = reject_all_quarantined(
            where, _Counted(name, bad[name].reset_index(drop=True), int(kept), found)
        )
    loaded = LoadedTables(
        plan_tables(staged),
        results,
        files,
        {n: queried[n].sha256 if n in queried else table_sha256(p) for n, p in files.items()},
    )
    return loaded, staged, write_quarantine(loaded, settings.quarantine_dir)


@dataclass(frozen=True)
class _Counted(Validated):
    """A table validated on the cluster: the quarantined rows and the count of clean rows
    (which stay staged on disk)."""

    kept: int = 0
    numbered: ClassVar[bool] = False  # shuffled by customer: the input row is not known

    def __init__(
        self, table: str, quarantine: pd.DataFrame, kept: int, fields: pd.DataFrame
    ) -> None:
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "fields", fields)
        object.__setattr__(self, "clean", pd.DataFrame(index=pd.RangeIndex(kept)))
        object.__setattr__(self, "quarantine", quarantine)
        object.__setattr__(self, "kept", kept)


def _extremes(part: pd.DataFrame, name: str) -> pd.DataFrame:
    """The rows :func:`training.frames.plan_cutoffs` reads from a table: first and last event,
    a contractual churn date, every explicit-label ``as_of``."""
    if part.empty:
        return part
    keep: list[Any] = []  # index labels
    if "timestamp" in part.columns:
        keep += [part["timestamp"].idxmin(), part["timestamp"].idxmax()]
    if name == "customers" and "churn_date" in part.columns and part["churn_date"].notna().any():
        keep.append(part["churn_date"].first_valid_index())
    if name == "labels":
        return part.drop_duplicates("as_of")
    return part.loc[sorted(set(keep))] if keep else part.head(1)


def plan_tables(staged: Staged) -> Tables:
    """Small :class:`Tables` with the extreme rows of every staged table: what
    :func:`training.frames.plan_cutoffs` and :func:`features.labels.label_source` read, so the
    cutoffs are planned by the one implementation without loading the tables."""
    import dask.dataframe as dd

    out = {}
    for name, path in staged.paths.items():
        parts = dd.read_parquet(str(path)).map_partitions(_extremes, name)
        out[name] = _extremes(parts.compute().reset_index(drop=True), name).reset_index(drop=True)
    return Tables(**out)


# -- 2. frames ------------------------------------------------------------------------------


def _partition_map(staged: Staged, fn: Callable[..., pd.DataFrame], meta=None, **kwargs):
    """``fn(tables_of_partition_i, **kwargs)`` for every partition, as a Dask DataFrame."""
    import dask.dataframe as dd

    def apply(i: int) -> pd.DataFrame:
        return fn(staged.tables(i), **kwargs)

    if meta is None:
        meta = apply(0).iloc[:0]
    return dd.from_map(apply, range(staged.npartitions), meta=meta, enforce_metadata=False)


def _features(tables: Tables, *, as_of: pd.Timestamp) -> pd.DataFrame:
    return build_features(tables, as_of=as_of)


def _summary(tables: Tables, *, as_of: pd.Timestamp) -> pd.DataFrame:
    frame = build_features(tables, as_of=as_of)
    if "frequency" not in frame.columns:
        return pd.DataFrame()
    return summary_counts(frame)


def fit_clv_distributed(
    staged: Staged, *, as_of: pd.Timestamp, record_window: bool = False
) -> CLVFit | None:
    """The CLV model of all purchases before ``as_of``, fitted on the condensed summaries the
    partitions send, with the fallbacks of :func:`training.clv_fit.fit_clv_with_fallback`
    (equal to the local fit); ``None`` without transactions, as
    :func:`training.frames.fit_clv_at_cutoff`."""
    parts = _partition_map(staged, _summary, meta=pd.DataFrame(), as_of=as_of).compute()
    if parts.empty:
        return None
    where = "final model" if record_window else f"BG/NBD features at {as_of.date()}"
    return fit_clv_with_fallback(
        summary_counts(parts),
        weight_column="weight",
        as_of=as_of if record_window else None,
        where=where,
    )


def clv_holdout_distributed(
    staged: Staged, client, *, cutoff: pd.Timestamp, end: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`models.clv_evaluation.calibration_holdout` per partition, gathered: the
    calibration summary and holdout actuals are one small row per customer."""
    from dask import delayed

    def part(i: int) -> tuple[pd.DataFrame, pd.DataFrame] | None:
        tx = staged.tables(i).transactions
        return None if tx is None else calibration_holdout(tx, cutoff=cutoff, end=end)

    parts = [
        p
        for p in client.compute([delayed(part)(i) for i in range(staged.npartitions)], sync=True)
        if p is not None
    ]
    return pd.concat([s for s, _ in parts]), pd.concat([a for _, a in parts])


def _labelled(tables: Tables, *, as_of, horizon_days, clv) -> pd.DataFrame:
    frame = build_features(tables, as_of=as_of)
    return with_labels(tables, frame, clv, as_of=as_of, horizon_days=horizon_days)


def unify_categories(frame):
    """Categorical columns with one category list over all partitions (sorted, as pandas
    gives a whole column), so partition results concatenate into the local frame."""
    categorical = [c for c, t in frame.dtypes.items() if isinstance(t, pd.CategoricalDtype)]
    if not categorical:
        return frame
    import dask

    lists = dask.compute(
        *[
            frame[c].map_partitions(lambda s: pd.Series([tuple(s.cat.categories)]), meta=(c, "O"))
            for c in categorical
        ]
    )
    dtypes = {}
    for c, found in zip(categorical, lists, strict=True):
        kind = frame._meta[c].cat.categories.dtype
        distinct = set(found)
        # a fixed category list (the same in every partition) is kept in its order
        values = list(found.iloc[0]) if len(distinct) == 1 else sorted(set().union(*distinct))
        dtypes[c] = pd.CategoricalDtype(pd.Index(values, dtype=kind))

    def cast(part: pd.DataFrame) -> pd.DataFrame:
        return part.astype({c: t for c, t in dtypes.items()})

    meta = cast(frame._meta)
    return frame.map_partitions(cast, meta=meta)


def features_frame(staged: Staged, *, as_of: pd.Timestamp):
    """:func:`build_features` at ``as_of`` per partition, as one Dask DataFrame (index
    ``customer_id``, categories unified)."""
    return unify_categories(_partition_map(staged, _features, as_of=as_of))


@dataclass(frozen=True)
class DaskFrames(Frames):
    """:class:`Frames` whose ``train`` is a bounded sample (baselines, report) while the
    training rows stay on the cluster in ``train_all`` (the churn model's input)."""

    train_all: Any = None
    train_rows: int = 0


def build_frames_distributed(staged: Staged, plan: CutoffPlan) -> DaskFrames:
    """Labelled frames at every cutoff of ``plan`` as the local :func:`build_frames` builds
    them: training cutoffs stay distributed, the validation cutoff is gathered and split."""
    import dask.dataframe as dd

    parts = []
    fits: dict[str, str] = {}
    for cutoff in (*plan.training, plan.validation):
        fit = fit_clv_distributed(staged, as_of=cutoff)
        clv = None if fit is None else fit.model
        if fit is not None:
            fits[cutoff.date().isoformat()] = fit.describe()
        parts.append(
            _partition_map(staged, _labelled, as_of=cutoff, horizon_days=plan.horizon_days, clv=clv)
        )
        log.info("frame at %s planned (%d partitions)", cutoff.date(), staged.npartitions)
    *train, valid = parts
    valid = unify_categories(valid).compute().sort_index()
    valid = recast_categories(valid, like=valid)
    if plan.one_snapshot:  # one label snapshot: a random split, as the local engine does
        part, calibration, test = split_snapshot(valid)
        train_all = dd.from_pandas(part, npartitions=max(1, staged.npartitions))
        return DaskFrames(
            part, calibration, test, clv_fits=fits, train_all=train_all, train_rows=len(part)
        )
    train = unify_categories(dd.concat(train)).persist()
    calibration, test = split_validation(valid)
    rows = int(train.shape[0].compute())
    fraction = min(1.0, BASELINE_ROWS / max(rows, 1))
    sample = (
        train.sample(frac=fraction, random_state=0).compute() if fraction < 1 else train.compute()
    )
    return DaskFrames(sample, calibration, test, clv_fits=fits, train_all=train, train_rows=rows)


# -- 3. churn -------------------------------------------------------------------------------


def fit_churn_distributed(
    frames: DaskFrames, settings: TrainSettings, client
) -> tuple[ChurnModel, dict[str, float]]:
    """``lightgbm.dask`` on every training row, with :class:`ChurnModel`'s own decisions (see
    the module docstring); calibrated on the calibration half like the local fit."""
    from lightgbm.dask import DaskLGBMClassifier

    train = frames.train_all
    x = [c for c in train.columns if c not in NON_FEATURES]
    churn = ChurnModel(params={"seed": settings.seed})
    y = train["churned"].astype("int64")
    share = float(client.compute(y.mean(), sync=True))
    params = churn.start_fit(train[x].dtypes, positive_share=share)
    if churn.uses_prior:
        # the prior is a two-input logistic regression: its three columns fit on the driver
        cols = train[[P_ALIVE, EXPECTED_PURCHASES, "churned"]].compute()
        churn.fit_prior(
            cols[P_ALIVE].to_numpy("float64", na_value=np.nan),
            cols[EXPECTED_PURCHASES].to_numpy("float64", na_value=np.nan),
            cols["churned"].to_numpy("float64"),
        )
    features = churn.features_

    def encode(part: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(churn.encode(part), columns=features, index=part.index)

    def prior(part: pd.DataFrame) -> pd.Series:
        margin = churn.prior_margin(part)
        return pd.Series(0.0 if margin is None else margin, index=part.index, dtype="float64")

    X = train[x].map_partitions(
        encode, meta=pd.DataFrame({f: pd.Series(dtype="float64") for f in features})
    )
    init = train[x].map_partitions(prior, meta=pd.Series(dtype="float64"))
    lgb_params = {k: v for k, v in params.items() if k not in ("num_threads", "seed", "objective")}
    model = DaskLGBMClassifier(
        client=client,
        n_estimators=churn.num_boost_round,
        random_state=params["seed"],
        **lgb_params,
    )
    with warnings.catch_warnings():
        # the scikit-learn wrapper always passes n_jobs; lightgbm.dask replaces it with each
        # worker's thread count and says so
        warnings.filterwarnings("ignore", "Parameter n_jobs will be ignored", UserWarning)
        model.fit(X, y, init_score=init, categorical_feature=list(churn.categories_))
    calibration = frames.calibration
    churn.adopt_booster(
        model.booster_, calibration[x], calibration["churned"].to_numpy(dtype=float)
    )
    losses = churn.calibrate(calibration[x], calibration["churned"].astype(int))
    return churn, losses


# -- 4. score -------------------------------------------------------------------------------


def _scored(
    tables: Tables, *, as_of, bundle, version, settings, previous, attributes, reference
) -> pd.DataFrame:
    frame = build_features(tables, as_of=as_of)
    scores = score_frame(
        bundle, frame, clv_horizon_days=settings.clv_horizon_days, reference=reference
    )
    return snapshot_rows(
        scores,
        as_of=as_of,
        version=version,
        customers=tables.customers,
        segment_column=settings.segment_column,
        previous=previous,
        attributes=attributes,
        features=frame,
    )


def score_distributed(
    staged: Staged, bundle, version: str, settings: TrainSettings, *, as_of: pd.Timestamp
) -> ScoreResult:
    """Score every customer per partition; the workers write Parquet parts to
    ``<dask_work_dir>/scores``, which are then streamed into the snapshot file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts_dir = Path(settings.dask_work_dir) / "scores"
    shutil.rmtree(parts_dir, ignore_errors=True)
    previous_as_of, previous = previous_scores(settings.scores_dir, as_of)
    attributes = attribute_columns(staged.tables(0).customers, settings.snapshot_attributes)
    # Percentiles and bands need one reference for all partitions: the first partition's
    # customers (about 100,000 by default; docs/http-api.md, "Relative risk").
    rule = band_rule(settings)
    _, reference = score_population(
        bundle,
        build_features(staged.tables(0), as_of=as_of),
        rule=rule,
        clv_horizon_days=settings.clv_horizon_days,
    )
    kwargs = {
        "as_of": as_of,
        "bundle": bundle,
        "version": version,
        "settings": settings,
        "previous": previous,
        "attributes": attributes,
        "reference": reference,
    }
    first = _scored(staged.tables(0), **kwargs)  # the schema: text columns stay text
    scored = _partition_map(staged, _scored, meta=first.iloc[:0], **kwargs)
    schema = pa.Schema.from_pandas(first, preserve_index=False)
    scored.to_parquet(str(parts_dir), write_index=False, schema=schema)
    files = sorted(parts_dir.glob("part.*.parquet"), key=lambda p: int(p.stem.split(".")[1]))
    rows, bands = 0, dict[str, int]()

    def write(tmp: Path) -> int:
        nonlocal rows
        schema = pq.read_schema(files[0])
        with pq.ParquetWriter(tmp, schema) as writer:
            for f in files:
                table = pq.read_table(f, schema=schema)
                rows += table.num_rows
                for k, v in table.column("risk_band").to_pandas().value_counts().items():
                    bands[str(k)] = bands.get(str(k), 0) + int(v)
                writer.write_table(table)
        return rows

    path = publish_scored(
        write,
        settings,
        as_of,
        version,
        previous_as_of,
        attributes,
        extra=lambda: reference_meta(reference, rule, bands),
    )
    return ScoreResult(path, rows, as_of, version, bands, previous_as_of)
