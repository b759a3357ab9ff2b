"""``make train``: a short list of named steps, each logging to MLflow.

1. load and validate the input tables (bad rows quarantined, counts logged);
2. plan cutoffs and build point-in-time frames (BG/NBD outputs fitted per cutoff); one
   label snapshot is split at random instead (training/frames.py, stated in the report);
3. fit the CLV model on every purchase up to the end of the data (used for scoring), with
   the fallbacks of training/clv_fit.py; if none fits, the churn model goes without the
   BG/NBD features (one WARNING, tag ``clv.status``);
4. fit the churn model on the training cutoffs, early-stopped on the calibration half of the
   out-of-time validation cutoff (where the trees must also beat the BG/NBD prior alone, or
   are dropped), and calibrate it on that half;
5. evaluate on the test half: the model, the baselines (also among active customers), and the
   demo oracle where known; tabulate what drives churn at the validation cutoff;
6. register the bundle; 7. write the report (it names the registered version); 8. move the
   champion alias if the gate passes (the alias moves last, so a run stopped anywhere leaves
   the champion as it was).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from features.build import churned_before
from features.catalogue import catalogue_markdown
from features.transactions import T_DAYS, transaction_features
from models.bundle import AnyCLV, Bundle
from models.churn import ChurnModel
from models.clv import CLVModel, CLVModelError
from models.clv_evaluation import (
    CandidatesEvaluation,
    HoldoutEvaluation,
    calibration_holdout,
    evaluate_holdout,
    plots,
)
from models.clv_learned import LearnedCLV
from models.contract import DEFAULT_CLV_HORIZON_DAYS
from models.drift import REFERENCE_KEY, reference_profile, table_profile
from models.performance_estimation import expected_roc_auc
from training import tracking
from training.baselines import RANKING_ONLY, baseline_metrics, baseline_scores
from training.clv_fit import (
    CHOICE_RULE,
    CLVFit,
    compare_candidates,
    fit_clv_with_fallback,
    fit_contractual_clv,
    ranking_clv,
)
from training.config import TrainSettings
from training.drivers import churn_drivers
from training.evaluate import (
    active_customers,
    classification_metrics,
    metrics_among_active,
    oracle_metrics,
)
from training.frames import (
    CutoffPlan,
    Frames,
    build_frames,
    check_frames,
    plan_cutoffs,
    without_clv_features,
)
from training.io import LoadedTables, input_rows, load_inputs, quarantined_rows
from training.progress import Steps, progress, summary_line
from training.report import RunInfo, render_report

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    run_id: str
    version: str
    promoted: bool
    gate_reason: str
    metrics: dict[str, float]
    #: The line ``make train`` ends with (:func:`training.progress.summary_line`).
    summary: str = ""


def fit_churn(
    frames: Frames, settings: TrainSettings, *, params: dict[str, Any] | None = None
) -> tuple[ChurnModel, dict[str, float]]:
    """LightGBM on the training cutoffs, early-stopped and then calibrated on the calibration
    half of the validation cutoff; returns the model and each calibration method's loss
    (``params``: LightGBM parameters over the defaults, e.g. ``num_threads``)."""
    x = frames.features
    model = ChurnModel(params={"seed": settings.seed, **(params or {})}).fit(
        frames.train[x],
        frames.train["churned"].astype(int),
        X_valid=frames.calibration[x],
        y_valid=frames.calibration["churned"].astype(int),
    )
    losses = model.calibrate(frames.calibration[x], frames.calibration["churned"].astype(int))
    return model, losses


def fit_clv(loaded: LoadedTables, plan: CutoffPlan) -> CLVFit | None:
    """BG/NBD + Gamma-Gamma on every purchase before the end of the data, with the fallbacks
    of :func:`training.clv_fit.fit_clv_with_fallback`; ``None`` without transactions
    (snapshot-style data has no purchase history)."""
    if loaded.tables.transactions is None:
        return None
    # the transaction family alone (the fit reads RFM only), over build_features' population:
    # the interactions (ten times the rows) cost seconds here for nothing
    summary = transaction_features(loaded.tables.transactions, as_of=plan.data_end)
    summary = summary.drop(churned_before(loaded.tables, as_of=plan.data_end), errors="ignore")
    return fit_clv_with_fallback(
        summary.dropna(subset=[T_DAYS]), as_of=plan.data_end, where="final model"
    )


def settle_clv(
    fit: CLVFit | None, frames: Frames, run: tracking.TrainingRun
) -> tuple[AnyCLV | None, Frames]:
    """Record the CLV fits in MLflow and decide the churn model's BG/NBD features.

    Without a final CLV model (or without one at every cutoff) the features are dropped, so
    the churn model never learns from values scoring cannot give; each problem is ONE
    WARNING line and a ``clv.status`` / ``clv_features.status`` tag."""
    run.tags({f"clv_features.{d}": line[:4999] for d, line in frames.clv_fits.items()})
    if fit is None:  # no transactions: nothing to fit, nothing to warn about
        return None, frames
    run.params(fit.mlflow_params())
    run.tags({k: v[:4999] for k, v in fit.mlflow_tags().items()})
    if fit.contractual:  # sBG: no BG/NBD features either way
        if fit.model is None:
            log.warning("CLV not fitted, so the scores have no CLV fields: %s", fit.reason)
        return fit.model, frames
    failed = [d for d, line in frames.clv_fits.items() if line.startswith("not fitted")]
    if fit.model is None:
        log.warning(
            "CLV not fitted, so the churn model is trained without BG/NBD features and the "
            "scored snapshot has no CLV fields: %s",
            fit.reason,
        )
        run.tags({"clv_features.status": "dropped: no final CLV model"})
        return None, without_clv_features(frames)
    if fit.status != "fitted":
        log.warning(
            "CLV fitted without a spend model (%s): scores carry P(alive) and expected "
            "purchases, no CLV in currency: %s",
            fit.model.model_,
            fit.reason,
        )
    if failed and len(failed) == len(frames.clv_fits):
        log.warning(
            "BG/NBD features could not be fitted at any cutoff, so the churn model is trained "
            "without them: %s",
            frames.clv_fits[failed[-1]],
        )
        run.tags({"clv_features.status": "dropped: not fitted at any cutoff"})
        return fit.model, without_clv_features(frames)
    if failed:
        log.warning(
            "BG/NBD features missing (NaN) at cutoffs %s: %s",
            ", ".join(failed),
            frames.clv_fits[failed[-1]],
        )
    return fit.model, frames


def evaluate(
    churn: ChurnModel, frames: Frames, plan: CutoffPlan, settings: TrainSettings
) -> tuple[dict[str, float], pd.Series, dict[str, np.ndarray]]:
    """Model, baseline and oracle metrics on the test half, and the model's and baselines'
    among its active customers (not lapsed, :func:`training.evaluate.active_customers`);
    returns flat metric names (``valid.<metric>``, ``baseline.<name>.<metric>``,
    ``active.valid.<metric>``, ``active.baseline.<name>.<metric>``, ``active.n``), the
    model's test probabilities and each baseline's test scores."""
    x = frames.features
    y = frames.test["churned"].astype(int)
    prob = pd.Series(churn.predict_proba(frames.test[x]), index=frames.test.index)
    metrics = {f"valid.{k}": v for k, v in classification_metrics(y, prob).items()}
    raw = churn.predict_raw(frames.test[x])
    metrics["valid.ece_uncalibrated"] = classification_metrics(y, raw)["ece"]
    oracle = oracle_metrics(settings.data_dir, cutoff=plan.validation, labels=y, predicted=prob)
    metrics.update({f"valid.{k}": v for k, v in oracle.items()})
    y_train = frames.train["churned"].astype(int)
    scores = baseline_scores(frames.train[x], y_train, frames.test[x])
    baselines = baseline_metrics(frames.train[x], y_train, frames.test[x], y, scores=scores)
    for name, values in baselines.items():
        metrics.update({f"baseline.{name}.{k}": v for k, v in values.items()})
    active = metrics_among_active(
        y,
        active_customers(frames.test),
        probabilities={"valid": prob.to_numpy()}
        | {f"baseline.{n}": s for n, s in scores.items() if n not in RANKING_ONLY},
        rankings={f"baseline.{n}": s for n, s in scores.items() if n in RANKING_ONLY},
    )
    metrics.update({f"active.{k}": v for k, v in active.items()})
    return metrics, prob, scores


@dataclass(frozen=True)
class CLVHoldout:
    """What :func:`evaluate_clv` measured: flat metrics (``clv_holdout.*``), and for the
    report the evaluation's tables and plots (PNG bytes by file name), or why there are none."""

    metrics: dict[str, float] = field(default_factory=dict)
    evaluation: HoldoutEvaluation | None = None
    plots: dict[str, bytes] = field(default_factory=dict)
    skipped: str = ""
    #: every CLV candidate on the holdout (local engine), and the learned model to serve
    candidates: CandidatesEvaluation | None = None
    learned: LearnedCLV | None = None
    #: which CLV model serves and why (tag ``clv.serving_model``)
    serving: str = ""


