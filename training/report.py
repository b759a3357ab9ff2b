"""The training report: one self-contained HTML page with the metrics table and plots (ROC,
calibration, lift/gain by decile, feature importance), logged with every run."""

from __future__ import annotations

import base64
import html
import io

import matplotlib

matplotlib.use("Agg")  # no display: render to PNG bytes only
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from features.catalogue import describe
from features.model_outputs import EXPECTED_PURCHASES
from models.churn import ChurnModel
from training.frames import RANDOM_SPLIT, SNAPSHOT_SPLIT, CutoffPlan, Frames

METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "lift_top10", "capture_top10")


def metrics_table(metrics: dict[str, float]) -> pd.DataFrame:
    """Model vs baselines vs oracle, one row each, on the validation test half."""
    rows = {"churn model (LightGBM, calibrated)": {m: metrics.get(f"valid.{m}") for m in METRICS}}
    for name in ("logistic", "bgnbd"):
        if f"baseline.{name}.roc_auc" in metrics:
            rows[f"baseline: {name}"] = {m: metrics.get(f"baseline.{name}.{m}") for m in METRICS}
    if "valid.oracle_roc_auc" in metrics:
        rows["oracle (generator's true probability)"] = {
            "roc_auc": metrics["valid.oracle_roc_auc"],
            "ece": metrics.get("valid.oracle_ece"),
        }
    return pd.DataFrame(rows).T[list(METRICS)]


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _roc(y: np.ndarray, scores: dict[str, np.ndarray]) -> str:
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for name, score in scores.items():
        fpr, tpr, _ = roc_curve(y, score)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend(fontsize=8)
    return _png(fig)


def _calibration(y: np.ndarray, curves: dict[str, np.ndarray], bins: int = 10) -> str:
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for name, p in curves.items():
        order = np.argsort(p, kind="stable")
        parts = np.array_split(order, bins)
        ax.plot([p[i].mean() for i in parts], [y[i].mean() for i in parts], "o-", label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(
        xlabel="predicted churn probability",
        ylabel="observed churn rate",
        title="calibration (deciles)",
    )
    ax.legend(fontsize=8)
    return _png(fig)


def _lift_gain(y: np.ndarray, p: np.ndarray) -> tuple[str, pd.DataFrame]:
    order = np.argsort(-p, kind="stable")
    deciles = np.array_split(order, 10)
    table = pd.DataFrame(
        {
            "decile": range(1, 11),
            "customers": [len(d) for d in deciles],
            "mean_probability": [p[d].mean() for d in deciles],
            "churn_rate": [y[d].mean() for d in deciles],
        }
    )
    table["lift"] = table["churn_rate"] / y.mean()
    table["cumulative_capture"] = np.cumsum([y[d].sum() for d in deciles]) / y.sum()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
    a1.bar(table["decile"], table["lift"])
    a1.axhline(1, color="k", lw=0.8, ls=":")
    a1.set(xlabel="decile (1 = highest risk)", ylabel="lift", title="lift by decile")
    a2.plot(np.r_[0, table["decile"]] * 10, np.r_[0, table["cumulative_capture"]] * 100, "o-")
    a2.plot([0, 100], [0, 100], "k:", lw=0.8)
    a2.set(xlabel="% customers contacted", ylabel="% churners captured", title="gain")
    return _png(fig), table


def _importance(churn: ChurnModel, top: int = 20) -> str:
    gain = churn.feature_gain()
    imp = pd.Series(gain, index=churn.features_).sort_values().tail(top)
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(imp) + 1))
    ax.barh([f"{n}" for n in imp.index], imp.to_numpy())
    ax.set(xlabel="total gain", title="feature importance")
    return _png(fig)


def render_report(
    *,
    churn: ChurnModel,
    frames: Frames,
    prob: pd.Series,
    metrics: dict[str, float],
    plan: CutoffPlan,
) -> str:
    """The report page as an HTML string (images embedded, no external files)."""
    y = frames.test["churned"].to_numpy(dtype=int)
    p = prob.to_numpy()
    scores = {"churn model": p}
    if EXPECTED_PURCHASES in frames.test and frames.test[EXPECTED_PURCHASES].notna().all():
        scores["BG/NBD expected purchases"] = -frames.test[EXPECTED_PURCHASES].to_numpy()
    raw = churn.predict_raw(frames.test[frames.features])
    lift_png, lift_table = _lift_gain(y, p)
    described = pd.DataFrame(
        {"feature": churn.features_, "description": [describe(f) for f in churn.features_]}
    )
    images = [
        _roc(y, scores),
        _calibration(y, {"calibrated": p, "uncalibrated": raw}),
        lift_png,
        _importance(churn),
    ]
    if plan.one_snapshot:
        shares = "/".join(f"{100 * s:g}" for s in SNAPSHOT_SPLIT)
        window = (
            f"Validation: {RANDOM_SPLIT}. One label snapshot at {plan.validation.date()}: its "
            f"customers are split {shares} (train/calibration/test) by a stable hash of "
            f"customer_id, stratified by label (test: {len(y):,} customers); the metrics do "
            f"not show how the model ages. Horizon {plan.horizon_days} days; "
            f"labels: {plan.label_source}"
        )
    else:
        window = (
            f"Validation: {plan.validation_kind}. "
            f"Training cutoffs {', '.join(str(c.date()) for c in plan.training)}; "
            f"validation cutoff {plan.validation.date()} (test half: {len(y):,} customers); "
            f"horizon {plan.horizon_days} days; labels: {plan.label_source}"
        )
    return "\n".join(
        [
            "<!doctype html><html><head><meta charset='utf-8'><title>churn model report</title>",
            "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}"
            "table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
            "</style></head><body>",
            "<h1>Churn model report</h1>",
            f"<p>{html.escape(window)}</p>",
            "<h2>Model vs baselines vs oracle</h2>",
            metrics_table(metrics).to_html(float_format="{:.4f}".format, na_rep=""),
            "<h2>Plots</h2>",
            *[f"<img src='data:image/png;base64,{img}'>" for img in images],
            "<h2>Lift and capture by decile</h2>",
            lift_table.to_html(index=False, float_format="{:.3f}".format),
            "<h2>Features</h2>",
            described.to_html(index=False),
            "</body></html>",
        ]
    )
