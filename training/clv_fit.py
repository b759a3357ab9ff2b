"""The CLV fit of a training run: a stated fallback order, so the fit never stops the run.

:class:`models.clv.CLVModel` raises when the data cannot identify its parameters (e.g. BG/NBD's
dropout parameter ``a`` running to 0 when nobody visibly drops out: the NBD limit). Training
uses this module instead, at every cutoff and for the final model, on either engine:

1. BG/NBD with the penalizers of :data:`PENALIZERS` in turn (0 first, then a small ladder);
2. the other purchase-count models (:data:`OTHER_MODELS`), each fitted with the first
   penalizer of the ladder that converges on a stable 80% of the customers, ranked by mean
   log-likelihood on the other 20% (held out by a hash of the history, :func:`holdout_split`),
   and refitted on everyone in that order;
3. the NBD model (:data:`LAST_MODEL`: gamma-Poisson purchases, no dropout, BG/NBD's limit as
   ``a -> 0``) with the same ladder: the model of data where nobody visibly drops out, where
   every dropout parameter above runs to 0; its P(alive) is 1 for everybody;
4. nothing fits: no CLV model (``status`` "not fitted"); the caller trains the churn model
   without BG/NBD features and says so once.

A subscription business's customers table with ``tenure_periods`` and ``recurring_revenue`` and
no purchase history gets the contractual model instead (:func:`fit_contractual_clv`: sBG
retention, :mod:`models.contractual`), or no CLV model with the reason (one WARNING).

When a count model fits but Gamma-Gamma does not (:class:`models.clv.SpendModelError`: too few
repeat buyers, every amount the same), the same count model is kept without a spend model
(``status`` "fitted without spend"): P(alive) and expected purchases, no currency values.

The fit runs on the condensed RFM table (:func:`models.clv.summary_counts`), so the local and
the Dask engine (which gathers condensed tables from its partitions) make the same choices and
get the same parameters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from features.schema import Tables
from models.clv import (
    MIN_CUSTOMERS,
    SUMMARY_COLUMNS,
    CLVModel,
    CLVModelError,
    SpendModelError,
    summary_counts,
)
from models.clv_evaluation import (
    LEARNED,
    LEARNED_BTYD_TOTAL,
    CandidatesEvaluation,
    calibration_holdout,
    evaluate_candidates,
)
from models.clv_learned import LearnedCLV, learned_features, learned_scores, learning_window_days
from models.contractual import (
    REVENUE_COLUMN,
    TENURE_COLUMN,
    ContractualCLV,
    ContractualModelError,
)

log = logging.getLogger(__name__)

#: BG/NBD is tried with these L2 penalizers (lifetimes' ``penalizer_coef``) in turn.
PENALIZERS = (0.0, 0.001, 0.01, 0.1)
FIRST_MODEL = "bgnbd"
#: Tried when BG/NBD fails at every penalizer, ranked by held-out likelihood.
OTHER_MODELS = ("pareto_nbd", "mbgnbd")
#: Tried last, when every dropout model failed: no dropout, so nothing to run to a boundary.
LAST_MODEL = "nbd"
ALL_MODELS = (FIRST_MODEL, *OTHER_MODELS, LAST_MODEL)
#: Share of customers held out to rank :data:`OTHER_MODELS`.
HOLDOUT_SHARE = 0.2


@dataclass(frozen=True)
class CLVFit:
    """The outcome of :func:`fit_clv_with_fallback`.

    Attributes
    ----------
    model : the fitted model, or ``None`` when nothing fitted.
    status : ``"fitted"``, ``"fitted without spend"`` or ``"not fitted"``.
    reason : why the first choice was not used (empty when BG/NBD fitted at once).
    tried : one line per failed attempt, in the order tried.
    """

    model: CLVModel | ContractualCLV | None
    status: str
    reason: str = ""
    tried: tuple[str, ...] = field(default=())
    #: the contractual (sBG) model was asked for: its outcome says nothing of BG/NBD features
    contractual: bool = False

    @property
    def fitted(self) -> bool:
        return self.model is not None

    def describe(self) -> str:
        """One line: the model and penalizer used, or why there is none."""
        if self.model is None:
            return f"not fitted: {self.reason}"
        if isinstance(self.model, ContractualCLV):
            return f"sbg (contractual), {self.reason}"
        what = f"{self.model.model_}, penalizer {self.model.penalizer:g}"
        if self.status != "fitted":
            what += ", without spend (no Gamma-Gamma)"
        return f"{what} ({self.reason})" if self.reason else what

    def mlflow_params(self, prefix: str = "clv") -> dict[str, str | float | bool]:
        """Parameters for MLflow: which model, which penalizer, whether spend was modelled."""
        if self.model is None:
            return {f"{prefix}.model": "none"}
        if isinstance(self.model, ContractualCLV):
            return {
                f"{prefix}.model": self.model.model_,
                f"{prefix}.period_days": self.model.period_days,
                f"{prefix}.segment_column": self.model.segment_column or "",
            }
        return {
            f"{prefix}.model": self.model.model_,
            f"{prefix}.penalizer": self.model.penalizer,
            f"{prefix}.spend": self.model.spend,
        }

    def mlflow_tags(self, prefix: str = "clv") -> dict[str, str]:
        """``<prefix>.status``: "fitted: bgnbd, penalizer 0" or "not fitted: <reason>"."""
        line = self.describe()
        return {f"{prefix}.status": line if self.model is None else f"{self.status}: {line}"}


def _condensed(summary: pd.DataFrame, weight_column: str | None) -> pd.DataFrame:
    """``summary`` as a condensed table with a ``weight`` column (customers per row)."""
    columns = summary[list(SUMMARY_COLUMNS)]
    if weight_column is not None:
        columns = columns.assign(weight=summary[weight_column].to_numpy(dtype=float))
    return summary_counts(columns)


def holdout_split(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A condensed table cut into fit and held-out parts of about :data:`HOLDOUT_SHARE` of the
    customers: each row's ``weight`` split as ``floor(weight * share + u)``, with ``u`` in
    [0, 1) a hash of the row's history. Customers with equal histories are interchangeable,
    so this is a random split of customers that is the same for any row order and partition."""
    h = pd.util.hash_pandas_object(table[list(SUMMARY_COLUMNS)], index=False).to_numpy()
    u = h.astype(np.float64) / 2.0**64
    w = table["weight"].to_numpy(dtype=float)
    held = np.floor(w * HOLDOUT_SHARE + u)
    fit = table.assign(weight=w - held)
    out = table.assign(weight=held)
    return fit.loc[fit["weight"] > 0], out.loc[out["weight"] > 0]


