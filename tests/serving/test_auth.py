"""API keys: creation, rotation, the constant-time check and the key CLI."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from serving.auth import (
    KEY_PREFIX,
    SCOPE_ADMIN,
    SCOPE_SCORES,
    SCOPE_VIEWER,
    KeyStore,
    KeyStoreError,
    create_key,
    hash_key,
    read_keys,
    revoke_key,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_created_key_is_accepted_and_others_are_not(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key = create_key(path, "crm")
    store = KeyStore(path)

    found = store.check(key)

    assert key.startswith(KEY_PREFIX) and len(key) > 40
    assert found is not None and found.name == "crm" and found.scopes == {SCOPE_SCORES}
    assert store.check(key + "x") is None
    assert store.check(key[:-1]) is None
    assert store.check("") is None
    assert store.check(None) is None


def test_admin_key_has_both_scopes(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key = create_key(path, "ops", admin=True)

    found = KeyStore(path).check(key)

    assert found is not None and found.scopes == {SCOPE_SCORES, SCOPE_ADMIN}


def test_store_holds_only_hashes_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "var" / "keys.json"
    key = create_key(path, "crm")

    text = path.read_text(encoding="utf-8")
    (entry,) = json.loads(text)["keys"]

    assert key not in text and key[len(KEY_PREFIX) :] not in text
    assert entry["sha256"] == hash_key(key)
    assert set(entry) == {"name", "sha256", "scopes", "created_at"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_rotation_replaces_the_key_of_the_same_name(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    old = create_key(path, "crm")
    other = create_key(path, "billing")
    store = KeyStore(path)
    assert store.check(old) is not None

    new = create_key(path, "crm")

    assert new != old
    assert store.check(old) is None, "the running store must notice the new file"
    assert store.check(new) is not None and store.check(other) is not None
    assert sorted(k.name for k in read_keys(path)) == ["billing", "crm"]


def test_every_stored_key_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    keys = [create_key(path, f"client-{i}") for i in range(5)]
    store = KeyStore(path)

    names = [store.check(k).name for k in keys]  # type: ignore[union-attr]

    assert names == [f"client-{i}" for i in range(5)]


def test_missing_store_accepts_nothing(tmp_path: Path) -> None:
    assert KeyStore(tmp_path / "absent.json").check(KEY_PREFIX + "anything") is None


def test_corrupt_store_is_an_error_not_an_empty_store(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text('{"keys": [{"name": "crm", "sha256": "not-hex"}]}', encoding="utf-8")

    with pytest.raises(KeyStoreError):
        KeyStore(path).check(KEY_PREFIX + "anything")


@pytest.mark.parametrize("name", ["", "has space", "../escape", "x" * 65])
def test_bad_key_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="key name"):
        create_key(tmp_path / "keys.json", name)


def test_cli_prints_the_key_alone_on_the_last_line(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"

    result = subprocess.run(
        [sys.executable, "-m", "serving.keys", "create", "--name", "crm", "--file", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
        check=True,
    )

    key = result.stdout.splitlines()[-1]
    assert key == key.strip() and key.startswith(KEY_PREFIX)
    assert "crm" in result.stderr
    found = KeyStore(path).check(key)
    assert found is not None and found.name == "crm"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_viewer_key_holds_only_the_viewer_scope(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key = create_key(path, "anna", scope=SCOPE_VIEWER)

    found = KeyStore(path).check(key)

    assert found is not None and found.scopes == {SCOPE_VIEWER}
    assert create_key(path, "ops", scope=SCOPE_ADMIN) != key
    assert {k.name: k.scopes for k in read_keys(path)}["ops"] == {SCOPE_SCORES, SCOPE_ADMIN}
    with pytest.raises(ValueError, match="unknown scope"):
        create_key(path, "x", scope="root")
    with pytest.raises(ValueError, match="contradict"):
        create_key(path, "x", admin=True, scope=SCOPE_VIEWER)


def test_is_active_follows_revocation_and_rotation(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    create_key(path, "anna", scope=SCOPE_VIEWER)
    create_key(path, "crm")
    store = KeyStore(path)
    (anna,) = [k for k in read_keys(path) if k.name == "anna"]
    assert store.is_active("anna") and store.is_active("anna", anna.sha256)

    create_key(path, "anna", scope=SCOPE_VIEWER)  # rotated: same name, a new key
    rotated = store.is_active("anna", anna.sha256)
    assert revoke_key(path, "anna") is True

    assert not rotated
    assert not store.is_active("anna") and store.is_active("crm")
    assert revoke_key(path, "anna") is False, "nothing left to revoke"
    assert [k.name for k in read_keys(path)] == ["crm"]


def test_cli_makes_viewer_keys_and_revokes_them(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "serving.keys", *args, "--file", str(path)],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=60,
        )

    made = cli("create", "--name", "anna", "--scope", "viewer")
    key = made.stdout.splitlines()[-1]
    found = KeyStore(path).check(key)
    revoked = cli("revoke", "anna")
    missing = cli("revoke", "anna")

    assert made.returncode == 0 and "scopes: viewer" in made.stderr
    assert found is not None and found.scopes == {SCOPE_VIEWER}
    assert revoked.returncode == 0 and KeyStore(path).check(key) is None
    assert missing.returncode == 2 and missing.stderr.startswith("error: ")
