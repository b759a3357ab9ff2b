"""The scored snapshot written by batch scoring (``make score``), held in memory for look-ups.

The scores folder keeps one snapshot per ``as_of`` (layout: :mod:`models.history`); the one
served is the newest, which ``latest.json`` names. Two files per snapshot:

- ``snapshot.json``: ``model_version``, ``as_of``, ``created_at``, ``rows``, ``horizon_days``
  and ``sha256``, the digest of the Parquet file's bytes; optionally ``previous_as_of`` (what
  ``change`` is measured against) and ``attributes`` (customer attribute columns),
  ``risk_bands`` (mode, thresholds and counts, shown in ``/v1/model``) and ``reference`` (the
  scored customers' distribution ``/v1/predict`` places customers against,
  models/distribution.py);
- ``snapshot.parquet``: one row per customer with the fields of a scored customer
  (:data:`models.contract.SCORE_FIELDS`, docs/http-api.md); ``top_reasons`` is a JSON array
  in a string column; ``previous_churn_probability`` and ``change`` may be absent (snapshots
  from before history was kept: null). An optional string column ``segment`` (a CRM segment)
  is read for the ``segment`` filter of ``/v1/at-risk``, and the attribute columns for its CSV.

The Parquet bytes are read once, checked against ``sha256`` and parsed from those same bytes,
so what is served is exactly what was verified. Every row is validated and turned into its
final JSON form at load time: answering a request is a dictionary look-up per id and a join
of ready bytes, with no pandas, pydantic or float formatting on the request path.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa

from models import contract
from models.contract import (
    ACTIVITY_FIELD,
    ATTRIBUTES_KEY,
    PREVIOUS_AS_OF_KEY,
    SCORE_FIELDS,
    SEGMENT_FIELD,
)
from models.distribution import Reference
from models.history import SnapshotError, latest_folder, read_verified

log = logging.getLogger(__name__)

# As sets, for the membership tests of every row.
_RISK_BANDS = frozenset(contract.RISK_BANDS)
_REASON_KEYS = frozenset(contract.REASON_KEYS)
_P_ALIVE_NOTES = frozenset(contract.P_ALIVE_NOTES)
_STATUSES = frozenset(contract.CUSTOMER_STATUSES)
_DIRECTIONS = frozenset(contract.REASON_DIRECTIONS)

__all__ = ["SCORE_FIELDS", "Snapshot", "SnapshotError", "load_snapshot", "scored_row"]


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


@dataclass(frozen=True)
class Snapshot:
    """A verified scored snapshot.

    Attributes
    ----------
    model_version, as_of, created_at, horizon_days, sha256 : from ``snapshot.json``.
    scores : customer id -> the scored customer, exactly as the API returns it.
    encoded : customer id -> the same, already encoded as compact JSON.
    segments : customer id -> segment, from the optional ``segment`` column (empty without it);
        used by the ``segment`` filter of ``/v1/at-risk``, not part of a scored customer.
    previous_as_of : ``as_of`` of the snapshot ``change`` is measured against, or None.
    attributes : names of the customer attribute columns (``snapshot.json``), and
    attribute_values : customer id -> their values (text or None), for the CSV of
        ``/v1/at-risk``; not part of a scored customer.
    activity : customer id -> their recent activity as the snapshot's JSON text (or None),
        for the workspace's customer page (``models.contract.ACTIVITY_FIELD``); parsed
        when shown, not part of a scored customer.
    path : the snapshot's folder.
    risk_bands : ``snapshot.json``'s ``risk_bands`` (mode, thresholds, counts), if any.
    reference : the scored customers' distribution (``/v1/predict`` percentiles), if any.
    """

    model_version: str
    as_of: str
    created_at: str
    horizon_days: int
    sha256: str
    scores: Mapping[str, dict[str, Any]]
    encoded: Mapping[str, bytes]
    segments: Mapping[str, str | None] = field(default_factory=dict)
    previous_as_of: str | None = None
    attributes: tuple[str, ...] = ()
    attribute_values: Mapping[str, tuple[str | None, ...]] = field(default_factory=dict)
    path: Path | None = None
    activity: Mapping[str, str | None] = field(default_factory=dict)
    risk_bands: Mapping[str, Any] | None = None
    reference: Reference | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def scores_json(self, customer_ids: Sequence[str]) -> bytes:
        """The ``/v1/scores`` response body for ``customer_ids``, in request order; an id not
        in the snapshot gets ``{"customer_id": ..., "error": "unknown_customer"}``."""
        found = self.encoded
        parts = [
            found.get(cid) or _json({"customer_id": cid, "error": "unknown_customer"})
            for cid in customer_ids
        ]
        return b"".join((b'{"results":[', b",".join(parts), self._scores_tail))

    @cached_property
    def _scores_tail(self) -> bytes:
        """What follows the results in every ``/v1/scores`` body."""
        return b'],"model_version":' + _json(self.model_version) + b"}"


def _check_bands(meta: dict[str, Any], path: Path) -> None:
    """``snapshot.json``'s optional ``risk_bands`` is well formed, or the snapshot is refused."""
    bands = meta.get(contract.SNAPSHOT_BANDS_KEY)
    if bands is not None and not _valid_bands(bands, meta["rows"]):
        raise SnapshotError(
            f"{path}: 'risk_bands' needs a mode, thresholds {{medium, high}} in [0, 1] and "
            f"counts per band adding up to 'rows'; re-run 'make score'"
        )


