"""Customer features: tenure and the customer's own attribute columns (plan, region, ...).

Attributes are static: they are read as they are in the customers table. String attributes
become pandas categoricals, which LightGBM splits on natively.
"""

from __future__ import annotations

import pandas as pd

from features.catalogue import register
from features.time import DAY

TENURE = register("tenure_days", "customer", "days", "all history", "days since signup")
RESERVED = frozenset({"customer_id", "signup_date", "churn_date"})


def attribute_columns(customers: pd.DataFrame) -> list[str]:
    """The customer table's extra columns, which become static features."""
    return [c for c in customers.columns if c not in RESERVED]


def active_customers(customers: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.Index:
    """Customers known at ``as_of``: signed up before it (or signup unknown) and not churned
    (contractual ``churn_date``) at or before it."""
    keep = pd.Series(True, index=customers.index)
    if "signup_date" in customers.columns:
        keep &= ~(customers["signup_date"] >= as_of).fillna(False).astype(bool)
    if "churn_date" in customers.columns:
        keep &= ~(customers["churn_date"] <= as_of).fillna(False).astype(bool)
    ids: pd.Index = pd.Index(customers.loc[keep, "customer_id"], name="customer_id")
    return ids


def customer_features(customers: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.DataFrame:
    """Tenure in days and attribute columns for the customers active at ``as_of``."""
    ids = active_customers(customers, as_of=as_of)
    rows = customers.set_index("customer_id").loc[ids]
    out = pd.DataFrame(index=ids)
    if "signup_date" in rows.columns:
        # pandas-stubs type a Timestamp minus a Series as Series[Any], not as timedeltas
        out[TENURE] = ((as_of - rows["signup_date"]) / DAY).astype("float64")  # type: ignore[operator]
    for col in attribute_columns(customers):
        values = rows[col]
        if pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_numeric_dtype(values.dtype):
            out[col] = values.astype("float64")
        else:
            out[col] = values.astype("string").astype("category")
    return out
