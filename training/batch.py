"""``make score``: score every customer with the champion and write the scored snapshot.

The snapshot is what the server answers ``/v1/scores`` from:
``<scores_dir>/snapshot.parquet`` (one row per customer) and ``<scores_dir>/snapshot.json``
(model version, ``as_of``, row count and the Parquet file's sha256, which the server checks).
Both are written to temporary names and renamed, so a reader never sees half a snapshot.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from features.build import build_features
from features.time import as_utc
from models.bundle import sha256_file
from models.contract import SEGMENT_FIELD, SNAPSHOT_FILE, SNAPSHOT_META_FILE
from models.scoring import score_frame
from training import tracking
from training.config import TrainSettings
from training.frames import data_end
from training.io import input_rows, load_inputs, quarantined_rows
from training.progress import Steps, progress, summary_line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreResult:
    """Where the snapshot went and what it holds."""

    path: Path
    rows: int
    as_of: pd.Timestamp
    model_version: str
    risk_bands: dict[str, int]
    #: The line ``make score`` ends with (:func:`training.progress.summary_line`).
    summary: str = ""


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


def snapshot_rows(
    scores: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    version: str,
    customers: pd.DataFrame | None,
    segment_column: str | None,
) -> pd.DataFrame:
    """:func:`models.scoring.score_frame` output as snapshot rows (one per customer): the
    ``as_of``, reasons as JSON text, the model version and the segment. Per customer, so a
    distributed engine writes it per partition."""
    out = scores.reset_index()
    out.insert(1, "as_of", _iso(as_of))
    out["top_reasons"] = [json.dumps(r, separators=(",", ":")) for r in out["top_reasons"]]
    out["model_version"] = version
    out[SEGMENT_FIELD] = segments(customers, segment_column, out["customer_id"])
    out["risk_band"] = out["risk_band"].astype("str")
    return out


def publish_snapshot(
    write: Callable[[Path], int],
    directory: Path,
    *,
    as_of: pd.Timestamp,
    version: str,
    horizon_days: int,
) -> Path:
    """Write the snapshot with ``write(tmp_path)`` (returns the rows written), then its meta (sha256 of the bytes), and
    rename both into place, so a reader never sees half a snapshot."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{SNAPSHOT_FILE}.tmp"
    rows = write(tmp)
    meta = {
        "model_version": version,
        "as_of": _iso(as_of),
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "rows": rows,
        "sha256": sha256_file(tmp),
        "horizon_days": horizon_days,
    }
    tmp_meta = directory / f".{SNAPSHOT_META_FILE}.tmp"
    tmp_meta.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, directory / SNAPSHOT_FILE)
    os.replace(tmp_meta, directory / SNAPSHOT_META_FILE)
    return directory / SNAPSHOT_FILE


def score(settings: TrainSettings) -> ScoreResult:
    """Score the customers in ``settings.data_dir`` as of ``settings.as_of`` (default: end of
    data) with the champion, and write the snapshot atomically."""
    step = Steps()
    with step("load") as s:
        bundle, version = tracking.load_champion(settings)
        loaded, _ = load_inputs(settings)
        s.rows = input_rows(loaded)
    as_of = as_utc(settings.as_of) if settings.as_of else data_end(loaded.tables)
    with step("features") as s, progress("features", None, "customers"):
        frame = build_features(loaded.tables, as_of=as_of)
        s.rows = {"customers": len(frame)}
    with step("score") as s, progress("score", None, "customers"):
        scores = score_frame(bundle, frame, horizon_days=settings.horizon_days)
        del frame
        out = snapshot_rows(
            scores,
            as_of=as_of,
            version=version,
            customers=loaded.tables.customers,
            segment_column=settings.segment_column,
        )
        s.rows = {"customers scored": len(out)}

    def write(tmp: Path) -> int:
        out.to_parquet(tmp, index=False)
        return len(out)

    with step("write"):
        path = publish_snapshot(
            write,
            settings.scores_dir,
            as_of=as_of,
            version=version,
            horizon_days=settings.horizon_days,
        )
    bands = {str(k): int(v) for k, v in out["risk_band"].value_counts().items()}
    line = summary_line(
        "score",
        step.elapsed,
        rows_in=loaded.rows_in,
        quarantined=quarantined_rows(loaded),
        customers=len(out),
        version=version,
    )
    log.info("%s", line)
    return ScoreResult(path, len(out), as_of, version, bands, line)
