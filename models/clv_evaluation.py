"""CLV on a calibration/holdout split: the checks of the BG/NBD literature, and a naive baseline.

A CLV model fitted on purchases before a cutoff predicts each calibration customer's repeat
purchases and spend over the holdout window that follows; the holdout's actual purchases (same
day merged, as in calibration) and spend say how well. As in Fader, Hardie & Lee (2005a), the
population is the calibration cohort: customers first seen in the holdout are not predicted.

Reported (:func:`evaluate_holdout`): total predicted vs actual repeat purchases; the conditional
expectation table by number of calibration repeat purchases (FHL 2005a, Figure 5); per-customer
mean absolute error; the decile calibration of predicted value vs actual holdout spend;
Spearman and normalised Gini of predicted CLV vs actual spend; each against a naive baseline,
the customer's historical purchase rate carried forward (:func:`naive_forecast`).

:func:`evaluate_candidates` puts every candidate side by side on the same holdout: BG/NBD,
Pareto/NBD and MBG/NBD (each with Gamma-Gamma), the learned ranking model
(:mod:`models.clv_learned`, fitted on the split before it), the learned model rescaled to the
BTYD total, and the naive baseline: total error, MAE, Spearman, normalised Gini and the
deciles of each; and the choice between the learned model and BG/NBD. Pure functions:
DataFrames in, a metrics dict, DataFrames and PNG bytes out; logging is the caller's.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from features.transactions import purchase_days, transaction_features
from models.clv import CLVModel, CLVModelError
from models.clv_learned import LearnedCLV, learned_features, learning_window_days, to_horizon

if TYPE_CHECKING:  # matplotlib is imported by the figures alone: make score draws none
    from matplotlib.figure import Figure

#: Calibration repeat purchases from this number on share the last row of the conditional
#: expectation table ("7+", as in FHL 2005a).
MAX_FREQUENCY = 7
N_DECILES = 10


def holdout_actuals(
    transactions: pd.DataFrame, *, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """Purchase days and purchase spend per customer in the holdout window ``[start, end)``.

    Same-day purchases merge into one as in calibration (``features.transactions``); refunds
    are not purchases and do not lower ``spend``, which is what CLV forecasts.

    Returns
    -------
    DataFrame indexed by ``customer_id`` with ``purchases`` (int) and ``spend`` (currency);
    customers without a purchase in the window are absent (treat as zero).
    """
    ts = transactions["timestamp"]
    days = purchase_days(transactions.loc[(ts >= start) & (ts < end)])
    g = days.groupby("customer_id", sort=True)
    return pd.DataFrame({"purchases": g.size().astype("int64"), "spend": g["amount"].sum()})


def calibration_holdout(
    transactions: pd.DataFrame, *, cutoff: pd.Timestamp, end: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The calibration summary at ``cutoff`` (purchasers before it, the project's transaction
    features) and the holdout :func:`holdout_actuals` over ``[cutoff, end)``."""
    summary = transaction_features(transactions, as_of=cutoff).dropna(subset=["T_days"])
    return summary, holdout_actuals(transactions, start=cutoff, end=end)


def naive_forecast(summary: pd.DataFrame, *, horizon_days: float) -> pd.DataFrame:
    """The historical rate carried forward: ``frequency / T_days`` repeat purchases a day, each
    worth the customer's mean repeat spend; zero for customers without a repeat purchase.

    Returns ``purchases`` and ``spend`` over ``horizon_days``, indexed like ``summary``.
    """
    freq = summary["frequency"].fillna(0).to_numpy(dtype=float)
    t = summary["T_days"].to_numpy(dtype=float)
    rate = np.divide(freq, t, out=np.zeros_like(freq), where=(t > 0) & np.isfinite(t))
    purchases = rate * horizon_days
    monetary = summary["monetary_repeat_mean"].fillna(0).clip(lower=0).to_numpy(dtype=float)
    return pd.DataFrame(
        {"purchases": purchases, "spend": purchases * monetary}, index=summary.index
    )


