"""Settings of the training, scoring and data commands: one pydantic-settings object.

Every value can be set by an environment variable ``CHURN_<NAME>`` (or a ``.env`` file);
``MLFLOW_TRACKING_URI`` is read under its standard name. Command-line flags of
``python -m training`` override both.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TrainSettings(BaseSettings):
    """What ``make data``, ``make train`` and ``make score`` need."""

    model_config = SettingsConfigDict(env_prefix="CHURN_", env_file=".env", extra="ignore")

    data_dir: Path = Path("data/demo")
    #: TOML column map (user column = canonical column, per table); default:
    #: ``<data_dir>/columns.toml`` when it exists (training/io.py).
    column_map: Path | None = None
    horizon_days: int = Field(90, ge=1, le=3650)
    #: Scoring time (ISO-8601); default: midnight after the newest event.
    as_of: str | None = None
    mlflow_tracking_uri: str = Field(
        "sqlite:///mlflow.db",
        validation_alias=AliasChoices("CHURN_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"),
    )
    #: Artifact folder for a newly created experiment (local stores only).
    mlflow_artifact_root: Path = Path("mlartifacts")
    experiment_name: str = "churn-clv"
    model_name: str = "churn-clv"
    scores_dir: Path = Path("var/scores")
    quarantine_dir: Path = Path("var/quarantine")
    #: Events (and signup dates, label ``as_of``) later than the wall clock plus this many
    #: minutes are quarantined as in the future (docs/data-contract.md); the slack is for
    #: clocks of the exporting systems that run ahead.
    clock_skew_minutes: int = Field(15, ge=0, le=7 * 24 * 60)
    #: Training cutoffs before the validation cutoff, and their spacing in days.
    n_training_cutoffs: int = Field(4, ge=1, le=52)
    cutoff_spacing_days: int = Field(30, ge=1)
    #: A new model is promoted if its validation ROC-AUC is at least the champion's minus this.
    gate_tolerance: float = Field(0.005, ge=0)
    force_promote: bool = False
    #: Calibrated churn probability at which a customer is in the medium / high risk band.
    risk_medium: float = Field(0.3, gt=0, lt=1)
    risk_high: float = Field(0.6, gt=0, lt=1)
    #: Customer attribute written as ``segment`` in the scored snapshot (the ``segment`` filter
    #: of ``/v1/at-risk``); default: the ``segment`` column, else ``plan``, when present.
    segment_column: str | None = None
    seed: int = 7
    #: ``local`` (pandas in this process) or ``dask`` (training/dask_engine.py): env ``ENGINE``.
    engine: Literal["local", "dask"] = Field(
        "local", validation_alias=AliasChoices("CHURN_ENGINE", "ENGINE")
    )
    #: Address of a running Dask scheduler (``tcp://host:8786``); default with ``engine=dask``:
    #: a local cluster of ``dask_workers`` worker processes. Env ``DASK_SCHEDULER``.
    dask_scheduler: str | None = Field(
        None, validation_alias=AliasChoices("CHURN_DASK_SCHEDULER", "DASK_SCHEDULER")
    )
    dask_workers: int = Field(2, ge=1)
    #: Customer partitions (each customer's rows in one); 0: about 100,000 customers each.
    dask_partitions: int = Field(0, ge=0)
    #: Where the Dask engine stages validated, co-partitioned tables and scored parts.
    dask_work_dir: Path = Path("var/dask")


@lru_cache
def get_settings() -> TrainSettings:
    """The settings from the environment, built once."""
    return TrainSettings()
