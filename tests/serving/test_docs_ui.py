"""``/docs`` and ``/redoc`` work without internet: every asset they reference is served by the
real server from the package, and no page names another host."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
import uvicorn

from serving.app import create_app
from serving.config import Settings
from serving.docs_ui import STATIC_DIR, STATIC_PATH
from tests.server import REPO_ROOT, free_port, serve_in_thread


class _References(HTMLParser):
    """Every ``src``, ``href``, ``spec-url`` and ``data-openapi-url`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "spec-url", "data-openapi-url") and value:
                self.urls.append(value)


def references(page: str) -> list[str]:
    parser = _References()
    parser.feed(page)
    return parser.urls


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real uvicorn server of the app (no model needed for the docs pages)."""
    root = tmp_path_factory.mktemp("docs")
    settings = Settings(
        mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        scores_dir=root / "scores",
        api_keys_file=root / "keys.json",
        model_cache_dir=root / "cache",
    )
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    with serve_in_thread(config):
        yield f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_page_and_every_asset_come_from_this_server(base_url: str, path: str) -> None:
    page = httpx.get(base_url + path)
    urls = references(page.text)

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "://" not in page.text, "the page names another host"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    scripts = [u for u in urls if u.endswith(".js")]
    assert scripts and all(u.startswith(f"{STATIC_PATH}/") for u in scripts)
    assert "/openapi.json" in urls
    for url in urls:
        asset = httpx.get(base_url + url)
        assert asset.status_code == 200, url
        if url.startswith(f"{STATIC_PATH}/"):
            packaged = STATIC_DIR / url.removeprefix(f"{STATIC_PATH}/")
            assert asset.content == packaged.read_bytes(), url
    init = httpx.get(f"{base_url}{STATIC_PATH}/docs/swagger-init.js").text
    assert "://" not in init and "validatorUrl: null" in init


def test_assets_outside_the_static_folder_are_not_served(base_url: str) -> None:
    escape = httpx.get(f"{base_url}{STATIC_PATH}/%2e%2e/outcomes.py")
    missing = httpx.get(f"{base_url}{STATIC_PATH}/vendor/nothing.js")

    assert escape.status_code == 404 and "import" not in escape.text
    assert missing.status_code == 404


def test_every_vendored_file_is_listed_with_its_sha256() -> None:
    listed = (STATIC_DIR / "vendor" / "VENDORED.md").read_text(encoding="utf-8")
    hashes = dict(
        (name, digest) for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", listed, re.M)
    )
    vendored = {
        str(p.relative_to(STATIC_DIR / "vendor")): p
        for p in (STATIC_DIR / "vendor").rglob("*")
        if p.is_file() and p.name != "VENDORED.md"
    }

    assert set(hashes) == set(vendored)
    for name, path in vendored.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == hashes[name], name
    assert all((p.parent / "LICENSE").is_file() for p in vendored.values())


@pytest.mark.slow
def test_wheel_ships_the_docs_assets_and_the_migrations(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("features", "models", "training", "serving", "bench"):
        shutil.copytree(
            REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO_ROOT / name, source / name)

    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )

    (wheel,) = (tmp_path / "dist").glob("*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    wanted = {
        str(p.relative_to(source))
        for folder in ("serving/static", "serving/migrations", "serving/routes")
        for p in (source / folder).rglob("*")
        if p.is_file()
    }
    assert wanted and wanted <= shipped, sorted(wanted - shipped)
