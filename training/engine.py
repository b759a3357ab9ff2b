"""The engine switch: ``CHURN_ENGINE=local`` (pandas in this process, the default) or
``CHURN_ENGINE=dask`` (training/dask_engine.py, on ``CHURN_DASK_SCHEDULER`` or a local cluster
of worker processes); ``make train ENGINE=dask DASK_SCHEDULER=...`` passes them as flags.

``make train``, ``make score`` and ``make features`` call these functions; both engines run
the same feature, label, model and scoring code, and training logs, registers and gates
through :func:`training.pipeline.train` either way.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from features.time import as_utc
from training.batch import ScoreResult
from training.config import TrainSettings
from training.io import input_rows, quarantined_rows
from training.progress import summary_line

if TYPE_CHECKING:  # training.pipeline imports the report (matplotlib): make score needs neither
    from training.frames import CutoffPlan, Frames
    from training.pipeline import TrainResult


def train(settings: TrainSettings) -> TrainResult:
    """``make train`` on the configured engine."""
    from training import pipeline
    from training.pipeline import EngineSteps

    if settings.engine == "local":
        return pipeline.train(settings)
    from training import dask_engine as de

    with de.dask_client(settings) as client:
        staged: dict[str, de.Staged] = {}

        def load(s: TrainSettings):
            loaded, staged["tables"], counts = de.stage_inputs(s)
            return loaded, counts

        def fit_clv(loaded, plan: CutoffPlan):
            if loaded.tables.transactions is None:
                return None
            return de.fit_clv_distributed(staged["tables"], as_of=plan.data_end, record_window=True)

        def evaluate_clv(loaded, plan, run, **kw) -> pipeline.CLVHoldout:
            holdout = partial(de.clv_holdout_distributed, staged["tables"], client)
            return pipeline.evaluate_clv(loaded, plan, run, holdout=holdout, **kw)

        steps = EngineSteps(
            load=load,
            build_frames=lambda tables, plan: de.build_frames_distributed(staged["tables"], plan),
            fit_churn=lambda frames, s: de.fit_churn_distributed(frames, s, client),
            fit_clv=fit_clv,
            evaluate_clv=evaluate_clv,
            log_datasets=False,
        )
        return pipeline.train(settings, steps)


def score(settings: TrainSettings) -> ScoreResult:
    """``make score`` on the configured engine."""
    from training import batch

    if settings.engine == "local":
        return batch.score(settings)
    from training import dask_engine as de
    from training import tracking
    from training.batch import log_score_run
    from training.frames import data_end
    from training.progress import Steps

    # the local engine's steps where they exist here (features are built in the score step,
    # per partition, with the snapshot parts), logged to MLflow the same way
    step = Steps()
    with ExitStack() as cluster:
        with step("load") as s:
            bundle, version = tracking.load_champion(settings)  # before the cluster starts
            cluster.enter_context(de.dask_client(settings))
            loaded, staged, _ = de.stage_inputs(settings)
            s.rows = input_rows(loaded)
        as_of = as_utc(settings.as_of) if settings.as_of else data_end(loaded.tables)
        with step("score") as s:
            result = de.score_distributed(staged, bundle, version, settings, as_of=as_of)
            s.rows = {"customers scored": result.rows}
    line = summary_line(
        "score",
        step.elapsed,
        rows_in=loaded.rows_in,
        quarantined=quarantined_rows(loaded),
        customers=result.rows,
        version=version,
    )
    step.record({"time.total_s": step.elapsed, "rss.peak_gib": step.peak_gib})
    run_id = log_score_run(settings, step, version, as_of, result.path, result.rows)
    return replace(result, summary=line, run_id=run_id)


@dataclass(frozen=True)
class FeatureOutput:
    """What ``make features`` wrote."""

    plan: CutoffPlan
    rows: dict[str, int]
    n_features: int


def features(settings: TrainSettings, out: Path) -> FeatureOutput:
    """``make features``: the training and validation frames as Parquet in ``out``
    (``train.parquet`` is a folder of parts on the Dask engine)."""
    from training.frames import plan_cutoffs

    out.mkdir(parents=True, exist_ok=True)
    if settings.engine == "local":
        from training.pipeline import prepare

        _, plan, frames = prepare(settings)
        for name in ("train", "calibration", "test"):
            getattr(frames, name).to_parquet(out / f"{name}.parquet")
        return FeatureOutput(plan, _rows(frames), len(frames.features))
    from training import dask_engine as de

    with de.dask_client(settings):
        loaded, staged, _ = de.stage_inputs(settings)
        plan = plan_cutoffs(
            loaded.tables,
            horizon_days=settings.horizon_days,
            n_training=settings.n_training_cutoffs,
            spacing_days=settings.cutoff_spacing_days,
        )
        frames = de.build_frames_distributed(staged, plan)
        frames.train_all.to_parquet(str(out / "train.parquet"))
        for name in ("calibration", "test"):
            getattr(frames, name).to_parquet(out / f"{name}.parquet")
        rows = {**_rows(frames), "train": frames.train_rows}
        return FeatureOutput(plan, rows, len(frames.features))


def _rows(frames: Frames) -> dict[str, int]:
    return {n: len(getattr(frames, n)) for n in ("train", "calibration", "test")}
