"""The browser suite's fixtures: a trained demo served by the real server, and headless Chromium.

The demo goes through the commands a user runs (``training data``, ``train``, ``score`` twice,
so there is a previous snapshot and a trend), in a temporary folder, with one customer whose
id and segment hold ``<script>`` (the escaping test). Chromium is Debian's ``chromium``
package, driven by Playwright's Python package without Playwright's own browser downloads.
Without it these tests are skipped, except under ``CI=true`` (.ci/run installs it), where
they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from tests.server import Server, run_server, workspace_env

N_CUSTOMERS = 2000
#: An id and a segment a browser would run as script if the pages did not escape them.
XSS_ID = 'C<script>document.title="pwned"</script>'
XSS_SEGMENT = '<script>document.title="pwned"</script>'
#: Failed sign-ins a minute per address on the test server (the last test uses them up).
SIGNIN_LIMIT = 3
CHROMIUM_HINT = "headless Chromium is missing: apt-get install -y chromium"


def chromium_path() -> str | None:
    """Debian's Chromium binary, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def require_chromium() -> str:
    """The Chromium binary; skip without it, except in CI (``CI=true``): fail."""
    path = chromium_path()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM_HINT} (.ci/run installs it in CI)")
        pytest.skip(CHROMIUM_HINT)
    try:
        import playwright  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("the playwright package is missing: pip install -e '.[dev]'")
        pytest.skip("the playwright package is missing")
    return path


def _run(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, f"{args}: {done.stderr[-3000:]}"
    return done.stdout


def _plant_script_customer(data: Path) -> str:
    """Rename the first customer to :data:`XSS_ID` in every table, with segment (plan)
    :data:`XSS_SEGMENT`; returns the old id."""
    customers = pd.read_parquet(data / "customers.parquet")
    old = str(customers["customer_id"].iloc[0])
    for path in [*data.glob("*.parquet"), *data.glob("truth/*.parquet")]:
        frame = pd.read_parquet(path)
        if "customer_id" in frame.columns:
            frame["customer_id"] = frame["customer_id"].replace(old, XSS_ID)
            if path.name == "customers.parquet":
                frame.loc[frame["customer_id"] == XSS_ID, "plan"] = XSS_SEGMENT
            frame.to_parquet(path, index=False)
    return old


@dataclass(frozen=True)
class Demo:
    """The served demo: the server, its folder and environment, and a viewer's API key."""

    server: Server
    root: Path
    env: dict[str, str]
    key: str

    def make_key(self, name: str) -> str:
        out = _run(
            ["-m", "serving.keys", "create", "--name", name, "--scope", "viewer"],
            self.env,
            self.root,
        )
        return out.strip().splitlines()[-1]


# Module scope: tests/web is a folder, not a package, where pytest gives "package" fixtures
# the session's lifetime; Playwright's sync API keeps an event loop marked running in this
# thread while it is started, so any later asyncio.run in the same worker would fail.
@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    require_chromium()
    root = tmp_path_factory.mktemp("web")
    env = {
        **workspace_env(root),
        "CHURN_OUTCOMES_URL": f"sqlite:///{root / 'outcomes.db'}",
        "CHURN_SIGNIN_FAILURES_PER_MINUTE": str(SIGNIN_LIMIT),
    }
    data = root / "data"
    _run(
        ["-m", "training", "data", "--out", str(data), "--customers", str(N_CUSTOMERS)],
        env,
        root,
    )
    _plant_script_customer(data)
    _run(["-m", "training", "train", "--data", str(data)], env, root)
    end = pd.read_parquet(data / "transactions.parquet")["timestamp"].max()
    earlier = (pd.Timestamp(end) - pd.Timedelta(days=30)).strftime("%Y-%m-%dT00:00:00Z")
    _run(["-m", "training", "score", "--data", str(data), "--as-of", earlier], env, root)
    _run(["-m", "training", "score", "--data", str(data)], env, root)
    key = _run(["-m", "serving.keys", "create", "--name", "anna", "--scope", "viewer"], env, root)
    with run_server(root, env, timeout=180) as server:  # a busy CI machine starts slowly
        yield Demo(server, root, env, key.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def browser(demo: Demo) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=require_chromium(), args=["--no-sandbox"])
        yield launched
        launched.close()


def screenshot_dir() -> Path | None:
    """Where the suite saves its page screenshots: ``WORKSPACE_SCREENSHOTS`` (docs/img to
    refresh the committed ones), else nowhere."""
    folder = os.environ.get("WORKSPACE_SCREENSHOTS")
    return Path(folder) if folder else None


def save_screenshot(page: object, name: str) -> Path | None:
    """A 1280x800 PNG of ``page`` as ``workspace-<name>.png``, reduced to 256 colours (the
    committed screenshots stay small); None when no folder is set."""
    folder = screenshot_dir()
    if folder is None:
        return None
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"workspace-{name}.png"
    page.screenshot(path=str(path))  # type: ignore[attr-defined]
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    return path
