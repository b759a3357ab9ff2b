"""The monitoring report: one self-contained HTML page (``<scores_dir>/monitoring/report.html``).

Built from the ``latest.json`` document of :mod:`training.monitor` alone, so the page and the
JSON never disagree. Every plot is inline SVG (no script, no CDN, no image file): one line
per figure over the kept snapshots, the thresholds drawn in. docs/monitoring.md says how to
read it.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

from training.report import STYLE

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")
WIDTH, HEIGHT = 460, 250
#: The bottom margin holds the x labels and up to three rows of legend.
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 12, 26, 62
EXTRA_STYLE = (
    ".alert{background:#fdecea;border-left:4px solid #c0392b;padding:4px 8px;margin:2px 0}"
    ".ok{background:#eafaf1;border-left:4px solid #27ae60;padding:4px 8px}"
    "svg{background:#fff;border:1px solid #eee}"
    "details{margin:0.5em 0}"
)


def _e(text: object) -> str:
    return html.escape(str(text))


def _fmt(v: Any, spec: str = ".3f") -> str:
    if v is None:
        return "-"
    if isinstance(v, int | float):
        return format(v, spec)
    return _e(v)


def line_chart(
    title: str,
    x_labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    hlines: Mapping[str, float | None] | None = None,
    dashed: Sequence[str] = (),
    y_format: str = ".2f",
) -> str:
    """An inline SVG line chart: one polyline per ``series`` (None leaves a gap), points as
    dots, dotted horizontal ``hlines`` (a threshold, a reference) and a legend; the title as
    the accessible name."""
    values = [v for s in series.values() for v in s if v is not None]
    values += [v for v in (hlines or {}).values() if v is not None]
    n = len(x_labels)
    if not values or n == 0:
        return f"<figure><figcaption>{_e(title)}: nothing to plot yet</figcaption></figure>"
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.1 or abs(hi) * 0.1 or 0.1
    lo, hi = lo - pad, hi + pad
    pw, ph = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM

    def x(i: int) -> float:
        return _LEFT + (pw * i / (n - 1) if n > 1 else pw / 2)

    def y(v: float) -> float:
        return _TOP + ph * (1 - (v - lo) / (hi - lo))

    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{HEIGHT}' "
        f"viewBox='0 0 {WIDTH} {HEIGHT}' role='img' aria-label='{_e(title)}'>",
        f"<text x='{WIDTH / 2}' y='16' text-anchor='middle' font-size='13'>{_e(title)}</text>",
    ]
    for k in range(5):  # y grid and ticks
        v = lo + (hi - lo) * k / 4
        parts.append(
            f"<line x1='{_LEFT}' x2='{WIDTH - _RIGHT}' y1='{y(v):.1f}' y2='{y(v):.1f}' "
            "stroke='#eee'/>"
            f"<text x='{_LEFT - 4}' y='{y(v) + 4:.1f}' text-anchor='end' font-size='10'>"
            f"{format(v, y_format)}</text>"
        )
    step = max(1, (n + 5) // 6)
    for i, label in enumerate(x_labels):
        if i % step == 0 or i == n - 1:
            parts.append(
                f"<text x='{x(i):.1f}' y='{HEIGHT - _BOTTOM + 14}' text-anchor='middle' "
                f"font-size='10'>{_e(label)}</text>"
            )
    legend: list[tuple[str, str, bool]] = []
    for name, level in (hlines or {}).items():
        if level is None:
            continue
        v = level
        color = "#c0392b" if "alert" in name or "threshold" in name else "#888"
        parts.append(
            f"<line x1='{_LEFT}' x2='{WIDTH - _RIGHT}' y1='{y(v):.1f}' y2='{y(v):.1f}' "
            f"stroke='{color}' stroke-dasharray='2,3'/>"
        )
        legend.append((name, color, True))
    for j, (name, points) in enumerate(series.items()):
        color = COLORS[j % len(COLORS)]
        dash = " stroke-dasharray='6,3'" if name in dashed else ""
        run: list[str] = []
        for i, point in enumerate([*points, None]):
            if point is not None:
                v = point
                run.append(f"{x(i):.1f},{y(v):.1f}")
                parts.append(
                    f"<circle cx='{x(i):.1f}' cy='{y(v):.1f}' r='2.5' fill='{color}'>"
                    f"<title>{_e(name)} {_e(x_labels[i])}: {format(v, y_format)}</title></circle>"
                )
            elif run:  # a gap (or the end): draw the run so far
                parts.append(
                    f"<polyline fill='none' stroke='{color}' stroke-width='1.8'{dash} "
                    f"points='{' '.join(run)}'/>"
                )
                run = []
        legend.append((name, color, bool(dash)))
    for k, (name, color, is_dashed) in enumerate(legend):
        lx = _LEFT + (k % 3) * (pw / 3)
        ly = HEIGHT - _BOTTOM + 32 + (k // 3) * 12
        dash = " stroke-dasharray='4,2'" if is_dashed else ""
        parts.append(
            f"<line x1='{lx:.1f}' x2='{lx + 14:.1f}' y1='{ly - 3}' y2='{ly - 3}' "
            f"stroke='{color}' stroke-width='2'{dash}/>"
            f"<text x='{lx + 18:.1f}' y='{ly}' font-size='10'>{_e(name[:28])}</text>"
        )
    parts.append("</svg>")
    return f"<figure>{''.join(parts)}</figure>"


def _get(row: Mapping[str, Any], *path: str) -> Any:
    value: Any = row
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _feature_series(rows: list[dict], key: str, ignore: Sequence[str], top: int = 5) -> dict:
    """The ``key`` (psi or missing_change) of the ``top`` features with the largest absolute
    value over the snapshots, one series each."""
    by: dict[str, list[float | None]] = {}
    for i, row in enumerate(rows):
        for f in _get(row, "drift", "features") or []:
            if f["feature"] in ignore or f.get(key) is None:
                continue
            by.setdefault(f["feature"], [None] * len(rows))[i] = f[key]
    ranked = sorted(by, key=lambda k: -max(abs(v) for v in by[k] if v is not None))
    return {k: by[k] for k in ranked[:top]}


def _significant_series(rows: list[dict], ignore: Sequence[str], top: int = 5) -> dict:
    """PSI of the input columns and segments, per snapshot only where it passed that
    snapshot's p-value limit (elsewhere a gap), for the ``top`` that moved most."""
    by: dict[str, list[float | None]] = {}
    for i, row in enumerate(rows):
        limit = _get(row, "drift", "p_value_limit") or 0.0
        for f in _get(row, "drift", "columns") or []:
            p = f.get("p_value")
            if f["feature"] in ignore or f.get("psi") is None or p is None or p >= limit:
                continue
            by.setdefault(f["feature"], [None] * len(rows))[i] = f["psi"]
    ranked = sorted(by, key=lambda k: -max(v for v in by[k] if v is not None))
    return {k: by[k] for k in ranked[:top]}


