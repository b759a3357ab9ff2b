"""Request and response bodies of the HTTP API (CONTRACT.md section 4), with examples.

These models are the API's documentation (the OpenAPI page at ``/docs`` is generated from
them) and validate requests. Score responses are pre-encoded from the snapshot rather than
validated here on every request, so the snapshot loader checks the same constraints once.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

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
    "churn_probability": 0.42,
    "risk_band": "medium",
    "p_alive": 0.61,
    "expected_purchases": 2.3,
    "expected_order_value": 53.1,
    "clv": 120.4,
    "value_at_risk": 50.57,
    "top_reasons": [
        {
            "feature": "effort_score_mean_90d",
            "description": "mean customer effort score, last 90 days",
            "value": 5.2,
            "contribution": 0.31,
        }
    ],
    "model_version": "3",
}


class ScoresRequest(BaseModel):
    """Customers to look up in the latest scored snapshot."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"customer_ids": ["C000123", "C000456"]}]}
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
    """A feature that pushes this customer's churn risk up."""

    feature: str = Field(description="feature name (see docs/feature-catalogue.md)")
    description: str = Field(description="what the feature measures, in words")
    value: float | str | None = Field(description="the customer's value of the feature")
    contribution: float = Field(description="SHAP contribution to the churn log-odds (> 0)")


class ScoredCustomer(BaseModel):
    """One customer's scores from the snapshot."""

    model_config = ConfigDict(json_schema_extra={"examples": [SCORED_EXAMPLE]})

    customer_id: str
    as_of: str = Field(description="scoring time (ISO-8601, UTC): features use events before it")
    churn_probability: float = Field(ge=0, le=1, description="probability of churn in the horizon")
    risk_band: Literal["low", "medium", "high"]
    p_alive: float | None = Field(description="BG/NBD probability the customer is still active")
    expected_purchases: float | None = Field(description="expected purchases over the horizon")
    expected_order_value: float | None = Field(description="expected spend per purchase")
    clv: float | None = Field(description="discounted expected spend over the horizon")
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
