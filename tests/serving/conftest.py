"""Fixtures for the serving tests: a real model, a real MLflow registry, a real snapshot.

Nothing is mocked. A seeded synthetic customer base goes through the project's feature code;
a LightGBM churn model and a BG/NBD + Gamma-Gamma CLV model are fitted on it; the bundle is
logged to a throw-away sqlite MLflow store and registered with its manifest digest, the way
training does it; batch-style scores are written as the snapshot the server reads; and the
HTTP tests talk to ``python -m serving`` running as a separate process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import httpx
import lightgbm
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from features.build import build_features
from features.labels import churn_labels
from features.schema import Tables
from models.bundle import Bundle, sha256_file, write_bundle
from models.churn import ChurnModel
from models.clv import SUMMARY_COLUMNS, CLVModel
from models.distribution import BandRule
from models.scoring import score_population
from serving.auth import create_key
from serving.config import Settings
from tests.server import Server, run_server, serving_env
from training.batch import reference_meta
from training.drivers import churn_drivers

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "churn-clv"
AS_OF = pd.Timestamp("2026-01-01", tz="UTC")
HORIZON_DAYS = 90
META = {"horizon_days": HORIZON_DAYS, "risk_thresholds": {"medium": 0.3, "high": 0.6}}


def synthetic_tables(n_customers: int = 300, seed: int = 7) -> Tables:
    """Customers with a plan and purchases from a BG/NBD-like process (Poisson purchases,
    a chance to drop out after each one), running 90 days past ``AS_OF`` for the labels."""
    rng = np.random.default_rng(seed)
    start = AS_OF - pd.Timedelta(days=365)
    end_day = 365 + HORIZON_DAYS
    ids = [f"C{i:05d}" for i in range(n_customers)]
    plans = rng.choice(["basic", "pro"], size=n_customers, p=[0.7, 0.3])
    signup_day = rng.uniform(0, 300, size=n_customers)
    rows = []
    for cid, plan, day in zip(ids, plans, signup_day, strict=True):
        rate = rng.gamma(2.0, 0.02 if plan == "basic" else 0.035)  # purchases per day
        dropout = rng.beta(1.0, 5.0)
        basket = rng.gamma(4.0, 12.0)
        t = float(day)
        while t < end_day:
            amount = round(float(rng.gamma(5.0, basket / 5.0)), 2)
            rows.append((cid, start + pd.Timedelta(days=t), amount))
            if rng.random() < dropout:
                break
            t += rng.exponential(1.0 / rate)
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_date": start + pd.to_timedelta(signup_day, unit="D"),
            "plan": plans,
        }
    )
    transactions = pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"])
    return Tables(customers=customers, transactions=transactions)


@dataclass(frozen=True)
class Trained:
    """A fitted bundle and the feature frame it was fitted on."""

    bundle: Bundle
    frame: pd.DataFrame


@pytest.fixture(scope="session")
def trained() -> Trained:
    tables = synthetic_tables()
    frame = build_features(tables, as_of=AS_OF)
    labels = churn_labels(tables, as_of=AS_OF, horizon_days=HORIZON_DAYS, population=frame.index)
    churn = ChurnModel(params={"min_data_in_leaf": 20}, num_boost_round=60).fit(frame, labels)
    clv = CLVModel(penalizer=0.001).fit(frame[list(SUMMARY_COLUMNS)])
    drivers = churn_drivers(
        frame.assign(churned=labels), as_of=AS_OF, horizon_days=HORIZON_DAYS
    )  # no interactions or surveys here: every driver says its table is absent
    return Trained(Bundle(churn, clv, meta=dict(META, drivers=drivers)), frame)


@dataclass(frozen=True)
class BundleDir:
    """A bundle folder as training logs it, and the manifest digest to register with it."""

    path: Path
    digest: str


@pytest.fixture(scope="session")
def bundle_dir(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> BundleDir:
    path = tmp_path_factory.mktemp("bundle") / "bundle"
    booster = lightgbm.Booster(model_str=trained.bundle.churn.model_text())
    # Explicit requirements: MLflow would otherwise infer them by loading the model in a
    # subprocess, which is slow and not what these tests are about.
    mlflow.lightgbm.save_model(booster, str(path), pip_requirements=["lightgbm"])
    digest = write_bundle(path, trained.bundle)
    return BundleDir(path, digest)


@contextmanager
def tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at ``uri`` for a block, then restore what was there.

    ``mlflow.set_tracking_uri`` also exports ``MLFLOW_TRACKING_URI``; setting it back to the
    previous value (``None`` when unset) undoes both.
    """
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Registry:
    """A throw-away MLflow tracking store and model registry in a temporary folder."""

    uri: str
    experiment_id: str

    def publish(
        self, bundle: BundleDir, name: str = MODEL_NAME, *, tags: dict[str, str] | None = None
    ) -> str:
        """Log ``bundle`` in a new run, register it as a new version of ``name`` (tagged with
        its manifest digest unless ``tags`` says otherwise) and move the ``champion`` alias to
        it; returns the version."""
        if tags is None:
            tags = {"manifest_sha256": bundle.digest}
        with tracking_uri(self.uri), mlflow.start_run(experiment_id=self.experiment_id) as run:
            mlflow.log_artifacts(str(bundle.path), artifact_path="bundle")
        # Registered through a client bound to this registry: the fluent mlflow.register_model
        # uses the process-wide registry URI, which other tests in the session may have set
        # (mlflow.set_registry_uri) to a store of their own.
        client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        try:
            client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        version = client.create_model_version(
            name, f"{run.info.artifact_uri}/bundle", run_id=run.info.run_id, tags=tags
        )
        client.set_registered_model_alias(name, "champion", version.version)
        return str(version.version)

    def files(self, name: str, version: str) -> Path:
        """The local folder the registry serves ``name`` version ``version`` from."""
        client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        source = client.get_model_version(name, version).source
        return Path(url2pathname(urlsplit(source).path))


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    experiment_id = MlflowClient(tracking_uri=uri).create_experiment(
        "serving-tests", artifact_location=(root / "artifacts").as_uri()
    )
    return Registry(uri, experiment_id)


