"""The scored snapshot: verified against its digest, validated row by row, indexed by id."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from serving.snapshot import SCORE_FIELDS, SnapshotError, load_snapshot
from tests.serving.conftest import ScoresDir, rewrite_snapshot_meta

pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning"
    ),
]


@pytest.fixture()
def copy_of(scores_dir: ScoresDir, tmp_path: Path) -> Path:
    """A private copy of the session snapshot, free to damage."""
    target = tmp_path / "scores"
    shutil.copytree(scores_dir.path, target)
    return target


def _rewrite_parquet(directory: Path, change) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    rows = pd.read_parquet(directory / "snapshot.parquet")
    rows = change(rows)
    rows.to_parquet(directory / "snapshot.parquet", index=False)
    return rows


def test_loads_every_customer_with_the_contract_fields(scores_dir: ScoresDir) -> None:
    snapshot = load_snapshot(scores_dir.path)

    assert len(snapshot) == len(scores_dir.rows)
    meta = json.loads((scores_dir.path / "snapshot.json").read_text(encoding="utf-8"))
    assert snapshot.model_version == meta["model_version"]
    assert snapshot.as_of == meta["as_of"] and snapshot.horizon_days == 90
    cid = scores_dir.rows.index[0]
    row = snapshot.scores[cid]
    assert tuple(row) == SCORE_FIELDS
    assert row["churn_probability"] == pytest.approx(scores_dir.rows.loc[cid, "churn_probability"])
    assert row["top_reasons"] == json.loads(scores_dir.rows.loc[cid, "top_reasons"])
    assert json.loads(snapshot.encoded[cid]) == row


def test_scores_json_keeps_request_order_and_reports_unknown_ids(scores_dir: ScoresDir) -> None:
    snapshot = load_snapshot(scores_dir.path)
    a, b = scores_dir.rows.index[:2]

    body = json.loads(snapshot.scores_json([b, "nobody", a, b]))

    assert [r["customer_id"] for r in body["results"]] == [b, "nobody", a, b]
    assert body["results"][1] == {"customer_id": "nobody", "error": "unknown_customer"}
    assert body["results"][0] == snapshot.scores[b]
    assert body["model_version"] == snapshot.model_version


def test_missing_values_become_null(copy_of: Path) -> None:
    def blank(rows: pd.DataFrame) -> pd.DataFrame:
        rows.loc[0, ["clv", "value_at_risk", "p_alive"]] = math.nan
        return rows

    rows = _rewrite_parquet(copy_of, blank)
    rewrite_snapshot_meta(
        copy_of, version=rows["model_version"][0], as_of=rows["as_of"][0], rows=len(rows)
    )

    row = load_snapshot(copy_of).scores[rows["customer_id"][0]]

    assert row["clv"] is None and row["value_at_risk"] is None and row["p_alive"] is None
    assert isinstance(row["expected_purchases"], float)


def test_tampered_parquet_is_refused(copy_of: Path) -> None:
    def raise_one(rows: pd.DataFrame) -> pd.DataFrame:
        rows.loc[0, "churn_probability"] = 0.01
        return rows

    _rewrite_parquet(copy_of, raise_one)

    with pytest.raises(SnapshotError, match="sha256 differs"):
        load_snapshot(copy_of)


def test_appended_bytes_are_refused(copy_of: Path) -> None:
    with (copy_of / "snapshot.parquet").open("ab") as fh:
        fh.write(b"\0")

    with pytest.raises(SnapshotError, match="sha256 differs"):
        load_snapshot(copy_of)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("churn_probability", 1.5, "outside"),
        ("risk_band", "extreme", "risk_band"),
        ("top_reasons", "not json", "row 0"),
        ("clv", math.inf, "infinite"),
        ("model_version", "999", "model version"),
    ],
)
def test_malformed_rows_are_refused_even_with_a_matching_digest(
    copy_of: Path, column: str, value: object, message: str
) -> None:
    def damage(rows: pd.DataFrame) -> pd.DataFrame:
        rows[column] = rows[column].astype(object)
        rows.loc[0, column] = value
        return rows

    rows = _rewrite_parquet(copy_of, damage)
    rewrite_snapshot_meta(
        copy_of, version=rows["model_version"][1], as_of=rows["as_of"][0], rows=len(rows)
    )

    with pytest.raises(SnapshotError, match=message):
        load_snapshot(copy_of)


def test_duplicate_customer_is_refused(copy_of: Path) -> None:
    rows = _rewrite_parquet(copy_of, lambda r: pd.concat([r, r.iloc[[0]]], ignore_index=True))
    rewrite_snapshot_meta(
        copy_of, version=rows["model_version"][0], as_of=rows["as_of"][0], rows=len(rows)
    )

    with pytest.raises(SnapshotError, match="more than once"):
        load_snapshot(copy_of)


def test_row_count_must_match(copy_of: Path) -> None:
    meta_path = copy_of / "snapshot.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["rows"] += 1
    meta_path.write_text(json.dumps(meta), encoding="utf-8")

    with pytest.raises(SnapshotError, match="rows"):
        load_snapshot(copy_of)


def test_missing_snapshot_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="make score"):
        load_snapshot(tmp_path)
