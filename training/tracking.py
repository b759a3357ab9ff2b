"""Everything training does with MLflow: runs, logging, registration, the champion alias.

The only module of ``training/`` that imports MLflow. A model version is a bundle folder
(MLflow's LightGBM flavour, so MLflow's own tools recognise it, plus our JSON and manifest)
logged as run artifacts and registered under one name; the manifest's sha256 is a version tag
that readers check before they parse anything. Reading a version back goes through the one
verified loader, :mod:`models.registry`, which the server uses too.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow
import pandas as pd
from mlflow import MlflowClient

# mlflow defines its dataset sources and constructors at import time, out of mypy's sight
from mlflow.data.meta_dataset import MetaDataset
from mlflow.data.sources import LocalArtifactDatasetSource  # type: ignore[attr-defined]
from mlflow.types import ColSpec, DataType, Schema

from models import registry
from models.bundle import Bundle, write_bundle
from models.contract import MANIFEST_TAG
from training.config import TrainSettings
from training.io import LoadedTables

log = logging.getLogger(__name__)
BUNDLE_PATH = "bundle"
#: MLflow 3's UI picks an experiment's start page by this tag: without it the UI guesses (and
#: opened ours on the GenAI traces page); ``custom_model_development`` opens on the runs table.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
#: The description the MLflow UI shows for an experiment, run or version (markdown).
NOTE_TAG = "mlflow.note.content"
#: Which process on which machine runs a run, so the next run can tell a dead one.
PID_TAG, HOST_TAG = "process.pid", "process.host"
FAILED_REASON_TAG = "failed_reason"
#: A run still RUNNING this long after its start is taken as abandoned, whatever its host
#: (a run on 2M customers takes well under an hour on the Dask engine).
STALE_RUN_AGE = timedelta(hours=24)

EXPERIMENT_NOTE = (
    "Training runs of `make train` (churn + CLV), one per run, named "
    "`DATA hHORIZON YYYY-MM-DD HH:MM` (UTC). Columns worth showing in the runs table: "
    "`valid.roc_auc`, `baseline.logistic.roc_auc`, `baseline.bgnbd.roc_auc`, `valid.pr_auc`, "
    "`valid.ece`, `valid.lift_top10`; the `gate` tag says whether the version was promoted."
)
MODEL_NOTE = (
    "Churn probability (LightGBM, calibrated, boosted from a BG/NBD prior) and customer "
    "lifetime value (BG/NBD or Pareto/NBD + Gamma-Gamma) per customer. The `champion` alias "
    "is the version `make score` and the server use; each version's description gives its "
    "data, its metrics next to the baselines and the gate's verdict. A version's files are "
    "LightGBM text and JSON with a sha256 manifest (docs/model-artifacts.md in the project); "
    "nothing in them is pickled."
)


def _client(settings: TrainSettings) -> MlflowClient:
    return registry.registry_client(settings.mlflow_tracking_uri)


def _experiment_id(settings: TrainSettings) -> str:
    """The project's experiment, created on first use, set up as a model-training experiment
    (also when it was created before, by an older version or by hand)."""
    client = _client(settings)
    exp = client.get_experiment_by_name(settings.experiment_name)
    if exp is None:
        local = not settings.mlflow_tracking_uri.startswith(("http://", "https://", "databricks"))
        location = settings.mlflow_artifact_root.resolve().as_uri() if local else None
        tags = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND, NOTE_TAG: EXPERIMENT_NOTE}
        return client.create_experiment(
            settings.experiment_name, artifact_location=location, tags=tags
        )
    if exp.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    if not exp.tags.get(NOTE_TAG):
        client.set_experiment_tag(exp.experiment_id, NOTE_TAG, EXPERIMENT_NOTE)
    return exp.experiment_id


def default_run_name(
    settings: TrainSettings, *, now: datetime | None = None, kind: str = ""
) -> str:
    """A name that tells runs apart in the UI: data folder, horizon, engine when not local,
    what the run is when it is not training (``kind``, e.g. ``score v3``), start time in UTC
    to the minute, e.g. ``demo h90 2026-12-01 21:30`` or ``demo h90 score v3 2026-12-01 21:30``."""
    now = now or datetime.now(UTC)
    folder = settings.data_dir.resolve().name or str(settings.data_dir)
    engine = "" if settings.engine == "local" else f" {settings.engine}"
    what = f" {kind}" if kind else ""
    return f"{folder} h{settings.horizon_days}{engine}{what} {now:%Y-%m-%d %H:%M}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def fail_abandoned_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark runs left RUNNING by a process that is gone as FAILED; returns their ids.

    A run is abandoned when it was started on this host by a process that no longer exists
    (killed, out of memory, machine restarted), or when it started more than
    :data:`STALE_RUN_AGE` ago (any host). Each gets a ``failed_reason`` tag saying which.
    MLflow itself closes a run only when its process exits through Python; a SIGKILL leaves it
    RUNNING forever. A pid taken over by a new process keeps its run RUNNING until the age
    limit.
    """
    host = socket.gethostname()
    now_ms = int(time.time() * 1000)
    failed = []
    runs = client.search_runs(
        [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000
    )
    for run in runs:
        tags = run.data.tags
        pid = tags.get(PID_TAG, "")
        age = timedelta(milliseconds=now_ms - run.info.start_time)
        if tags.get(HOST_TAG) == host and pid.isdigit() and not _process_alive(int(pid)):
            reason = f"process {pid} on {host} ended without closing the run"
        elif age > STALE_RUN_AGE:
            reason = (
                f"still RUNNING {age.total_seconds() / 3600:.0f} h after its start "
                f"(limit {STALE_RUN_AGE.total_seconds() / 3600:.0f} h): taken as abandoned"
            )
        else:
            continue
        client.set_tag(run.info.run_id, FAILED_REASON_TAG, reason)
        client.set_terminated(run.info.run_id, status="FAILED")
        log.warning("run %s (%s) marked FAILED: %s", run.info.run_id, run.info.run_name, reason)
        failed.append(run.info.run_id)
    return failed


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

    def started(self) -> str:
        """When the run started, ISO-8601 in UTC to the second."""
        ms = mlflow.get_run(self.run_id).info.start_time
        return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

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
        """Each input table as an MLflow dataset input: name, source file, the file's sha256
        as digest, the schema of the validated table and its row counts (:func:`table_dataset`).
        Built from metadata only, so it costs milliseconds whatever the size (MLflow's
        ``from_pandas`` hashes and type-infers every row: 17 s for 2M rows)."""
        for name, table in loaded.tables.present().items():
            result = loaded.results[name]
            dataset = table_dataset(
                name,
                table,
                path=loaded.files[name],
                sha256=loaded.sha256[name],
                rows={"num_rows": len(table), "quarantined_rows": len(result.quarantine)},
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

    def describe(self, version: str, description: str) -> None:
        """Give ``version`` and this run the description the UI shows (markdown), and the
        registered model its own when it has none (a description edited in the UI stays)."""
        client = _client(self.settings)
        name = self.settings.model_name
        client.update_model_version(name, version, description=description)
        mlflow.set_tag(NOTE_TAG, description)
        if not client.get_registered_model(name).description:
            client.update_registered_model(name, description=MODEL_NOTE)


class _TableDataset(MetaDataset):
    """A dataset known by its file digest and schema, with a row-count profile (MLflow's
    :class:`MetaDataset` has none)."""

    def __init__(self, source: Any, *, name: str, digest: str, schema: Schema, profile: dict):
        self._profile = profile
        super().__init__(source, name=name, digest=digest, schema=schema)

    @property
    def profile(self) -> dict:
        return self._profile

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "profile": json.dumps(self._profile)}


def _mlflow_type(dtype: Any) -> DataType:
    """The MLflow column type of a pandas dtype (by kind; text and categories are strings)."""
    if pd.api.types.is_bool_dtype(dtype):
        return DataType.boolean
    if pd.api.types.is_integer_dtype(dtype):
        return DataType.long
    if pd.api.types.is_float_dtype(dtype):
        return DataType.double
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return DataType.datetime
    return DataType.string


def table_dataset(
    name: str, table: pd.DataFrame, *, path: Path, sha256: str, rows: dict[str, int]
) -> MetaDataset:
    """An MLflow dataset for an input table from its metadata only: ``path`` as source (a file
    or a query label), the first 16 hex digits of ``sha256`` as digest (MLflow caps a digest's
    length; the full sha256 is the run tag ``data.<name>.sha256``), the columns' types from
    the dtypes, and ``rows`` (e.g. ``num_rows``) as profile."""
    schema = Schema([ColSpec(_mlflow_type(t), str(c)) for c, t in table.dtypes.items()])
    source = LocalArtifactDatasetSource(str(Path(path).resolve()))
    return _TableDataset(source, name=name, digest=sha256[:16], schema=schema, profile=rows)


def version_description(
    settings: TrainSettings,
    *,
    rows_in: dict[str, int],
    metrics: dict[str, float],
    gate: str,
    promoted: bool,
) -> str:
    """What a version was trained on, how it scored on the test half next to the baselines
    and what the gate said, as markdown for the registry page."""
    rows = ", ".join(f"{n} {v:,}" for n, v in rows_in.items())
    lines = [
        f"Trained on `{settings.data_dir.resolve().name}` ({settings.data_dir.resolve()}), "
        f"churn horizon {settings.horizon_days} days. Rows read: {rows}.",
        "",
        "| test half | model | logistic baseline | BG/NBD baseline |",
        "|---|---|---|---|",
    ]
    for key, label in (
        ("roc_auc", "ROC-AUC"),
        ("pr_auc", "PR-AUC"),
        ("lift_top10", "lift, top 10%"),
        ("log_loss", "log loss"),
        ("brier", "Brier score"),
        ("ece", "calibration error (ECE)"),
    ):
        cells = [
            metrics.get(k)
            for k in (f"valid.{key}", f"baseline.logistic.{key}", f"baseline.bgnbd.{key}")
        ]
        lines.append(
            f"| {label} | " + " | ".join("-" if v is None else f"{v:.4f}" for v in cells) + " |"
        )
    if "valid.oracle_roc_auc" in metrics:
        lines += [
            "",
            f"Oracle ROC-AUC (the demo's true probabilities): "
            f"{metrics['valid.oracle_roc_auc']:.4f}.",
        ]
    # Written at registration: a later ``make promote`` moves the alias, not this text.
    verdict = f"promoted to `{settings.model_alias}`" if promoted else "not promoted"
    lines += ["", f"Gate at registration: {gate}; {verdict}."]
    return "\n".join(lines)


@contextmanager
def training_run(settings: TrainSettings, run_name: str | None = None) -> Iterator[TrainingRun]:
    """Start a run in the project's experiment (default name: :func:`default_run_name`), tagged with
    the git commit and the process that runs it; first marks runs a dead process left RUNNING
    as FAILED (:func:`fail_abandoned_runs`)."""
    # mlflow.start_run and mlflow.log_* use the process-wide URIs: set them for the run and
    # put back what was there, so a run never redirects other MLflow users in the process.
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    try:
        experiment_id = _experiment_id(settings)
        fail_abandoned_runs(_client(settings), experiment_id)
        name = run_name or default_run_name(settings)
        with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
            mlflow.set_tags(
                {
                    "git_commit": git_commit(),
                    PID_TAG: str(os.getpid()),
                    HOST_TAG: socket.gethostname(),
                    "data_dir": str(settings.data_dir.resolve()),
                }
            )
            yield TrainingRun(settings, run.info.run_id)
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])