#: Horizon of the prediction check of a fitted candidate, days.
CHECK_HORIZON_DAYS = 365
#: Tenures (as a share of the longest in the fit table) probed for customers with no repeat
#: purchase yet, who are scored with frequency 0, recency 0 and their tenure as ``T``.
_PROBE_SHARES = np.linspace(0.0, 1.5, 31)


def _prediction_probe(table: pd.DataFrame) -> pd.DataFrame:
    """The fit table's histories plus first-purchase-only customers at a range of tenures:
    what the fitted model will be asked to predict at this cutoff and when scoring."""
    longest = float(table["T_days"].max()) if len(table) else 0.0
    fresh = pd.DataFrame(
        {
            "frequency": 0.0,
            "recency_days": 0.0,
            "T_days": _PROBE_SHARES * longest,
            "monetary_repeat_mean": np.nan,
        }
    )
    return pd.concat([table[list(SUMMARY_COLUMNS)], fresh], ignore_index=True)


def _attempt(
    table: pd.DataFrame, model: str, penalizer: float, as_of: pd.Timestamp | None, tried: list
) -> CLVFit | None:
    """One full fit (count model + Gamma-Gamma, or count model alone when only Gamma-Gamma
    fails) whose predictions are finite on :func:`_prediction_probe`; ``None`` with the error
    appended to ``tried`` when the count model fails or predicts a non-finite value (some
    parameter sets near a boundary fit but cannot score a customer, which would stop the run
    later, at the first prediction)."""
    fit: CLVFit
    try:
        clv = CLVModel(model=model, penalizer=penalizer).fit(
            table, as_of=as_of, weight_column="weight"
        )
        fit = CLVFit(clv, "fitted")
    except SpendModelError as exc:
        try:
            clv = CLVModel(model=model, penalizer=penalizer, spend=False).fit(
                table, as_of=as_of, weight_column="weight"
            )
        except CLVModelError as again:  # pragma: no cover - the count model just fitted
            tried.append(f"{model} penalizer {penalizer:g}: {again}")
            return None
        fit = CLVFit(clv, "fitted without spend", reason=str(exc))
    except CLVModelError as exc:
        tried.append(f"{model} penalizer {penalizer:g}: {exc}")
        return None
    try:
        clv.predict(_prediction_probe(table), horizon_days=CHECK_HORIZON_DAYS)
    except CLVModelError as exc:
        tried.append(f"{model} penalizer {penalizer:g}: fitted, but {exc}")
        return None
    return fit


