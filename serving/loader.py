"""Reading the champion model from the MLflow registry: the only module that touches MLflow.

The server never calls ``mlflow.*.load_model`` and never unpickles (MLflow's loaders can run
code shipped with a model). Instead it resolves the alias to a version number, reads that
version's ``manifest_sha256`` tag from the registry, downloads the version's files into a fresh
folder and hands them to :func:`models.bundle.read_bundle`, which checks the manifest against
the tag and every file against the manifest *before* parsing anything. A version without the
tag, or with files that do not match it, is refused.
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from models.bundle import Bundle, BundleError, read_bundle
from serving.config import Settings

log = logging.getLogger(__name__)

#: Registry tag holding the sha256 of the bundle's manifest.json (set by training at
#: registration time).
MANIFEST_TAG = "manifest_sha256"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class ModelLoadError(RuntimeError):
    """The champion could not be loaded; ``code`` is the stable reason shown by ``/readyz``.

    Codes: ``no_champion`` (no version holds the alias), ``registry_unavailable`` (the tracking
    server or database could not be read), ``untrusted_model`` (digest tag missing or files
    differ from it), ``model_unreadable`` (the verified files could not be parsed).
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


def load_champion(settings: Settings) -> LoadedModel:
    """Load the version of ``settings.model_name`` that holds ``settings.model_alias``.

    Raises
    ------
    ModelLoadError
        when there is no such version, the registry cannot be read, the version has no valid
        ``manifest_sha256`` tag, its files differ from that digest, or they cannot be parsed.
    """
    uri = settings.mlflow_tracking_uri
    name, alias = settings.model_name, settings.model_alias
    where = f"model '{name}' alias '{alias}' in {redact_uri(uri)}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise ModelLoadError("no_champion", f"no version holds {where}") from exc
        raise ModelLoadError("registry_unavailable", f"cannot read {where}: {exc}") from exc
    except Exception as exc:  # network and database errors come in many types
        raise ModelLoadError("registry_unavailable", f"cannot read {where}: {exc}") from exc

    number = str(version.version)
    digest = (version.tags or {}).get(MANIFEST_TAG, "")
    if not _SHA256_HEX.fullmatch(digest):
        raise ModelLoadError(
            "untrusted_model",
            f"version {number} of model '{name}' has no valid '{MANIFEST_TAG}' tag; "
            "refusing to load it (register it with training, which sets the tag)",
        )

    cache = settings.model_cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    # A fresh folder per load: files left by an earlier download are never trusted.
    with tempfile.TemporaryDirectory(prefix=f"v{number}-", dir=cache) as folder:
        try:
            # The version's own artifact location, asked of *our* client: MLflow resolves a
            # ``models:/name/version`` URI against the process-wide registry URI and ignores
            # the ``registry_uri`` argument (mlflow/mlflow PR #18313), which would read the
            # wrong registry whenever the setting differs from MLFLOW_TRACKING_URI.
            source = client.get_model_version_download_uri(name, number)
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=folder, tracking_uri=uri
            )
        except Exception as exc:
            raise ModelLoadError(
                "registry_unavailable", f"cannot download version {number} of {where}: {exc}"
            ) from exc
        try:
            bundle = read_bundle(path, expected_manifest_sha256=digest)
        except BundleError as exc:
            raise ModelLoadError(
                "untrusted_model",
                f"version {number} of model '{name}' failed verification, refusing it: {exc}",
            ) from exc
        except Exception as exc:
            raise ModelLoadError(
                "model_unreadable", f"version {number} of model '{name}' cannot be parsed: {exc}"
            ) from exc
    log.info("loaded model '%s' version %s (manifest %s)", name, number, digest[:12])
    return LoadedModel(bundle=bundle, name=name, version=number, loaded_at=datetime.now(UTC))
