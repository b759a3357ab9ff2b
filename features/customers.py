"""Customer features: tenure and the customer's own attribute columns (plan, region, ...).

Attributes are static: they are read as they are in the customers table. String attributes
become pandas categoricals, which LightGBM splits on natively.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.catalogue import register
from features.groups import NAT_NS, Columns, columns_frame, timestamps_ns
from features.time import days_between

TENURE = register("tenure_days", "customer", "days", "all history", "days since signup")
RESERVED = frozenset({"customer_id", "signup_date", "churn_date"})


def attribute_columns(customers: pd.DataFrame) -> list[str]:
    """The customer table's extra columns, which become static features."""
    return [c for c in customers.columns if c not in RESERVED]


def _active(customers: pd.DataFrame, as_of: pd.Timestamp) -> np.ndarray:
    """Mask of the customers known at ``as_of`` (see :func:`active_customers`)."""
    as_of_ns = as_of.as_unit("ns").value
    keep = np.ones(len(customers), dtype=bool)
    if "signup_date" in customers.columns:
        signup = timestamps_ns(customers["signup_date"])
        keep &= ~((signup >= as_of_ns) & (signup != NAT_NS))
    if "churn_date" in customers.columns:
        churn = timestamps_ns(customers["churn_date"])
        keep &= ~((churn <= as_of_ns) & (churn != NAT_NS))
    return keep


def active_customers(customers: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.Index:
    """Customers known at ``as_of``: signed up before it (or signup unknown) and not churned
    (contractual ``churn_date``) at or before it."""
    # pandas-stubs type this Index as Any (the Series' values are untyped)
    ids: pd.Index = pd.Index(
        customers["customer_id"][_active(customers, as_of)], name="customer_id"
    )
    return ids


def customer_features(customers: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.DataFrame:
    """Tenure in days and attribute columns for the customers active at ``as_of``."""
    return columns_frame(*customer_columns(customers, as_of=as_of))


def customer_columns(customers: pd.DataFrame, *, as_of: pd.Timestamp) -> tuple[pd.Index, Columns]:
    """:func:`customer_features` as arrays, and the customers they are aligned with."""
    keep = _active(customers, as_of)
    rows = customers if keep.all() else customers.loc[keep]
    ids = pd.Index(rows["customer_id"], name="customer_id")
    out: Columns = {}
    if "signup_date" in rows.columns:
        tenure = days_between(rows["signup_date"], as_of)
        out[TENURE] = tenure.to_numpy("float64", na_value=np.nan)
    for col in attribute_columns(customers):
        values = rows[col]
        if pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_numeric_dtype(values.dtype):
            out[col] = values.astype("float64").to_numpy()
        else:
            out[col] = _category(values)
    return ids, out


def _category(values: pd.Series) -> pd.Categorical[str]:
    """Text values as a categorical of their distinct values, sorted (the dtype of
    ``values.astype("string").astype("category")``, built from one factorisation)."""
    if not isinstance(values.dtype, pd.StringDtype):  # e.g. mixed objects: compare as text
        values = values.astype("string")
    codes, uniques = pd.factorize(values.array, sort=True)
    categories = pd.Index(uniques.astype("string"))
    # pandas-stubs cannot infer a CategoricalDtype's value type from its categories
    dtype: pd.CategoricalDtype[str] = pd.CategoricalDtype(categories)
    return pd.Categorical.from_codes(codes, dtype=dtype)
