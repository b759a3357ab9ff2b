"""The layout's one-way doors (README, "Layout") and the no-pickle rule, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("features", "models", "training", "serving")
FORBIDDEN = {
    "features": {"models", "training", "serving", "mlflow", "lightgbm", "lifetimes", "fastapi"},
    "models": {"training", "serving", "fastapi"},
    "training": {"serving", "fastapi"},
    "serving": {"training"},
}
NEVER = {"pickle", "dill", "joblib", "cloudpickle"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_one_way(package):
    for path in modules(package):
        bad = imports(path) & (FORBIDDEN[package] | NEVER)
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_single_owners_of_lifetimes_and_mlflow():
    owners: dict[str, set[str]] = {"lifetimes": set(), "mlflow": set()}
    for package in PACKAGES:
        for path in modules(package):
            for lib in owners.keys() & imports(path):
                owners[lib].add(path.relative_to(ROOT).as_posix())
    # the BTYD formulas are the project's own (models/btyd.py); lifetimes is their reference in
    # the tests, and the holder of the CDNOW data files, never imported by the code
    assert owners["lifetimes"] == set()
    # training registers and promotes; models/registry.py is the one (read-only) loader
    assert owners["mlflow"] <= {"training/tracking.py", "models/registry.py"}


def test_nothing_loads_models_through_mlflow():
    """Models are read by models/registry.py (verified files, no code run), never by MLflow's
    loaders, on either side."""
    for path in [p for package in PACKAGES for p in modules(package)]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        called = {
            node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
        }
        assert "load_model" not in called, path


def test_feature_catalogue_doc_is_current():
    import features.build  # noqa: F401
    from features.__main__ import HEADER
    from features.catalogue import catalogue_markdown

    doc = (ROOT / "docs" / "feature-catalogue.md").read_text(encoding="utf-8")
    assert doc == HEADER + catalogue_markdown(), "run 'make catalogue'"
