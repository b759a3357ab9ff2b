"""Snapshot history on disk (make score's writer), make export and make notify against a real
local HTTP receiver that checks the HMAC signature."""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.contract import HISTORY_DIR, LATEST_FILE
from models.history import kept_snapshots, latest_folder, read_verified
from training.__main__ import main
from training.batch import previous_scores, publish_snapshot, snapshot_rows
from training.config import TrainSettings
from training.export import load_worklist
from training.notify import SIGNATURE_HEADER, deliveries, notify, send

SECRET = "s3cret-for-tests-only"
DAY = pd.Timestamp("2026-03-01", tz="UTC")


def scores_frame(n: int, seed: int) -> pd.DataFrame:
    """Rows shaped like models.scoring.score_frame output, drawn at random."""
    rng = np.random.default_rng(seed)
    prob = rng.uniform(0, 1, n)
    clv = rng.gamma(2.0, 50.0, n)
    reason = {
        "code": "purchase_recency",
        "text": "No purchase for 40 days",
        "feature": "days_since_last_purchase",
        "value": 40.0,
        "direction": "raises",
        "percentile": 80.0,
        "share": 1.0,
    }
    band = np.select([prob >= 0.6, prob >= 0.3], ["high", "medium"], "low")
    return pd.DataFrame(
        {
            "status": np.where(band == "low", "active", "at_risk"),
            "churn_probability": prob,
            "churn_percentile": prob * 100,
            "risk_band": band,
            "p_alive": rng.uniform(0, 1, n),
            "p_alive_note": None,
            "expected_purchases": rng.gamma(2.0, 1.0, n),
            "expected_order_value": rng.gamma(5.0, 10.0, n),
            "clv": clv,
            "clv_low": clv * 0.5,
            "clv_high": clv * 1.5,
            "clv_horizon_days": 365,
            "discount_rate": 0.1,
            "residual_clv": clv * 4,
            "value_at_risk": prob * clv,
            "top_reasons": [[reason]] * n,
        },
        index=pd.Index([f"C{i:04d}" for i in range(n)], name="customer_id"),
    )


def customers(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:04d}" for i in range(n)],
            "plan": np.where(np.arange(n) % 3 == 0, "pro", "basic"),
            "region": "north",
        }
    )


def keep(directory: Path, as_of: pd.Timestamp, *, n: int = 200, seed: int = 0, keep: int = 3):
    """Keep one snapshot the way make score does; its rows (index customer_id)."""
    previous_as_of, previous = previous_scores(directory, as_of)
    out = snapshot_rows(
        scores_frame(n, seed),
        as_of=as_of,
        version="1",
        customers=customers(n),
        segment_column=None,
        previous=previous,
        attributes=("plan", "region"),
    )

    def write(tmp: Path) -> int:
        out.to_parquet(tmp, index=False)
        return len(out)

    publish_snapshot(
        write,
        directory,
        as_of=as_of,
        version="1",
        horizon_days=90,
        previous_as_of=previous_as_of,
        attributes=("plan", "region"),
        keep=keep,
    )
    return out.set_index("customer_id")


def test_history_keeps_the_last_n_and_points_at_the_newest(tmp_path: Path) -> None:
    weeks = [DAY + pd.Timedelta(days=7 * i) for i in range(5)]
    rows = [keep(tmp_path, w, seed=i) for i, w in enumerate(weeks)]

    kept = kept_snapshots(tmp_path)
    assert [k.as_of[:10] for k in kept] == [str(w.date()) for w in weeks[:1:-1]]
    assert len(list((tmp_path / HISTORY_DIR).iterdir())) == 3  # no temporary folder left
    pointer = json.loads((tmp_path / LATEST_FILE).read_text())
    assert latest_folder(tmp_path) == kept[0].path == tmp_path / pointer["path"]
    meta, table = read_verified(kept[0].path)
    assert meta["previous_as_of"] == kept[1].as_of and meta["attributes"] == ["plan", "region"]
    latest = table.to_pandas().set_index("customer_id")
    expected = rows[4]["churn_probability"] - rows[3]["churn_probability"]
    assert np.allclose(latest["change"], expected)


