"""The point-in-time feature builder: one implementation for training, scoring and serving.

``build_features(tables, as_of=t)`` uses only events strictly before ``t``; each family
function filters its own table, so correctness does not depend on the caller. A customer's
features depend on that customer's rows alone, so the builder runs unchanged on any partition
of customers.
"""

from __future__ import annotations

import pandas as pd

from features import engagement as eng
from features import interactions as inter
from features import surveys as surv
from features import transactions as tx
from features.customers import active_customers, customer_features
from features.schema import Tables
from features.time import events_before

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


def population(tables: Tables, *, as_of: pd.Timestamp) -> pd.Index:
    """Customers to describe at ``as_of``: active in the customers table (signed up, not
    churned), plus any customer with an event before ``as_of``, sorted by id."""
    ids: list[pd.Index] = []
    if tables.customers is not None:
        ids.append(active_customers(tables.customers, as_of=as_of))
    for events in (tables.transactions, tables.interactions, tables.surveys):
        if events is not None:
            ids.append(pd.Index(events_before(events, as_of)["customer_id"].unique()))
    if not ids:
        return pd.Index([], name="customer_id", dtype="str")
    out = ids[0].append(ids[1:]).unique().difference(churned_before(tables, as_of=as_of))
    population: pd.Index = pd.Index(out.sort_values(), name="customer_id")
    return population


def _family_parts(tables: Tables, *, as_of: pd.Timestamp) -> list[pd.DataFrame]:
    """Each present family's features, indexed by the customers it knows at ``as_of``."""
    parts: list[pd.DataFrame] = []
    if tables.customers is not None:
        parts.append(customer_features(tables.customers, as_of=as_of))
    families = (
        (tables.transactions, tx.transaction_features),
        (tables.interactions, inter.interaction_features),
        (tables.interactions, eng.engagement_features),
        (tables.surveys, surv.survey_features),
    )
    for table, family in families:
        if table is not None:
            parts.append(family(table, as_of=as_of))
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
    if customer_ids is None:
        # The population of :func:`population`, from the indexes the families already built.
        known = [p.index for p in parts]
        ids = known[0].append(known[1:]).unique() if known else pd.Index([], dtype="str")
        ids = ids.difference(churned_before(tables, as_of=as_of)).sort_values()
        ids = pd.Index(ids, name="customer_id", dtype="str")
    else:
        ids = pd.Index(customer_ids, name="customer_id")
    aligned = [part.reindex(ids) for part in parts]
    frame = pd.concat(aligned, axis=1) if aligned else pd.DataFrame(index=ids)
    frame.index.name = "customer_id"
    for col in ZERO_WHEN_ABSENT.intersection(frame.columns):
        frame[col] = frame[col].fillna(0.0)
    return frame
