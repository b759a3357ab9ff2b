"""Reading a registered model version from the MLflow registry, verified: the one loader of
training (gate, evaluation, scoring) and the server.

It only reads: registering versions and moving aliases is training's (training/tracking.py).

Nothing here calls ``mlflow.*.load_model`` or unpickles (MLflow's loaders can run code shipped
with a model). A version is resolved on a client of the *given* tracking URI (never the
process-wide one), its :data:`models.contract.MANIFEST_TAG` tag read from the registry, its
files downloaded into a fresh folder and handed to :func:`models.bundle.read_bundle`, which
checks the manifest against the tag and every file against the manifest *before* parsing
anything. A version without a valid tag, or with files that do not match it, is refused.
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from models.bundle import Bundle, BundleError, read_bundle
from models.contract import MANIFEST_TAG

log = logging.getLogger(__name__)
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class ModelLoadError(RuntimeError):
    """A version could not be loaded; ``code`` is the stable reason (``/readyz`` shows it).

    Codes: ``no_champion`` (no version holds the alias, or no such version),
    ``registry_unavailable`` (the tracking server or database could not be read),
    ``untrusted_model`` (digest tag missing or files differ from it), ``model_unreadable``
    (the verified files could not be parsed).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class LoadedModel:
    """A verified, parsed model version and where it came from."""

    bundle: Bundle
    name: str
    version: str
    loaded_at: datetime


def redact_uri(uri: str) -> str:
    """The URI without user name or password, for log lines and error messages."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def registry_client(tracking_uri: str) -> MlflowClient:
    """A client of ``tracking_uri`` as both tracking and registry store."""
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def alias_version(tracking_uri: str, name: str, alias: str) -> str | None:
    """The version number of model ``name`` holding ``alias``, or ``None`` when none does.

    Raises
    ------
    ModelLoadError
        ``registry_unavailable`` when the registry cannot be read.
    """
    try:
        return str(_resolve(registry_client(tracking_uri), tracking_uri, name, alias=alias).version)
    except ModelLoadError as exc:
        if exc.code == "no_champion":
            return None
        raise


def _resolve(
    client: MlflowClient,
    uri: str,
    name: str,
    *,
    alias: str | None = None,
    version: str | None = None,
) -> ModelVersion:
    where = f"model '{name}' " + (f"alias '{alias}'" if alias else f"version {version}")
    where += f" in {redact_uri(uri)}"
    try:
        if alias is not None:
            return client.get_model_version_by_alias(name, alias)
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            found = "no version holds" if alias else "there is no"
            raise ModelLoadError("no_champion", f"{found} {where}") from exc
        raise ModelLoadError("registry_unavailable", f"cannot read {where}: {exc}") from exc
    except Exception as exc:  # network and database errors come in many types
        raise ModelLoadError("registry_unavailable", f"cannot read {where}: {exc}") from exc


def _download_and_verify(client: MlflowClient, uri: str, mv: ModelVersion, folder: str) -> Bundle:
    name, number = mv.name, str(mv.version)
    digest = (mv.tags or {}).get(MANIFEST_TAG, "")
    if not _SHA256_HEX.fullmatch(digest):
        raise ModelLoadError(
            "untrusted_model",
            f"version {number} of model '{name}' has no valid '{MANIFEST_TAG}' tag; "
            "refusing to load it (register it with training, which sets the tag)",
        )
    try:
        # The version's own artifact location, asked of *our* client: MLflow resolves a
        # ``models:/name/version`` URI against the process-wide registry URI and ignores the
        # ``registry_uri`` argument (mlflow/mlflow PR #18313), which would read the wrong
        # registry whenever the setting differs from MLFLOW_TRACKING_URI.
        source = client.get_model_version_download_uri(name, number)
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=folder, tracking_uri=uri
        )
    except Exception as exc:
        raise ModelLoadError(
            "registry_unavailable",
            f"cannot download version {number} of model '{name}' from {redact_uri(uri)}: {exc}",
        ) from exc
    try:
        return read_bundle(path, expected_manifest_sha256=digest)
    except BundleError as exc:
        raise ModelLoadError(
            "untrusted_model",
            f"version {number} of model '{name}' failed verification, refusing it: {exc}",
        ) from exc
    except Exception as exc:
        raise ModelLoadError(
            "model_unreadable", f"version {number} of model '{name}' cannot be parsed: {exc}"
        ) from exc


def load_model_version(
    tracking_uri: str,
    name: str,
    *,
    alias: str | None = None,
    version: str | None = None,
    download_dir: Path | None = None,
) -> LoadedModel:
    """Download, verify and parse version ``version`` of model ``name``, or the version
    holding ``alias`` (exactly one of the two).

    Parameters
    ----------
    tracking_uri : the MLflow tracking and registry URI to read (not the process default).
    download_dir : parent of the fresh download folder (created; the folder is removed once
        the files are parsed); default: the system's temporary folder.

    Raises
    ------
    ModelLoadError
        when there is no such version, the registry cannot be read, the version has no valid
        ``manifest_sha256`` tag, its files differ from that digest, or they cannot be parsed.
    """
    if (alias is None) == (version is None):
        raise ValueError("give exactly one of alias and version")
    client = registry_client(tracking_uri)
    mv = _resolve(client, tracking_uri, name, alias=alias, version=version)
    number = str(mv.version)
    if download_dir is not None:
        download_dir.mkdir(parents=True, exist_ok=True)
    # A fresh folder per load: files left by an earlier download are never trusted.
    with tempfile.TemporaryDirectory(prefix=f"v{number}-", dir=download_dir) as folder:
        bundle = _download_and_verify(client, tracking_uri, mv, folder)
    log.info("loaded model '%s' version %s (manifest %s)", name, number, mv.tags[MANIFEST_TAG][:12])
    return LoadedModel(bundle=bundle, name=name, version=number, loaded_at=datetime.now(UTC))


def download_run_file(
    tracking_uri: str, name: str, version: str, artifact: str, target: Path
) -> Path | None:
    """Copy ``artifact`` (e.g. ``report.html``) of the run that produced version ``version``
    of ``name`` to ``target``, once (an existing ``target`` is returned as it is); None when
    the run logged no such file or the registry cannot be reached. The file is only copied,
    never loaded: the server shows the training report from it (sandboxed)."""
    if target.is_file():
        return target
    try:
        mv = registry_client(tracking_uri).get_model_version(name, version)
        if not mv.run_id:
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            path = mlflow.artifacts.download_artifacts(
                run_id=mv.run_id, artifact_path=artifact, dst_path=tmp, tracking_uri=tracking_uri
            )
            Path(path).replace(target)
    except (MlflowException, OSError) as exc:
        log.warning("%s of %s version %s not available: %s", artifact, name, version, exc)
        return None
    return target