def evaluate_clv(
    loaded: LoadedTables,
    plan: CutoffPlan,
    run: tracking.TrainingRun,
    holdout: Callable[..., tuple[pd.DataFrame, pd.DataFrame]] | None = None,
    *,
    clv: AnyCLV | None = None,
    clv_horizon_days: int = DEFAULT_CLV_HORIZON_DAYS,
) -> CLVHoldout:
    """Calibration/holdout evaluation of the CLV model at the validation cutoff: fitted on
    purchases before it, compared with the horizon after it and with the naive baseline; the
    metrics, the conditional-expectation and decile tables and their plots go to MLflow; on
    the local engine also every CLV candidate side by side (``clv/candidates.csv``, metrics
    ``clv_candidates.<candidate>.<metric>``, tag ``clv.ranking_model``:
    :func:`training.clv_fit.compare_candidates`).

    ``clv``: the run's final model, whose count model, penalizer and spend setting are
    evaluated (nothing without one). When the learned ranking model wins the comparison
    (:data:`training.clv_fit.CHOICE_RULE`) it is refitted on the latest window for the bundle
    (:func:`training.clv_fit.ranking_clv`; ``clv_horizon_days`` for its total factors); the
    run records the choice (tags ``clv.serving_model`` / ``clv.serving_reason``, param
    ``clv.choice_rule``, artifact ``clv/learned.json``). The holdout window ends at the end of the data at the
    latest (explicit labels can sit a horizon before it). ``holdout(cutoff=, end=)`` gives
    the (summary, actuals) pair; default :func:`models.clv_evaluation.calibration_holdout` on
    the loaded transactions (the Dask engine gathers the same pair from its partitions)."""
    if loaded.tables.transactions is None:
        return CLVHoldout(skipped="no transactions table: no purchase history to evaluate")
    if clv is None:
        return CLVHoldout(skipped="no CLV model was fitted (see the clv.status tag)")
    if not isinstance(clv, CLVModel):
        return CLVHoldout(skipped="a contractual CLV model: no purchase holdout to evaluate")
    if not clv.spend:
        log.info("CLV holdout evaluation skipped: the model has no spend part")
        return CLVHoldout(skipped="the CLV model has no spend part: no CLV in currency")
    horizon = pd.Timedelta(days=plan.horizon_days)
    cutoff = min(plan.validation, plan.data_end - horizon)
    in_memory = holdout is None  # the candidates comparison reads the raw transactions
    if holdout is None:
        holdout = partial(calibration_holdout, loaded.tables.transactions)
    summary, actuals = holdout(cutoff=cutoff, end=cutoff + horizon)
    try:
        model = CLVModel(model=clv.model_, penalizer=clv.penalizer, spend=clv.spend).fit(
            summary, as_of=cutoff
        )
    except CLVModelError as exc:
        log.warning("CLV holdout evaluation skipped: %s", exc)
        return CLVHoldout(skipped=f"the CLV model did not fit at the cutoff: {exc}")
    evaluation = evaluate_holdout(model, summary, actuals, horizon_days=plan.horizon_days)
    run.text(
        evaluation.conditional_expectation.to_csv(index=False), "clv/conditional_expectation.csv"
    )
    run.text(evaluation.deciles.to_csv(index=False), "clv/deciles.csv")
    pngs = plots(evaluation)
    for name, png in pngs.items():
        run.png(png, f"clv/{name}")
    metrics = {f"clv_holdout.{k}": v for k, v in evaluation.metrics.items()}
    compared = learned = None
    serving = f"{clv.model_}: the Dask engine does not compare candidates"
    if in_memory:
        compared = compare_candidates(
            loaded.tables.transactions,
            cutoff=cutoff,
            end=cutoff + horizon,
            horizon_days=plan.horizon_days,
            penalizer=clv.penalizer,
            primary=clv.model_,
        )
        if compared is not None:
            run.text(compared.table.to_csv(), "clv/candidates.csv")
            run.text(compared.deciles.to_csv(index=False), "clv/candidate_deciles.csv")
            run.tags({"clv.ranking_model": compared.chosen})
            # a sample of a large cohort: the table and the choice are estimates
            run.tags({"clv.candidates_sample": compared.sample or "every customer"})
            metrics |= {f"clv_candidates.{k}": v for k, v in compared.metrics().items()}
        learned, serving = ranking_clv(
            loaded.tables.transactions,
            compared,
            btyd=clv,
            data_end=plan.data_end,
            horizon_days=plan.horizon_days,
            clv_horizon_days=clv_horizon_days,
        )
        if learned is not None:
            run.dict(learned.meta(), "clv/learned.json")
    return CLVHoldout(metrics, evaluation, pngs, "", compared, learned, serving)


