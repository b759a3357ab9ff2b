"""Transaction features: RFM in the BG/NBD sense, plus windowed spend and refunds.

Purchases on the same calendar day (UTC) are merged into one purchase, as in the CDNOW
literature (Fader, Hardie & Lee 2005), so ``frequency`` counts repeat purchase *days*. A row
with ``amount >= 0`` is a purchase (zero-value orders are real purchases); a negative amount
is a refund and only lowers spend.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.catalogue import register
from features.time import DAY, events_before, events_in_window

F = "transactions"
FREQUENCY = register(
    "frequency",
    F,
    "count",
    "all history",
    "number of repeat purchase days (purchase days after the first)",
)
RECENCY = register(
    "recency_days", F, "days", "all history", "days between the first and the last purchase day"
)
T_DAYS = register("T_days", F, "days", "all history", "days since the first purchase day")
SINCE_LAST = register(
    "days_since_last_purchase", F, "days", "all history", "days since the last purchase"
)
MONETARY = register(
    "monetary_repeat_mean",
    F,
    "currency",
    "all history",
    "mean spend per repeat purchase day (Gamma-Gamma input; first day excluded)",
)
ORDER_VALUE = register(
    "order_value_mean", F, "currency", "all history", "mean spend per purchase day"
)
SPEND_TOTAL = register("spend_total", F, "currency", "all history", "net spend including refunds")
PURCHASES_90 = register("purchases_90d", F, "count", "90d", "purchase days in the last 90 days")
PURCHASES_365 = register("purchases_365d", F, "count", "365d", "purchase days in the last 365 days")
SPEND_90 = register("spend_90d", F, "currency", "90d", "net spend in the last 90 days")
REFUNDS_365 = register("refunds_365d", F, "count", "365d", "refunds in the last 365 days")

COLUMNS = (
    FREQUENCY,
    RECENCY,
    T_DAYS,
    SINCE_LAST,
    MONETARY,
    ORDER_VALUE,
    SPEND_TOTAL,
    PURCHASES_90,
    PURCHASES_365,
    SPEND_90,
    REFUNDS_365,
)


def purchase_days(transactions: pd.DataFrame) -> pd.DataFrame:
    """One row per customer and UTC day with a purchase: ``customer_id``, ``day``, ``amount``.

    ``amount`` is the day's total of non-negative amounts (refunds excluded).
    """
    buys = transactions.loc[transactions["amount"] >= 0]
    day = buys["timestamp"].dt.floor("D")
    return (
        buys.assign(day=day)
        .groupby(["customer_id", "day"], sort=False, observed=True)["amount"]
        .sum()
        .reset_index()
    )


def transaction_features(transactions: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.DataFrame:
    """RFM and windowed transaction features as of ``as_of``, indexed by ``customer_id``.

    Only rows strictly before ``as_of`` are read. Customers with no transaction before
    ``as_of`` are absent (the builder fills their counts with zero).
    """
    tx = events_before(transactions, as_of)
    days = purchase_days(tx)
    g = days.groupby("customer_id", sort=False)
    first, last = g["day"].min(), g["day"].max()
    n_days = g.size()
    total_buy = g["amount"].sum()
    first_amount = days.loc[g["day"].idxmin(), ["customer_id", "amount"]].set_index("customer_id")[
        "amount"
    ]
    frequency = n_days - 1
    out = pd.DataFrame(
        {
            FREQUENCY: frequency.astype("int64"),
            RECENCY: (last - first) / DAY,
            T_DAYS: (as_of - first) / DAY,
            SINCE_LAST: (
                as_of - tx.loc[tx["amount"] >= 0].groupby("customer_id")["timestamp"].max()
            )
            / DAY,
            MONETARY: ((total_buy - first_amount) / frequency).where(frequency > 0),
            ORDER_VALUE: total_buy / n_days,
            SPEND_TOTAL: tx.groupby("customer_id", sort=False)["amount"]
            .sum()
            .reindex(n_days.index),
        }
    )
    recent = days.loc[days["day"] >= as_of - pd.Timedelta(days=90)]
    year = days.loc[days["day"] >= as_of - pd.Timedelta(days=365)]
    out[PURCHASES_90] = recent.groupby("customer_id").size().reindex(out.index, fill_value=0)
    out[PURCHASES_365] = year.groupby("customer_id").size().reindex(out.index, fill_value=0)
    tx90 = events_in_window(tx, as_of, 90)
    out[SPEND_90] = tx90.groupby("customer_id")["amount"].sum().reindex(out.index, fill_value=0.0)
    refunds = events_in_window(tx, as_of, 365)
    refunds = refunds.loc[refunds["amount"] < 0]
    out[REFUNDS_365] = refunds.groupby("customer_id").size().reindex(out.index, fill_value=0)
    # Customers with only refunds before as_of have no purchase day: keep them, spend only.
    only_refunds = tx.loc[~tx["customer_id"].isin(out.index)]
    if len(only_refunds):
        extra = pd.DataFrame(index=pd.Index(only_refunds["customer_id"].unique()))
        extra[SPEND_TOTAL] = only_refunds.groupby("customer_id")["amount"].sum()
        out = pd.concat([out, extra])
    out.index.name = "customer_id"
    return (
        out[list(COLUMNS)]
        .astype({c: "float64" for c in COLUMNS})
        .replace([np.inf, -np.inf], np.nan)
    )
