"""Request and response bodies of the HTTP API (docs/http-api.md), with examples.

These models are the API's documentation (the OpenAPI page at ``/docs`` is generated from
them) and validate requests. Score responses are pre-encoded from the snapshot rather than
validated here on every request, so the snapshot loader checks the same constraints once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    create_model,
    field_validator,
)

#: Longest customer id a request may carry.
MAX_CUSTOMER_ID_LENGTH = 128

CustomerId = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=MAX_CUSTOMER_ID_LENGTH,
        # No control characters: ids end up in CRM systems and, on errors, in log lines.
        pattern=r"^[^\x00-\x1f\x7f]+$",
    ),
]

SCORED_EXAMPLE: dict[str, Any] = {
    "customer_id": "C000123",
    "as_of": "2026-06-30T00:00:00Z",
    "status": "at_risk",
    "churn_probability": 0.42,
    "churn_percentile": 83.5,
    "risk_band": "medium",
    "previous_churn_probability": 0.35,
    "change": 0.07,
    "p_alive": 0.61,
    "p_alive_note": None,
    "expected_purchases": 2.3,
    "expected_order_value": 53.1,
    "clv": 120.4,
    "clv_low": 0.0,
    "clv_high": 310.2,
    "clv_horizon_days": 365,
    "discount_rate": 0.1,
    "residual_clv": 402.7,
    "value_at_risk": 50.57,
    "top_reasons": [
        {
            "code": "purchase_recency",
            "text": "No purchase for 143 days; usually every 40 days",
            "feature": "days_since_last_purchase",
            "value": 143.0,
            "direction": "raises",
            "percentile": 91.0,
            "share": 0.62,
        },
        {
            "code": "effort",
            "text": "Getting help took effort 5.2 of 7 on average in the last 90 days "
            "(7 = hardest)",
            "feature": "effort_score_mean_90d",
            "value": 5.2,
            "direction": "raises",
            "percentile": 88.0,
            "share": 0.21,
        },
    ],
    "model_version": "3",
}


class ScoresRequest(BaseModel):
    """Customers to look up in the latest scored snapshot."""

    # An unknown field is a 422, as in every other request body: a misspelt field would
    # otherwise be ignored in silence.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"customer_ids": ["C000123", "C000456"]}]},
    )

    customer_ids: list[CustomerId] = Field(
        min_length=1,
        description="customer ids, as in the input tables; results come back in this order",
    )


def scores_request_model(max_customers: int) -> type[ScoresRequest]:
    """:class:`ScoresRequest` limited to ``max_customers`` ids (the server's setting), so the
    limit is both enforced and shown in the OpenAPI schema."""
    field = Field(
        min_length=1,
        max_length=max_customers,
        description=f"1 to {max_customers} customer ids; results come back in this order",
    )
    return create_model(
        "ScoresRequest",
        __base__=ScoresRequest,
        __doc__=ScoresRequest.__doc__,
        customer_ids=(list[CustomerId], field),
    )


class Reason(BaseModel):
    """A concept (group of related features) that moves this customer's churn risk away
    from the base rate (docs/http-api.md, "Reasons")."""

    code: str = Field(
        description="stable concept code (docs/feature-catalogue.md), e.g. purchase_recency"
    )
    text: str = Field(description="the reason in plain words, with the customer's value")
    feature: str = Field(description="the concept's feature the text is about")
    value: float | str | None = Field(description="the customer's value of that feature")
    direction: Literal["raises", "lowers"] = Field(
        description="raises: the customer is above the base rate and this pushes risk up; "
        "lowers: below it, and this pushes risk down"
    )
    percentile: float | None = Field(
        description="the customer's percentile (0-100) on the feature among scored customers"
    )
    share: float = Field(
        ge=0, le=1, description="share of the risk above (or below) the base rate it explains"
    )


class ScoredCustomer(BaseModel):
    """One customer's scores from the snapshot."""

    model_config = ConfigDict(json_schema_extra={"examples": [SCORED_EXAMPLE]})

    customer_id: str
    as_of: str = Field(description="scoring time (ISO-8601, UTC): features use events before it")
    status: Literal["active", "at_risk", "lapsed"] = Field(
        description="lapsed: no activity for far longer than usual; at_risk: in the high or "
        "medium band; active: the rest (docs/status.md)"
    )
    churn_probability: float = Field(ge=0, le=1, description="probability of churn in the horizon")
    churn_percentile: float | None = Field(
        description="share (0-100) of scored customers with a lower churn probability"
    )
    risk_band: Literal["low", "medium", "high"] = Field(
        description="high / medium / low: by default the top 10% / next 20% / rest of the "
        "scored customers (GET /v1/model, snapshot.risk_bands)"
    )
    previous_churn_probability: float | None = Field(
        description="churn probability in the previous kept snapshot; null for a new customer "
        "or the first snapshot (docs/http-api.md, snapshot history)"
    )
    change: float | None = Field(
        description="churn_probability - previous_churn_probability (> 0: risk rose)"
    )
    p_alive: float | None = Field(
        description="probability the customer is still active (purchase model); null where "
        "p_alive_note says why it would mislead"
    )
    p_alive_note: Literal["no_repeat_purchase", "no_dropout_model"] | None = Field(
        description="why p_alive is null: no_repeat_purchase (BG/NBD gives every customer "
        "without a repeat purchase 1.0), no_dropout_model (NBD: 1.0 for everyone)"
    )
    expected_purchases: float | None = Field(description="expected purchases over clv_horizon_days")
    expected_order_value: float | None = Field(description="expected spend per purchase")
    clv: float | None = Field(description="discounted expected spend over clv_horizon_days")
    clv_low: float | None = Field(description="lower end of the 80% interval of clv")
    clv_high: float | None = Field(description="upper end of the 80% interval of clv")
    clv_horizon_days: int = Field(description="days clv, clv_low and clv_high cover")
    discount_rate: float | None = Field(description="annual discount rate of clv and residual_clv")
    residual_clv: float | None = Field(
        description="discounted expected value of all future purchases (no horizon)"
    )
    value_at_risk: float | None = Field(description="churn_probability * clv")
    top_reasons: list[Reason]
    model_version: str = Field(description="registered model version that scored this customer")


class UnknownCustomer(BaseModel):
    """An id the snapshot does not hold: reported per item, the request still succeeds."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"customer_id": "C999999", "error": "unknown_customer"}]}
    )

    customer_id: str
    error: Literal["unknown_customer"]


class ScoresResponse(BaseModel):
    """Scores for the requested customers, in request order."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "results": [
                        SCORED_EXAMPLE,
                        {"customer_id": "C999999", "error": "unknown_customer"},
                    ],
                    "model_version": "3",
                }
            ]
        }
    )

    results: list[ScoredCustomer | UnknownCustomer]
    model_version: str = Field(description="model version of the snapshot answering")


