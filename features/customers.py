"""Customer features: tenure and the customer's own attribute columns (plan, region, ...).

Attributes are static: they are read as they are in the customers table. String attributes
become pandas categoricals, which LightGBM splits on natively.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.catalogue import register
from features.groups import (
    NAT_NS,
    NS_PER_DAY,
    SMALL,
    Columns,
    columns_frame,
    factorize,
    timestamps_ns,
)

TENURE = register("tenure_days", "customer", "days", "all history", "days since signup")
RESERVED = frozenset({"customer_id", "signup_date", "churn_date"})


def attribute_columns(customers: pd.DataFrame) -> list[str]:
    """The customer table's extra columns, which become static features."""
    return [c for c in customers.columns if c not in RESERVED]


def _active(
    customers: pd.DataFrame, as_of: pd.Timestamp, signup: np.ndarray | None = None
) -> np.ndarray:
    """Mask of the customers known at ``as_of`` (see :func:`active_customers`); ``signup``:
    the signup dates as :func:`~features.groups.timestamps_ns`, if the caller has them."""
    as_of_ns = as_of.as_unit("ns").value
    keep = np.ones(len(customers), dtype=bool)
    if signup is None and "signup_date" in customers.columns:
        signup = timestamps_ns(customers["signup_date"])
    if signup is not None:
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
    signup = timestamps_ns(customers["signup_date"]) if "signup_date" in customers.columns else None
    keep = _active(customers, as_of, signup)
    rows = customers if keep.all() else customers.loc[keep]
    ids = pd.Index(rows["customer_id"], name="customer_id")
    out: Columns = {}
    if signup is not None:
        # pandas' ``(as_of - signup_date) / 1 day`` (in nanoseconds; NaT: NaN), in NumPy
        signed_up = signup if rows is customers else signup[keep]
        tenure = (as_of.as_unit("ns").value - signed_up) / NS_PER_DAY
        tenure[signed_up == NAT_NS] = np.nan
        out[TENURE] = tenure
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
    codes, uniques = factorize(values.array, sort=True)
    if len(uniques) <= SMALL:
        dtype = _text_categories(tuple(uniques))
        return pd.Categorical.from_codes(codes, dtype=dtype, validate=False)
    return pd.Categorical.from_codes(codes, dtype=_categories_dtype(uniques))


def _categories_dtype(
    uniques: Sequence[str] | pd.api.extensions.ExtensionArray,
) -> pd.CategoricalDtype[str]:
    """The categorical dtype of these distinct text values (as pandas ``string``)."""
    # pandas-stubs take an Index of text from tuples only
    categories = pd.Index(uniques, dtype="string")  # type: ignore[arg-type]
    # pandas-stubs cannot infer a CategoricalDtype's value type from its categories
    dtype: pd.CategoricalDtype[str] = pd.CategoricalDtype(categories)
    return dtype


@functools.lru_cache(maxsize=256)
def _text_categories(uniques: tuple[str, ...]) -> pd.CategoricalDtype[str]:
    """:func:`_categories_dtype`, kept per set of a few values: a request's attributes take
    the same few values again and again, and the dtype costs ~0.1 ms to build."""
    return _categories_dtype(list(uniques))