def spearman(x: np.ndarray | pd.Series, y: np.ndarray | pd.Series) -> float:
    """Spearman rank correlation (ties averaged); NaN when either side is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def _gini(actual: np.ndarray, score: np.ndarray) -> float:
    """Gini of ``actual`` ordered by ``score`` (descending): twice the area between the
    cumulative-gain curve and the diagonal. Tied scores share their gain evenly (trapezoids
    over each tie group), so the result does not depend on row order."""
    order = np.argsort(-score, kind="stable")
    s, a = score[order], actual[order]
    edges = np.flatnonzero(np.r_[True, s[1:] != s[:-1], True])
    counts = np.diff(edges)
    gains = np.add.reduceat(a, edges[:-1])
    x = np.r_[0.0, np.cumsum(counts)] / len(a)
    y = np.r_[0.0, np.cumsum(gains)] / a.sum()
    area = np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2)
    return float(2 * area - 1)


def normalised_gini(actual: np.ndarray | pd.Series, predicted: np.ndarray | pd.Series) -> float:
    """Gini of ``actual`` ranked by ``predicted`` over the Gini of the perfect ranking: 1 for
    the perfect order, 0 for a random one. NaN when ``actual`` sums to zero."""
    a, p = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    if len(a) < 2 or a.sum() <= 0:
        return float("nan")
    best = _gini(a, a)
    return _gini(a, p) / best if best > 0 else float("nan")


def conditional_expectation_table(
    frequency: pd.Series, actual: pd.Series, predicted: dict[str, pd.Series]
) -> pd.DataFrame:
    """Mean holdout purchases by number of calibration repeat purchases (FHL 2005a, Fig. 5).

    Rows ``0 .. MAX_FREQUENCY - 1`` and ``"7+"``; columns ``n_customers``, ``actual`` and one
    per entry of ``predicted`` (e.g. ``model``, ``naive``), all means per customer.
    """
    capped = np.minimum(frequency.to_numpy(dtype=int), MAX_FREQUENCY)
    labels = [str(k) for k in range(MAX_FREQUENCY)] + [f"{MAX_FREQUENCY}+"]
    frame = pd.DataFrame(
        {"group": capped, "n_customers": 1, "actual": actual.to_numpy(dtype=float)}
        | {k: v.to_numpy(dtype=float) for k, v in predicted.items()}
    )
    g = frame.groupby("group")
    out = g[["actual", *predicted]].mean()
    out.insert(0, "n_customers", g.size())
    out = out.reindex(range(MAX_FREQUENCY + 1))
    out.index = pd.Index(labels, name="calibration_repeat_purchases")
    out["n_customers"] = out["n_customers"].fillna(0).astype("int64")
    return out


def decile_table(
    predicted_value: pd.Series, actual_spend: pd.Series, *, rank_by: pd.Series
) -> pd.DataFrame:
    """Customers in ten equal groups by ``rank_by`` (decile 1 = highest), with the mean
    predicted value, the mean actual spend and the decile's share of all actual spend.

    Ties in ``rank_by`` are broken by row order only to make equal-sized groups.
    """
    n = len(rank_by)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(-rank_by.to_numpy(dtype=float), kind="stable")] = np.arange(n)
    decile = rank * N_DECILES // max(n, 1) + 1
    frame = pd.DataFrame(
        {
            "decile": decile,
            "predicted": predicted_value.to_numpy(dtype=float),
            "actual": actual_spend.to_numpy(dtype=float),
        }
    )
    g = frame.groupby("decile")
    out = pd.DataFrame(
        {
            "n_customers": g.size(),
            "predicted_mean": g["predicted"].mean(),
            "actual_mean": g["actual"].mean(),
            "actual_share": g["actual"].sum() / max(frame["actual"].sum(), 1e-12),
        }
    )
    return out


@dataclass(frozen=True)
class HoldoutEvaluation:
    """What :func:`evaluate_holdout` measured.

    metrics : flat ``name -> float`` (ready for ``mlflow.log_metrics`` under a prefix).
    customers : per calibration customer: ``frequency``, predicted and actual purchases, the
        naive purchases, ``clv`` (discounted), ``expected_spend`` (undiscounted), the naive
        spend and the actual spend.
    conditional_expectation : :func:`conditional_expectation_table` (model and naive).
    deciles : :func:`decile_table` of ``expected_spend`` vs actual spend, ranked by ``clv``.
    """

    metrics: dict[str, float]
    customers: pd.DataFrame
    conditional_expectation: pd.DataFrame
    deciles: pd.DataFrame


def evaluate_holdout(
    model: CLVModel, summary: pd.DataFrame, actuals: pd.DataFrame, *, horizon_days: float
) -> HoldoutEvaluation:
    """Score ``model`` (fitted on ``summary``'s purchases) against the holdout.

    Parameters
    ----------
    model : a fitted :class:`CLVModel`.
    summary : the calibration feature frame at the cutoff (customers with a purchase before
        it; rows without ``T_days`` are dropped).
    actuals : :func:`holdout_actuals` for ``[cutoff, cutoff + horizon_days)``.
    horizon_days : the holdout's length.

    Metrics
    -------
    ``purchases_actual``, ``purchases_predicted``, ``purchases_naive`` (totals),
    ``purchases_error_pct`` and ``purchases_error_pct_naive`` (total predicted / actual - 1,
    in percent), ``purchases_mae`` and ``purchases_mae_naive`` (per customer),
    ``spend_actual``, ``spend_predicted`` (undiscounted), ``clv_predicted`` (discounted),
    ``spend_naive``, ``spend_mae`` and ``spend_mae_naive``, ``clv_spearman`` and
    ``clv_spearman_naive``, ``clv_gini`` and ``clv_gini_naive`` (normalised), ``n_customers``,
    ``horizon_days``, ``purchases_interval_coverage`` and ``spend_interval_coverage``
    (:func:`interval_coverage`: target 0.80).
    """
    cohort = summary.dropna(subset=["T_days"])
    pred = model.predict(cohort, horizon_days=horizon_days)
    naive = naive_forecast(cohort, horizon_days=horizon_days)
    actual = actuals.reindex(cohort.index).fillna(0.0)
    customers = pd.DataFrame(
        {
            "frequency": cohort["frequency"].astype("int64"),
            "purchases_actual": actual["purchases"],
            "purchases_predicted": pred["expected_purchases"],
            "purchases_naive": naive["purchases"],
            "spend_actual": actual["spend"],
            "clv": pred["clv"],
            "expected_spend": pred["expected_purchases"] * pred["expected_order_value"],
            "spend_naive": naive["spend"],
        },
        index=cohort.index,
    )
    c = customers
    total = float(c["purchases_actual"].sum())

    def error_pct(predicted: pd.Series) -> float:
        return 100 * (float(predicted.sum()) / total - 1) if total > 0 else float("nan")

    metrics = {
        "n_customers": float(len(c)),
        "horizon_days": float(horizon_days),
        "purchases_actual": total,
        "purchases_predicted": float(c["purchases_predicted"].sum()),
        "purchases_naive": float(c["purchases_naive"].sum()),
        "purchases_error_pct": error_pct(c["purchases_predicted"]),
        "purchases_error_pct_naive": error_pct(c["purchases_naive"]),
        "purchases_mae": float((c["purchases_predicted"] - c["purchases_actual"]).abs().mean()),
        "purchases_mae_naive": float((c["purchases_naive"] - c["purchases_actual"]).abs().mean()),
        "spend_actual": float(c["spend_actual"].sum()),
        "spend_predicted": float(c["expected_spend"].sum()),
        "clv_predicted": float(c["clv"].sum()),
        "spend_naive": float(c["spend_naive"].sum()),
        "spend_mae": float((c["expected_spend"] - c["spend_actual"]).abs().mean()),
        "spend_mae_naive": float((c["spend_naive"] - c["spend_actual"]).abs().mean()),
        "clv_spearman": spearman(c["clv"], c["spend_actual"]),
        "clv_spearman_naive": spearman(c["spend_naive"], c["spend_actual"]),
        "clv_gini": normalised_gini(c["spend_actual"], c["clv"]),
        "clv_gini_naive": normalised_gini(c["spend_actual"], c["spend_naive"]),
    }
    coverage = interval_coverage(model, cohort, actuals, horizon_days=horizon_days, predicted=pred)
    metrics.update({k: v for k, v in coverage.items() if k != "n_intervals"})
    table = conditional_expectation_table(
        c["frequency"],
        c["purchases_actual"],
        {"model": c["purchases_predicted"], "naive": c["purchases_naive"]},
    )
    deciles = decile_table(c["expected_spend"], c["spend_actual"], rank_by=c["clv"])
    return HoldoutEvaluation(metrics, customers, table, deciles)


def interval_coverage(
    model: CLVModel,
    summary: pd.DataFrame,
    actuals: pd.DataFrame,
    *,
    horizon_days: float,
    predicted: pd.DataFrame | None = None,
) -> dict[str, float]:
    """Share of calibration customers whose actual holdout purchases, and spend, fall in their
    80% interval (:meth:`CLVModel.predict_value`, docs/clv.md "Intervals").

    The spend interval is compared undiscounted (``clv_low`` / ``clv_high`` divided by the
    discount factor of ``clv``), as the actual spend is. Also returned: ``n_intervals``, the
    customers with an interval (the model gives one; Pareto/NBD does not, and then the shares
    are NaN).
    """
    cohort = summary.dropna(subset=["T_days"])
    pred = predicted if predicted is not None else model.predict(cohort, horizon_days=horizon_days)
    value = model.predict_value(cohort, pred, horizon_days=horizon_days)
    actual = actuals.reindex(cohort.index).fillna(0.0)
    expected = pred["expected_purchases"] * pred["expected_order_value"]
    factor = (pred["clv"] / expected).where(expected > 0, 1.0)
    has = value["purchases_high"].notna()
    bought = actual["purchases"]
    inside = (bought >= value["purchases_low"]) & (bought <= value["purchases_high"])
    low, high = value["clv_low"] / factor, value["clv_high"] / factor
    spent = actual["spend"]
    # a relative slack for the round trip through the discount factor
    in_spend = (spent >= low * (1 - 1e-9)) & (spent <= high * (1 + 1e-9))
    has_spend = value["clv_high"].notna()
    return {
        "n_intervals": float(has.sum()),
        "purchases_interval_coverage": float(inside[has].mean()) if has.any() else float("nan"),
        "spend_interval_coverage": (
            float(in_spend[has_spend].mean()) if has_spend.any() else float("nan")
        ),
    }


#: The BTYD candidates of :func:`evaluate_candidates`; the ``primary`` one (default the first)
#: is the one the learned model must beat, and whose aggregate it falls back to.
BTYD_CANDIDATES = ("bgnbd", "pareto_nbd", "mbgnbd")
LEARNED = "learned"
LEARNED_BTYD_TOTAL = "learned, BTYD total"
NAIVE = "naive"
CANDIDATE_COLUMNS = (
    "purchases_predicted",
    "purchases_error_pct",
    "purchases_mae",
    "spend_predicted",
    "spend_error_pct",
    "spend_mae",
    "spearman",
    "gini",
    "top_decile_share",
)


def candidate_metrics(
    purchases: pd.Series, spend: pd.Series, rank_by: pd.Series, actual: pd.DataFrame
) -> dict[str, float]:
    """One row of the candidates table: predicted totals and their error against the actual
    totals (percent), per-customer MAE, and Spearman, normalised Gini and the top decile's
    share of actual spend with customers ranked by ``rank_by`` (all aligned with ``actual``,
    columns ``purchases`` and ``spend``)."""
    p_true, s_true = actual["purchases"], actual["spend"]

    def error(pred: pd.Series, true: pd.Series) -> float:
        total = float(true.sum())
        return 100 * (float(pred.sum()) / total - 1) if total > 0 else float("nan")

    deciles = decile_table(spend, s_true, rank_by=rank_by)
    return {
        "purchases_predicted": float(purchases.sum()),
        "purchases_error_pct": error(purchases, p_true),
        "purchases_mae": float((purchases - p_true).abs().mean()),
        "spend_predicted": float(spend.sum()),
        "spend_error_pct": error(spend, s_true),
        "spend_mae": float((spend - s_true).abs().mean()),
        "spearman": spearman(rank_by, s_true),
        "gini": normalised_gini(s_true, rank_by),
        "top_decile_share": float(deciles["actual_share"].iloc[0]),
    }


@dataclass(frozen=True)
class CandidatesEvaluation:
    """What :func:`evaluate_candidates` measured.

    table : one row per candidate (index ``candidate``), columns :data:`CANDIDATE_COLUMNS`,
        plus the actual totals as the row ``actual``.
    deciles : the :func:`decile_table` of each candidate, stacked (column ``candidate``).
    chosen : the candidate to rank customers with: :data:`LEARNED` (or
        :data:`LEARNED_BTYD_TOTAL` when the primary BTYD model's total is closer) when the
        learned model has both a higher Spearman and a higher Gini than the primary BTYD
        model on this holdout, else the primary (``bgnbd`` by default).
    notes : candidates that could not be fitted, and why.
    learned : the learned model fitted on the earlier split (``None`` if it failed).
    sample : empty when every customer of the cohort was compared, else which sample was
        (the figures are then estimates; set by :func:`training.clv_fit.compare_candidates`).
    """

    table: pd.DataFrame
    deciles: pd.DataFrame
    chosen: str
    notes: dict[str, str]
    learned: LearnedCLV | None
    sample: str = ""

    def metrics(self) -> dict[str, float]:
        """Flat ``<candidate>.<metric>`` metrics for MLflow (spaces and commas dropped)."""
        out = {}
        for name, row in self.table.iterrows():
            key = str(name).replace(", ", "_").replace(" ", "_").replace("/", "")
            out.update({f"{key}.{k}": float(v) for k, v in row.items() if np.isfinite(v)})
        return out


def _ranking_score(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Mean of Spearman and normalised Gini: the learned model's cross-validation score."""
    return (spearman(predicted, actual) + normalised_gini(actual, predicted)) / 2


def _fit_learned(
    transactions: pd.DataFrame,
    *,
    cutoff: pd.Timestamp,
    horizon_days: int,
    penalizer: float,
    primary: str,
) -> tuple[LearnedCLV, float]:
    """The learned model on the split before ``cutoff``: features at ``cutoff - window``
    (the primary BTYD model refitted there), outcomes in ``[cutoff - window, cutoff)``; and
    the window."""
    first_day = transactions["timestamp"].min().floor("D")
    window = learning_window_days(first_day, cutoff, horizon_days)
    start = cutoff - pd.Timedelta(days=window)
    summary, actuals = calibration_holdout(transactions, cutoff=start, end=cutoff)
    summary = summary.dropna(subset=["T_days"])
    btyd = CLVModel(model=primary, penalizer=penalizer).fit(summary, as_of=start)
    x = learned_features(summary, btyd, window_days=window)
    y = actuals.reindex(summary.index).fillna(0.0)
    model = LearnedCLV().fit(
        x,
        y["purchases"].to_numpy(),
        y["spend"].to_numpy(),
        window_days=window,
        score=_ranking_score,
    )
    return model, float(window)


def evaluate_candidates(
    transactions: pd.DataFrame,
    *,
    cutoff: pd.Timestamp,
    end: pd.Timestamp,
    horizon_days: int,
    penalizer: float = 0.0,
    primary: str = BTYD_CANDIDATES[0],
) -> CandidatesEvaluation:
    """Every CLV candidate on the holdout ``[cutoff, end)`` (``horizon_days`` long), fitted
    on the purchases before ``cutoff`` (the learned model on the split before that).

    ``primary``: the BTYD model in use (e.g. the training run's: ``nbd`` where nobody
    visibly drops out), listed first, fitted with ``penalizer``, and the one the learned
    model is compared with and scaled by; the others of :data:`BTYD_CANDIDATES` follow.

    BTYD candidates rank by their discounted CLV, as :func:`evaluate_holdout`; the learned
    model by its predicted spend, scaled from its window to the horizon by the primary's ratio of
    expected purchases (spend) over the two; the naive baseline by its spend. A candidate
    that cannot be fitted is left out of the table with a note.

    Raises
    ------
    CLVModelError
        The primary model cannot be fitted at ``cutoff`` (nothing to compare with).
    """
    summary, actuals = calibration_holdout(transactions, cutoff=cutoff, end=end)
    cohort = summary.dropna(subset=["T_days"])
    actual = actuals.reindex(cohort.index).fillna(0.0)
    rows: dict[str, dict[str, float]] = {}
    deciles: dict[str, pd.DataFrame] = {}
    notes: dict[str, str] = {}
    fitted: dict[str, CLVModel] = {}
    names = [primary, *(m for m in BTYD_CANDIDATES if m != primary)]
    for name in names:
        try:
            fitted[name] = CLVModel(model=name, penalizer=penalizer).fit(summary, as_of=cutoff)
        except CLVModelError as exc:
            if name == primary:
                raise
            notes[name] = str(exc)
            continue
        ev = evaluate_holdout(fitted[name], summary, actuals, horizon_days=horizon_days)
        c = ev.customers
        rows[name] = candidate_metrics(
            c["purchases_predicted"], c["expected_spend"], c["clv"], actual
        )
        deciles[name] = decile_table(c["expected_spend"], c["spend_actual"], rank_by=c["clv"])
        if name == primary:
            base = c
    model = fitted[primary]

    learned = None
    try:
        learned, window = _fit_learned(
            transactions,
            cutoff=cutoff,
            horizon_days=horizon_days,
            penalizer=penalizer,
            primary=primary,
        )
    except (CLVModelError, ValueError) as exc:
        notes[LEARNED] = str(exc)
    if learned is not None:
        pw = learned.predict_window(learned_features(cohort, model, window_days=window))
        short = model.predict(cohort, horizon_days=window)
        # each customer's learned/BTYD ratio on the BTYD model's own profile from the window
        # to the horizon (dropout bends it): what scoring serves (models.clv_learned)
        ratio = to_horizon(pw, short, window_days=window, horizon_days=horizon_days)
        purchases = (base["purchases_predicted"] * ratio["purchases"]).fillna(
            ratio["purchases_linear"]
        )
        spend = (base["expected_spend"] * ratio["spend"]).fillna(ratio["spend_linear"])
        rows[LEARNED] = candidate_metrics(purchases, spend, spend, actual)
        deciles[LEARNED] = decile_table(spend, actual["spend"], rank_by=spend)
        to_total_p = base["purchases_predicted"].sum() / max(purchases.sum(), 1e-12)
        to_total_s = base["expected_spend"].sum() / max(spend.sum(), 1e-12)
        rows[LEARNED_BTYD_TOTAL] = candidate_metrics(
            purchases * to_total_p, spend * to_total_s, spend, actual
        )
        deciles[LEARNED_BTYD_TOTAL] = decile_table(
            spend * to_total_s, actual["spend"], rank_by=spend
        )
    rows[NAIVE] = candidate_metrics(
        base["purchases_naive"], base["spend_naive"], base["spend_naive"], actual
    )
    deciles[NAIVE] = decile_table(base["spend_naive"], actual["spend"], rank_by=base["spend_naive"])

    table = pd.DataFrame.from_dict(rows, orient="index")[list(CANDIDATE_COLUMNS)]
    table.loc["actual", ["purchases_predicted", "spend_predicted"]] = [
        float(actual["purchases"].sum()),
        float(actual["spend"].sum()),
    ]
    table.index.name = "candidate"
    chosen = primary
    if learned is not None:
        ours, theirs = table.loc[LEARNED], table.loc[primary]
        if ours["spearman"] > theirs["spearman"] and ours["gini"] > theirs["gini"]:
            closer = abs(theirs["spend_error_pct"]) < abs(ours["spend_error_pct"])
            chosen = LEARNED_BTYD_TOTAL if closer else LEARNED
    stacked = pd.concat(deciles, names=["candidate"]).reset_index()
    return CandidatesEvaluation(table, stacked, chosen, notes, learned)


def conditional_expectation_figure(evaluation: HoldoutEvaluation) -> Figure:
    """Mean holdout purchases by calibration repeat purchases: actual, model, naive."""
    table = evaluation.conditional_expectation
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    x = np.arange(len(table))
    ax.plot(x, table["actual"], "o-", color="black", label="actual")
    ax.plot(x, table["model"], "s--", label="model")
    ax.plot(x, table["naive"], "^:", label="naive (rate carried forward)")
    ax.set_xticks(x, table.index)
    ax.set_xlabel("repeat purchases in calibration")
    ax.set_ylabel("mean repeat purchases in holdout")
    ax.set_title("Conditional expectation, holdout")
    ax.legend()
    fig.tight_layout()
    return fig


def decile_figure(evaluation: HoldoutEvaluation) -> Figure:
    """Mean predicted (undiscounted) vs actual holdout spend by predicted-CLV decile."""
    table = evaluation.deciles
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    x = np.arange(len(table))
    ax.bar(x - 0.2, table["predicted_mean"], width=0.4, label="predicted")
    ax.bar(x + 0.2, table["actual_mean"], width=0.4, color="black", label="actual")
    ax.set_xticks(x, table.index)
    ax.set_xlabel("decile of predicted CLV (1 = highest)")
    ax.set_ylabel("mean spend per customer, holdout")
    ax.set_title("CLV decile calibration")
    ax.legend()
    fig.tight_layout()
    return fig


def png_bytes(fig: Figure) -> bytes:
    """A figure rendered as PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def plots(evaluation: HoldoutEvaluation) -> dict[str, bytes]:
    """The evaluation's plots as PNG bytes, by artifact file name."""
    return {
        "clv_conditional_expectation.png": png_bytes(conditional_expectation_figure(evaluation)),
        "clv_deciles.png": png_bytes(decile_figure(evaluation)),
    }
