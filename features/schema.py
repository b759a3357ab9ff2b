"""The input contract: table names, canonical columns, value ranges and the elements of value.

See docs/data-contract.md. Everything that checks or reads these tables takes the names from
here, so the contract is written down once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

#: The 30 elements of value (Almquist, Senior & Bloch, HBR 2016), by pyramid level.
ELEMENTS_BY_LEVEL: dict[str, tuple[str, ...]] = {
    "functional": (
        "saves_time",
        "simplifies",
        "makes_money",
        "reduces_risk",
        "organizes",
        "integrates",
        "connects",
        "reduces_effort",
        "avoids_hassles",
        "reduces_cost",
        "quality",
        "variety",
        "sensory_appeal",
        "informs",
    ),
    "emotional": (
        "reduces_anxiety",
        "rewards_me",
        "nostalgia",
        "design_aesthetics",
        "badge_value",
        "wellness",
        "therapeutic_value",
        "fun_entertainment",
        "attractiveness",
        "provides_access",
    ),
    "life_changing": (
        "provides_hope",
        "self_actualization",
        "motivation",
        "heirloom",
        "affiliation_belonging",
    ),
    "social_impact": ("self_transcendence",),
}
ELEMENTS: frozenset[str] = frozenset(e for level in ELEMENTS_BY_LEVEL.values() for e in level)
NPS_ELEMENT = "nps"
SURVEY_ELEMENTS: frozenset[str] = ELEMENTS | {NPS_ELEMENT}
#: A score of 8 or more on an element is a "high score".
HIGH_SCORE = 8
#: NPS classes of a 0-10 likelihood-to-recommend answer (Reichheld, HBR 2003).
NPS_CLASSES: tuple[str, ...] = ("detractor", "passive", "promoter")
PROMOTER_MIN, DETRACTOR_MAX = 9, 6

#: Canonical interaction channels and types. Values outside these lists are valid rows and are
#: counted under ``other``: the feature columns are fixed by the contract, not by the data, so
#: every partition of customers yields the same columns.
CHANNELS: tuple[str, ...] = ("phone", "chat", "email", "web", "in_app")
INTERACTION_TYPES: tuple[str, ...] = (
    "support_ticket",
    "complaint",
    "onboarding",
    "education",
    "usage",
)
OTHER = "other"
#: Channels where a person answers the customer (a dialogue); the rest (web, in-app and any
#: other channel) are one-way: self-service, usage or broadcast.
TWO_WAY_CHANNELS: frozenset[str] = frozenset({"phone", "chat", "email"})


@dataclass(frozen=True)
class TableSpec:
    """Canonical columns of one input table and the numeric ranges its scores must lie in."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    timestamps: tuple[str, ...] = ()
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)


TABLES: dict[str, TableSpec] = {
    "customers": TableSpec(
        "customers",
        ("customer_id",),
        # tenure_periods, recurring_revenue: a subscription business's contractual CLV
        # (whole contract periods survived so far; revenue per period)
        ("signup_date", "churn_date", "tenure_periods", "recurring_revenue"),
        timestamps=("signup_date", "churn_date"),
        ranges={"tenure_periods": (0, 1e6), "recurring_revenue": (0, 1e12)},
    ),
    "transactions": TableSpec(
        "transactions",
        ("customer_id", "timestamp", "amount"),
        timestamps=("timestamp",),
    ),
    "interactions": TableSpec(
        "interactions",
        ("customer_id", "timestamp", "channel", "interaction_type"),
        ("effort_score", "csat", "resolved", "value_enhancement"),
        timestamps=("timestamp",),
        ranges={"effort_score": (1, 7), "csat": (1, 5), "value_enhancement": (1, 7)},
    ),
    "surveys": TableSpec(
        "surveys",
        ("customer_id", "timestamp", "element", "score"),
        timestamps=("timestamp",),
        ranges={"score": (0, 10)},
    ),
    "labels": TableSpec(
        "labels",
        ("customer_id", "as_of", "churned"),
        timestamps=("as_of",),
    ),
}
TABLE_NAMES: tuple[str, ...] = tuple(TABLES)


@dataclass(frozen=True)
class Tables:
    """The validated input tables; a table that is absent is ``None`` and adds no features.

    Event tables carry a tz-aware UTC ``timestamp``; ``customer_id`` is a string everywhere.
    """

    customers: pd.DataFrame | None = None
    transactions: pd.DataFrame | None = None
    interactions: pd.DataFrame | None = None
    surveys: pd.DataFrame | None = None
    labels: pd.DataFrame | None = None

    def present(self) -> dict[str, pd.DataFrame]:
        """The tables that are there, by name."""
        return {n: getattr(self, n) for n in TABLE_NAMES if getattr(self, n) is not None}
