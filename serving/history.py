"""The kept snapshots' scores of the served customers: ``/v1/customers/{id}/history`` and the
``changed_since`` filter of ``/v1/at-risk``.

Loaded with the latest snapshot (at start and on every reload), not per request: each kept
snapshot is read once, sha256-verified like the latest (:func:`models.history.read_verified`),
and only four columns are kept, as numpy arrays aligned to the latest snapshot's customers
(NaN / -1 where a customer was not in that snapshot). Memory: 25 bytes per customer per kept
snapshot (three float64, one int8), so 20,000 customers x 12 snapshots take 6 MB and 1,000,000
x 12 take 300 MB, next to the latest snapshot's own rows; ``CHURN_KEEP_SNAPSHOTS`` bounds it.
Customers that are no longer in the latest snapshot have no history here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from models import contract
from models.history import SnapshotError, kept_snapshots, read_verified
from serving.snapshot import Snapshot, _json

log = logging.getLogger(__name__)

#: Columns of each kept snapshot the history holds.
HISTORY_COLUMNS = ("customer_id", "churn_probability", "risk_band", "clv", "value_at_risk")
_BANDS = np.array(contract.RISK_BANDS, dtype=object)


@dataclass(frozen=True)
class History:
    """The kept snapshots, newest first (the latest is entry 0), as columns per snapshot
    aligned to the latest snapshot's customers (``positions``)."""

    as_of: tuple[str, ...]
    model_versions: tuple[str, ...]
    positions: pd.Index  # customer ids of the latest snapshot, in its order
    churn_probability: np.ndarray  # (snapshots, customers) float64, NaN: not in that snapshot
    risk_band: np.ndarray  # (snapshots, customers) int8 index into RISK_BANDS, -1: absent
    clv: np.ndarray  # float64, NaN: unknown or absent
    value_at_risk: np.ndarray  # float64

    def baseline(self, on_or_before: str) -> int | None:
        """The newest kept snapshot older than the latest whose ``as_of`` date is on or before
        ``on_or_before`` (``YYYY-MM-DD``), or None."""
        for k in range(1, len(self.as_of)):
            if self.as_of[k][:10] <= on_or_before:
                return k
        return None

    def customer_json(self, customer_id: str) -> bytes | None:
        """``{"customer_id", "snapshots": [...]}`` newest first, the snapshots the customer
        is in; None when the latest snapshot does not hold the id."""
        entries = self.customer_entries(customer_id)
        if entries is None:
            return None
        return _json({"customer_id": customer_id, "snapshots": entries})

    def customer_entries(self, customer_id: str) -> list[dict[str, Any]] | None:
        """The customer's scores in each kept snapshot that holds them, newest first
        (``as_of``, ``model_version``, ``churn_probability``, ``risk_band``, ``clv``,
        ``value_at_risk``); None when the latest snapshot does not hold the id."""
        try:
            found = self.positions.get_loc(customer_id)
        except KeyError:
            return None
        i = int(found)  # type: ignore[arg-type]  # ids are unique: always one position
        entries: list[dict[str, Any]] = []
        for k, as_of in enumerate(self.as_of):
            prob = self.churn_probability[k, i]
            if np.isnan(prob):
                continue
            entries.append(
                {
                    "as_of": as_of,
                    "model_version": self.model_versions[k],
                    "churn_probability": float(prob),
                    "risk_band": str(_BANDS[self.risk_band[k, i]]),
                    "clv": _number(self.clv[k, i]),
                    "value_at_risk": _number(self.value_at_risk[k, i]),
                }
            )
        return entries


def _number(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _columns(table: Any, ids: pd.Index) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    frame = table.to_pandas()
    where = ids.get_indexer(frame["customer_id"])
    keep = where >= 0
    n = len(ids)
    out = []
    for name in ("churn_probability", "clv", "value_at_risk"):
        column = np.full(n, np.nan)
        column[where[keep]] = frame[name].to_numpy(dtype=float, na_value=np.nan)[keep]
        out.append(column)
    band = np.full(n, -1, dtype=np.int8)
    codes = pd.Categorical(frame["risk_band"], categories=list(contract.RISK_BANDS)).codes
    band[where[keep]] = codes[keep]
    return out[0], band, out[1], out[2]


def load_history(snapshot: Snapshot, scores_dir: Any, *, keep: int) -> History:
    """The latest ``snapshot`` and up to ``keep - 1`` older kept snapshots of ``scores_dir``.
    An older snapshot that fails its check is left out with one WARNING line."""
    ids = pd.Index(list(snapshot.scores), dtype=object)
    latest = list(snapshot.scores.values())
    first = (
        np.array([r["churn_probability"] for r in latest], float),
        np.array([contract.RISK_BANDS.index(r["risk_band"]) for r in latest], np.int8),
        np.array([np.nan if r["clv"] is None else r["clv"] for r in latest], float),
        np.array(
            [np.nan if r["value_at_risk"] is None else r["value_at_risk"] for r in latest], float
        ),
    )
    as_of, versions, columns = [snapshot.as_of], [snapshot.model_version], [first]
    for kept in kept_snapshots(scores_dir):
        if len(as_of) >= keep:
            break
        if kept.as_of >= snapshot.as_of:
            continue  # the latest itself
        try:
            meta, table = read_verified(kept.path, HISTORY_COLUMNS)
            columns.append(_columns(table, ids))
        except (SnapshotError, KeyError, ValueError) as exc:
            log.warning("kept snapshot left out of the history: %s", exc)
            continue
        as_of.append(kept.as_of)
        versions.append(str(meta["model_version"]))
    stacked = [np.vstack([c[j] for c in columns]) for j in range(4)]
    return History(tuple(as_of), tuple(versions), ids, *stacked)
