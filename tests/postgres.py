"""A real, throwaway PostgreSQL server for the tests and the sources benchmark.

Debian's ``postgresql`` package (``apt-get install -y postgresql``) puts ``initdb`` and
``pg_ctl`` under ``/usr/lib/postgresql/<version>/bin``. The server runs in a fresh temporary
folder, listens on a free port of 127.0.0.1 only (no Unix socket outside that folder) and is
stopped and deleted on exit. PostgreSQL refuses to run as root, so as root the folder belongs
to the user ``postgres`` and the binaries run through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.server import free_port

#: What a missing server says: how to get one.
INSTALL_HINT = "PostgreSQL binaries not found; install them with 'apt-get install -y postgresql'"


def pg_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (newest Debian version first), or None."""
    on_path = shutil.which("pg_ctl")
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    for ctl in ([on_path] if on_path else []) + candidates:
        folder = Path(ctl).resolve().parent
        if (folder / "initdb").is_file():
            return folder
    return None


def require_postgres() -> None:
    """Skip the calling test where the binaries are missing, except in CI (``CI=true``), where
    .ci/run installs them and their absence is a failure."""
    import pytest

    if pg_bin_dir() is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{INSTALL_HINT} (.ci/run installs it in CI)")
        pytest.skip(INSTALL_HINT)


def _as_owner(args: list[str]) -> list[str]:
    """``args`` run as ``postgres`` when we are root (the server refuses root)."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a PostgreSQL server; yields its URL (``postgresql://postgres@127.0.0.1:PORT/postgres``).

    Raises
    ------
    FileNotFoundError
        No PostgreSQL binaries on this machine (the message says how to install them).
    """
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError(INSTALL_HINT)
    root = Path(tempfile.mkdtemp(prefix="churn-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    run: dict[str, Any] = {"check": True, "capture_output": True, "text": True}
    try:
        subprocess.run(
            _as_owner(
                [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-N"]
            ),
            **run,
        )
        # A test server: durability off (fsync, full pages) makes loading tables fast.
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -k {root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        # -w: pg_ctl returns once the server accepts connections
        subprocess.run(
            _as_owner(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(root / "log"),
                    "-w",
                    "-o",
                    options,
                    "start",
                ]
            ),
            **run,
        )
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(
                _as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                **run,
            )
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"PostgreSQL failed: {exc.cmd[-1]}: {exc.stderr.strip()}") from exc
    finally:
        shutil.rmtree(root, ignore_errors=True)
