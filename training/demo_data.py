"""A seeded, research-grounded demo data set with a known true churn probability.

The generator writes the four input tables of docs/data-contract.md (``customers``,
``transactions``, ``interactions``, ``surveys``) plus a ``ground_truth`` table that is *not* an
input: each customer's true probability of making no purchase in the ``horizon_days`` after
``as_of = end - horizon_days``, computed from the latent state the tables never show.

The generative story (docs/demo-data.md has it in full, with the research behind it):

* purchases follow a Poisson process with a Gamma-distributed rate while the customer is alive,
  and spend is Gamma-Gamma (Fader, Hardie & Lee 2005, BG/NBD and Gamma-Gamma);
* customers drop out for good with a weekly hazard that rises with recent customer effort and
  unresolved tickets (Dixon, Freeman & Toman, HBR 2010), falls with value-enhancing interactions
  (Dixon, Toman & DeLisi, *The Effortless Experience*, 2013) and with the number of elements of
  value a customer rates highly (Almquist, Senior & Bloch, HBR 2016), and is lower for referred
  customers (Schmitt, Skiera & Van den Bulte, J. Marketing 2011);
* interactions and surveys reveal noisy, partly missing views of that latent state.

Everything is vectorised numpy; the only Python loops run over weekly time steps and over
chunks of Monte Carlo paths, never over customers or events.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from features.schema import (
    CHANNELS,
    ELEMENTS_BY_LEVEL,
    HIGH_SCORE,
    INTERACTION_TYPES,
    NPS_ELEMENT,
)
from features.time import as_utc

DEMO_START = pd.Timestamp("2024-07-01", tz="UTC")
DEMO_END = pd.Timestamp("2026-07-01", tz="UTC")  # exclusive end of observation

# --- categorical attributes -------------------------------------------------------------------
PLANS: tuple[str, ...] = ("basic", "plus", "premium")
REGIONS: tuple[str, ...] = (
    "north_america",
    "europe",
    "asia_pacific",
    "latin_america",
    "middle_east_africa",
)
ACQUISITION_CHANNELS: tuple[str, ...] = ("referral", "organic", "paid_search", "social", "partner")
#: The contract's canonical channels and types (the generator's index order depends on it).
INTERACTION_CHANNELS: tuple[str, ...] = CHANNELS
#: The 30 elements in pyramid order (functional first), as the contract lists them.
ELEMENT_NAMES: tuple[str, ...] = tuple(e for level in ELEMENTS_BY_LEVEL.values() for e in level)

_PLAN_P = np.array([0.55, 0.30, 0.15])
_REGION_P = np.array([0.35, 0.30, 0.20, 0.10, 0.05])
_ACQUISITION_P = np.array([0.15, 0.30, 0.25, 0.18, 0.12])
_REFERRAL = 0

_SUPPORT, _COMPLAINT, _ONBOARDING, _EDUCATION, _USAGE = range(5)

# --- time -------------------------------------------------------------------------------------
_SECONDS_PER_DAY = 86_400
_NS_PER_SECOND = 1_000_000_000
#: Signups stop this many days before ``end`` so every customer has some history.
_SIGNUP_CUTOFF_DAYS = 120
#: Dropout is simulated in steps of a week (a piecewise-constant hazard), aligned on ``as_of``
#: so the latent state at ``as_of`` is exactly the state at a step boundary.
_STEP_DAYS = 7.0

# --- purchases (Fader, Hardie & Lee 2005) ------------------------------------------------------
#: Purchase rate lambda_i ~ Gamma(shape, mean) in purchases per week while alive.
_PURCHASE_RATE_SHAPE, _PURCHASE_RATE_MEAN_PER_WEEK = 4.0, 0.14
#: Share of customers whose first order is placed on the signup day.
_FIRST_ORDER_P = 0.75
#: Per-customer mean spend nu_i ~ Gamma(shape, mean); single orders ~ Gamma(shape, nu_i/shape).
_SPEND_SHAPE_CUSTOMER, _SPEND_MEAN = 3.5, 42.0
_SPEND_SHAPE_ORDER = 5.0
_PLAN_SPEND_MULT = np.array([1.0, 1.3, 1.8])
#: Referred customers spend about 16% more (Schmitt, Skiera & Van den Bulte 2011).
_REFERRAL_SPEND_MULT = 1.16
#: A purchase event is a free promotional order (amount 0.00) with this probability.
_ZERO_ORDER_P = 0.004
#: Share of paid orders partly or fully refunded, a few days later.
_REFUND_P, _FULL_REFUND_P = 0.04, 0.6
_REFUND_DELAY_DAYS = (1.0, 14.0)

# --- dropout hazard ---------------------------------------------------------------------------
#: Base hazard h0_i ~ Gamma(shape, mean) in dropouts per week.
_HAZARD_SHAPE, _HAZARD_MEAN_PER_WEEK = 1.0, 0.010
_PLAN_LOG_HAZARD = np.log(np.array([1.15, 1.0, 0.85]))
#: Referred customers churn about 20% less (Schmitt, Skiera & Van den Bulte 2011: ~18%).
_REFERRAL_HAZARD_MULT = 0.8
#: Each high-scored element lowers the hazard a little (up to 15 elements) ...
_PER_HIGH_ELEMENT_LOG_HAZARD = -0.03
#: ... and four or more high scores mark a markedly more loyal customer (Almquist et al. 2016).
_LOYAL_MIN_HIGH_ELEMENTS, _LOYAL_HAZARD_MULT = 4, 0.5
#: Coefficients on the decayed interaction state (Dixon et al. 2010; Dixon, Toman & DeLisi 2013):
#: per point of mean effort above 4, per decayed unresolved ticket, per point of mean value
#: enhancement above 4.
_BETA_EFFORT, _BETA_UNRESOLVED, _BETA_VALUE_ENHANCEMENT = 0.40, 0.35, -0.35
#: Recent interactions weigh most: weights halve every 60 days.
_DECAY_HALF_LIFE_DAYS = 60.0
_DECAY_PER_DAY = 0.5 ** (1.0 / _DECAY_HALF_LIFE_DAYS)
#: Pseudo-count shrinking a decayed mean towards "neutral" (4) when recent interactions are few.
_DECAYED_MEAN_PRIOR_WEIGHT = 1.0

# --- interactions -----------------------------------------------------------------------------
#: Contact rate ~ Gamma(shape, mean) per week while alive, times exp(slope * friction).
_CONTACT_SHAPE, _CONTACT_MEAN_PER_WEEK, _CONTACT_FRICTION_SLOPE = 2.0, 0.15, 0.2
#: Extra onboarding sessions in the first weeks after signup.
_ONBOARDING_DAYS, _ONBOARDING_PER_WEEK = 28.0, 0.4
#: After dropout a customer still contacts the firm, but rarely (share of the alive rate).
_POST_DROPOUT_CONTACT_SHARE = 0.03
#: Product sessions (logins, app opens), logged as ``usage`` rows without scores: a Poisson
#: process while alive with rate ``mean * (purchase rate / its mean) ** elasticity * LogNormal``
#: per week: customers who buy more use the product more. After dropout a lapsed customer still
#: opens the app now and then (share of the alive rate).
_SESSION_MEAN_PER_WEEK, _SESSION_PURCHASE_ELASTICITY, _SESSION_LOG_SD = 1.5, 1.0, 0.2
_POST_DROPOUT_SESSION_SHARE = 0.02
_SESSION_CHANNEL_P = np.array([0.0, 0.0, 0.0, 0.4, 0.6])  # web, in_app
#: Unnormalised type weights of ordinary contacts, and how service friction tilts them.
_TYPE_WEIGHTS = np.array([0.22, 0.04, 0.02, 0.10, 0.62])
_TYPE_FRICTION_SLOPE = np.array([0.35, 0.6, 0.0, 0.0, 0.0])
#: Channel probabilities per interaction type (rows: types; columns: channels).
_CHANNEL_P = np.array(
    [
        [0.35, 0.30, 0.25, 0.07, 0.03],
        [0.45, 0.20, 0.30, 0.05, 0.00],
        [0.25, 0.10, 0.20, 0.15, 0.30],
        [0.05, 0.05, 0.35, 0.30, 0.25],
        [0.00, 0.00, 0.00, 0.45, 0.55],
    ]
)
# Scores of one interaction = per-customer base + per-(type, channel) offset + noise.
# Effort (1-7): 3.1 + 0.9 friction, higher for complaints and tickets, phone and email,
# +1.1 when the ticket stays unresolved (Dixon, Freeman & Toman 2010).
_EFFORT_MEAN, _EFFORT_FRICTION, _UNRESOLVED_EFFORT, _EFFORT_NOISE_SD = 3.1, 0.9, 1.1, 0.9
#: Kinds of interaction streams: the five types of ordinary contacts, then onboarding sessions
#: of early tenure (window 1: the first weeks after signup).
_KIND_TYPE = np.array(
    [_SUPPORT, _COMPLAINT, _ONBOARDING, _EDUCATION, _USAGE, _ONBOARDING], dtype=np.int8
)
_KIND_WINDOW = np.array([0, 0, 0, 0, 0, 1])
_KIND_CHANNEL_P = _CHANNEL_P[_KIND_TYPE]
_TYPE_EFFORT = np.array([0.6, 1.3, -0.2, -0.6, -0.9])
_CHANNEL_EFFORT = np.array([0.3, 0.0, 0.4, -0.1, -0.3])
_EFFORT_OFFSET = np.add.outer(_TYPE_EFFORT, _CHANNEL_EFFORT).ravel().astype(np.float32)
# Resolution of tickets and complaints: worse with friction, for complaints and over email.
_RESOLVED_MEAN, _RESOLVED_FRICTION = 1.4, -0.9
_RESOLVED_LOGIT = np.add.outer(
    np.array([0.0, -1.0, 0.0, 0.0, 0.0]), np.array([0.3, 0.2, -0.3, 0.0, 0.0])
).ravel()
# Value enhancement (1-7): onboarding and education teach the customer to do more
# (Dixon, Toman & DeLisi 2013); resolved tickets help a little, unresolved ones hurt.
_VALUE_ENHANCEMENT_MEAN, _VALUE_ENHANCEMENT_VALUE, _VALUE_ENHANCEMENT_FRICTION = 3.7, 0.45, -0.25
_VALUE_ENHANCEMENT_OFFSET = np.array([0.0, -0.5, 1.5, 1.9, 0.3], dtype=np.float32)
_RESOLUTION_VALUE_ENHANCEMENT = np.array([0.0, -0.6, 0.5], dtype=np.float32)  # n/a, no, yes
#: Probability that a score is asked for (and so present in the export), per type.
_ASK_EFFORT = np.array([0.70, 0.70, 0.50, 0.40, 0.15])
_ASK_CSAT = np.array([0.60, 0.60, 0.40, 0.40, 0.10])
_ASK_VALUE_ENHANCEMENT = np.array([0.30, 0.30, 0.60, 0.60, 0.20])
_RESOLVED_RECORDED_P = 0.97

# --- elements of value and surveys (Almquist, Senior & Bloch 2016) -----------------------------
#: Mean true score of an average customer per pyramid level: the broad functional base is
#: delivered more often than the life-changing top.
_LEVEL_MEAN_SCORE = {
    "functional": 6.0,
    "emotional": 5.4,
    "life_changing": 4.6,
    "social_impact": 4.2,
}
_ELEMENT_MEAN_SD = 0.4  # spread of element means within a level
_VALUE_LOADING, _ELEMENT_NOISE_SD = 1.5, 1.2
_SURVEY_NOISE_SD, _NPS_NOISE_SD = 1.0, 1.2
_NPS_MEAN, _NPS_VALUE_LOADING, _NPS_FRICTION_LOADING = 6.5, 1.8, -0.5
_SURVEY_RESPONDER_P, _SURVEYS_PER_DAY = 0.6, 1.0 / 120.0
_SURVEY_ELEMENTS_RANGE = (6, 15)  # inclusive: elements asked per survey besides NPS

# --- ground truth -----------------------------------------------------------------------------
TRUTH_REPLICATIONS = 500
#: Monte Carlo paths simulated at once: small enough for the path arrays to stay in CPU cache
#: (measurably faster than larger chunks) and to bound memory at any number of customers.
_TRUTH_PATHS_PER_CHUNK = 125_000
_TRUTH_THREADS = min(4, os.cpu_count() or 1)


@dataclass(frozen=True)
class DemoData:
    """The four input tables and the ground truth (never an input: it is the answer key)."""

    customers: pd.DataFrame
    transactions: pd.DataFrame
    interactions: pd.DataFrame
    surveys: pd.DataFrame
    ground_truth: pd.DataFrame


#: Kinds of :class:`Drift`: what an export starts doing differently from a date on.
DRIFT_KINDS = ("effort_shift", "drop_column", "rename")


@dataclass(frozen=True)
class Drift:
    """A change in what the exports show from ``start`` on (the customers behave as before,
    so the ground truth holds): the simulated year of ``python -m training simulate`` injects
    one to check that ``make monitor`` notices it.

    - ``effort_shift``: the effort scores of interactions over ``channel`` (default
      ``phone``) at or after ``start`` read ``amount`` points higher (default +3), clipped
      to 1-7 -- a survey question reworded on one support channel;
    - ``drop_column``: ``column`` (``table.column``, default ``interactions.effort_score``)
      is empty in every row at or after ``start`` -- an export job that stopped filling it;
    - ``rename``: in ``column`` (default ``interactions.channel``) the value ``old`` reads
      ``new`` at or after ``start`` (default ``in_app`` -> ``mobile``) -- a CRM that renamed
      a channel, so the features count those contacts as "other".

    The first two are faint on a small customer base (effort is asked on a few contacts a
    week), the last is loud: every app session moves (docs/demo-data.md).
    """

    kind: str
    start: pd.Timestamp
    channel: str = "phone"
    amount: float = 3.0
    column: str = "interactions.effort_score"
    old: str = "in_app"
    new: str = "mobile"

    @classmethod
    def parse(cls, text: str) -> Drift:
        """``KIND:DATE[:ARG[:AMOUNT]]``: ``effort_shift:2025-10-01``,
        ``effort_shift:2025-10-01:chat:2``, ``drop_column:2025-10-01:interactions.csat``,
        ``rename:2025-10-01[:interactions.channel[:in_app=mobile]]``."""
        kind, _, rest = text.partition(":")
        date, _, rest = rest.partition(":")
        arg, _, amount = rest.partition(":")
        if kind not in DRIFT_KINDS or not date:
            raise ValueError(
                f"drift '{text}': expected KIND:YYYY-MM-DD[:ARG[:AMOUNT]] with KIND one of "
                f"{', '.join(DRIFT_KINDS)}"
            )
        if kind == "rename":
            column = arg or "interactions.channel"
            before, _, after = (amount or "in_app=mobile").partition("=")
            if column.count(".") != 1 or not before or not after:
                raise ValueError(f"drift '{text}': expected rename:DATE:TABLE.COLUMN:OLD=NEW")
            return cls(kind, _date(text, date), column=column, old=before, new=after)
        start = _date(text, date)
        try:
            shift = float(amount) if amount else 3.0
        except ValueError:
            raise ValueError(f"drift '{text}': unreadable amount '{amount}'") from None
        if kind == "effort_shift":
            channel = arg or "phone"
            if channel not in INTERACTION_CHANNELS:
                raise ValueError(
                    f"drift '{text}': channel '{channel}' is not one of {', '.join(CHANNELS)}"
                )
            return cls(kind, start, channel=channel, amount=shift)
        column = arg or "interactions.effort_score"
        if column.count(".") != 1:
            raise ValueError(f"drift '{text}': the column must read TABLE.COLUMN")
        return cls(kind, start, column=column)

    def apply(self, data: DemoData) -> DemoData:
        """``data`` with the drift applied to its exported tables (rows at or after
        ``start``; the ground truth is unchanged)."""
        if self.kind == "effort_shift":
            table = data.interactions.copy()
            rows = (table["timestamp"] >= self.start) & (table["channel"] == self.channel)
            shifted = (table.loc[rows, "effort_score"] + round(self.amount)).clip(1, 7)
            table.loc[rows, "effort_score"] = shifted.astype("Int64")
            return replace(data, interactions=table)
        name, column = self.column.split(".")
        if name not in ("transactions", "interactions", "surveys"):
            raise ValueError(f"drift {self.kind}: table '{name}' has no timestamp to start from")
        table = getattr(data, name).copy()
        if column not in table.columns or column in ("customer_id", "timestamp"):
            raise ValueError(f"drift {self.kind}: '{self.column}' is not a column to change")
        after = table["timestamp"] >= self.start
        if self.kind == "rename":
            table.loc[after & (table[column] == self.old), column] = self.new
        else:
            table.loc[after, column] = pd.NA
        return replace(data, **{name: table})


def _date(text: str, date: str) -> pd.Timestamp:
    try:
        return as_utc(date)
    except ValueError:
        raise ValueError(f"drift '{text}': unreadable date '{date}'") from None


@dataclass(frozen=True)
class _Latents:
    """Per-customer latent state; rates are per day, times are days after ``start``."""

    signup_day: np.ndarray  # float, midnight of the signup date
    signup_second: np.ndarray  # int64 seconds after start (exact)
    plan: np.ndarray
    region: np.ndarray
    acquisition: np.ndarray
    purchase_rate: np.ndarray
    spend_mean: np.ndarray
    friction: np.ndarray  # service friction, standard normal
    value_perception: np.ndarray  # standard normal
    element_scores: np.ndarray  # (n, 30) true scores on [0, 10]
    n_high_elements: np.ndarray
    base_hazard: np.ndarray
    static_log_hazard: np.ndarray  # log multiplier from attributes and elements
    contact_rate: np.ndarray
    type_p: np.ndarray  # (n, 5) type probabilities of ordinary contacts
    effort_base: np.ndarray  # float32 per-customer parts of the interaction scores
    value_enhancement_base: np.ndarray
    resolved_logit: np.ndarray
    survey_responder: np.ndarray
    nps_true: np.ndarray


@dataclass
class _Interactions:
    """An interaction stream; ``path`` indexes the simulated paths (customers or MC paths)."""

    path: np.ndarray
    day: np.ndarray
    itype: np.ndarray
    channel: np.ndarray
    effort: np.ndarray  # true 1-7, always known to the simulation
    resolved: np.ndarray  # 1/0 for tickets and complaints, -1 otherwise
    value_enhancement: np.ndarray

    def take(self, keep: np.ndarray | slice) -> _Interactions:
        return _Interactions(*(getattr(self, f)[keep] for f in _INTERACTION_FIELDS))


_INTERACTION_FIELDS = ("path", "day", "itype", "channel", "effort", "resolved", "value_enhancement")


@dataclass
class _HazardState:
    """Exponentially decayed sums driving the dynamic part of the hazard, one row per path.

    Every interaction carries a true effort and value-enhancement score, so one decayed weight
    serves both decayed means.
    """

    weight: np.ndarray  # sum of w, with w = 0.5 ** (age / half-life)
    effort_sum: np.ndarray  # sum of w * (effort - 4)
    value_sum: np.ndarray  # sum of w * (value_enhancement - 4)
    unresolved: np.ndarray  # sum of w over unresolved tickets and complaints

    @classmethod
    def zeros(cls, n: int) -> _HazardState:
        return cls(*(np.zeros(n) for _ in range(4)))

    def repeat(self, index: np.ndarray, dtype: type = np.float64) -> _HazardState:
        return _HazardState(*(a[index].astype(dtype) for a in self._arrays()))

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return (self.weight, self.effort_sum, self.value_sum, self.unresolved)

    def log_multiplier(self) -> np.ndarray:
        """Dynamic log hazard multiplier: decayed mean effort and value enhancement (shrunk
        towards the neutral 4 by a pseudo-count), decayed count of unresolved tickets."""
        shrunk = 1.0 / (self.weight + _DECAYED_MEAN_PRIOR_WEIGHT)
        return (
            _BETA_EFFORT * self.effort_sum + _BETA_VALUE_ENHANCEMENT * self.value_sum
        ) * shrunk + _BETA_UNRESOLVED * self.unresolved

    def decay(self, days: float) -> None:
        factor = _DECAY_PER_DAY**days
        for a in self._arrays():
            a *= factor

    def absorb(self, ev: _Interactions, at_day: float, n_paths: int) -> None:
        """Add the interactions in ``ev`` (all before ``at_day``), each weighted by its age."""
        if ev.path.size == 0:
            return
        w = _DECAY_PER_DAY ** (at_day - ev.day)

        def add(target: np.ndarray, weights: np.ndarray) -> None:
            target += np.bincount(ev.path, weights=weights, minlength=n_paths)

        add(self.weight, w)
        add(self.effort_sum, w * (ev.effort - 4.0))
        add(self.value_sum, w * (ev.value_enhancement - 4.0))
        add(self.unresolved, w * (ev.resolved == 0))


# --- public API -------------------------------------------------------------------------------
def generate_demo_data(
    n_customers: int = 20_000,
    *,
    seed: int = 42,
    start: pd.Timestamp = DEMO_START,
    end: pd.Timestamp = DEMO_END,
    horizon_days: int = 90,
    drift: Drift | None = None,
) -> DemoData:
    """Simulate the demo tables and each customer's true churn probability.

    Parameters
    ----------
    n_customers : number of customers; signups fall on midnights in
        ``[start, end - 120 days]``, more of them early.
    seed : seed of ``np.random.default_rng``; the same seed gives identical frames.
    start, end : observation window ``[start, end)`` (UTC); every event lies inside it.
    horizon_days : churn horizon in days; ground truth is taken at
        ``as_of = end - horizon_days`` so the realised label window ``(as_of, end]`` is complete.
    drift : a change in the exports from a date on (:class:`Drift`); default none.

    Returns
    -------
    DemoData
        The four input tables (canonical columns, tz-aware UTC timestamps, sorted by
        ``customer_id`` then ``timestamp``) and ``ground_truth`` with ``customer_id``, ``as_of``,
        ``horizon_days``, ``alive_at_as_of``, ``p_churn_true`` (probability of no purchase, i.e.
        no row with ``amount >= 0``, in ``(as_of, as_of + horizon_days]``) and ``p_churn_true_se``
        (Monte Carlo standard error), for customers who signed up before ``as_of``.
    """
    start, end = as_utc(start), as_utc(end)
    _check_arguments(n_customers, start, end, horizon_days)
    span_days = (end - start) / pd.Timedelta(days=1)
    as_of_day = span_days - horizon_days
    rng_latent, rng_events, rng_truth = _rngs(seed)

    lat = _draw_latents(n_customers, rng_latent, start, end)
    everyone = np.arange(n_customers)
    stream, _ = _draw_interactions(
        everyone, lat.signup_day, np.full(n_customers, span_days), lat, rng_events
    )
    drop_day, state_at_as_of = _simulate_dropout(lat, stream, span_days, as_of_day, rng_events)
    after_dropout = stream.day >= drop_day[stream.path]
    keep = ~after_dropout | (rng_events.random(stream.day.size) < _POST_DROPOUT_CONTACT_SHARE)
    interactions = stream.take(keep)

    ids = _customer_ids(n_customers)
    frames = _Frames(ids, start, lat.signup_second, span_days)
    transactions = frames.transactions(*_draw_transactions(lat, drop_day, span_days, rng_events))
    contacts = frames.interactions(interactions, lat, rng_events)
    surveys = frames.surveys(*_draw_surveys(lat, drop_day, span_days, rng_events))
    sessions = frames.sessions(*_draw_sessions(lat, drop_day, span_days, rng_events))
    data = DemoData(
        customers=_customers_frame(ids, start, lat),
        transactions=transactions,
        interactions=_merge_sorted(contacts, sessions),
        surveys=surveys,
        ground_truth=_ground_truth(
            ids, lat, drop_day, state_at_as_of, start, as_of_day, horizon_days, rng_truth
        ),
    )
    return data if drift is None else drift.apply(data)


def write_demo_data(
    out_dir: str | Path,
    n_customers: int = 20_000,
    *,
    seed: int = 42,
    horizon_days: int = 90,
    start: pd.Timestamp = DEMO_START,
    end: pd.Timestamp = DEMO_END,
    drift: Drift | None = None,
) -> DemoData:
    """Generate the demo data over ``[start, end)`` (default ``[DEMO_START, DEMO_END)``),
    with an optional :class:`Drift`, and write it as parquet.

    Writes ``customers``, ``transactions``, ``interactions`` and ``surveys`` as
    ``out_dir/NAME.parquet`` and the ground truth into ``out_dir/truth/ground_truth.parquet``:
    a subfolder, so a reader of the data folder never takes the answer key for an input table.
    Returns the generated :class:`DemoData`.
    """
    data = generate_demo_data(
        n_customers, seed=seed, start=start, end=end, horizon_days=horizon_days, drift=drift
    )
    out = Path(out_dir)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    for name in ("customers", "transactions", "interactions", "surveys"):
        getattr(data, name).to_parquet(out / f"{name}.parquet", index=False)
    data.ground_truth.to_parquet(out / "truth" / "ground_truth.parquet", index=False)
    return data


# --- set-up -----------------------------------------------------------------------------------
def _check_arguments(
    n_customers: int, start: pd.Timestamp, end: pd.Timestamp, horizon_days: int
) -> None:
    if n_customers < 1:
        raise ValueError(f"n_customers must be at least 1, got {n_customers}")
    span_days = (end - start) / pd.Timedelta(days=1)
    if span_days <= _SIGNUP_CUTOFF_DAYS + 1:
        raise ValueError(f"end must be more than {_SIGNUP_CUTOFF_DAYS + 1} days after start")
    if not 0 < horizon_days < span_days:
        raise ValueError(f"horizon_days must lie in (0, {span_days:g}), got {horizon_days}")


def _rngs(seed: int) -> tuple[np.random.Generator, ...]:
    """Independent streams for latents, events and the truth Monte Carlo, so that changing
    the number of truth replications never changes the tables."""
    return tuple(np.random.default_rng(seed).spawn(3))


def _gamma(rng: np.random.Generator, shape: float, mean: float, size: int) -> np.ndarray:
    return rng.gamma(shape, mean / shape, size)


def _draw_latents(
    n: int, rng: np.random.Generator, start: pd.Timestamp, end: pd.Timestamp
) -> _Latents:
    """Draw every customer's attributes and latent traits; customers are in signup order."""
    first_midnight = start.ceil("D")
    offset_days = (first_midnight - start) / pd.Timedelta(days=1)
    last_signup = (end - pd.Timedelta(days=_SIGNUP_CUTOFF_DAYS) - first_midnight).days
    # Beta(1, 1.5): the customer base grew faster early on.
    signup_k = np.sort(np.floor(rng.beta(1.0, 1.5, n) * (last_signup + 1)).astype(np.int64))
    plan = rng.choice(len(PLANS), n, p=_PLAN_P)
    region = rng.choice(len(REGIONS), n, p=_REGION_P)
    acquisition = rng.choice(len(ACQUISITION_CHANNELS), n, p=_ACQUISITION_P)
    referred = acquisition == _REFERRAL
    friction = rng.standard_normal(n)
    value = rng.standard_normal(n)

    element_means = np.concatenate(
        [
            _LEVEL_MEAN_SCORE[level] + _ELEMENT_MEAN_SD * rng.standard_normal(len(names))
            for level, names in ELEMENTS_BY_LEVEL.items()
        ]
    )
    elements = np.clip(
        element_means
        + _VALUE_LOADING * value[:, None]
        + _ELEMENT_NOISE_SD * rng.standard_normal((n, len(ELEMENT_NAMES))),
        0.0,
        10.0,
    ).astype(np.float32)
    n_high = (elements >= HIGH_SCORE).sum(axis=1)

    static_log_hazard = (
        _PLAN_LOG_HAZARD[plan]
        + np.where(referred, np.log(_REFERRAL_HAZARD_MULT), 0.0)
        + _PER_HIGH_ELEMENT_LOG_HAZARD * np.minimum(n_high, 15)
        + np.where(n_high >= _LOYAL_MIN_HIGH_ELEMENTS, np.log(_LOYAL_HAZARD_MULT), 0.0)
    )
    spend_mean = (
        _gamma(rng, _SPEND_SHAPE_CUSTOMER, _SPEND_MEAN, n)
        * _PLAN_SPEND_MULT[plan]
        * np.where(referred, _REFERRAL_SPEND_MULT, 1.0)
    )
    return _Latents(
        signup_day=offset_days + signup_k,
        signup_second=np.round(offset_days * _SECONDS_PER_DAY).astype(np.int64)
        + signup_k * _SECONDS_PER_DAY,
        plan=plan,
        region=region,
        acquisition=acquisition,
        purchase_rate=_gamma(rng, _PURCHASE_RATE_SHAPE, _PURCHASE_RATE_MEAN_PER_WEEK, n) / 7.0,
        spend_mean=spend_mean,
        friction=friction,
        value_perception=value,
        element_scores=elements,
        n_high_elements=n_high,
        base_hazard=_gamma(rng, _HAZARD_SHAPE, _HAZARD_MEAN_PER_WEEK, n) / 7.0,
        static_log_hazard=static_log_hazard,
        contact_rate=_gamma(rng, _CONTACT_SHAPE, _CONTACT_MEAN_PER_WEEK, n)
        / 7.0
        * np.exp(_CONTACT_FRICTION_SLOPE * friction),
        type_p=_normalised(_TYPE_WEIGHTS * np.exp(np.outer(friction, _TYPE_FRICTION_SLOPE))),
        effort_base=(_EFFORT_MEAN + _EFFORT_FRICTION * friction).astype(np.float32),
        value_enhancement_base=(
            _VALUE_ENHANCEMENT_MEAN
            + _VALUE_ENHANCEMENT_VALUE * value
            + _VALUE_ENHANCEMENT_FRICTION * friction
        ).astype(np.float32),
        resolved_logit=_RESOLVED_MEAN + _RESOLVED_FRICTION * friction,
        survey_responder=rng.random(n) < _SURVEY_RESPONDER_P,
        nps_true=_NPS_MEAN + _NPS_VALUE_LOADING * value + _NPS_FRICTION_LOADING * friction,
    )


