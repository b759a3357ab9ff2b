"""The training report: one self-contained HTML page logged with every run (``report.html``,
fetched by ``make report``).

It says what it is (model version, run, date, commit, data folder, rows read and
quarantined), how good the model is (metrics next to the baselines and the demo oracle, each
explained in one line, over all and over active customers), the risk bands, the plots (ROC,
calibration, lift/gain with the baselines, feature importance), what drives churn at the
validation cutoff next to the research the features come from (:mod:`training.drivers`), the
CLV model's calibration/holdout check, and the feature list (folded away).
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # no display: render to PNG bytes only
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from features.catalogue import describe
from models.churn import ChurnModel
from models.distribution import BandRule, band_thresholds, risk_band
from training.baselines import RANKING_ONLY
from training.clv_fit import CHOICE_RULE
from training.evaluate import TOP_SHARE
from training.frames import RANDOM_SPLIT, SNAPSHOT_SPLIT, CutoffPlan, Frames

if TYPE_CHECKING:  # the pipeline imports this module: no import cycle at run time
    from training.pipeline import CLVHoldout

METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "lift_top10", "capture_top10")
#: One line per metric, shown under the metrics tables.
METRIC_NOTES = {
    "roc_auc": "ROC-AUC: the chance that a random churner is ranked above a random stayer "
    "(0.5 = coin toss, 1 = perfect ranking).",
    "pr_auc": "PR-AUC: average precision over the ranking; its floor is the churn rate, not 0.5.",
    "log_loss": "log loss: mean penalty for the predicted probability of what happened "
    "(lower is better; punishes confident mistakes).",
    "brier": "Brier score: mean squared gap between the probability and the 0/1 outcome "
    "(lower is better).",
    "ece": "ECE: expected calibration error, mean |observed rate - predicted probability| "
    "over 10 equal-size bins (0 = the probabilities mean what they say).",
    "lift_top10": "lift top 10%: churn rate among the 10% ranked riskiest over the overall "
    "rate (its ceiling is 1 / churn rate).",
    "capture_top10": "capture top 10%: share of all churners found in the 10% ranked "
    "riskiest (what calling the top 10% reaches).",
}
BASELINE_LABELS = {"logistic": "logistic regression", "bgnbd": "BG/NBD expected purchases"}
VERDICT_TEXT = {
    "holds": "holds here",
    "reversed": "reversed here",
    "unclear": "not clear here",
    "absent": "cannot be checked",
}


@dataclass(frozen=True)
class RunInfo:
    """What the report says it is: the registered version and where it came from."""

    model_name: str
    model_version: str
    run_id: str
    started: str
    git_commit: str
    data_dir: str
    rows_in: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    gate: str = ""


def metrics_table(metrics: dict[str, float], *, prefix: str = "") -> pd.DataFrame:
    """Model vs baselines vs oracle, one row each, on the validation test half (``prefix``
    ``"active."``: the same among its active customers)."""
    rows = {
        "churn model (LightGBM, calibrated)": {
            m: metrics.get(f"{prefix}valid.{m}") for m in METRICS
        }
    }
    for name in ("logistic", "bgnbd"):
        if f"{prefix}baseline.{name}.roc_auc" in metrics:
            rows[f"baseline: {BASELINE_LABELS[name]}"] = {
                m: metrics.get(f"{prefix}baseline.{name}.{m}") for m in METRICS
            }
    if not prefix and "valid.oracle_roc_auc" in metrics:
        rows["oracle (generator's true probability)"] = {
            "roc_auc": metrics["valid.oracle_roc_auc"],
            "ece": metrics.get("valid.oracle_ece"),
        }
    return pd.DataFrame(rows).T.reindex(columns=list(METRICS))


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
    ax.plot([0, 1], [0, 1], "k:", lw=0.8, label="random")
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


def lift_table(y: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    """Customers, mean score, churn rate, lift and cumulative capture by decile of ``p``
    (decile 1 = highest)."""
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
    return table


def _lift_gain(y: np.ndarray, scores: dict[str, np.ndarray]) -> str:
    """Lift by decile (grouped bars) and the gain curve of every score."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
    width = 0.8 / len(scores)
    for i, (name, score) in enumerate(scores.items()):
        t = lift_table(y, score)
        a1.bar(t["decile"] + (i - (len(scores) - 1) / 2) * width, t["lift"], width, label=name)
        a2.plot(np.r_[0, t["decile"]] * 10, np.r_[0, t["cumulative_capture"]] * 100, "o-")
    a1.axhline(1, color="k", lw=0.8, ls=":")
    a1.axhline(1 / y.mean(), color="grey", lw=0.8, ls="--", label="ceiling (1 / churn rate)")
    a1.set(xlabel="decile (1 = highest risk)", ylabel="lift", title="lift by decile")
    a1.set_ylim(0, 1.45 / y.mean())  # headroom above the ceiling for the legend
    a1.legend(fontsize=7, loc="upper right")
    a2.plot([0, 100], [0, 100], "k:", lw=0.8)
    a2.set(xlabel="% customers contacted", ylabel="% churners captured", title="gain")
    return _png(fig)


