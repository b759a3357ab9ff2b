"""Everything training does with MLflow: runs, logging, registration, the champion alias.

The only module of ``training/`` that imports MLflow. A model version is a bundle folder
(MLflow's LightGBM flavour, so MLflow's own tools recognise it, plus our JSON and manifest)
logged as run artifacts and registered under one name; the manifest's sha256 is a version tag
that readers check before they parse anything.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow
from mlflow import MlflowClient

# mlflow defines its dataset sources and constructors at import time, out of mypy's sight
from mlflow.data.sources import LocalArtifactDatasetSource  # type: ignore[attr-defined]
from mlflow.exceptions import MlflowException

from models.bundle import Bundle, read_bundle, write_bundle
from training.config import TrainSettings
from training.io import LoadedTables

log = logging.getLogger(__name__)
CHAMPION = "champion"
MANIFEST_TAG = "manifest_sha256"
BUNDLE_PATH = "bundle"


def _client(settings: TrainSettings) -> MlflowClient:
    uri = settings.mlflow_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _experiment_id(settings: TrainSettings) -> str:
    client = _client(settings)
    exp = client.get_experiment_by_name(settings.experiment_name)
    if exp is not None:
        return exp.experiment_id
    local = not settings.mlflow_tracking_uri.startswith(("http://", "https://", "databricks"))
    location = settings.mlflow_artifact_root.resolve().as_uri() if local else None
    return client.create_experiment(settings.experiment_name, artifact_location=location)


def git_commit() -> str:
    """The source tree's commit (``unknown`` outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass
class TrainingRun:
    """An open MLflow run; the pipeline's steps log through it."""

    settings: TrainSettings
    run_id: str

    def params(self, values: dict[str, Any]) -> None:
        mlflow.log_params({k: str(v)[:500] for k, v in values.items()})

    def metrics(self, values: dict[str, float]) -> None:
        mlflow.log_metrics({k: float(v) for k, v in values.items() if v == v})

    def tags(self, values: dict[str, str]) -> None:
        mlflow.set_tags(values)

    def text(self, text: str, name: str) -> None:
        mlflow.log_text(text, name)

    def dict(self, data: dict[str, Any], name: str) -> None:
        mlflow.log_dict(data, name)

    def png(self, data: bytes, name: str) -> None:
        """PNG bytes as a run artifact at ``name``."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(name).name
            path.write_bytes(data)
            mlflow.log_artifact(str(path), artifact_path=str(Path(name).parent) or None)

    def file(self, path: Path) -> None:
        """A local file as a run artifact (when it exists)."""
        if path.is_file():
            mlflow.log_artifact(str(path))

    def inputs(self, loaded: LoadedTables) -> None:
        """Each validated input table as an MLflow dataset input (name, source file, digest,
        schema), so the UI shows what a run was trained on."""
        for name, table in loaded.tables.present().items():
            source = LocalArtifactDatasetSource(str(loaded.files[name].resolve()))
            dataset = mlflow.data.from_pandas(  # type: ignore[attr-defined]
                table, source=source, name=name
            )
            mlflow.log_input(dataset, context="training")

    def register(self, bundle: Bundle) -> tuple[str, str]:
        """Log the bundle and register it as a new version; returns (version, manifest sha)."""
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / BUNDLE_PATH
            booster = lgb.Booster(model_str=bundle.churn.model_text())
            # Explicit requirements: otherwise MLflow infers them by loading the model in a
            # subprocess, which costs seconds per run.
            mlflow.lightgbm.save_model(
                booster, str(folder), pip_requirements=[f"lightgbm=={lgb.__version__}"]
            )
            digest = write_bundle(folder, bundle)
            mlflow.log_artifacts(str(folder), artifact_path=BUNDLE_PATH)
        version = mlflow.register_model(
            f"runs:/{self.run_id}/{BUNDLE_PATH}",
            self.settings.model_name,
            tags={MANIFEST_TAG: digest},
        )
        return str(version.version), digest


@contextmanager
def training_run(settings: TrainSettings, run_name: str | None = None) -> Iterator[TrainingRun]:
    """Start a run in the project's experiment, tagged with the git commit."""
    # mlflow.start_run and mlflow.log_* use the process-wide URIs: set them for the run and
    # put back what was there, so a run never redirects other MLflow users in the process.
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    try:
        experiment_id = _experiment_id(settings)
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
            mlflow.set_tag("git_commit", git_commit())
            yield TrainingRun(settings, run.info.run_id)
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])


def champion_version(settings: TrainSettings) -> str | None:
    """The version number holding the champion alias, or ``None``."""
    try:
        return str(
            _client(settings).get_model_version_by_alias(settings.model_name, CHAMPION).version
        )
    except MlflowException:
        return None


def load_version(settings: TrainSettings, version: str) -> Bundle:
    """Download a registered version and read it, verifying its manifest digest first."""
    client = _client(settings)
    mv = client.get_model_version(settings.model_name, version)
    digest = mv.tags.get(MANIFEST_TAG)
    if not digest:
        raise RuntimeError(f"model version {version} has no {MANIFEST_TAG} tag; refusing to load")
    # Ask our own client for the files' location: a models:/ URI would be resolved against the
    # process-wide registry, not the one configured here (MLflow 3.x).
    source = client.get_model_version_download_uri(settings.model_name, version)
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tmp)
        return read_bundle(path, expected_manifest_sha256=digest)


def load_champion(settings: TrainSettings) -> tuple[Bundle, str]:
    """The champion's bundle and version; raises ``RuntimeError`` when there is none."""
    version = champion_version(settings)
    if version is None:
        raise RuntimeError(
            f"no '{CHAMPION}' version of model '{settings.model_name}'; run 'make train' first"
        )
    return load_version(settings, version), version


def promote(settings: TrainSettings, version: str) -> None:
    """Move the champion alias to ``version`` (the last step of a training run)."""
    _client(settings).set_registered_model_alias(settings.model_name, CHAMPION, version)


def download_report(settings: TrainSettings, version: str, out_dir: Path) -> Path:
    """Copy the HTML report of the run that produced ``version`` into ``out_dir``."""
    mv = _client(settings).get_model_version(settings.model_name, version)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = mlflow.artifacts.download_artifacts(
        run_id=mv.run_id,
        artifact_path="report.html",
        dst_path=str(out_dir),
        tracking_uri=settings.mlflow_tracking_uri,
    )
    target = out_dir / f"report-v{version}.html"
    Path(path).replace(target)
    return target
