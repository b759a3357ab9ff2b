"""Workspace sessions and the sign-in limiter (serving/sessions.py), with a real key store file
and an injected clock (no sleeps)."""

from __future__ import annotations

from pathlib import Path

from serving.auth import KeyStore, create_key
from serving.sessions import SessionStore, SignInLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _store(tmp_path: Path, clock: Clock) -> tuple[SessionStore, KeyStore, str]:
    path = tmp_path / "keys.json"
    key = create_key(path, "anna", scope="viewer")
    keys = KeyStore(path)
    return SessionStore(keys, lifetime_seconds=3600, clock=clock), keys, key


def test_a_session_carries_the_key_name_and_scopes_not_the_key(tmp_path: Path) -> None:
    sessions, keys, key = _store(tmp_path, Clock())
    session = sessions.open(keys.check(key))
    assert session.key_name == "anna" and "viewer" in session.scopes
    assert key not in repr(session) and session.token != session.csrf
    assert sessions.get(session.token) == session
    assert sessions.get("not-a-token") is None and sessions.get(None) is None


def test_a_session_expires_after_its_lifetime(tmp_path: Path) -> None:
    clock = Clock()
    sessions, keys, key = _store(tmp_path, clock)
    session = sessions.open(keys.check(key))
    clock.now += 3599
    assert sessions.get(session.token) is not None
    clock.now += 2
    assert sessions.get(session.token) is None
    assert len(sessions) == 0


def test_rotating_or_removing_the_key_ends_its_sessions(tmp_path: Path) -> None:
    sessions, keys, key = _store(tmp_path, Clock())
    first = sessions.open(keys.check(key))
    rotated = create_key(keys.path, "anna", scope="viewer")
    assert sessions.get(first.token) is None
    second = sessions.open(keys.check(rotated))
    keys.path.write_text('{"keys": []}')
    assert sessions.get(second.token) is None


def test_sign_out_closes_the_session(tmp_path: Path) -> None:
    sessions, keys, key = _store(tmp_path, Clock())
    session = sessions.open(keys.check(key))
    sessions.close(session.token)
    assert sessions.get(session.token) is None


def test_csrf_token_must_match_exactly(tmp_path: Path) -> None:
    sessions, keys, key = _store(tmp_path, Clock())
    session = sessions.open(keys.check(key))
    assert session.csrf_ok(session.csrf)
    assert (
        not session.csrf_ok(session.csrf[:-1])
        and not session.csrf_ok("")
        and not session.csrf_ok(None)
    )


def test_failed_sign_ins_block_the_address_for_the_rest_of_the_minute() -> None:
    clock = Clock()
    limiter = SignInLimiter(3, clock=clock)
    for _ in range(3):
        assert limiter.blocked("10.0.0.1") == 0
        limiter.failed("10.0.0.1")
    assert limiter.blocked("10.0.0.1") > 0
    assert limiter.blocked("10.0.0.2") == 0  # per address
    clock.now += 60
    assert limiter.blocked("10.0.0.1") == 0
