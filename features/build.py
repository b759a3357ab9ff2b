"""The point-in-time feature builder: one implementation for training, scoring and serving.

``build_features(tables, as_of=t)`` uses only events strictly before ``t``; each family
function filters its own table, so correctness does not depend on the caller. A customer's
features depend on that customer's rows alone, so the builder runs unchanged on any partition
of customers.
"""

from __future__ import annotations

import pandas as pd

from features import interactions as inter
from features import surveys as surv
from features import transactions as tx
from features.customers import customer_features
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
        inter.COUNT_90,
        inter.COMPLAINTS_90,
        inter.UNRESOLVED_90,
        surv.HIGH_COUNT,
        surv.ANSWERED,
    }
)


def population(tables: Tables, *, as_of: pd.Timestamp) -> pd.Index:
    """Customers to describe at ``as_of``: active in the customers table (signed up, not
    churned), plus any customer with an event before ``as_of``, sorted by id."""
    ids: list[pd.Index] = []
    churned_before = pd.Index([], dtype="str")
    if tables.customers is not None:
        c = customer_features(tables.customers, as_of=as_of)
        ids.append(c.index)
        if "churn_date" in tables.customers.columns:
            gone = tables.customers["churn_date"] <= as_of
            churned_before = pd.Index(
                tables.customers.loc[gone.fillna(False).astype(bool), "customer_id"]
            )
    for events in (tables.transactions, tables.interactions, tables.surveys):
        if events is not None:
            ids.append(pd.Index(events_before(events, as_of)["customer_id"].unique()))
    if not ids:
        return pd.Index([], name="customer_id", dtype="str")
    out = ids[0].append(ids[1:]).unique().difference(churned_before)
    return pd.Index(out.sort_values(), name="customer_id")


def build_features(
    tables: Tables, *, as_of: pd.Timestamp, customer_ids: pd.Index | None = None
) -> pd.DataFrame:
    """The feature frame at ``as_of``: one row per customer, indexed by ``customer_id``.

    Parameters
    ----------
    tables : validated input tables; an absent table contributes no features.
    as_of : the cutoff (UTC); only events strictly before it are read.
    customer_ids : the rows to return; default :func:`population`.
    """
    ids = (
        population(tables, as_of=as_of)
        if customer_ids is None
        else pd.Index(customer_ids, name="customer_id")
    )
    parts: list[pd.DataFrame] = []
    if tables.customers is not None:
        parts.append(customer_features(tables.customers, as_of=as_of))
    families = (
        (tables.transactions, tx.transaction_features),
        (tables.interactions, inter.interaction_features),
        (tables.surveys, surv.survey_features),
    )
    for table, family in families:
        if table is not None:
            parts.append(family(table, as_of=as_of))
    frame = pd.DataFrame(index=ids)
    for part in parts:
        frame = frame.join(part.reindex(ids))
    for col in ZERO_WHEN_ABSENT.intersection(frame.columns):
        frame[col] = frame[col].fillna(0.0)
    return frame