def _ranked_others(table: pd.DataFrame, tried: list) -> tuple[list[tuple[str, float]], str]:
    """(model, penalizer) pairs to refit on everyone: each of :data:`OTHER_MODELS` from the
    penalizer it first converged at on the fit part, models by best held-out mean
    log-likelihood first, with a note of the scores; the stated order when too few
    customers to hold out."""
    fit_part, held = holdout_split(table)
    if min(fit_part["weight"].sum(), held["weight"].sum()) < MIN_CUSTOMERS:
        return [(m, p) for m in OTHER_MODELS for p in PENALIZERS], "too few to hold out"
    scores: dict[tuple[str, float], float] = {}
    for model in OTHER_MODELS:
        for penalizer in PENALIZERS:
            try:
                clv = CLVModel(model=model, penalizer=penalizer, spend=False).fit(
                    fit_part, weight_column="weight"
                )
            except CLVModelError as exc:
                tried.append(f"{model} penalizer {penalizer:g} (80% fit): {exc}")
                continue
            held_out = clv.score(held, weight_column="weight")
            if not np.isfinite(held_out):
                tried.append(f"{model} penalizer {penalizer:g}: held-out likelihood {held_out}")
                continue
            scores[(model, penalizer)] = held_out
            break
    ranked = sorted(scores, key=scores.__getitem__, reverse=True)
    note = ", ".join(f"{m} {scores[(m, p)]:.4f}" for m, p in ranked)
    pairs = [(m, q) for m, p in ranked for q in PENALIZERS if q >= p]
    return pairs, f"held-out log-likelihood per customer: {note}" if note else ""


def _first_error(tried: list[str]) -> str:
    """The first failed attempt, without the library's "try a penalizer" advice (the ladder
    has tried them)."""
    return tried[0].split("; try a penalizer")[0]


def fit_clv_with_fallback(
    summary: pd.DataFrame,
    *,
    as_of: pd.Timestamp | None = None,
    weight_column: str | None = None,
    where: str = "",
) -> CLVFit:
    """Fit the CLV model in the order of the module docstring; never raises for the data.

    Parameters
    ----------
    summary : RFM summary (columns :data:`models.clv.SUMMARY_COLUMNS`, days), per customer
        or condensed with ``weight_column``.
    as_of : the summary's cutoff, recorded as the end of the fit window.
    weight_column : customers per row of a condensed summary.
    where : what this fit is for, in the log line ("cutoff 2024-05-01", "final model").

    Returns
    -------
    :class:`CLVFit`; the model and penalizer used (or why none) are logged at INFO, each
    failed attempt at DEBUG.
    """
    table = _condensed(summary, weight_column)
    tried: list[str] = []
    result = None
    if table["weight"].sum() < MIN_CUSTOMERS:
        tried.append(f"only {int(table['weight'].sum())} customers with purchases: too few")
    else:
        for penalizer in PENALIZERS:
            result = _attempt(table, FIRST_MODEL, penalizer, as_of, tried)
            if result is not None:
                break
        if result is None:
            ranked, note = _ranked_others(table, tried)
            for model, penalizer in ranked:
                result = _attempt(table, model, penalizer, as_of, tried)
                if result is not None:
                    break
            if result is None:
                note = f"{', '.join(OTHER_MODELS)} did not fit either"
                for penalizer in PENALIZERS:
                    result = _attempt(table, LAST_MODEL, penalizer, as_of, tried)
                    if result is not None:
                        break
            if result is not None:
                why = f"{FIRST_MODEL} did not fit at penalizers {', '.join(map(str, PENALIZERS))}"
                reason = "; ".join(filter(None, [why, note, result.reason]))
                result = CLVFit(result.model, result.status, reason)
    if result is None:
        reason = (
            tried[0]
            if len(tried) == 1
            else f"no purchase model fitted ({', '.join(ALL_MODELS)} at "
            f"penalizers {', '.join(map(str, PENALIZERS))}; first: {_first_error(tried)})"
        )
        result = CLVFit(None, "not fitted", reason)
    result = CLVFit(result.model, result.status, result.reason, tuple(tried))
    label = f" ({where})" if where else ""
    for line in tried:
        log.debug("CLV fit%s: tried %s", label, line)
    attempts = f" after {len(tried)} failed attempts (DEBUG lists them)" if tried else ""
    log.info("CLV fit%s: %s%s", label, result.describe(), attempts)
    return result


