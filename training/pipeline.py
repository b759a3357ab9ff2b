"""``make train``: a short list of named steps, each logging to MLflow.

1. load and validate the input tables (quarantine bad rows);
2. plan cutoffs and build point-in-time training and validation frames;
3. fit the churn model (early stopping on the out-of-time validation cutoff);
4. fit the CLV model on all transactions up to the end of the data;
5. evaluate on the validation cutoff (and against the demo oracle, when there is one);
6. register the bundle; 7. move the champion alias if the gate passes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import pandas as pd

from features.build import build_features
from features.catalogue import catalogue_markdown
from features.transactions import T_DAYS
from models.bundle import Bundle
from models.churn import ChurnModel
from models.clv import CLVModel
from models.scoring import DEFAULT_THRESHOLDS
from training import tracking
from training.config import TrainSettings
from training.evaluate import classification_metrics, oracle_metrics
from training.frames import CutoffPlan, labelled_frame, plan_cutoffs
from training.io import LoadedTables, load_tables, write_quarantine

log = logging.getLogger(__name__)
NON_FEATURES = ("churned", "cutoff")


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    run_id: str
    version: str
    promoted: bool
    gate_reason: str
    metrics: dict[str, float]


def _step(name: str) -> float:
    log.info("step: %s", name)
    return time.perf_counter()


def build_frames(loaded: LoadedTables, plan: CutoffPlan) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stacked training frames (all training cutoffs) and the validation frame."""
    tables = loaded.tables
    train = [labelled_frame(tables, as_of=c, horizon_days=plan.horizon_days) for c in plan.training]
    valid = labelled_frame(tables, as_of=plan.validation, horizon_days=plan.horizon_days)
    stacked = pd.concat(train)
    categorical = [c for c in valid.columns if isinstance(valid[c].dtype, pd.CategoricalDtype)]
    for col in categorical:
        stacked[col] = stacked[col].astype("string").astype("category")
    return stacked, valid


def fit_churn(train: pd.DataFrame, valid: pd.DataFrame, settings: TrainSettings) -> ChurnModel:
    """LightGBM on the stacked training frames, early-stopped on the validation frame."""
    features = [c for c in train.columns if c not in NON_FEATURES]
    model = ChurnModel(params={"seed": settings.seed})
    return model.fit(
        train[features],
        train["churned"].astype(int),
        X_valid=valid[features],
        y_valid=valid["churned"].astype(int),
    )


def fit_clv(loaded: LoadedTables, plan: CutoffPlan) -> CLVModel | None:
    """BG/NBD + Gamma-Gamma on every purchase before the end of the data; ``None`` without
    transactions (snapshot-style data has no purchase history)."""
    if loaded.tables.transactions is None:
        return None
    summary = build_features(loaded.tables, as_of=plan.data_end)
    return CLVModel().fit(summary.dropna(subset=[T_DAYS]))


def gate(
    settings: TrainSettings, valid: pd.DataFrame, new_auc: float
) -> tuple[bool, str, dict[str, float]]:
    """Promote when there is no champion, when forced, or when the new model's validation
    ROC-AUC is at least the champion's on the same frame minus the tolerance."""
    if settings.force_promote:
        return True, "forced", {}
    current = tracking.champion_version(settings)
    if current is None:
        return True, "no champion yet", {}
    champion = tracking.load_version(settings, current)
    missing = set(champion.churn.features_) - set(valid.columns)
    if missing:
        return False, f"champion v{current} needs features the data lacks: {sorted(missing)}", {}
    champ_auc = classification_metrics(
        valid["churned"].astype(int), champion.churn.predict_proba(valid)
    )["roc_auc"]
    ok = new_auc >= champ_auc - settings.gate_tolerance
    verdict = "passes" if ok else "fails"
    reason = (
        f"{verdict}: ROC-AUC {new_auc:.4f} vs champion v{current} {champ_auc:.4f} "
        f"(tolerance {settings.gate_tolerance})"
    )
    return ok, reason, {"champion_roc_auc": champ_auc}


def train(settings: TrainSettings) -> TrainResult:
    """Run the whole training pipeline and return what it registered."""
    t0 = _step("load and validate tables")
    loaded = load_tables(settings.data_dir)
    counts = write_quarantine(loaded, settings.quarantine_dir)
    with tracking.training_run(settings, run_name="train") as run:
        run.tags({f"data.{n}.sha256": h for n, h in loaded.sha256.items()})
        run.params({f"rows_in.{n}": v for n, v in loaded.rows_in.items()})
        run.metrics({f"quarantined.{n}": sum(c.values()) for n, c in counts.items()})
        run.dict(counts, "quarantine_counts.json")
        run.metrics({"time.load_s": time.perf_counter() - t0})

        t0 = _step("plan cutoffs and build frames")
        plan = plan_cutoffs(
            loaded.tables,
            horizon_days=settings.horizon_days,
            n_training=settings.n_training_cutoffs,
            spacing_days=settings.cutoff_spacing_days,
        )
        train_frame, valid = build_frames(loaded, plan)
        run.params(
            {
                "horizon_days": plan.horizon_days,
                "label_source": plan.label_source,
                "validation_cutoff": plan.validation.isoformat(),
                "training_cutoffs": ",".join(c.date().isoformat() for c in plan.training),
                "data_end": plan.data_end.isoformat(),
                "train_rows": len(train_frame),
                "valid_rows": len(valid),
            }
        )
        run.metrics({"time.frames_s": time.perf_counter() - t0})

        t0 = _step("fit churn model")
        churn = fit_churn(train_frame, valid, settings)
        run.params({"lgb.best_iteration": churn.best_iteration_, "lgb.seed": settings.seed})
        run.metrics({"time.churn_fit_s": time.perf_counter() - t0})

        t0 = _step("fit CLV model")
        clv = fit_clv(loaded, plan)
        if clv is not None:
            run.params({f"clv.{k}": round(v, 6) for k, v in clv.params_.items()})
        run.metrics({"time.clv_fit_s": time.perf_counter() - t0})

        _step("evaluate on the validation cutoff")
        prob = pd.Series(churn.predict_proba(valid), index=valid.index)
        metrics = {
            f"valid.{k}": v for k, v in classification_metrics(valid["churned"], prob).items()
        }
        oracle = oracle_metrics(
            settings.data_dir,
            cutoff=plan.validation,
            labels=valid["churned"].astype(int),
            predicted=prob,
        )
        metrics.update({f"valid.{k}": v for k, v in oracle.items()})
        run.metrics(metrics)
        run.text(catalogue_markdown(), "feature_catalogue.md")

        _step("register and gate")
        promote, reason, gate_metrics = gate(settings, valid, metrics["valid.roc_auc"])
        run.metrics({f"gate.{k}": v for k, v in gate_metrics.items()})
        bundle = Bundle(
            churn,
            clv,
            meta={
                "horizon_days": plan.horizon_days,
                "risk_thresholds": DEFAULT_THRESHOLDS,
                "label_source": plan.label_source,
                "training": {
                    "data_end": plan.data_end.isoformat(),
                    "validation_cutoff": plan.validation.isoformat(),
                    "training_cutoffs": [c.isoformat() for c in plan.training],
                    "run_id": run.run_id,
                },
                "metrics": metrics,
            },
        )
        version, _ = run.register(bundle)
        run.tags({"gate": reason, "model_version": version})
        if promote:
            tracking.promote(settings, version)
    return TrainResult(run.run_id, version, promote, reason, metrics)
