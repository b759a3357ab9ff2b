"""Churn labels over the window ``(as_of, as_of + horizon]``: never read by a feature.

Three sources, in order of precedence (docs/data-contract.md, "Time"):
1. explicit ``labels`` rows whose ``as_of`` equals the cutoff;
2. contractual churn: ``churn_date`` in the window;
3. non-contractual churn: no purchase (``amount >= 0``) in the window.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.schema import Tables


def label_source(tables: Tables) -> str:
    """Which definition of churn the tables support: ``labels``, ``contractual`` or
    ``non_contractual``; raises ``ValueError`` when there is nothing to learn from."""
    if tables.labels is not None and len(tables.labels):
        return "labels"
    if (
        tables.customers is not None
        and "churn_date" in tables.customers.columns
        and tables.customers["churn_date"].notna().any()
    ):
        return "contractual"
    if tables.transactions is not None and len(tables.transactions):
        return "non_contractual"
    raise ValueError("no labels, churn_date or transactions: nothing to learn churn from")


def churn_labels(
    tables: Tables, *, as_of: pd.Timestamp, horizon_days: int, population: pd.Index
) -> pd.Series:
    """1 if the customer churned in ``(as_of, as_of + horizon_days]``, else 0, for ``population``.

    With explicit labels, customers without a label at this cutoff get ``<NA>``; the caller
    drops them from training (they are not silently labelled 0).
    """
    end = as_of + pd.Timedelta(days=horizon_days)
    source = label_source(tables)
    if source == "labels":
        assert tables.labels is not None  # label_source checked it
        rows = tables.labels.loc[tables.labels["as_of"] == as_of]
        lab = rows.drop_duplicates("customer_id", keep="last").set_index("customer_id")["churned"]
        return lab.astype("Int8").reindex(population).rename("churned")
    if source == "contractual":
        assert tables.customers is not None  # label_source checked it
        churn = tables.customers.set_index("customer_id")["churn_date"].reindex(population)
        churned = (churn > as_of) & (churn <= end)
        return churned.fillna(False).astype("Int8").rename("churned")
    tx = tables.transactions
    assert tx is not None  # label_source checked it
    ts = tx["timestamp"]
    window = tx.loc[(ts > as_of) & (ts <= end) & (tx["amount"] >= 0)]
    # Arrow's hash set of the window's ids, not a Python-object one: seconds at 1M customers
    bought = np.asarray(population.array.isin(window["customer_id"].array), dtype=bool)
    return pd.Series((~bought).astype("int8"), index=population, name="churned").astype("Int8")
