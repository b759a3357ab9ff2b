"""``/v1/at-risk``: customers of the snapshot ranked by value at risk, filtered and paged.

The ranking is built once per snapshot (when it is loaded), as columns in rank order, so a
page is a few vectorised comparisons and a slice: no sorting on the request path.
Value at risk is ``churn_probability * clv`` (docs/http-api.md); customers without a CLV
(no purchase history) have no value at risk and rank last, by churn probability (the order:
:func:`models.worklist.rank_order`, shared with ``make export``). The ``status`` filter
(docs/status.md) keeps lapsed customers off the worklist by default.

Risers: ``min_change`` keeps customers whose churn probability rose by at least that much
since the previous snapshot; with ``changed_since`` the change is measured against the kept
snapshot of that date (:class:`serving.history.History`), and the rows of the page are then
encoded with that baseline. The CSV form streams the same rows as lines of
:func:`models.worklist.csv_cells`, with the segment and the customer attributes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from models.worklist import csv_cells, csv_chunks, csv_columns, rank_order
from serving.snapshot import Snapshot, _json

#: Sort keys of :meth:`Ranking.page` -> the ranking column they order by.
SORT_KEYS = {
    "value_at_risk": "value_at_risk",
    "churn_probability": "churn_probability",
    "clv": "clv",
    "change": "change",
    "customer_id": "ids",
}


@dataclass(frozen=True)
class Page:
    """One page of the ranking and how many customers match the filters in all."""

    total: int
    encoded: list[bytes]
    #: Positions (into :attr:`Ranking.ids`) of the page's customers.
    positions: np.ndarray


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
    churn_probability: np.ndarray  # float64
    change: np.ndarray  # float64, NaN when unknown (new customer, first snapshot)
    order: np.ndarray  # int: rank -> position in the snapshot's customer order

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
        order = rank_order(var, prob, ids)
        change = np.array([np.nan if r["change"] is None else r["change"] for r in rows], float)
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
            churn_probability=prob[order],
            change=change[order],
            order=order,
        )

    def page(
        self,
        *,
        limit: int | None,
        offset: int = 0,
        segment: str | None = None,
        min_clv: float | None = None,
        risk_band: str | None = None,
        min_change: float | None = None,
        baseline: np.ndarray | None = None,
        statuses: Collection[str] | None = None,
        id_contains: str | None = None,
        exclude_ids: Collection[str] | None = None,
        sort: str | None = None,
        descending: bool = True,
    ) -> Page:
        """Customers ``offset`` to ``offset + limit`` of those matching every filter given
        (``limit`` None: all of them; ``statuses``: any of these customer statuses).
        ``baseline``: churn probabilities of an older snapshot in rank order; with it, a
        customer matches when the change since it is at least ``min_change`` (default: above
        0), else ``min_change`` applies to ``change``. ``id_contains``: customer ids holding
        this text (case-insensitive); ``exclude_ids``: leave these customers out (the
        workspace's "not yet contacted"). ``sort``: one of :data:`SORT_KEYS` (default: the
        ranking's own order, value at risk), unknown values last whichever the direction,
        ties in ranking order."""
        mask = np.ones(len(self.ids), dtype=bool)
        if segment is not None:
            mask &= self.segment == segment
        if min_clv is not None:
            mask &= self.clv >= min_clv  # NaN compares False: no CLV, no match
        if risk_band is not None:
            mask &= self.risk_band == risk_band
        if baseline is not None:
            change = self.churn_probability - baseline  # NaN (not in the baseline): no match
            mask &= change >= min_change if min_change is not None else change > 0
        elif min_change is not None:
            mask &= self.change >= min_change
        if statuses is not None:
            mask &= np.isin(self.status, list(statuses))
        if id_contains:
            needle = id_contains.casefold()
            mask &= np.fromiter((needle in i for i in self.folded_ids), bool, len(self.ids))
        if exclude_ids:
            # Set look-ups: np.isin on object arrays compares element by element.
            left_out = exclude_ids if isinstance(exclude_ids, set | frozenset) else set(exclude_ids)
            mask &= np.fromiter((i not in left_out for i in self.ids), bool, len(self.ids))
        positions = np.flatnonzero(mask)
        if sort is not None and (sort != "value_at_risk" or not descending):
            positions = self._sorted(positions, sort, descending)
        chosen = positions[offset:] if limit is None else positions[offset : offset + limit]
        return Page(
            total=len(positions), encoded=[self.encoded[i] for i in chosen], positions=chosen
        )

    @cached_property
    def folded_ids(self) -> list[str]:
        """The customer ids in rank order, case-folded (the id search), made once."""
        return [str(i).casefold() for i in self.ids]

    def _sorted(self, positions: np.ndarray, sort: str, descending: bool) -> np.ndarray:
        """``positions`` ordered by the column ``sort`` names (NaN last, ties by rank)."""
        if sort == "customer_id":
            keys = self.ids[positions].astype(str)
            order = np.argsort(keys, kind="stable")
            return positions[order[::-1] if descending else order]
        values = getattr(self, SORT_KEYS[sort])[positions].astype(float)
        signed = -values if descending else values
        # lexsort's last key sorts first: unknown values after every number, then the value.
        return positions[np.lexsort((positions, signed, np.isnan(values)))]

    def in_rank_order(self, values: np.ndarray) -> np.ndarray:
        """``values`` in the snapshot's customer order, rearranged to rank order."""
        return values[self.order]


def rebased_rows(
    page: Page, ranking: Ranking, snapshot: Snapshot, baseline: np.ndarray
) -> list[bytes]:
    """The page's customers with ``previous_churn_probability`` and ``change`` measured
    against ``baseline`` (rank order) instead of the previous snapshot."""
    out = []
    for i in page.positions:
        before = float(baseline[i])
        row = dict(snapshot.scores[ranking.ids[i]])
        row["previous_churn_probability"] = before
        row["change"] = row["churn_probability"] - before
        out.append(_json(row))
    return out


def page_csv(
    page: Page,
    ranking: Ranking,
    snapshot: Snapshot,
    baseline: np.ndarray | None = None,
) -> Iterator[str]:
    """The page as CSV text in pieces (:func:`models.worklist.csv_columns` header), for a
    streaming response; rows are formatted as they are sent, not held in memory."""
    empty: tuple[None, ...] = (None,) * len(snapshot.attributes)

    def lines() -> Iterator[list[object]]:
        for i in page.positions:
            cid = ranking.ids[i]
            row = snapshot.scores[cid]
            if baseline is not None:
                before = float(baseline[i])
                row = {**row, "previous_churn_probability": before}
                row["change"] = row["churn_probability"] - before
            yield csv_cells(row, ranking.segment[i], snapshot.attribute_values.get(cid, empty))

    return csv_chunks(csv_columns(snapshot.attributes), lines())


def page_json(
    page: Page,
    *,
    limit: int,
    offset: int,
    snapshot: Snapshot,
    baseline_as_of: str | None = None,
    rows: list[bytes] | None = None,
) -> bytes:
    """The ``/v1/at-risk`` response body; ``baseline_as_of`` is what ``change`` is measured
    against (the previous snapshot, or the ``changed_since`` one), ``rows`` replace the
    page's pre-encoded rows (rebased on that snapshot)."""
    head = _json(
        {
            "total": page.total,
            "limit": limit,
            "offset": offset,
            "as_of": snapshot.as_of,
            "baseline_as_of": baseline_as_of,
            "model_version": snapshot.model_version,
        }
    )
    body = page.encoded if rows is None else rows
    return b"".join((head[:-1], b',"results":[', b",".join(body), b"]}"))
