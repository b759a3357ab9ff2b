"""Scores from a bundle and a feature frame: the one implementation behind batch scoring and
the server's on-demand predictions.

Output per customer (:data:`models.contract.SCORE_FIELDS`, docs/http-api.md): ``status``
(active / at_risk / lapsed, features/status.py), ``churn_probability``, ``churn_percentile``
and ``risk_band`` (among the scored customers of a :class:`models.distribution.Reference`),
``p_alive`` (with ``p_alive_note``: why it is null where it would mislead),
``expected_purchases``, ``expected_order_value``, ``clv`` (discounted, over
``clv_horizon_days``, default a year, separate from the churn horizon), ``clv_low`` /
``clv_high`` (80% interval), ``discount_rate`` and ``residual_clv`` (docs/clv.md; for a
contractual model: recurring revenue x expected renewals, ``models/contractual.py``),
``value_at_risk = churn_probability * clv`` and ``top_reasons``: the concepts that push this
customer's churn risk above (or below) the base rate most, in plain words (models/reasons.py).

When the bundle holds the learned ranking CLV (``bundle.clv_model == "learned"``), ``clv``,
``clv_low``, ``clv_high``, ``residual_clv`` and ``expected_purchases`` (so ``value_at_risk``)
carry its per-customer level over the same ``clv_horizon_days``
(:func:`models.clv_learned.learned_scores`); ``p_alive`` and ``expected_order_value`` stay
the BTYD model's.

Batch scoring takes the scored customers as their own reference (:func:`score_population`);
``/v1/predict`` passes the reference stored with the served snapshot (:func:`score_columns`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd

from features.status import customer_status, is_lapsed
from models.bundle import Bundle
from models.clv_features import clv_feature_columns
from models.clv_learned import learned_scores
from models.contract import (
    DEFAULT_CLV_HORIZON_DAYS,
    OPTIONAL_SCORE_FIELDS,
    RISK_BANDS,
    SCORE_FIELDS,
)
from models.contractual import TENURE_COLUMN, ContractualCLV
from models.distribution import BandRule, Reference, percentile, risk_band
from models.reasons import base_offset, explain

DEFAULT_THRESHOLDS = {"medium": 0.3, "high": 0.6}
#: Bands whose customers are ``at_risk`` unless lapsed (features/status.py).
AT_RISK_BANDS = RISK_BANDS[1:]
#: Fewest customers who are not lapsed for them alone to be the reference of a population;
#: with fewer, every scored customer is.
MIN_REFERENCE_CUSTOMERS = 30
#: Up to this many rows the CLV inputs are read from the churn model's encoded matrix (the
#: same values): a pandas column look-up costs tens of microseconds, more than copying a
#: matrix column of a few rows; for a million rows the strided copy costs more (~30 ms a
#: column) than the frame's contiguous one.
MATRIX_INPUT_ROWS = 64


class _WithColumns(Mapping[str, Any]):
    """A feature frame with some columns added or replaced, without copying the frame
    (``frame.assign`` costs a fifth of a millisecond for one customer).

    ``numeric`` (name -> column of ``matrix``) are the frame's numeric model features, whose
    float values the model's encoded ``matrix`` already holds: they are read from it (a NumPy
    column, the values ``frame[name].to_numpy(float)`` gives), not through pandas, whose
    per-column look-up costs tens of microseconds, for a customer's status and reasons
    about twenty times."""

    def __init__(
        self,
        frame: pd.DataFrame,
        extra: dict[str, np.ndarray],
        matrix: np.ndarray | None = None,
        numeric: dict[str, int] | None = None,
    ) -> None:
        self.frame, self.extra = frame, extra
        self.matrix, self.numeric = matrix, numeric or {}

    def __getitem__(self, name: str) -> Any:
        if name in self.extra:
            return self.extra[name]
        if self.matrix is not None and name in self.numeric:
            return self.matrix[:, self.numeric[name]]
        return self.frame[name]

    def __contains__(self, name: object) -> bool:
        return name in self.extra or name in self.frame.columns

    def __iter__(self) -> Iterator[str]:
        return iter([*self.frame.columns.difference(list(self.extra), sort=False), *self.extra])

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _numeric(frame: Mapping[str, Any], features: list[str], n: int) -> dict[str, np.ndarray]:
    """The model's numeric features of ``frame`` as float arrays (for the reference)."""
    out = {}
    for name in features:
        if name not in frame:
            continue
        values = frame[name]
        series = values if isinstance(values, pd.Series) else pd.Series(values)
        if pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
            out[name] = series.to_numpy(dtype=float, na_value=np.nan)
    return out


def fixed_thresholds(bundle: Bundle) -> dict[str, float]:
    """The bundle's probability thresholds (fixed band mode; settings at training)."""
    return dict(bundle.meta.get("risk_thresholds", DEFAULT_THRESHOLDS))


