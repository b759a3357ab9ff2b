"""The point-in-time feature builder: one implementation for training, scoring and serving.

``build_features(tables, as_of=t)`` uses only events strictly before ``t``; each family
function filters its own table, so correctness does not depend on the caller. A customer's
features depend on that customer's rows alone, so the builder runs unchanged on any partition
of customers.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from features import engagement as eng
from features import interactions as inter
from features import surveys as surv
from features import transactions as tx
from features.customers import active_customers, customer_columns
from features.groups import Columns, Groups, aligned_frame, union_positions
from features.schema import Tables

#: Count features: a customer with no rows in a present table has a count of zero, not NaN.
ZERO_WHEN_ABSENT = frozenset(
    {
        tx.FREQUENCY,
        tx.PURCHASES_90,
        tx.PURCHASES_365,
        tx.SPEND_90,
        tx.SPEND_TOTAL,
        tx.REFUNDS_365,
        tx.REFUND_AMOUNT_365,
        tx.PURCHASES_TREND,
        tx.SPEND_TREND,
        *inter.COUNT_COLUMNS,
        *eng.ZERO_WHEN_ABSENT,
        surv.HIGH_COUNT,
        surv.ANSWERED,
    }
)

#: Above this many customer keys over the families, the population and the alignment come
#: from one factorize of all of them (:func:`features.groups.union_positions`).
LARGE = 10_000


def population(tables: Tables, *, as_of: pd.Timestamp) -> pd.Index:
    """Customers to describe at ``as_of``: active in the customers table (signed up, not
    churned), plus any customer with an event before ``as_of``, sorted by id."""
    ids: list[pd.Index] = []
    if tables.customers is not None:
        ids.append(active_customers(tables.customers, as_of=as_of))
    for events in (tables.transactions, tables.interactions, tables.surveys):
        if events is not None:
            ids.append(Groups(events, as_of=as_of).ids)
    if not ids:
        return pd.Index([], name="customer_id", dtype="str")
    out = ids[0].append(ids[1:]).unique().difference(churned_before(tables, as_of=as_of))
    population: pd.Index = pd.Index(out.sort_values(), name="customer_id")
    return population


def _family_parts(tables: Tables, *, as_of: pd.Timestamp) -> list[tuple[Any, Columns]]:
    """Each present family's features as arrays, with the customers it knows at ``as_of``
    (an Index, or :attr:`~features.groups.Groups.keys`).

    Each event table is grouped once (interactions feed two families)."""
    parts: list[tuple[Any, Columns]] = []
    if tables.customers is not None:
        parts.append(customer_columns(tables.customers, as_of=as_of))
    if tables.transactions is not None:
        g = Groups(tables.transactions, as_of=as_of)
        parts.append((g.keys, tx.transaction_columns(g)))
    if tables.interactions is not None:
        g = Groups(tables.interactions, as_of=as_of)
        parts.append((g.keys, inter.interaction_columns(g)))
        parts.append((g.keys, eng.engagement_columns(g)))
    if tables.surveys is not None:
        g, element = surv.survey_groups(tables.surveys, as_of=as_of)
        parts.append((g.keys, surv.survey_columns(g, element)))
    return parts


def churned_before(tables: Tables, *, as_of: pd.Timestamp) -> pd.Index:
    """Customers whose contractual ``churn_date`` is at or before ``as_of``: already gone, so
    never scored as at risk (the server can use this to flag posted histories)."""
    c = tables.customers
    if c is None or "churn_date" not in c.columns:
        return pd.Index([], dtype="str")
    gone: pd.Index = pd.Index(
        c.loc[(c["churn_date"] <= as_of).fillna(False).astype(bool), "customer_id"]
    )
    return gone


def build_features(
    tables: Tables, *, as_of: pd.Timestamp, customer_ids: pd.Index | None = None
) -> pd.DataFrame:
    """The feature frame at ``as_of``: one row per customer, indexed by ``customer_id``.

    Parameters
    ----------
    tables : validated input tables; an absent table contributes no features.
    as_of : the cutoff (UTC); only events strictly before it are read.
    customer_ids : the rows to return; default :func:`population` (customers already
        churned at ``as_of`` are not in it, so they are never scored as at risk).
    """
    parts = _family_parts(tables, as_of=as_of)
    if customer_ids is None and sum(len(p[0]) for p in parts) > LARGE:
        ids, positions = union_positions([p[0] for p in parts], churned_before(tables, as_of=as_of))
        return aligned_frame(ids, parts, zero=ZERO_WHEN_ABSENT, positions=positions)
    if customer_ids is None:
        # The population of :func:`population`, from the indexes the families already built.
        known = [p[0] if isinstance(p[0], pd.Index) else pd.Index(p[0], dtype="str") for p in parts]
        ids = known[0].append(known[1:]).unique() if known else pd.Index([], dtype="str")
        ids = ids.difference(churned_before(tables, as_of=as_of)).sort_values()
        ids = pd.Index(ids, name="customer_id", dtype="str")
    else:
        ids = (
            customer_ids.rename("customer_id")  # as pd.Index(..., name=...), without a copy
            if isinstance(customer_ids, pd.Index)
            else pd.Index(customer_ids, name="customer_id")
        )
    return aligned_frame(ids, parts, zero=ZERO_WHEN_ABSENT)