def has_contract_columns(tables: Tables) -> bool:
    """Whether the customers table carries the contractual CLV's columns with some values."""
    customers = tables.customers
    return customers is not None and all(
        c in customers.columns and customers[c].notna().any()
        for c in (TENURE_COLUMN, REVENUE_COLUMN)
    )


def _churn_evidence(
    tables: Tables, tenured: pd.DataFrame, *, data_end: pd.Timestamp, label_periods: float
) -> tuple[pd.DataFrame, dict[str, object], str]:
    """The customers the sBG fit learns from, the :meth:`ContractualCLV.fit` arguments and a
    note of the evidence: ``churn_date`` when the customers table has churn dates (it then
    holds the churned customers too, a whole cohort: churned after ``tenure_periods``
    renewals); else the labels at their latest ``as_of``, a forward flag "churns within the
    horizon" on a snapshot of active customers (left-truncated at the tenure)."""
    if "churn_date" in tenured.columns and tenured["churn_date"].notna().any():
        churned = tenured["churn_date"].notna() & (tenured["churn_date"] <= data_end)
        return tenured, {"churned": churned.to_numpy()}, "churn_date"
    labels = tables.labels
    if labels is None or not len(labels):
        raise ContractualModelError(
            "customers table: no churn_date and no labels table, so retention cannot be "
            "estimated; add churn_date (blank for active customers) or a labels table"
        )
    latest = labels.loc[labels["as_of"] == labels["as_of"].max()]
    flags = latest.drop_duplicates("customer_id").set_index("customer_id")["churned"]
    known = tenured.loc[tenured["customer_id"].isin(flags.index)]
    churned = flags.reindex(known["customer_id"]).astype(bool).to_numpy()
    note = f"labels at {latest['as_of'].max().date()}, within {label_periods:.3g} periods"
    return known, {"churned": churned, "within_periods": label_periods}, note


def fit_contractual_clv(
    tables: Tables,
    *,
    horizon_days: int,
    data_end: pd.Timestamp,
    period_days: float,
    segment_column: str | None = None,
) -> CLVFit | None:
    """The sBG contractual CLV when there is no purchase history and the customers table has
    ``tenure_periods`` and ``recurring_revenue``; ``None`` when that is not the case.

    Never raises for the data: a fit that fails is ``status`` "not fitted" with the reason
    (the caller logs ONE WARNING). ``horizon_days`` is the labels' horizon (a label says
    "churns within it"); ``segment_column``: one fit per value, when the column is there.
    """
    if tables.transactions is not None or not has_contract_columns(tables):
        return None
    customers = tables.customers
    assert customers is not None  # has_contract_columns
    tenured = customers.loc[customers[TENURE_COLUMN].notna()]
    try:
        rows, kwargs, note = _churn_evidence(
            tables, tenured, data_end=data_end, label_periods=horizon_days / period_days
        )
        use_segments = segment_column is not None and segment_column in rows.columns
        model = ContractualCLV(
            period_days=period_days, segment_column=segment_column if use_segments else None
        ).fit(
            np.floor(rows[TENURE_COLUMN].to_numpy(dtype=float)),
            segments=rows[segment_column].to_numpy() if use_segments else None,
            **kwargs,  # type: ignore[arg-type]
        )
    except ContractualModelError as exc:
        result = CLVFit(None, "not fitted", f"contractual (sBG): {exc}", contractual=True)
        log.info("CLV fit (final model): %s", result.describe())
        return result
    segments = f", {len(model.segments_)} {segment_column} fits" if model.segments_ else ""
    reason = f"{model.n_customers_} customers, churn from {note}{segments}"
    result = CLVFit(model, "fitted", reason, contractual=True)
    log.info("CLV fit (final model): %s", result.describe())
    return result