def _valid_bands(bands: Any, rows: int) -> bool:
    """Whether ``risk_bands`` of ``snapshot.json`` is well formed."""
    if not isinstance(bands, dict) or bands.get("mode") not in ("distribution", "fixed"):
        return False
    thresholds, counts = bands.get("thresholds"), bands.get("counts")
    if not isinstance(thresholds, dict) or not isinstance(counts, dict):
        return False
    if thresholds.keys() != {"medium", "high"} or counts.keys() != set(contract.RISK_BANDS):
        return False
    if not all(isinstance(t, int | float) and 0 <= t <= 1 for t in thresholds.values()):
        return False
    return (
        all(isinstance(c, int) and c >= 0 for c in counts.values()) and sum(counts.values()) == rows
    )


def _reference(meta: dict[str, Any], path: Path) -> Reference | None:
    data = meta.get(contract.SNAPSHOT_REFERENCE_KEY)
    if data is None:
        return None
    try:
        return Reference.from_dict(data)
    except ValueError as exc:
        raise SnapshotError(f"{path}: 'reference': {exc}; re-run 'make score'") from exc


def _optional_float(value: Any, field: str) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{field} is infinite")
    return number


def _reasons(text: Any) -> list[dict[str, Any]]:
    reasons = text if isinstance(text, list) else json.loads(text)
    if not isinstance(reasons, list) or not all(
        isinstance(r, dict)
        and r.keys() == _REASON_KEYS
        and r["direction"] in _DIRECTIONS
        and isinstance(r["text"], str)
        and isinstance(r["share"], int | float)
        and 0 <= r["share"] <= 1
        for r in reasons
    ):
        raise ValueError(
            "top_reasons is not a JSON array of {"
            + ", ".join(contract.REASON_KEYS)
            + "} with a direction raises/lowers and a share in [0, 1]"
        )
    return reasons


def scored_row(values: dict[str, Any]) -> dict[str, Any]:
    """One validated scored customer, in API field order."""
    customer_id = values["customer_id"]
    prob, band = values["churn_probability"], values["risk_band"]
    if not isinstance(customer_id, str) or not customer_id:
        raise ValueError("customer_id is empty")
    if prob is None or not 0.0 <= float(prob) <= 1.0:
        raise ValueError("churn_probability is missing or outside [0, 1]")
    if band not in _RISK_BANDS:
        raise ValueError(f"risk_band is not one of {list(contract.RISK_BANDS)}")
    status = values["status"]
    if status not in _STATUSES:
        raise ValueError(f"status is not one of {list(contract.CUSTOMER_STATUSES)}")
    pct = _optional_float(values["churn_percentile"], "churn_percentile")
    if pct is not None and not 0.0 <= pct <= 100.0:
        raise ValueError("churn_percentile is outside [0, 100]")
    row: dict[str, Any] = {
        "customer_id": customer_id,
        "as_of": str(values["as_of"]),
        "status": status,
        "churn_probability": float(prob),
        "churn_percentile": None if pct is None else round(pct, 1),
        "risk_band": band,
    }
    for name in contract.CHANGE_FIELDS:
        row[name] = _optional_float(values.get(name), name)
    for name in contract.OPTIONAL_SCORE_FIELDS:
        row[name] = _optional_float(values[name], name)
    row["p_alive_note"] = _p_alive_note(values["p_alive_note"], row["p_alive"])
    row["clv_horizon_days"] = _clv_horizon(values["clv_horizon_days"])
    row["top_reasons"] = _reasons(values["top_reasons"])
    row["model_version"] = str(values["model_version"])
    return {name: row[name] for name in SCORE_FIELDS}


