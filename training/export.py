"""``make export``: the latest snapshot's worklist as files a CRM imports.

Two files in the output folder (``CHURN_EXPORT_DIR``, ``make export OUT=...``), both in
worklist order (value at risk descending, :func:`models.worklist.rank_order`, the order of
``/v1/at-risk``):

- ``worklist.csv``: the columns of the CSV of ``/v1/at-risk`` (:func:`models.worklist.csv_columns`:
  every score field, ``top_reasons`` as words, the segment, the customer attributes);
- ``worklist.jsonl``: one JSON object per line, the scored customer as the API returns it
  (``top_reasons`` as a list) plus ``segment`` and an ``attributes`` object.

The snapshot is read through its sha256 check (:func:`models.history.read_verified`); each
file is written under a temporary name and renamed, so an importer never reads half a file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.contract import (
    ATTRIBUTES_KEY,
    PREVIOUS_AS_OF_KEY,
    SCORE_FIELDS,
    SEGMENT_FIELD,
)
from models.history import latest_folder, read_verified
from models.worklist import csv_cells, csv_chunks, csv_columns, rank_order
from training.config import TrainSettings

CSV_FILE = "worklist.csv"
JSONL_FILE = "worklist.jsonl"


@dataclass(frozen=True)
class Worklist:
    """The latest snapshot's customers in worklist order.

    Attributes
    ----------
    meta : the snapshot's ``snapshot.json``.
    rows : scored customers as the API returns them, in worklist order.
    segments, attributes : per row, the segment and the attribute values.
    attribute_names : the attribute columns.
    """

    meta: dict[str, Any]
    rows: list[dict[str, Any]]
    segments: list[str | None]
    attributes: list[tuple[str | None, ...]]
    attribute_names: tuple[str, ...]

    @property
    def previous_as_of(self) -> str | None:
        """``as_of`` of the snapshot ``change`` is measured against."""
        return self.meta.get(PREVIOUS_AS_OF_KEY)

    def select(self, min_change: float | None) -> Iterator[int]:
        """Row numbers in order; with ``min_change``, only customers whose churn
        probability rose by at least that much since the previous snapshot."""
        for i, row in enumerate(self.rows):
            if min_change is None or (row["change"] is not None and row["change"] >= min_change):
                yield i

    def record(self, i: int) -> dict[str, Any]:
        """Row ``i`` with its segment and attributes: a JSON Lines record, a webhook item."""
        attributes = dict(zip(self.attribute_names, self.attributes[i], strict=True))
        return {**self.rows[i], SEGMENT_FIELD: self.segments[i], "attributes": attributes}


def _value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def load_worklist(scores_dir: Path) -> Worklist:
    """The latest kept snapshot of ``scores_dir``, verified, in worklist order."""
    meta, table = read_verified(latest_folder(scores_dir))
    names = tuple(str(a) for a in meta.get(ATTRIBUTES_KEY) or [] if str(a) in table.column_names)
    n = table.num_rows
    # Columns a snapshot may lack (change fields before history was kept, the segment) are
    # read as null.
    columns = {
        f: table.column(f).to_pylist() if f in table.column_names else [None] * n
        for f in (*SCORE_FIELDS, SEGMENT_FIELD, *names)
    }
    var = np.array([np.nan if v is None else v for v in columns["value_at_risk"]], float)
    prob = np.array(columns["churn_probability"], float)
    order = rank_order(var, prob, np.array(columns["customer_id"], dtype=object))
    rows, segments, attributes = [], [], []
    for i in order:
        row = {f: _value(columns[f][i]) for f in SCORE_FIELDS}
        row["top_reasons"] = json.loads(row["top_reasons"])
        rows.append(row)
        segment = columns[SEGMENT_FIELD][i]
        segments.append(None if segment is None else str(segment))
        attributes.append(tuple(columns[a][i] for a in names))
    return Worklist(meta, rows, segments, attributes, names)


@dataclass(frozen=True)
class ExportResult:
    """What ``make export`` wrote."""

    csv: Path
    jsonl: Path
    rows: int
    as_of: str


def _write_atomically(path: Path, pieces: Iterator[str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        for piece in pieces:
            fh.write(piece)
    os.replace(tmp, path)


def export(settings: TrainSettings, out: Path, *, min_change: float | None = None) -> ExportResult:
    """Write the latest snapshot's worklist into ``out`` as CSV and JSON Lines (only the
    risers by ``min_change`` when given)."""
    worklist = load_worklist(settings.scores_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = list(worklist.select(min_change))
    lines = (
        csv_cells(worklist.rows[i], worklist.segments[i], worklist.attributes[i]) for i in chosen
    )
    _write_atomically(out / CSV_FILE, csv_chunks(csv_columns(worklist.attribute_names), lines))
    records = (
        json.dumps(worklist.record(i), ensure_ascii=False, allow_nan=False) + "\n" for i in chosen
    )
    _write_atomically(out / JSONL_FILE, records)
    return ExportResult(out / CSV_FILE, out / JSONL_FILE, len(chosen), str(worklist.meta["as_of"]))
