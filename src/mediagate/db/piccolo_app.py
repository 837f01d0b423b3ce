"""The Piccolo app: our tables and the top-level piccolo_migrations/ folder."""

from __future__ import annotations

from pathlib import Path

from piccolo.conf.apps import AppConfig

from mediagate.db.tables import TABLES

APP_NAME = "mediagate"
# src/mediagate/db/piccolo_app.py -> the project root holds piccolo_migrations/.
MIGRATIONS_DIR = Path(__file__).resolve().parents[3] / "piccolo_migrations"

APP_CONFIG = AppConfig(
    app_name=APP_NAME,
    migrations_folder_path=str(MIGRATIONS_DIR),
    table_classes=list(TABLES),
)