def champion_version(settings: TrainSettings) -> str | None:
    """The version number holding the ``model_alias`` (champion) alias, or ``None``."""
    return registry.alias_version(
        settings.mlflow_tracking_uri, settings.model_name, settings.model_alias
    )


def load_version(settings: TrainSettings, version: str) -> Bundle:
    """A registered version's bundle, read by the verified loader (:mod:`models.registry`)."""
    return registry.load_model_version(
        settings.mlflow_tracking_uri, settings.model_name, version=version
    ).bundle


def load_champion(settings: TrainSettings) -> tuple[Bundle, str]:
    """The champion's bundle and version.

    Raises
    ------
    models.registry.ModelLoadError
        (a ``RuntimeError``) when there is no champion or it cannot be read or verified.
    """
    try:
        loaded = registry.load_model_version(
            settings.mlflow_tracking_uri, settings.model_name, alias=settings.model_alias
        )
    except registry.ModelLoadError as exc:
        if exc.code != "no_champion":
            raise
        raise registry.ModelLoadError(exc.code, f"{exc}; run 'make train' first") from None
    return loaded.bundle, loaded.version


def promote(settings: TrainSettings, version: str) -> None:
    """Move the ``model_alias`` (champion) alias to ``version`` (the last step of a run)."""
    _client(settings).set_registered_model_alias(settings.model_name, settings.model_alias, version)


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


