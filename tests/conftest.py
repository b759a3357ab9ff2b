"""Shared fixtures: a small seeded demo data set, isolated MLflow / output folders, and one
training run on the demo set that several modules read (or copy, to train on top of it)."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from training.config import TrainSettings
from training.demo_data import write_demo_data

if TYPE_CHECKING:  # imported by the fixture: a run of pure-pandas tests never loads MLflow
    from training.pipeline import TrainResult

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


@dataclass(frozen=True)
class DemoRun:
    """A training run on ``demo_dir`` with the default settings, and what it registered."""

    root: Path
    settings: TrainSettings
    result: TrainResult

    def reader(self, root: Path) -> TrainSettings:
        """Settings that read this run's MLflow store but write scores and quarantined rows
        under ``root``: for tests that load or score the model and train nothing."""
        return self.settings.model_copy(
            update={"scores_dir": root / "scores", "quarantine_dir": root / "quarantine"}
        )

    def copy_to(self, root: Path) -> TrainSettings:
        """A copy of the whole workspace (MLflow store and artifacts) under ``root``, for tests
        that train again or move aliases; its settings. The sqlite store holds absolute
        artifact paths, so every text cell naming the old folder is rewritten to the new one."""
        shutil.copytree(self.root, root, dirs_exist_ok=True)
        old, new = str(self.root), str(root)
        with sqlite3.connect(root / "mlflow.db") as db:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            for table in tables:
                for column in db.execute(f'PRAGMA table_info("{table}")').fetchall():
                    name, kind = column[1], str(column[2]).upper()
                    if "CHAR" in kind or "TEXT" in kind or "CLOB" in kind:
                        db.execute(
                            f'UPDATE "{table}" SET "{name}" = replace("{name}", ?, ?) '
                            f'WHERE instr("{name}", ?) > 0',
                            (old, new, old),
                        )
        return isolated_settings(root, self.settings.data_dir)


@pytest.fixture(scope="session")
def demo_trained(tmp_path_factory, demo_dir) -> DemoRun:
    """ONE training run on the demo set for the session (a run takes seconds per module that
    would otherwise repeat it). Never train into it or move its aliases: use
    :meth:`DemoRun.reader` to score it and :meth:`DemoRun.copy_to` to train on top of it."""
    from training.pipeline import train

    root = tmp_path_factory.mktemp("demo-trained")
    settings = isolated_settings(root, demo_dir)
    return DemoRun(root, settings, train(settings))


@dataclass(frozen=True)
class Completed:
    """What a command run in this process returned and printed (``subprocess``'s names)."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture()
def training_cli(monkeypatch, capsys):
    """``training_cli(args, env, cwd)``: ``python -m training ARGS`` run in this process with
    ``env``'s project and MLflow settings (and no others) and ``cwd`` as the working folder.

    For tests of what a command decides (exit code, its one error line): the same ``main``
    without the seconds a new interpreter spends importing pandas, LightGBM and MLflow. That
    the exit code and the error line reach a shell is tested once as a real subprocess
    (tests/test_end_to_end.py)."""
    from training.__main__ import main

    def run(args: list[str], env: dict[str, str], cwd: Path) -> Completed:
        # recorded even when unset, so whatever MLflow exports during the command is undone
        monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
        for name in list(os.environ):
            if name.startswith(("CHURN_", "MLFLOW_")):
                monkeypatch.delenv(name)
        for name, value in env.items():
            if name.startswith(("CHURN_", "MLFLOW_")):
                monkeypatch.setenv(name, value)
        monkeypatch.chdir(cwd)
        capsys.readouterr()  # only this command's output
        code = main(args)
        out, err = capsys.readouterr()
        return Completed(code, out, err)

    return run
