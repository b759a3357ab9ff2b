"""``/v1/predict`` in process: one customer's raw history to features, scores and reasons.

The function timed is :func:`serving.predict.predict`, the one the route calls, on the
request model the route parses (so pydantic's parsing is a separate figure, timed the same
way). The customer has 12 purchases, 6 contacts and 2 survey answers, taken from a seeded
demo customer (the latest rows before the cutoff), so values and attributes are realistic.

The model is fitted once here on a small demo set (no MLflow: the bench measures the request
path, not registration). The figures are the median and p99 of sequential calls, after a
warm-up; the median of each step timed around the step itself (raw tables, validation,
feature building, scoring); and a cProfile breakdown by project module (cumulative time of
each module's top-level entry points), so a slow step is named.

Goal: ``/v1/predict`` p50 <= 5 ms and p99 <= 15 ms over HTTP for such a customer
(sequential requests); the in-process figure is the part the feature, validation and
scoring code controls.
"""

from __future__ import annotations

import cProfile
import json
import pstats
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from bench.report import Figure

NAME = "predict"
#: Events of the timed customer, per table (a customer with a few months of history).
SHAPE = {"transactions": 12, "interactions": 6, "surveys": 2}
FULL = {"customers": 2_500, "calls": 300, "trees": 300}
QUICK = {"customers": 300, "calls": 20, "trees": 30}
#: Entry points whose cumulative time makes up a request (module: function names).
STEPS: dict[str, tuple[str, ...]] = {
    "request parsing (pydantic)": ("model_validate_json",),
    "raw tables (serving/predict.py)": ("raw_tables",),
    "validation (features/validation.py)": ("validate_tables",),
    "feature building (features/)": ("build_features",),
    "scoring (models/scoring.py)": ("score_frame", "score_columns"),
}


def _history_item(raw: dict[str, pd.DataFrame], as_of: pd.Timestamp) -> dict[str, Any]:
    """A customer with at least :data:`SHAPE` events in the year before ``as_of``, cut to
    exactly that many (the latest of each table), as a ``/v1/predict`` item (built by the
    serving bench's own item builder, so both benches post the same shape of request)."""
    from bench.serving import _year_of_history

    since = as_of - pd.Timedelta(days=365)
    year = {
        n: raw[n][(raw[n]["timestamp"] >= since) & (raw[n]["timestamp"] < as_of)] for n in SHAPE
    }
    counts = pd.concat(
        [year[n]["customer_id"].value_counts().rename(n) for n in SHAPE], axis=1
    ).fillna(0)
    cid = str(sorted(counts[(counts >= pd.Series(SHAPE)).all(axis=1)].index)[0])
    cut = {n: year[n][year[n]["customer_id"] == cid].tail(k) for n, k in SHAPE.items()}
    cut["customers"] = raw["customers"]
    item, _ = _year_of_history(cut, as_of)
    return item


def prepare(n_customers: int, *, trees: int = 300) -> tuple[Any, bytes]:
    """A fitted churn + CLV bundle on seeded demo data, and the request body of one customer."""
    from bench.serving import fit_demo_bundle

    fit = fit_demo_bundle(n_customers, trees=trees)
    body = json.dumps({"customers": [_history_item(fit.raw, fit.as_of)]}).encode()
    return fit.bundle, body