def log_monitoring(
    settings: TrainSettings,
    *,
    model_version: str,
    steps: list[tuple[int, str, dict[str, float]]],
    tags: dict[str, str],
    files: list[Path],
) -> str:
    """One ``make monitor`` run in the project's experiment, tagged ``kind=monitoring`` and
    with the champion's ``model_version``: each ``(step, as_of, metrics)`` of ``steps`` logged
    at that step with the ``as_of`` as timestamp (so MLflow plots them over snapshots), and
    ``files`` as artifacts under ``monitoring/``; returns the run id."""
    from mlflow.entities import Metric

    name = f"monitor v{model_version} {datetime.now(UTC):%Y-%m-%d %H:%M}"
    with training_run(settings, run_name=name) as run:
        mlflow.set_tags({"kind": "monitoring", "model_version": model_version, **tags})
        batch = [
            Metric(key, value, int(pd.Timestamp(as_of).timestamp() * 1000), step)
            for step, as_of, metrics in steps
            for key, value in metrics.items()
        ]
        client = _client(settings)
        for i in range(0, len(batch), 1000):  # MLflow takes at most 1,000 metrics per call
            client.log_batch(run.run_id, metrics=batch[i : i + 1000])
        for path in files:
            mlflow.log_artifact(str(path), artifact_path="monitoring")
        return run.run_id


#: The ``kind`` tag of a ``make score`` run (training runs have none).
SCORING_KIND = "scoring"


@contextmanager
def scoring_run(
    settings: TrainSettings, *, model_version: str, tags: dict[str, str]
) -> Iterator[TrainingRun]:
    """A run for one ``make score`` in the project's experiment, named like the training runs
    with ``score v<version>`` (:func:`default_run_name`), tagged ``kind=scoring``, the
    ``model_version`` scored with and ``tags`` (the data folder is ``data_dir``, as for
    training); the scoring steps' durations and peak RSS go to it as metrics."""
    name = default_run_name(settings, kind=f"score v{model_version}")
    with training_run(settings, run_name=name) as run:
        run.tags({"kind": SCORING_KIND, "model_version": model_version, **tags})
        yield run
