"""The bundle refuses anything whose sha256 does not match, before parsing it."""

import json

import numpy as np
import pandas as pd
import pytest

from models.bundle import Bundle, BundleError, read_bundle, write_bundle
from models.churn import ChurnModel
from models.scoring import score_frame


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    rng = np.random.default_rng(1)
    n = 500
    X = pd.DataFrame({"frequency": rng.integers(0, 5, n).astype(float), "x": rng.normal(size=n)})
    y = (X["x"] + rng.normal(size=n) > 0).astype(int)
    churn = ChurnModel(num_boost_round=20).fit(X, y)
    return Bundle(
        churn, None, meta={"horizon_days": 90, "risk_thresholds": {"medium": 0.3, "high": 0.6}}
    )


def test_round_trip(tmp_path, bundle):
    digest = write_bundle(tmp_path, bundle)
    again = read_bundle(tmp_path, expected_manifest_sha256=digest)
    assert again.meta["horizon_days"] == 90
    assert again.churn.model_text() == bundle.churn.model_text()


@pytest.mark.parametrize("victim", ["model.lgb", "bundle.json"])
def test_tampered_file_is_refused(tmp_path, bundle, victim):
    digest = write_bundle(tmp_path, bundle)
    with (tmp_path / victim).open("a") as fh:
        fh.write(" ")
    with pytest.raises(BundleError, match="sha256"):
        read_bundle(tmp_path, expected_manifest_sha256=digest)


def test_rewritten_manifest_is_refused(tmp_path, bundle):
    digest = write_bundle(tmp_path, bundle)
    (tmp_path / "bundle.json").write_text(json.dumps({"format_version": 1}))
    # an attacker who also rewrites the manifest still cannot match the registered digest
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["files"]["bundle.json"] = "0" * 64
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="registered"):
        read_bundle(tmp_path, expected_manifest_sha256=digest)


def test_scores_without_clv_have_null_values(bundle):
    frame = pd.DataFrame({"frequency": [1.0, 0.0], "x": [2.0, -2.0]}, index=["a", "b"])
    out = score_frame(bundle, frame)
    assert out["churn_probability"].between(0, 1).all()
    assert out["clv"].isna().all()
    assert set(out["risk_band"]) <= {"low", "medium", "high"}
    for reasons in out["top_reasons"]:
        assert all(0 < r["share"] <= 1 and r["text"] for r in reasons)


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/passwd", ""])
def test_manifest_with_unsafe_paths_is_refused(tmp_path, bundle, name):
    import hashlib

    write_bundle(tmp_path, bundle)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["files"][name] = "0" * 64
    raw = json.dumps(manifest).encode()
    (tmp_path / "manifest.json").write_bytes(raw)
    with pytest.raises(BundleError):
        read_bundle(tmp_path, expected_manifest_sha256=hashlib.sha256(raw).hexdigest())


@pytest.mark.parametrize("extra", ["extra.py", "sub/hook.pth"])
def test_a_file_the_manifest_does_not_list_is_refused(tmp_path, bundle, extra):
    digest = write_bundle(tmp_path, bundle)
    (tmp_path / extra).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / extra).write_text("print('hi')\n")
    with pytest.raises(BundleError, match="not listed in the manifest") as err:
        read_bundle(tmp_path, expected_manifest_sha256=digest)
    assert extra in str(err.value)
    (tmp_path / extra).unlink()
    assert read_bundle(tmp_path, expected_manifest_sha256=digest).meta["horizon_days"] == 90
