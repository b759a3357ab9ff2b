"""The server's champion: the version of ``model_name`` holding ``model_alias``, read by the
project's one verified loader (:mod:`models.registry`: sha256 checked before parsing, never
``mlflow.*.load_model``), downloaded under ``model_cache_dir``."""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow

from models.registry import (
    LoadedModel,
    ModelLoadError,
    load_model_version,
    redact_uri,
    registry_client,
)
from serving.config import Settings

log = logging.getLogger(__name__)

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
    """The training report (``report.html`` of the run that produced ``version``), downloaded
    once under ``model_cache_dir/reports``; None when the run logged none or the registry
    cannot be reached. Only downloaded and served as a file (sandboxed), never executed."""
    target = Path(settings.model_cache_dir) / "reports" / f"report-v{version}.html"
    if target.is_file():
        return target
    try:
        client = registry_client(settings.mlflow_tracking_uri)
        mv = client.get_model_version(settings.model_name, version)
        if not mv.run_id:
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        path = mlflow.artifacts.download_artifacts(
            run_id=mv.run_id,
            artifact_path="report.html",
            dst_path=str(target.parent / f".v{version}"),
            tracking_uri=settings.mlflow_tracking_uri,
        )
        Path(path).replace(target)
    except Exception as exc:  # no report logged, or the registry is down: the page says so
        log.warning("training report of version %s not available: %s", version, exc)
        return None
    return target
