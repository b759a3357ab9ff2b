"""The server's settings: :class:`models.settings.ServeSettings` (every setting of the project
is declared in models/settings.py), under the names the serving modules import."""

from __future__ import annotations

from models.settings import ServeSettings as Settings
from models.settings import SettingsError
from models.settings import get_serve_settings as get_settings

__all__ = ["Settings", "SettingsError", "get_settings"]