def gate(
    settings: TrainSettings, frames: Frames, new_auc: float
) -> tuple[bool, str, dict[str, float]]:
    """Promote when there is no champion, when forced, or when the new model's ROC-AUC on the
    test half is at least the champion's on the same customers minus the tolerance."""
    if settings.force_promote:
        return True, "forced", {}
    current = tracking.champion_version(settings)
    if current is None:
        return True, "no champion yet", {}
    champion = tracking.load_version(settings, current)
    missing = set(champion.churn.features_) - set(frames.test.columns)
    if missing:
        return False, f"champion v{current} needs features the data lacks: {sorted(missing)}", {}
    y = frames.test["churned"].astype(int)
    champ_auc = classification_metrics(y, champion.churn.predict_proba(frames.test))["roc_auc"]
    ok = new_auc >= champ_auc - settings.gate_tolerance
    verdict = "passes" if ok else "fails"
    reason = (
        f"{verdict}: ROC-AUC {new_auc:.4f} vs champion v{current} {champ_auc:.4f} "
        f"on the same customers (tolerance {settings.gate_tolerance})"
    )
    return ok, reason, {"champion_roc_auc": champ_auc}


def _log_inputs(
    run: tracking.TrainingRun,
    loaded: LoadedTables,
    counts: dict,
    settings: TrainSettings,
    *,
    datasets: bool = True,
) -> None:
    run.tags({f"data.{n}.sha256": h for n, h in loaded.sha256.items()})
    run.params({f"rows_in.{n}": v for n, v in loaded.rows_in.items()})
    # rows quarantined and values blanked; the per-reason counts count every failed rule
    run.metrics({f"quarantined.{n}": len(r.quarantine) for n, r in loaded.results.items()})
    run.metrics({f"blanked.{n}": len(r.fields) for n, r in loaded.results.items()})
    run.metrics({f"quarantined.{n}.{r}": v for n, c in counts.items() for r, v in c.items()})
    run.dict(counts, "quarantine_counts.json")
    run.file(settings.quarantine_dir / "report.csv")
    if datasets:
        run.inputs(loaded)


