"""``make score``: score every customer with the champion and keep the scored snapshot.

The snapshot is what the server answers ``/v1/scores`` from. Each ``as_of`` gets its folder,
``<scores_dir>/history/<as_of>/`` with ``snapshot.parquet`` (one row per customer) and
``snapshot.json`` (model version, ``as_of``, row count, the Parquet file's sha256, which every
reader checks, and the ``as_of`` ``change`` is measured against); ``<scores_dir>/latest.json``
points at the newest. The folder is written under a temporary name and renamed, then the
pointer is replaced, so a reader never sees half a snapshot; the last ``keep_snapshots`` are
kept (layout: :mod:`models.history`). Rescoring an ``as_of`` replaces its folder; scoring an
older ``as_of`` than the newest kept adds it to the history without moving the pointer.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from features.build import build_features
from features.time import as_utc
from models.bundle import sha256_file
from models.contract import (
    ACTIVITY_FEATURES,
    ACTIVITY_FIELD,
    ATTRIBUTES_KEY,
    HISTORY_DIR,
    LATEST_FILE,
    PREVIOUS_AS_OF_KEY,
    RISK_BANDS,
    SCORE_FIELDS,
    SEGMENT_FIELD,
    SNAPSHOT_BANDS_KEY,
    SNAPSHOT_FILE,
    SNAPSHOT_META_FILE,
    SNAPSHOT_REFERENCE_KEY,
)
from models.distribution import BandRule, Reference
from models.drift import REFERENCE_KEY, SNAPSHOT_PROFILE_KEY, count_profile, table_profile
from models.history import SnapshotError, folder_name, kept_snapshots, read_verified
from models.scoring import score_population
from training import tracking
from training.config import TrainSettings
from training.frames import data_end
from training.io import LoadedTables, input_rows, load_inputs, quarantined_rows
from training.progress import Steps, progress, summary_line

log = logging.getLogger(__name__)

#: Customer attributes a snapshot carries by default (when the customers table has them):
#: what a retention team filters a worklist by, and nothing that identifies a person.
DEFAULT_ATTRIBUTES = ("plan", "region", "signup_date")


@dataclass(frozen=True)
class ScoreResult:
    """Where the snapshot went and what it holds."""

    path: Path
    rows: int
    as_of: pd.Timestamp
    model_version: str
    risk_bands: dict[str, int]
    #: ``as_of`` of the snapshot ``change`` is measured against (None: the first one).
    previous_as_of: str | None = None
    #: The line ``make score`` ends with (:func:`training.progress.summary_line`).
    summary: str = ""
    #: The MLflow run holding the steps' durations and peak RSS (None: not logged).
    run_id: str | None = None


def _iso(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def segments(customers: pd.DataFrame | None, column: str | None, ids: pd.Series) -> pd.Series:
    """Each scored customer's segment: ``column`` of the customers table (default
    ``segment``, else ``plan``), or missing."""
    if customers is None:
        return pd.Series(None, index=ids.index, dtype="object")
    column = column or next((c for c in ("segment", "plan") if c in customers.columns), None)
    if column is None:
        return pd.Series(None, index=ids.index, dtype="object")
    if column not in customers.columns:
        raise ValueError(f"segment column '{column}' is not in the customers table")
    values = customers.drop_duplicates("customer_id").set_index("customer_id")[column]
    mapped = ids.map(values.astype("string"))
    return mapped.astype("object").where(mapped.notna(), None)


def attribute_columns(customers: pd.DataFrame | None, setting: str | None) -> tuple[str, ...]:
    """The customer attributes to copy into the snapshot: the comma-separated ``setting``
    (each must be a column of the customers table), else those of :data:`DEFAULT_ATTRIBUTES`
    the table has."""
    columns = () if customers is None else tuple(customers.columns)
    if not setting:
        return tuple(c for c in DEFAULT_ATTRIBUTES if c in columns)
    names = tuple(n.strip() for n in setting.split(",") if n.strip())
    taken = {*SCORE_FIELDS, SEGMENT_FIELD, "customer_id"}
    for name in names:
        if name in taken:
            raise ValueError(
                f"CHURN_SNAPSHOT_ATTRIBUTES: '{name}' is a score field name; leave it out"
            )
        if name not in columns:
            raise ValueError(
                f"CHURN_SNAPSHOT_ATTRIBUTES: '{name}' is not a column of the customers table "
                f"({len(columns)} columns); name one of them or unset the setting"
            )
    return names


def _attribute_text(values: pd.Series) -> pd.Series:
    """An attribute as text (dates as ``YYYY-MM-DD``), missing as None."""
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(values):
        text = values.dt.strftime("%Y-%m-%d")
    else:
        text = values.astype("string")
    return text.astype("object").where(text.notna(), None)


def previous_scores(directory: Path, as_of: pd.Timestamp) -> tuple[str | None, pd.Series | None]:
    """The newest kept snapshot scored before ``as_of``: its ``as_of`` and its churn
    probabilities by customer id; ``(None, None)`` when there is none. A previous snapshot that
    fails its check is left out with one WARNING (``change`` is then null)."""
    older = [k for k in kept_snapshots(directory) if k.as_of < _iso(as_of)]
    if not older:
        return None, None
    try:
        _, table = read_verified(older[0].path, ["customer_id", "churn_probability"])
    except SnapshotError as exc:
        log.warning("previous snapshot not used, change left empty: %s", exc)
        return None, None
    frame = table.to_pandas()
    return older[0].as_of, frame.set_index("customer_id")["churn_probability"]


def snapshot_rows(
    scores: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    version: str,
    customers: pd.DataFrame | None,
    segment_column: str | None,
    previous: pd.Series | None = None,
    attributes: Sequence[str] = (),
    features: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """:func:`models.scoring.score_frame` output as snapshot rows (one per customer): the
    ``as_of``, the previous snapshot's churn probability (``previous``, by customer id) and
    the change since, reasons as JSON text, the model version, the segment, the customer
    ``attributes`` as text and, from the feature frame the scores came from (``features``,
    indexed by customer id), the recent activity as JSON text (:func:`activity_texts`).
    Per customer, so a distributed engine writes it per partition."""
    out = scores.reset_index()
    out.insert(1, "as_of", _iso(as_of))
    before = (
        out["customer_id"].map(previous).astype(float)
        if previous is not None
        else pd.Series(float("nan"), index=out.index)
    )
    at = list(out.columns).index("risk_band") + 1
    out.insert(at, "previous_churn_probability", before)
    out.insert(at + 1, "change", out["churn_probability"] - before)
    # one encoder for every row (``json.dumps`` with options builds one per call); the
    # reasons are plain lists of dicts, never circular
    encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
    out["top_reasons"] = [encode(r) for r in out["top_reasons"]]
    out["model_version"] = version
    out[SEGMENT_FIELD] = segments(customers, segment_column, out["customer_id"])
    out["risk_band"] = out["risk_band"].astype("str")
    if attributes and customers is not None:
        table = customers.drop_duplicates("customer_id").set_index("customer_id")
        for name in attributes:
            out[name] = _attribute_text(out["customer_id"].map(table[name]))
    if features is not None:
        out[ACTIVITY_FIELD] = activity_texts(features, out["customer_id"])
    # text or null in every partition (a partition of nulls alone would get a null type)
    out["p_alive_note"] = out["p_alive_note"].astype("string")
    out["status"] = out["status"].astype("str")
    return out


def activity_texts(features: pd.DataFrame, customer_ids: pd.Series) -> pd.Series:
    """Per customer (``customer_ids``, in their order), a JSON object of the
    :data:`models.contract.ACTIVITY_FEATURES` the feature frame holds for them (missing
    values left out; ``null`` text when none is known): what the workspace's customer page
    shows as recent activity, at the snapshot's ``as_of``, from the one feature build."""
    names = [n for n in ACTIVITY_FEATURES if n in features.columns]
    picked = features[names].reindex(pd.Index(customer_ids, name=features.index.name))
    # per column, each row's ``"name":value`` member (None: missing), joined per row
    members = [_json_members(name, picked[name]) for name in names]
    texts = (
        [
            "{" + ",".join(found) + "}" if (found := [m for m in row if m is not None]) else None
            for row in zip(*members, strict=True)
        ]
        if members
        else [None] * len(picked)
    )
    return pd.Series(texts, index=customer_ids.index, dtype="string")