def _fallback_base_rate(bundle: Bundle) -> float:
    """Without a reference: the validation churn rate recorded at training, else 0.5."""
    rate = bundle.meta.get("metrics", {}).get("valid.churn_rate")
    return float(rate) if rate is not None else 0.5


def _score(
    bundle: Bundle,
    frame: pd.DataFrame,
    *,
    horizon_days: int | None,
    clv_horizon_days: int | None,
    reasons: int,
    reference: Reference | None,
    rule: BandRule | None,
) -> tuple[dict[str, Any], Reference | None]:
    """The score columns, and the reference they were placed against: ``reference``, or
    with ``rule`` one built from this frame (the scored population). ``clv_horizon_days``
    (default :data:`~models.contract.DEFAULT_CLV_HORIZON_DAYS`; ``horizon_days`` is read when it
    is not given) is the horizon of ``clv``, ``clv_low`` and ``clv_high``; the churn probability
    is always over the horizon the model was trained for."""
    model_horizon = int(bundle.meta["horizon_days"])
    horizon = int(clv_horizon_days or horizon_days or DEFAULT_CLV_HORIZON_DAYS)
    clv: pd.DataFrame | Mapping[str, Any] | None = None
    value: pd.DataFrame | Mapping[str, Any] | None = None
    extra: dict[str, np.ndarray] = {}
    # encoded first: for a few customers the CLV inputs among the model's float features
    # are read from the matrix (:data:`MATRIX_INPUT_ROWS`); the BTYD features are written in
    # below, once computed
    matrix, floats = bundle.churn.encode_with_floats(frame)
    if isinstance(bundle.clv, ContractualCLV):
        # a subscription: recurring revenue x expected residual lifetime, no churn features
        if TENURE_COLUMN in frame.columns:
            clv = bundle.clv.predict(frame, horizon_days=horizon)
            lifetime = bundle.clv.predict(frame, horizon_days=None)
            # no purchase-count distribution: no interval; p_alive is what the contract says
            value = pd.DataFrame(
                {
                    "p_alive": np.nan,
                    "p_alive_note": None,
                    "clv_low": np.nan,
                    "clv_high": np.nan,
                    "residual_clv": lifetime["clv"].to_numpy(),
                },
                index=frame.index,
            )
    elif bundle.clv is not None and "frequency" in frame.columns:
        # The churn model's BG/NBD features are over the horizon it was trained for; the CLV
        # outputs are over the CLV horizon. The BTYD model reads only the RFM summary
        # columns: read from the frame once, as arrays (no frames built: for one customer
        # pandas' overhead is most of the cost of these calls)
        # (a few customers: from the encoded matrix, no pandas column look-up; many: from the
        # frame, whose columns are contiguous where the matrix's are strided)
        few = len(frame) <= MATRIX_INPUT_ROWS
        inputs = bundle.clv.inputs(_WithColumns(frame, {}, matrix, floats) if few else frame)
        clv = bundle.clv.predict_columns(inputs, horizon_days=horizon)
        # the features over the model's horizon: the count columns alone (predict's values)
        # unless that is the CLV horizon
        counts = (
            clv
            if horizon == model_horizon
            else bundle.clv.count_columns(inputs, horizon_days=model_horizon)
        )
        extra = clv_feature_columns(counts)
        value = bundle.clv.value_columns(inputs, clv, horizon_days=horizon)
        if bundle.clv_learned is not None:
            # the learned ranking CLV serves: its level per customer, the BTYD time profile
            # and P(alive) (docs/clv.md, "Which CLV model serves"); it may read the BTYD
            # features too (a copy of the frame: skipped without it)
            added = horizon != model_horizon
            summary = frame.assign(**extra) if added else frame
            clv, value = learned_scores(
                bundle.clv_learned,
                bundle.clv,
                summary,
                pd.DataFrame(clv, index=frame.index),
                pd.DataFrame(value, index=frame.index),
                horizon_days=horizon,
            )
    features = bundle.churn.features_
    for name, values in extra.items():  # float64 already: what encode would make of them
        if name in features:
            matrix[:, features.index(name)] = values
    # one LightGBM call for the probability and the reasons' contributions
    prob, contributions = bundle.churn.proba_and_contributions(matrix)
    view = _WithColumns(frame, extra, matrix, floats)
    if reference is None and rule is not None:
        # The reference is the customers who can still be kept: where most of the riskiest
        # customers are long gone (CDNOW: every customer of the top 30%), bands over everyone
        # would leave the worklist empty. Lapsed customers are then placed against it too.
        keep = ~is_lapsed(view, n=len(frame))
        if keep.sum() < MIN_REFERENCE_CUSTOMERS:
            keep = np.ones(len(frame), dtype=bool)
        numeric = {k: v[keep] for k, v in _numeric(view, features, len(frame)).items()}
        reference = Reference.of(prob[keep], numeric, rule, fixed_thresholds(bundle))
    thresholds = reference.thresholds if reference is not None else fixed_thresholds(bundle)
    band = risk_band(prob, thresholds)
    columns: dict[str, Any] = {
        "status": customer_status(view, np.isin(band, AT_RISK_BANDS), n=len(frame)),
        "churn_probability": prob,
        "churn_percentile": percentile(
            prob, reference.churn_grid if reference is not None else None
        ),
        "risk_band": band,
    }
    if clv is not None and value is not None and bundle.clv is not None:
        # SCORE_FIELDS order; p_alive as shown (null where it would mislead, with the note)
        # frames (contractual, learned CLV) or arrays (BTYD): NumPy arrays either way
        columns["p_alive"] = np.asarray(value["p_alive"])
        columns["p_alive_note"] = np.asarray(value["p_alive_note"], dtype=object)
        for col in ("expected_purchases", "expected_order_value", "clv"):
            columns[col] = np.asarray(clv[col])
        columns["clv_low"] = np.asarray(value["clv_low"])
        columns["clv_high"] = np.asarray(value["clv_high"])
        columns["clv_horizon_days"] = np.full(len(frame), horizon, dtype=np.int64)
        columns["discount_rate"] = np.full(len(frame), float(bundle.clv.annual_discount_rate))
        columns["residual_clv"] = np.asarray(value["residual_clv"])
        columns["value_at_risk"] = prob * columns["clv"]
    else:
        for col in OPTIONAL_SCORE_FIELDS:
            columns[col] = np.full(len(frame), np.nan)
        columns["p_alive_note"] = np.full(len(frame), None, dtype=object)
        columns["clv_horizon_days"] = np.full(len(frame), horizon, dtype=np.int64)
        columns = {f: columns[f] for f in SCORE_FIELDS if f in columns}
    base_rate = reference.base_rate if reference is not None else _fallback_base_rate(bundle)
    columns["top_reasons"] = explain(
        view,
        contributions,
        features,
        offset=base_offset(bundle.churn, base_rate),
        feature_grids=reference.feature_grids if reference is not None else {},
        k=reasons,
    )
    return columns, reference