def _plan_params(plan: CutoffPlan, frames: Frames) -> dict[str, Any]:
    return {
        "horizon_days": plan.horizon_days,
        "label_source": plan.label_source,
        "validation": plan.validation_kind,
        "validation_cutoff": plan.validation.isoformat(),
        "training_cutoffs": ",".join(c.date().isoformat() for c in plan.training),
        "data_end": plan.data_end.isoformat(),
        "train_rows": getattr(frames, "train_rows", len(frames.train)),
        "calibration_rows": len(frames.calibration),
        "test_rows": len(frames.test),
        "n_features": len(frames.features),
    }


def monitoring_reference(
    validation: pd.DataFrame,
    features: list[str],
    loaded: LoadedTables,
    counts: dict[str, dict[str, int]],
    plan: CutoffPlan,
    test_prob: Any,
) -> dict[str, Any]:
    """The reference ``make monitor`` compares each scored snapshot with: the feature profile
    of the validation cutoff's customers (the newest population the model saw, and the one
    its probabilities were calibrated on; the training cutoffs lie 6-9 months earlier and
    would mostly measure the calendar), the input tables at that cutoff, and the CBPE
    estimate of ROC-AUC on the test half (next to its realized ``valid.roc_auc``)."""
    profile = reference_profile(validation, features)
    tables = table_profile(
        loaded.tables, as_of=plan.validation, rows_in=loaded.rows_in, quarantined=counts
    )
    estimated = expected_roc_auc(np.asarray(test_prob, dtype=float))
    return {
        **profile,
        "as_of": plan.validation.isoformat(),
        "tables": tables,
        "expected_roc_auc": None if estimated != estimated else round(estimated, 6),
    }


@dataclass(frozen=True)
class EngineSteps:
    """The steps an engine implements (training/engine.py); the rest of :func:`train` --
    MLflow logging, evaluation, report, registration and the gate -- is the same for all."""

    load: Any = load_inputs
    build_frames: Any = build_frames
    fit_churn: Any = fit_churn
    fit_clv: Any = fit_clv
    evaluate_clv: Any = evaluate_clv
    log_datasets: bool = True


