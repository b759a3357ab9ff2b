"""BG/NBD fit at scale: the project's compressed fit vs a plain lifetimes fit, same data, same run.

The data is the (frequency, recency, T) summary of ``n`` customers simulated from the BG/NBD
generative process (seeded numpy), dated to whole days as real transactions are: a cohort
acquired over 12 weeks and observed for 39 weeks, as CDNOW's. Purchase times are drawn in
continuous time and floored to days, and purchases on one day are merged, so the summary is
what the project's feature code would compute from the transactions. Both fits see the same
summary in weeks (days / 7); the parameters must agree and the ratio of times is reported.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter

from bench.report import Figure, median_time
from models.clv import fit_purchases

NAME = "clv"
#: Published CDNOW BG/NBD parameters (weeks), the truth of the simulation.
TRUTH = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}


def simulate_summary(
    n: int,
    *,
    seed: int = 0,
    acquisition_days: int = 84,
    observation_days: int = 273,
    params: dict[str, float] = TRUTH,
) -> pd.DataFrame:
    """The BG/NBD summary of ``n`` simulated customers, in whole days.

    Customer ``i`` makes a first purchase on a day uniform in the first ``acquisition_days`` of
    an ``observation_days`` window; repeat purchases follow a Poisson process with rate
    ``lambda_i ~ Gamma(r, alpha)`` (per week) until the customer drops out, right after each
    repeat purchase with probability ``p_i ~ Beta(a, b)`` (Fader, Hardie & Lee 2005a, sec. 2).

    Returns ``frequency`` (repeat purchase days), ``recency_days`` and ``T_days`` (to the last
    day observed).
    """
    rng = np.random.default_rng(seed)
    rate = rng.gamma(params["r"], 1 / (7 * params["alpha"]), n)  # per day
    p = rng.beta(params["a"], params["b"], n)
    first = rng.integers(0, acquisition_days, n)
    t_days = (observation_days - 1 - first).astype(float)
    lifetime_purchases = rng.geometric(p)  # drops out right after this many repeat purchases
    # Purchases of the process without dropout in [0, T + 1); given their number, their times
    # are uniform. The first `lifetime_purchases` of them happen.
    n_poisson = rng.poisson(rate * (t_days + 1))
    who = np.repeat(np.arange(n), n_poisson)
    when = rng.random(who.size) * (t_days + 1)[who]
    order = np.lexsort((when, who))
    who, when = who[order], when[order]
    rank = np.arange(who.size) - (np.cumsum(n_poisson) - n_poisson)[who]
    made = rank < lifetime_purchases[who]
    day = np.floor(when[made]).astype(np.int64)
    who = who[made]
    repeat_days = day > 0  # a repeat purchase on the first day merges with the first purchase
    pairs = np.unique(who[repeat_days] * (observation_days + 1) + day[repeat_days])
    customer, purchase_day = np.divmod(pairs, observation_days + 1)
    recency = np.zeros(n)
    np.maximum.at(recency, customer, purchase_day)
    return pd.DataFrame(
        {
            "frequency": np.bincount(customer, minlength=n),
            "recency_days": recency,
            "T_days": t_days,
        }
    )


def run(quick: bool = False) -> list[Figure]:
    n = 100_000 if quick else 1_000_000  # quick: still above WARM_START_ROWS compressed rows
    summary = simulate_summary(n, seed=42)
    freq = summary["frequency"].to_numpy()
    rec = summary["recency_days"].to_numpy() / 7
    t = summary["T_days"].to_numpy() / 7

    repeat = 1 if quick else 3
    ours_s, ours = median_time(lambda: fit_purchases(freq, rec, t), repeat=repeat)
    cold_s, cold = median_time(lambda: fit_purchases(freq, rec, t, warm_start=False), repeat=repeat)
    t0 = time.perf_counter()
    plain = BetaGeoFitter().fit(freq, rec, t)
    plain_s = time.perf_counter() - t0

    diff = max(abs(fit.params[k] / plain.params_[k] - 1) for fit in (ours, cold) for k in TRUTH)
    print(f"  {n:,} customers, {ours.n_rows:,} compressed rows")
    print(f"  project  {ours_s:8.2f} s  {ours.params}")
    print(f"  lifetimes {plain_s:7.2f} s  {plain.params_.to_dict()}")
    return [
        Figure(NAME, "customers", n, "rows"),
        Figure(NAME, "compressed rows", ours.n_rows, "rows"),
        Figure(NAME, "project fit (compressed)", ours_s, "s", note=f"median of {repeat}"),
        Figure(NAME, "project fit, compression only", cold_s, "s", note="no warm start"),
        Figure(NAME, "lifetimes fit (uncompressed)", plain_s, "s", note="one run"),
        Figure(NAME, "speed-up", plain_s / ours_s, "x", target=">= 20x"),
        Figure(NAME, "speed-up, compression only", plain_s / cold_s, "x"),
        Figure(NAME, "max relative parameter difference", diff, "", target="< 1e-4"),
    ]
