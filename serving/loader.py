"""The server's champion: the version of ``model_name`` holding ``model_alias``, read by the
project's one verified loader (:mod:`models.registry`: sha256 checked before parsing, never
``mlflow.*.load_model``), downloaded under ``model_cache_dir``."""

from __future__ import annotations

from pathlib import Path

from models.registry import (
    LoadedModel,
    ModelLoadError,
    download_run_file,
    load_model_version,
    redact_uri,
)
from serving.config import Settings

__all__ = ["LoadedModel", "ModelLoadError", "load_champion", "redact_uri", "training_report_path"]


def load_champion(settings: Settings) -> LoadedModel:
    """Load the version of ``settings.model_name`` that holds ``settings.model_alias``.

    Raises
    ------
    ModelLoadError
        see :func:`models.registry.load_model_version`; ``no_champion`` when no version
        holds the alias.
    """
    return load_model_version(
        settings.mlflow_tracking_uri,
        settings.model_name,
        alias=settings.model_alias,
        download_dir=settings.model_cache_dir,
    )


def training_report_path(settings: Settings, version: str) -> Path | None:
    """The training report of ``version`` (``report.html`` of its run), copied once under
    ``model_cache_dir/reports``; None when there is none (:func:`models.registry.download_run_file`)."""
    target = Path(settings.model_cache_dir) / "reports" / f"report-v{version}.html"
    return download_run_file(
        settings.mlflow_tracking_uri, settings.model_name, version, "report.html", target
    )
