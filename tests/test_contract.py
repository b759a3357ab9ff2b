"""The training/serving contract (models/contract.py) is the one both sides and the API use."""

from __future__ import annotations

import typing

from models import contract
from serving.schemas import Reason, ScoredCustomer


def test_api_schema_has_the_contracts_score_fields_in_order() -> None:
    assert tuple(ScoredCustomer.model_fields) == contract.SCORE_FIELDS


def test_api_schema_has_the_contracts_risk_bands_and_reason_keys() -> None:
    band = ScoredCustomer.model_fields["risk_band"].annotation

    assert typing.get_args(band) == contract.RISK_BANDS
    assert tuple(Reason.model_fields) == contract.REASON_KEYS
    status = ScoredCustomer.model_fields["status"].annotation
    assert typing.get_args(status) == contract.CUSTOMER_STATUSES
    direction = Reason.model_fields["direction"].annotation
    assert typing.get_args(direction) == contract.REASON_DIRECTIONS


def test_optional_fields_are_score_fields_and_nullable_in_the_api() -> None:
    assert set(contract.OPTIONAL_SCORE_FIELDS) <= set(contract.SCORE_FIELDS)
    for name in contract.OPTIONAL_SCORE_FIELDS:
        annotation = ScoredCustomer.model_fields[name].annotation
        assert type(None) in typing.get_args(annotation), name


def test_the_meta_keys_name_the_snapshot_digest() -> None:
    assert "sha256" in contract.SNAPSHOT_META_KEYS
    assert contract.SNAPSHOT_FILE != contract.SNAPSHOT_META_FILE
