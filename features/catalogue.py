"""The feature catalogue: one entry per feature, with family, unit, window and description.

The catalogue is the single source of the human-readable descriptions and reason texts the
scores carry ("top reasons", models/reasons.py) and of the generated feature documentation.

Reasons are given per *concept*, not per feature: correlated features that say the same
thing to a retention lead (days since the last contact, days since the last usage) form one
concept with a stable code (:data:`CONCEPTS`, :func:`concept_of`). Each feature renders as a
plain sentence with the customer's value in its unit (:func:`reason_text`): an explicit
template from :data:`TEXT` where one reads better, else one built from the description.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Hashable, Mapping
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any


@dataclass(frozen=True)
class FeatureSpec:
    """What one feature measures.

    Attributes
    ----------
    name : column name in the feature frame.
    family : ``transactions``, ``interactions``, ``engagement``, ``surveys``, ``customer``
        or ``clv`` (model outputs used as features).
    unit : unit of the value (``days``, ``count``, ``currency``, ``score 1-7``, ...).
    window : time window before ``as_of`` the feature looks at (``all history``, ``90d``).
    description : one line a retention lead can read.
    """

    name: str
    family: str
    unit: str
    window: str
    description: str


_CATALOGUE: dict[str, FeatureSpec] = {}
#: The order families appear in the generated catalogue (others follow).
FAMILY_ORDER = ("transactions", "interactions", "engagement", "surveys", "customer", "clv")


def register(name: str, family: str, unit: str, window: str, description: str) -> str:
    """Add a feature to the catalogue and return its name (so modules can bind constants)."""
    spec = FeatureSpec(name, family, unit, window, description)
    existing = _CATALOGUE.get(name)
    if existing is not None and existing != spec:
        raise ValueError(f"feature {name!r} registered twice with different specs")
    _CATALOGUE[name] = spec
    return name


def catalogue() -> dict[str, FeatureSpec]:
    """All registered features, in registration order."""
    return dict(_CATALOGUE)


def describe(name: str) -> str:
    """The one-line description of a feature; attribute columns get a generic one."""
    spec = _CATALOGUE.get(name)
    return spec.description if spec is not None else f"customer attribute '{name}'"


def catalogue_markdown() -> str:
    """The catalogue as a Markdown table (written to docs/feature-catalogue.md), grouped by
    family in :data:`FAMILY_ORDER`, registration order within a family; with each feature's
    reason concept and its reason text for an example value."""
    lines = [
        "| feature | family | unit | window | description | reason | example reason text |",
        "|---|---|---|---|---|---|---|",
    ]
    rank = {family: i for i, family in enumerate(FAMILY_ORDER)}
    specs = sorted(_CATALOGUE.values(), key=lambda s: rank.get(s.family, len(rank)))
    for spec in specs:
        d = asdict(spec)
        d["concept"] = concept_of(spec.name)
        d["text"] = reason_text(spec.name, example_value(spec.name), {}).replace("|", "\\|")
        lines.append(
            "| `{name}` | {family} | {unit} | {window} | {description} | `{concept}` | {text} |".format(
                **d
            )
        )
    lines += ["", "Reason concepts (the `code` of a reason):", ""]
    lines += ["| code | what it is about |", "|---|---|"]
    lines += [f"| `{code}` | {title} |" for code, title in CONCEPTS.items()]
    lines.append("| `attribute_<column>` | a customer attribute column (plan, region, ...) |")
    return "\n".join(lines) + "\n"


# -- reason concepts ---------------------------------------------------------------------

#: Reason concepts: stable code -> what the concept is about.
CONCEPTS: dict[str, str] = {
    "purchase_recency": "time since the last purchase, against the customer's usual gap",
    "purchase_frequency": "how often the customer buys",
    "spend": "how much the customer spends",
    "refunds": "refunds and returns",
    "contact_recency": "time since the last contact or product use",
    "usage": "how much the customer uses the product",
    "service_problems": "support tickets, complaints and unresolved issues",
    "effort": "how hard getting help was (customer effort score)",
    "satisfaction": "satisfaction with service contacts (CSAT)",
    "value_enhancement": "whether service contacts left the customer able to do more",
    "learning": "onboarding and education sessions",
    "contact_mix": "how many contacts, over which channels, with a person or self-service",
    "elements_of_value": "elements-of-value survey scores",
    "recommendation": "likelihood to recommend (NPS)",
    "survey_recency": "time since the last survey answer",
    "tenure": "how long the customer has been a customer",
}

#: Concept of each feature, by exact name first, then by pattern (first match wins).
_CONCEPT_BY_NAME: dict[str, str] = {
    "days_since_last_purchase": "purchase_recency",
    "recency_days": "purchase_recency",
    "T_days": "purchase_recency",
    "purchase_overdue_ratio": "purchase_recency",
    "interpurchase_days_mean": "purchase_recency",
    "interpurchase_days_std": "purchase_recency",
    "bgnbd_p_alive": "purchase_recency",
    "frequency": "purchase_frequency",
    "purchases_90d": "purchase_frequency",
    "purchases_365d": "purchase_frequency",
    "purchases_trend_90d": "purchase_frequency",
    "bgnbd_expected_purchases": "purchase_frequency",
    "days_since_last_interaction": "contact_recency",
    "days_since_last_usage": "contact_recency",
    "days_since_last_complaint": "service_problems",
    "education_onboarding_365d": "learning",
    "nps_last": "recommendation",
    "nps_class": "recommendation",
    "days_since_last_survey": "survey_recency",
    "tenure_days": "tenure",
}
_CONCEPT_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"^(monetary|order_value|spend)_", "spend"),
    (r"^refund", "refunds"),
    (r"^usage_", "usage"),
    (r"^(support_tickets|complaints|unresolved)_", "service_problems"),
    (r"^effort_", "effort"),
    (r"^csat_", "satisfaction"),
    (r"^value_enhancement_", "value_enhancement"),
    (r"^(onboarding|education)_sessions_", "learning"),
    (
        r"(_contacts_|^interactions_|^other_interactions_|^channels_|^two_way_|^engagement_)",
        "contact_mix",
    ),
    (r"^(element|elements|value)_", "elements_of_value"),
)


def concept_of(name: str) -> str:
    """The reason concept (code) of a feature; a column outside the catalogue (a customer
    attribute) is its own concept ``attribute_<name>``."""
    if name in _CONCEPT_BY_NAME:
        return _CONCEPT_BY_NAME[name]
    if name in _CATALOGUE:
        for pattern, concept in _CONCEPT_PATTERNS:
            if re.search(pattern, name):
                return concept
    return f"attribute_{name}"


# -- reason texts ------------------------------------------------------------------------

#: Reason text templates: clauses joined by "; ". ``{value}`` is the feature's own value in
#: its unit, ``{signed}`` the same with a sign, ``{percent}`` a share as a percentage, and
#: ``{other_feature}`` another feature's value in its unit; a clause naming another feature
#: the customer has no value for is left out. Features without a template read
#: "<count> <description>" (counts) or "<Description>: <value>".
TEXT: dict[str, str] = {
    "days_since_last_purchase": "No purchase for {value}; usually every {interpurchase_days_mean}",
    "interpurchase_days_mean": "Usually buys every {value}; last purchase {days_since_last_purchase} ago",
    "interpurchase_days_std": "Gap between purchases varies by {value}",
    "purchase_overdue_ratio": "{value} times the usual gap since the last purchase; no purchase for {days_since_last_purchase}",
    "recency_days": "Last purchase {value} after the first",
    "T_days": "First purchase {value} ago",
    "bgnbd_p_alive": "Purchase model: {percent} chance the customer still buys; no purchase for {days_since_last_purchase}",
    "frequency": "{value} repeat purchase days so far",
    "purchases_90d": "{value} purchase days in the last 90 days; {purchases_365d} in the last 365",
    "purchases_365d": "{value} purchase days in the last 365 days",
    "purchases_trend_90d": "Purchase days in the last 90 days {signed} against the 90 days before",
    "bgnbd_expected_purchases": "Purchase model expects {value} purchases over the next period; {frequency} repeat purchase days so far",
    "monetary_repeat_mean": "Spends {value} per repeat purchase day on average",
    "order_value_mean": "Spends {value} per purchase day on average",
    "spend_total": "Spent {value} in all (net of refunds)",
    "spend_90d": "Spent {value} in the last 90 days",
    "spend_trend_90d": "Spend in the last 90 days {signed} against the 90 days before",
    "refunds_365d": "{value} refunds in the last 365 days",
    "refund_amount_365d": "Refunded {value} in the last 365 days",
    "refund_share": "Refunds are {percent} of what the customer bought",
    "days_since_last_interaction": "No contact for {value}",
    "days_since_last_usage": "No product use for {value}; last contact {days_since_last_interaction} ago",
    "usage_per_week_90d": "Uses the product {value} (last 90 days); {usage_per_week_365d} over 365 days",
    "usage_per_week_365d": "Uses the product {value} (last 365 days)",
    "unresolved_90d": "{value} support tickets or complaints left unresolved in the last 90 days",
    "unresolved_365d": "{value} contacts left unresolved in the last 365 days",
    "days_since_last_complaint": "Last complaint {value} ago",
    "effort_score_mean_90d": "Getting help took effort {value} on average in the last 90 days (7 = hardest)",
    "effort_score_last": "Latest customer effort score {value} (7 = hardest)",
    "effort_score_trend_90d": "Effort score {signed} in the last 90 days against the 275 days before (up: harder)",
    "csat_mean_90d": "Satisfaction with service {value} on average in the last 90 days",
    "csat_last": "Latest satisfaction score {value}",
    "value_enhancement_mean_90d": "Service contacts scored {value} on 'I can do more with the product now' (last 90 days)",
    "value_enhancement_last": "Latest contact scored {value} on 'I can do more with the product now'",
    "education_onboarding_365d": "{value} education or onboarding sessions in the last 365 days",
    "channels_used_365d": "Used {value} contact channels in the last 365 days",
    "two_way_contacts_365d": "{value} conversations with a person in the last 365 days",
    "one_way_contacts_365d": "{value} self-service contacts in the last 365 days",
    "two_way_share_365d": "{percent} of contacts were with a person (last 365 days)",
    "engagement_index": "Engagement index {value} (0 = none, 1 = highest)",
    "elements_high_count": "{value} of 30 elements of value scored 8 or more",
    "element_score_mean": "Elements of value scored {value} on average",
    "value_functional_mean": "Functional elements of value scored {value} on average",
    "value_emotional_mean": "Emotional elements of value scored {value} on average",
    "value_life_changing_mean": "Life-changing elements of value scored {value} on average",
    "value_social_impact_mean": "Social-impact elements of value scored {value} on average",
    "elements_answered": "{value} of 30 elements of value answered",
    "element_score_trend_180d": "Element-of-value scores {signed} in the last 180 days against earlier answers",
    "nps_last": "Likelihood to recommend {value}",
    "nps_class": "NPS class: {value}",
    "days_since_last_survey": "Last survey answer {value} ago",
    "tenure_days": "Customer for {value}",
}
#: Text when the customer has no value for the feature (missing, not zero).
MISSING_TEXT: dict[str, str] = {
    "days_since_last_purchase": "No purchase yet",
    "interpurchase_days_mean": "Fewer than two purchase days so far",
    "purchase_overdue_ratio": "Fewer than two purchase days so far",
    "bgnbd_p_alive": "No purchase history for the purchase model",
    "bgnbd_expected_purchases": "No purchase history for the purchase model",
    "days_since_last_interaction": "No contact on record",
    "days_since_last_usage": "No product use on record",
    "days_since_last_complaint": "No complaint on record",
    "days_since_last_survey": "No survey answer on record",
    "nps_last": "No NPS answer on record",
    "nps_class": "No NPS answer on record",
}

_FIELD = re.compile(r"\{(\w+)\}")


def _plural(n: float, word: str) -> str:
    return f"{n:,.0f} {word}" if round(n) == 1 else f"{n:,.0f} {word}s"


def _number(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"


def _score(top: str) -> Callable[[float], str]:
    return lambda v: f"{v:.1f} of {top}"


#: Value formats per unit: the value as a retention lead reads it.
_UNIT_FORMAT: dict[str, Callable[[float], str]] = {
    "days": lambda v: _plural(v, "day"),
    "count": _number,
    "count (0-30)": _number,
    "currency": lambda v: f"{v:,.2f}",
    "ratio": lambda v: f"{v:,.1f}",
    "ratio 0-1": lambda v: f"{v:.0%}",
    "probability": lambda v: f"{v:.0%}",
    "index 0-1": lambda v: f"{v:.2f}",
    "events per week": lambda v: f"{v:,.1f} times a week",
    "score 1-7": _score("7"),
    "score 1-5": _score("5"),
    "score 0-10": _score("10"),
    "score difference": lambda v: f"{v:+.1f}",
}


def format_value(name: str, value: Any) -> str:
    """A feature's value in its unit, as text ("143 days", "5.2 of 7", "35%")."""
    if isinstance(value, str):
        return value
    spec = _CATALOGUE.get(name)
    number = float(value)
    fmt = _UNIT_FORMAT.get(spec.unit) if spec is not None else None
    return fmt(number) if fmt is not None else f"{number:,.4g}"


