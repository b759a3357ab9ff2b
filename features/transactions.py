"""Transaction features: RFM in the BG/NBD sense, spend and purchase dynamics, refunds.

Purchases on the same calendar day (UTC) are merged into one purchase, as in the CDNOW
literature (Fader, Hardie & Lee 2005), so ``frequency`` counts repeat purchase *days*. A row
with ``amount >= 0`` is a purchase (zero-value orders are real purchases); a negative amount
is a refund and only lowers spend.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.catalogue import register
from features.groups import NS_PER_DAY, Columns, Groups, frame

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

PURCHASES_TREND = register(
    "purchases_trend_90d",
    F,
    "count",
    "90d vs prior 90d",
    "purchase days in the last 90 days minus those in the 90 days before",
)
SPEND_TREND = register(
    "spend_trend_90d",
    F,
    "currency",
    "90d vs prior 90d",
    "net spend in the last 90 days minus net spend in the 90 days before",
)
GAP_MEAN = register(
    "interpurchase_days_mean",
    F,
    "days",
    "all history",
    "mean days between consecutive purchase days (needs 2+ purchase days)",
)
GAP_STD = register(
    "interpurchase_days_std",
    F,
    "days",
    "all history",
    "standard deviation of the days between purchase days (needs 3+ purchase days)",
)
OVERDUE = register(
    "purchase_overdue_ratio",
    F,
    "ratio",
    "all history",
    "days since the last purchase over the mean inter-purchase time (>1: later than usual)",
)
REFUND_AMOUNT_365 = register(
    "refund_amount_365d", F, "currency", "365d", "total refunded in the last 365 days"
)
REFUND_SHARE = register(
    "refund_share",
    F,
    "ratio",
    "all history",
    "refunded amount over gross purchase amount",
)

#: The BG/NBD / Gamma-Gamma summary (models/clv.py reads these by name).
RFM_COLUMNS = (FREQUENCY, RECENCY, T_DAYS, MONETARY)
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
    PURCHASES_TREND,
    SPEND_TREND,
    GAP_MEAN,
    GAP_STD,
    OVERDUE,
    REFUND_AMOUNT_365,
    REFUND_SHARE,
)


def purchase_days(transactions: pd.DataFrame) -> pd.DataFrame:
    """One row per customer and UTC day with a purchase: ``customer_id``, ``day``, ``amount``.

    ``amount`` is the day's total of non-negative amounts (refunds excluded). Sorted by
    customer (in order of first appearance) and day.
    """
    buys = transactions.loc[transactions["amount"].to_numpy() >= 0]
    g = Groups(buys, as_of=_EPOCH_END)
    days = _PurchaseDays.of(g)
    total = np.bincount(days.index_of(g), weights=g.values("amount"))
    return pd.DataFrame(
        {
            "customer_id": g.ids[days.code],
            "day": pd.to_datetime(days.day * NS_PER_DAY, utc=True),
            "amount": np.pad(total, (0, len(days.code) - len(total))),
        }
    )


#: A cutoff later than any real event, for helpers that need no cutoff.
_EPOCH_END = pd.Timestamp("2262-01-01", tz="UTC")


class _PurchaseDays:
    """Distinct purchase days as arrays: customer code and UTC day number (days since 1970),
    sorted by customer code, then day.

    Same-day purchases are merged (Fader, Hardie & Lee 2005; CDNOW practice): ``frequency``
    counts repeat purchase *days*. A sort of one int64 key per row, no string grouping.
    """

    def __init__(self, code: np.ndarray, day: np.ndarray, lo: int, span: int) -> None:
        self.code, self.day, self._lo, self._span = code, day, lo, span

    @staticmethod
    def _keys(codes: np.ndarray, day: np.ndarray, lo: int, span: int) -> np.ndarray:
        keys: np.ndarray = codes.astype("i8") * span + (day - lo)
        return keys

    @classmethod
    def of(cls, groups: Groups, mask: np.ndarray | None = None) -> _PurchaseDays:
        """The distinct (customer, day) pairs among the rows of ``groups`` (where ``mask``)."""
        day = np.floor_divide(groups.ts_ns, NS_PER_DAY)
        code = groups.codes
        if mask is not None:
            code, day = code[mask], day[mask]
        if len(day) == 0:
            empty = np.zeros(0, dtype="i8")
            return cls(empty, empty, 0, 1)
        lo = int(day.min())
        span = int(day.max() - lo) + 1
        keys = np.sort(cls._keys(code, day, lo, span))
        keys = keys[np.r_[True, keys[1:] != keys[:-1]]]
        return cls(keys // span, keys % span + lo, lo, span)

    def index_of(self, groups: Groups) -> np.ndarray:
        """For each row of ``groups``, the position of its purchase day (rows must be buys)."""
        day = np.floor_divide(groups.ts_ns, NS_PER_DAY)
        keys = self._keys(self.code, self.day, self._lo, self._span)
        return np.searchsorted(keys, self._keys(groups.codes, day, self._lo, self._span))


def rfm_features(transactions: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.DataFrame:
    """The RFM summary of BG/NBD (Fader, Hardie & Lee 2005) as of ``as_of``: ``frequency``
    (repeat purchase days), ``recency_days`` (first to last purchase day), ``T_days`` (first
    purchase day to ``as_of``) and ``monetary_repeat_mean`` (mean day total over repeat days,
    the Gamma-Gamma input). Customers with no purchase before ``as_of`` are absent."""
    buys = transactions.loc[transactions["amount"].to_numpy() >= 0]
    g = Groups(buys, as_of=as_of)  # leaves out rows at or after ``as_of``
    amount = g.values("amount")
    out = _rfm(g, _PurchaseDays.of(g), amount, np.ones(len(amount), dtype=bool))
    return frame(g, {k: out[k] for k in RFM_COLUMNS})


def _rfm(
    g: Groups, days: _PurchaseDays, amount: np.ndarray, buy: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-customer RFM arrays (NaN for a customer without a purchase day).

    ``monetary_repeat_mean`` = (purchases - first day's purchases) / frequency: the mean day
    total over repeat days, as Gamma-Gamma expects (Fader, Hardie & Lee 2005b).
    """
    n = g.n
    n_days = np.bincount(days.code, minlength=n)
    has = n_days > 0
    last_idx = np.cumsum(n_days) - 1
    first_idx = np.where(has, last_idx - n_days + 1, 0)
    day_of = days.day if len(days.day) else np.zeros(1, dtype="i8")
    first_day = np.where(has, day_of[first_idx], np.nan)
    last_day = np.where(has, day_of[np.where(has, last_idx, 0)], np.nan)
    row_day = np.floor_divide(g.ts_ns, NS_PER_DAY)
    on_first = buy & (row_day == first_day[g.codes])
    first_amount = np.bincount(g.codes[on_first], weights=amount[on_first], minlength=n)
    total = np.bincount(g.codes[buy], weights=amount[buy], minlength=n)
    frequency = np.where(has, n_days - 1, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        monetary = np.where(frequency > 0, (total - first_amount) / frequency, np.nan)
        order_value = np.where(has, total / np.maximum(n_days, 1), np.nan)
    return {
        FREQUENCY: frequency,
        RECENCY: last_day - first_day,
        T_DAYS: g.as_of_ns / NS_PER_DAY - first_day,
        MONETARY: monetary,
        ORDER_VALUE: order_value,
        "_n_days": n_days,
    }


def transaction_features(transactions: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.DataFrame:
    """RFM and windowed transaction features as of ``as_of``, indexed by ``customer_id``.

    Only rows strictly before ``as_of`` are read; windows are ``[as_of - d, as_of)``. A row
    with ``amount >= 0`` is a purchase; a negative amount is a refund. Customers with no
    transaction before ``as_of`` are absent (the builder fills their counts with zero); a
    customer with refunds only has spend and refund features and NaN RFM.
    """
    g = Groups(transactions, as_of=as_of)
    return frame(g, transaction_columns(g))


def transaction_columns(g: Groups) -> Columns:
    """:func:`transaction_features` as arrays aligned with ``g.ids`` (the builder's form)."""
    amount = g.values("amount")
    buy = amount >= 0
    days = _PurchaseDays.of(g, buy)
    rfm = _rfm(g, days, amount, buy)
    has = rfm.pop("_n_days") > 0
    day_age = g.as_of_ns / NS_PER_DAY - days.day  # as_of minus the day's midnight, in days

    def days_in(lo: float, hi: float) -> np.ndarray:
        """Purchase days whose midnight lies in ``[as_of - hi, as_of - lo)``."""
        keep = (day_age <= hi) & (day_age > lo)
        return np.bincount(days.code[keep], minlength=g.n).astype("float64")

    # Gaps between consecutive purchase days of the same customer.
    same = days.code[1:] == days.code[:-1]
    gaps, gap_code = np.diff(days.day)[same].astype("float64"), days.code[1:][same]
    n_gaps = np.bincount(gap_code, minlength=g.n)
    gap_sum = np.bincount(gap_code, weights=gaps, minlength=g.n)
    gap_sq = np.bincount(gap_code, weights=gaps**2, minlength=g.n)
    since_last = np.where(has, g.min_age(buy), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap_mean = np.where(n_gaps > 0, gap_sum / n_gaps, np.nan)
        gap_std = np.where(
            n_gaps > 1, np.sqrt(np.maximum(gap_sq / n_gaps - gap_mean**2, 0.0)), np.nan
        )
        overdue = np.where(gap_mean > 0, since_last / gap_mean, np.nan)
        gross = g.sum(np.where(buy, amount, 0.0))
        refunded = -g.sum(np.where(buy, 0.0, amount))
        refund_share = np.where(gross > 0, refunded / gross, np.nan)
    spend_90 = g.sum(amount, g.window(90))
    purchases_90 = days_in(0, 90)
    columns = {
        **rfm,
        SINCE_LAST: since_last,
        SPEND_TOTAL: g.sum(amount),
        PURCHASES_90: np.where(has, purchases_90, np.nan),
        PURCHASES_365: np.where(has, days_in(0, 365), np.nan),
        SPEND_90: spend_90,
        REFUNDS_365: g.count(g.window(365) & ~buy),
        PURCHASES_TREND: purchases_90 - days_in(90, 180),
        SPEND_TREND: spend_90 - g.sum(amount, g.window(180, older_than=90)),
        GAP_MEAN: gap_mean,
        GAP_STD: gap_std,
        OVERDUE: overdue,
        REFUND_AMOUNT_365: -g.sum(np.where(buy, 0.0, amount), g.window(365)),
        REFUND_SHARE: refund_share,
    }
    return {c: columns[c] for c in COLUMNS}
