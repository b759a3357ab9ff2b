"""Cost of the CLV intervals, residual value and P(alive) notes at scale, against the CLV
prediction scoring already pays, in the same run.

The data is :func:`bench.clv.simulate_summary` (BG/NBD with the CDNOW parameters, whole days)
with a Gamma-Gamma-like mean repeat spend per repeat buyer. The baseline is
:meth:`models.clv.CLVModel.predict` over the CLV horizon (365 days); the measured extra is
:meth:`models.clv.CLVModel.predict_value` on its output. Rounds alternate the two, and the
medians and their ratio are reported, so a busy machine slows both alike.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from bench.clv import simulate_summary
from bench.report import Figure
from models.clv import CLVModel, distinct

NAME = "clv_intervals"
HORIZON_DAYS = 365


def run(quick: bool = False) -> list[Figure]:
    n = 20_000 if quick else 1_000_000
    summary = simulate_summary(n, seed=42)
    rng = np.random.default_rng(43)
    repeat = summary["frequency"].to_numpy() > 0
    summary["monetary_repeat_mean"] = np.where(repeat, rng.gamma(6.0, 35 / 6.0, n), np.nan)
    model = CLVModel().fit(summary)
    se = np.sqrt(np.diag(model.params_cov_)) if model.params_cov_ is not None else [np.nan]
    freq, rec, t = model._clock(summary, summary["T_days"])
    histories = len(distinct(freq, rec, t)[1])

    rounds = 1 if quick else 3
    base, extra = [], []
    for _ in range(rounds):  # interleaved: baseline, extra, baseline, extra, ...
        t0 = time.perf_counter()
        predicted = model.predict(summary, horizon_days=HORIZON_DAYS)
        t1 = time.perf_counter()
        value = model.predict_value(summary, predicted, horizon_days=HORIZON_DAYS)
        t2 = time.perf_counter()
        base.append(t1 - t0)
        extra.append(t2 - t1)
    base_s, extra_s = statistics.median(base), statistics.median(extra)
    print(
        f"  {n:,} customers, {histories:,} distinct histories, log-parameter SE max {max(se):.4f}"
    )
    print(f"  predict {base_s:.2f} s, intervals + residual + notes {extra_s:.2f} s")
    return [
        Figure(NAME, "customers", n, "rows"),
        Figure(NAME, "distinct histories", histories, "rows"),
        Figure(NAME, "max log-parameter standard error", float(max(se)), ""),
        Figure(NAME, "predict over 365 days (baseline)", base_s, "s", note=f"median of {rounds}"),
        Figure(
            NAME,
            "intervals, residual value, notes (extra)",
            extra_s,
            "s",
            target="< 2 s at 1M",
            note=f"median of {rounds}",
        ),
        Figure(NAME, "extra / baseline", extra_s / base_s, "x"),
        Figure(
            NAME, "customers with an interval", float(value["clv_high"].notna().mean()), "share"
        ),
    ]