#: Above this many customers in the calibration cohort the candidates comparison is skipped
#: (it refits three BTYD models and the learned model's cross-validation: minutes at 10^6).
MAX_CANDIDATE_CUSTOMERS = 200_000
#: Above this many customers in the calibration cohort the candidates are compared on a
#: sample of this many (:func:`candidate_sample`): the table, and the choice of the CLV model
#: that serves, are then estimates (paired on the same customers; a Spearman's standard error
#: at 50,000 is about 0.004), and the run says so. Pareto/NBD's likelihood alone took half
#: of ``clv_evaluate`` at 200,000 demo customers. Smaller data (CDNOW) is compared exactly.
CANDIDATE_SAMPLE_CUSTOMERS = 50_000


def candidate_sample(
    transactions: pd.DataFrame, cohort: pd.Index, size: int
) -> tuple[pd.DataFrame, str]:
    """``transactions`` of at most ``size`` customers of ``cohort`` (the customers with a
    purchase before the cutoff), the ones with the lowest stable hash of ``customer_id`` (the
    same in every run and row order), and a one-line note of the sample (empty when the whole
    cohort is kept)."""
    if len(cohort) <= size:
        return transactions, ""
    h = pd.util.hash_pandas_object(pd.Series(cohort.astype("str")), index=False).to_numpy()
    kept = cohort[np.argsort(h, kind="stable")[:size]]
    note = (
        f"{size:,} of {len(cohort):,} customers (lowest stable hash of customer_id): "
        "an estimate on a sample"
    )
    return transactions.loc[transactions["customer_id"].isin(kept)], note


def compare_candidates(
    transactions: pd.DataFrame,
    *,
    cutoff: pd.Timestamp,
    end: pd.Timestamp,
    horizon_days: int,
    penalizer: float = 0.0,
    primary: str = "bgnbd",
) -> CandidatesEvaluation | None:
    """:func:`models.clv_evaluation.evaluate_candidates` on ``[cutoff, end)``, for the
    training run's record, against the run's model ``primary``; never raises for the data
    (``None`` with ONE WARNING when ``primary`` cannot be fitted at the cutoff, with an INFO
    line when the cohort is too large). Above :data:`CANDIDATE_SAMPLE_CUSTOMERS` it runs on
    a sample of the cohort (``sample`` of the result says which)."""
    ids = transactions.loc[transactions["timestamp"] < cutoff, "customer_id"].unique()
    cohort = pd.Index(ids)
    if len(cohort) > MAX_CANDIDATE_CUSTOMERS:
        log.info(
            "CLV candidates comparison skipped: %d customers (more than %d)",
            len(cohort),
            MAX_CANDIDATE_CUSTOMERS,
        )
        return None
    sampled, note = candidate_sample(transactions, cohort, CANDIDATE_SAMPLE_CUSTOMERS)
    if note:
        log.info("CLV candidates compared on a sample: %s", note)
    try:
        result = evaluate_candidates(
            sampled,
            cutoff=cutoff,
            end=end,
            horizon_days=horizon_days,
            penalizer=penalizer,
            primary=primary,
        )
    except (CLVModelError, ValueError) as exc:
        log.warning("CLV candidates comparison skipped: %s", exc)
        return None
    log.info("CLV candidates: ranking by %s", result.chosen)
    return replace(result, sample=note)


#: How training chooses the CLV model that serves (docs/clv.md, "Which CLV model serves").
CHOICE_RULE = (
    "learned when its Spearman and its normalised Gini of predicted spend against actual "
    "holdout spend are both above the BTYD model's on the latest holdout, with its total "
    "rescaled to the BTYD total when that total was closer to the actual"
)


def serving_choice(compared: CandidatesEvaluation | None, primary: str) -> str:
    """The CLV model to serve: ``compared.chosen`` (``learned``, ``learned, BTYD total`` or
    the BTYD ``primary``), or ``primary`` without a comparison."""
    return compared.chosen if compared is not None else primary


