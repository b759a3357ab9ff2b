"""The champion loader: reads the registry itself and refuses anything it cannot verify."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from models.bundle import sha256_file
from serving.config import Settings
from serving.loader import ModelLoadError, load_champion, redact_uri
from tests.serving.conftest import MODEL_NAME, BundleDir, Registry, Trained
from training import tracking
from training.config import TrainSettings

pytestmark = [
    # mlflow's sqlite store triggers this deprecation inside sqlalchemy
    pytest.mark.filterwarnings(
        "ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning"
    ),
]

SettingsFor = Callable[..., Settings]


@pytest.fixture(autouse=True)
def _no_stray_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run in an empty folder and check the loader left no MLflow store there: reading the
    default registry by mistake creates ``mlflow.db`` in the working directory."""
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    yield
    assert list(workdir.iterdir()) == []


def test_loads_the_champion_and_scores_like_the_trained_model(
    champion: str, trained: Trained, settings_for: SettingsFor
) -> None:
    settings = settings_for()

    loaded = load_champion(settings)

    assert loaded.name == MODEL_NAME and loaded.version == champion
    assert loaded.bundle.churn.features_ == trained.bundle.churn.features_
    assert loaded.bundle.meta["risk_thresholds"] == {"medium": 0.3, "high": 0.6}
    np.testing.assert_allclose(
        loaded.bundle.churn.predict_proba(trained.frame),
        trained.bundle.churn.predict_proba(trained.frame),
    )
    assert loaded.bundle.clv is not None and trained.bundle.clv is not None
    assert loaded.bundle.clv.params_ == trained.bundle.clv.params_
    # Each load downloads into a fresh folder and removes it once parsed.
    assert list(settings.model_cache_dir.iterdir()) == []


def test_reads_the_configured_registry_not_the_process_default(
    champion: str, settings_for: SettingsFor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{other / 'other.db'}")

    loaded = load_champion(settings_for())

    assert loaded.version == champion
    assert not (other / "other.db").exists()


@pytest.mark.parametrize("filename", ["model.lgb", "bundle.json"])
def test_tampered_registry_files_are_refused(
    registry: Registry, bundle_dir: BundleDir, settings_for: SettingsFor, filename: str
) -> None:
    name = f"tampered-{filename.replace('.', '-')}"
    version = registry.publish(bundle_dir, name)
    target = registry.files(name, version) / filename
    target.write_text(target.read_text(encoding="utf-8").replace("0", "1", 1), encoding="utf-8")

    with pytest.raises(ModelLoadError, match="failed verification") as err:
        load_champion(settings_for(model_name=name))

    assert err.value.code == "untrusted_model"


def test_tampered_file_with_rewritten_manifest_is_refused(
    registry: Registry, bundle_dir: BundleDir, settings_for: SettingsFor
) -> None:
    """Whoever can write the artifact store cannot fix up the manifest: the digest that
    vouches for it lives in the registry database."""
    name = "tampered-manifest"
    version = registry.publish(bundle_dir, name)
    folder = registry.files(name, version)
    (folder / "bundle.json").write_text("{}", encoding="utf-8")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    manifest["files"]["bundle.json"] = sha256_file(folder / "bundle.json")
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")

    with pytest.raises(ModelLoadError) as err:
        load_champion(settings_for(model_name=name))

    assert err.value.code == "untrusted_model"


@pytest.mark.parametrize(
    "tags", [{}, {"manifest_sha256": "0" * 64}, {"manifest_sha256": "not-a-digest"}]
)
def test_versions_without_the_right_digest_tag_are_refused(
    registry: Registry, bundle_dir: BundleDir, settings_for: SettingsFor, tags: dict[str, str]
) -> None:
    name = f"bad-tag-{len(tags)}-{len(next(iter(tags.values()), ''))}"
    registry.publish(bundle_dir, name, tags=tags)

    with pytest.raises(ModelLoadError) as err:
        load_champion(settings_for(model_name=name))

    assert err.value.code == "untrusted_model"


def test_missing_champion_is_reported(champion: str, settings_for: SettingsFor) -> None:
    with pytest.raises(ModelLoadError) as err:
        load_champion(settings_for(model_name="never-registered"))

    assert err.value.code == "no_champion"


def test_redact_uri_hides_credentials() -> None:
    redacted = redact_uri("https://user:secret@mlflow.example.com/x")

    assert redacted == "https://***@mlflow.example.com/x"
    assert redact_uri("sqlite:///mlflow.db") == "sqlite:///mlflow.db"


def test_cache_folder_is_created(champion: str, settings_for: SettingsFor, tmp_path: Path) -> None:
    cache = tmp_path / "deep" / "cache"

    load_champion(settings_for(model_cache_dir=cache))

    assert cache.is_dir()


@pytest.mark.parametrize("tag", ["not-a-digest", "0" * 64])
def test_training_reads_versions_through_the_same_verified_loader(
    registry: Registry, bundle_dir: BundleDir, tmp_path: Path, tag: str
) -> None:
    """Training's gate, evaluation and scoring read versions with the server's loader
    (models/registry.py): the same refusals, from the registry it is configured with."""
    name = f"training-bad-tag-{tag[:3]}"
    version = registry.publish(bundle_dir, name, tags={"manifest_sha256": tag})
    good = registry.publish(bundle_dir, name)
    settings = TrainSettings(
        mlflow_tracking_uri=registry.uri, model_name=name, scores_dir=tmp_path / "scores"
    )

    with pytest.raises(ModelLoadError) as err:
        tracking.load_version(settings, version)

    assert err.value.code == "untrusted_model"
    bundle, champion = tracking.load_champion(settings)
    assert champion == good == tracking.champion_version(settings)
    assert bundle.churn.features_ == tracking.load_version(settings, good).churn.features_
