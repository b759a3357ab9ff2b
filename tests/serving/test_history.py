"""Snapshot history against the real server: three snapshots kept by ``make score``'s own
writer (training.batch), the latest served with ``previous_churn_probability`` and ``change``,
a customer's history, risers since a date, and the CSV form of ``/v1/at-risk``."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest

from features.build import build_features
from models.scoring import score_frame
from tests.server import run_server, serving_env
from tests.serving.conftest import (
    AS_OF,
    HORIZON_DAYS,
    Keys,
    Registry,
    Trained,
    assert_error,
    synthetic_tables,
)
from training.batch import attribute_columns, previous_scores, publish_snapshot, snapshot_rows

pytestmark = [
    pytest.mark.slow,  # trains a model and scores three snapshots (make test, not test-fast)
    pytest.mark.filterwarnings(
        "ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning"
    ),
]

#: Three weekly snapshots, oldest first; the middle one lacks the first customers (new ones).
WEEKS = [AS_OF - pd.Timedelta(days=14), AS_OF - pd.Timedelta(days=7), AS_OF]
NEW_IN_LATEST = 5


@dataclass(frozen=True)
class Kept:
    """The scores folder and each snapshot's rows (index customer_id), oldest first."""

    path: Path
    rows: list[pd.DataFrame]


def keep_snapshot(
    directory: Path, trained: Trained, as_of: pd.Timestamp, version: str, *, drop: int = 0
) -> pd.DataFrame:
    """Score the synthetic customers at ``as_of`` and keep the snapshot as make score does."""
    tables = synthetic_tables()
    frame = build_features(tables, as_of=as_of).iloc[drop:]
    scores = score_frame(trained.bundle, frame)
    previous_as_of, previous = previous_scores(directory, as_of)
    attributes = attribute_columns(tables.customers, None)
    out = snapshot_rows(
        scores,
        as_of=as_of,
        version=version,
        customers=tables.customers,
        segment_column=None,
        previous=previous,
        attributes=attributes,
    )

    def write(tmp: Path) -> int:
        out.to_parquet(tmp, index=False)
        return len(out)

    publish_snapshot(
        write,
        directory,
        as_of=as_of,
        version=version,
        horizon_days=HORIZON_DAYS,
        previous_as_of=previous_as_of,
        attributes=attributes,
        keep=12,
    )
    return out.set_index("customer_id")


@pytest.fixture(scope="module")
def kept(trained: Trained, champion: str, tmp_path_factory: pytest.TempPathFactory) -> Kept:
    path = tmp_path_factory.mktemp("history")
    rows = [
        keep_snapshot(path, trained, as_of, champion, drop=NEW_IN_LATEST if i == 1 else 0)
        for i, as_of in enumerate(WEEKS)
    ]
    return Kept(path, rows)


@pytest.fixture(scope="module")
def hclient(
    registry: Registry, champion: str, kept: Kept, api_keys: Keys, tmp_path_factory
) -> Iterator[httpx.Client]:
    workdir = tmp_path_factory.mktemp("history-server")
    env = serving_env(registry.uri, kept.path, api_keys.path, workdir)
    with (
        run_server(workdir, env) as server,
        httpx.Client(base_url=server.url, headers={"X-API-Key": api_keys.key}, timeout=30) as c,
    ):
        yield c


def test_the_latest_is_served_with_the_change_since_the_previous(
    hclient: httpx.Client, kept: Kept
) -> None:
    previous, latest = kept.rows[1], kept.rows[2]
    cid = latest.index[NEW_IN_LATEST + 3]
    body = hclient.get(f"/v1/customers/{cid}").json()

    assert body["as_of"] == "2026-01-01T00:00:00Z"
    assert body["churn_probability"] == pytest.approx(latest.loc[cid, "churn_probability"])
    assert body["previous_churn_probability"] == pytest.approx(
        previous.loc[cid, "churn_probability"]
    )
    assert body["change"] == pytest.approx(
        latest.loc[cid, "churn_probability"] - previous.loc[cid, "churn_probability"]
    )


def test_a_customer_new_since_the_previous_snapshot_has_no_change(
    hclient: httpx.Client, kept: Kept
) -> None:
    cid = kept.rows[2].index[0]
    assert cid not in kept.rows[1].index
    body = hclient.get(f"/v1/customers/{cid}").json()

    assert body["previous_churn_probability"] is None and body["change"] is None