def _latent_customers(
    n_customers: int,
    *,
    seed: int = 42,
    start: pd.Timestamp = DEMO_START,
    end: pd.Timestamp = DEMO_END,
) -> _Latents:
    """The latent state behind ``generate_demo_data(n_customers, seed=seed, ...)`` (for tests
    and analysis: e.g. the true number of high-scored elements per customer)."""
    return _draw_latents(n_customers, _rngs(seed)[0], as_utc(start), as_utc(end))


# --- interactions -----------------------------------------------------------------------------
def _uniform_times(
    rng: np.random.Generator, counts: np.ndarray, lo: np.ndarray, length: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``counts[i]`` uniform times in ``[lo[i], lo[i] + length[i])``; returns (owner, time)."""
    owner = np.repeat(np.arange(counts.size), counts)
    return owner, lo[owner] + rng.random(owner.size) * length[owner]


def _normalised(weights: np.ndarray) -> np.ndarray:
    return weights / weights.sum(axis=-1, keepdims=True)


def _clip_round(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return np.clip(np.rint(x), lo, hi).astype(np.int8)


def _draw_interactions(
    customer: np.ndarray,
    t0: np.ndarray,
    t1: np.ndarray,
    lat: _Latents,
    rng: np.random.Generator,
    *,
    copies: int = 1,
    edges: np.ndarray | None = None,
) -> tuple[_Interactions, np.ndarray]:
    """The as-if-alive interaction streams over ``[t0[i], t1[i])`` (days) of ``copies``
    independent paths per ``customer[i]`` (path ``i * copies + c`` is copy ``c``).

    Returns the events grouped by the steps of ``edges`` (default: a single step) and the
    bounds: step ``k``'s events are ``[bounds[k], bounds[k + 1])``.

    Interactions do not depend on the hazard state, so whole streams can be drawn up front;
    dropout later thins them. A Poisson process split by step, type and channel is a set of
    independent Poisson counts, one per cell, so the draw needs no per-event category draws and
    no sort; each event then goes to a uniformly random copy. Scores are the *true* ones the
    customer experiences; which of them were asked for is decided at export. Effort rises
    with the customer's service friction, with high-effort types and channels and when a
    ticket stays unresolved; value enhancement is highest for onboarding and education.
    """
    if edges is None:
        edges = np.array([t0.min(initial=0.0), t1.max(initial=0.0)])
    n_units, n_channels = customer.size, len(INTERACTION_CHANNELS)
    # Windows per (step, unit, source): ordinary contacts, and onboarding in early tenure.
    lo = np.maximum(edges[:-1, None], t0[None, :])
    hi = np.minimum(edges[1:, None], t1[None, :])
    signup = lat.signup_day[customer]
    onboarding_lo = np.maximum(lo, signup)
    onboarding_hi = np.minimum(hi, signup + _ONBOARDING_DAYS)
    window_lo = np.stack([lo, onboarding_lo], axis=-1)
    window_len = np.maximum(np.stack([hi, onboarding_hi], axis=-1) - window_lo, 0.0)
    # Expected counts per cell (step, unit, kind, channel); kinds are the five types of
    # ordinary contacts and the extra onboarding sessions, which have their own window.
    kind_rate = np.concatenate(
        [
            lat.type_p[customer] * lat.contact_rate[customer, None],
            np.full((n_units, 1), _ONBOARDING_PER_WEEK / 7.0),
        ],
        axis=1,
    )
    kind_len = window_len[:, :, _KIND_WINDOW]
    mean = copies * (kind_len * kind_rate)[..., None] * _KIND_CHANNEL_P
    counts = rng.poisson(mean.ravel())
    cell = np.repeat(np.arange(counts.size), counts)
    step, unit, kind, channel = np.unravel_index(
        cell, (edges.size - 1, n_units, _KIND_TYPE.size, n_channels)
    )
    window = (step * n_units + unit) * 2 + _KIND_WINDOW[kind]
    day = window_lo.ravel()[window] + rng.random(cell.size) * window_len.ravel()[window]
    path = unit if copies == 1 else unit * copies + rng.integers(0, copies, cell.size)
    per_step = counts.reshape(edges.size - 1, -1).sum(axis=1)
    bounds = np.concatenate([[0], np.cumsum(per_step)])
    itype = _KIND_TYPE[kind]
    cust = customer[unit]
    channel = channel.astype(np.int8)
    type_channel = itype * len(INTERACTION_CHANNELS) + channel
    resolved = np.full(day.size, -1, dtype=np.int8)
    ticket = np.flatnonzero(itype <= _COMPLAINT)  # support tickets and complaints
    logit = lat.resolved_logit[cust[ticket]] + _RESOLVED_LOGIT[type_channel[ticket]]
    resolved[ticket] = rng.random(ticket.size) < 1.0 / (1.0 + np.exp(-logit))
    unresolved = resolved == 0
    effort = _clip_round(
        lat.effort_base[cust]
        + _EFFORT_OFFSET[type_channel]
        + np.float32(_UNRESOLVED_EFFORT) * unresolved
        + np.float32(_EFFORT_NOISE_SD) * rng.standard_normal(day.size, dtype=np.float32),
        1,
        7,
    )
    value_enhancement = _clip_round(
        lat.value_enhancement_base[cust]
        + _VALUE_ENHANCEMENT_OFFSET[itype]
        + _RESOLUTION_VALUE_ENHANCEMENT[resolved + 1]
        + rng.standard_normal(day.size, dtype=np.float32),
        1,
        7,
    )
    return _Interactions(path, day, itype, channel, effort, resolved, value_enhancement), bounds


# --- dropout ----------------------------------------------------------------------------------
def _group_by_step(ev: _Interactions, edges: np.ndarray) -> tuple[_Interactions, np.ndarray]:
    """Events reordered by step (a linear-time radix sort on the step number) and the slice
    bounds: step k's events are ``[bounds[k], bounds[k + 1])``."""
    step = (np.searchsorted(edges, ev.day, side="right") - 1).astype(np.int16)
    ev = ev.take(np.argsort(step, kind="stable"))
    return ev, np.searchsorted(np.sort(step, kind="stable"), np.arange(edges.size))


def _step_edges(lo: float, hi: float, anchor: float) -> np.ndarray:
    """Weekly step boundaries covering ``[lo, hi]``, aligned so that ``anchor`` is one."""
    k = np.arange(np.floor((lo - anchor) / _STEP_DAYS), np.ceil((hi - anchor) / _STEP_DAYS) + 1)
    return np.unique(np.clip(anchor + _STEP_DAYS * k, lo, hi))


def _simulate_dropout(
    lat: _Latents,
    stream: _Interactions,
    span_days: float,
    as_of_day: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, _HazardState]:
    """Realised dropout day of every customer (``inf`` if alive at ``end``) and the hazard
    state at ``as_of``.

    The hazard is constant within a weekly step and set by the state at the step's start; the
    dropout time solves ``cumulative hazard = E`` with ``E ~ Exp(1)``, exactly within the step.
    """
    n = lat.signup_day.size
    edges = _step_edges(0.0, span_days, as_of_day)
    ev, bounds = _group_by_step(stream, edges)
    state = _HazardState.zeros(n)
    threshold = rng.exponential(1.0, n)
    cumulative = np.zeros(n)
    drop_day = np.full(n, np.inf)
    state_at_as_of = state
    for k in range(edges.size - 1):
        a, b = edges[k], edges[k + 1]
        exposed_from = np.maximum(a, lat.signup_day)
        exposure = np.maximum(b - exposed_from, 0.0)
        hazard = lat.base_hazard * np.exp(lat.static_log_hazard + state.log_multiplier())
        new_cumulative = cumulative + hazard * exposure
        dropped = np.isinf(drop_day) & (new_cumulative >= threshold)
        drop_day[dropped] = (
            exposed_from[dropped] + (threshold[dropped] - cumulative[dropped]) / hazard[dropped]
        )
        cumulative = new_cumulative
        state.decay(b - a)
        state.absorb(ev.take(slice(bounds[k], bounds[k + 1])), b, n)
        if b == as_of_day:
            state_at_as_of = state.repeat(np.arange(n))
    return drop_day, state_at_as_of


# --- transactions and surveys -----------------------------------------------------------------
def _alive_span(lat: _Latents, drop_day: np.ndarray, span_days: float) -> np.ndarray:
    return np.maximum(np.minimum(drop_day, span_days) - lat.signup_day, 0.0)


def _draw_transactions(
    lat: _Latents, drop_day: np.ndarray, span_days: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orders while alive, free promo orders and later refunds; returns (customer, day, amount)."""
    n = lat.signup_day.size
    alive = _alive_span(lat, drop_day, span_days)
    first = rng.random(n) < _FIRST_ORDER_P
    first_day = lat.signup_day + rng.random(n) * np.minimum(0.5, alive)
    cust, day = _uniform_times(rng, rng.poisson(lat.purchase_rate * alive), lat.signup_day, alive)
    cust = np.concatenate([np.flatnonzero(first), cust])
    day = np.concatenate([first_day[first], day])
    amount = np.maximum(
        np.round(rng.gamma(_SPEND_SHAPE_ORDER, lat.spend_mean[cust] / _SPEND_SHAPE_ORDER), 2), 0.5
    )
    amount[rng.random(amount.size) < _ZERO_ORDER_P] = 0.0

    refunded = (amount > 0) & (rng.random(amount.size) < _REFUND_P)
    share = np.where(
        rng.random(amount.size) < _FULL_REFUND_P, 1.0, rng.uniform(0.2, 0.9, amount.size)
    )
    refund_day = day + rng.uniform(*_REFUND_DELAY_DAYS, amount.size)
    refunded &= refund_day < span_days  # a refund after the window is not observed
    return (
        np.concatenate([cust, cust[refunded]]),
        np.concatenate([day, refund_day[refunded]]),
        np.concatenate([amount, -np.round(amount * share, 2)[refunded]]),
    )


def _draw_sessions(
    lat: _Latents, drop_day: np.ndarray, span_days: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Product sessions: a Poisson process while alive whose rate rises with the purchase
    rate, and a trickle after dropout. They carry no scores and do not move the hazard (they
    are product usage, not service). Returns (customer, day, channel code)."""
    n = lat.signup_day.size
    rate = (
        _SESSION_MEAN_PER_WEEK
        / 7.0
        * (lat.purchase_rate * 7.0 / _PURCHASE_RATE_MEAN_PER_WEEK) ** _SESSION_PURCHASE_ELASTICITY
        * np.exp(_SESSION_LOG_SD * rng.standard_normal(n) - _SESSION_LOG_SD**2 / 2)
    )
    alive = _alive_span(lat, drop_day, span_days)
    cust, day = _uniform_times(rng, rng.poisson(rate * alive), lat.signup_day, alive)
    lapsed_from = np.minimum(np.maximum(drop_day, lat.signup_day), span_days)
    lapsed = span_days - lapsed_from
    late_cust, late_day = _uniform_times(
        rng, rng.poisson(rate * _POST_DROPOUT_SESSION_SHARE * lapsed), lapsed_from, lapsed
    )
    cust, day = np.concatenate([cust, late_cust]), np.concatenate([day, late_day])
    channel = rng.choice(len(INTERACTION_CHANNELS), cust.size, p=_SESSION_CHANNEL_P)
    return cust, day, channel.astype(np.int8)


def _merge_sorted(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Rows of both tables, sorted by customer then time (stable: ties keep ``a`` first).
    Identical rows (two unscored sessions in the same second) are logged once, as an export
    would, so that the data set has no exact duplicates for validation to quarantine."""
    both = pd.concat([a, b], ignore_index=True).drop_duplicates(ignore_index=True)
    order = np.lexsort((both["timestamp"].to_numpy(), both["customer_id"].to_numpy()))
    return both.take(order).reset_index(drop=True)


def _draw_surveys(
    lat: _Latents,
    drop_day: np.ndarray,
    span_days: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Survey responses while alive: NPS plus 6-15 random elements, each a noisy reading of
    the true score. Returns (customer, day, element code, score); code 30 is NPS."""
    alive = _alive_span(lat, drop_day, span_days)
    rate = np.where(lat.survey_responder, _SURVEYS_PER_DAY, 0.0)
    cust, day = _uniform_times(rng, rng.poisson(rate * alive), lat.signup_day, alive)
    n_elements = len(ELEMENT_NAMES)
    k = rng.integers(_SURVEY_ELEMENTS_RANGE[0], _SURVEY_ELEMENTS_RANGE[1] + 1, cust.size)
    asked = np.empty((cust.size, n_elements), dtype=bool)
    for lo in range(0, cust.size, 200_000):  # chunks bound the (surveys x 30) sort's memory
        hi = min(lo + 200_000, cust.size)
        rank = np.argsort(np.argsort(rng.random((hi - lo, n_elements)), axis=1), axis=1)
        asked[lo:hi] = rank < k[lo:hi, None]
    survey, element = np.nonzero(asked)
    true = lat.element_scores[cust[survey], element]
    score = _clip_round(true + _SURVEY_NOISE_SD * rng.standard_normal(survey.size), 0, 10)
    nps = _clip_round(lat.nps_true[cust] + _NPS_NOISE_SD * rng.standard_normal(cust.size), 0, 10)
    survey = np.concatenate([np.arange(cust.size), survey])
    return (
        cust[survey],
        day[survey],
        np.concatenate([np.full(cust.size, n_elements), element]),
        np.concatenate([nps, score]),
    )


# --- ground truth -----------------------------------------------------------------------------
def _ground_truth(
    ids: pa.Array,
    lat: _Latents,
    drop_day: np.ndarray,
    state: _HazardState,
    start: pd.Timestamp,
    as_of_day: float,
    horizon_days: int,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """True P(no purchase in (as_of, as_of + horizon]) for customers signed up before as_of."""
    signed_up = np.flatnonzero(lat.signup_day < as_of_day)
    alive = drop_day[signed_up] > as_of_day
    p = np.ones(signed_up.size)
    se = np.zeros(signed_up.size)
    p[alive], se[alive] = _p_no_purchase(
        lat, signed_up[alive], state, as_of_day, float(horizon_days), rng
    )
    as_of = start + pd.Timedelta(days=as_of_day)
    return pd.DataFrame(
        {
            "customer_id": pd.array(ids.take(pa.array(signed_up)), dtype="str"),
            "as_of": pd.Series(as_of, index=range(signed_up.size)).astype("datetime64[ns, UTC]"),
            "horizon_days": np.full(signed_up.size, horizon_days, dtype=np.int64),
            "alive_at_as_of": alive,
            "p_churn_true": p,
            "p_churn_true_se": se,
        }
    )


def _p_no_purchase(
    lat: _Latents,
    customers: np.ndarray,
    state: _HazardState,
    as_of_day: float,
    horizon: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo over future interaction paths, Rao-Blackwellised over dropout and purchases.

    For one simulated path of future interactions the hazard h_k is known on each weekly step
    k of length L_k, so with the purchase rate lam and G_k = exp(-sum_{j<k}(h_j +
    lam) L_j) (still alive and no purchase at the step's start):

        P(no purchase | path) = sum_k G_k h_k / (h_k + lam) (1 - exp(-(h_k + lam) L_k)) + G_K

    (drop out in step k before any purchase, or survive the window without one). Averaging it
    over ``TRUTH_REPLICATIONS`` paths gives the estimate; its standard error is the sample
    standard deviation over paths / sqrt(replications). Chunks of customers run on a thread
    pool (numpy releases the GIL); each chunk has its own spawned generator, so the result does
    not depend on scheduling.
    """
    per_chunk = max(1, _TRUTH_PATHS_PER_CHUNK // TRUTH_REPLICATIONS)
    starts = range(0, customers.size, per_chunk)
    chunk_rngs = rng.spawn(len(starts))
    edges = _step_edges(as_of_day, as_of_day + horizon, as_of_day)

    def run(i: int) -> tuple[np.ndarray, np.ndarray]:
        chunk = customers[starts[i] : starts[i] + per_chunk]
        return _p_no_purchase_chunk(lat, chunk, state, edges, chunk_rngs[i])

    with ThreadPoolExecutor(max_workers=min(_TRUTH_THREADS, max(1, len(starts)))) as pool:
        results = list(pool.map(run, range(len(starts))))
    if not results:
        return np.empty(0), np.empty(0)
    mean = np.concatenate([m for m, _ in results])
    se = np.concatenate([e for _, e in results])
    return np.minimum(mean, 1.0), se


def _p_no_purchase_chunk(
    lat: _Latents,
    customers: np.ndarray,
    state: _HazardState,
    edges: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """The estimator of :func:`_p_no_purchase` for one chunk of customers; path arrays are
    float32 (4x faster here, and ample for probabilities averaged over 500 paths)."""
    reps = TRUTH_REPLICATIONS
    path_customer = np.repeat(customers, reps)
    n_paths = path_customer.size
    ev, bounds = _draw_interactions(
        customers,
        np.full(customers.size, edges[0]),
        np.full(customers.size, edges[-1]),
        lat,
        rng,
        copies=reps,
        edges=edges,
    )
    paths = state.repeat(path_customer, dtype=np.float32)
    base = lat.base_hazard[customers] * np.exp(lat.static_log_hazard[customers])
    base = np.repeat(base.astype(np.float32), reps)
    lam = np.repeat(lat.purchase_rate[customers].astype(np.float32), reps)
    g = np.ones(n_paths, dtype=np.float32)
    prob = np.zeros(n_paths, dtype=np.float32)
    for k in range(edges.size - 1):
        length = float(edges[k + 1] - edges[k])
        hazard = base * np.exp(paths.log_multiplier())
        total = hazard + lam
        leave = -np.expm1(-total * length)
        prob += g * hazard / total * leave
        g *= 1.0 - leave
        paths.decay(length)
        paths.absorb(ev.take(slice(bounds[k], bounds[k + 1])), float(edges[k + 1]), n_paths)
    per_customer = (prob + g).astype(np.float64).reshape(customers.size, reps)
    return per_customer.mean(axis=1), per_customer.std(axis=1, ddof=1) / np.sqrt(reps)


# --- frames -----------------------------------------------------------------------------------
def _customer_ids(n: int) -> pa.Array:
    """ "C0000001", ...: zero-padded to 7 digits (wider only beyond 9,999,999 customers)."""
    return pa.array(np.char.add("C", np.char.zfill(np.arange(1, n + 1).astype(str), 7)))


def _labels(names: tuple[str, ...], codes: np.ndarray) -> pd.api.extensions.ExtensionArray:
    return pd.array(pa.array(names).take(pa.array(codes)), dtype="str")


def _customers_frame(ids: pa.Array, start: pd.Timestamp, lat: _Latents) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": pd.array(ids, dtype="str"),
            "signup_date": pd.to_datetime(
                start.value + lat.signup_second * _NS_PER_SECOND, utc=True
            ),
            "plan": _labels(PLANS, lat.plan),
            "region": _labels(REGIONS, lat.region),
            "acquisition_channel": _labels(ACQUISITION_CHANNELS, lat.acquisition),
        }
    )


@dataclass(frozen=True)
class _Frames:
    """Turns simulated (customer index, day) events into sorted, canonical tables."""

    ids: pa.Array
    start: pd.Timestamp
    signup_second: np.ndarray
    span_days: float

    def _order_and_time(
        self,
        cust: np.ndarray,
        day: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, pd.Series]:
        """Whole-second timestamps (as exports have) kept inside [signup, end); the row order
        sorts by customer then time."""
        second = np.floor(day * _SECONDS_PER_DAY).astype(np.int64)
        second = np.clip(
            second, self.signup_second[cust], int(np.ceil(self.span_days * _SECONDS_PER_DAY)) - 1
        )
        order = np.lexsort((second, cust))
        ts = pd.to_datetime(self.start.value + second[order] * _NS_PER_SECOND, utc=True)
        customer_id = pd.array(self.ids.take(pa.array(cust[order])), dtype="str")
        return order, customer_id, ts

    def transactions(self, cust: np.ndarray, day: np.ndarray, amount: np.ndarray) -> pd.DataFrame:
        order, customer_id, ts = self._order_and_time(cust, day)
        return pd.DataFrame({"customer_id": customer_id, "timestamp": ts, "amount": amount[order]})

    def interactions(
        self, ev: _Interactions, lat: _Latents, rng: np.random.Generator
    ) -> pd.DataFrame:
        """Exported interactions: CSAT is drawn here (it drives nothing), and each optional
        score is blanked when it was not asked for, as in real CRM exports."""
        n = ev.day.size
        ticket = ev.resolved >= 0
        csat = _clip_round(
            3.3
            - 0.5 * (ev.effort - 4.0)
            + np.where(ticket, 1.2 * ev.resolved - 0.6, 0.0)
            + 0.3 * lat.value_perception[ev.path]
            + 0.7 * rng.standard_normal(n),
            1,
            5,
        )

        def masked(values: np.ndarray, ask_p: np.ndarray) -> pd.arrays.IntegerArray:
            missing = rng.random(n) >= ask_p[ev.itype]
            return pd.arrays.IntegerArray(values.astype(np.int64), missing)

        effort = masked(ev.effort, _ASK_EFFORT)
        csat_col = masked(csat, _ASK_CSAT)
        value_enhancement = masked(ev.value_enhancement, _ASK_VALUE_ENHANCEMENT)
        resolved = pd.arrays.BooleanArray(
            ev.resolved == 1, ~ticket | (rng.random(n) >= _RESOLVED_RECORDED_P)
        )
        order, customer_id, ts = self._order_and_time(ev.path, ev.day)
        return pd.DataFrame(
            {
                "customer_id": customer_id,
                "timestamp": ts,
                "channel": _labels(INTERACTION_CHANNELS, ev.channel[order]),
                "interaction_type": _labels(INTERACTION_TYPES, ev.itype[order]),
                "effort_score": effort[order],
                "csat": csat_col[order],
                "resolved": resolved[order],
                "value_enhancement": value_enhancement[order],
            }
        )

    def sessions(self, cust: np.ndarray, day: np.ndarray, channel: np.ndarray) -> pd.DataFrame:
        """Product sessions as ``usage`` interactions; no score was asked for."""
        order, customer_id, ts = self._order_and_time(cust, day)
        blank = pd.array([pd.NA] * cust.size, dtype="Int64")
        return pd.DataFrame(
            {
                "customer_id": customer_id,
                "timestamp": ts,
                "channel": _labels(INTERACTION_CHANNELS, channel[order]),
                "interaction_type": _labels(
                    INTERACTION_TYPES, np.full(cust.size, _USAGE, dtype=np.int8)
                ),
                "effort_score": blank,
                "csat": blank.copy(),
                "resolved": pd.array([pd.NA] * cust.size, dtype="boolean"),
                "value_enhancement": blank.copy(),
            }
        )

    def surveys(
        self, cust: np.ndarray, day: np.ndarray, element: np.ndarray, score: np.ndarray
    ) -> pd.DataFrame:
        order, customer_id, ts = self._order_and_time(cust, day)
        return pd.DataFrame(
            {
                "customer_id": customer_id,
                "timestamp": ts,
                "element": _labels((*ELEMENT_NAMES, NPS_ELEMENT), element[order]),
                "score": score[order].astype(np.int64),
            }
        )
