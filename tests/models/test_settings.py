"""One settings module: shared defaults, misspelt CHURN_* names refused, .env.example complete."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from models.settings import (
    SECTIONS,
    ServeSettings,
    SettingsError,
    TrainSettings,
    known_names,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No .env file of the developer's, and no CHURN_* variables of the test process."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.upper().startswith("CHURN_") or name.upper() == "MLFLOW_TRACKING_URI":
            monkeypatch.delenv(name)


def test_both_sides_share_one_default_per_common_setting() -> None:
    train, serve = TrainSettings(), ServeSettings()

    for name in ("mlflow_tracking_uri", "model_name", "model_alias", "scores_dir"):
        assert getattr(train, name) == getattr(serve, name), name


def test_one_variable_sets_a_shared_setting_for_both_sides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHURN_MODEL_ALIAS", "staging")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")

    assert TrainSettings().model_alias == ServeSettings().model_alias == "staging"
    assert TrainSettings().mlflow_tracking_uri == "sqlite:///elsewhere.db"


def test_prefixed_name_wins_over_mlflows_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///standard.db")
    monkeypatch.setenv("CHURN_MLFLOW_TRACKING_URI", "sqlite:///ours.db")

    assert ServeSettings().mlflow_tracking_uri == "sqlite:///ours.db"


def test_engine_is_read_with_the_prefix_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGINE", "dask")  # the Makefile's variable: passed as a flag instead
    assert TrainSettings().engine == "local"

    monkeypatch.setenv("CHURN_ENGINE", "dask")
    monkeypatch.setenv("CHURN_DASK_SCHEDULER", "tcp://127.0.0.1:8786")
    settings = TrainSettings()
    assert (settings.engine, settings.dask_scheduler) == ("dask", "tcp://127.0.0.1:8786")


def test_misspelt_variable_names_the_closest_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURN_HORIZON_DAY", "60")

    with pytest.raises(SettingsError) as err:
        TrainSettings()

    assert str(err.value) == "CHURN_HORIZON_DAY is not a setting; did you mean CHURN_HORIZON_DAYS?"


def test_a_setting_of_the_other_side_is_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURN_PORT", "8123")
    monkeypatch.setenv("CHURN_HORIZON_DAYS", "60")

    assert TrainSettings().horizon_days == 60
    assert ServeSettings().port == 8123


def test_misspelt_name_in_the_env_file_is_reported_with_the_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CHURN_PORT=8001\nCHURN_SCORE_DIR=x\nOTHER_TOOL=1\n")

    with pytest.raises(SettingsError) as err:
        ServeSettings()

    assert str(err.value) == (
        ".env: CHURN_SCORE_DIR is not a setting; did you mean CHURN_SCORES_DIR?"
    )


def test_old_unprefixed_engine_in_the_env_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ENGINE=dask\n")

    with pytest.raises(SettingsError, match="ENGINE is not read any more; rename it CHURN_ENGINE"):
        TrainSettings()


def test_a_name_close_to_nothing_points_to_the_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURN_ZZZZZZZZZZZZ", "1")

    with pytest.raises(SettingsError, match=r"is not a setting; see \.env\.example"):
        ServeSettings()


def test_invalid_value_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURN_PORT", "99999")

    with pytest.raises(SettingsError) as err:
        ServeSettings()

    assert str(err.value).startswith("setting CHURN_PORT: ") and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("module", "variable", "closest"),
    [
        ("training", "CHURN_HORIZON_DAY", "CHURN_HORIZON_DAYS"),
        ("serving", "CHURN_PROT", "CHURN_PORT"),
    ],
)
def test_command_lines_print_one_line_and_exit_2(
    module: str, variable: str, closest: str, tmp_path: Path
) -> None:
    args = ["train", "--data", str(tmp_path)] if module == "training" else []
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), variable: "1"}

    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 2
    assert done.stderr == f"error: {variable} is not a setting; did you mean {closest}?\n"


def test_env_example_documents_every_setting_and_nothing_else() -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^#? ?((?:CHURN_|MLFLOW_)[A-Z_]+)=", text, flags=re.M))

    assert documented == known_names()


def test_every_section_has_the_prefix() -> None:
    for section in SECTIONS:
        assert section.model_config["env_prefix"] == "CHURN_"
