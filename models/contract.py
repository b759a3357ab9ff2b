"""The names training writes and serving reads, in one place (docs/ describes the formats).

Training (``make train``, ``make score``) produces two things the server consumes: registered
model versions in the MLflow registry and the scored snapshot in the scores folder. Both sides
import the names below, so a rename is one edit and cannot leave the two halves disagreeing.

- **Registry**: a version's files are a :mod:`models.bundle` folder; its registry tag
  :data:`MANIFEST_TAG` holds the sha256 of the bundle's ``manifest.json``; the version being
  served holds the alias :data:`CHAMPION_ALIAS` (the default of the ``model_alias`` setting).
- **Snapshot**: one folder per scored ``as_of``, ``<scores_dir>/`` :data:`HISTORY_DIR` ``/<as_of>/``,
  holding :data:`SNAPSHOT_FILE` (one row per customer, the columns :data:`SCORE_FIELDS`, plus
  an optional :data:`SEGMENT_FIELD` and the customer attributes named in the meta) and
  :data:`SNAPSHOT_META_FILE` (the keys :data:`SNAPSHOT_META_KEYS`, ``sha256`` being the digest
  of the Parquet bytes); ``<scores_dir>/`` :data:`LATEST_FILE` names the newest folder
  (:mod:`models.history`, docs/http-api.md "Snapshot history").
"""

from __future__ import annotations

from features.status import STATUSES

# -- registry ------------------------------------------------------------------------------

#: Registry tag holding the sha256 of a version's ``manifest.json`` (set at registration;
#: a reader refuses a version without it).
MANIFEST_TAG = "manifest_sha256"
#: Registry alias of the version in production (promoted by training, served by the server).
CHAMPION_ALIAS = "champion"

# -- scored snapshot -----------------------------------------------------------------------

#: One row per scored customer.
SNAPSHOT_FILE = "snapshot.parquet"
#: Model version, ``as_of``, row count and the Parquet file's sha256.
SNAPSHOT_META_FILE = "snapshot.json"
#: Keys every ``snapshot.json`` has (``created_at`` is written too, and optional to readers).
SNAPSHOT_META_KEYS = ("model_version", "as_of", "rows", "sha256", "horizon_days")
#: Sub-folder of the scores folder with one folder per kept snapshot, named by its ``as_of``.
HISTORY_DIR = "history"
#: Pointer to the newest kept snapshot (``{"path": "history/<as_of>", "as_of": ...}``),
#: replaced atomically after the snapshot's folder is complete.
LATEST_FILE = "latest.json"
#: Optional ``snapshot.json`` keys: the ``as_of`` of the snapshot ``change`` is measured
#: against, and the customer attribute columns the Parquet file carries.
PREVIOUS_AS_OF_KEY = "previous_as_of"
ATTRIBUTES_KEY = "attributes"

#: The fields of one scored customer, in the order the API returns them.
SCORE_FIELDS = (
    "customer_id",
    "as_of",
    "status",
    "churn_probability",
    "churn_percentile",
    "risk_band",
    "previous_churn_probability",
    "change",
    "p_alive",
    "p_alive_note",
    "expected_purchases",
    "expected_order_value",
    "clv",
    "clv_low",
    "clv_high",
    "clv_horizon_days",
    "discount_rate",
    "residual_clv",
    "value_at_risk",
    "top_reasons",
    "model_version",
)
#: Model outputs that are missing (JSON null) when the CLV model could not compute them.
OPTIONAL_SCORE_FIELDS = (
    "p_alive",
    "expected_purchases",
    "expected_order_value",
    "clv",
    "clv_low",
    "clv_high",
    "discount_rate",
    "residual_clv",
    "value_at_risk",
)
#: Fields against the previous kept snapshot: null for a new customer or the first snapshot,
#: and absent from snapshots written before history was kept (read as null).
CHANGE_FIELDS = ("previous_churn_probability", "change")
#: Why ``p_alive`` is null where the purchase model would give a misleading value
#: (docs/clv.md, "P(alive)"); null when ``p_alive`` is given.
P_ALIVE_NOTES = ("no_repeat_purchase", "no_dropout_model")
#: CLV horizon (``clv_horizon_days``) when none is set: a year, apart from the churn horizon.
DEFAULT_CLV_HORIZON_DAYS = 365
#: Risk bands, lowest first.
RISK_BANDS = ("low", "medium", "high")
#: Customer statuses (features/status.py, docs/status.md).
CUSTOMER_STATUSES = STATUSES
#: The keys of each entry of ``top_reasons`` (models/reasons.py, docs/http-api.md).
REASON_KEYS = ("code", "text", "feature", "value", "direction", "percentile", "share")
#: ``direction`` of a reason: it raises or lowers the customer's risk against the base rate.
REASON_DIRECTIONS = ("raises", "lowers")
#: Optional ``snapshot.json`` keys: the risk bands (mode, thresholds, counts) and the
#: reference distribution ``/v1/predict`` places customers against (models/distribution.py).
SNAPSHOT_BANDS_KEY = "risk_bands"
SNAPSHOT_REFERENCE_KEY = "reference"
#: Optional snapshot column: a CRM segment (the ``segment`` filter of ``/v1/at-risk``); not
#: part of a scored customer.
SEGMENT_FIELD = "segment"
#: Optional snapshot column: the customer's recent activity as a JSON object of feature ->
#: value at the snapshot's ``as_of`` (last purchase, contacts with effort and CSAT, open
#: tickets, survey answers), for the workspace's customer page; not part of a scored customer.
ACTIVITY_FIELD = "activity"
#: The features :data:`ACTIVITY_FIELD` holds, in the order the customer page lists them (those
#: the feature frame lacks, or that are missing for the customer, are left out).
ACTIVITY_FEATURES = (
    "days_since_last_purchase",
    "purchases_365d",
    "spend_90d",
    "days_since_last_interaction",
    "interactions_90d",
    "effort_score_last",
    "effort_score_mean_90d",
    "csat_last",
    "csat_mean_90d",
    "unresolved_90d",
    "complaints_90d",
    "days_since_last_complaint",
    "days_since_last_survey",
    "elements_high_count",
    "nps_last",
)

# -- monitoring (make monitor, docs/monitoring.md) ------------------------------------------

#: Sub-folder of the scores folder ``make monitor`` writes into: :data:`MONITORING_FILE`
#: (every snapshot's figures, the alerts and a ``summary`` the server's gauges read) and
#: :data:`MONITORING_REPORT` (the HTML report).
MONITORING_DIR = "monitoring"
MONITORING_FILE = "latest.json"
MONITORING_REPORT = "report.html"
#: Keys of the ``summary`` object of :data:`MONITORING_FILE` (null when not known yet).
MONITORING_SUMMARY_KEYS = (
    "model_version",
    "realized_auc",
    "realized_as_of",
    "realized_model_version",
    "estimated_auc",
    "estimated_as_of",
    "estimated_model_version",
    "psi_max",
    "missing_change_max",
    "alerts",
)