def _signed(name: str, value: float) -> str:
    spec = _CATALOGUE.get(name)
    plain = spec is not None and spec.unit == "score difference"  # its format carries a sign
    text = f"{abs(value):.1f}" if plain else format_value(name, abs(value))
    return "unchanged" if value == 0 else (f"up by {text}" if value > 0 else f"down by {text}")


def _known(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return True
    try:
        return not math.isnan(float(value))
    except (TypeError, ValueError):
        return False


#: A compiled clause of a reason text: its pieces (literal text, or a field name) and the
#: other features it names.
_Clause = tuple[tuple[tuple[bool, str], ...], tuple[str, ...]]


@cache
def _compiled(name: str, spec: FeatureSpec | None) -> tuple[_Clause, ...] | None:
    """The clauses of the :data:`TEXT` template of ``name`` (``spec``: its catalogue entry,
    part of the key so a later registration is seen), split into literal text and fields
    once; None when it has no template."""
    template = TEXT.get(name)
    if template is None:
        return None
    clauses = []
    for clause in template.split("; "):
        pieces = []
        for literal, field, _, _ in string.Formatter().parse(clause):
            if literal:
                pieces.append((False, literal))
            if field is not None:
                pieces.append((True, field))
        needed = tuple(f for f in _FIELD.findall(clause) if f not in _OWN_FIELDS)
        clauses.append((tuple(pieces), needed))
    return tuple(clauses)


#: The template fields that are the feature's own value (``{value}``, ``{signed}``,
#: ``{percent}``).
_OWN_FIELDS = ("value", "signed", "percent")


def reason_text(name: str, value: Any, others: Mapping[str, Any]) -> str:
    """The plain-words reason of feature ``name`` for a customer whose value is ``value``;
    ``others`` maps other feature names to the customer's values (for the clauses of
    :data:`TEXT` that name them). Every feature renders, in or out of the catalogue."""
    if not _known(value):
        spec = _CATALOGUE.get(name)
        default = f"No value for: {spec.description}" if spec else f"'{name}' not known"
        return MISSING_TEXT.get(name, default)
    compiled = _compiled(name, _CATALOGUE.get(name))
    if compiled is None:
        spec = _CATALOGUE.get(name)
        if spec is None:
            return f"{name.replace('_', ' ').capitalize()}: {format_value(name, value)}"
        if spec.unit.startswith("count") and not isinstance(value, str):
            return f"{format_value(name, value)} {spec.description}"
        return f"{spec.description[0].upper()}{spec.description[1:]}: {format_value(name, value)}"
    own: dict[str, str] = {}  # the own fields, each formatted when a clause first shows it

    def field(f: str) -> str:
        text = own.get(f)
        if text is None:
            if isinstance(value, str):
                text = value
            elif f == "value":
                text = format_value(name, value)
            elif f == "signed":
                text = _signed(name, float(value))
            else:
                text = f"{float(value):.0%}"
            own[f] = text
        return text

    clauses = []
    for i, (pieces, needed) in enumerate(compiled):
        if any(not _known(others.get(f)) for f in needed):
            if i == 0:
                raise ValueError(
                    f"reason text of {name!r} needs {list(needed)} in its first clause"
                )
            continue
        clauses.append(
            "".join(
                (
                    (field(text) if text in _OWN_FIELDS else format_value(text, others[text]))
                    if is_field
                    else text
                )
                for is_field, text in pieces
            )
        )
    return "; ".join(clauses)


def reason_key(name: str, value: Any) -> Hashable:
    """All :func:`reason_text` reads of feature ``name``'s own ``value``: for the same other
    values, equal keys give equal texts (whether it is known, a text, and the formatted
    fields its template shows), so many customers' texts can be rendered once per key."""
    if not _known(value):
        return None
    if isinstance(value, str):
        return ("text", value)
    compiled = _compiled(name, _CATALOGUE.get(name))
    if compiled is None:
        return ("number", format_value(name, value))
    shown = {f for pieces, _ in compiled for is_field, f in pieces if is_field}
    return (
        "fields",
        format_value(name, value) if "value" in shown else None,
        _signed(name, float(value)) if "signed" in shown else None,
        f"{float(value):.0%}" if "percent" in shown else None,
    )


def field_key(name: str, value: Any) -> Hashable:
    """All :func:`reason_text` reads of another feature ``name`` a template names: whether
    its ``value`` is known, and its formatted value."""
    return format_value(name, value) if _known(value) else None


def example_value(name: str) -> Any:
    """A plausible value of a feature for the catalogue's example texts."""
    spec = _CATALOGUE.get(name)
    if spec is None or spec.unit == "category":
        return "detractor"
    unit = spec.unit
    if unit == "days":
        return 45.0
    if unit in ("probability", "ratio 0-1", "index 0-1"):
        return 0.35
    if unit.startswith("score") and "difference" not in unit:
        return 4.0
    if unit == "score difference":
        return 1.5
    return 3.0