def score_columns(
    bundle: Bundle,
    frame: pd.DataFrame,
    *,
    horizon_days: int | None = None,
    reasons: int = 3,
    reference: Reference | None = None,
    clv_horizon_days: int | None = None,
) -> dict[str, Any]:
    """:func:`score_frame`'s columns (arrays, ``top_reasons`` a list), in its column order,
    for callers that want plain values (the server's ``/v1/predict``). Percentiles and bands
    are against ``reference`` (the served snapshot's); without one, percentiles are missing,
    bands use the bundle's fixed thresholds and reasons the validation churn rate."""
    columns, _ = _score(
        bundle,
        frame,
        horizon_days=horizon_days,
        clv_horizon_days=clv_horizon_days,
        reasons=reasons,
        reference=reference,
        rule=None,
    )
    return columns


def score_frame(
    bundle: Bundle,
    frame: pd.DataFrame,
    *,
    horizon_days: int | None = None,
    reasons: int = 3,
    reference: Reference | None = None,
    clv_horizon_days: int | None = None,
) -> pd.DataFrame:
    """Churn and CLV scores for every row of a feature frame (index ``customer_id``),
    placed against ``reference`` as in :func:`score_columns`; the CLV columns over
    ``clv_horizon_days``."""
    # One frame built at the end, not column by column (pandas' overhead per column is most
    # of the time for the one customer of a ``/v1/predict``).
    columns = score_columns(
        bundle,
        frame,
        horizon_days=horizon_days,
        reasons=reasons,
        reference=reference,
        clv_horizon_days=clv_horizon_days,
    )
    return pd.DataFrame(columns, index=frame.index)


def score_population(
    bundle: Bundle,
    frame: pd.DataFrame,
    *,
    rule: BandRule,
    horizon_days: int | None = None,
    reasons: int = 3,
    clv_horizon_days: int | None = None,
) -> tuple[pd.DataFrame, Reference]:
    """Scores of every customer of ``frame`` placed among themselves (batch scoring): the
    reference (percentile grids, base rate, band thresholds by ``rule``) is built from this
    population and returned, to be stored with the snapshot."""
    columns, reference = _score(
        bundle,
        frame,
        horizon_days=horizon_days,
        clv_horizon_days=clv_horizon_days,
        reasons=reasons,
        reference=None,
        rule=rule,
    )
    assert reference is not None  # built from the frame when a rule is given
    return pd.DataFrame(columns, index=frame.index), reference
