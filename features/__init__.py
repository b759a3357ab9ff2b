"""Point-in-time feature engineering: pure functions over DataFrames (no I/O)."""

from features import model_outputs as _model_outputs  # noqa: F401  (catalogue entries)
