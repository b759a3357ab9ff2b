"""Command line of the training side: ``python -m training {data,train,score,export,notify,...}``.

Fatal input problems and bad settings (an unknown ``CHURN_*`` variable, a value out of range)
print one line and exit with code 2 (no traceback).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from features.time import as_utc
from training.config import SettingsError, TrainSettings
from training.io import DataError

EXIT_BAD_INPUT = 2


def _settings(args: argparse.Namespace) -> TrainSettings:
    overrides = {
        "data_dir": getattr(args, "data", None),
        "horizon_days": getattr(args, "horizon", None),
        "clv_horizon_days": getattr(args, "clv_horizon", None),
        "as_of": getattr(args, "as_of", None),
        "force_promote": getattr(args, "force", None) or None,
        "engine": getattr(args, "engine", None),
        "dask_scheduler": getattr(args, "dask_scheduler", None),
    }
    return TrainSettings(**{k: v for k, v in overrides.items() if v not in (None, "")})


def _data(args: argparse.Namespace) -> None:
    from training.demo_data import DEMO_END, DEMO_START, Drift, write_demo_data

    t0 = time.perf_counter()
    demo = write_demo_data(
        Path(args.out),
        n_customers=args.customers,
        seed=args.seed,
        horizon_days=args.horizon or 90,
        start=as_utc(args.start) if args.start else DEMO_START,
        end=as_utc(args.end) if args.end else DEMO_END,
        drift=Drift.parse(args.drift) if args.drift else None,
    )
    rows = ", ".join(
        f"{n} {len(getattr(demo, n)):,}"
        for n in ("customers", "transactions", "interactions", "surveys")
    )
    print(f"demo data in {args.out}: {rows} ({time.perf_counter() - t0:.1f} s)")


def _train(args: argparse.Namespace) -> None:
    settings = _settings(args)  # a bad setting is reported before the engine's imports
    from training.engine import train
    from training.report import metrics_table

    result = train(settings)
    print(f"run {result.run_id}: registered {settings.model_name} v{result.version}")
    print(metrics_table(result.metrics).to_string(float_format=lambda v: f"{v:.4f}", na_rep=""))
    print(("promoted to champion: " if result.promoted else "not promoted: ") + result.gate_reason)
    print(result.summary)


def _features(args: argparse.Namespace) -> None:
    settings = _settings(args)  # a bad setting is reported before the engine's imports
    from training.engine import features

    out = Path(args.out)
    written = features(settings, out)
    for name, rows in written.rows.items():
        print(f"{name}: {rows:,} rows x {written.n_features} features -> {out / name}.parquet")
    plan = written.plan
    print(f"validation cutoff {plan.validation.date()}, horizon {plan.horizon_days} days")


def _evaluate(args: argparse.Namespace) -> None:
    from training.pipeline import evaluate_version
    from training.report import metrics_table

    settings = _settings(args)
    version, metrics = evaluate_version(settings, args.version)
    print(f"v{version} on {settings.data_dir} (validation cutoff, test half):")
    print(metrics_table(metrics).to_string(float_format=lambda v: f"{v:.4f}", na_rep=""))
    if "active.n" in metrics:
        print(
            f"among the {metrics['active.n']:,.0f} active customers (not lapsed, docs/status.md):"
        )
        active = metrics_table(metrics, prefix="active.")
        print(active.to_string(float_format=lambda v: f"{v:.4f}", na_rep=""))


def _promote(args: argparse.Namespace) -> None:
    from training.pipeline import promote_version

    if not args.version:
        raise RuntimeError("promote needs a version: make promote VERSION=<n>")
    moved, reason = promote_version(_settings(args), args.version)
    print((f"v{args.version} is champion: " if moved else "not promoted: ") + reason)
    if not moved:
        raise SystemExit(1)


def _report(args: argparse.Namespace) -> None:
    from training import tracking

    settings = _settings(args)
    version = args.version or tracking.champion_version(settings)
    if version is None:
        raise RuntimeError("no champion; run 'make train' first")
    print(tracking.download_report(settings, version, Path(args.out)))


def _score(args: argparse.Namespace) -> None:
    settings = _settings(args)  # a bad setting is reported before the engine's imports
    from training.engine import score

    result = score(settings)
    bands = ", ".join(f"{k} {v:,}" for k, v in sorted(result.risk_bands.items()))
    print(
        f"scored {result.rows:,} customers as of {result.as_of.date()} with "
        f"v{result.model_version} ({bands}) -> {result.path}"
    )
    print(
        f"change since the snapshot of {result.previous_as_of[:10]}"
        if result.previous_as_of
        else "no earlier snapshot kept: previous_churn_probability and change are empty"
    )
    if result.summary:
        print(result.summary)
    if result.run_id:
        print(f"steps' durations and peak RSS in MLflow run {result.run_id}")


def _export(args: argparse.Namespace) -> None:
    from training.export import export

    settings = _settings(args)
    result = export(settings, Path(args.out or settings.export_dir), min_change=args.min_change)
    print(
        f"worklist of {result.rows:,} customers as of {result.as_of[:10]} -> "
        f"{result.csv}, {result.jsonl}"
    )


def _notify(args: argparse.Namespace) -> None:
    from training.notify import notify

    result = notify(_settings(args), args.url or None)
    print(
        f"snapshot of {result.as_of[:10]}: {result.risers:,} risers; deliveries to "
        f"{result.target}: {result.sent} sent, {result.skipped} already delivered, "
        f"{result.failed} failed"
    )
    if result.failed:
        raise RuntimeError(
            f"{result.failed} deliveries failed; run 'make notify' again to retry only those"
        )


def _monitor(args: argparse.Namespace) -> int:
    from training.monitor import monitor

    result = monitor(_settings(args))
    s = result
    latest = s.rows[-1]
    labelled = sum(1 for r in s.rows if (r.get("realized") or {}).get("roc_auc") is not None)
    est = (latest.get("estimated") or {}).get("roc_auc")
    print(
        f"monitored {len(s.rows)} snapshots of v{s.model_version} ({labelled} with labels); "
        f"newest {latest['as_of'][:10]}: estimated ROC-AUC "
        + (f"{est:.3f}" if est is not None else "n/a")
        + f"; {len(s.alerts)} alerts -> {s.report_path}"
    )
    return result.exit_code


def _retrain(args: argparse.Namespace) -> int:
    from training.retrain import retrain

    result = retrain(_settings(args))
    print(result.line())
    return result.exit_code


def _simulate(args: argparse.Namespace) -> None:
    from training.simulate import simulate, table

    found = simulate(
        Path(args.out),
        customers=args.customers,
        seed=args.seed,
        weeks=args.weeks,
        horizon_days=args.horizon,
        drift=args.drift,
    )
    print(table(found))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("data", help="write the seeded demo data set")
    p.add_argument("--out", default="data/demo")
    p.add_argument("--customers", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--horizon", type=int, default=None)
    p.add_argument("--start", default=None, help="first day of the data (default 2024-07-01)")
    p.add_argument("--end", default=None, help="day after the data ends (default 2026-07-01)")
    p.add_argument(
        "--drift",
        default=None,
        help="a change in the exports from a date on, e.g. effort_shift:2025-10-01[:phone[:3]] "
        "or drop_column:2025-10-01[:interactions.effort_score] (docs/demo-data.md)",
    )
    p.set_defaults(func=_data)
    commands = (
        ("train", _train, "fit, log, register, gate"),
        ("score", _score, "write the scored snapshot"),
        ("features", _features, "write the training and validation frames"),
        ("evaluate", _evaluate, "metrics of a version on the data, with baselines"),
        ("promote", _promote, "make a version champion if it passes the gate"),
        ("report", _report, "fetch a version's HTML report"),
        ("retrain", _retrain, "train, gate, score, reload the server, monitor (under a lock)"),
    )
    for name, func, text in commands:
        p = sub.add_parser(name, help=text)
        p.add_argument("--data", default=None, help="data folder (default: settings)")
        p.add_argument("--horizon", type=int, default=None, help="horizon in days")
        p.add_argument(
            "--clv-horizon",
            dest="clv_horizon",
            type=int,
            default=None,
            help="CLV horizon in days (env CHURN_CLV_HORIZON_DAYS)",
        )
        p.add_argument("--as-of", dest="as_of", default=None, help="scoring time (ISO-8601)")
        p.add_argument("--force", action="store_true", help="promote regardless of the gate")
        p.add_argument("--version", default=None, help="registered version (default: champion)")
        p.add_argument("--out", default=f"var/{name}", help="output folder")
        p.add_argument("--engine", choices=("local", "dask"), default=None, help="env CHURN_ENGINE")
        p.add_argument(
            "--dask-scheduler", dest="dask_scheduler", default=None, help="env CHURN_DASK_SCHEDULER"
        )
        p.set_defaults(func=func)
    p = sub.add_parser("monitor", help="realized and estimated performance, drift, alerts")
    p.add_argument("--data", default=None, help="data folder with the labels (default: settings)")
    p.set_defaults(func=_monitor)
    p = sub.add_parser("simulate", help="a year of weekly retrains with an injected drift")
    p.add_argument("--out", default="var/simulate", help="work folder (emptied first)")
    p.add_argument("--customers", type=int, default=1_500)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--weeks", type=int, default=52)
    p.add_argument("--horizon", type=int, default=30, help="churn horizon in days")
    p.add_argument(
        "--drift",
        default="rename",
        help="KIND (effort_shift, drop_column, rename: from mid-year) or a full "
        "KIND:DATE[:ARG[:AMOUNT]]; 'none' for a control run",
    )
    p.set_defaults(func=_simulate)
    p = sub.add_parser("export", help="write the latest worklist as CSV and JSON Lines")
    p.add_argument("--out", default=None, help="output folder (default: CHURN_EXPORT_DIR)")
    p.add_argument(
        "--min-change", dest="min_change", type=float, default=None, help="only these risers"
    )
    p.set_defaults(func=_export)
    p = sub.add_parser("notify", help="POST the latest snapshot's risers to the webhook")
    p.add_argument("--url", default=None, help="webhook URL (default: CHURN_WEBHOOK_URL)")
    p.set_defaults(func=_notify)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("mlflow", "alembic", "urllib3", "distributed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from training.retrain import EXIT_LOCKED, LockedError

    try:
        return int(args.func(args) or 0)  # monitor and retrain return their own exit code
    except LockedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except (DataError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
