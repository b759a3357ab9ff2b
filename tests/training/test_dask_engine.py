"""The Dask engine on a real two-worker ``distributed.LocalCluster``, against the local engine
on the same demo data: same features, same CLV parameters, churn ROC-AUC within 0.01, and a
score for every customer."""

from __future__ import annotations

import json

import distributed
import mlflow
import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from models.bundle import sha256_file
from training import dask_engine, engine, tracking
from training.frames import data_end
from training.io import load_inputs
from training.pipeline import fit_clv, plan_cutoffs

# a real two-worker LocalCluster: make test only, not make test-fast
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes, shared by the module's tests."""
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as c,
        distributed.Client(c),
    ):
        yield c


@pytest.fixture(scope="module")
def dask_settings(tmp_path_factory, demo_dir, make_settings, cluster):
    root = tmp_path_factory.mktemp("dask")
    return make_settings(
        root,
        demo_dir,
        engine="dask",
        dask_scheduler=cluster.scheduler_address,
        dask_partitions=4,
        dask_work_dir=root / "work",
    )


@pytest.fixture(scope="module")
def local(dask_settings):
    settings = dask_settings.model_copy(update={"engine": "local"})
    loaded, _ = load_inputs(settings)
    return settings, loaded


@pytest.fixture(scope="module")
def staged(dask_settings):
    with dask_engine.dask_client(dask_settings):
        loaded, staged, counts = dask_engine.stage_inputs(dask_settings)
    return loaded, staged, counts


def test_staging_co_partitions_customers_and_counts_every_row(staged, local):
    loaded, parts, _ = staged
    assert loaded.rows_in == local[1].rows_in
    owner: dict[str, int] = {}
    for i in range(parts.npartitions):
        for name, table in parts.tables(i).present().items():
            for cid in table["customer_id"].unique():
                assert owner.setdefault(cid, i) == i, f"{cid} of {name} in two partitions"
    assert len(owner) >= len(local[1].tables.customers)


def test_features_equal_the_local_engine(staged, local, dask_settings):
    _, parts, _ = staged
    as_of = data_end(local[1].tables)
    expected = build_features(local[1].tables, as_of=as_of)
    with dask_engine.dask_client(dask_settings):
        got = dask_engine.features_frame(parts, as_of=as_of).compute().sort_index()
    pd.testing.assert_frame_equal(got, expected)


def test_clv_parameters_equal_the_local_fit(staged, local, dask_settings):
    loaded, parts, _ = staged
    plan = plan_cutoffs(
        loaded.tables,
        horizon_days=dask_settings.horizon_days,
        n_training=dask_settings.n_training_cutoffs,
        spacing_days=dask_settings.cutoff_spacing_days,
    )
    local_plan = plan_cutoffs(
        local[1].tables,
        horizon_days=dask_settings.horizon_days,
        n_training=dask_settings.n_training_cutoffs,
        spacing_days=dask_settings.cutoff_spacing_days,
    )
    assert plan == local_plan
    expected = fit_clv(local[1], local_plan).model
    with dask_engine.dask_client(dask_settings):
        fit = dask_engine.fit_clv_distributed(parts, as_of=plan.data_end, record_window=True)
    got = fit.model
    assert got.params_ == expected.params_
    assert got.to_dict()["n_customers"] == expected.to_dict()["n_customers"]
    assert got.fit_window_ == expected.fit_window_


@pytest.fixture(scope="module")
def trained(dask_settings, demo_trained):
    dask_result = engine.train(dask_settings.model_copy(update={"force_promote": True}))
    # the local engine's run on the same data with the same settings: the session's demo run
    return dask_result, demo_trained.result


