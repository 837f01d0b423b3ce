"""Piccolo's configuration module, for its migration runner.

Piccolo finds its engine through a module named by PICCOLO_CONF. `DB` is bound at
start-up by `mediagate.db.engine.bind_engine` from the settings, not from the
environment, so there is one source of configuration.
"""

from __future__ import annotations

from piccolo.conf.apps import AppRegistry
from piccolo.engine.postgres import PostgresEngine

DB: PostgresEngine | None = None

APP_REGISTRY = AppRegistry(apps=["mediagate.db.piccolo_app"])