class HealthResponse(BaseModel):
    """Liveness: the process answers."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    """Readiness: the model and the scored snapshot are loaded."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"status": "ready", "checks": {"model": "ok"}}]}
    )

    status: Literal["ready"] = "ready"
    checks: dict[str, str] = Field(description="per component: 'ok' or an error code")


class ErrorResponse(BaseModel):
    """Every error: a stable code to branch on and a message for people."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"error": "unauthorized", "message": "a valid API key is required"}]
        }
    )

    error: str
    message: str


class FieldError(BaseModel):
    """Where a request broke the schema, and how (the submitted value is never repeated)."""

    loc: list[str | int]
    message: str
    type: str


class ValidationErrorResponse(ErrorResponse):
    """A 422: the request does not match the schema."""

    details: list[FieldError]


# --- /v1/customers, /v1/at-risk ------------------------------------------------------------


class AtRiskResponse(BaseModel):
    """One page of the customers ranked by value at risk (highest first)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "total": 1,
                    "limit": 50,
                    "offset": 0,
                    "as_of": "2026-06-30T00:00:00Z",
                    "baseline_as_of": "2026-06-23T00:00:00Z",
                    "model_version": "3",
                    "results": [SCORED_EXAMPLE],
                }
            ]
        }
    )

    total: int = Field(ge=0, description="customers matching the filters, on all pages")
    limit: int = Field(ge=1)
    offset: int = Field(ge=0)
    as_of: str = Field(description="scoring time of the snapshot (ISO-8601, UTC)")
    baseline_as_of: str | None = Field(
        description="the kept snapshot 'change' is measured against: the previous one, or "
        "the one chosen by changed_since; null when there is none"
    )
    model_version: str = Field(description="model version of the snapshot answering")
    results: list[ScoredCustomer]