def test_history_lists_every_kept_snapshot_newest_first(hclient: httpx.Client, kept: Kept) -> None:
    cid = kept.rows[2].index[NEW_IN_LATEST]
    body = hclient.get(f"/v1/customers/{cid}/history").json()

    assert body["customer_id"] == cid
    got = [(s["as_of"][:10], s["churn_probability"]) for s in body["snapshots"]]
    expected = [
        (str(w.date()), pytest.approx(r.loc[cid, "churn_probability"]))
        for w, r in zip(WEEKS[::-1], kept.rows[::-1], strict=True)
    ]
    assert got == expected
    assert body["snapshots"][0]["risk_band"] == kept.rows[2].loc[cid, "risk_band"]


def test_history_skips_snapshots_without_the_customer_and_404s_unknown_ids(
    hclient: httpx.Client, kept: Kept
) -> None:
    cid = kept.rows[2].index[0]  # not in the middle snapshot
    body = hclient.get(f"/v1/customers/{cid}/history").json()

    assert [s["as_of"][:10] for s in body["snapshots"]] == [
        str(WEEKS[2].date()),
        str(WEEKS[0].date()),
    ]
    assert_error(hclient.get("/v1/customers/NOBODY/history"), 404, "unknown_customer")


def test_min_change_lists_the_risers_since_the_previous_snapshot(
    hclient: httpx.Client, kept: Kept
) -> None:
    latest = kept.rows[2]
    body = hclient.get(
        "/v1/at-risk", params={"min_change": 0.02, "limit": 1000, "status": "all"}
    ).json()

    risers = latest[latest["change"] >= 0.02]
    assert body["total"] == len(risers) > 0
    assert body["baseline_as_of"] == "2025-12-25T00:00:00Z"
    assert {r["customer_id"] for r in body["results"]} == set(risers.index)
    assert all(r["change"] >= 0.02 for r in body["results"])


def test_changed_since_measures_against_the_snapshot_of_that_date(
    hclient: httpx.Client, kept: Kept
) -> None:
    oldest, latest = kept.rows[0], kept.rows[2]
    since = str(WEEKS[0].date() + pd.Timedelta(days=3))  # the oldest is the newest on or before
    body = hclient.get(
        "/v1/at-risk",
        params={"changed_since": since, "min_change": 0.01, "limit": 1000, "status": "all"},
    ).json()

    change = latest["churn_probability"] - oldest["churn_probability"].reindex(latest.index)
    expected = set(change[change >= 0.01].index)
    assert body["baseline_as_of"] == "2025-12-18T00:00:00Z"
    assert body["total"] == len(expected) > 0
    assert {r["customer_id"] for r in body["results"]} == expected
    for r in body["results"]:
        assert r["previous_churn_probability"] == pytest.approx(
            oldest.loc[r["customer_id"], "churn_probability"]
        )
        assert r["change"] >= 0.01


def test_changed_since_before_every_kept_snapshot_is_409(hclient: httpx.Client) -> None:
    response = hclient.get("/v1/at-risk", params={"changed_since": "2020-01-01"})
    assert_error(response, 409, "history_unavailable")


def _csv(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


def test_at_risk_csv_streams_every_matching_customer_with_segment_and_attributes(
    hclient: httpx.Client, kept: Kept
) -> None:
    latest = kept.rows[2]
    rows = _csv(
        hclient.get("/v1/at-risk", params={"format": "csv", "risk_band": "high", "status": "all"})
    )
    page = hclient.get(
        "/v1/at-risk", params={"risk_band": "high", "limit": 1000, "status": "all"}
    ).json()

    assert len(rows) == page["total"] == int((latest["risk_band"] == "high").sum()) > 0
    assert [r["customer_id"] for r in rows] == [r["customer_id"] for r in page["results"]]
    first = rows[0]
    cid = first["customer_id"]
    assert float(first["churn_probability"]) == latest.loc[cid, "churn_probability"]
    assert first["plan"] == latest.loc[cid, "plan"] == first["segment"]
    assert first["signup_date"] == latest.loc[cid, "signup_date"]
    reasons = json.loads(latest.loc[cid, "top_reasons"])
    assert first["top_reasons"] == "; ".join(r["text"] for r in reasons)


def test_at_risk_csv_by_accept_header_and_paged(hclient: httpx.Client) -> None:
    rows = _csv(
        hclient.get("/v1/at-risk", params={"limit": 7, "offset": 3}, headers={"Accept": "text/csv"})
    )
    page = hclient.get("/v1/at-risk", params={"limit": 7, "offset": 3}).json()

    assert [r["customer_id"] for r in rows] == [r["customer_id"] for r in page["results"]]
    assert len(rows) == 7
