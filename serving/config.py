"""The server's settings: one pydantic-settings object, read from the environment once.

Every setting is read from ``CHURN_<NAME>`` (for example ``CHURN_PORT=8080``) or from a
``.env`` file in the working directory; environment variables win over the file. The MLflow
tracking URI is also read under MLflow's own name, ``MLFLOW_TRACKING_URI``, so one variable
points training, scoring and serving at the same tracking server (``CHURN_MLFLOW_TRACKING_URI``
wins when both are set). Relative paths are relative to the working directory (the project
root when started through the Makefile).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Configuration of the HTTP server (``python -m serving``)."""

    model_config = SettingsConfigDict(
        env_prefix="CHURN_",
        env_file=".env",
        env_file_encoding="utf-8",
        # The .env file is shared with training and scoring: their keys are not ours.
        extra="ignore",
        # Field names such as ``model_name`` are ours, not pydantic's ``model_*`` methods.
        protected_namespaces=(),
    )

    host: str = Field("127.0.0.1", description="interface to listen on")
    port: int = Field(8000, ge=1, le=65535, description="TCP port to listen on")
    mlflow_tracking_uri: str = Field(
        "sqlite:///mlflow.db",
        validation_alias=AliasChoices("CHURN_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"),
        description="MLflow tracking (and registry) URI the champion is read from",
    )
    model_name: str = Field("churn-clv", min_length=1, description="registered model name")
    model_alias: str = Field("champion", min_length=1, description="registry alias to serve")
    scores_dir: Path = Field(Path("var/scores"), description="folder of the scored snapshot")
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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read from the environment on first use."""
    return Settings()
