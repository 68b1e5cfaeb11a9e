"""Apply migrations programmatically (used by `eddy migrate`, `eddy up` and tests)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config

from config import Settings

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("eddy")


def upgrade(sqlalchemy_url: str, revision: str = "head") -> None:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url.replace("%", "%%"))
    command.upgrade(config, revision)


def migrate(settings: Settings) -> None:
    """Upgrade the database `settings` name to the newest revision."""
    upgrade(settings.database_dsn().replace("postgresql://", "postgresql+psycopg://", 1))
    log.info("migrations applied")