class HistoryEntry(BaseModel):
    """A customer's scores in one kept snapshot."""

    as_of: str = Field(description="scoring time of the snapshot (ISO-8601, UTC)")
    model_version: str
    churn_probability: float = Field(ge=0, le=1)
    risk_band: Literal["low", "medium", "high"]
    clv: float | None
    value_at_risk: float | None


class CustomerHistory(BaseModel):
    """A customer's scores in every kept snapshot that holds them, newest first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "C000123",
                    "snapshots": [
                        {
                            "as_of": "2026-06-30T00:00:00Z",
                            "model_version": "3",
                            "churn_probability": 0.42,
                            "risk_band": "medium",
                            "clv": 120.4,
                            "value_at_risk": 50.57,
                        }
                    ],
                }
            ]
        }
    )

    customer_id: str
    snapshots: list[HistoryEntry]


# --- /v1/model, /v1/admin/reload -------------------------------------------------------------


class FeatureInfo(BaseModel):
    """One input of the churn model."""

    name: str
    dtype: Literal["numeric", "categorical"]
    description: str
    categories: list[str] | None = Field(None, description="known levels of a categorical")


class SnapshotInfo(BaseModel):
    """The scored snapshot being served."""

    model_version: str
    as_of: str
    created_at: str
    customers: int
    horizon_days: int
    risk_bands: dict[str, Any] | None = Field(
        None,
        description="how the bands were drawn: mode (distribution or fixed), shares, "
        "probability thresholds and customers per band",
    )


class ModelResponse(BaseModel):
    """The model being served and where it came from."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "churn-clv",
                    "version": "3",
                    "loaded_at": "2026-07-01T08:00:00Z",
                    "horizon_days": 90,
                    "risk_thresholds": {"medium": 0.3, "high": 0.6},
                    "training": {"cutoffs": ["2026-03-01", "2026-04-01"]},
                    "metrics": {"auc": 0.81},
                    "clv_model": "learned",
                    "features": [
                        {
                            "name": "recency_days",
                            "dtype": "numeric",
                            "description": "days since the last purchase",
                            "categories": None,
                        }
                    ],
                    "snapshot": {
                        "model_version": "3",
                        "as_of": "2026-06-30T00:00:00Z",
                        "created_at": "2026-07-01T02:00:00Z",
                        "customers": 20000,
                        "horizon_days": 90,
                    },
                }
            ]
        }
    )

    name: str = Field(description="registered model name")
    version: str = Field(description="registered model version (the champion when loaded)")
    loaded_at: str = Field(description="when this server loaded it (ISO-8601, UTC)")
    horizon_days: int = Field(description="churn horizon the model was trained for, days")
    risk_thresholds: dict[str, float] = Field(description="churn probability of each band")
    training: dict[str, Any] = Field(description="training window, cutoffs and sizes")
    metrics: dict[str, Any] = Field(description="validation metrics recorded at training")
    features: list[FeatureInfo]
    snapshot: SnapshotInfo | None = Field(description="the scored snapshot, when loaded")
    clv_model: str | None = Field(
        None,
        description="which CLV model gives clv, clv_low, clv_high and expected_purchases: "
        "learned (the ranking model chosen at training, docs/clv.md), the BTYD model "
        "(bgnbd, pareto_nbd, mbgnbd, nbd) or sbg (contractual); null without a CLV model",
    )
    drivers: dict[str, Any] | None = Field(
        None,
        description="what drives churn here: observed churn by effort, value enhancement, "
        "elements of value, NPS class and unresolved contacts at the validation cutoff, with "
        "counts, 95% intervals and the research claims (docs/training.md); null for bundles "
        "trained before it existed",
    )