def test_churn_on_dask_is_as_good_as_local_and_saved_the_same_way(
    trained, dask_settings, demo_trained
):
    on_dask, on_local = trained
    assert abs(on_dask.metrics["valid.roc_auc"] - on_local.metrics["valid.roc_auc"]) < 0.01
    assert on_dask.metrics["valid.roc_auc"] > 0.7
    # the registered bundle is LightGBM text + JSON, read back like any other version
    bundle = tracking.load_version(dask_settings, on_dask.version)
    assert bundle.churn.prior_ is not None and bundle.churn.calibrator_ is not None
    assert 0 < bundle.churn.best_iteration_ <= bundle.churn.num_boost_round
    assert "baseline.logistic.roc_auc" in on_dask.metrics
    # the CLV holdout evaluation is gathered from the partitions: the same numbers as local
    dask_m, local_m = (
        mlflow.MlflowClient(tracking_uri=s.mlflow_tracking_uri).get_run(r.run_id).data.metrics
        for s, r in ((dask_settings, on_dask), (demo_trained.settings, on_local))
    )
    clv = sorted(k for k in local_m if k.startswith("clv_holdout."))
    assert clv
    for k in clv:
        assert dask_m[k] == pytest.approx(local_m[k], rel=1e-9, abs=1e-12), k


def test_dask_scoring_writes_every_customer(trained, dask_settings, local):
    on_dask, _ = trained
    tracking.promote(dask_settings, on_dask.version)
    result = engine.score(dask_settings)
    snapshot = pd.read_parquet(result.path)
    as_of = data_end(local[1].tables)
    population = build_features(local[1].tables, as_of=as_of).index
    assert result.rows == len(snapshot) == len(population)
    assert set(snapshot["customer_id"]) == set(population)
    assert snapshot["churn_probability"].between(0, 1).all()
    assert np.isfinite(snapshot["clv"]).all()
    meta = json.loads((result.path.parent / "snapshot.json").read_text())
    assert meta["sha256"] == sha256_file(result.path) and meta["rows"] == len(snapshot)
    assert meta["model_version"] == on_dask.version
    # one reference for every partition: the bands' counts are the whole snapshot's
    counts = {b: int((snapshot["risk_band"] == b).sum()) for b in ("low", "medium", "high")}
    assert meta["risk_bands"]["counts"] == counts
    assert snapshot["churn_percentile"].between(0, 100).all()
    parts = sorted((dask_settings.dask_work_dir / "scores").glob("part.*.parquet"))
    assert len(parts) == 4
    # logged as the local engine logs it: a scoring run with the steps' figures
    run = mlflow.MlflowClient(tracking_uri=dask_settings.mlflow_tracking_uri).get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert f" score v{on_dask.version} " in run.info.run_name
    assert run.data.tags["kind"] == tracking.SCORING_KIND
    assert run.data.tags["model_version"] == on_dask.version
    assert run.data.tags["snapshot"] == str(result.path)
    assert run.data.tags["as_of"] == meta["as_of"]
    for step in ("load", "score"):
        assert run.data.metrics[f"time.{step}_s"] >= 0
        assert run.data.metrics[f"rss.{step}_gib"] > 0
    assert run.data.metrics["time.total_s"] >= run.data.metrics["time.score_s"]
    assert run.data.metrics["customers_scored"] == len(snapshot)
    assert f"{len(snapshot):,} customers scored" in result.summary


def test_attribute_types_are_decided_on_the_whole_table():
    """A numeric text attribute whose one partition alone looks like text (2 of 3 numbers)
    is numeric in every partition, as on one machine."""
    import dask.dataframe as dd

    tenure = ["12", "7", "x"] + [str(i) for i in range(57)]
    raw = pd.DataFrame({"customer_id": [f"C{i:02d}" for i in range(60)], "tenure": tenure})
    parts = dd.from_pandas(raw, npartitions=3, sort=False)
    numeric = dask_engine._numeric_columns(parts)
    assert numeric == {"tenure"}
    cleaned = [
        dask_engine._validated_part(raw.iloc[i : i + 20], "customers", None, numeric=numeric)
        for i in (0, 20, 40)
    ]
    assert all(part.clean["tenure"].dtype == "float64" for part in cleaned)
    assert sum(part.counts.get("bad_tenure", 0) for part in cleaned) == 1
    empty = dask_engine._validated_part(raw.iloc[:0], "customers", None, numeric=numeric)
    assert empty.clean["tenure"].dtype == "float64"  # the meta the staged parts share