def fit_ranking_clv(
    transactions: pd.DataFrame,
    *,
    evaluated: LearnedCLV,
    btyd: CLVModel,
    rescale: bool,
    data_end: pd.Timestamp,
    horizon_days: int,
    clv_horizon_days: int,
) -> LearnedCLV:
    """The learned model to serve: ``evaluated``'s feature set and trees refitted on the
    latest window -- features at ``data_end - window`` (the BTYD model refitted there, with
    ``btyd``'s model and penalizer), purchases and spend in ``[data_end - window, data_end)``
    -- so it predicts from the features at the end of the data as the evaluated model did
    from those at its cutoff.

    ``rescale``: the BTYD total was closer on the holdout; the served totals are then the
    BTYD model's: ``scale_purchases`` / ``scale_spend`` are the BTYD total over the learned
    total of expected purchases / ``clv`` over ``clv_horizon_days`` for the customers with a
    purchase before ``data_end`` (the population ``make score`` scores). Other horizons and
    populations get the same factors, so their totals match approximately.

    Raises
    ------
    CLVModelError, ValueError
        Too little history for the window, or a part cannot be fitted.
    """
    first_day = transactions["timestamp"].min().floor("D")
    window = learning_window_days(first_day, data_end, horizon_days)
    start = data_end - pd.Timedelta(days=window)
    summary, actuals = calibration_holdout(transactions, cutoff=start, end=data_end)
    summary = summary.dropna(subset=["T_days"])
    if summary.empty:
        raise ValueError(f"no customer with a purchase before {start.date()}")
    earlier = CLVModel(model=btyd.model_, penalizer=btyd.penalizer).fit(summary, as_of=start)
    y = actuals.reindex(summary.index).fillna(0.0)
    learned = evaluated.refit(
        learned_features(summary, earlier, window_days=window),
        y["purchases"].to_numpy(),
        y["spend"].to_numpy(),
        window_days=window,
    )
    if rescale:
        latest, _ = calibration_holdout(transactions, cutoff=data_end, end=data_end)
        latest = latest.dropna(subset=["T_days"])
        pred = btyd.predict(latest, horizon_days=clv_horizon_days)
        value = btyd.predict_value(latest, pred, horizon_days=clv_horizon_days)
        ours, _ = learned_scores(learned, btyd, latest, pred, value, horizon_days=clv_horizon_days)
        learned.scale_purchases = float(
            pred["expected_purchases"].sum() / max(ours["expected_purchases"].sum(), 1e-12)
        )
        learned.scale_spend = float(pred["clv"].sum() / max(ours["clv"].sum(), 1e-12))
    return learned


def ranking_clv(
    transactions: pd.DataFrame,
    compared: CandidatesEvaluation | None,
    *,
    btyd: CLVModel,
    data_end: pd.Timestamp,
    horizon_days: int,
    clv_horizon_days: int,
) -> tuple[LearnedCLV | None, str]:
    """The learned CLV to store in the bundle (``None`` to serve ``btyd``) and a one-line
    status for MLflow. Never raises for the data: when the learned model won but cannot be
    refitted, or could not be fitted for the comparison, ONE WARNING and ``btyd`` serves."""
    choice = serving_choice(compared, btyd.model_)
    if compared is None:
        return None, f"{btyd.model_}: no candidates comparison"
    if compared.learned is None:
        why = compared.notes.get(LEARNED, "not fitted")
        log.warning("CLV learned ranking model not fitted (%s); serving %s", why, btyd.model_)
        return None, f"{btyd.model_}: learned not fitted: {why}"
    if choice not in (LEARNED, LEARNED_BTYD_TOTAL):
        return None, f"{btyd.model_}: the learned model did not win on the holdout"
    try:
        learned = fit_ranking_clv(
            transactions,
            evaluated=compared.learned,
            btyd=btyd,
            rescale=choice == LEARNED_BTYD_TOTAL,
            data_end=data_end,
            horizon_days=horizon_days,
            clv_horizon_days=clv_horizon_days,
        )
    except (CLVModelError, ValueError) as exc:
        log.warning("CLV learned ranking model not refitted (%s); serving %s", exc, btyd.model_)
        return None, f"{btyd.model_}: learned won but did not refit: {exc}"
    log.info("CLV serving model: %s (%s)", LEARNED, choice)
    return learned, f"learned: {choice}"