def test_an_older_as_of_joins_the_history_without_moving_the_pointer(tmp_path: Path) -> None:
    keep(tmp_path, DAY + pd.Timedelta(days=14), seed=1)
    keep(tmp_path, DAY, seed=2)  # a back-fill

    assert json.loads((tmp_path / LATEST_FILE).read_text())["as_of"].startswith("2026-03-15")
    assert [k.as_of[:10] for k in kept_snapshots(tmp_path)] == ["2026-03-15", "2026-03-01"]


def test_rescoring_an_as_of_replaces_its_snapshot(tmp_path: Path) -> None:
    keep(tmp_path, DAY, seed=1)
    again = keep(tmp_path, DAY, seed=9)

    assert len(kept_snapshots(tmp_path)) == 1
    _, table = read_verified(latest_folder(tmp_path))
    served = table.to_pandas().set_index("customer_id")["churn_probability"]
    assert np.allclose(served, again["churn_probability"])
    assert served.notna().all() and table.column("change").null_count == len(again)


# --- make export -------------------------------------------------------------------------------


def settings_for(tmp_path: Path, **overrides: object) -> TrainSettings:
    return TrainSettings(
        scores_dir=tmp_path / "scores",
        notify_log=tmp_path / "deliveries.jsonl",
        **overrides,  # type: ignore[arg-type]
    )


