"""``/v1/predict`` in process: one customer's raw history to features, scores and reasons.

The function timed is :func:`serving.predict.predict`, the one the route calls, on the
request model the route parses (so pydantic's parsing is a separate figure, timed the same
way). The customer has 12 purchases, 6 contacts and 2 survey answers, taken from a seeded
demo customer (the latest rows before the cutoff), so values and attributes are realistic.

The bundle and the customer are those of ``python -m bench serving`` (its
:func:`~bench.serving.fit_demo_bundle` on as many demo customers, 5,000 in the full run, and
its :func:`~bench.serving._small_history` customer), and ``predict`` is called as the
server's route calls it there: the server's CLV horizon, no reference (that bench's
snapshot carries none, so percentiles are null on both), the garbage collector frozen after
loading (``serving/app.py``). The two benches' predict steps are then the same work, and the
serving bench's ``Server-Timing`` breakdown can be read against this one's.

The model is fitted once here (no MLflow: the bench measures the request path, not
registration). The figures are the median and p99 of sequential calls, after a
warm-up; the median of each step timed around the step itself (raw tables, validation,
feature building, scoring); and a cProfile breakdown by project module (cumulative time of
each module's top-level entry points), so a slow step is named.

Goal: ``/v1/predict`` p50 <= 5 ms and p99 <= 15 ms over HTTP for such a customer
(sequential requests); the in-process figure is the part the feature, validation and
scoring code controls.
"""

from __future__ import annotations

import cProfile
import gc
import json
import pstats
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.report import Figure
from bench.serving import SMALL_HISTORY

NAME = "predict"
#: Events of the timed customer, per table (a customer with a few months of history).
SHAPE = SMALL_HISTORY
#: Sizes; the full run's bundle is the full serving bench's (5,000 customers, 300 trees).
FULL = {"customers": 5_000, "calls": 300, "trees": 300}
QUICK = {"customers": 400, "calls": 20, "trees": 30}
#: Entry points whose cumulative time makes up a request (module: function names).
STEPS: dict[str, tuple[str, ...]] = {
    "request parsing (pydantic)": ("model_validate_json",),
    "raw tables (serving/predict.py)": ("raw_tables",),
    "validation (features/validation.py)": ("validate_tables",),
    "feature building (features/)": ("build_features",),
    "scoring (models/scoring.py)": ("score_frame", "score_columns"),
}


def prepare(n_customers: int, *, trees: int = 300) -> tuple[Any, bytes]:
    """A fitted churn + CLV bundle on seeded demo data, and the request body of the serving
    bench's 12/6/2 customer."""
    from bench.serving import _small_history, fit_demo_bundle

    fit = fit_demo_bundle(n_customers, trees=trees)
    item, _ = _small_history(fit.raw, fit.as_of)
    body = json.dumps({"customers": [item]}, separators=(",", ":")).encode()
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


def stage_times(call: Callable[[dict[str, float]], Any], calls: int) -> dict[str, np.ndarray]:
    """Wall milliseconds of each step of :func:`serving.predict.predict` per call, from its
    own ``timings`` (the steps the server's ``Server-Timing`` header reports, by the same
    names: ``raw_tables``, ``validate``, ``features``, ``score``, ``rows``); ``call(timings)``
    runs one predict."""
    out: dict[str, list[float]] = {}
    for i in range(-max(5, calls // 10), calls):  # negative: warm-up
        timings: dict[str, float] = {}
        call(timings)
        if i >= 0:
            for step, seconds in timings.items():
                out.setdefault(step, []).append(seconds * 1e3)
    return {step: np.array(values) for step, values in out.items()}


def run(quick: bool) -> list[Figure]:
    """Fit, then time parse + predict for the 12/6/2 customer: median and p99 of sequential
    calls, and the per-step breakdown."""
    from serving.config import Settings
    from serving.predict import predict
    from serving.schemas import predict_request_model

    sizes = QUICK if quick else FULL
    t0 = time.perf_counter()
    bundle, body = prepare(sizes["customers"], trees=sizes["trees"])
    print(f"fitted on {sizes['customers']:,} demo customers in {time.perf_counter() - t0:.1f}s")
    gc.freeze()  # as the server does once the model is loaded
    request_model = predict_request_model(1000, 10_000)
    request = request_model.model_validate_json(body)
    assert [len(getattr(request.customers[0], n)) for n in SHAPE] == list(SHAPE.values())
    # the server's CLV horizon; no reference, as the serving bench's snapshot has none
    horizon = Settings().clv_horizon_days

    def call(timings: dict[str, float] | None = None) -> Any:
        return predict(
            bundle,
            request.customers,
            model_version="1",
            clv_horizon_days=horizon,
            timings=timings,
        )

    def parse_and_call() -> Any:
        customers = request_model.model_validate_json(body).customers
        return predict(bundle, customers, model_version="1", clv_horizon_days=horizon)

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
    for stage, times in stage_times(call, calls).items():
        median = float(np.median(times))
        figures.append(
            Figure(NAME, f"  {stage} p50", median, "ms", "", "predict's timings, as Server-Timing")
        )
    total = sum(steps.values())
    for step, ms in steps.items():
        figures.append(
            Figure(NAME, f"  {step}", ms, "ms", "", f"{ms / total:.0%} (cProfile, inflated)")
        )
    return figures