def plan_for(
    settings: TrainSettings, loaded: LoadedTables, counts: dict[str, dict[str, int]]
) -> CutoffPlan:
    """:func:`training.frames.plan_cutoffs` with the settings' horizon and cutoffs (``counts``:
    the quarantine counts, which word a labels-table error)."""
    return plan_cutoffs(
        loaded.tables,
        horizon_days=settings.horizon_days,
        n_training=settings.n_training_cutoffs,
        spacing_days=settings.cutoff_spacing_days,
        quarantine=counts,
    )


def train(settings: TrainSettings, engine: EngineSteps | None = None) -> TrainResult:
    """Run the whole training pipeline and return what it registered (``engine``: the local
    steps by default)."""
    engine = engine or EngineSteps()
    step = Steps()  # timed from here: the load is part of the run's time
    with step("load") as s:
        loaded, counts = engine.load(settings)
        s.rows = input_rows(loaded)
    # planned before the run opens: a data problem found here leaves no half-logged run
    with step("plan"):
        plan = plan_for(settings, loaded, counts)
    with ExitStack() as opened:
        with step("open_run"):  # a new sqlite store creates its tables here (seconds)
            run = opened.enter_context(tracking.training_run(settings))
        step.attach(run.metrics)
        with step("log_inputs"):
            _log_inputs(run, loaded, counts, settings, datasets=engine.log_datasets)

        with step("frames") as s:
            frames = engine.build_frames(loaded.tables, plan)
            check_frames(loaded.tables, plan, frames)
            run.params(_plan_params(plan, frames))
            run.tags({"validation": plan.validation_kind})
            s.rows = {
                "train rows": getattr(frames, "train_rows", len(frames.train)),
                "validation rows": len(frames.calibration) + len(frames.test),
            }

        with step("clv_fit"):
            fit = engine.fit_clv(loaded, plan) or fit_contractual_clv(
                loaded.tables,
                horizon_days=plan.horizon_days,
                data_end=plan.data_end,
                period_days=settings.contract_period_days,
                segment_column=settings.contract_segment_column,
            )
            clv, frames = settle_clv(fit, frames, run)
            if clv is not None:
                run.params({f"clv.{k}": round(v, 6) for k, v in clv.params_.items()})
                run.dict(clv.to_dict(), "clv/model.json")

        with step("churn_fit") as s, progress("churn fit", None, "boosting"):
            churn, calibration_losses = engine.fit_churn(frames, settings)
            s.rows = {"boosting rounds": churn.best_iteration_}
            run.params(
                {
                    "lgb.best_iteration": churn.best_iteration_,
                    "lgb.seed": settings.seed,
                    "lgb.scale_pos_weight": churn.params_.get("scale_pos_weight", 1.0),
                    "calibration.method": churn.calibrator_.method,
                }
            )
            run.metrics({f"calibration.log_loss.{k}": v for k, v in calibration_losses.items()})
            # validation log loss gained by the trees over the BG/NBD prior (trees kept if z > 2)
            run.metrics({f"churn.tree_gain.{k}": v for k, v in (churn.tree_gain_ or {}).items()})

        with step("clv_evaluate"):
            clv_holdout = engine.evaluate_clv(
                loaded, plan, run, clv=clv, clv_horizon_days=settings.clv_horizon_days
            )
            run.metrics(clv_holdout.metrics)

        with step("evaluate") as s, progress("evaluate", None, "baselines"):
            metrics, prob, baseline_test_scores = evaluate(churn, frames, plan, settings)
            run.metrics(metrics)
            s.rows = {"test customers scored": len(frames.test)}
            # every validation customer (both halves): the larger the counts, the narrower
            # the intervals; the labels are observed outcomes, not model output
            validation = pd.concat([frames.calibration, frames.test])
            drivers = churn_drivers(
                validation, as_of=plan.validation, horizon_days=plan.horizon_days
            )
            run.dict(drivers, "drivers.json")

        with step("register"):
            promote, reason, gate_metrics = gate(settings, frames, metrics["valid.roc_auc"])
            run.metrics({f"gate.{k}": v for k, v in gate_metrics.items()})
            bundle = Bundle(
                churn,
                clv,
                meta={
                    "horizon_days": plan.horizon_days,
                    "risk_thresholds": {"medium": settings.risk_medium, "high": settings.risk_high},
                    # how make score draws the bands (the report shows them on the test half)
                    "risk_band_rule": {
                        "mode": settings.risk_band_mode,
                        "high_share": settings.risk_high_share,
                        "medium_share": settings.risk_medium_share,
                    },
                    "label_source": plan.label_source,
                    "validation": plan.validation_kind,
                    "training": {
                        "data_end": plan.data_end.isoformat(),
                        "validation_cutoff": plan.validation.isoformat(),
                        "training_cutoffs": [c.isoformat() for c in plan.training],
                        "run_id": run.run_id,
                    },
                    "metrics": metrics,
                    "drivers": drivers,
                    # what make monitor compares each snapshot with (docs/monitoring.md)
                    REFERENCE_KEY: monitoring_reference(
                        validation, churn.features_, loaded, counts, plan, prob
                    ),
                },
                clv_learned=clv_holdout.learned,
            )
            # which CLV model serves, and why (every run, also when nothing was compared)
            run.params({"clv.choice_rule": CHOICE_RULE})
            why = clv_holdout.serving or clv_holdout.skipped or "no comparison"
            run.tags(
                {"clv.serving_model": bundle.clv_model or "none", "clv.serving_reason": why[:4999]}
            )
            version, _ = run.register(bundle)
            run.tags({"gate": reason, "model_version": version})
            run.describe(
                version,
                tracking.version_description(
                    settings, rows_in=loaded.rows_in, metrics=metrics, gate=reason, promoted=promote
                ),
            )

        with step("report"):
            info = RunInfo(
                model_name=settings.model_name,
                model_version=version,
                run_id=run.run_id,
                started=run.started(),
                git_commit=tracking.git_commit(),
                data_dir=str(settings.data_dir.resolve()),
                rows_in=loaded.rows_in,
                quarantined={n: len(r.quarantine) for n, r in loaded.results.items()},
                gate=reason,
            )
            html = render_report(
                churn=churn,
                frames=frames,
                prob=prob,
                metrics=metrics,
                plan=plan,
                info=info,
                meta=bundle.meta,
                baselines=baseline_test_scores,
                clv=clv_holdout,
            )
            run.text(html, "report.html")
            run.text(catalogue_markdown(), "feature_catalogue.md")
        if promote:
            tracking.promote(settings, version)
        line = summary_line(
            "train",
            step.elapsed,
            rows_in=loaded.rows_in,
            quarantined=quarantined_rows(loaded),
            customers=len(frames.test),
            customers_label="test customers scored",
            version=version,
        )
        log.info("%s", line)
        step.record({"time.total_s": step.elapsed, "rss.peak_gib": step.peak_gib})
    return TrainResult(run.run_id, version, promote, reason, metrics, line)


