"""``/v1/at-risk``: customers of the snapshot ranked by value at risk, filtered and paged.

The ranking is built once per snapshot (when it is loaded), as columns in rank order, so a
page is a few vectorised comparisons and a slice: no sorting on the request path.
Value at risk is ``churn_probability * clv`` (docs/http-api.md); customers without a CLV
(no purchase history) have no value at risk and rank last, by churn probability. The
``status`` filter (docs/status.md) keeps lapsed customers off the worklist by default.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from serving.snapshot import Snapshot, _json


@dataclass(frozen=True)
class Page:
    """One page of the ranking and how many customers match the filters in all."""

    total: int
    encoded: list[bytes]


@dataclass(frozen=True)
class Ranking:
    """The snapshot's customers in descending value-at-risk order, as parallel columns."""

    ids: np.ndarray  # object: customer ids
    value_at_risk: np.ndarray  # float64, NaN when unknown
    clv: np.ndarray  # float64, NaN when unknown
    risk_band: np.ndarray  # object: low / medium / high
    segment: np.ndarray  # object: segment or None
    status: np.ndarray  # object: active / at_risk / lapsed
    encoded: tuple[bytes, ...]
    has_segments: bool

    @classmethod
    def build(cls, snapshot: Snapshot) -> Ranking:
        """Rank every customer of ``snapshot``: value at risk descending, unknown last, then
        churn probability descending, then customer id (a stable order for paging)."""
        rows = list(snapshot.scores.values())
        var = np.array(
            [np.nan if r["value_at_risk"] is None else r["value_at_risk"] for r in rows], float
        )
        prob = np.array([r["churn_probability"] for r in rows], float)
        ids = np.array([r["customer_id"] for r in rows], dtype=object)
        # np.lexsort sorts by the last key first; NaN value at risk goes after every number.
        order = np.lexsort((ids, -prob, np.where(np.isnan(var), np.inf, -var)))
        clv = np.array([np.nan if r["clv"] is None else r["clv"] for r in rows], float)
        band = np.array([r["risk_band"] for r in rows], dtype=object)
        seg = np.array([snapshot.segments.get(cid) for cid in ids], dtype=object)
        status = np.array([r["status"] for r in rows], dtype=object)
        return cls(
            ids=ids[order],
            value_at_risk=var[order],
            clv=clv[order],
            risk_band=band[order],
            segment=seg[order],
            status=status[order],
            encoded=tuple(snapshot.encoded[cid] for cid in ids[order]),
            has_segments=bool(snapshot.segments),
        )

    def page(
        self,
        *,
        limit: int,
        offset: int = 0,
        segment: str | None = None,
        min_clv: float | None = None,
        risk_band: str | None = None,
        statuses: Collection[str] | None = None,
    ) -> Page:
        """Customers ``offset`` to ``offset + limit`` of those matching every filter given
        (``statuses``: any of these customer statuses)."""
        mask = np.ones(len(self.ids), dtype=bool)
        if segment is not None:
            mask &= self.segment == segment
        if min_clv is not None:
            mask &= self.clv >= min_clv  # NaN compares False: no CLV, no match
        if risk_band is not None:
            mask &= self.risk_band == risk_band
        if statuses is not None:
            mask &= np.isin(self.status, list(statuses))
        positions = np.flatnonzero(mask)
        chosen = positions[offset : offset + limit]
        return Page(total=len(positions), encoded=[self.encoded[i] for i in chosen])


def page_json(page: Page, *, limit: int, offset: int, snapshot: Snapshot) -> bytes:
    """The ``/v1/at-risk`` response body."""
    head = _json(
        {
            "total": page.total,
            "limit": limit,
            "offset": offset,
            "as_of": snapshot.as_of,
            "model_version": snapshot.model_version,
        }
    )
    return b"".join((head[:-1], b',"results":[', b",".join(page.encoded), b"]}"))
