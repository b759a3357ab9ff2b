"""The kept scored snapshots in the scores folder: layout, the latest pointer, verified reads.

Batch scoring (``make score``) keeps one folder per ``as_of``; the server, ``make export`` and
``make notify`` read them back. Layout (names in :mod:`models.contract`)::

    <scores_dir>/latest.json                      {"path": "history/20260630T000000Z", "as_of": ...}
    <scores_dir>/history/20260630T000000Z/snapshot.parquet
    <scores_dir>/history/20260630T000000Z/snapshot.json
    <scores_dir>/history/20260623T000000Z/...     (the previous one, and so on: the last N)

A snapshot folder is written under a hidden temporary name and renamed into place when
complete; the pointer is then replaced (one rename), so a reader following it never sees a
half-written snapshot. A scores folder from before history was kept (``snapshot.parquet`` and
``snapshot.json`` directly in it, no ``history/``) reads as a history of that one snapshot.

Every read checks the Parquet bytes against the ``sha256`` of ``snapshot.json`` and parses those
same bytes, so what is used is exactly what was verified. Both sides import this module
(training and serving never import each other).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from models.contract import (
    HISTORY_DIR,
    LATEST_FILE,
    SNAPSHOT_FILE,
    SNAPSHOT_META_FILE,
    SNAPSHOT_META_KEYS,
)

_HEX = frozenset("0123456789abcdef")


class SnapshotError(ValueError):
    """The snapshot is missing, tampered with or malformed; it is not used."""


@dataclass(frozen=True)
class KeptSnapshot:
    """One kept snapshot: its folder and its ``as_of`` (ISO-8601, UTC)."""

    path: Path
    as_of: str


def folder_name(as_of: str) -> str:
    """The folder of the snapshot scored at ``as_of`` (``2026-06-30T00:00:00Z`` ->
    ``20260630T000000Z``): sorts like the time, and is a valid file name everywhere."""
    return as_of.replace("-", "").replace(":", "")


def read_meta(path: Path) -> dict[str, Any]:
    """``snapshot.json`` at ``path``, checked for the keys every reader needs."""
    try:
        meta = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise SnapshotError(f"{path}: not found; run 'make score' to write a snapshot") from None
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(meta, dict):
        raise SnapshotError(f"{path}: expected a JSON object")
    missing = set(SNAPSHOT_META_KEYS) - meta.keys()
    if missing:
        raise SnapshotError(f"{path}: missing keys {sorted(missing)}")
    digest = meta["sha256"]
    if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _HEX:
        raise SnapshotError(f"{path}: 'sha256' is not a hex sha256 digest")
    if not isinstance(meta["rows"], int) or not isinstance(meta["horizon_days"], int):
        raise SnapshotError(f"{path}: 'rows' and 'horizon_days' must be integers")
    return meta


def kept_snapshots(scores_dir: Path) -> list[KeptSnapshot]:
    """Every kept snapshot of ``scores_dir``, newest ``as_of`` first (unreadable folders are
    left out: the verified read of one names its problem)."""
    history = Path(scores_dir) / HISTORY_DIR
    found: list[KeptSnapshot] = []
    if history.is_dir():
        for folder in history.iterdir():
            if folder.name.startswith(".") or not folder.is_dir():
                continue  # a snapshot being written, or being replaced
            try:
                found.append(
                    KeptSnapshot(folder, str(read_meta(folder / SNAPSHOT_META_FILE)["as_of"]))
                )
            except SnapshotError:
                continue
    elif (Path(scores_dir) / SNAPSHOT_META_FILE).exists():
        try:
            meta = read_meta(Path(scores_dir) / SNAPSHOT_META_FILE)
        except SnapshotError:
            return []
        found.append(KeptSnapshot(Path(scores_dir), str(meta["as_of"])))
    return sorted(found, key=lambda k: k.as_of, reverse=True)


def latest_folder(scores_dir: Path) -> Path:
    """The folder of the snapshot to serve: the one ``latest.json`` names; without a pointer,
    the newest kept one, or ``scores_dir`` itself (a folder from before history was kept)."""
    scores_dir = Path(scores_dir)
    pointer = scores_dir / LATEST_FILE
    if pointer.exists():
        try:
            target = json.loads(pointer.read_bytes())["path"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SnapshotError(f"{pointer}: unreadable ({exc}); re-run 'make score'") from exc
        parts = Path(str(target)).parts
        # Only ever history/<one folder name>: the pointer cannot send a reader elsewhere.
        if len(parts) != 2 or parts[0] != HISTORY_DIR or parts[1] in ("..", "."):
            raise SnapshotError(f"{pointer}: 'path' is not {HISTORY_DIR}/<as_of>")
        return scores_dir.joinpath(*parts)
    kept = kept_snapshots(scores_dir)
    return kept[0].path if kept else scores_dir


def read_verified(
    folder: Path, columns: Sequence[str] | None = None
) -> tuple[dict[str, Any], pa.Table]:
    """``snapshot.json`` and the Parquet table of the snapshot in ``folder`` (only
    ``columns`` when given), after checking the bytes against the recorded sha256.

    Raises
    ------
    SnapshotError
        a file is missing or unreadable, or the bytes differ from the recorded sha256.
    """
    meta = read_meta(folder / SNAPSHOT_META_FILE)
    path = folder / SNAPSHOT_FILE
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SnapshotError(f"{path}: unreadable ({exc})") from exc
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise SnapshotError(
            f"{path}: sha256 differs from {SNAPSHOT_META_FILE}; refusing to serve it (re-run 'make score')"
        )
    try:
        table = pq.read_table(pa.BufferReader(data), columns=list(columns) if columns else None)
    except (pa.ArrowException, ValueError, KeyError) as exc:
        raise SnapshotError(f"{path}: not a readable snapshot ({exc})") from exc
    return meta, table
