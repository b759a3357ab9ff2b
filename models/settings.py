"""Every setting of the project: a shared base and one section per side.

Each setting is read from the environment variable ``CHURN_<NAME>`` (``CHURN_PORT=8080``) or
from a ``.env`` file in the working directory; environment variables win over the file, and
command-line flags (``python -m training --horizon 60``) win over both. The MLflow tracking URI
is also read under MLflow's own name, ``MLFLOW_TRACKING_URI``, so one variable points training,
scoring and serving at the same tracking server (``CHURN_MLFLOW_TRACKING_URI`` wins when both
are set). Relative paths are relative to the working directory (the project root when started
through the Makefile). ``.env.example`` lists every variable with its default.

- :class:`CommonSettings`: what both sides read (the registry, the model's name and alias, the
  scores folder);
- :class:`TrainSettings`: ``python -m training`` (data, training, scoring, the Dask engine);
- :class:`ServeSettings`: ``python -m serving`` (listening address, limits, caches).

A new setting goes into the section of the side that reads it, or into the base when both do.

The ``.env`` file and the environment are shared by both sides, so a variable of the other
side is fine, but a ``CHURN_*`` name no section declares is an error (:class:`SettingsError`)
naming the closest real one: a misspelt ``CHURN_HORIZON_DAY`` would otherwise be ignored in
silence and the default used.

This module lives in ``models/`` because training and serving never import each other; it reads
only the environment and the ``.env`` file.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from models.contract import CHAMPION_ALIAS, DEFAULT_CLV_HORIZON_DAYS

PREFIX = "CHURN_"
#: Names read before every setting had the prefix: reported when found in a ``.env`` file (in
#: the environment they are the Makefile's own variables, passed on as flags).
RENAMED = {"ENGINE": "CHURN_ENGINE", "DASK_SCHEDULER": "CHURN_DASK_SCHEDULER"}


class SettingsError(ValueError):
    """A setting is unknown or has an invalid value; the message is one line naming it."""


class CommonSettings(BaseSettings):
    """What training, scoring and serving all read; one default each."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        # Unknown CHURN_* names are reported by ``settings_customise_sources``; other keys of
        # the .env file belong to other tools.
        extra="ignore",
        # Field names such as ``model_name`` are ours, not pydantic's ``model_*`` methods.
        protected_namespaces=(),
    )

    mlflow_tracking_uri: str = Field(
        "sqlite:///mlflow.db",
        validation_alias=AliasChoices("CHURN_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"),
        description="MLflow tracking (and registry) URI: runs, versions and the champion",
    )
    model_name: str = Field("churn-clv", min_length=1, description="registered model name")
    model_alias: str = Field(
        CHAMPION_ALIAS,
        min_length=1,
        description="registry alias training promotes and the server serves",
    )
    scores_dir: Path = Field(
        Path("var/scores"), description="folder of the scored snapshot (written by make score)"
    )
    # -- snapshot history ----------------------------------------------------------------------
    #: Scored snapshots kept in ``<scores_dir>/history`` (one per ``as_of``; make score removes
    #: older ones); the server loads them all for ``/v1/customers/{id}/history``.
    keep_snapshots: int = Field(12, ge=1, le=520)
    # -- CLV horizon -------------------------------------------------------------------------
    clv_horizon_days: int = Field(
        DEFAULT_CLV_HORIZON_DAYS,
        ge=1,
        le=36500,
        description="days the clv, clv_low and clv_high of a score cover (make score, /v1/predict)",
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(_one_line(exc)) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Called on every instantiation, with the environment and the .env file loaded: the
        # one place that sees every name before the values are validated.
        check_names(
            getattr(env_settings, "env_vars", {}),
            getattr(dotenv_settings, "env_vars", {}),
            env_file=getattr(dotenv_settings, "env_file", None),
        )
        return init_settings, env_settings, dotenv_settings, file_secret_settings


class TrainSettings(CommonSettings):
    """What ``make data``, ``make train``, ``make score`` and ``make features`` read."""

    # -- data --------------------------------------------------------------------------------
    data_dir: Path = Path("data/demo")
    #: TOML column map (user column = canonical column, per table); default:
    #: ``<data_dir>/columns.toml`` when it exists (training/io.py).
    column_map: Path | None = None
    quarantine_dir: Path = Path("var/quarantine")
    #: Events (and signup dates, label ``as_of``) later than the wall clock plus this many
    #: minutes are quarantined as in the future (docs/data-contract.md); the slack is for
    #: clocks of the exporting systems that run ahead.
    clock_skew_minutes: int = Field(15, ge=0, le=7 * 24 * 60)
    # -- training ----------------------------------------------------------------------------
    horizon_days: int = Field(90, ge=1, le=3650)
    #: Scoring time (ISO-8601); default: midnight after the newest event.
    as_of: str | None = None
    #: Artifact folder for a newly created experiment (local stores only).
    mlflow_artifact_root: Path = Path("mlartifacts")
    experiment_name: str = "churn-clv"
    #: Training cutoffs before the validation cutoff, and their spacing in days.
    n_training_cutoffs: int = Field(4, ge=1, le=52)
    cutoff_spacing_days: int = Field(30, ge=1)
    #: A new model is promoted if its validation ROC-AUC is at least the champion's minus this.
    gate_tolerance: float = Field(0.005, ge=0)
    force_promote: bool = False
    seed: int = 7
    # -- scoring -----------------------------------------------------------------------------
    #: Calibrated churn probability at which a customer is in the medium / high risk band.
    risk_medium: float = Field(0.3, gt=0, lt=1)
    risk_high: float = Field(0.6, gt=0, lt=1)
    #: Customer attribute written as ``segment`` in the scored snapshot (the ``segment`` filter
    #: of ``/v1/at-risk``); default: the ``segment`` column, else ``plan``, when present.
    segment_column: str | None = None
    # -- engine ------------------------------------------------------------------------------
    #: ``local`` (pandas in this process) or ``dask`` (training/dask_engine.py).
    engine: Literal["local", "dask"] = "local"
    #: Address of a running Dask scheduler (``tcp://host:8786``); default with ``engine=dask``:
    #: a local cluster of ``dask_workers`` worker processes.
    dask_scheduler: str | None = None
    dask_workers: int = Field(2, ge=1)
    #: Customer partitions (each customer's rows in one); 0: about 100,000 customers each.
    dask_partitions: int = Field(0, ge=0)
    #: Where the Dask engine stages validated, co-partitioned tables and scored parts.
    dask_work_dir: Path = Path("var/dask")
    # -- hand-off: snapshot attributes, export, webhook (docs/make-targets.md) ------------------
    #: Customer attributes copied into the snapshot for CSV / export / webhook rows, comma
    #: separated; default: ``plan``, ``region`` and ``signup_date`` when the table has them.
    snapshot_attributes: str | None = None
    #: Folder ``make export`` writes ``worklist.csv`` and ``worklist.jsonl`` into.
    export_dir: Path = Path("var/export")
    #: Webhook ``make notify`` POSTs each new snapshot's risers to, and the shared secret of
    #: the ``X-Churn-Signature`` HMAC-SHA256 header (never logged).
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    #: A riser: churn probability up by at least this much since the previous snapshot.
    notify_min_change: float = Field(0.1, gt=0, le=1)
    #: Risers per delivery (a bigger list is split, one idempotency key per delivery).
    notify_batch_size: int = Field(500, ge=1, le=100_000)
    #: Attempts per delivery, first wait between them (doubled each time, capped), timeout.
    notify_max_attempts: int = Field(5, ge=1, le=20)
    notify_backoff_seconds: float = Field(1.0, ge=0, le=60)
    notify_backoff_max_seconds: float = Field(30.0, ge=0, le=600)
    notify_timeout_seconds: float = Field(10.0, gt=0, le=300)
    #: JSON Lines log of deliveries: a snapshot delivered once is not delivered again.
    notify_log: Path = Path("var/notify/deliveries.jsonl")
    # -- risk bands (models/distribution.py, docs/http-api.md "Relative risk") ---------------
    #: ``distribution``: bands from the scored customers' churn probabilities (the top
    #: ``risk_high_share`` high, the next ``risk_medium_share`` medium); ``fixed``: the
    #: ``risk_medium`` / ``risk_high`` probability thresholds.
    risk_band_mode: Literal["distribution", "fixed"] = "distribution"
    risk_high_share: float = Field(0.10, gt=0, lt=1)
    risk_medium_share: float = Field(0.20, ge=0, lt=1)
    # -- contractual CLV (customers' tenure_periods and recurring_revenue, docs/clv.md) --------
    #: Length of one contract period in days (default one month: 365.2425 / 12 = 30.4375).
    contract_period_days: float = Field(30.4375, gt=0, le=3660)
    #: Customer attribute (e.g. ``contract``) whose values get their own sBG retention fit;
    #: unset: one fit for everybody.
    contract_segment_column: str | None = None
    # -- monitoring (make monitor, docs/monitoring.md: one threshold per check) ---------------
    #: Worklist places whose value actually lost is reported (the top N of /v1/at-risk).
    monitor_top_n: int = Field(100, ge=1, le=1_000_000)
    #: Realized (labels known) or estimated ROC-AUC this far below the champion's validation
    #: ROC-AUC alerts; so does an ECE above ``monitor_ece_max``.
    monitor_auc_drop: float = Field(0.05, gt=0, lt=1)
    monitor_estimated_auc_drop: float = Field(0.05, gt=0, lt=1)
    monitor_ece_max: float = Field(0.1, gt=0, lt=1)
    #: PSI of a feature above this alerts (0.1-0.2 moderate, above 0.2 significant).
    monitor_psi_max: float = Field(0.2, gt=0)
    #: ... and only when a shift that large is unlikely from sampling alone: chi-square
    #: p-value below this family-wise level divided by the snapshot's number of PSI tests
    #: (Bonferroni; a segment of a few dozen rows has a PSI near 1 with no shift at all).
    monitor_psi_p_value: float = Field(0.05, gt=0, le=1)
    #: A feature's missing rate, or one category's share, changed by more than this alerts.
    monitor_missing_change: float = Field(0.1, gt=0, le=1)
    monitor_share_change: float = Field(0.1, gt=0, le=1)
    #: Rows per day of an input table (4 weeks before ``as_of``) changed by more than this
    #: fraction of the reference's alerts; so does a quarantine rate per reason this much above.
    monitor_rows_change: float = Field(0.5, gt=0)
    monitor_quarantine_rate: float = Field(0.01, gt=0, le=1)
    #: Features left out of the drift alerts (shown in the report): time since a fixed date,
    #: which grows with the calendar in any customer base that is not renewed at a steady rate.
    monitor_drift_ignore: str = "tenure_days,T_days"
    # -- retrain loop (make retrain, docs/monitoring.md "The retrain loop") --------------------
    #: Base URL of the running server ``make retrain`` reloads after scoring
    #: (``http://127.0.0.1:8000``); unset: no reload (one log line says so).
    server_url: str | None = None
    #: File whose first line is an admin-scope API key (``make api-key NAME=retrain ADMIN=1``),
    #: or the key itself in ``CHURN_ADMIN_KEY`` (never logged); needed with ``server_url``.
    admin_key_file: Path | None = None
    admin_key: SecretStr | None = None
    reload_timeout_seconds: float = Field(120.0, gt=0, le=3600)
    #: The lock two runs of ``make retrain`` never hold at once (``flock``, non-blocking).
    retrain_lock: Path = Path("var/retrain.lock")


class ServeSettings(CommonSettings):
    """What the HTTP server (``python -m serving``) and its key tool read."""

    host: str = Field("127.0.0.1", description="interface to listen on")
    port: int = Field(8000, ge=1, le=65535, description="TCP port to listen on")
    api_keys_file: Path = Field(
        Path("var/api_keys.json"), description="API-key store (hashes only)"
    )
    max_customers_per_request: int = Field(
        1000, ge=1, le=100_000, description="most customer ids one /v1/scores request may ask for"
    )
    max_predict_customers: int = Field(
        100, ge=1, le=10_000, description="most customers one /v1/predict request may carry"
    )
    max_events_per_customer: int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description="most transactions, interactions or surveys per customer in /v1/predict",
    )
    max_body_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        description="largest request body accepted, bytes (413 above it)",
    )
    max_page_size: int = Field(
        1000, ge=1, le=100_000, description="largest 'limit' of one /v1/at-risk page"
    )
    shutdown_grace_seconds: int = Field(
        30,
        ge=1,
        le=3600,
        description="on SIGTERM, how long requests in flight may take to finish, seconds",
    )
    model_cache_dir: Path = Field(
        Path("var/serving-cache"), description="where registered model files are downloaded"
    )
    # -- overload: admission control, connection and time limits (docs/http-api.md, "Limits")
    max_inflight: int = Field(
        64, ge=1, le=10_000, description="requests the app works on at once (admission control)"
    )
    max_queue: int = Field(
        64, ge=0, le=100_000, description="requests waiting for a slot; above: 503 overloaded"
    )
    queue_timeout_ms: int = Field(
        25, ge=0, le=60_000, description="longest wait for a slot, ms; then 503 overloaded"
    )
    max_connections: int = Field(
        512, ge=1, le=100_000, description="open connections; above: 503 overloaded and closed"
    )
    max_header_bytes: int = Field(
        16 * 1024, ge=1024, le=1024 * 1024, description="largest request head, bytes (431 above)"
    )
    header_timeout_seconds: float = Field(
        10.0, gt=0, le=3600, description="time to send a request's head, seconds; then closed"
    )
    body_timeout_seconds: float = Field(
        10.0, gt=0, le=3600, description="time to send a request's body, seconds; then 408"
    )
    keep_alive_seconds: int = Field(
        5, ge=1, le=3600, description="idle keep-alive connection closed after, seconds"
    )
    request_timeout_seconds: float = Field(
        30.0, gt=0, le=3600, description="longest a request may take in the app, seconds; then 503"
    )
    body_memory_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="request-body bytes held at once by all requests together; above: 503",
    )
    rate_limit_per_second: float = Field(
        0.0, ge=0, description="default requests per second per API key (0: unlimited)"
    )
    rate_limit_burst: int = Field(
        0, ge=0, description="default burst per API key (0: twice the rate, at least 1)"
    )
    # -- workspace: browser sessions of the retention workspace (docs/workspace.md)
    session_hours: float = Field(
        8.0, gt=0, le=24 * 30, description="lifetime of a workspace sign-in session, hours"
    )
    secure_cookies: bool = Field(
        False, description="mark the session cookie Secure (set when served behind HTTPS)"
    )
    signin_failures_per_minute: int = Field(
        5, ge=1, le=1000, description="failed workspace sign-ins per client address a minute"
    )
    # -- outcomes store (serving/outcomes.py, docs/workspace.md "Outcomes storage") ----------
    outcomes_url: str | None = Field(
        None,
        min_length=1,
        description="SQLAlchemy URL of the outcomes database; default: sqlite file "
        "outcomes.db in the scores folder's parent (var/outcomes.db)",
    )


