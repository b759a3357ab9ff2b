"""The training side's settings: :class:`models.settings.TrainSettings` (every setting of the
project is declared in models/settings.py), under the name the training modules import."""

from __future__ import annotations

from models.settings import SettingsError, TrainSettings

__all__ = ["SettingsError", "TrainSettings"]