def _times(fn: Callable[[], Any], calls: int) -> np.ndarray:
    """Wall and CPU seconds (this process, all threads) of each of ``calls`` calls, shape
    (calls, 2); CPU time is the steadier figure on a shared machine."""
    for _ in range(max(5, calls // 10)):  # warm-up: first-call caches, lazy imports
        fn()
    out = np.empty((calls, 2))
    for i in range(calls):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        out[i] = time.perf_counter() - t0, time.process_time() - c0
    return out


def profile_steps(fn: Callable[[], Any], calls: int) -> dict[str, float]:
    """Mean milliseconds per call spent under each of :data:`STEPS` (cProfile, cumulative)."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        fn()
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    out = {}
    for step, names in STEPS.items():
        total = sum(row[3] for (_, _, func), row in stats.items() if func in names)
        out[step] = total / calls * 1e3
    return out


def stage_times(bundle: Any, customers: Any, calls: int) -> dict[str, np.ndarray]:
    """Wall milliseconds of each step of :func:`serving.predict.predict` per call, timed
    around the step itself (no profiler): ``raw_tables``, ``validate_tables``,
    ``build_features`` (with the Index of ids it is given) and ``score_columns``."""
    from datetime import UTC, datetime

    from features.build import build_features
    from features.validation import validate_tables
    from models.scoring import score_columns
    from serving.predict import raw_tables, scoring_time

    now = datetime.now(UTC)
    as_of = scoring_time(customers[0], now=now)
    ids = [c.customer_id for c in customers]
    out = np.empty((calls, 4))
    for i in range(-max(5, calls // 10), calls):  # negative: warm-up
        t0 = time.perf_counter()
        raw, _ = raw_tables(customers)
        t1 = time.perf_counter()
        tables, _ = validate_tables(raw, now=pd.Timestamp(now))
        t2 = time.perf_counter()
        frame = build_features(tables, as_of=as_of, customer_ids=pd.Index(ids, dtype="str"))
        t3 = time.perf_counter()
        score_columns(bundle, frame)
        t4 = time.perf_counter()
        if i >= 0:
            out[i] = t1 - t0, t2 - t1, t3 - t2, t4 - t3
    names = ("raw_tables", "validate_tables", "build_features", "score_columns")
    return {n: out[:, j] * 1e3 for j, n in enumerate(names)}


def run(quick: bool) -> list[Figure]:
    """Fit, then time parse + predict for the 12/6/2 customer: median and p99 of sequential
    calls, and the per-step breakdown."""
    from serving.predict import predict
    from serving.schemas import predict_request_model

    sizes = QUICK if quick else FULL
    t0 = time.perf_counter()
    bundle, body = prepare(sizes["customers"], trees=sizes["trees"])
    print(f"fitted on {sizes['customers']:,} demo customers in {time.perf_counter() - t0:.1f}s")
    request_model = predict_request_model(1000, 10_000)
    request = request_model.model_validate_json(body)
    assert [len(getattr(request.customers[0], n)) for n in SHAPE] == list(SHAPE.values())

    def call() -> Any:
        return predict(bundle, request.customers, model_version="1")

    def parse_and_call() -> Any:
        return predict(bundle, request_model.model_validate_json(body).customers, model_version="1")

    calls = sizes["calls"]
    # Interleaved: predict alone, then parse + predict, so a busy spell hits both.
    alone, parsed = [], []
    for _ in range(3):
        alone.append(_times(call, calls // 3))
        parsed.append(_times(parse_and_call, calls // 3))
    both_alone, both_parsed = np.concatenate(alone) * 1e3, np.concatenate(parsed) * 1e3
    t_alone, t_parsed = both_alone[:, 0], both_parsed[:, 0]
    steps = profile_steps(parse_and_call, max(10, calls // 3))
    shape = "/".join(str(v) for v in SHAPE.values())
    note = f"{shape} tx/contacts/surveys, {calls} calls"
    figures = [
        Figure(NAME, "predict() p50", statistics.median(t_alone), "ms", "", note),
        Figure(NAME, "predict() p99", float(np.percentile(t_alone, 99)), "ms", "", note),
        Figure(NAME, "predict() CPU p50", statistics.median(both_alone[:, 1]), "ms", "", note),
        Figure(NAME, "parse + predict() p50", statistics.median(t_parsed), "ms", "<= 5 ms", note),
        Figure(
            NAME,
            "parse + predict() p99",
            float(np.percentile(t_parsed, 99)),
            "ms",
            "<= 15 ms",
            note,
        ),
    ]
    for stage, times in stage_times(bundle, request.customers, calls).items():
        median = float(np.median(times))
        figures.append(Figure(NAME, f"  {stage} p50", median, "ms", "", "timed around it"))
    total = sum(steps.values())
    for step, ms in steps.items():
        figures.append(
            Figure(NAME, f"  {step}", ms, "ms", "", f"{ms / total:.0%} (cProfile, inflated)")
        )
    return figures