def test_export_writes_the_worklist_as_csv_and_json_lines(tmp_path: Path, monkeypatch) -> None:
    keep(tmp_path / "scores", DAY, seed=1)
    latest = keep(tmp_path / "scores", DAY + pd.Timedelta(days=7), seed=2)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHURN_SCORES_DIR", str(tmp_path / "scores"))

    assert main(["export", "--out", str(tmp_path / "out")]) == 0

    with (tmp_path / "out" / "worklist.csv").open(newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    records = [
        json.loads(x) for x in (tmp_path / "out" / "worklist.jsonl").read_text().splitlines()
    ]
    order = latest["value_at_risk"].sort_values(ascending=False).index.tolist()
    assert [r["customer_id"] for r in table] == order == [r["customer_id"] for r in records]
    first = records[0]
    cid = first["customer_id"]
    assert first["change"] == pytest.approx(latest.loc[cid, "change"])
    assert first["attributes"] == {"plan": latest.loc[cid, "plan"], "region": "north"}
    assert first["top_reasons"][0]["text"] == "No purchase for 40 days"
    assert table[0]["plan"] == latest.loc[cid, "plan"] and table[0]["segment"] == table[0]["plan"]
    assert (
        float(table[0]["previous_churn_probability"])
        == latest.loc[cid, "previous_churn_probability"]
    )


def test_export_without_a_snapshot_names_the_fix(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHURN_SCORES_DIR", str(tmp_path / "none"))

    assert main(["export"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "make score" in err and err.count("\n") == 1


# --- make notify: a real receiver on 127.0.0.1 -------------------------------------------------


@dataclass
class Receiver:
    """What the receiver saw: per request its signature check, key and parsed body."""

    url: str
    fail_first: int = 0
    status_when_failing: int = 503
    seen: list[dict] = field(default_factory=list)  # type: ignore[type-arg]


@contextmanager
def receiver(**options: int) -> Iterator[Receiver]:
    """A webhook receiver (http.server in a thread) that verifies the HMAC-SHA256 signature
    and answers 401 on a bad one, ``status_when_failing`` to the first ``fail_first``."""
    state = Receiver(url="", **options)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            valid = hmac.compare_digest(expected, self.headers.get(SIGNATURE_HEADER, ""))
            state.seen.append(
                {"valid": valid, "key": self.headers["Idempotency-Key"], "body": json.loads(body)}
            )
            failing = len(state.seen) <= state.fail_first
            self.send_response(401 if not valid else state.status_when_failing if failing else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/churn?token=abc"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def two_snapshots(tmp_path: Path) -> pd.DataFrame:
    keep(tmp_path / "scores", DAY, seed=1)
    return keep(tmp_path / "scores", DAY + pd.Timedelta(days=7), seed=2)


def test_notify_posts_the_risers_signed_once(tmp_path: Path) -> None:
    latest = two_snapshots(tmp_path)
    with receiver() as hook:
        settings = settings_for(
            tmp_path, webhook_url=hook.url, webhook_secret=SECRET, notify_min_change=0.2
        )
        first = notify(settings)
        again = notify(settings)

    risers = latest[latest["change"] >= 0.2]
    assert first.risers == len(risers) > 0 and first.sent == 1 and first.failed == 0
    assert again.sent == 0 and again.skipped == 1  # the delivery log: not delivered twice
    assert len(hook.seen) == 1 and hook.seen[0]["valid"]
    body = hook.seen[0]["body"]
    assert {r["customer_id"] for r in body["risers"]} == set(risers.index)
    assert body["snapshot"]["as_of"].startswith("2026-03-08")
    assert body["snapshot"]["previous_as_of"].startswith("2026-03-01")
    assert hook.seen[0]["key"] == body["delivery"]["idempotency_key"]
    assert all(r["change"] >= 0.2 for r in body["risers"])
    log = [json.loads(x) for x in (tmp_path / "deliveries.jsonl").read_text().splitlines()]
    assert [e["status"] for e in log] == ["delivered"]
    assert SECRET not in (tmp_path / "deliveries.jsonl").read_text()
    assert "token" not in first.target


def test_notify_retries_a_failing_receiver_with_the_same_key(tmp_path: Path) -> None:
    two_snapshots(tmp_path)
    with receiver(fail_first=2) as hook:
        settings = settings_for(
            tmp_path,
            webhook_url=hook.url,
            webhook_secret=SECRET,
            notify_backoff_seconds=0.01,
            notify_batch_size=20,
        )
        result = notify(settings)

    assert result.failed == 0 and result.sent >= 2  # several batches of 20
    assert len(hook.seen) == result.sent + 2
    assert hook.seen[0]["key"] == hook.seen[1]["key"] == hook.seen[2]["key"]
    assert all(s["valid"] for s in hook.seen)
    log = [json.loads(x) for x in (tmp_path / "deliveries.jsonl").read_text().splitlines()]
    assert log[0]["attempts"] == 3 and all(e["status"] == "delivered" for e in log)
    assert len({e["idempotency_key"] for e in log}) == result.sent


def test_backoff_doubles_and_is_bounded(tmp_path: Path) -> None:
    two_snapshots(tmp_path)
    settings = settings_for(
        tmp_path,
        notify_max_attempts=5,
        notify_backoff_seconds=0.01,
        notify_backoff_max_seconds=0.03,
    )
    delivery = deliveries(load_worklist(settings.scores_dir), min_change=0.1, batch_size=1000)[0]
    waits: list[float] = []
    with receiver(fail_first=100) as hook:
        outcome = send(delivery, hook.url, SECRET.encode(), settings, sleep=waits.append)

    assert not outcome.delivered and outcome.attempts == 5 == len(hook.seen)
    assert waits == pytest.approx([0.01, 0.02, 0.03, 0.03])


def test_a_refusing_receiver_is_not_retried_and_the_run_fails(tmp_path: Path, monkeypatch) -> None:
    two_snapshots(tmp_path)
    with receiver(fail_first=100, status_when_failing=400) as hook:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("CHURN_SCORES_DIR", str(tmp_path / "scores"))
        monkeypatch.setenv("CHURN_NOTIFY_LOG", str(tmp_path / "deliveries.jsonl"))
        monkeypatch.setenv("CHURN_WEBHOOK_SECRET", SECRET)
        code = main(["notify", "--url", hook.url])

    assert code == 1 and len(hook.seen) == 1
    log = [json.loads(x) for x in (tmp_path / "deliveries.jsonl").read_text().splitlines()]
    assert log[0]["status"] == "failed" and log[0]["http_status"] == 400


def test_a_wrong_secret_is_refused_by_the_receiver(tmp_path: Path) -> None:
    two_snapshots(tmp_path)
    with receiver() as hook:
        settings = settings_for(tmp_path, webhook_url=hook.url, webhook_secret="not-the-secret")
        result = notify(settings)

    assert result.failed == 1 and not hook.seen[0]["valid"]


def test_notify_without_a_secret_stops_with_exit_code_2(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    two_snapshots(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHURN_SCORES_DIR", str(tmp_path / "scores"))

    assert main(["notify", "--url", "http://127.0.0.1:9/x"]) == 2
    assert "CHURN_WEBHOOK_SECRET" in capsys.readouterr().err


def test_a_snapshot_from_before_history_joins_it(tmp_path: Path) -> None:
    first = keep(tmp_path / "old", DAY, seed=1)
    folder = latest_folder(tmp_path / "old")
    tmp_path.joinpath("scores").mkdir()
    for name in ("snapshot.parquet", "snapshot.json"):  # the layout make score used to write
        (folder / name).rename(tmp_path / "scores" / name)
    assert latest_folder(tmp_path / "scores") == tmp_path / "scores"

    latest = keep(tmp_path / "scores", DAY + pd.Timedelta(days=7), seed=2)

    assert [k.as_of[:10] for k in kept_snapshots(tmp_path / "scores")] == [
        "2026-03-08",
        "2026-03-01",
    ]
    expected = latest["churn_probability"] - first["churn_probability"]
    assert np.allclose(latest["change"], expected)


def test_activity_texts_are_the_json_of_the_known_values() -> None:
    """The recent-activity column is, per customer, ``json.dumps`` of the activity features
    it has a value for (text written per column: the same characters), null when none."""
    from models.contract import ACTIVITY_FEATURES
    from training.batch import activity_texts

    rng = np.random.default_rng(4)
    n = 300
    index = pd.Index([f"C{i:04d}" for i in range(n)], name="customer_id")
    pick = rng.integers(0, 3, n).tolist()
    frame = pd.DataFrame(
        {
            "days_since_last_purchase": rng.choice(
                [np.nan, 0.0, -0.0, np.inf, -np.inf, 1e-300, 3.5, 1 / 3], n
            ),
            "purchases_365d": rng.integers(0, 5, n),
            "spend_90d": pd.array([(1, 2, None)[i] for i in pick], dtype="Int64"),
            "csat_last": pd.Categorical([("a", 'b\u00e9"', None)[i] for i in pick[::-1]]),
            "effort_score_last": rng.normal(size=n).astype(np.float32),
            "unresolved_90d": np.full(n, np.nan),
        },
        index=index,
    )
    frame.loc[frame.index[:5], list(frame.columns)] = None  # customers with nothing known
    ids = pd.Series([*index[::-1], "nobody"], index=range(100, 101 + n))
    got = activity_texts(frame, ids)
    assert list(got.index) == list(ids.index)
    picked = frame.reindex(pd.Index(ids, name="customer_id"))
    for text, (_, row) in zip(got, picked.iterrows(), strict=True):
        values = {  # in the contract's order
            k: row[k].item() if hasattr(row[k], "item") else row[k]
            for k in ACTIVITY_FEATURES
            if k in row.index and not pd.isna(row[k])
        }
        assert (text if text is not pd.NA else None) == (
            json.dumps(values, separators=(",", ":")) if values else None
        )
    assert got.isna().sum() == 6  # the five with nothing known and the unknown customer