def _importance(churn: ChurnModel, top: int = 20) -> tuple[str, list[str]]:
    gain = churn.feature_gain()
    imp = pd.Series(gain, index=churn.features_).sort_values().tail(top)
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(imp) + 1))
    ax.barh([f"{n}" for n in imp.index], imp.to_numpy())
    ax.set(xlabel="total gain", title="feature importance")
    return _png(fig), list(imp.index[::-1])


def _e(text: object) -> str:
    return html.escape(str(text))


def _img(b64: str, alt: str, caption: str = "", *, half: bool = False) -> str:
    """An embedded PNG with alt text (what the image shows, in figures, for a screen reader
    or a text browser) and a visible caption; ``half``: shown half the page wide."""
    cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    cls = " class='half'" if half else ""
    return f"<figure{cls}><img src='data:image/png;base64,{b64}' alt='{_e(alt)}'>{cap}</figure>"


def _kv_table(rows: list[tuple[str, object]]) -> str:
    def text(v: object) -> str:
        return v if isinstance(v, str) else json.dumps(v, sort_keys=True)

    cells = "".join(f"<tr><th>{_e(k)}</th><td>{_e(text(v))}</td></tr>" for k, v in rows)
    return f"<table class='kv'>{cells}</table>"


def _about(info: RunInfo | None, window: str) -> list[str]:
    if info is None:
        return [f"<p>{_e(window)}</p>"]
    short = info.git_commit[:12]
    parts = [
        _kv_table(
            [
                ("model", f"{info.model_name} version {info.model_version}"),
                ("MLflow run", info.run_id),
                ("trained (UTC)", info.started),
                ("git commit", short),
                ("data folder", info.data_dir),
                ("promotion gate", info.gate),
            ]
        ),
        f"<p>{_e(window)}</p>",
    ]
    if info.rows_in:
        table = pd.DataFrame(
            {
                "rows read": pd.Series(info.rows_in),
                "rows quarantined": pd.Series(info.quarantined).reindex(list(info.rows_in)),
            }
        ).fillna(0)
        table["rows used"] = table["rows read"] - table["rows quarantined"]
        parts += [
            "<h3>Input tables</h3>",
            table.astype("int64").to_html(formatters={c: "{:,}".format for c in table}),
            "<p class='note'>Quarantined rows failed a validation rule and were left out; "
            "the reasons are in the run's quarantine_counts.json and report.csv.</p>",
        ]
    return parts


def _ceiling_note(metrics: dict[str, float], churn_rate: float, prefix: str = "") -> str:
    """A line when the model's top-10% lift is at its ceiling (every customer there churned):
    lift then tells model and baselines apart no more, ROC-AUC and PR-AUC still do."""
    lift = metrics.get(f"{prefix}valid.lift_top10")
    if lift is None or churn_rate <= 0 or lift < 1 / churn_rate - 1e-9:
        return ""
    return (
        f"<p class='note'>The model's lift in the top 10% ({lift:.2f}) is at its ceiling "
        f"(1 / churn rate): every customer there churned, so lift and capture cannot tell "
        "it from a baseline that does the same; compare ROC-AUC and PR-AUC.</p>"
    )


def _metric_notes() -> str:
    return (
        "<ul class='note'>"
        + "".join(f"<li>{_e(t)}</li>" for t in METRIC_NOTES.values())
        + ("</ul>")
    )