def prepare(settings: TrainSettings) -> tuple[LoadedTables, CutoffPlan, Frames]:
    """Load, validate and build the frames as ``train`` does (``make features``, ``make
    evaluate`` and ``make promote`` share it)."""
    loaded, counts = load_inputs(settings)
    plan = plan_for(settings, loaded, counts)
    frames = build_frames(loaded.tables, plan)
    check_frames(loaded.tables, plan, frames)
    return loaded, plan, frames


def evaluate_version(
    settings: TrainSettings,
    version: str | None,
    prepared: tuple[LoadedTables, CutoffPlan, Frames] | None = None,
) -> tuple[str, dict[str, float]]:
    """Metrics of a registered version (default: the champion) on the current data's test
    half, with the baselines and the oracle; returns the version and the metrics."""
    version = version or tracking.champion_version(settings)
    if version is None:
        raise RuntimeError("no champion to evaluate; run 'make train' first")
    _, plan, frames = prepared or prepare(settings)
    bundle = tracking.load_version(settings, version)
    missing = set(bundle.churn.features_) - set(frames.test.columns)
    if missing:
        raise RuntimeError(f"v{version} needs features the data lacks: {sorted(missing)}")
    metrics, _, _ = evaluate(bundle.churn, frames, plan, settings)
    return version, metrics


def promote_version(settings: TrainSettings, version: str) -> tuple[bool, str]:
    """Make ``version`` the champion if it passes the gate on the current data (or if
    ``force_promote``); returns whether it moved and why."""
    if settings.force_promote:
        tracking.promote(settings, version)
        return True, "forced"
    prepared = prepare(settings)
    _, metrics = evaluate_version(settings, version, prepared)
    ok, reason, _ = gate(settings, prepared[2], metrics["valid.roc_auc"])
    if ok:
        tracking.promote(settings, version)
    return ok, reason
