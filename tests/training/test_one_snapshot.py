"""A CRM export with a churn flag -- customers with attributes and a labels table with ONE
``as_of`` -- trains on a random split of that snapshot (said in MLflow and the report), scores
and is served over HTTP; whole-table label problems stop ``python -m training train`` with one
line and exit code 2. Real LightGBM, MLflow (sqlite in a temp folder) and uvicorn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest

from features.schema import Tables
from models import registry
from serving.snapshot import load_snapshot
from tests.conftest import Completed
from tests.server import run_server, workspace_env
from training.frames import (
    OUT_OF_TIME,
    RANDOM_SPLIT,
    CutoffPlan,
    Frames,
    check_frames,
    plan_cutoffs,
    split_snapshot,
)
from training.io import DataError
from training.tracking import SCORING_KIND

N_CUSTOMERS = 2000
#: The export's quantities: CSV text that training reads as numbers.
NUMERIC_ATTRIBUTES = {"tenure_months", "monthly_charge", "support_calls"}
SNAPSHOT = "2025-06-01"


def telecom_export(folder: Path, *, n: int = N_CUSTOMERS, seed: int = 17) -> pd.DataFrame:
    """A telecom CRM export: customers with tenure, plan, contract, monthly charge, region,
    paperless billing and support calls; a few support interactions before the snapshot; a
    labels table with one ``as_of`` whose churn flag follows contract, tenure, charge and
    support calls. Returns the customers."""
    rng = np.random.default_rng(seed)
    as_of = pd.Timestamp(SNAPSHOT, tz="UTC")
    tenure = rng.integers(1, 72, n)
    contract = rng.choice(["month-to-month", "one_year", "two_year"], n, p=[0.5, 0.3, 0.2])
    charge = np.round(rng.uniform(20, 120, n), 2)
    calls = rng.poisson(1.2, n)
    customers = pd.DataFrame(
        {
            "customer_id": [f"T{i:05d}" for i in range(n)],
            "signup_date": (as_of - pd.to_timedelta(tenure * 30, unit="D")).strftime("%Y-%m-%d"),
            "tenure_months": tenure,
            "plan": rng.choice(["prepaid", "postpaid", "family"], n),
            "contract": contract,
            "monthly_charge": charge,
            "region": rng.choice(["north", "south", "east", "west"], n),
            "paperless_billing": rng.choice(["yes", "no"], n),
            "support_calls": calls,
        }
    )
    logit = (
        -1.6
        + 1.4 * (contract == "month-to-month")
        - 0.6 * (contract == "two_year")
        - 0.03 * tenure
        + 0.015 * (charge - 70)
        + 0.35 * calls
    )
    churned = rng.random(n) < 1 / (1 + np.exp(-logit))
    labels = pd.DataFrame(
        {"customer_id": customers["customer_id"], "as_of": SNAPSHOT, "churned": churned.astype(int)}
    )
    who = rng.choice(n, n // 4, replace=False)
    interactions = pd.DataFrame(
        {
            "customer_id": customers["customer_id"].to_numpy()[who],
            "timestamp": (as_of - pd.to_timedelta(rng.integers(1, 180, len(who)), unit="D"))
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_numpy(),
            "channel": rng.choice(["phone", "chat", "email"], len(who)),
            "interaction_type": "support_ticket",
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    customers.to_csv(folder / "customers.csv", index=False)
    labels.to_csv(folder / "labels.csv", index=False)
    interactions.to_csv(folder / "interactions.csv", index=False)
    return customers


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def create_api_key(env: dict[str, str], cwd: Path) -> str:
    """A client API key made with ``python -m serving.keys create``, as a user makes one."""
    key = subprocess.run(
        [sys.executable, "-m", "serving.keys", "create", "--name", "crm"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert key.returncode == 0, key.stderr
    return key.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def crm(tmp_path_factory):
    """The export trained and scored through the command line, as a user runs it."""
    root = tmp_path_factory.mktemp("crm")
    env = workspace_env(root)
    customers = telecom_export(root / "data")
    trained = run(["train", "--data", str(root / "data")], env, root)
    assert trained.returncode == 0, trained.stderr[-3000:]
    scored = run(["score", "--data", str(root / "data")], env, root)
    assert scored.returncode == 0, scored.stderr[-3000:]
    return root, env, customers, trained, scored


@pytest.mark.slow  # trains end to end (make test, not test-fast)
def test_one_snapshot_trains_on_a_stated_random_split(crm):
    root, _, _, trained, _ = crm
    assert "registered churn-clv v1" in trained.stdout
    assert "the labels table needs" not in trained.stderr
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("churn-clv").experiment_id])
    # the training run, and the scoring's own run
    (run_info,) = [r for r in runs if r.data.tags.get("kind") != SCORING_KIND]
    assert [r.data.tags.get("kind") for r in runs].count(SCORING_KIND) == 1
    params, tags, metrics = run_info.data.params, run_info.data.tags, run_info.data.metrics
    assert params["validation"] == RANDOM_SPLIT and tags["validation"] == RANDOM_SPLIT
    assert params["training_cutoffs"] == "" and params["label_source"] == "labels"
    rows = {k: int(params[f"{k}_rows"]) for k in ("train", "calibration", "test")}
    assert sum(rows.values()) == N_CUSTOMERS
    assert abs(rows["train"] - 0.6 * N_CUSTOMERS) <= 2
    assert abs(rows["test"] - 0.2 * N_CUSTOMERS) <= 2
    assert metrics["valid.roc_auc"] > 0.65  # the attributes carry the churn signal
    report = Path(client.download_artifacts(run_info.info.run_id, "report.html", str(root)))
    text = report.read_text()
    assert RANDOM_SPLIT in text
    # no purchase history and no surveys: the sections say so instead of failing
    assert "Not shown: no transactions table" in text
    assert text.count("no surveys table in the data") == 2  # elements of value, NPS


@pytest.mark.slow  # trains end to end (make test, not test-fast)
def test_one_snapshot_scores_and_serves_over_http(crm):
    root, env, customers, _, scored = crm
    # no events after the snapshot: scored as of the data end, the day after it
    assert f"scored {N_CUSTOMERS:,} customers as of 2025-06-02" in scored.stdout
    api_key = create_api_key(env, root)
    with run_server(root, env) as server:
        cid = customers["customer_id"].iloc[7]
        r = httpx.get(f"{server.url}/v1/customers/{cid}", headers={"X-API-Key": api_key})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["customer_id"] == cid and body["model_version"] == "1"
        assert 0.0 <= body["churn_probability"] <= 1.0
        assert body["clv"] is None and body["value_at_risk"] is None  # no purchase history
        model = httpx.get(f"{server.url}/v1/model", headers={"X-API-Key": api_key})
        assert model.status_code == 200
        drivers = {d["key"]: d for d in model.json()["drivers"]["drivers"]}
        assert not drivers["nps"]["available"] and drivers["nps"]["verdict"] == "absent"
        unresolved = drivers["unresolved"]  # the export has support interactions
        assert unresolved["available"] and sum(r["customers"] for r in unresolved["rows"]) > 0

        # the CSV's numeric attributes are numbers in the model, the reasons and the API:
        # posted as JSON numbers, or as the text a CSV holds, they score as batch scoring did
        contacted = set(pd.read_csv(root / "data" / "interactions.csv")["customer_id"])
        row = customers.loc[~customers["customer_id"].isin(contacted)].iloc[0]
        attributes = {
            k: row[k] for k in customers.columns if k not in ("customer_id", "signup_date")
        }
        as_numbers = {k: v.item() if hasattr(v, "item") else v for k, v in attributes.items()}
        as_text = {k: str(v) for k, v in attributes.items()}
        posted = []
        for values in (as_numbers, as_text):
            item = {
                "customer_id": row["customer_id"],
                "as_of": "2025-06-02",
                "signup_date": row["signup_date"],
                "attributes": values,
            }
            r = httpx.post(
                f"{server.url}/v1/predict",
                json={"customers": [item]},
                headers={"X-API-Key": api_key},
            )
            assert r.status_code == 200, r.text
            posted.append(r.json()["results"][0]["churn_probability"])
        batch = httpx.get(
            f"{server.url}/v1/customers/{row['customer_id']}", headers={"X-API-Key": api_key}
        ).json()["churn_probability"]
        assert posted == pytest.approx([batch, batch], abs=1e-9)

    snapshot = load_snapshot(root / "scores")
    values = customers.set_index("customer_id")
    shown = 0
    for cid, scores in snapshot.scores.items():
        for reason in scores["top_reasons"]:
            if reason["feature"] in NUMERIC_ATTRIBUTES:
                assert isinstance(reason["value"], int | float), reason
                assert reason["value"] == pytest.approx(values.loc[cid, reason["feature"]])
                shown += 1
    assert shown > 0


@pytest.mark.slow  # trains end to end (make test, not test-fast)
def test_numeric_attributes_train_as_numbers(crm):
    root, *_ = crm
    bundle = registry.load_model_version(
        f"sqlite:///{root / 'mlflow.db'}", "churn-clv", version="1"
    ).bundle
    assert not NUMERIC_ATTRIBUTES & set(bundle.churn.categories_)
    assert {"plan", "contract", "region", "paperless_billing"} <= set(bundle.churn.categories_)
    assert set(bundle.churn.features_) >= NUMERIC_ATTRIBUTES


def test_snapshot_split_is_stratified_disjoint_and_order_free():
    rng = np.random.default_rng(3)
    n = 1003
    frame = pd.DataFrame(
        {"x": rng.random(n), "churned": (rng.random(n) < 0.13).astype(int)},
        index=pd.Index([f"K{i}" for i in range(n)], name="customer_id"),
    )
    parts = split_snapshot(frame)
    shuffled = split_snapshot(frame.sample(frac=1, random_state=1))
    ids = [set(p.index) for p in parts]
    assert [set(p.index) for p in shuffled] == ids
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert set().union(*ids) == set(frame.index)
    overall = frame.groupby("churned").size()
    for part, share in zip(parts, (0.6, 0.2, 0.2), strict=True):
        for value, count in part.groupby("churned").size().items():
            assert abs(count - share * overall[value]) <= 1  # each class cut at the same shares
    # not the first rows: a hash order, not the input order
    assert list(parts[0].index[:5]) != list(frame.index[:5])


def test_two_snapshots_keep_the_out_of_time_validation():
    labels = pd.DataFrame(
        {
            "customer_id": ["a", "b", "a", "b"],
            "as_of": pd.to_datetime(
                ["2025-01-01", "2025-01-01", "2025-02-01", "2025-02-01"], utc=True
            ),
            "churned": [0, 1, 1, 0],
        }
    )
    plan = plan_cutoffs(Tables(labels=labels), horizon_days=30, n_training=4, spacing_days=30)
    assert not plan.one_snapshot and plan.validation_kind == OUT_OF_TIME
    one = plan_cutoffs(
        Tables(labels=labels.iloc[:2]), horizon_days=30, n_training=4, spacing_days=30
    )
    assert one.one_snapshot and one.training == () and one.validation_kind == RANDOM_SPLIT


def _error_line(done: Completed) -> str:
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr[-2000:]
    return lines[0]


@pytest.mark.slow  # four training commands up to the label check (make test, not test-fast)
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        # every label blank: the whole-table quarantine check (training/io.py) speaks first
        ("all_na", ("labels", "churned", "all 200 rows quarantined", "bad_churned 200")),
        ("no_overlap", ("labels", "no usable label", "200 customers labelled", "0 in common")),
        ("all_churned", ("labels", "churned", "one class only", "200", "churned = 1")),
        ("none_churned", ("labels", "churned", "one class only", "churned = 0")),
    ],
)
def test_whole_table_label_problems_are_one_line_and_exit_2(tmp_path, case, expected, training_cli):
    data = tmp_path / "data"
    customers = telecom_export(data, n=200)
    labels = pd.read_csv(data / "labels.csv", dtype=str)
    if case == "all_na":
        labels["churned"] = ""
    elif case == "no_overlap":
        labels["customer_id"] = "X" + labels["customer_id"]
    else:
        labels["churned"] = "1" if case == "all_churned" else "0"
    labels.to_csv(data / "labels.csv", index=False)
    assert len(customers) == 200
    done = training_cli(["train", "--data", str(data)], workspace_env(tmp_path), tmp_path)
    line = _error_line(done)
    for text in expected:
        assert text in line, line


def _frames(labels: list[int], *, split: tuple[int, int]) -> Frames:
    frame = pd.DataFrame(
        {"x": np.arange(len(labels), dtype=float), "churned": labels},
        index=pd.Index([f"C{i}" for i in range(len(labels))], name="customer_id"),
    )
    a, b = split
    return Frames(frame.iloc[:a], frame.iloc[a:b], frame.iloc[b:])


def test_derived_labels_with_one_class_name_their_source_and_fix():
    plan = CutoffPlan(
        pd.Timestamp("2025-06-01", tz="UTC"),
        pd.Timestamp("2025-03-01", tz="UTC"),
        (pd.Timestamp("2024-12-01", tz="UTC"),),
        90,
        "non_contractual",
    )
    with pytest.raises(DataError) as err:
        check_frames(Tables(), plan, _frames([0] * 30, split=(10, 20)))
    line = str(err.value)
    assert "\n" not in line and line.startswith("transactions table (churned = no purchase")
    assert "one class only: all 30 labelled rows are churned = 0" in line
    assert "--horizon" in line
    # both classes overall, but the test part has churned = 0 only
    with pytest.raises(DataError, match=r"the test part has one class only \(10 rows\); 10 of 30"):
        check_frames(Tables(), plan, _frames([0, 1] * 10 + [0] * 10, split=(10, 20)))
    check_frames(Tables(), plan, _frames([0, 1] * 15, split=(10, 20)))  # usable: no error