def _active_section(metrics: dict[str, float], n_test: int) -> list[str]:
    head = "<h2>Metrics among active customers</h2>"
    if "active.n" not in metrics:
        return [
            head,
            "<p>Not shown: the active customers of the test half hold one class only.</p>",
        ]
    n, rate = int(metrics["active.n"]), metrics["active.churn_rate"]
    return [
        head,
        f"<p>{n:,} of {n_test:,} test customers are active at the cutoff (not lapsed by the "
        f"status rule of docs/status.md); their churn rate is {100 * rate:.1f}%, so the lift "
        f"ceiling is {1 / rate:.2f}. Lapsed customers are nearly all churners and easy to rank; "
        "these figures show whether the model finds the customers who can still be kept.</p>",
        metrics_table(metrics, prefix="active.").to_html(float_format="{:.4f}".format, na_rep=""),
        _ceiling_note(metrics, rate, "active."),
    ]


def _bands_section(meta: dict[str, Any], prob: np.ndarray, y: np.ndarray) -> list[str]:
    """The bundle's risk-band settings as stored, and the test half's counts under its
    probability thresholds (when it has them)."""
    head = "<h2>Risk bands</h2>"
    settings = {k: v for k, v in meta.items() if k.startswith("risk_") or k.endswith("_bands")}
    if not settings:
        return [head, "<p>The bundle stores no risk-band settings.</p>"]
    parts = [head, _kv_table([(k, v) for k, v in sorted(settings.items())])]
    thresholds = meta.get("risk_thresholds")
    rule = meta.get("risk_band_rule")
    how = "by the thresholds above"
    if isinstance(rule, dict) and rule.get("mode") == "distribution":
        # make score draws the bands from the scored customers: shown here on the test half
        drawn = BandRule(
            mode="distribution",
            high_share=float(rule["high_share"]),
            medium_share=float(rule["medium_share"]),
        )
        thresholds = band_thresholds(prob, drawn)
        how = (
            f"drawn as make score draws them (top {drawn.high_share:.0%} high, next "
            f"{drawn.medium_share:.0%} medium; at scoring time among the customers who are not "
            "lapsed), here over the test half"
        )
    if isinstance(thresholds, dict) and {"medium", "high"} <= set(thresholds):
        band = risk_band(prob, thresholds)
        rows = []
        for name in ("high", "medium", "low"):
            mask = band == name
            rows.append(
                {
                    "band": name,
                    "from probability": thresholds.get(name, 0.0) if name != "low" else 0.0,
                    "test customers": int(mask.sum()),
                    "share": mask.mean(),
                    "observed churn rate": y[mask].mean() if mask.any() else np.nan,
                }
            )
        parts += [
            f"<p>Test-half customers in each band, {how}:</p>",
            pd.DataFrame(rows).to_html(
                index=False,
                float_format="{:.3f}".format,
                formatters={"test customers": "{:,}".format},
                na_rep="",
            ),
        ]
    return parts