@pytest.fixture(scope="session")
def champion(registry: Registry, bundle_dir: BundleDir) -> str:
    """The version of ``MODEL_NAME`` holding the champion alias."""
    return registry.publish(bundle_dir)


def write_snapshot(directory: Path, trained: Trained, *, version: str) -> pd.DataFrame:
    """Score every customer and write ``snapshot.parquet`` + ``snapshot.json`` the way batch
    scoring does; returns the rows written."""
    as_of = AS_OF.strftime("%Y-%m-%dT%H:%M:%SZ")
    rule = BandRule()
    scored, reference = score_population(trained.bundle, trained.frame, rule=rule)
    scores = scored.reset_index()
    scores.insert(1, "as_of", as_of)
    scores["top_reasons"] = [json.dumps(r, separators=(",", ":")) for r in scores["top_reasons"]]
    scores["model_version"] = version
    scores["risk_band"] = scores["risk_band"].astype("str")
    scores["status"] = scores["status"].astype("str")
    directory.mkdir(parents=True, exist_ok=True)
    scores.to_parquet(directory / "snapshot.parquet", index=False)
    counts = {str(k): int(v) for k, v in scores["risk_band"].value_counts().items()}
    extra = reference_meta(reference, rule, counts)
    rewrite_snapshot_meta(directory, version=version, as_of=as_of, rows=len(scores), extra=extra)
    return scores


def rewrite_snapshot_meta(
    directory: Path, *, version: str, as_of: str, rows: int, extra: dict[str, Any] | None = None
) -> None:
    """(Re)write ``snapshot.json`` for the Parquet file now in ``directory`` (``extra``: the
    optional keys, risk bands and reference)."""
    meta = {
        "model_version": version,
        "as_of": as_of,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "rows": rows,
        "sha256": sha256_file(directory / "snapshot.parquet"),
        "horizon_days": HORIZON_DAYS,
        **(extra or {}),
    }
    (directory / "snapshot.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")


@dataclass(frozen=True)
class ScoresDir:
    """The snapshot folder and the rows it holds (index: customer_id)."""

    path: Path
    rows: pd.DataFrame


@pytest.fixture(scope="session")
def scores_dir(
    trained: Trained, champion: str, tmp_path_factory: pytest.TempPathFactory
) -> ScoresDir:
    path = tmp_path_factory.mktemp("scores")
    rows = write_snapshot(path, trained, version=champion)
    return ScoresDir(path, rows.set_index("customer_id"))


@dataclass(frozen=True)
class Keys:
    """A key store holding a client key and an admin key."""

    path: Path
    key: str
    admin: str = ""


@pytest.fixture(scope="session")
def api_keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    path = tmp_path_factory.mktemp("keys") / "api_keys.json"
    key = create_key(path, "crm")
    return Keys(path, key, create_key(path, "ops", admin=True))


@pytest.fixture()
def settings_for(registry: Registry, tmp_path: Path) -> Callable[..., Settings]:
    """Settings pointing at the test registry, with a per-test cache folder."""

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "mlflow_tracking_uri": registry.uri,
            "model_cache_dir": tmp_path / "cache",
            "scores_dir": tmp_path / "scores",
            "api_keys_file": tmp_path / "api_keys.json",
            **overrides,
        }
        return Settings(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture(scope="session")
def server(
    registry: Registry,
    champion: str,
    scores_dir: ScoresDir,
    api_keys: Keys,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """The server with a champion, a snapshot and a key store: ready."""
    workdir = tmp_path_factory.mktemp("server")
    env = serving_env(
        registry.uri,
        scores_dir.path,
        api_keys.path,
        workdir,
        CHURN_MAX_CUSTOMERS_PER_REQUEST="50",
        CHURN_MAX_BODY_BYTES="1000000",
    )
    with run_server(workdir, env) as running:
        yield running


@pytest.fixture(scope="session")
def unready_server(
    registry: Registry, api_keys: Keys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The server with no champion for its model name and no snapshot: alive, not ready."""
    workdir = tmp_path_factory.mktemp("unready")
    env = serving_env(
        registry.uri, workdir / "empty", api_keys.path, workdir, CHURN_MODEL_NAME="no-such-model"
    )
    with run_server(workdir, env) as running:
        yield running


#: A value no response may ever contain: the API never echoes what a client sent.
MARKER = "ZZ-ECHO-CANARY-7f3a9"


@pytest.fixture(scope="module")
def client(server: Server, api_keys: Keys) -> Iterator[httpx.Client]:
    """An HTTP client for the ready server, sending a valid API key."""
    with httpx.Client(base_url=server.url, headers={"X-API-Key": api_keys.key}, timeout=30) as c:
        yield c


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is a JSON error with ``status`` and ``code``, a message, no traceback and
    nothing echoed from the request."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == code and isinstance(body["message"], str) and body["message"]
    assert "Traceback" not in response.text and MARKER not in response.text
    return body
