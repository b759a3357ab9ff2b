"""The training pipeline on real LightGBM, lifetimes and MLflow (sqlite in a temp folder)."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest

from models.contract import REASON_KEYS
from models.history import latest_folder
from training import tracking
from training.batch import score
from training.pipeline import gate, prepare, train

# Every test here shares a demo training run or trains its own (make test, not test-fast).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_trained):
    # the session's demo run is this module's first run, copied: the tests here train and
    # score on top of it
    settings = demo_trained.copy_to(tmp_path_factory.mktemp("pipeline"))
    first = demo_trained.result
    second = train(settings)
    return settings, first, second


def test_first_run_registers_and_promotes(trained):
    settings, first, _ = trained
    assert first.version == "1" and first.promoted
    assert tracking.champion_version(settings) in {"1", "2"}
    m = first.metrics
    assert 0.5 < m["valid.roc_auc"] <= 1
    # the model is compared with the generator's ground truth on the same customers
    assert m["valid.oracle_roc_auc"] >= m["valid.model_roc_auc_on_oracle_set"] - 0.02
    assert m["valid.oracle_roc_auc"] - m["valid.roc_auc"] < 0.15


def test_metrics_cover_model_baselines_and_calibration(trained):
    _, first, _ = trained
    m = first.metrics
    for key in (
        "valid.pr_auc",
        "valid.log_loss",
        "valid.brier",
        "valid.ece",
        "valid.lift_top10",
        "valid.capture_top10",
        "baseline.logistic.roc_auc",
        "baseline.bgnbd.roc_auc",
    ):
        assert key in m and np.isfinite(m[key]), key
    assert m["valid.ece"] < 0.06
    assert m["valid.lift_top10"] > 1.2


def test_run_logs_inputs_report_and_bundle(trained):
    settings, first, second = trained
    client = mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    runs = [client.get_run(r.run_id) for r in (first, second)]
    hashes = [{k: v for k, v in r.data.tags.items() if k.startswith("data.")} for r in runs]
    assert hashes[0] == hashes[1] and len(hashes[0]) == 4
    assert {d.dataset.name for d in runs[0].inputs.dataset_inputs} == {
        "customers",
        "transactions",
        "interactions",
        "surveys",
    }
    # each dataset is known by its file's sha256, schema and row counts, not by its rows
    for d in runs[0].inputs.dataset_inputs:
        sha = runs[0].data.tags[f"data.{d.dataset.name}.sha256"]
        assert d.dataset.digest == sha[:16]
        profile = json.loads(d.dataset.profile)
        rows = int(runs[0].data.params[f"rows_in.{d.dataset.name}"])
        assert profile["num_rows"] + profile["quarantined_rows"] == rows
        columns = {c["name"] for c in json.loads(d.dataset.schema)["mlflow_colspec"]}
        assert "customer_id" in columns
    # every step's duration and peak memory, and the whole run's time
    for step in ("load", "log_inputs", "frames", "churn_fit", "evaluate", "register"):
        assert runs[0].data.metrics[f"time.{step}_s"] >= 0
        assert runs[0].data.metrics[f"rss.{step}_gib"] > 0
    assert runs[0].data.metrics["time.total_s"] >= runs[0].data.metrics["time.frames_s"]
    assert first.summary.startswith("train done in ") and f"model v{first.version}" in first.summary
    names = {a.path for a in client.list_artifacts(first.run_id)}
    assert {
        "report.html",
        "bundle",
        "feature_catalogue.md",
        "quarantine_counts.json",
        "clv",
    } <= names
    clv_files = {a.path for a in client.list_artifacts(first.run_id, "clv")}
    assert {"clv/deciles.csv", "clv/clv_deciles.png", "clv/model.json"} <= clv_files
    assert "clv_holdout.purchases_mae" in runs[0].data.metrics
    # every CLV candidate side by side, and which one ranks
    assert {"clv/candidates.csv", "clv/candidate_deciles.csv"} <= clv_files
    assert {"bgnbd.gini", "learned.gini", "naive.gini"} <= {
        k.removeprefix("clv_candidates.") for k in runs[0].data.metrics
    }
    chosen = runs[0].data.tags["clv.ranking_model"]
    assert chosen in {"bgnbd", "learned", "learned, BTYD total"}
    # the chosen model is the one the bundle serves, and the run says which and by what rule
    bundle = tracking.load_version(settings, first.version)
    assert (bundle.clv_learned is not None) == chosen.startswith("learned")
    assert runs[0].data.tags["clv.serving_model"] == bundle.clv_model
    assert runs[0].data.params["clv.choice_rule"].startswith("learned when")
    assert ("clv/learned.json" in clv_files) == chosen.startswith("learned")
    html = tracking.download_report(settings, first.version, settings.scores_dir.parent / "rep")
    text = html.read_text()
    assert "Model vs baselines vs oracle" in text
    # the report says what it is, and shows what used to live only in MLflow
    assert f"churn-clv version {first.version}" in text and first.run_id in text
    assert runs[0].data.tags["git_commit"][:12] in text
    for section in (
        "Metrics among active customers",
        "Risk bands",
        "What drives churn here",
        "CLV model: calibration / holdout check",
        "CLV candidates on the same holdout",
        "baseline: logistic regression",
    ):
        assert section in text, section
    assert text.count("<img ") == text.count(" alt='") >= 6  # model plots and CLV plots
    assert "<details>" in text
    # the bands as make score draws them by default: about 10% high, 20% medium of the test half
    assert "drawn as make score draws them (top 10% high, next 20% medium" in text
    assert "active.valid.roc_auc" in runs[0].data.metrics
    assert runs[0].data.metrics["active.n"] < runs[0].data.metrics["valid.n"]


def test_gate_refuses_a_worse_model(trained):
    settings, _, _ = trained
    _, _, frames = prepare(settings)
    ok, reason, values = gate(settings, frames, new_auc=0.5)
    assert not ok and reason.startswith("fails") and values["champion_roc_auc"] > 0.5
    ok, reason, _ = gate(settings.model_copy(update={"force_promote": True}), frames, new_auc=0.5)
    assert ok and reason == "forced"


def test_rerun_is_reproducible_and_passes_the_gate(trained):
    settings, _first, second = trained
    assert second.version == "2" and second.promoted
    assert "passes" in second.gate_reason
    v1 = tracking.load_version(settings, "1")
    v2 = tracking.load_version(settings, "2")
    assert v1.churn.model_text() == v2.churn.model_text()
    assert v1.clv.params_ == v2.clv.params_
    # what drives churn is stored with the model, the same for the same data
    assert v1.meta["drivers"] == v2.meta["drivers"]
    assert {d["key"] for d in v1.meta["drivers"]["drivers"] if d["available"]} == {
        "effort",
        "value_enhancement",
        "elements_of_value",
        "nps",
        "unresolved",
    }


def test_champion_that_needs_missing_features_is_kept(trained, tmp_path):
    settings, _, _ = trained
    before = tracking.champion_version(settings)
    only_tx = tmp_path / "only_tx"
    only_tx.mkdir()
    tx = pd.read_parquet(settings.data_dir / "transactions.parquet")
    tx.to_parquet(only_tx / "transactions.parquet")
    result = train(settings.model_copy(update={"data_dir": only_tx}))
    assert not result.promoted and "lacks" in result.gate_reason
    assert tracking.champion_version(settings) == before


def test_score_writes_a_verifiable_snapshot(trained):
    settings, _, _ = trained
    result = score(settings)
    assert latest_folder(settings.scores_dir) == result.path.parent
    meta = json.loads((result.path.parent / "snapshot.json").read_text())
    snap = pd.read_parquet(result.path)
    customers = pd.read_parquet(settings.data_dir / "customers.parquet")
    assert meta["rows"] == len(snap) == len(customers)
    assert f"{len(customers):,} customers scored" in result.summary
    assert meta["model_version"] == tracking.champion_version(settings)
    assert snap["churn_probability"].between(0, 1).all()
    assert (snap["clv"] >= 0).all()
    assert ((snap["value_at_risk"] - snap["churn_probability"] * snap["clv"]).abs() < 1e-9).all()
    customers = customers.set_index("customer_id")
    assert (snap.set_index("customer_id")["segment"] == customers["plan"]).all()
    reasons = json.loads(snap["top_reasons"].iloc[0])
    assert reasons and all(tuple(r) == REASON_KEYS for r in reasons)
    meta_bands = meta["risk_bands"]
    assert meta_bands["counts"] == {
        band: int((snap["risk_band"] == band).sum()) for band in ("low", "medium", "high")
    }
    assert (snap.set_index("customer_id")["region"] == customers["region"]).all()
    # the scoring's steps in a run of its own: durations, peak RSS, version and data folder
    run = mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri).get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name.startswith(f"{settings.data_dir.name} h{settings.horizon_days} ")
    assert f" score v{result.model_version} " in run.info.run_name
    tags = run.data.tags
    assert tags["kind"] == tracking.SCORING_KIND
    assert tags["model_version"] == result.model_version == meta["model_version"]
    assert tags["data_dir"] == str(settings.data_dir.resolve())
    assert tags["snapshot"] == str(result.path) and tags["as_of"] == meta["as_of"]
    for step in ("load", "features", "score", "write"):
        assert run.data.metrics[f"time.{step}_s"] >= 0
        assert run.data.metrics[f"rss.{step}_gib"] > 0
    assert run.data.metrics["time.total_s"] >= run.data.metrics["time.score_s"]
    assert run.data.metrics["customers_scored"] == len(snap)


def test_a_second_score_a_week_later_measures_the_change(trained):
    settings, _, _ = trained
    end = score(settings)  # the newest as_of; the week before is then added and rescored
    week_before = (end.as_of - pd.Timedelta(days=7)).isoformat()
    earlier = score(settings.model_copy(update={"as_of": week_before}))
    assert earlier.previous_as_of is None  # no kept snapshot before it
    again = score(settings)
    assert again.previous_as_of == earlier.as_of.strftime("%Y-%m-%dT%H:%M:%SZ")
    now = pd.read_parquet(again.path).set_index("customer_id")
    before = pd.read_parquet(earlier.path).set_index("customer_id")["churn_probability"]
    change = now["churn_probability"] - before.reindex(now.index)
    assert np.allclose(now["change"], change, equal_nan=True)
    assert now["change"].notna().sum() == len(before.index.intersection(now.index)) > 0
    assert now["change"].abs().max() > 0  # a week of events moves some customers


def snapshot_style_data(folder, n: int = 3000, seed: int = 5):
    """A CRM export: customers with attributes and a labels table at three monthly cutoffs,
    no events; churn depends on plan and support tier."""
    rng = np.random.default_rng(seed)
    ids = [f"S{i:05d}" for i in range(n)]
    plan = rng.choice(["basic", "plus", "premium"], n)
    tier = rng.choice(["none", "standard", "priority"], n)
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_date": pd.Timestamp("2024-01-01", tz="UTC")
            - pd.to_timedelta(rng.integers(0, 700, n), unit="D"),
            "plan": plan,
            "support_tier": tier,
            "seats": rng.integers(1, 50, n),
        }
    )
    base = np.where(plan == "basic", 0.45, np.where(plan == "plus", 0.25, 0.1))
    base = base + np.where(tier == "none", 0.15, 0.0)
    rows = []
    for as_of in ("2024-01-01", "2024-02-01", "2024-03-01"):
        rows.append(
            pd.DataFrame(
                {
                    "customer_id": ids,
                    "as_of": as_of,
                    "churned": (rng.random(n) < base).astype(int),
                }
            )
        )
    customers.to_csv(folder / "customers.csv", index=False)
    pd.concat(rows).to_csv(folder / "labels.csv", index=False)


def test_snapshot_style_data_trains_and_scores(tmp_path, make_settings):
    data = tmp_path / "crm"
    data.mkdir()
    snapshot_style_data(data)
    settings = make_settings(tmp_path, data)
    result = train(settings)
    assert result.promoted
    assert result.metrics["valid.roc_auc"] > 0.65
    assert "baseline.bgnbd.roc_auc" not in result.metrics  # no purchases: no BG/NBD
    scored = score(settings)
    snap = pd.read_parquet(scored.path)
    assert len(snap) == 3000 and snap["clv"].isna().all()
    assert snap["churn_probability"].between(0, 1).all()