def _percent(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def _drivers_section(drivers: dict[str, Any] | None) -> list[str]:
    head = "<h2>What drives churn here</h2>"
    if not drivers:
        return [head, "<p>Not computed for this run.</p>"]
    parts = [
        head,
        f"<p>Observed churn over the {drivers['horizon_days']}-day horizon of the "
        f"{drivers['customers']:,} validation customers at {drivers['as_of'][:10]} "
        f"(overall {_percent(drivers['churn_rate'])}), by the bands the research behind the "
        "features names, with 95% Wilson intervals. A claim <b>holds here</b> when the band "
        "it expects to churn less does so with the two intervals apart, is <b>reversed</b> "
        "when it churns more with the intervals apart, and is <b>not clear</b> otherwise. "
        "These are observed rates, not causal effects: a customer who has stopped contacting "
        "the firm may simply be gone, so rows without a score are shown apart and left out "
        "of the verdict.</p>",
    ]
    for d in drivers["drivers"]:
        verdict = VERDICT_TEXT.get(d["verdict"], d["verdict"])
        parts += [
            f"<h3>{_e(d['title'])}</h3>",
            f"<p class='claim'><b>Claim</b> ({_e(d['source'])}): {_e(d['claim'])}</p>",
        ]
        if not d["available"]:
            parts.append(f"<p><b>{_e(verdict)}</b>: {_e(d['note'])}.</p>")
            continue
        parts.append(f"<p><b>{_e(verdict)}</b>: {_e(d['finding'])}.</p>")
        rows = pd.DataFrame(
            {
                "band": [r["band"] for r in d["rows"]],
                "customers": [r["customers"] for r in d["rows"]],
                "churned": [r["churned"] for r in d["rows"]],
                "churn rate": [_percent(r["churn_rate"]) for r in d["rows"]],
                "95% interval": [
                    f"{_percent(r['low'])} - {_percent(r['high'])}" if r["customers"] else ""
                    for r in d["rows"]
                ],
            }
        )
        parts.append(rows.to_html(index=False, formatters={"customers": "{:,}".format}))
    return parts


CLV_NOTES = {
    "purchases_error_pct": "total predicted repeat purchases over actual, minus 1 (%)",
    "purchases_mae": "mean absolute error of each customer's repeat purchases",
    "spend_mae": "mean absolute error of each customer's holdout spend",
    "clv_spearman": "rank correlation of predicted CLV with actual holdout spend",
    "clv_gini": "normalised Gini of actual spend ordered by predicted CLV (1 = perfect order)",
}


def _clv_section(clv: CLVHoldout | None) -> list[str]:
    head = "<h2>CLV model: calibration / holdout check</h2>"
    if clv is None or clv.evaluation is None:
        why = clv.skipped if clv is not None and clv.skipped else "not run"
        return [head, f"<p>Not shown: {_e(why)}.</p>"]
    ev = clv.evaluation
    m = ev.metrics
    rows = pd.DataFrame(
        {
            "model": [m.get(k) for k in CLV_NOTES],
            "naive (rate carried forward)": [m.get(f"{k}_naive") for k in CLV_NOTES],
            "what it measures": list(CLV_NOTES.values()),
        },
        index=list(CLV_NOTES),
    )
    alts = {
        "clv_conditional_expectation.png": "Mean holdout repeat purchases by number of "
        "calibration repeat purchases (0 to 7+): actual, model and naive forecast.",
        "clv_deciles.png": "Mean predicted and actual holdout spend per customer by decile of "
        "predicted CLV (1 = highest).",
    }
    images = [
        _img(base64.b64encode(png).decode("ascii"), alts.get(name, name), half=True)
        for name, png in clv.plots.items()
    ]
    return [
        head,
        f"<p>A CLV model with the final model's settings, fitted on purchases before the "
        f"cutoff, forecasts the next {m.get('horizon_days', 0):.0f} days of "
        f"{m.get('n_customers', 0):,.0f} customers; actual repeat purchases "
        f"{m.get('purchases_actual', 0):,.0f}, predicted {m.get('purchases_predicted', 0):,.0f}; "
        f"actual spend {m.get('spend_actual', 0):,.0f}, predicted (undiscounted) "
        f"{m.get('spend_predicted', 0):,.0f}. See docs/clv.md.</p>",
        rows.to_html(float_format="{:.4f}".format, na_rep="", classes="text-last"),
        "<h3>Conditional expectation (by calibration repeat purchases)</h3>",
        ev.conditional_expectation.to_html(float_format="{:.3f}".format),
        "<h3>Predicted CLV deciles</h3>",
        ev.deciles.to_html(float_format="{:.3f}".format),
        *images,
        *_candidates_section(clv),
    ]


def _candidates_section(clv: CLVHoldout) -> list[str]:
    """Every CLV candidate on the same holdout, and which one serves (docs/clv.md)."""
    if clv.candidates is None:
        return []
    sample = clv.candidates.sample
    return [
        "<h3>CLV candidates on the same holdout</h3>",
        f"<p>Serving: {_e(clv.serving)}. Rule: {_e(CHOICE_RULE)}.</p>",
        *([f"<p>Compared on a sample: {_e(sample)}.</p>"] if sample else []),
        clv.candidates.table.to_html(float_format="{:.3f}".format, na_rep=""),
    ]


def _window(plan: CutoffPlan, n_test: int) -> str:
    if plan.one_snapshot:
        shares = "/".join(f"{100 * s:g}" for s in SNAPSHOT_SPLIT)
        return (
            f"Validation: {RANDOM_SPLIT}. One label snapshot at {plan.validation.date()}: its "
            f"customers are split {shares} (train/calibration/test) by a stable hash of "
            f"customer_id, stratified by label (test: {n_test:,} customers); the metrics do "
            f"not show how the model ages. Horizon {plan.horizon_days} days; "
            f"labels: {plan.label_source}"
        )
    return (
        f"Validation: {plan.validation_kind}. "
        f"Training cutoffs {', '.join(str(c.date()) for c in plan.training)}; "
        f"validation cutoff {plan.validation.date()} (test half: {n_test:,} customers); "
        f"horizon {plan.horizon_days} days; labels: {plan.label_source}"
    )


STYLE = (
    "body{font-family:sans-serif;max-width:1000px;margin:auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:0.5em 0}"
    "td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}"
    "table.kv th,table.kv td,table.text-last td:last-child{text-align:left}"
    ".note{color:#444;font-size:0.9em}.claim{background:#f4f4f8;padding:4px 8px}"
    "figure{display:inline-block;margin:0.5em;vertical-align:top}"
    "figcaption{font-size:0.85em;color:#444;max-width:460px}"
    "figure.half img{width:460px}"
)


def render_report(
    *,
    churn: ChurnModel,
    frames: Frames,
    prob: pd.Series,
    metrics: dict[str, float],
    plan: CutoffPlan,
    info: RunInfo | None = None,
    meta: dict[str, Any] | None = None,
    baselines: dict[str, np.ndarray] | None = None,
    clv: CLVHoldout | None = None,
) -> str:
    """The report page as an HTML string (images embedded, no external files).

    ``info``: the registered version and its origin; ``meta``: the bundle's JSON metadata
    (risk bands, ``drivers``); ``baselines``: each baseline's test-half score (higher = more
    likely to churn), drawn next to the model; ``clv``: the CLV holdout check."""
    meta = meta or {}
    y = frames.test["churned"].to_numpy(dtype=int)
    p = prob.to_numpy()
    scores = {"churn model": p} | {
        f"baseline: {BASELINE_LABELS.get(n, n)}": s for n, s in (baselines or {}).items()
    }
    raw = churn.predict_raw(frames.test[frames.features])
    lift = lift_table(y, p)
    described = pd.DataFrame(
        {"feature": churn.features_, "description": [describe(f) for f in churn.features_]}
    )
    aucs = ", ".join(
        f"{n.removeprefix('baseline: ')} {metrics.get(k, float('nan')):.3f}"
        for n, k in zip(
            scores,
            ["valid.roc_auc", *[f"baseline.{b}.roc_auc" for b in (baselines or {})]],
            strict=True,
        )
    )
    importance, top = _importance(churn)
    n_rank = sum(1 for b in (baselines or {}) if b in RANKING_ONLY)
    images = [
        _img(
            _roc(y, scores),
            f"ROC curves on the test half; ROC-AUC: {aucs}.",
            "ROC: model and baselines on the test half.",
        ),
        _img(
            _calibration(y, {"calibrated": p, "uncalibrated": raw}),
            "Observed churn rate against mean predicted probability in ten equal-size bins, "
            f"calibrated (ECE {metrics.get('valid.ece', float('nan')):.3f}) and uncalibrated "
            f"(ECE {metrics.get('valid.ece_uncalibrated', float('nan')):.3f}).",
            "Calibration: the closer to the diagonal, the more the probabilities mean what "
            "they say.",
        ),
        _img(
            _lift_gain(y, scores),
            f"Lift by decile and gain curve of the model and {len(scores) - 1} baselines; "
            f"model lift in the top {100 * TOP_SHARE:.0f}% {lift['lift'].iloc[0]:.2f}, "
            f"ceiling {1 / y.mean():.2f}.",
            "Lift and gain: model and baselines"
            + (" (BG/NBD is a ranking, not a probability)" if n_rank else "")
            + ".",
        ),
        _img(
            importance,
            "Feature importance by total gain, the highest first: " + ", ".join(top[:10]) + ".",
            "The 20 features with the most total gain in the trees.",
        ),
    ]
    return "\n".join(
        [
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
            "<title>churn model report</title>",
            f"<style>{STYLE}</style></head><body>",
            "<h1>Churn model report"
            + (f": {_e(info.model_name)} v{_e(info.model_version)}" if info else "")
            + "</h1>",
            *_about(info, _window(plan, len(y))),
            "<h2>Model vs baselines vs oracle</h2>",
            f"<p>On the {len(y):,} customers of the test half (churn rate "
            f"{100 * y.mean():.1f}%).</p>",
            metrics_table(metrics).to_html(float_format="{:.4f}".format, na_rep=""),
            _ceiling_note(metrics, float(y.mean())),
            _metric_notes(),
            *_active_section(metrics, len(y)),
            *_bands_section(meta, p, y),
            "<h2>Plots</h2>",
            *images,
            "<h2>Lift and capture by decile</h2>",
            lift.to_html(index=False, float_format="{:.3f}".format),
            *_drivers_section(meta.get("drivers")),
            *_clv_section(clv),
            "<h2>Features</h2>",
            f"<details><summary>The {len(described)} features of the churn model "
            "(click to show)</summary>",
            described.to_html(index=False),
            "</details>",
            "</body></html>",
        ]
    )