def _p_alive_note(value: Any, p_alive: float | None) -> str | None:
    """A known reason code, given exactly when ``p_alive`` is null for that reason."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if value not in _P_ALIVE_NOTES:
        raise ValueError(f"p_alive_note is not one of {list(contract.P_ALIVE_NOTES)}")
    if p_alive is not None:
        raise ValueError("p_alive_note is set but p_alive is not null")
    return str(value)


def _clv_horizon(value: Any) -> int:
    if value is None or isinstance(value, bool) or float(value) != int(value) or int(value) < 1:
        raise ValueError("clv_horizon_days is missing or not a positive whole number of days")
    return int(value)


def _parse_rows(table: pa.Table, meta: dict[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    missing = [
        f for f in SCORE_FIELDS if f not in table.column_names and f not in contract.CHANGE_FIELDS
    ]
    if missing:
        raise SnapshotError(f"{path}: missing columns {missing}")
    if table.num_rows != meta["rows"]:
        raise SnapshotError(f"{path}: {table.num_rows} rows, snapshot.json says {meta['rows']}")
    absent = [None] * table.num_rows  # change fields of a snapshot from before history
    columns = {
        f: table.column(f).to_pylist() if f in table.column_names else absent for f in SCORE_FIELDS
    }
    version = str(meta["model_version"])
    scores: dict[str, dict[str, Any]] = {}
    for i in range(table.num_rows):
        try:
            row = scored_row({f: columns[f][i] for f in SCORE_FIELDS})
        except (TypeError, ValueError) as exc:
            raise SnapshotError(f"{path}: row {i}: {exc}") from exc
        if row["model_version"] != version:
            raise SnapshotError(
                f"{path}: row {i} is from model version {row['model_version']}, "
                f"snapshot.json says {version}"
            )
        if row["customer_id"] in scores:
            raise SnapshotError(f"{path}: row {i}: customer_id appears more than once")
        scores[row["customer_id"]] = row
    return scores


def _texts(table: pa.Table, name: str) -> list[str | None]:
    return [None if v is None else str(v) for v in table.column(name).to_pylist()]


def load_snapshot(scores_dir: Path, folder: Path | None = None) -> Snapshot:
    """Read, verify and index the latest snapshot of ``scores_dir`` (or the one in
    ``folder``).

    Raises
    ------
    SnapshotError
        when a file is missing or unreadable, the Parquet bytes differ from the recorded
        sha256, or a row breaks the format (the message names the file, row and field).
    """
    folder = folder or latest_folder(scores_dir)
    meta, table = read_verified(folder)
    path = folder / contract.SNAPSHOT_FILE
    _check_bands(meta, path)
    reference = _reference(meta, path)
    scores = _parse_rows(table, meta, path)
    encoded = {cid: _json(row) for cid, row in scores.items()}
    ids = table.column("customer_id").to_pylist()
    segments: dict[str, str | None] = {}
    if SEGMENT_FIELD in table.column_names:
        segments = dict(zip(ids, _texts(table, SEGMENT_FIELD), strict=True))
    named = meta.get(ATTRIBUTES_KEY) or []
    attributes = tuple(str(a) for a in named if str(a) in table.column_names)
    attribute_values: dict[str, tuple[str | None, ...]] = {}
    if attributes:
        values = [_texts(table, a) for a in attributes]
        attribute_values = dict(zip(ids, zip(*values, strict=True), strict=True))
    activity: dict[str, str | None] = {}
    if ACTIVITY_FIELD in table.column_names:
        activity = dict(zip(ids, _texts(table, ACTIVITY_FIELD), strict=True))
    log.info(
        "loaded snapshot of %d customers as of %s (model version %s)",
        len(scores),
        meta["as_of"],
        meta["model_version"],
    )
    previous = meta.get(PREVIOUS_AS_OF_KEY)
    return Snapshot(
        model_version=str(meta["model_version"]),
        as_of=str(meta["as_of"]),
        created_at=str(meta.get("created_at", "")),
        horizon_days=meta["horizon_days"],
        sha256=meta["sha256"],
        scores=scores,
        encoded=encoded,
        segments=segments,
        previous_as_of=None if previous is None else str(previous),
        attributes=attributes,
        attribute_values=attribute_values,
        path=folder,
        activity=activity,
        risk_bands=meta.get(contract.SNAPSHOT_BANDS_KEY),
        reference=reference,
    )