def _table_series(rows: list[dict]) -> tuple[dict, dict]:
    """Rows per day change and quarantine rate per reason, per table, over the snapshots."""
    change: dict[str, list[float | None]] = {}
    quarantine: dict[str, list[float | None]] = {}
    for i, row in enumerate(rows):
        for t in _get(row, "drift", "tables") or []:
            if t.get("rows_per_day_change") is not None:
                change.setdefault(t["table"], [None] * len(rows))[i] = t["rows_per_day_change"]
            for reason, q in t["quarantine"].items():
                quarantine.setdefault(f"{t['table']}.{reason}", [None] * len(rows))[i] = q["rate"]
    return change, quarantine


def _observed_expected(
    title: str, x: Sequence[str], rows: list[dict], key: str, y_format: str
) -> str:
    """A chart of figure ``key``: realized (solid, where labels are in) and estimated."""
    series = {
        "observed": [_get(r, "realized", key) for r in rows],
        "expected": [_get(r, "estimated", key) for r in rows],
    }
    return line_chart(title, x, series, dashed=("expected",), y_format=y_format)


def _rows_table(rows: list[dict]) -> str:
    head = (
        "<tr><th>as_of</th><th>model</th><th>customers</th><th>labels</th>"
        "<th>est. AUC</th><th>AUC</th><th>ECE</th><th>churn rate exp. / obs.</th>"
        "<th>lift top 10% exp. / obs.</th><th>lost in top N exp. / obs.</th>"
        "<th>value lost in top N exp. / obs.</th><th>PSI max</th><th>alerts</th></tr>"
    )
    body = []
    for r in reversed(rows):
        est, got = r.get("estimated") or {}, r.get("realized") or {}
        drift = r.get("drift") or {}
        labels = (
            "due " + r["labels_due"][:10]
            if not r["horizon_passed"]
            else f"{got.get('labelled', 0):,}"
        )
        psi = (
            f"{_fmt(drift.get('psi_max'))} ({_e(drift.get('psi_feature'))})"
            if drift.get("psi_max") is not None
            else "-"
        )
        n_alerts = len(r["input_alerts"]) + len(r["performance_alerts"])
        body.append(
            f"<tr><td>{_e(r['as_of'][:10])}</td><td>v{_e(r['model_version'])}</td>"
            f"<td>{r['customers']:,}</td><td>{labels}</td>"
            f"<td>{_fmt(est.get('roc_auc'))}</td><td>{_fmt(got.get('roc_auc'))}</td>"
            f"<td>{_fmt(got.get('ece'))}</td>"
            f"<td>{_fmt(est.get('churn_rate'))} / {_fmt(got.get('churn_rate'))}</td>"
            f"<td>{_fmt(est.get('lift_top10'), '.2f')} / {_fmt(got.get('lift_top10'), '.2f')}</td>"
            f"<td>{_fmt(est.get('lost_top_n'), '.1f')} / {_fmt(got.get('lost_top_n'), 'd')}</td>"
            f"<td>{_fmt(est.get('value_lost_top_n'), ',.0f')} / "
            f"{_fmt(got.get('value_lost_top_n'), ',.0f')}</td>"
            f"<td>{psi}</td><td>{n_alerts}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def _bands_table(row: dict | None) -> str:
    bands = _get(row or {}, "realized", "bands")
    if not bands:
        return "<p class='note'>No snapshot has its labels yet.</p>"
    cells = "".join(
        f"<tr><td>{_e(b)}</td><td>{v['n']:,}</td><td>{_fmt(v['predicted'])}</td>"
        f"<td>{_fmt(v['observed'])}</td></tr>"
        for b, v in bands.items()
    )
    return (
        f"<p>Snapshot of {_e(row['as_of'][:10]) if row else ''}: churn rate per risk band, "
        "predicted (mean calibrated probability) and observed (share who churned).</p>"
        "<table><tr><th>band</th><th>customers</th><th>predicted</th><th>observed</th></tr>"
        f"{cells}</table>"
    )


def _drift_table(row: dict, ignore: Sequence[str]) -> str:
    features = _get(row, "drift", "features") or []
    if not features:
        return f"<p class='note'>{_e(_get(row, 'drift', 'note') or 'no drift figures')}</p>"

    def line(f: dict) -> str:
        share = (
            f"{f['max_share_change']:+.3f} ({_e(f['category'])})"
            if f.get("max_share_change") is not None
            else ""
        )
        flag = " (not alerted)" if f["feature"] in ignore else ""
        return (
            f"<tr><td style='text-align:left'>{_e(f['feature'])}{flag}</td><td>{_e(f['kind'])}</td>"
            f"<td>{_fmt(f.get('psi'))}</td><td>{_fmt(f.get('p_value'), '.1e')}</td>"
            f"<td>{f.get('n') if f.get('n') is not None else '-'}</td>"
            f"<td>{f['missing_reference']:.3f}</td>"
            f"<td>{f['missing_snapshot']:.3f}</td><td>{share}</td></tr>"
        )

    head = (
        "<tr><th>feature or input column</th><th>kind</th><th>PSI</th><th>p-value</th>"
        "<th>values</th><th>missing (reference)</th>"
        "<th>missing (snapshot)</th><th>largest category share change</th></tr>"
    )
    features = sorted(
        [*features, *(_get(row, "drift", "columns") or [])],
        key=lambda f: -(f.get("psi") or 0.0) if (f.get("p_value") or 0.0) < 0.05 else 0.0,
    )
    first, rest = features[:15], features[15:]
    out = f"<table>{head}{''.join(line(f) for f in first)}</table>"
    if rest:
        out += (
            f"<details><summary>the other {len(rest)} features</summary>"
            f"<table>{head}{''.join(line(f) for f in rest)}</table></details>"
        )
    tables = _get(row, "drift", "tables") or []
    if tables:
        cells = "".join(
            f"<tr><td>{_e(t['table'])}</td><td>{t['rows_in']:,}</td>"
            f"<td>{_fmt(t['rows_per_day'], ',.1f')}</td>"
            f"<td>{_fmt(t['reference_rows_per_day'], ',.1f')}</td>"
            f"<td>{_fmt(t['rows_per_day_change'], '+.1%')}</td>"
            f"<td style='text-align:left'>"
            + (", ".join(f"{_e(k)} {q['rate']:.2%}" for k, q in t["quarantine"].items()) or "none")
            + "</td></tr>"
            for t in tables
        )
        out += (
            "<h3>Input tables</h3><table><tr><th>table</th><th>rows read</th>"
            "<th>rows/day (4 weeks)</th><th>reference rows/day</th><th>change</th>"
            f"<th>quarantined, per reason</th></tr>{cells}</table>"
        )
    return out


def render_monitoring_report(doc: Mapping[str, Any]) -> str:
    """The HTML page of a ``latest.json`` document (:func:`training.monitor.monitor`)."""
    rows: list[dict] = list(doc["rows"])
    t = doc["thresholds"]
    ignore = t.get("ignore", [])
    x = [r["as_of"][5:10] for r in rows]
    ref_auc = next((r["reference_auc"] for r in reversed(rows) if r["reference_auc"]), None)
    alerts = doc["alerts"]
    s = doc["summary"]
    top_n = rows[-1]["top_n"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Monitoring: {_e(doc['model_name'])} v{_e(doc['model_version'])}</title>",
        f"<style>{STYLE}{EXTRA_STYLE}</style></head><body>",
        f"<h1>Monitoring: {_e(doc['model_name'])} v{_e(doc['model_version'])}</h1>",
        f"<p>Generated {_e(doc['generated_at'])} over {len(rows)} kept snapshots "
        f"({_e(rows[0]['as_of'][:10])} to {_e(rows[-1]['as_of'][:10])}); data up to "
        f"{_e(doc['data_end'][:10])}. Realized figures need a snapshot's horizon to have "
        "passed; until then the estimate from the calibrated probabilities stands in.</p>",
        "<h2>Alerts</h2>",
    ]
    if alerts:
        parts += [f"<div class='alert'>{_e(a['check'])}: {_e(a['message'])}</div>" for a in alerts]
    else:
        parts.append("<div class='ok'>No check crosses its threshold.</div>")
    parts += [
        "<p class='note'>Firing: the newest snapshot's estimate and drift checks, and the "
        "realized checks of the newest snapshot with labels. Each row below counts its own.</p>",
        "<h2>Summary</h2>",
        "<table class='kv'>"
        + "".join(
            f"<tr><th>{_e(k)}</th><td>{_fmt(v) if isinstance(v, float) else _e(v)}</td></tr>"
            for k, v in s.items()
        )
        + "</table>",
        "<h2>Performance over snapshots</h2>",
        line_chart(
            "ROC-AUC: realized and estimated (CBPE)",
            x,
            {
                "realized": [_get(r, "realized", "roc_auc") for r in rows],
                "estimated": [_get(r, "estimated", "roc_auc") for r in rows],
            },
            hlines={
                "validation": ref_auc,
                "alert below": None if ref_auc is None else ref_auc - t["auc_drop"],
            },
            dashed=("estimated",),
            y_format=".3f",
        ),
        line_chart(
            "Calibration error (ECE), realized",
            x,
            {"ECE": [_get(r, "realized", "ece") for r in rows]},
            hlines={"threshold": t["ece_max"]},
            y_format=".3f",
        ),
        _observed_expected("Churn rate: observed and expected", x, rows, "churn_rate", ".3f"),
        _observed_expected(
            "Lift in the top 10%: observed and expected", x, rows, "lift_top10", ".2f"
        ),
        _observed_expected(
            f"Customers lost among the worklist's top {top_n}", x, rows, "lost_top_n", ".0f"
        ),
        _observed_expected(
            f"Value (CLV) lost among the worklist's top {top_n}",
            x,
            rows,
            "value_lost_top_n",
            ",.0f",
        ),
        "<h2>Calibration per risk band</h2>",
        _bands_table(next((r for r in reversed(rows) if _get(r, "realized", "bands")), None)),
        "<h2>Input drift over snapshots</h2>",
        line_chart(
            "PSI, the 5 features that moved most",
            x,
            _feature_series(rows, "psi", ignore),
            hlines={"threshold": t["psi_max"]},
            y_format=".2f",
        ),
        line_chart(
            "PSI of input columns and segments (significant shifts)",
            x,
            _significant_series(rows, ignore),
            hlines={"threshold": t["psi_max"]},
            y_format=".2f",
        ),
        line_chart(
            "Missing-rate change, the 5 features that moved most",
            x,
            _feature_series(rows, "missing_change", ignore),
            hlines={"threshold +": t["missing_change"], "threshold -": -t["missing_change"]},
            y_format="+.2f",
        ),
    ]
    change, quarantine = _table_series(rows)
    parts += [
        line_chart(
            "Rows per day per input table, change vs reference",
            x,
            change,
            hlines={"threshold +": t["rows_change"], "threshold -": -t["rows_change"]},
            y_format="+.0%",
        ),
        line_chart(
            "Quarantine rate per table and reason",
            x,
            quarantine,
            y_format=".2%",
        ),
        f"<h2>Drift of the newest snapshot ({_e(rows[-1]['as_of'][:10])})</h2>",
        _drift_table(rows[-1], ignore),
        "<h2>Every snapshot</h2>",
        _rows_table(rows),
        "<h2>Thresholds</h2>",
        "<table class='kv'>"
        + "".join(f"<tr><th>{_e(k)}</th><td>{_e(json.dumps(v))}</td></tr>" for k, v in t.items())
        + "</table>",
        "<p class='note'>Settings CHURN_MONITOR_*; what each figure means: docs/monitoring.md.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)
