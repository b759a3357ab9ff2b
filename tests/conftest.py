"""Shared fixtures: a small seeded demo data set and isolated MLflow / output folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from training.config import TrainSettings
from training.demo_data import write_demo_data

SMALL_DEMO_CUSTOMERS = 2500


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """A seeded demo data set small enough for tests (written once per session)."""
    out = tmp_path_factory.mktemp("demo")
    write_demo_data(out, n_customers=SMALL_DEMO_CUSTOMERS, seed=11)
    return out


def isolated_settings(root: Path, data_dir: Path, **overrides) -> TrainSettings:
    """Settings whose MLflow store, scores and quarantine all live under ``root``."""
    return TrainSettings(
        data_dir=data_dir,
        mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        mlflow_artifact_root=root / "mlartifacts",
        scores_dir=root / "scores",
        quarantine_dir=root / "quarantine",
        **overrides,
    )


@pytest.fixture(scope="session")
def make_settings():
    """``make_settings(root, data_dir, **overrides)``: see :func:`isolated_settings`."""
    return isolated_settings


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for the session (tests/postgres.py); its URL. Skipped where
    the binaries are missing, except in CI (``CI=true``), where .ci/run installs them."""
    from tests.postgres import postgres_server, require_postgres

    require_postgres()
    with postgres_server() as url:
        yield url