#: Every section: a ``CHURN_*`` name is valid when one of them declares it.
SECTIONS: tuple[type[CommonSettings], ...] = (TrainSettings, ServeSettings)


def env_names(section: type[BaseSettings]) -> set[str]:
    """The environment variable names ``section`` reads (upper case)."""
    names: set[str] = set()
    for name, field in section.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {str(choice).upper() for choice in alias.choices}
        else:
            names.add(f"{PREFIX}{name}".upper())
    return names


def known_names() -> set[str]:
    """Every environment variable name some section reads."""
    return set().union(*(env_names(s) for s in SECTIONS))


def unknown_name_message(name: str, known: set[str]) -> str:
    """``NAME is not a setting; did you mean CLOSEST?`` (or where the settings are listed)."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else "see .env.example for every setting"
    return f"{name} is not a setting; {hint}"


def check_names(
    environ: dict[str, Any] | Any, dotenv: dict[str, Any] | Any, *, env_file: Any = None
) -> None:
    """Raise :class:`SettingsError` for the first ``CHURN_*`` name in the environment or the
    ``.env`` file that no section declares, or an old unprefixed name in the ``.env`` file.

    Names are compared in upper case (pydantic-settings reads them case-insensitively).
    """
    known = known_names()
    where = f"{env_file}: " if isinstance(env_file, str | Path) else ".env: "
    for source, prefix in ((environ, ""), (dotenv, where)):
        for raw in sorted(source):
            name = str(raw).upper()
            if name.startswith(PREFIX) and name not in known:
                raise SettingsError(prefix + unknown_name_message(name, known))
    for raw in sorted(dotenv):
        name = str(raw).upper()
        if name in RENAMED:
            raise SettingsError(f"{where}{name} is not read any more; rename it {RENAMED[name]}")


def _one_line(exc: ValidationError) -> str:
    """The first problem of a validation error as one line naming the variable."""
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else ""
    variable = field.upper() if field.upper().startswith(PREFIX) else f"{PREFIX}{field}".upper()
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"setting {variable}: {error['msg']}{more}"


@lru_cache(maxsize=1)
def get_serve_settings() -> ServeSettings:
    """The server's settings, read from the environment on first use."""
    return ServeSettings()
