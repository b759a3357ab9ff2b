"""The retention worklist: the at-risk order and the flat (CSV) form of a scored customer.

One implementation for the server's ``/v1/at-risk`` (JSON and CSV) and for ``make export`` /
``make notify`` on the training side, so a customer sits at the same place with the same
columns wherever a retention team reads the list.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from models.contract import SCORE_FIELDS, SEGMENT_FIELD


def rank_order(value_at_risk: np.ndarray, churn_probability: np.ndarray, ids: np.ndarray) -> Any:
    """Positions in worklist order: value at risk descending (unknown last), then churn
    probability descending, then customer id (a stable order for paging)."""
    var = np.asarray(value_at_risk, dtype=float)
    # np.lexsort sorts by the last key first; NaN value at risk goes after every number.
    return np.lexsort(
        (ids, -np.asarray(churn_probability, float), np.where(np.isnan(var), np.inf, -var))
    )


def csv_columns(attributes: Sequence[str]) -> list[str]:
    """The CSV header: the score fields, the segment, then the customer attributes."""
    return [*SCORE_FIELDS, SEGMENT_FIELD, *attributes]


def reasons_text(reasons: Sequence[Mapping[str, Any]]) -> str:
    """The reasons as one cell: each reason's words (``text`` or ``description``), ``; ``
    between them."""
    return "; ".join(
        str(r.get("text") or r.get("description") or r.get("feature")) for r in reasons
    )


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same number
    return value


def csv_cells(
    row: Mapping[str, Any], segment: str | None, attributes: Sequence[str | None]
) -> list[Any]:
    """One CSV line of :func:`csv_columns` for a scored customer ``row`` (as the API returns
    it): missing values empty, ``top_reasons`` as words."""
    cells = [
        reasons_text(row[f]) if f == "top_reasons" else _cell(row.get(f)) for f in SCORE_FIELDS
    ]
    return [*cells, _cell(segment), *(_cell(a) for a in attributes)]


def csv_chunks(
    header: Sequence[str], lines: Iterable[Sequence[Any]], *, every: int = 500
) -> Iterator[str]:
    """CSV text (RFC 4180, CRLF line ends) in pieces of ``every`` lines, for streaming."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for n, line in enumerate(lines, start=1):
        writer.writerow(line)
        if n % every == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
