"""The feature catalogue: one entry per feature, with family, unit, window and description.

The catalogue is the single source of the human-readable descriptions the server uses to
explain scores ("top reasons") and of the generated feature documentation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


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
    family in :data:`FAMILY_ORDER`, registration order within a family."""
    lines = [
        "| feature | family | unit | window | description |",
        "|---|---|---|---|---|",
    ]
    rank = {family: i for i, family in enumerate(FAMILY_ORDER)}
    specs = sorted(_CATALOGUE.values(), key=lambda s: rank.get(s.family, len(rank)))
    for spec in specs:
        d = asdict(spec)
        lines.append("| `{name}` | {family} | {unit} | {window} | {description} |".format(**d))
    return "\n".join(lines) + "\n"