class ReloadResponse(BaseModel):
    """A reload that succeeded: what is served now."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "reloaded",
                    "previous_model_version": "2",
                    "model_version": "3",
                    "snapshot_model_version": "3",
                }
            ]
        }
    )

    status: Literal["reloaded"] = "reloaded"
    previous_model_version: str | None
    model_version: str
    snapshot_model_version: str


class ReloadFailedResponse(ErrorResponse):
    """A reload that failed: the old model keeps serving."""

    checks: dict[str, str]
    serving_model_version: str


# --- /v1/predict -----------------------------------------------------------------------------

#: Customer ids in posted histories: as in the input tables, without surrounding blanks (the
#: feature code strips them, which would make the answer's id differ from the request's).
PredictCustomerId = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=MAX_CUSTOMER_ID_LENGTH,
        pattern=r"^[^\x00-\x20\x7f](?:[^\x00-\x1f\x7f]*[^\x00-\x20\x7f])?$",
    ),
]
#: Timestamps are parsed by the feature code's validation (ISO-8601 or a date; naive = UTC):
#: a row it cannot read is quarantined and reported, not refused with the whole request.
Timestamp = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=64)]
#: Strict: JSON ``true`` or ``"5"`` is not a number here (the schema says number).
Number = Annotated[float, Field(allow_inf_nan=False, strict=True)]
Flag = Annotated[bool, Field(strict=True)]


def _text_only(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("expected an ISO-8601 string")
    return value


#: An ISO-8601 string (not a number of seconds, which pydantic would otherwise accept).
IsoDatetime = Annotated[datetime, BeforeValidator(_text_only)]
AttributeName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
]
AttributeValue = Annotated[str, StringConstraints(max_length=256)] | Number | Flag | None


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TransactionIn(_Row):
    """A purchase (or a refund, negative ``amount``)."""

    timestamp: Timestamp
    amount: Number


class InteractionIn(_Row):
    """A support ticket, call, chat, onboarding or education session, or usage event."""

    timestamp: Timestamp
    channel: Label
    interaction_type: Label
    effort_score: Number | None = Field(None, description="customer effort score, 1-7")
    csat: Number | None = Field(None, description="satisfaction, 1-5")
    resolved: Flag | None = None
    value_enhancement: Number | None = Field(
        None, description="1-7: after this interaction I can do more with the product"
    )


class SurveyIn(_Row):
    """One survey answer: an element of value (or ``nps``) scored 0-10."""

    timestamp: Timestamp
    element: Label
    score: Number


PREDICT_EXAMPLE: dict[str, Any] = {
    "customers": [
        {
            "customer_id": "C000123",
            "as_of": "2026-06-30T00:00:00Z",
            "signup_date": "2025-02-11",
            "attributes": {"plan": "pro", "region": "north"},
            "transactions": [
                {"timestamp": "2025-11-02T10:31:00Z", "amount": 54.0},
                {"timestamp": "2026-03-18T16:02:00Z", "amount": 61.5},
            ],
            "interactions": [
                {
                    "timestamp": "2026-05-04T09:00:00Z",
                    "channel": "phone",
                    "interaction_type": "support_ticket",
                    "effort_score": 6,
                    "csat": 2,
                    "resolved": False,
                }
            ],
            "surveys": [{"timestamp": "2026-04-01", "element": "saves_time", "score": 4}],
        }
    ]
}


#: Columns of the customers table that are not free attributes.
RESERVED_ATTRIBUTES = frozenset({"customer_id", "signup_date", "churn_date"})


class PredictCustomer(_Row):
    """One customer's raw history, in the columns of the input tables (docs/data-contract.md)."""

    customer_id: PredictCustomerId
    as_of: IsoDatetime | None = Field(
        None,
        # The year range the server accepts (pandas timestamps cover 1677-2262).
        json_schema_extra={"pattern": r"^(19\d\d|2[01]\d\d|2200)-"},
        description="scoring time (ISO-8601; naive = UTC): only events before it are used; "
        "default: now",
    )
    signup_date: Timestamp | None = None
    attributes: dict[AttributeName, AttributeValue] = Field(
        default_factory=dict,
        max_length=100,
        description="customer attribute columns (plan, region, ...) as in the customers table",
        # pydantic documents the key pattern as patternProperties, which still lets other
        # keys through in JSON Schema terms; say that only matching names are allowed.
        json_schema_extra={"additionalProperties": False},
    )
    transactions: list[TransactionIn] = Field(default_factory=list)
    interactions: list[InteractionIn] = Field(default_factory=list)
    surveys: list[SurveyIn] = Field(default_factory=list)

    @field_validator("as_of")
    @classmethod
    def _as_of_in_range(cls, value: datetime | None) -> datetime | None:
        # pandas timestamps (nanoseconds) cover 1677-2262; keep well inside.
        if value is not None and not 1900 <= value.year <= 2200:
            raise ValueError("as_of must be between the years 1900 and 2200")
        return value

    @field_validator("attributes")
    @classmethod
    def _no_reserved_attributes(cls, value: dict[str, Any]) -> dict[str, Any]:
        if RESERVED_ATTRIBUTES.intersection(value):
            raise ValueError(
                f"attribute names {sorted(RESERVED_ATTRIBUTES)} are reserved; "
                "send signup_date as its own field"
            )
        return value