def _json_members(name: str, values: pd.Series) -> list[str | None]:
    """Each value of ``values`` as the JSON object member ``"name":value`` (the text
    ``json.dumps`` gives it), None where it is missing (None, NaN, ``pd.NA``)."""
    key = json.dumps(name) + ":"
    if isinstance(values.dtype, np.dtype) and values.dtype.kind == "f":
        # json writes a float as float.__repr__, infinities as Infinity / -Infinity; each
        # distinct value (by its bits: -0.0 is not 0.0) written once
        floats = values.to_numpy(dtype=float)
        codes, distinct = pd.factorize(floats.view(np.int64))
        texts = [
            None if v != v else key + (repr(v) if math.isfinite(v) else json.dumps(v))
            for v in distinct.view(np.float64).tolist()
        ]
        found: list[str | None] = np.array(texts, dtype=object)[codes].tolist()
        return found
    out: list[str | None] = []
    for v in values.to_numpy(dtype=object):
        if v is None or (isinstance(v, float) and v != v) or v is pd.NA:
            out.append(None)
        else:
            out.append(key + json.dumps(v.item() if hasattr(v, "item") else v))
    return out


def _adopt_unkept(directory: Path) -> None:
    """Move a snapshot written before history was kept (``snapshot.parquet`` and
    ``snapshot.json`` directly in the scores folder) into the history, as the oldest entry."""
    meta_path = directory / SNAPSHOT_META_FILE
    if (directory / HISTORY_DIR).exists() or not meta_path.exists():
        return
    try:
        as_of = str(json.loads(meta_path.read_text())["as_of"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # unreadable: left where it is, and no longer served once history exists
    target = directory / HISTORY_DIR / folder_name(as_of)
    target.mkdir(parents=True)
    os.replace(directory / SNAPSHOT_FILE, target / SNAPSHOT_FILE)
    os.replace(meta_path, target / SNAPSHOT_META_FILE)


def monitoring_profile(
    meta: dict,
    frame: pd.DataFrame,
    loaded: LoadedTables,
    quarantined: dict[str, dict[str, int]],
    as_of: pd.Timestamp,
) -> dict:
    """The ``snapshot.json`` key ``make monitor`` reads drift from: the scored customers'
    feature values counted into the bins of the bundle's reference (``meta``, the bundle
    meta; nothing for a bundle trained before it had one) and the input tables' rows per
    day and quarantine rates (:mod:`models.drift`). Counts only: a few kilobytes."""
    reference = meta.get(REFERENCE_KEY)
    if not reference:
        return {}
    profile = count_profile(frame, reference)
    profile["tables"] = table_profile(
        loaded.tables,
        as_of=as_of,
        rows_in=loaded.rows_in,
        quarantined=quarantined,
        reference=reference.get("tables", {}),
    )
    return {SNAPSHOT_PROFILE_KEY: profile}


def band_rule(settings: TrainSettings) -> BandRule:
    """The risk-band rule of the settings (``risk_band_mode`` and shares)."""
    return BandRule(
        mode=settings.risk_band_mode,
        high_share=settings.risk_high_share,
        medium_share=settings.risk_medium_share,
    )


def reference_meta(reference: Reference, rule: BandRule, counts: dict[str, int]) -> dict:
    """The ``snapshot.json`` keys of the risk bands (mode, shares, thresholds, counts per
    band) and of the reference distribution ``/v1/predict`` places customers against."""
    bands = {
        "mode": rule.mode,
        "high_share": rule.high_share,
        "medium_share": rule.medium_share,
        "thresholds": dict(reference.thresholds),
        "counts": {band: int(counts.get(band, 0)) for band in RISK_BANDS},
    }
    return {SNAPSHOT_BANDS_KEY: bands, SNAPSHOT_REFERENCE_KEY: reference.to_dict()}


def publish_snapshot(
    write: Callable[[Path], int],
    directory: Path,
    *,
    as_of: pd.Timestamp,
    version: str,
    horizon_days: int,
    previous_as_of: str | None = None,
    attributes: Sequence[str] = (),
    keep: int = 12,
    clv_horizon_days: int | None = None,
    extra: dict | Callable[[], dict] | None = None,
) -> Path:
    """Keep a new snapshot in ``directory`` (the scores folder) and return its Parquet path.

    ``write(tmp_path)`` writes the Parquet file and returns its rows; its meta (sha256 of the
    bytes, ``previous_as_of``, the ``attributes`` columns) is written next to it in a hidden
    folder, which is then renamed to ``history/<as_of>``. When this ``as_of`` is the newest
    kept, ``latest.json`` is replaced to point at it. Snapshots beyond the ``keep`` newest
    are removed.
    """
    directory = Path(directory)
    history = directory / HISTORY_DIR
    _adopt_unkept(directory)
    history.mkdir(parents=True, exist_ok=True)
    iso = _iso(as_of)
    name = folder_name(iso)
    tmp = history / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    rows = write(tmp / SNAPSHOT_FILE)
    meta = {
        "model_version": version,
        "as_of": iso,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "rows": rows,
        "sha256": sha256_file(tmp / SNAPSHOT_FILE),
        "horizon_days": horizon_days,
        PREVIOUS_AS_OF_KEY: previous_as_of,
        ATTRIBUTES_KEY: list(attributes),
        # after ``write``: a caller counting rows per band while writing passes a callable
        **((extra() if callable(extra) else extra) or {}),
    }
    if clv_horizon_days is not None:  # optional key: the horizon of every row's clv
        meta["clv_horizon_days"] = clv_horizon_days
    (tmp / SNAPSHOT_META_FILE).write_text(json.dumps(meta, indent=2))
    final = history / name
    if final.exists():  # rescoring this as_of: swap the folders, then drop the old one
        old = history / f".old-{name}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    kept = kept_snapshots(directory)
    if kept and kept[0].as_of == iso:
        pointer = directory / f".{LATEST_FILE}.tmp"
        pointer.write_text(json.dumps({"path": f"{HISTORY_DIR}/{name}", "as_of": iso}))
        os.replace(pointer, directory / LATEST_FILE)
    for gone in kept[keep:]:
        shutil.rmtree(gone.path, ignore_errors=True)
    return final / SNAPSHOT_FILE


def publish_scored(
    write: Callable[[Path], int],
    settings: TrainSettings,
    as_of: pd.Timestamp,
    version: str,
    previous_as_of: str | None,
    attributes: Sequence[str],
    *,
    extra: dict | Callable[[], dict] | None = None,
) -> Path:
    """:func:`publish_snapshot` into ``settings.scores_dir`` with its horizon and retention:
    what both engines (local, Dask) call once their rows are scored; ``extra``: more
    ``snapshot.json`` keys (the risk bands and reference, :func:`reference_meta`)."""
    return publish_snapshot(
        write,
        settings.scores_dir,
        as_of=as_of,
        version=version,
        horizon_days=settings.horizon_days,
        clv_horizon_days=settings.clv_horizon_days,
        previous_as_of=previous_as_of,
        attributes=attributes,
        keep=settings.keep_snapshots,
        extra=extra,
    )


def score(settings: TrainSettings) -> ScoreResult:
    """Score the customers in ``settings.data_dir`` as of ``settings.as_of`` (default: end of
    data) with the champion, and write the snapshot atomically."""
    step = Steps()
    with step("load") as s:
        bundle, version = tracking.load_champion(settings)
        loaded, quarantined = load_inputs(settings)
        s.rows = input_rows(loaded)
    as_of = as_utc(settings.as_of) if settings.as_of else data_end(loaded.tables)
    with step("features") as s, progress("features", None, "customers"):
        frame = build_features(loaded.tables, as_of=as_of)
        s.rows = {"customers": len(frame)}
    with step("score") as s, progress("score", None, "customers"):
        rule = band_rule(settings)
        scores, reference = score_population(
            bundle, frame, rule=rule, clv_horizon_days=settings.clv_horizon_days
        )
        profile = monitoring_profile(bundle.meta, frame, loaded, quarantined, as_of)
        previous_as_of, previous = previous_scores(settings.scores_dir, as_of)
        attributes = attribute_columns(loaded.tables.customers, settings.snapshot_attributes)
        out = snapshot_rows(
            scores,
            as_of=as_of,
            version=version,
            customers=loaded.tables.customers,
            segment_column=settings.segment_column,
            previous=previous,
            attributes=attributes,
            features=frame,
        )
        del frame
        s.rows = {"customers scored": len(out)}

    def write(tmp: Path) -> int:
        out.to_parquet(tmp, index=False)
        return len(out)

    bands = {str(k): int(v) for k, v in out["risk_band"].value_counts().items()}
    with step("write"):
        path = publish_scored(
            write,
            settings,
            as_of,
            version,
            previous_as_of,
            attributes,
            extra={**reference_meta(reference, rule, bands), **profile},
        )
    line = summary_line(
        "score",
        step.elapsed,
        rows_in=loaded.rows_in,
        quarantined=quarantined_rows(loaded),
        customers=len(out),
        version=version,
    )
    log.info("%s", line)
    step.record({"time.total_s": step.elapsed, "rss.peak_gib": step.peak_gib})
    run_id = log_score_run(settings, step, version, as_of, path, len(out))
    return ScoreResult(path, len(out), as_of, version, bands, previous_as_of, line, run_id)


def log_score_run(
    settings: TrainSettings,
    step: Steps,
    version: str,
    as_of: pd.Timestamp,
    path: Path,
    customers: int,
) -> str | None:
    """Log a written snapshot's scoring as an MLflow run (:func:`training.tracking.scoring_run`):
    the ``time.<step>_s`` / ``rss.<step>_gib`` figures ``step`` kept, the customers scored,
    the ``as_of`` and snapshot path as tags; returns the run id. The snapshot is already
    published, so a tracking server that fails here costs the record, not the scores: one
    WARNING and ``None``."""
    try:
        tags = {"as_of": _iso(as_of), "snapshot": str(path)}
        with tracking.scoring_run(settings, model_version=version, tags=tags) as run:
            step.attach(run.metrics)
            run.metrics({"customers_scored": float(customers)})
            step.detach()
            return run.run_id
    except Exception as exc:  # any tracking failure: the scores stand
        step.detach()
        log.warning("scoring run not logged to MLflow (%s: %s)", type(exc).__name__, exc)
        return None