class PredictRequest(BaseModel):
    """Customers' raw histories to compute features from and score."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [PREDICT_EXAMPLE]})

    customers: list[PredictCustomer] = Field(min_length=1)


def predict_request_model(max_customers: int, max_events: int) -> type[PredictRequest]:
    """:class:`PredictRequest` limited by the server's settings (shown in the OpenAPI schema)."""

    def events(kind: type[BaseModel]) -> Any:
        return (
            list[kind],  # type: ignore[valid-type]
            Field(default_factory=list, max_length=max_events),
        )

    customer = create_model(
        "PredictCustomer",
        __base__=PredictCustomer,
        __doc__=PredictCustomer.__doc__,
        transactions=events(TransactionIn),
        interactions=events(InteractionIn),
        surveys=events(SurveyIn),
    )
    return create_model(
        "PredictRequest",
        __base__=PredictRequest,
        __doc__=PredictRequest.__doc__,
        customers=(
            list[customer],  # type: ignore[valid-type]
            Field(
                min_length=1,
                max_length=max_customers,
                description=f"1 to {max_customers} customers, distinct ids",
            ),
        ),
    )


class QuarantinedRow(BaseModel):
    """A posted row the feature code's validation refused, and why (the row is not used)."""

    table: Literal["customers", "transactions", "interactions", "surveys"]
    index: int = Field(ge=0, description="position in the customer's list (0 for customers)")
    reason: str = Field(description="e.g. bad_timestamp, score_out_of_range, duplicate")


class PredictedCustomer(ScoredCustomer):
    """Scores computed from a posted history, and the rows that could not be used."""

    quarantined: list[QuarantinedRow]


class PredictResponse(BaseModel):
    """Scores for the posted customers, in request order."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "results": [
                        {
                            **SCORED_EXAMPLE,
                            "quarantined": [
                                {"table": "surveys", "index": 0, "reason": "unknown_element"}
                            ],
                        }
                    ],
                    "model_version": "3",
                }
            ]
        }
    )

    results: list[PredictedCustomer]
    model_version: str
